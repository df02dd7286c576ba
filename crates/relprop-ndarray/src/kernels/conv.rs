//! Convolution (no bias) and its vector-Jacobian product, channels-first, any number of spatial axes.
//!
//! Forward: per (sample, group, column tile) an im2col buffer of `Cg·k` rows × `tile` output positions is
//! filled and multiplied by the group's `(Og, Cg·k)` weight matrix straight into the `(O, P)` output; tiles are
//! sized to stay cache-resident (`TILE_FLOATS`) and are spread over the rayon pool with single-threaded GEMMs.
//! Pointwise convolutions (1×1, stride 1, no padding) skip im2col and read the input in place; convolutions
//! with one input channel per group (depthwise) run directly, one strided axpy per kernel offset. 3×3,
//! stride-1 convolutions with at least 32 channels each way and 64 output tiles take Winograd F(2×2, 3×3)
//! (`winograd.rs`: 2.25× fewer multiply-adds, rounding measured no worse than im2col's).
//!
//! Transpose: for unit strides (and pads smaller than the dilated kernel) the VJP is itself a stride-1
//! convolution of `s` with the spatially flipped, in/out-swapped kernel and pads `eff-1-pad`, so it reuses the
//! forward path, Winograd included (same speed, no scatter). Otherwise, and for fewer than `FLIP_MIN_CHANNELS`
//! input channels per group: GEMM with the transposed weight into a column tile, then col2im scatter-add, parallel over (sample,
//! group), and inside over rows/channels when those are too few. Depthwise: direct scatter-axpy.
//!
//! Hot loops work on slices and iterators (the bounds are checked once per row segment, not per element).

use std::cell::Cell;
use std::thread::LocalKey;

use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, IxDyn};
use rayon::prelude::*;
use relprop_core::graph::{window_out, Conv};

use super::gemm::{matmul_into, split_axis};
use super::winograd;

/// Target size (floats) of one im2col column tile: 2 MiB (the per-core L2 is 1 MiB, L3 32 MiB). Measured on
/// VGG16's 3×3 layers, 2 threads: 256 Ki–512 Ki floats is best for 64–256 channels; what matters for
/// 512 channels (K = 4608) is at least ~100 columns per GEMM, which `MIN_TILE_COLS` guarantees.
const TILE_FLOATS: usize = 1 << 19;
/// Smallest column tile worth a GEMM call (GEMM efficiency drops fast below ~100 columns).
const MIN_TILE_COLS: usize = 96;
/// Marks a kernel row that falls into the padding.
const PADDED: usize = usize::MAX;

thread_local! {
    /// Per-thread im2col / column tile buffer, kept between calls: a fresh multi-MiB allocation costs page
    /// faults on every call. Taken out while in use, so a job nested on the same thread just allocates. Winograd
    /// keeps its blocks here too (a call takes one path or the other), so the two share one buffer's memory.
    pub(super) static COLS_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Reused buffer for flipped weights (same reason), shared with Winograd's transformed kernels.
    pub(super) static FLIP_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Run `f` on this thread's buffer `key`, grown to at least `len` floats (contents arbitrary).
pub(super) fn with_scratch<R>(
    key: &'static LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.set(buf);
    r
}

/// Convolution geometry resolved for one per-sample input shape.
#[derive(Clone, Debug)]
struct Geom {
    cin: usize,
    cout: usize,
    groups: usize,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dils: Vec<usize>,
    pb: Vec<usize>,
    pe: Vec<usize>,
    in_sp: Vec<usize>,
    out_sp: Vec<usize>,
    /// Row-major strides of the kernel and of the input plane.
    kstride: Vec<usize>,
    istride: Vec<usize>,
}

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        st[a] = st[a + 1] * shape[a + 1];
    }
    st
}

impl Geom {
    #[allow(clippy::too_many_arguments)]
    fn build(
        cin: usize,
        cout: usize,
        groups: usize,
        kernel: Vec<usize>,
        strides: Vec<usize>,
        dils: Vec<usize>,
        pb: Vec<usize>,
        pe: Vec<usize>,
        in_sp: Vec<usize>,
    ) -> Geom {
        let r = kernel.len();
        assert!(r >= 1, "convolution needs at least one spatial axis");
        for (name, v) in [
            ("strides", &strides),
            ("dilations", &dils),
            ("pads_begin", &pb),
            ("pads_end", &pe),
            ("input", &in_sp),
        ] {
            assert_eq!(
                v.len(),
                r,
                "conv: {name} has {} entries, expected {r}",
                v.len()
            );
        }
        assert!(
            groups > 0 && cin.is_multiple_of(groups) && cout.is_multiple_of(groups),
            "conv: {cin}→{cout} channels do not fit {groups} groups"
        );
        let out_sp = (0..r)
            .map(|a| {
                window_out(
                    in_sp[a], kernel[a], strides[a], dils[a], pb[a], pe[a], false,
                )
                .unwrap_or_else(|e| panic!("conv geometry: {e}"))
            })
            .collect();
        let (kstride, istride) = (row_major_strides(&kernel), row_major_strides(&in_sp));
        Geom {
            cin,
            cout,
            groups,
            kernel,
            strides,
            dils,
            pb,
            pe,
            in_sp,
            out_sp,
            kstride,
            istride,
        }
    }

    fn from_conv(c: &Conv, in_shape: &[usize]) -> Geom {
        let r = c.rank();
        assert_eq!(
            in_shape.len(),
            r + 1,
            "conv: per-sample input {in_shape:?} must be (channels, {r} spatial axes)"
        );
        let (cout, ipg) = (c.weight.shape[0], c.weight.shape[1]);
        assert_eq!(
            in_shape[0],
            ipg * c.groups,
            "conv: input channels {} vs weight {:?} with {} groups",
            in_shape[0],
            c.weight.shape,
            c.groups
        );
        Geom::build(
            in_shape[0],
            cout,
            c.groups,
            c.kernel().to_vec(),
            c.strides.clone(),
            c.dilations.clone(),
            c.pads_begin.clone(),
            c.pads_end.clone(),
            in_shape[1..].to_vec(),
        )
    }

    fn rank(&self) -> usize {
        self.kernel.len()
    }
    fn kprod(&self) -> usize {
        self.kernel.iter().product()
    }
    fn in_plane(&self) -> usize {
        self.in_sp.iter().product()
    }
    fn out_plane(&self) -> usize {
        self.out_sp.iter().product()
    }
    fn cg(&self) -> usize {
        self.cin / self.groups
    }
    fn og(&self) -> usize {
        self.cout / self.groups
    }
    fn pointwise(&self) -> bool {
        self.kernel.iter().chain(&self.strides).all(|&v| v == 1)
            && self.pb.iter().chain(&self.pe).all(|&v| v == 0)
    }
    fn eff(&self, a: usize) -> usize {
        self.dils[a] * (self.kernel[a] - 1) + 1
    }
}

/// One output row piece of a column tile: output positions `[ow0, ow1)` along the last axis (the other axes
/// fixed, see `Tile::outer`), stored from column `col` of the tile.
struct Seg {
    col: usize,
    ow0: usize,
    ow1: usize,
}

/// The output positions `[p0, p0 + len)` (row-major over the output plane) as row segments.
struct Tile {
    segs: Vec<Seg>,
    /// `rank - 1` output coordinates (all axes but the last) per segment.
    outer: Vec<usize>,
}

impl Tile {
    fn new(g: &Geom, p0: usize, len: usize) -> Tile {
        let r = g.rank();
        let ow_n = g.out_sp[r - 1];
        let (mut segs, mut outer) = (Vec::new(), Vec::new());
        let (mut p, end) = (p0, p0 + len);
        while p < end {
            let (row, ow0) = (p / ow_n, p % ow_n);
            let ow1 = ow_n.min(ow0 + (end - p));
            segs.push(Seg {
                col: p - p0,
                ow0,
                ow1,
            });
            let base = outer.len();
            outer.resize(base + r - 1, 0);
            let mut rem = row;
            for a in (0..r - 1).rev() {
                outer[base + a] = rem % g.out_sp[a];
                rem /= g.out_sp[a];
            }
            p += ow1 - ow0;
        }
        Tile { segs, outer }
    }
}

