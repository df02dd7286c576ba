//! Winograd F(2×2, 3×3) for 3×3, stride-1, undilated, ungrouped 2-D convolutions with many channels: VGG16's
//! layers, ResNet's bottleneck 3×3s, and (through the flipped kernel, `conv::transpose_as_conv`) their VJPs.
//!
//! Each 2×2 output tile needs a 4×4 input patch `d`: `y = Aᵀ [Σ_i (G g_oi Gᵀ) ⊙ (Bᵀ d_i B)] A`. Written as 16
//! GEMMs (one per position ξ of the 4×4 transformed tile), `M[ξ] = U[ξ] · V[ξ]` with `U[ξ]` (O × C) the
//! transformed kernels and `V[ξ]` (C × tiles) the transformed patches, it does 16·C·O multiply-adds per 4 outputs
//! instead of 36: 2.25× fewer. Rounding: the transforms only add, subtract and halve (exact in binary), so the
//! result differs from im2col + GEMM by a different summation order and a few more additions, measured at the
//! same size as the direct path's own rounding (tests below: both against an f64 reference).
//!
//! Tiles are processed in blocks of whole tile rows of one sample, sized so that one block's `V` and `M` stay in
//! cache ([`BLOCK_FLOATS`]); blocks run in parallel, or, when there are fewer blocks than threads, one after the
//! other with the channels and the 16 GEMMs spread over the pool.

use ndarray::{ArrayView3, ArrayViewMut3, Axis};
use rayon::prelude::*;

use super::conv::{with_scratch, COLS_SCRATCH, FLIP_SCRATCH};
use super::gemm::matmul_into;

/// Fewer input or output channels than this: the 16 small GEMMs (K = C) lose to one im2col GEMM (K = 9·C).
pub(super) const MIN_CHANNELS: usize = 32;
/// Fewer 2×2 tiles than this in all (samples × tiles): the GEMMs are too narrow, and the kernel transform
/// (a pass over 16/9 of the weights) is not paid back.
pub(super) const MIN_TILES: usize = 64;
/// Most transformed-kernel floats held at once, unless the layer's own weights are larger (4 MiB: 256 × 256
/// channels in one piece). Larger layers (VGG16's 512-channel ones) run in blocks of output channels, each
/// with its own piece of `U` in the buffer that the im2col transpose of the same layer uses for its flipped
/// weights (9·C·O floats): holding all 16 MiB of a 512-channel layer's `U` took VGG16 LRPEpsilon's peak RSS to
/// 1.04 of the memory target.
const U_MAX_FLOATS: usize = 1 << 20;
/// Target size (floats, 4 MiB) of one block's `V` and `M` together.
const BLOCK_FLOATS: usize = 1 << 20;

/// A 3×3 stride-1 convolution's geometry: `n` samples of `ci` × `h` × `w`, pads before (`pt`, `pl`), output
/// `co` × `ho` × `wo`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub pt: usize,
    pub pl: usize,
}

impl Shape {
    /// Whether Winograd pays off here.
    pub fn worth_it(&self) -> bool {
        self.ci >= MIN_CHANNELS
            && self.co >= MIN_CHANNELS
            && self.n * self.ho.div_ceil(2) * self.wo.div_ceil(2) >= MIN_TILES
    }

    /// Output channels per block of `U` when a block may hold `u_floats`: all of them, or equal blocks of a
    /// multiple of 8.
    fn co_block(&self, u_floats: usize) -> usize {
        let most = (u_floats / (16 * self.ci)).max(8);
        if self.co <= most {
            return self.co;
        }
        self.co.div_ceil(self.co.div_ceil(most)).next_multiple_of(8)
    }
}

