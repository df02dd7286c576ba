//! Matrix products for the conv kernels: `dst = a · b` on 2-D ndarray views.
//!
//! Default engine: the `gemm` crate (0.18), single-threaded per call (the conv kernels parallelise over
//! column tiles themselves). Measured on the 2-core Zen 4 dev machine, f32, one thread, conv-shaped products
//! (m × k × n), GFLOP/s:
//!
//! | m × k × n          | gemm 0.18 | matrixmultiply 0.3 | AVX-512 kernel (opt-in) |
//! |--------------------|-----------|--------------------|-------------------------|
//! | 64 × 576 × 384     | 76        | 58–66              | 112                     |
//! | 128 × 1152 × 192   | 88–103    | 83                 | 114                     |
//! | 256 × 2304 × 192   | 88        | –                  | 102–112                 |
//! | 512 × 4608 × 192   | 92–101    | 61–85              | 100                     |
//!
//! `gemm` beat matrixmultiply on every shape and takes an explicit per-call `Parallelism`; matrixmultiply's
//! threading has its own pool sized by an environment variable, which oversubscribes inside rayon tasks.
//! `gemm`'s own AVX-512 kernels need its `nightly` feature, so on stable it runs AVX2+FMA (on Zen 4 AVX-512
//! FMAs run at the AVX2 rate anyway; Zen 4 peaks near 118 GFLOP/s per core).
//!
//! Opt-in engine ([`Engine::Avx512`], or `RELPROP_GEMM=avx512`): a register-blocked AVX-512 kernel (8 × 32 tile
//! of C in 16 zmm accumulators; A rows broadcast from the row-major weights and B rows read from the im2col
//! buffer in place, no packing). Its column in the table was measured standalone on a quiet machine; inside
//! the conv kernels on a machine loaded by other jobs it was no faster than `gemm` (the unpacked operands
//! suffer more from cache pollution), so it is not the default until it is confirmed on a quiet machine.

use std::sync::atomic::{AtomicU8, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// `dst = a · b` (overwrites `dst`) with the process' [`engine`]. With `parallel`, the columns are split over
/// the rayon pool.
pub(crate) fn matmul_into(dst: ArrayViewMut2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>, parallel: bool) {
    matmul_with(engine(), dst, a, b, parallel)
}

/// [`matmul_into`] with an explicit engine.
fn matmul_with(engine: Engine, dst: ArrayViewMut2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>, parallel: bool) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul: inner dimensions differ");
    assert_eq!(dst.dim(), (m, n), "matmul: destination shape");
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && n >= 2 * 64 {
        let width = n.div_ceil(threads).next_multiple_of(32);
        split_axis(dst, Axis(1), width).into_par_iter().for_each(|(j0, piece)| {
            let len = piece.ncols();
            matmul_serial(engine, piece, a, b.slice(ndarray::s![.., j0..j0 + len]));
        });
    } else {
        matmul_serial(engine, dst, a, b);
    }
}

/// Split a 2-D view along `axis` into pieces of at most `width`, each with its start index (the pieces keep the
/// view's lifetime, so they can go to different threads).
pub(crate) fn split_axis(v: ArrayViewMut2<'_, f32>, axis: Axis, width: usize) -> Vec<(usize, ArrayViewMut2<'_, f32>)> {
    let n = v.len_of(axis);
    let mut pieces = Vec::with_capacity(n.div_ceil(width.max(1)));
    let (mut rest, mut start) = (v, 0);
    while start < n {
        let len = width.min(n - start);
        let (head, tail) = rest.split_at(axis, len);
        pieces.push((start, head));
        rest = tail;
        start += len;
    }
    pieces
}

fn matmul_serial(engine: Engine, mut dst: ArrayViewMut2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if engine == Engine::Avx512 && avx512::available() && a.strides()[1] == 1 && b.strides()[1] == 1 && dst.strides()[1] == 1 {
        let (lda, ldb, ldc) = (a.strides()[0], b.strides()[0], dst.strides()[0]);
        if lda >= 0 && ldb >= 0 && ldc >= 0 {
            // SAFETY: the views guarantee rows 0..m (a, dst) / 0..k (b) of their widths at these row strides,
            // all with unit column stride; `dst` is a unique mutable view, so it aliases neither input.
            unsafe {
                avx512::gemm(
                    m,
                    n,
                    k,
                    a.as_ptr(),
                    lda as usize,
                    b.as_ptr(),
                    ldb as usize,
                    dst.as_mut_ptr(),
                    ldc as usize,
                )
            };
            return;
        }
    }
    let (ds, as_, bs) = (
        dst.strides().to_vec(),
        a.strides().to_vec(),
        b.strides().to_vec(),
    );
    // SAFETY: the three pointers and their strides come from live ndarray views whose shapes were checked by
    // the caller, so every element gemm touches lies inside a view; `dst` aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            ds[1],
            ds[0],
            false,
            a.as_ptr(),
            as_[1],
            as_[0],
            b.as_ptr(),
            bs[1],
            bs[0],
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The GEMM engine behind the conv kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The `gemm` crate (default).
    GemmCrate,
    /// The AVX-512 kernel of this module (x86-64 with AVX-512F only; unit-stride operands, else `gemm`).
    Avx512,
}

