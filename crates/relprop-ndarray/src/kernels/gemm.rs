//! Thin safe wrapper over the `gemm` crate for 2-D ndarray views of any strides.
//!
//! Choice of GEMM (measured on the 2-core Zen 4 dev machine, f32, single thread, conv-shaped products):
//!
//! | m × k × n              | gemm 0.18 | matrixmultiply 0.3 |
//! |------------------------|-----------|--------------------|
//! | 64 × 576 × 4096        | 77 GF/s   | 58–66 GF/s         |
//! | 576 × 64 × 4096        | 94 GF/s   | 89–91 GF/s         |
//! | 512 × 4608 × 196       | 92 GF/s   | 61–85 GF/s         |
//! | 128 × 1152 × 12544     | 88 GF/s   | 83 GF/s            |
//! | 64 × 27 × 50176        | 62 GF/s   | 52–63 GF/s         |
//!
//! `gemm` (stable build: AVX2+FMA kernels; its AVX-512 kernels need nightly, and Zen 4 runs AVX-512 FMAs at
//! the same width anyway) is as fast or faster, and it takes an explicit per-call `Parallelism`, so the conv
//! kernels can parallelise over batch items / column tiles with single-threaded GEMMs (which scales better
//! than splitting one GEMM) and fall back to `Parallelism::Rayon` only when there are too few tiles.
//! matrixmultiply's threading uses its own pool sized by an environment variable, which oversubscribes
//! inside rayon tasks.

use ndarray::{ArrayView2, ArrayViewMut2};

/// `dst = a · b` (overwrites `dst`). `parallel` lets the GEMM itself use the rayon pool.
pub(crate) fn matmul_into(mut dst: ArrayViewMut2<f32>, a: ArrayView2<f32>, b: ArrayView2<f32>, parallel: bool) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul: inner dimensions differ");
    assert_eq!(dst.dim(), (m, n), "matmul: destination shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst.fill(0.0);
        return;
    }
    let (ds, as_, bs) = (dst.strides().to_vec(), a.strides().to_vec(), b.strides().to_vec());
    let par = if parallel { gemm::Parallelism::Rayon(rayon::current_num_threads()) } else { gemm::Parallelism::None };
    // SAFETY: the three pointers and their strides come from live ndarray views whose shapes were checked
    // above, so every element gemm touches (row < m/k, col < k/n) lies inside a view; `dst` is a unique
    // mutable view, so it aliases neither input.
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
            par,
        );
    }
}