/// `U` for the output channels `o0..o0 + u.len() / (16·ci)`, laid out `(o, 16, ci)`: `U[o][ξ][i] = (G g Gᵀ)[ξ]`
/// with `g = w[o][i]` (weights `(co, ci, 3, 3)`), or with `flipped`, `g = w[i][o]` rotated by 180° (weights
/// `(ci, co, 3, 3)`: the VJP's kernel without copying it).
fn transform_kernels(w: &[f32], s: &Shape, flipped: bool, o0: usize, u: &mut [f32]) {
    let (co, ci) = (s.co, s.ci);
    u.par_chunks_mut(16 * ci).enumerate().for_each(|(o, uo)| {
        let o = o0 + o;
        // g[k][i]: kernel entry k (row-major 3×3) of input channel i, so every step below runs over i.
        let mut g = vec![0f32; 9 * ci];
        for i in 0..ci {
            for k in 0..9 {
                g[k * ci + i] = if flipped { w[(i * co + o) * 9 + 8 - k] } else { w[(o * ci + i) * 9 + k] };
            }
        }
        // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]: t = G·g (4 × 3), then U = t·Gᵀ (4 × 4).
        let mut t = vec![0f32; 12 * ci];
        for c in 0..3 {
            for i in 0..ci {
                let (a, b, d) = (g[c * ci + i], g[(3 + c) * ci + i], g[(6 + c) * ci + i]);
                t[c * ci + i] = a;
                t[(3 + c) * ci + i] = 0.5 * (a + b + d);
                t[(6 + c) * ci + i] = 0.5 * (a - b + d);
                t[(9 + c) * ci + i] = d;
            }
        }
        for r in 0..4 {
            for i in 0..ci {
                let (a, b, d) = (t[3 * r * ci + i], t[(3 * r + 1) * ci + i], t[(3 * r + 2) * ci + i]);
                uo[4 * r * ci + i] = a;
                uo[(4 * r + 1) * ci + i] = 0.5 * (a + b + d);
                uo[(4 * r + 2) * ci + i] = 0.5 * (a - b + d);
                uo[(4 * r + 3) * ci + i] = d;
            }
        }
    });
}

/// `Bᵀ d B` for the tiles of tile rows `[r0, r1)` of one input channel plane, into `v` laid out `(16, tiles)`
/// with row stride `ld`. Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]. Every step runs over
/// the tiles of a tile row, on consecutive values, so the compiler vectorises it.
fn transform_input(s: &Shape, plane: &[f32], r0: usize, r1: usize, v: &mut [f32], ld: usize) {
    let tw = s.wo.div_ceil(2);
    // One zero-padded input row; its even and odd columns (`e[c]` = patch column 2c of tile c, `e[c + 1]` =
    // column 2c + 2, `o[c]` = 2c + 1, `o[c + 1]` = 2c + 3); the column transforms `q[b]` of the four rows.
    let mut padded = vec![0f32; 2 * tw + 2];
    let (mut e, mut o) = (vec![0f32; tw + 1], vec![0f32; tw + 1]);
    let mut q = vec![0f32; 16 * tw];
    for r in r0..r1 {
        for dy in 0..4 {
            let y = (2 * r + dy) as isize - s.pt as isize;
            padded.fill(0.0);
            if (0..s.h as isize).contains(&y) {
                let row = &plane[y as usize * s.w..(y as usize + 1) * s.w];
                // Input columns [0, x1) land at padded positions [pl, pl + x1).
                let x1 = s.w.min(padded.len().saturating_sub(s.pl));
                if x1 > 0 {
                    padded[s.pl..s.pl + x1].copy_from_slice(&row[..x1]);
                }
            }
            for c in 0..=tw {
                e[c] = padded[2 * c];
                o[c] = padded[2 * c + 1];
            }
            let qd = |b: usize| (4 * b + dy) * tw..(4 * b + dy + 1) * tw;
            for (c, q) in q[qd(0)].iter_mut().enumerate() {
                *q = e[c] - e[c + 1];
            }
            for (c, q) in q[qd(1)].iter_mut().enumerate() {
                *q = o[c] + e[c + 1];
            }
            for (c, q) in q[qd(2)].iter_mut().enumerate() {
                *q = e[c + 1] - o[c];
            }
            for (c, q) in q[qd(3)].iter_mut().enumerate() {
                *q = o[c] - o[c + 1];
            }
        }
        let t0 = (r - r0) * tw;
        for b in 0..4 {
            let row = |dy: usize| &q[(4 * b + dy) * tw..(4 * b + dy + 1) * tw];
            let (q0, q1, q2, q3) = (row(0), row(1), row(2), row(3));
            // Row a of Bᵀ applied over dy, for every tile: v[4a + b] = Σ_dy Bᵀ[a][dy] · q[b][dy].
            let mut put = |a: usize, x: &[f32], y: &[f32], sub: bool| {
                let dst = &mut v[(4 * a + b) * ld + t0..(4 * a + b) * ld + t0 + tw];
                for ((d, &x), &y) in dst.iter_mut().zip(x).zip(y) {
                    *d = if sub { x - y } else { x + y };
                }
            };
            put(0, q0, q2, true);
            put(1, q1, q2, false);
            put(2, q2, q1, true);
            put(3, q1, q3, true);
        }
    }
}