/// 0: not chosen yet, 1: gemm crate, 2: AVX-512.
static ENGINE: AtomicU8 = AtomicU8::new(0);

fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The engine in use: [`Engine::GemmCrate`] unless [`set_engine`] or the environment variable
/// `RELPROP_GEMM=avx512` (read once) picked the AVX-512 kernel on a CPU that has it.
pub fn engine() -> Engine {
    match ENGINE.load(Ordering::Relaxed) {
        1 => Engine::GemmCrate,
        2 => Engine::Avx512,
        _ => {
            let want = std::env::var("RELPROP_GEMM").map(|v| v.eq_ignore_ascii_case("avx512")).unwrap_or(false);
            set_engine(if want { Engine::Avx512 } else { Engine::GemmCrate })
        }
    }
}

/// Pick the engine for the whole process; returns the one in effect ([`Engine::Avx512`] falls back to
/// [`Engine::GemmCrate`] on CPUs without AVX-512F).
pub fn set_engine(e: Engine) -> Engine {
    let e = if e == Engine::Avx512 && !avx512_available() { Engine::GemmCrate } else { e };
    ENGINE.store(if e == Engine::Avx512 { 2 } else { 1 }, Ordering::Relaxed);
    e
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows of C per kernel call.
    const MR: usize = 8;
    /// Columns of C per kernel call (two zmm).
    const NR: usize = 32;
    /// Depth per pass (C is reloaded between passes): the B panel (KC × NR, 16 KiB) stays in L1.
    const KC: usize = 128;
    /// Rows of A per block (MC × KC, 64 KiB, stays in L2 while the block sweeps all of B's columns).
    const MC: usize = 128;

    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
    }

    /// `c = a · b` for row-major `a` (m × k, row stride lda), `b` (k × n, ldb), `c` (m × n, ldc).
    ///
    /// # Safety
    /// The CPU supports AVX-512F; the three matrices are valid for their extents at these row strides with unit
    /// column stride; `c` aliases neither input.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        // GotoBLAS order without packing: per KC-deep slice, per MC-row block of A (kept in L2), sweep the NR
        // panels of B (each reused from L1 by the block's MC/MR micro-rows).
        let mut k0 = 0;
        while k0 < k {
            let kb = KC.min(k - k0);
            let acc = k0 > 0;
            let mut i0 = 0;
            while i0 < m {
                let i1 = (i0 + MC).min(m);
                let mut j = 0;
                while j < n {
                    let nr = NR.min(n - j);
                    let bp = b.add(k0 * ldb + j);
                    let mut i = i0;
                    while i < i1 {
                        let mr = MR.min(i1 - i);
                        let (ap, cp) = (a.add(i * lda + k0), c.add(i * ldc + j));
                        if mr == MR && nr == NR {
                            kernel::<false>(kb, ap, lda, bp, ldb, cp, ldc, acc, MR, NR);
                        } else {
                            kernel::<true>(kb, ap, lda, bp, ldb, cp, ldc, acc, mr, nr);
                        }
                        i += MR;
                    }
                    j += NR;
                }
                i0 = i1;
            }
            k0 += kb;
        }
    }

    /// One `mr × nr` (at most 8 × 32) block of C: `c (+)= a[.., 0..k] · b[0..k, ..]`. `EDGE` = partial block:
    /// masked B/C accesses, A rows past `mr` re-read row 0 and their results are dropped.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const EDGE: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        acc: bool,
        mr: usize,
        nr: usize,
    ) {
        let (m0, m1): (u16, u16) = if EDGE {
            let lo = nr.min(16);
            let hi = nr - lo;
            (((1u32 << lo) - 1) as u16, ((1u32 << hi) - 1) as u16)
        } else {
            (u16::MAX, u16::MAX)
        };
        let mut rows = [a; MR];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = a.add((if r < mr { r } else { 0 }) * lda);
        }
        let mut c0 = [_mm512_setzero_ps(); MR];
        let mut c1 = [_mm512_setzero_ps(); MR];
        if acc {
            for r in 0..MR {
                if EDGE {
                    let (s0, s1) = if r < mr { (m0, m1) } else { (0, 0) };
                    c0[r] = _mm512_maskz_loadu_ps(s0, c.add(r * ldc));
                    c1[r] = _mm512_maskz_loadu_ps(s1, c.add(r * ldc + 16));
                } else {
                    c0[r] = _mm512_loadu_ps(c.add(r * ldc));
                    c1[r] = _mm512_loadu_ps(c.add(r * ldc + 16));
                }
            }
        }
        let mut bp = b;
        for kk in 0..k {
            let (b0, b1) = if EDGE {
                (
                    _mm512_maskz_loadu_ps(m0, bp),
                    _mm512_maskz_loadu_ps(m1, bp.add(16)),
                )
            } else {
                (_mm512_loadu_ps(bp), _mm512_loadu_ps(bp.add(16)))
            };
            for r in 0..MR {
                let av = _mm512_set1_ps(*rows[r].add(kk));
                c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
            }
            bp = bp.add(ldb);
        }
        for r in 0..MR {
            if EDGE {
                let (s0, s1) = if r < mr { (m0, m1) } else { (0, 0) };
                _mm512_mask_storeu_ps(c.add(r * ldc), s0, c0[r]);
                _mm512_mask_storeu_ps(c.add(r * ldc + 16), s1, c1[r]);
            } else {
                _mm512_storeu_ps(c.add(r * ldc), c0[r]);
                _mm512_storeu_ps(c.add(r * ldc + 16), c1[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_close, Rng};
    use ndarray::Array2;

    #[test]
    fn matmul_shapes_and_strides() {
        for e in [Engine::GemmCrate, Engine::Avx512] {
            // Tests share the process: pass the engine explicitly instead of switching the global.
            check_matmul(e);
        }
    }

    fn check_matmul(engine: Engine) {
        let matmul_into = |dst: ArrayViewMut2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>, parallel: bool| {
            matmul_with(engine, dst, a, b, parallel)
        };
        let mut rng = Rng::new(11);
        for &(m, k, n) in &[
            (1, 1, 1),
            (8, 256, 32),
            (9, 257, 33),
            (3, 600, 17),
            (17, 5, 70),
            (64, 300, 130),
            (13, 513, 47),
        ] {
            let a = Array2::from_shape_vec((m, k), rng.vec(m * k)).unwrap();
            let b = Array2::from_shape_vec((k, n), rng.vec(k * n)).unwrap();
            let reference = a.dot(&b);
            for parallel in [false, true] {
                let mut c = Array2::from_elem((m, n), f32::NAN);
                matmul_into(c.view_mut(), a.view(), b.view(), parallel);
                assert_close(
                    &format!("{m}x{k}x{n}"),
                    c.as_slice().unwrap(),
                    reference.as_slice().unwrap(),
                    1e-4,
                );
            }
            // Sub-views with row strides wider than the width, and a transposed A (gemm-crate path).
            let mut big = Array2::from_elem((m + 2, n + 5), f32::NAN);
            matmul_into(
                big.slice_mut(ndarray::s![1..m + 1, 2..n + 2]),
                a.view(),
                b.view(),
                false,
            );
            let got = big.slice(ndarray::s![1..m + 1, 2..n + 2]).to_owned();
            assert_close(
                "sub-view",
                got.as_slice().unwrap(),
                reference.as_slice().unwrap(),
                1e-4,
            );
            assert!(
                big.row(0).iter().all(|v| v.is_nan()) && big.column(1).iter().all(|v| v.is_nan()),
                "wrote outside"
            );
            let at = a.t().to_owned();
            let mut c = Array2::zeros((m, n));
            matmul_into(c.view_mut(), at.t(), b.view(), false);
            assert_close(
                "transposed a",
                c.as_slice().unwrap(),
                reference.as_slice().unwrap(),
                1e-4,
            );
        }
    }

    /// `cargo test -p relprop-ndarray --release bench_matmul -- --ignored --nocapture`: both engines on
    /// conv-shaped products (one thread; B and C with a wide row stride as in a conv tile).
    #[test]
    #[ignore]
    fn bench_matmul() {
        use std::time::Instant;
        let mut rng = Rng::new(2);
        for &(m, k, n, ld) in &[(64, 576, 455, 455), (128, 1152, 455, 455), (256, 2304, 227, 227), (512, 4608, 98, 196), (256, 1024, 98, 196), (128, 1024, 196, 196), (1024, 256, 98, 196), (512, 256, 196, 196)] {
            let a = Array2::from_shape_vec((m, k), rng.vec(m * k)).unwrap();
            let b = Array2::from_shape_vec((k, ld), rng.vec(k * ld)).unwrap();
            let mut c = Array2::zeros((m, ld));
            let flop = 2.0 * (m * k * n) as f64;
            let reps = (3e9 / flop) as usize + 1;
            let mut line = format!("{m}x{k}x{n}:");
            for e in [Engine::GemmCrate, Engine::Avx512, Engine::GemmCrate, Engine::Avx512] {
                let t = Instant::now();
                for _ in 0..reps {
                    matmul_with(e, c.slice_mut(ndarray::s![.., ..n]), a.view(), b.slice(ndarray::s![.., ..n]), false);
                }
                let dt = t.elapsed().as_secs_f64() / reps as f64;
                line += &format!(" {e:?} {:.0} GF/s |", flop / dt / 1e9);
            }
            println!("{line}");
        }
    }
}
