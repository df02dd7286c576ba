//! Dense layers: `y = x · M(W)` and its transpose `s · M(W)ᵀ` for a row-major `(K, N)` weight and a weight
//! substitution `M` (W⁺, W², ...) applied while the weights stream through, so no modified copy is stored.
//!
//! Why not a GEMM: at the batch sizes LRP runs at (a few rows), a dense layer is bound by reading its weights
//! (VGG16's first dense layer is 411 MB); a packing GEMM reads and writes them once more before multiplying.
//! These kernels read the weights once, front to back, parallel over chunks of weight rows (the forward skips
//! rows whose inputs are all zero); the transpose handles [`ROW_BLOCK`] samples per pass. Batches above
//! [`STREAM_MAX_ROWS`] rows are compute-bound: the caller passes a substituted copy with `WeightMod::Plain` and
//! they go to the GEMM.
//!
//! On the streaming path every output element is summed in a fixed order that depends neither on the thread
//! count nor on the other rows of the batch, so a sample's result is the same alone or in any batch of up to
//! [`STREAM_MAX_ROWS`].

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use relprop_core::program::WeightMod;

use super::gemm::matmul_into;

/// Samples that share one pass over the weights in the transpose.
const ROW_BLOCK: usize = 4;
/// Above this many rows the product is compute-bound: GEMM (for plain weights; the caller substitutes a copy).
pub const STREAM_MAX_ROWS: usize = 16;
/// Smallest number of weight rows per forward work item.
const K_CHUNK: usize = 256;
/// Most forward partial sums (each `m × n` floats).
const MAX_PARTIALS: usize = 64;
/// Lanes of the dot-product accumulators (the compiler keeps them in vector registers).
const LANES: usize = 16;

/// Dispatch `f` on a closure that computes `M(w)` for one weight, monomorphised per modifier so the hot
/// loops carry no `match`. Each closure is [`WeightMod::apply`] itself, so the values are bit-identical to
/// the substituted copies the other paths (and backends) build.
macro_rules! with_mod {
    ($m:expr, $f:ident $(, $arg:expr)*) => {
        match $m {
            WeightMod::Plain => $f($($arg,)* |v: f32| v),
            WeightMod::Pos => $f($($arg,)* |v: f32| WeightMod::Pos.apply(v)),
            WeightMod::Neg => $f($($arg,)* |v: f32| WeightMod::Neg.apply(v)),
            WeightMod::Square => $f($($arg,)* |v: f32| WeightMod::Square.apply(v)),
            WeightMod::Ones => $f($($arg,)* |v: f32| WeightMod::Ones.apply(v)),
            m @ WeightMod::GammaPos(_) => $f($($arg,)* move |v: f32| m.apply(v)),
        }
    };
}

/// `x (m × k) · M(w) (k × n)` → `m × n`, row-major.
pub fn dense_forward(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, wm: WeightMod) -> Vec<f32> {
    debug_assert_eq!((x.len(), w.len()), (m * k, k * n));
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    if m > STREAM_MAX_ROWS && wm == WeightMod::Plain {
        gemm(&mut y, x, (m, k), w, (k, n), false);
        return y;
    }
    with_mod!(wm, forward_stream, x, m, k, w, n, &mut y);
    y
}

/// `s (m × n) · M(w)ᵀ` → `m × k`, row-major.
pub fn dense_transpose(s: &[f32], m: usize, n: usize, w: &[f32], k: usize, wm: WeightMod) -> Vec<f32> {
    debug_assert_eq!((s.len(), w.len()), (m * n, k * n));
    let mut out = vec![0f32; m * k];
    if m == 0 || k == 0 {
        return out;
    }
    if m > STREAM_MAX_ROWS && wm == WeightMod::Plain {
        gemm(&mut out, s, (m, n), w, (k, n), true);
        return out;
    }
    with_mod!(wm, transpose_stream, s, m, n, w, k, &mut out);
    out
}

/// `dst = a · b` or `a · bᵀ` on the GEMM engine (all threads).
fn gemm(dst: &mut [f32], a: &[f32], ad: (usize, usize), b: &[f32], bd: (usize, usize), transpose_b: bool) {
    let a = ArrayView2::from_shape(ad, a).expect("a fits");
    let b = ArrayView2::from_shape(bd, b).expect("b fits");
    let b = if transpose_b { b.t() } else { b };
    let dst = ArrayViewMut2::from_shape((ad.0, b.ncols()), dst).expect("dst fits");
    matmul_into(dst, a, b, true);
}

/// Forward, streaming: the weight rows are split into fixed chunks of at least [`K_CHUNK`] rows (parallel);
/// each chunk accumulates `x[r, i] · M(w[i, :])` over its rows in order into a partial `m × n` sum, and the
/// partials are added in chunk order. Each chunk reads its rows front to back (contiguous memory), and a row
/// whose inputs are zero for every sample (post-ReLU) is not read at all.
fn forward_stream(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, y: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    // At most MAX_PARTIALS partial sums (memory), independent of the thread count (determinism).
    let chunk = K_CHUNK.max(k.div_ceil(MAX_PARTIALS));
    let parts: Vec<Vec<f32>> = (0..k.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f32; m * n];
            let mut wrow = vec![0f32; n];
            for i in c * chunk..((c + 1) * chunk).min(k) {
                if (0..m).all(|r| x[r * k + i] == 0.0) {
                    continue; // 0 · finite adds nothing
                }
                for (d, &v) in wrow.iter_mut().zip(&w[i * n..(i + 1) * n]) {
                    *d = f(v);
                }
                for (r, acc) in acc.chunks_exact_mut(n).enumerate() {
                    let xv = x[r * k + i];
                    if xv != 0.0 {
                        for (a, &wv) in acc.iter_mut().zip(&wrow) {
                            *a += xv * wv;
                        }
                    }
                }
            }
            acc
        })
        .collect();
    let mut parts = parts.into_iter();
    if let Some(first) = parts.next() {
        y.copy_from_slice(&first);
    }
    for part in parts {
        for (a, b) in y.iter_mut().zip(&part) {
            *a += b;
        }
    }
}

