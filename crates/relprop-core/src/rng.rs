//! A tiny deterministic generator (64-bit LCG) for seeded test models and inputs: the same seed gives the same
//! numbers on every machine, with no dependency. Also the rounding nudge and agreement bound shared by the
//! backend test suites.

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

/// `x` with every value multiplied by `1 + 4u·2⁻²³`, `u` uniform in (-1, 1) (fixed seed): a perturbation of the
/// size of the rounding a few float operations accumulate, to measure how much a map amplifies rounding.
pub fn ulp_nudge(x: &Tensor) -> Tensor {
    let mut r = Lcg(0x5eed);
    Tensor { shape: x.shape.clone(), data: x.data.iter().map(|&v| v * (1.0 + 4.0 * r.next() * f32::EPSILON)).collect() }
}

/// `x` with every value multiplied by `1 ± 1e-7` (signs from `seed`): about one ulp in every entry. Where a first
/// layer adds a constant (Keras Rescaling with an offset), most smaller steps round away.
pub fn sign_nudge(x: &Tensor, seed: u64) -> Tensor {
    let mut r = Lcg(seed);
    Tensor { shape: x.shape.clone(), data: x.data.iter().map(|&v| v * (1.0 + 1e-7f32.copysign(r.next()))).collect() }
}

/// [`ulp_nudge`] and three [`sign_nudge`]s of `x`: a map's largest change under them estimates how much it
/// amplifies rounding (one nudge alone can miss the few entries a near-zero denominator hangs on).
pub fn rounding_nudges(x: &Tensor) -> Vec<Tensor> {
    std::iter::once(ulp_nudge(x)).chain((1..=3).map(|seed| sign_nudge(x, seed))).collect()
}

/// How two backends' maps `a` and `b` are compared in the backend test suites: the relative difference must stay
/// within 1e-5, or, where the map amplifies float rounding, within 10× the reference map's own change under a
/// rounding-sized nudge of the input (`b_nudged`, from [`ulp_nudge`]). Maps that are zero up to 1e-6 (signxai's
/// Bounded) are compared absolutely, like the goldens. Returns (the difference, its bound, whether the
/// conditioning allowance was needed).
pub fn agreement(a: &Tensor, b: &Tensor, b_nudged: &Tensor) -> (f32, f32, bool) {
    if b.max_abs() < 1e-6 {
        return (a.max_abs_diff(b), 1e-6, false);
    }
    let rel = a.max_rel_diff(b);
    let bound = 1e-5f32.max(10.0 * b_nudged.max_rel_diff(b));
    (rel, bound, rel > 1e-5)
}