/// `Aᵀ m A` for one output channel: `m` laid out `(16, tiles)` with row stride `ld`, written to the output rows
/// of tile rows `[r0, r1)` (`band` starts at output row `2·r0`). Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]].
fn transform_output(s: &Shape, m: &[f32], ld: usize, r0: usize, r1: usize, band: &mut [f32]) {
    let tw = s.wo.div_ceil(2);
    // Rows of Aᵀ m (over a) per column b of the tile, then the columns (over b), both over the tiles of a row.
    let (mut top, mut bot) = (vec![0f32; 4 * tw], vec![0f32; 4 * tw]);
    let (mut left, mut right) = (vec![0f32; tw], vec![0f32; tw]);
    for r in r0..r1 {
        let t0 = (r - r0) * tw;
        let at = |xi: usize| &m[xi * ld + t0..xi * ld + t0 + tw];
        for b in 0..4 {
            let (m0, m1, m2, m3) = (at(b), at(4 + b), at(8 + b), at(12 + b));
            for c in 0..tw {
                top[b * tw + c] = m0[c] + m1[c] + m2[c];
                bot[b * tw + c] = m1[c] - m2[c] - m3[c];
            }
        }
        for (dy, rows) in [&top, &bot].into_iter().enumerate() {
            let oy = 2 * r + dy;
            if oy >= s.ho {
                break;
            }
            let col = |b: usize| &rows[b * tw..(b + 1) * tw];
            let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
            for c in 0..tw {
                left[c] = c0[c] + c1[c] + c2[c];
                right[c] = c1[c] - c2[c] - c3[c];
            }
            let row = &mut band[(oy - 2 * r0) * s.wo..(oy - 2 * r0 + 1) * s.wo];
            for (c, pair) in row.chunks_mut(2).enumerate() {
                pair[0] = left[c];
                if let Some(x) = pair.get_mut(1) {
                    *x = right[c];
                }
            }
        }
    }
}

/// One block: tile rows `[r0, r1)` of one sample (`x` its `ci` planes), into `planes` (per output channel of
/// `u`'s block, the output rows of those tile rows). With `inner`, the work inside is spread over the pool.
fn block(s: &Shape, u: &[f32], x: &[f32], r0: usize, r1: usize, planes: &mut [&mut [f32]], inner: bool) {
    let co = planes.len();
    let tiles = (r1 - r0) * s.wo.div_ceil(2);
    let inp = s.h * s.w;
    // `v` (`ci × 16 × tiles`) and `m` (`co × 16 × tiles`) live in the im2col tile buffer: kept per thread between
    // calls and shared with im2col (more buffers, freed and allocated again or kept beside it, took VGG16's peak
    // RSS to 1.02 of the memory target). Every value is written before it is read.
    with_scratch(&COLS_SCRATCH, (s.ci + co) * 16 * tiles, |vm| {
        let (v, m) = vm.split_at_mut(s.ci * 16 * tiles);
        let fill = |(i, vi): (usize, &mut [f32])| transform_input(s, &x[i * inp..(i + 1) * inp], r0, r1, vi, tiles);
        if inner {
            v.par_chunks_mut(16 * tiles).enumerate().for_each(fill);
        } else {
            v.chunks_mut(16 * tiles).enumerate().for_each(fill);
        }
        let uv = ArrayView3::from_shape((co, 16, s.ci), u).expect("U shape");
        let vv = ArrayView3::from_shape((s.ci, 16, tiles), &*v).expect("V shape");
        let mut mv = ArrayViewMut3::from_shape((co, 16, tiles), &mut *m).expect("M shape");
        let gemm = |(xi, mx): (usize, ndarray::ArrayViewMut2<f32>)| {
            matmul_into(mx, uv.index_axis(Axis(1), xi), vv.index_axis(Axis(1), xi), false)
        };
        let outs: Vec<_> = mv.axis_iter_mut(Axis(1)).enumerate().collect();
        if inner {
            outs.into_par_iter().for_each(gemm);
        } else {
            outs.into_iter().for_each(gemm);
        }
        let store = |(mo, plane): (&[f32], &mut &mut [f32])| transform_output(s, mo, tiles, r0, r1, plane);
        if inner {
            m.par_chunks(16 * tiles).zip(planes.par_iter_mut()).for_each(store);
        } else {
            m.chunks(16 * tiles).zip(planes.iter_mut()).for_each(store);
        }
    })
}