/// Transpose, streaming: `out[r, i] = Σ_j M(w[i, j]) · s[r, j]`, one weight row at a time (parallel over
/// rows of `w`), [`LANES`]-wide partial sums reduced in a fixed order.
fn transpose_stream(s: &[f32], m: usize, n: usize, w: &[f32], k: usize, out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    // Outputs per weight row are strided in `out` (one per sample): compute `(k, m)` then transpose.
    let mut t = vec![0f32; k * m];
    t.par_chunks_mut(m).with_min_len(64).enumerate().for_each(|(i, o)| {
        let row = &w[i * n..(i + 1) * n];
        for r0 in (0..m).step_by(ROW_BLOCK) {
            let r1 = (r0 + ROW_BLOCK).min(m);
            let mut acc = [[0f32; LANES]; ROW_BLOCK];
            let chunks = row.chunks_exact(LANES);
            let tail = chunks.remainder();
            for (c, wc) in chunks.enumerate() {
                let mut mw = [0f32; LANES];
                for (d, &v) in mw.iter_mut().zip(wc) {
                    *d = f(v);
                }
                for (a, r) in acc.iter_mut().zip(r0..r1) {
                    let sc = &s[r * n + c * LANES..r * n + (c + 1) * LANES];
                    for l in 0..LANES {
                        a[l] += mw[l] * sc[l];
                    }
                }
            }
            for (a, r) in acc.iter().zip(r0..r1) {
                let mut sum = reduce(a);
                let base = r * n + n - tail.len();
                for (j, &v) in tail.iter().enumerate() {
                    sum += f(v) * s[base + j];
                }
                o[r] = sum;
            }
        }
    });
    for i in 0..k {
        for r in 0..m {
            out[r * k + i] = t[i * m + r];
        }
    }
}

/// Pairwise sum of the lanes (fixed order).
fn reduce(a: &[f32; LANES]) -> f32 {
    let mut v = *a;
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            v[l] += v[l + w];
        }
    }
    v[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_close, dot, Rng};

    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, wm: WeightMod) -> Vec<f32> {
        let mw: Vec<f32> = w.iter().map(|&v| wm.apply(v)).collect();
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let col: Vec<f32> = (0..k).map(|i| mw[i * n + j]).collect();
                y[r * n + j] = dot(&x[r * k..(r + 1) * k], &col) as f32;
            }
        }
        y
    }

    #[test]
    fn forward_and_transpose_match_f64_reference_on_both_paths() {
        let mut rng = Rng::new(7);
        // Odd sizes: partial column blocks, lane tails, partial row blocks; 20 rows with plain weights takes
        // the GEMM path.
        for &(m, k, n) in &[(1, 37, 1030), (3, 515, 17), (5, 64, 513), (20, 33, 70)] {
            let mut x = rng.vec(m * k);
            x[0] = 0.0;
            let w = rng.vec(k * n);
            let s = rng.vec(m * n);
            for wm in [WeightMod::Plain, WeightMod::Pos, WeightMod::Square, WeightMod::GammaPos(0.25)] {
                let y = dense_forward(&x, m, k, &w, n, wm);
                assert_close(&format!("forward {m}x{k}x{n} {wm:?}"), &y, &reference(&x, m, k, &w, n, wm), 1e-5);
                // Transpose: s · M(w)ᵀ equals the forward product against the transposed matrix.
                let wt: Vec<f32> = (0..n * k).map(|p| w[(p % k) * n + p / k]).collect();
                let t = dense_transpose(&s, m, n, &w, k, wm);
                assert_close(&format!("transpose {m}x{n}x{k} {wm:?}"), &t, &reference(&s, m, n, &wt, k, wm), 1e-5);
            }
        }
    }

    #[test]
    fn a_sample_gets_the_same_bits_alone_and_in_a_batch() {
        let mut rng = Rng::new(11);
        let (m, k, n) = (6, 300, 700);
        let (x, w, s) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
        let batch = dense_forward(&x, m, k, &w, n, WeightMod::Pos);
        let tbatch = dense_transpose(&s, m, n, &w, k, WeightMod::Pos);
        for r in 0..m {
            let one = dense_forward(&x[r * k..(r + 1) * k], 1, k, &w, n, WeightMod::Pos);
            assert_eq!(one, batch[r * n..(r + 1) * n]);
            let t = dense_transpose(&s[r * n..(r + 1) * n], 1, n, &w, k, WeightMod::Pos);
            assert_eq!(t, tbatch[r * k..(r + 1) * k]);
        }
    }
}
