//! Numeric kernels on ndarray: convolution (forward and VJP) and pooling, f32, channels-first batches
//! `(N, C, spatial...)`, parallel with rayon.

pub mod conv;
pub mod dense;
mod gemm;
pub mod pool;
mod winograd;

pub use conv::{conv_forward, conv_transpose};
pub use dense::{dense_forward, dense_transpose, STREAM_MAX_ROWS};
pub use gemm::{engine as gemm_engine, set_engine as set_gemm_engine, Engine as GemmEngine};
pub(crate) use pool::max_and_share;
pub use pool::{
    avgpool_forward, avgpool_transpose, global_avgpool_forward, global_avgpool_transpose,
    global_maxpool_forward, global_maxpool_route, maxpool_forward, maxpool_route, maxpool_route_ties, NO_WINNER,
};

#[cfg(test)]
pub(crate) mod test_util {
    /// Tiny deterministic PRNG (SplitMix64).
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [-1, 1).
        pub fn f32(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
        pub fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f32()).collect()
        }
    }

    /// Unravel a flat row-major index.
    pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut v = vec![0; shape.len()];
        for a in (0..shape.len()).rev() {
            v[a] = i % shape[a];
            i /= shape[a];
        }
        v
    }

    /// Element-wise `|a - b| <= tol · max(1, |b|)`.
    pub fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths differ");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * y.abs().max(1.0),
                "{what}: element {i}: {x} vs {y}"
            );
        }
    }

    /// Dot product in f64.
    pub fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }
}