/// The convolution of the batch `x` (`n × ci × h × w`) with the 3×3 kernels `w` (`(co, ci, 3, 3)`, or with
/// `flipped` the VJP's kernel given as the forward one, `(ci, co, 3, 3)`); returns `n × co × ho × wo`.
pub(super) fn conv3x3(s: &Shape, w: &[f32], flipped: bool, x: &[f32]) -> Vec<f32> {
    conv3x3_blocked(s, w, flipped, x, s.co_block(U_MAX_FLOATS.max(9 * s.ci * s.co)))
}

/// [`conv3x3`] in blocks of `cob` output channels.
fn conv3x3_blocked(s: &Shape, w: &[f32], flipped: bool, x: &[f32], cob: usize) -> Vec<f32> {
    assert_eq!(w.len(), s.co * s.ci * 9, "winograd: weight size");
    assert_eq!(x.len(), s.n * s.ci * s.h * s.w, "winograd: input size");
    let mut out = vec![0f32; s.n * s.co * s.ho * s.wo];
    if out.is_empty() {
        return out;
    }
    // The flipped-kernel buffer of the im2col transpose, which this call does not use.
    with_scratch(&FLIP_SCRATCH, cob * 16 * s.ci, |u| {
        for o0 in (0..s.co).step_by(cob) {
            let u = &mut u[..(cob.min(s.co - o0)) * 16 * s.ci];
            transform_kernels(w, s, flipped, o0, u);
            run_blocks(s, o0, u, x, &mut out);
        }
    });
    out
}