/// For kernel offset `kofs`: the in-bounds range `[lo, hi)` of last-axis output positions and the kernel
/// shift `k_last · dil_last`.
struct KRow {
    lo: usize,
    hi: usize,
    shift: usize,
}

/// Fill `rowoff` with, per segment of `tile`, the input-plane offset of the row that kernel offset `kofs` reads
/// (`PADDED` when that row lies in the padding).
fn kernel_rows(g: &Geom, tile: &Tile, kofs: usize, rowoff: &mut Vec<usize>) -> KRow {
    let last = g.rank() - 1;
    let kl = kofs % g.kernel[last];
    let shift = kl * g.dils[last];
    let (pbl, sl, wl, owl) = (g.pb[last], g.strides[last], g.in_sp[last], g.out_sp[last]);
    let hi = if wl + pbl > shift {
        ((wl + pbl - shift - 1) / sl + 1).min(owl)
    } else {
        0
    };
    let lo = if pbl > shift {
        (pbl - shift).div_ceil(sl)
    } else {
        0
    }
    .min(hi);
    rowoff.clear();
    for si in 0..tile.segs.len() {
        let mut ro = 0;
        for a in 0..last {
            let ka = (kofs / g.kstride[a]) % g.kernel[a];
            let i = tile.outer[si * last + a] * g.strides[a] + ka * g.dils[a];
            if i < g.pb[a] || i - g.pb[a] >= g.in_sp[a] {
                ro = PADDED;
                break;
            }
            ro += (i - g.pb[a]) * g.istride[a];
        }
        rowoff.push(ro);
    }
    KRow { lo, hi, shift }
}

