//! A tiny deterministic generator (64-bit LCG) for seeded test models and inputs: the same seed gives the same
//! numbers on every machine, with no dependency.

use std::sync::Arc;

use crate::tensor::Tensor;

/// Uniform(-1, 1) numbers from a seed.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number, uniform in [-1, 1).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// A weight tensor of `shape` with uniform(-1, 1) entries.
    pub fn tensor(&mut self, shape: &[usize]) -> Arc<Tensor> {
        let n = shape.iter().product();
        Arc::new(Tensor { shape: shape.to_vec(), data: (0..n).map(|_| self.next()).collect() })
    }
    /// An input of `shape`: every fifth value an exact zero (20%), the rest uniform(-1, 1), negatives included.
    pub fn input(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor { shape: shape.to_vec(), data: (0..n).map(|i| if i % 5 == 2 { 0.0 } else { self.next() }).collect() }
    }
}