/// The blocks of [`conv3x3`] for the output channels `o0..` that the transformed kernels `u` hold.
fn run_blocks(s: &Shape, o0: usize, u: &[f32], x: &[f32], out: &mut [f32]) {
    let (th, tw) = (s.ho.div_ceil(2), s.wo.div_ceil(2));
    let co = u.len() / (16 * s.ci);
    let threads = rayon::current_num_threads();
    // Tile rows per block: cache-sized (at least one), and enough blocks for every thread when the batch allows.
    // Fewer blocks than threads: the blocks run one after the other, each spread over the pool.
    let per_row = 16 * (s.ci + co) * tw;
    let cached = (BLOCK_FLOATS / per_row).clamp(1, th);
    // Among block heights from half to twice the cache-sized one that give every thread a block, the one with
    // the shortest critical path (blocks per thread × rows per block; 14 tile rows on 2 threads: 2 × 7, not
    // 3 × 6 with one thread idle for a third), the one nearest the cache-sized height on ties. Failing that,
    // the tallest blocks that still give every thread one (or single rows, run one after the other).
    let enough = |r: usize| s.n * th.div_ceil(r) >= threads;
    let path = |r: usize| (s.n * th.div_ceil(r)).div_ceil(threads) * r;
    let rows = (cached.div_ceil(2)..=(2 * cached).min(th))
        .filter(|&r| enough(r))
        .min_by_key(|&r| (path(r), r.abs_diff(cached)))
        .or_else(|| (1..cached.div_ceil(2)).rev().find(|&r| enough(r)))
        .unwrap_or(1);
    let nbands = th.div_ceil(rows);
    // Per block, its output rows in every channel plane (disjoint slices, so blocks can run in parallel).
    let mut blocks: Vec<Vec<&mut [f32]>> = (0..s.n * nbands).map(|_| Vec::with_capacity(s.co)).collect();
    for (si, sample) in out.chunks_mut(s.co * s.ho * s.wo).enumerate() {
        for plane in sample.chunks_mut(s.ho * s.wo).skip(o0).take(co) {
            for (b, band) in plane.chunks_mut(2 * rows * s.wo).enumerate() {
                blocks[si * nbands + b].push(band);
            }
        }
    }
    let inner = blocks.len() < threads;
    let run = |(bi, mut planes): (usize, Vec<&mut [f32]>)| {
        let (si, b) = (bi / nbands, bi % nbands);
        let xs = &x[si * s.ci * s.h * s.w..(si + 1) * s.ci * s.h * s.w];
        block(s, u, xs, b * rows, ((b + 1) * rows).min(th), &mut planes, inner);
    };
    if inner {
        blocks.into_iter().enumerate().for_each(run);
    } else {
        blocks.into_par_iter().enumerate().for_each(run);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::test_util::{dot, Rng};

    /// f64 direct convolution: the reference of `conv`'s test that compares both paths' rounding.
    pub(crate) fn reference(s: &Shape, w: &[f32], x: &[f32]) -> Vec<f64> {
        let mut y = vec![0f64; s.n * s.co * s.ho * s.wo];
        for n in 0..s.n {
            for o in 0..s.co {
                for oy in 0..s.ho {
                    for ox in 0..s.wo {
                        let mut acc = 0f64;
                        for i in 0..s.ci {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = ((oy + ky) as isize - s.pt as isize, (ox + kx) as isize - s.pl as isize);
                                    if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                        continue;
                                    }
                                    let xv = x[((n * s.ci + i) * s.h + iy as usize) * s.w + ix as usize] as f64;
                                    acc += w[((o * s.ci + i) * 3 + ky) * 3 + kx] as f64 * xv;
                                }
                            }
                        }
                        y[((n * s.co + o) * s.ho + oy) * s.wo + ox] = acc;
                    }
                }
            }
        }
        y
    }

    /// Largest error relative to the reference's largest magnitude.
    pub(crate) fn max_err(a: &[f32], r: &[f64]) -> f64 {
        let scale = r.iter().fold(0f64, |m, v| m.max(v.abs()));
        a.iter().zip(r).map(|(&a, &r)| (a as f64 - r).abs()).fold(0f64, f64::max) / scale
    }

    /// The geometries of the tests: odd and even planes, every kind of padding (none, symmetric, asymmetric,
    /// larger than 1), batches; (n, ci, co, h, w, pt, pl, pb, pr).
    pub(crate) type Case = (usize, usize, usize, usize, usize, usize, usize, usize, usize);
    pub(crate) const CASES: [Case; 5] = [
        (1, 32, 40, 17, 15, 1, 1, 1, 1),
        (2, 33, 32, 14, 14, 0, 0, 0, 0),
        (3, 48, 36, 11, 11, 1, 0, 0, 1),
        (1, 64, 64, 16, 16, 1, 1, 1, 1),
        (2, 32, 32, 10, 10, 2, 2, 2, 2),
    ];

    /// Blocks of output channels (the last one shorter) give the one-block result, in both forms.
    #[test]
    fn channel_blocks() {
        let mut rng = Rng::new(3);
        let s = Shape { n: 2, ci: 33, co: 40, h: 12, w: 11, ho: 12, wo: 11, pt: 1, pl: 1 };
        let wt = rng.vec(s.co * s.ci * 9);
        assert_eq!(s.co_block(16 * 33 * 16), 16, "40 channels in at most 16: 16 + 16 + 8");
        for (flipped, t) in [(false, s), (true, Shape { ci: s.co, co: s.ci, ..s })] {
            let x = rng.vec(t.n * t.ci * t.h * t.w);
            let whole = conv3x3_blocked(&t, &wt, flipped, &x, t.co);
            let blocked = conv3x3_blocked(&t, &wt, flipped, &x, 16);
            let scale = whole.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = whole.iter().zip(&blocked).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-6 * scale, "flipped {flipped}: blocks differ by {diff:.2e} of {scale:.2e}");
        }
    }

    /// The flipped form is the VJP: `<conv(x), y> = <x, convᵀ(y)>` against the reference.
    #[test]
    fn flipped_is_the_adjoint() {
        let mut rng = Rng::new(11);
        let s = Shape { n: 2, ci: 40, co: 36, h: 15, w: 17, ho: 15, wo: 17, pt: 1, pl: 1 };
        let wt = rng.vec(s.co * s.ci * 9);
        let (x, y) = (rng.vec(s.n * s.ci * 255), rng.vec(s.n * s.co * 255));
        let fx = reference(&s, &wt, &x);
        let lhs: f64 = fx.iter().zip(&y).map(|(a, &b)| a * b as f64).sum();
        // The VJP of a pad-1 3×3 conv is the pad-1 conv of y with the flipped, channel-swapped kernel.
        let t = Shape { ci: s.co, co: s.ci, ..s };
        let gy = conv3x3(&t, &wt, true, &y);
        let rhs = dot(&gy, &x);
        assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    }
}