/// im2col for the channels held by `x` (`nc` planes): `cols` holds `nc · kprod` rows of `tpi` values at row
/// stride `ld` (row `ci·kprod + kofs`; `ld > tpi` when several samples' columns sit side by side).
fn im2col(g: &Geom, tile: &Tile, x: &[f32], cols: &mut [f32], tpi: usize, ld: usize) {
    let (kp, inp, last) = (g.kprod(), g.in_plane(), g.rank() - 1);
    let (sl, pbl) = (g.strides[last], g.pb[last]);
    let nc = x.len() / inp;
    debug_assert!(nc == 0 || cols.len() >= (nc * kp - 1) * ld + tpi);
    let mut rowoff = Vec::with_capacity(tile.segs.len());
    for kofs in 0..kp {
        let kr = kernel_rows(g, tile, kofs, &mut rowoff);
        for ci in 0..nc {
            let row = &mut cols[(ci * kp + kofs) * ld..][..tpi];
            let plane = &x[ci * inp..(ci + 1) * inp];
            for (seg, &ro) in tile.segs.iter().zip(&rowoff) {
                let dst = &mut row[seg.col..seg.col + (seg.ow1 - seg.ow0)];
                if ro == PADDED {
                    dst.fill(0.0);
                    continue;
                }
                let v0 = kr.lo.clamp(seg.ow0, seg.ow1);
                let v1 = kr.hi.clamp(v0, seg.ow1);
                let (head, rest) = dst.split_at_mut(v0 - seg.ow0);
                let (mid, tail) = rest.split_at_mut(v1 - v0);
                head.fill(0.0);
                tail.fill(0.0);
                if v1 > v0 {
                    let start = ro + v0 * sl + kr.shift - pbl;
                    if sl == 1 {
                        mid.copy_from_slice(&plane[start..start + (v1 - v0)]);
                    } else {
                        for (d, s) in mid.iter_mut().zip(plane[start..].iter().step_by(sl)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// col2im scatter-add: the adjoint of `im2col`, accumulating `cols` into the `nc` planes of `dx`.
fn col2im(g: &Geom, tile: &Tile, cols: &[f32], dx: &mut [f32], tpi: usize) {
    let (kp, inp, last) = (g.kprod(), g.in_plane(), g.rank() - 1);
    let (sl, pbl) = (g.strides[last], g.pb[last]);
    let nc = dx.len() / inp;
    debug_assert_eq!(cols.len(), nc * kp * tpi);
    let mut rowoff = Vec::with_capacity(tile.segs.len());
    for kofs in 0..kp {
        let kr = kernel_rows(g, tile, kofs, &mut rowoff);
        for ci in 0..nc {
            let row = &cols[(ci * kp + kofs) * tpi..][..tpi];
            let plane = &mut dx[ci * inp..(ci + 1) * inp];
            for (seg, &ro) in tile.segs.iter().zip(&rowoff) {
                if ro == PADDED {
                    continue;
                }
                let v0 = kr.lo.clamp(seg.ow0, seg.ow1);
                let v1 = kr.hi.clamp(v0, seg.ow1);
                if v1 == v0 {
                    continue;
                }
                let src = &row[seg.col + (v0 - seg.ow0)..seg.col + (v1 - seg.ow0)];
                let start = ro + v0 * sl + kr.shift - pbl;
                if sl == 1 {
                    for (d, s) in plane[start..start + src.len()].iter_mut().zip(src) {
                        *d += *s;
                    }
                } else {
                    for (d, s) in plane[start..].iter_mut().step_by(sl).zip(src) {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// `o = a · b`, splitting the rows of `a` over the pool into `parts` single-threaded GEMMs.
fn gemm_split(o: ArrayViewMut2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>, parts: usize) {
    let m = a.nrows();
    if parts <= 1 {
        return matmul_into(o, a, b, false);
    }
    if m < 2 * 16 {
        // Too few rows to split: let the GEMM parallelise over its columns.
        return matmul_into(o, a, b, true);
    }
    let rows = m.div_ceil(parts).next_multiple_of(8);
    split_axis(o, Axis(0), rows).into_par_iter().for_each(|(r0, piece)| {
        let len = piece.nrows();
        matmul_into(piece, a.slice(s![r0..r0 + len, ..]), b, false);
    });
}

/// Column tile width for `kk` im2col rows, `og` output channels and `p` output positions, given `base`
/// independent (sample, group) items: cache-sized, with enough tiles that every thread gets work when the
/// plane allows, and, when there are few, a tile count that splits evenly over the threads.
///
/// Each tile's GEMM packs the whole `og × kk` weight matrix again, so a tile holds at least as many floats as
/// that matrix: for VGG16's 512-channel layers (a 9 MB matrix) this means one tile per thread, 165 → 185
/// GFLOP/s measured, while the 64–256-channel layers keep their cache-sized tiles.
fn tile_cols(kk: usize, og: usize, p: usize, base: usize) -> usize {
    let threads = rayon::current_num_threads();
    let tp = (TILE_FLOATS.max(og * kk) / kk.max(1)).min(TILE_FLOATS / og.max(1)).max(MIN_TILE_COLS).min(p);
    let max_nt = p.div_ceil(MIN_TILE_COLS);
    let mut nt = p.div_ceil(tp).max(threads.div_ceil(base).min(max_nt));
    if base * nt < 8 * threads {
        if let Some(t) = (nt..=max_nt).find(|t| (base * t).is_multiple_of(threads)) {
            nt = t;
        }
    }
    p.div_ceil(nt)
}

/// For the direct path: per kernel offset, the runs `(output offset, input offset, length)` of one plane that
/// the offset touches (the input run has the last axis' stride). Shared by every plane.
fn plane_runs(g: &Geom) -> Vec<Vec<(usize, usize, usize)>> {
    let last = g.rank() - 1;
    let (sl, pbl) = (g.strides[last], g.pb[last]);
    let tile = Tile::new(g, 0, g.out_plane());
    let mut rowoff = Vec::with_capacity(tile.segs.len());
    (0..g.kprod())
        .map(|k| {
            let kr = kernel_rows(g, &tile, k, &mut rowoff);
            tile.segs
                .iter()
                .zip(&rowoff)
                .filter_map(|(seg, &ro)| {
                    let v0 = kr.lo.clamp(seg.ow0, seg.ow1);
                    let v1 = kr.hi.clamp(v0, seg.ow1);
                    (ro != PADDED && v1 > v0).then(|| {
                        (
                            seg.col + (v0 - seg.ow0),
                            ro + v0 * sl + kr.shift - pbl,
                            v1 - v0,
                        )
                    })
                })
                .collect()
        })
        .collect()
}

/// Direct convolution for one input channel per group (depthwise with any multiplier, or a single-channel
/// input): per output plane, one strided axpy per kernel offset and row. im2col + a `K = k` GEMM is several
/// times slower here (measured ~2 GFLOP/s on depthwise 3×3).
fn forward_direct(g: &Geom, w: &[f32], x: &[f32], n: usize) -> Vec<f32> {
    let (og, kp, p, inp) = (g.og(), g.kprod(), g.out_plane(), g.in_plane());
    let sl = g.strides[g.rank() - 1];
    let mut out = vec![0f32; n * g.cout * p];
    if out.is_empty() {
        return out;
    }
    let runs = plane_runs(g);
    out.par_chunks_mut(p).enumerate().for_each(|(plane, o)| {
        let (b, oc) = (plane / g.cout, plane % g.cout);
        let xp = &x[(b * g.cin + oc / og) * inp..][..inp];
        for (&wv, runs) in w[oc * kp..(oc + 1) * kp].iter().zip(&runs) {
            for &(o0, i0, len) in runs {
                let dst = &mut o[o0..o0 + len];
                if sl == 1 {
                    for (d, s) in dst.iter_mut().zip(&xp[i0..i0 + len]) {
                        *d += wv * *s;
                    }
                } else {
                    for (d, s) in dst.iter_mut().zip(xp[i0..].iter().step_by(sl)) {
                        *d += wv * *s;
                    }
                }
            }
        }
    });
    out
}

/// The VJP of [`forward_direct`]: per input plane, scatter-axpy from each of its group's output planes.
fn transpose_direct(g: &Geom, w: &[f32], s_: &[f32], n: usize) -> Vec<f32> {
    let (og, kp, p, inp) = (g.og(), g.kprod(), g.out_plane(), g.in_plane());
    let sl = g.strides[g.rank() - 1];
    let mut dx = vec![0f32; n * g.cin * inp];
    if dx.is_empty() || p == 0 {
        return dx;
    }
    let runs = plane_runs(g);
    dx.par_chunks_mut(inp).enumerate().for_each(|(plane, d)| {
        let (b, c) = (plane / g.cin, plane % g.cin);
        for oc in c * og..(c + 1) * og {
            let sp = &s_[(b * g.cout + oc) * p..][..p];
            for (&wv, runs) in w[oc * kp..(oc + 1) * kp].iter().zip(&runs) {
                for &(o0, i0, len) in runs {
                    let src = &sp[o0..o0 + len];
                    if sl == 1 {
                        for (d, s) in d[i0..i0 + len].iter_mut().zip(src) {
                            *d += wv * *s;
                        }
                    } else {
                        for (d, s) in d[i0..].iter_mut().step_by(sl).zip(src) {
                            *d += wv * *s;
                        }
                    }
                }
            }
        }
    });
    dx
}

/// Forward convolution on a contiguous batch `x` of `n` samples; returns `(n, cout, out plane)` row-major.
fn forward_impl(g: &Geom, w: &[f32], x: &[f32], n: usize) -> Vec<f32> {
    let (cg, kp, inp) = (g.cg(), g.kprod(), g.in_plane());
    let kk = cg * kp;
    assert_eq!(
        w.len(),
        g.cout * kk,
        "conv: weight has {} values, expected {}",
        w.len(),
        g.cout * kk
    );
    assert_eq!(x.len(), n * g.cin * inp, "conv: input size");
    if cg == 1 {
        return forward_direct(g, w, x, n);
    }
    if let Some(s) = winograd_shape(g, n) {
        return winograd::conv3x3(&s, w, false, x);
    }
    forward_gemm(g, ArrayView2::from_shape((g.cout, kk), w).expect("weight shape"), x, n)
}

/// Whether Winograd is switched on: yes, unless `RELPROP_WINOGRAD=0` (read once; for A/B timings and for
/// anyone who wants im2col's summation order everywhere).
fn winograd_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("RELPROP_WINOGRAD").map_or(true, |v| v != "0"))
}

/// The Winograd geometry of `g` on `n` samples, when it is a 3×3, stride-1, undilated, ungrouped 2-D
/// convolution with enough channels and tiles ([`winograd::Shape::worth_it`]).
fn winograd_shape(g: &Geom, n: usize) -> Option<winograd::Shape> {
    let fits = g.rank() == 2 && g.kernel == [3, 3] && g.strides == [1, 1] && g.dils == [1, 1] && g.groups == 1;
    if !fits || !winograd_enabled() {
        return None;
    }
    let s = winograd::Shape {
        n,
        ci: g.cin,
        co: g.cout,
        h: g.in_sp[0],
        w: g.in_sp[1],
        ho: g.out_sp[0],
        wo: g.out_sp[1],
        pt: g.pb[0],
        pl: g.pb[1],
    };
    s.worth_it().then_some(s)
}

/// The im2col + GEMM path of [`forward_impl`] with the weights as a `(cout, Cg·k)` matrix view (any strides:
/// the GEMM packs it).
fn forward_gemm(g: &Geom, w2: ArrayView2<f32>, x: &[f32], n: usize) -> Vec<f32> {
    let (cg, og, kp, p, inp) = (g.cg(), g.og(), g.kprod(), g.out_plane(), g.in_plane());
    let kk = cg * kp;
    let mut out = vec![0f32; n * g.cout * p];
    if out.is_empty() {
        return out;
    }
    let nb = samples_per_tile(kk, og, p, n);
    if nb > 1 {
        return forward_gemm_batched(g, w2, x, n, nb, out);
    }
    let base = n * g.groups;
    let tp = tile_cols(kk, og, p, base);
    let threads = rayon::current_num_threads();
    let items = base * p.div_ceil(tp);
    // Fewer tiles than threads: parallelise inside each tile instead.
    let inner = if items < threads { threads } else { 1 };
    let pointwise = g.pointwise();

    let mut jobs = Vec::with_capacity(items);
    for (bg, chunk) in out.chunks_mut(og * p).enumerate() {
        let view = ArrayViewMut2::from_shape((og, p), chunk).expect("output chunk");
        for (p0, tile) in split_axis(view, Axis(1), tp) {
            jobs.push((bg, p0, tile));
        }
    }
    jobs.into_par_iter().for_each(|(bg, p0, o)| {
        let grp = bg % g.groups;
        let xg = &x[bg * cg * inp..(bg + 1) * cg * inp];
        let wg = w2.slice(s![grp * og..(grp + 1) * og, ..]);
        let tpi = o.ncols();
        if pointwise {
            let b = ArrayView2::from_shape((cg, inp), xg).expect("input chunk");
            return gemm_split(o, wg, b.slice(s![.., p0..p0 + tpi]), inner);
        }
        let tile = Tile::new(g, p0, tpi);
        with_scratch(&COLS_SCRATCH, kk * tpi, |cols| {
            if inner > 1 && cg > 1 {
                let cc = cg.div_ceil(inner);
                cols.par_chunks_mut(cc * kp * tpi)
                    .zip(xg.par_chunks(cc * inp))
                    .for_each(|(cols, xc)| im2col(g, &tile, xc, cols, tpi, tpi));
            } else {
                im2col(g, &tile, xg, cols, tpi, tpi);
            }
            gemm_split(
                o,
                wg,
                ArrayView2::from_shape((kk, tpi), &*cols).expect("cols"),
                inner,
            );
        });
    });
    out
}

/// Planes above this many positions get one GEMM per sample even when a sample fills less than a column tile:
/// the batched GEMM's `(og, nb·p)` result no longer stays in cache, and copying it out to the samples cost more
/// than the weight packing it saves. Measured on ResNet50's 1×1 layers at batch 8 (2 threads): 64 → 256
/// channels at 56×56 78–91 → 124–143 GFLOP/s, 128 → 512 at 28×28 96 → 193, and their transposes alike.
const BATCH_MAX_PLANE: usize = 512;

/// How many samples one GEMM of [`forward_gemm`] covers: 1 when a sample's plane fills a cache-sized column
/// tile ([`tile_cols`]) or exceeds [`BATCH_MAX_PLANE`], else enough samples side by side to fill one. Each GEMM packs the whole `og × kk`
/// weight matrix, so on small planes (ResNet50's 7×7 and 14×14, 49 and 196 columns) a per-sample GEMM spends
/// a large share of its time packing weights and on narrow edge blocks.
fn samples_per_tile(kk: usize, og: usize, p: usize, n: usize) -> usize {
    let target = (TILE_FLOATS.max(og * kk) / kk.max(1)).max(MIN_TILE_COLS);
    if p == 0 || 2 * p > target || p > BATCH_MAX_PLANE {
        1
    } else {
        target.div_ceil(p).min(n)
    }
}

/// [`forward_gemm`] with the columns of `nb` samples (same group) side by side in one im2col buffer: one GEMM
/// into a `(og, nb·p)` buffer, whose row pieces are then copied to each sample's output.
fn forward_gemm_batched(
    g: &Geom,
    w2: ArrayView2<f32>,
    x: &[f32],
    n: usize,
    nb: usize,
    mut out: Vec<f32>,
) -> Vec<f32> {
    let (cg, og, kp, p, inp) = (g.cg(), g.og(), g.kprod(), g.out_plane(), g.in_plane());
    let kk = cg * kp;
    let threads = rayon::current_num_threads();
    // Output chunk of (sample b, group grp) is chunk b·groups + grp; a job takes nb samples of one group.
    let mut chunks: Vec<Option<&mut [f32]>> = out.chunks_mut(og * p).map(Some).collect();
    let mut jobs = Vec::new();
    for grp in 0..g.groups {
        for b0 in (0..n).step_by(nb) {
            let bs: Vec<usize> = (b0..n.min(b0 + nb)).collect();
            let outs: Vec<&mut [f32]> = bs
                .iter()
                .map(|&b| chunks[b * g.groups + grp].take().expect("each chunk once"))
                .collect();
            jobs.push((grp, bs, outs));
        }
    }
    let inner = if jobs.len() < threads { threads } else { 1 };
    let pointwise = g.pointwise();
    let tile = Tile::new(g, 0, p);
    jobs.into_par_iter().for_each(|(grp, bs, outs)| {
        let ld = bs.len() * p;
        let xs: Vec<&[f32]> = bs
            .iter()
            .map(|&b| &x[(b * g.groups + grp) * cg * inp..][..cg * inp])
            .collect();
        let wg = w2.slice(s![grp * og..(grp + 1) * og, ..]);
        let mut tmp = vec![0f32; og * ld];
        with_scratch(&COLS_SCRATCH, kk * ld, |cols| {
            // Row chunks of `cc` channels (all samples' columns of those rows) go to different threads.
            let cc = if inner > 1 { cg.div_ceil(inner) } else { cg };
            cols.par_chunks_mut(cc * kp * ld)
                .enumerate()
                .for_each(|(ci, rows)| {
                    for (j, xb) in xs.iter().enumerate() {
                        let xc = &xb[ci * cc * inp..((ci + 1) * cc).min(cg) * inp];
                        if pointwise {
                            for (r, plane) in xc.chunks(inp).enumerate() {
                                rows[r * ld + j * p..][..p].copy_from_slice(plane);
                            }
                        } else {
                            im2col(g, &tile, xc, &mut rows[j * p..], p, ld);
                        }
                    }
                });
            gemm_split(
                ArrayViewMut2::from_shape((og, ld), &mut tmp[..]).expect("tmp"),
                wg,
                ArrayView2::from_shape((kk, ld), &*cols).expect("cols"),
                inner,
            );
        });
        for (j, o) in outs.into_iter().enumerate() {
            for (r, row) in o.chunks_mut(p).enumerate() {
                row.copy_from_slice(&tmp[r * ld + j * p..][..p]);
            }
        }
    });
    out
}

/// The VJP through the scatter path (any strides/pads): returns `(n, cin, in plane)` row-major.
fn transpose_scatter(g: &Geom, w: &[f32], s_: &[f32], n: usize) -> Vec<f32> {
    let (cg, og, kp, p, inp) = (g.cg(), g.og(), g.kprod(), g.out_plane(), g.in_plane());
    let kk = cg * kp;
    let mut dx = vec![0f32; n * g.cin * inp];
    if dx.is_empty() || p == 0 {
        return dx;
    }
    let base = n * g.groups;
    let threads = rayon::current_num_threads();
    let inner = if base < threads { threads } else { 1 };
    let tp = (TILE_FLOATS / kk).max(MIN_TILE_COLS).min(p);
    // Per group, W_gᵀ (kk × og) as a strided view: the GEMM packs it anyway, and a transposed copy of the
    // weights on every call cost more than the product on small planes (ResNet50's 7×7 layers: 14 ms → 4 ms).
    {
        dx.par_chunks_mut(cg * inp)
            .enumerate()
            .for_each(|(bg, dxg)| {
                let grp = bg % g.groups;
                let sg = ArrayView2::from_shape((og, p), &s_[bg * og * p..(bg + 1) * og * p])
                    .expect("s chunk");
                let wgt = ArrayView2::from_shape((og, kk), &w[grp * og * kk..(grp + 1) * og * kk])
                    .expect("weight")
                    .reversed_axes();
                with_scratch(&COLS_SCRATCH, kk * tp, |buf| {
                    let mut p0 = 0;
                    while p0 < p {
                        let tpi = tp.min(p - p0);
                        let tile = Tile::new(g, p0, tpi);
                        let cols = &mut buf[..kk * tpi];
                        gemm_split(
                            ArrayViewMut2::from_shape((kk, tpi), &mut *cols).expect("cols"),
                            wgt,
                            sg.slice(s![.., p0..p0 + tpi]),
                            inner,
                        );
                        if inner > 1 && cg > 1 {
                            let cc = cg.div_ceil(inner);
                            cols.par_chunks(cc * kp * tpi)
                                .zip(dxg.par_chunks_mut(cc * inp))
                                .for_each(|(cols, dxc)| col2im(g, &tile, cols, dxc, tpi));
                        } else {
                            col2im(g, &tile, cols, dxg, tpi);
                        }
                        p0 += tpi;
                    }
                });
            });
    }
    dx
}

/// `wf[(grp·cg + ci), oi, kp-1-k] = w[(grp·og + oi), ci, k]`: swap in/out channels within each group and flip
/// every spatial axis (which reverses the flat kernel index). Blocked 16×16 over (ci, oi) for locality.
fn flip_kernel(w: &[f32], wf: &mut [f32], cg: usize, og: usize, kp: usize) {
    const BLK: usize = 16;
    let row_len = og * kp;
    wf.par_chunks_mut(BLK * row_len)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let rows = chunk.len() / row_len;
            for o0 in (0..og).step_by(BLK) {
                for rr in 0..rows {
                    let (grp, ci) = ((bi * BLK + rr) / cg, (bi * BLK + rr) % cg);
                    for oi in o0..og.min(o0 + BLK) {
                        let src = &w[((grp * og + oi) * cg + ci) * kp..][..kp];
                        let dst = &mut chunk[(rr * og + oi) * kp..][..kp];
                        for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                            *d = *s;
                        }
                    }
                }
            }
        });
}

/// Below this many input channels per group the flipped convolution's GEMM has too few rows to be efficient
/// and the scatter path wins (measured on a 3-channel first layer: 3.0 ms vs 4.0 ms).
const FLIP_MIN_CHANNELS: usize = 16;

/// Below this many columns in all (samples × input positions), a spatial kernel's flipped convolution loses to
/// the scatter path: the flip copies the whole weight tensor on every call, and the narrow GEMM splits its
/// rows over the threads, each packing the whole im2col buffer. Measured (2 threads, batch 1): ResNet50's
/// 3×3 layers at 14×14, 256 channels 159 → 184 GFLOP/s and at 7×7, 512 channels 106 → 123 with scatter; at
/// 28×28 and above, or 8 samples of 7×7 (392 columns), the flipped path is as fast or faster (160 vs 100).
const FLIP_MIN_COLUMNS: usize = 256;
/// Above this many weights the scatter path's GEMM (which packs the strided Wᵀ) raised VGG16's peak memory by
/// 45 MiB (its 512-channel 14×14 layers), for a gain within the noise, so large kernels keep the flip, unless
/// there are at most [`SCATTER_ALWAYS_COLUMNS`] columns.
const SCATTER_MAX_WEIGHTS: usize = 1 << 20;
/// At most this many columns (ResNet50's 7×7 planes at batch 1) the flip's copy of the whole weight tensor costs
/// more than the product: 512 channels, 3×3, 7×7 transpose 3.05 → 1.90 ms with scatter (forward 1.5–2.2 ms).
const SCATTER_ALWAYS_COLUMNS: usize = 64;

/// Whether the flipped convolution costs more than the scatter path (see [`FLIP_MIN_COLUMNS`]); 1×1 kernels
/// need no flip copy (they read Wᵀ as a view).
fn flip_too_costly(g: &Geom, n: usize) -> bool {
    g.kprod() > 1
        && n * g.in_plane() < FLIP_MIN_COLUMNS
        && (g.cout * g.cg() * g.kprod() <= SCATTER_MAX_WEIGHTS || n * g.in_plane() <= SCATTER_ALWAYS_COLUMNS)
}

/// Whether the VJP is a stride-1 convolution with the flipped kernel: unit strides, pads below the dilated
/// kernel extent.
fn flip_applies(g: &Geom) -> bool {
    g.strides.iter().all(|&v| v == 1)
        && (0..g.rank()).all(|a| g.pb[a] < g.eff(a) && g.pe[a] < g.eff(a))
}

/// The VJP as a stride-1 forward convolution of `s` with the flipped, transposed kernel (needs
/// [`flip_applies`]).
fn transpose_as_conv(g: &Geom, w: &[f32], s_: &[f32], n: usize) -> Vec<f32> {
    let r = g.rank();
    let flipped = || {
        Geom::build(
            g.cout,
            g.cin,
            g.groups,
            g.kernel.clone(),
            vec![1; r],
            g.dils.clone(),
            (0..r).map(|a| g.eff(a) - 1 - g.pb[a]).collect(),
            (0..r).map(|a| g.eff(a) - 1 - g.pe[a]).collect(),
            g.out_sp.clone(),
        )
    };
    let flipped = flipped();
    debug_assert_eq!(flipped.out_sp, g.in_sp);
    if let Some(ws) = winograd_shape(&flipped, n) {
        // The Winograd kernel transform reads the forward weights flipped in place: no flipped copy.
        return winograd::conv3x3(&ws, w, true, s_);
    }
    if g.kprod() == 1 && g.groups == 1 && flipped.cg() > 1 {
        // A 1×1 kernel with one group: the flipped kernel is just Wᵀ, a strided view (no copy).
        let wt = ArrayView2::from_shape((g.cout, g.cin), w).expect("weight shape");
        return forward_gemm(&flipped, wt.t(), s_, n);
    }
    with_scratch(&FLIP_SCRATCH, w.len(), |wf| {
        flip_kernel(w, wf, g.cg(), g.og(), g.kprod());
        forward_impl(&flipped, wf, s_, n)
    })
}

/// Convolution without bias of the batch `x` `(N, C, spatial...)` with `weight` (laid out like `c.weight`,
/// `(O, C/groups, k...)`, e.g. a modified copy W⁺ or W²) and `c`'s strides, dilations, pads and groups.
/// Returns `(N, O, out spatial...)`.
pub fn conv_forward(c: &Conv, weight: &[f32], x: ArrayViewD<f32>) -> ArrayD<f32> {
    assert!(x.ndim() >= 2, "conv: input must be batched (N, C, ...)");
    let n = x.shape()[0];
    let g = Geom::from_conv(c, &x.shape()[1..]);
    let x = x.as_standard_layout();
    let out = forward_impl(&g, weight, x.as_slice().expect("standard layout"), n);
    let shape: Vec<usize> = [n, g.cout]
        .into_iter()
        .chain(g.out_sp.iter().copied())
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), out).expect("output shape")
}

/// Vector-Jacobian product of [`conv_forward`] with respect to its input: for `s` of the output shape
/// `(N, O, out spatial...)`, the gradient of `<s, conv(x)>` w.r.t. `x`, of shape `(N, in_shape...)`, where
/// `in_shape` is the per-sample input shape `(C, spatial...)`.
pub fn conv_transpose(
    c: &Conv,
    weight: &[f32],
    s: ArrayViewD<f32>,
    in_shape: &[usize],
) -> ArrayD<f32> {
    assert!(
        s.ndim() >= 2,
        "conv transpose: s must be batched (N, O, ...)"
    );
    let n = s.shape()[0];
    let g = Geom::from_conv(c, in_shape);
    let expect: Vec<usize> = std::iter::once(g.cout)
        .chain(g.out_sp.iter().copied())
        .collect();
    assert_eq!(
        &s.shape()[1..],
        &expect[..],
        "conv transpose: s has the wrong per-sample shape"
    );
    assert_eq!(
        weight.len(),
        g.cout * g.cg() * g.kprod(),
        "conv transpose: weight size"
    );
    let s = s.as_standard_layout();
    let s = s.as_slice().expect("standard layout");
    let dx = if g.cg() == 1 {
        transpose_direct(&g, weight, s, n)
    } else if flip_applies(&g) && g.cg() >= FLIP_MIN_CHANNELS && !flip_too_costly(&g, n) {
        transpose_as_conv(&g, weight, s, n)
    } else {
        transpose_scatter(&g, weight, s, n)
    };
    let shape: Vec<usize> = std::iter::once(n).chain(in_shape.iter().copied()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), dx).expect("input shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_close, dot, unravel, Rng};
    use relprop_core::tensor::Tensor;
    use std::sync::Arc;

    fn conv(
        wshape: Vec<usize>,
        strides: Vec<usize>,
        dils: Vec<usize>,
        pb: Vec<usize>,
        pe: Vec<usize>,
        groups: usize,
        rng: &mut Rng,
    ) -> Conv {
        let n = wshape.iter().product();
        Conv {
            weight: Arc::new(Tensor::new(wshape, rng.vec(n)).unwrap()),
            bias: None,
            strides,
            dilations: dils,
            pads_begin: pb,
            pads_end: pe,
            groups,
            activation: None,
            pointwise: None,
            transposed: None,
        }
    }

    /// Naive direct convolution and its transpose (scatter), n-D, nested loops over every index.
    fn naive(
        c: &Conv,
        w: &[f32],
        x: &[f32],
        in_shape: &[usize],
        n: usize,
        s: Option<&[f32]>,
    ) -> Vec<f32> {
        let g = Geom::from_conv(c, in_shape);
        let (cg, og, kp, p, inp) = (g.cg(), g.og(), g.kprod(), g.out_plane(), g.in_plane());
        let r = g.rank();
        let mut y = vec![0f32; n * g.cout * p];
        let mut dx = vec![0f32; n * g.cin * inp];
        for b in 0..n {
            for o in 0..g.cout {
                let grp = o / og;
                for pi in 0..p {
                    let op = unravel(pi, &g.out_sp);
                    for ci in 0..cg {
                        let cin = grp * cg + ci;
                        for k in 0..kp {
                            let kv = unravel(k, &g.kernel);
                            let mut idx = 0usize;
                            let mut ok = true;
                            for a in 0..r {
                                let i = (op[a] * g.strides[a] + kv[a] * g.dils[a]) as isize
                                    - g.pb[a] as isize;
                                if i < 0 || i >= g.in_sp[a] as isize {
                                    ok = false;
                                    break;
                                }
                                idx = idx * g.in_sp[a] + i as usize;
                            }
                            if !ok {
                                continue;
                            }
                            let wv = w[(o * cg + ci) * kp + k];
                            let xi = (b * g.cin + cin) * inp + idx;
                            let oi = (b * g.cout + o) * p + pi;
                            y[oi] += wv * x[xi];
                            if let Some(s) = s {
                                dx[xi] += wv * s[oi];
                            }
                        }
                    }
                }
            }
        }
        if s.is_some() {
            dx
        } else {
            y
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        name: &str,
        wshape: Vec<usize>,
        strides: Vec<usize>,
        dils: Vec<usize>,
        pb: Vec<usize>,
        pe: Vec<usize>,
        groups: usize,
        in_shape: Vec<usize>,
        n: usize,
    ) {
        let mut rng = Rng::new(name.len() as u64 * 7919 + in_shape.iter().sum::<usize>() as u64);
        let c = conv(wshape, strides, dils, pb, pe, groups, &mut rng);
        let w = c.weight.data.clone();
        let xshape: Vec<usize> = std::iter::once(n).chain(in_shape.iter().copied()).collect();
        let xlen: usize = xshape.iter().product();
        let x = ArrayD::from_shape_vec(IxDyn(&xshape), rng.vec(xlen)).unwrap();
        let y = conv_forward(&c, &w, x.view());
        let yn = naive(&c, &w, x.as_slice().unwrap(), &in_shape, n, None);
        assert_close(&format!("{name} forward"), y.as_slice().unwrap(), &yn, 1e-4);
        let sv = ArrayD::from_shape_vec(IxDyn(y.shape()), rng.vec(y.len())).unwrap();
        let dx = conv_transpose(&c, &w, sv.view(), &in_shape);
        assert_eq!(dx.shape(), x.shape());
        let dxn = naive(
            &c,
            &w,
            x.as_slice().unwrap(),
            &in_shape,
            n,
            Some(sv.as_slice().unwrap()),
        );
        assert_close(
            &format!("{name} transpose"),
            dx.as_slice().unwrap(),
            &dxn,
            1e-4,
        );
        // Adjoint identity <conv(x), s> == <x, conv^T(s)>.
        let (lhs, rhs) = (
            dot(y.as_slice().unwrap(), sv.as_slice().unwrap()),
            dot(x.as_slice().unwrap(), dx.as_slice().unwrap()),
        );
        assert!(
            (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(rhs.abs()).max(1.0),
            "{name}: adjoint {lhs} vs {rhs}"
        );
        // Both transpose paths, whichever conv_transpose picked.
        let g = Geom::from_conv(&c, &in_shape);
        let scatter = transpose_scatter(&g, &w, sv.as_slice().unwrap(), n);
        assert_close(&format!("{name} scatter path"), &scatter, &dxn, 1e-4);
        if flip_applies(&g) {
            let flip = transpose_as_conv(&g, &w, sv.as_slice().unwrap(), n);
            assert_close(&format!("{name} flipped-conv path"), &flip, &dxn, 1e-4);
        }
    }

    /// Geometries that take the Winograd path (forward and, through the flip, transpose), against the naive
    /// loops: odd planes, asymmetric and large pads, batches.
    #[test]
    fn conv2d_winograd_paths() {
        for (ci, co, h, w, pb, pe, n) in [(32, 40, 17, 15, 1, 1, 1), (48, 36, 11, 11, 0, 1, 3), (32, 32, 10, 10, 2, 2, 2), (64, 33, 18, 18, 0, 0, 1)] {
            let g = Geom::build(ci, co, 1, vec![3, 3], vec![1, 1], vec![1, 1], vec![pb, pb], vec![pe, pe], vec![h, w]);
            assert!(winograd_shape(&g, n).is_some(), "{ci}->{co} {h}x{w} should take the Winograd path");
            check("winograd", vec![co, ci, 3, 3], vec![1, 1], vec![1, 1], vec![pb, pb], vec![pe, pe], 1, vec![ci, h, w], n);
        }
    }

    /// Winograd against an f64 reference: small, and of the im2col path's size on the same inputs.
    #[test]
    fn winograd_rounds_like_im2col() {
        use winograd::tests::{max_err, reference, CASES};
        let mut rng = Rng::new(5);
        for (n, ci, co, h, w, pt, pl, pb, pr) in CASES {
            let g = Geom::build(ci, co, 1, vec![3, 3], vec![1, 1], vec![1, 1], vec![pt, pl], vec![pb, pr], vec![h, w]);
            let s = winograd_shape(&g, n).expect("Winograd applies");
            let (wt, x) = (rng.vec(co * ci * 9), rng.vec(n * ci * h * w));
            let r = reference(&s, &wt, &x);
            let direct = forward_gemm(&g, ArrayView2::from_shape((co, ci * 9), &wt[..]).unwrap(), &x, n);
            let (ed, ew) = (max_err(&direct, &r), max_err(&winograd::conv3x3(&s, &wt, false, &x), &r));
            assert!(ew < 2e-6, "{s:?}: Winograd error {ew:.2e}");
            assert!(ew <= 2.0 * ed, "{s:?}: Winograd error {ew:.2e}, im2col {ed:.2e}");
        }
    }

    #[test]
    fn conv2d_basic_same() {
        check(
            "2d same",
            vec![4, 3, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
            vec![3, 7, 9],
            3,
        );
    }
    #[test]
    fn conv2d_valid_nonsquare_kernel() {
        check(
            "2d valid",
            vec![5, 2, 2, 3],
            vec![1, 1],
            vec![1, 1],
            vec![0, 0],
            vec![0, 0],
            1,
            vec![2, 6, 11],
            2,
        );
    }
    #[test]
    fn conv2d_stride2() {
        check(
            "2d s2",
            vec![4, 3, 3, 3],
            vec![2, 2],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
            vec![3, 9, 8],
            3,
        );
    }
    #[test]
    fn conv2d_stride_mixed_asym_pads() {
        check(
            "2d s21 asym",
            vec![3, 2, 3, 2],
            vec![2, 1],
            vec![1, 1],
            vec![0, 1],
            vec![1, 0],
            1,
            vec![2, 8, 7],
            3,
        );
    }
    #[test]
    fn conv2d_dilation2() {
        check(
            "2d d2",
            vec![4, 3, 3, 3],
            vec![1, 1],
            vec![2, 2],
            vec![2, 2],
            vec![2, 2],
            1,
            vec![3, 9, 10],
            2,
        );
    }
    #[test]
    fn conv2d_dilation_stride_asym() {
        check(
            "2d d2 s2",
            vec![2, 3, 3, 2],
            vec![2, 3],
            vec![2, 3],
            vec![0, 2],
            vec![1, 0],
            1,
            vec![3, 12, 13],
            3,
        );
    }
    #[test]
    fn conv2d_asym_pad_even_kernel() {
        // Keras "same" with an even kernel: pad 0 before, 1 after.
        check(
            "2d even same",
            vec![3, 2, 2, 2],
            vec![1, 1],
            vec![1, 1],
            vec![0, 0],
            vec![1, 1],
            1,
            vec![2, 5, 7],
            3,
        );
    }
    #[test]
    fn conv2d_big_pads() {
        // Pads at least the kernel extent: forces the scatter transpose.
        check(
            "2d big pads",
            vec![2, 2, 2, 2],
            vec![1, 1],
            vec![1, 1],
            vec![2, 0],
            vec![1, 3],
            1,
            vec![2, 4, 5],
            2,
        );
    }
    #[test]
    fn conv2d_groups2() {
        check(
            "2d g2",
            vec![6, 2, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            2,
            vec![4, 6, 7],
            3,
        );
        check(
            "2d g2 s2",
            vec![4, 3, 3, 3],
            vec![2, 2],
            vec![1, 1],
            vec![0, 1],
            vec![1, 0],
            2,
            vec![6, 7, 6],
            2,
        );
    }
    #[test]
    fn conv2d_depthwise() {
        check(
            "2d dw",
            vec![5, 1, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            5,
            vec![5, 8, 6],
            3,
        );
        check(
            "2d dw s2",
            vec![4, 1, 3, 3],
            vec![2, 2],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            4,
            vec![4, 9, 7],
            3,
        );
        // single-channel input, one group
        check(
            "2d cin1",
            vec![6, 1, 3, 2],
            vec![2, 1],
            vec![1, 2],
            vec![1, 0],
            vec![0, 2],
            1,
            vec![1, 7, 8],
            2,
        );
        // depth multiplier 2
        check(
            "2d dw x2",
            vec![6, 1, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            3,
            vec![3, 5, 6],
            2,
        );
    }
    #[test]
    fn conv2d_pointwise() {
        check(
            "2d 1x1",
            vec![7, 5, 1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![0, 0],
            vec![0, 0],
            1,
            vec![5, 6, 9],
            3,
        );
        check(
            "2d 1x1 s2",
            vec![7, 5, 1, 1],
            vec![2, 2],
            vec![1, 1],
            vec![0, 0],
            vec![0, 0],
            1,
            vec![5, 6, 9],
            3,
        );
        check(
            "2d 1x1 g",
            vec![6, 2, 1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![0, 0],
            vec![0, 0],
            2,
            vec![4, 3, 5],
            2,
        );
    }
    #[test]
    fn conv2d_large_tiles() {
        // Several column tiles per sample, tiles spanning partial rows.
        check(
            "2d tiles",
            vec![8, 16, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
            vec![16, 45, 47],
            1,
        );
        check(
            "2d tiles s2",
            vec![8, 16, 3, 3],
            vec![2, 2],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
            vec![16, 90, 93],
            1,
        );
    }
    #[test]
    fn conv1d() {
        check(
            "1d same",
            vec![4, 3, 3],
            vec![1],
            vec![1],
            vec![1],
            vec![1],
            1,
            vec![3, 17],
            3,
        );
        check(
            "1d s2",
            vec![4, 3, 5],
            vec![2],
            vec![1],
            vec![2],
            vec![2],
            1,
            vec![3, 20],
            3,
        );
        check(
            "1d d2 asym",
            vec![4, 3, 3],
            vec![1],
            vec![2],
            vec![0],
            vec![1],
            1,
            vec![3, 15],
            3,
        );
        check(
            "1d causal",
            vec![2, 3, 4],
            vec![1],
            vec![2],
            vec![6],
            vec![0],
            1,
            vec![3, 15],
            2,
        );
        check(
            "1d g dw",
            vec![6, 1, 3],
            vec![2],
            vec![1],
            vec![1],
            vec![0],
            6,
            vec![6, 19],
            3,
        );
        check(
            "1d long",
            vec![4, 2, 7],
            vec![1],
            vec![1],
            vec![3],
            vec![3],
            1,
            vec![2, 40000],
            1,
        );
    }
    #[test]
    fn conv3d() {
        check(
            "3d",
            vec![3, 2, 2, 3, 2],
            vec![1, 2, 1],
            vec![1, 1, 2],
            vec![1, 0, 1],
            vec![0, 1, 1],
            1,
            vec![2, 4, 6, 5],
            2,
        );
        check(
            "3d same",
            vec![2, 2, 3, 3, 3],
            vec![1, 1, 1],
            vec![1, 1, 1],
            vec![1, 1, 1],
            vec![1, 1, 1],
            2,
            vec![4, 3, 4, 5],
            2,
        );
    }
    #[test]
    fn batched_small_planes() {
        // Several samples per GEMM (forward_gemm_batched): two jobs of 5 and 2 samples, groups, pointwise.
        check(
            "batched jobs",
            vec![8, 64, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
            vec![64, 10, 20],
            7,
        );
        check(
            "batched g2 s2",
            vec![8, 32, 3, 3],
            vec![2, 2],
            vec![1, 1],
            vec![1, 0],
            vec![0, 1],
            2,
            vec![64, 10, 20],
            7,
        );
        check(
            "batched 1x1",
            vec![16, 64, 1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![0, 0],
            vec![0, 0],
            1,
            vec![64, 10, 20],
            7,
        );
        assert_eq!(samples_per_tile(576, 8, 200, 7), 5);
        assert_eq!(samples_per_tile(576, 8, 3136, 7), 1);
    }

    #[test]
    fn thread_pool_shapes() {
        // Few (sample, group, tile) items against more threads: exercises the split-inside-a-tile paths
        // (parallel im2col/col2im over channels, GEMM split over rows or inside gemm) whatever the host has.
        for threads in [1, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                check(
                    "inner many rows",
                    vec![40, 6, 3, 3],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    1,
                    vec![6, 5, 6],
                    1,
                );
                check(
                    "inner few rows",
                    vec![5, 6, 3, 3],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    1,
                    vec![6, 5, 6],
                    1,
                );
                check(
                    "inner s2",
                    vec![40, 6, 3, 3],
                    vec![2, 2],
                    vec![1, 1],
                    vec![1, 1],
                    vec![0, 0],
                    1,
                    vec![6, 9, 8],
                    1,
                );
                check(
                    "inner g2",
                    vec![36, 6, 3, 3],
                    vec![2, 1],
                    vec![1, 1],
                    vec![1, 0],
                    vec![0, 1],
                    2,
                    vec![12, 9, 8],
                    1,
                );
                check(
                    "inner 1x1",
                    vec![48, 6, 1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    vec![0, 0],
                    vec![0, 0],
                    1,
                    vec![6, 5, 7],
                    1,
                );
                check(
                    "inner tiles",
                    vec![8, 4, 3, 3],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    1,
                    vec![4, 13, 15],
                    1,
                );
                check(
                    "inner batch 3",
                    vec![8, 4, 3, 3],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    vec![1, 1],
                    1,
                    vec![4, 4, 5],
                    3,
                );
            });
        }
    }

    #[test]
    fn conv_avx512_engine() {
        // The opt-in GEMM engine through the conv paths (other tests running meanwhile may use it too; both
        // engines are exact enough for every test).
        use crate::kernels::gemm::{engine, set_engine, Engine};
        let before = engine();
        set_engine(Engine::Avx512);
        check("avx 2d", vec![20, 17, 3, 3], vec![1, 1], vec![1, 1], vec![1, 1], vec![1, 1], 1, vec![17, 9, 13], 2);
        check("avx s2 g2", vec![18, 9, 3, 3], vec![2, 2], vec![1, 1], vec![0, 1], vec![1, 0], 2, vec![18, 11, 10], 3);
        check("avx 1x1", vec![33, 19, 1, 1], vec![1, 1], vec![1, 1], vec![0, 0], vec![0, 0], 1, vec![19, 7, 9], 1);
        check("avx 1d", vec![9, 20, 5], vec![1], vec![2], vec![4], vec![4], 1, vec![20, 300], 2);
        set_engine(before);
    }

    #[test]
    fn modified_weight_and_views() {
        // A different weight than c.weight, and a non-contiguous input view.
        let mut rng = Rng::new(5);
        let c = conv(
            vec![3, 2, 3, 3],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            vec![1, 1],
            1,
            &mut rng,
        );
        let wplus: Vec<f32> = c.weight.data.iter().map(|v| v.max(0.0)).collect();
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 5, 6, 2]), rng.vec(120)).unwrap();
        let xt = x.view().permuted_axes(IxDyn(&[0, 3, 1, 2]));
        let y = conv_forward(&c, &wplus, xt.view());
        let xs = xt.as_standard_layout().to_owned();
        let yn = naive(&c, &wplus, xs.as_slice().unwrap(), &[2, 5, 6], 2, None);
        assert_close("views", y.as_slice().unwrap(), &yn, 1e-4);
    }

    /// CPU time of all threads of this process so far, in ns (Linux; 0 elsewhere).
    fn process_cpu_ns() -> u64 {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Times one layer: forward, conv_transpose, and both transpose paths; prints GFLOP/s.
    #[allow(clippy::too_many_arguments)]
    fn bench_layer(
        label: &str,
        wshape: Vec<usize>,
        stride: usize,
        pad: usize,
        groups: usize,
        in_shape: Vec<usize>,
        n: usize,
    ) {
        use std::time::Instant;
        crate::alloc::tune_allocator(); // as inside a model: freed tensors are reused, not page-faulted in again
        let mut rng = Rng::new(1);
        let r = in_shape.len() - 1;
        let c = conv(
            wshape,
            vec![stride; r],
            vec![1; r],
            vec![pad; r],
            vec![pad; r],
            groups,
            &mut rng,
        );
        let xlen = n * in_shape.iter().product::<usize>();
        let xshape: Vec<usize> = std::iter::once(n).chain(in_shape.iter().copied()).collect();
        let x = ArrayD::from_shape_vec(IxDyn(&xshape), rng.vec(xlen)).unwrap();
        let w = c.weight.data.clone();
        let y = conv_forward(&c, &w, x.view());
        let flop = 2.0 * (y.len() * w.len() / c.weight.shape[0]) as f64;
        let reps = (10e9 / flop).clamp(3.0, 30.0) as usize;
        // Best wall time of `reps`, or with RELPROP_BENCH_CPU=1 the mean CPU time of all threads (a proxy
        // for the single-thread speed on a machine busy with other work; use with RAYON_NUM_THREADS=1).
        let cpu_mode = std::env::var_os("RELPROP_BENCH_CPU").is_some();
        let best = |f: &dyn Fn()| {
            if cpu_mode {
                let t0 = process_cpu_ns();
                (0..reps).for_each(|_| f());
                return (process_cpu_ns() - t0) as f64 * 1e-9 / reps as f64;
            }
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        // Both GEMM engines (the global switch; run the benches alone, with --test-threads=1).
        use crate::kernels::gemm::{engine, set_engine, Engine};
        let default = engine();
        let mut line = format!("{label} N={n}:");
        let g = Geom::from_conv(&c, &in_shape);
        for e in [Engine::GemmCrate, Engine::Avx512] {
            if set_engine(e) != e {
                continue;
            }
            let tf = best(&|| drop(std::hint::black_box(conv_forward(&c, &w, x.view()))));
            let tt = best(&|| drop(std::hint::black_box(conv_transpose(&c, &w, y.view(), &in_shape))));
            let ts = best(&|| drop(std::hint::black_box(transpose_scatter(&g, &w, y.as_slice().unwrap(), n))));
            line += &format!(
                " [{e:?}] forward {:.2} ms {:.0} GF/s, transpose {:.2} ms {:.0} GF/s (scatter {:.0}",
                tf * 1e3,
                flop / tf / 1e9,
                tt * 1e3,
                flop / tt / 1e9,
                flop / ts / 1e9
            );
            if flip_applies(&g) {
                let tc = best(&|| drop(std::hint::black_box(transpose_as_conv(&g, &w, y.as_slice().unwrap(), n))));
                line += &format!(", flipped {:.0}", flop / tc / 1e9);
            }
            line += ")";
        }
        set_engine(default);
        println!("{line}");
    }

    /// `cargo test -p relprop-ndarray --release bench_vgg -- --ignored --nocapture`: VGG16's 3×3 layers.
    #[test]
    #[ignore]
    fn bench_vgg_layers() {
        for (cin, cout, hw, n) in [
            (64, 64, 224, 1),
            (64, 64, 224, 2),
            (3, 64, 224, 1),
            (128, 128, 112, 1),
            (256, 256, 56, 1),
            (512, 512, 28, 1),
            (512, 512, 14, 1),
        ] {
            bench_same(3, cin, cout, hw, n);
        }
    }

    /// [`bench_layer`] for a `k×k` stride-1 "same" convolution on a square `hw × hw` plane.
    fn bench_same(k: usize, cin: usize, cout: usize, hw: usize, n: usize) {
        bench_layer(&format!("conv{k}x{k} {cin}->{cout} {hw}x{hw}"), vec![cout, cin, k, k], 1, k / 2, 1, vec![cin, hw, hw], n);
    }

    /// `cargo test -p relprop-ndarray --release bench_resnet -- --ignored --nocapture`: ResNet50's bottleneck
    /// shapes on the small planes (3×3 and 1×1, batch 1 and 8).
    #[test]
    #[ignore]
    fn bench_resnet_layers() {
        for (k, cin, cout, hw) in [
            (3, 64, 64, 56),
            (1, 64, 256, 56),
            (3, 128, 128, 28),
            (3, 256, 256, 14),
            (3, 512, 512, 7),
            (1, 256, 1024, 14),
            (1, 1024, 256, 14),
            (1, 512, 2048, 7),
            (1, 2048, 512, 7),
        ] {
            for n in [1, 8] {
                bench_same(k, cin, cout, hw, n);
            }
        }
    }

    /// Other layer kinds: depthwise, pointwise, strided (ResNet / MobileNet shapes), 1-D.
    #[test]
    #[ignore]
    fn bench_other_layers() {
        bench_layer(
            "dw3x3 32 112x112",
            vec![32, 1, 3, 3],
            1,
            1,
            32,
            vec![32, 112, 112],
            1,
        );
        bench_layer(
            "dw3x3 s2 64 112x112",
            vec![64, 1, 3, 3],
            2,
            1,
            64,
            vec![64, 112, 112],
            1,
        );
        bench_layer(
            "dw3x3 512 14x14",
            vec![512, 1, 3, 3],
            1,
            1,
            512,
            vec![512, 14, 14],
            1,
        );
        bench_layer(
            "pw1x1 64->128 56x56",
            vec![128, 64, 1, 1],
            1,
            0,
            1,
            vec![64, 56, 56],
            1,
        );
        bench_layer(
            "conv7x7 s2 3->64 224x224",
            vec![64, 3, 7, 7],
            2,
            3,
            1,
            vec![3, 224, 224],
            1,
        );
        bench_layer(
            "conv3x3 s2 128->256 56x56",
            vec![256, 128, 3, 3],
            2,
            1,
            1,
            vec![128, 56, 56],
            1,
        );
        bench_layer(
            "conv1x1 s2 256->512 56x56",
            vec![512, 256, 1, 1],
            2,
            0,
            1,
            vec![256, 56, 56],
            1,
        );
        bench_layer(
            "conv1d k5 64->64 L=8192",
            vec![64, 64, 5],
            1,
            2,
            1,
            vec![64, 8192],
            1,
        );
    }
}
