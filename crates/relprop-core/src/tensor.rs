//! A minimal dense float32 tensor (row-major). Core stays free of ndarray; backends convert at their edge.

use crate::error::{Error, Result};

/// A row-major float32 tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from shape and data; errors when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Input(format!("shape {:?} needs {} values, got {}", shape, n, data.len())));
        }
        Ok(Tensor { shape, data })
    }
    /// A tensor filled with zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Batch size (first dimension).
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// The samples `[start, start+count)` of the batch as a new tensor.
    pub fn slice_batch(&self, start: usize, count: usize) -> Tensor {
        let per: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = count;
        Tensor { shape, data: self.data[start * per..(start + count) * per].to_vec() }
    }
    /// Concatenate tensors along the batch axis.
    pub fn concat_batch(parts: &[Tensor]) -> Tensor {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        Tensor { shape, data: parts.iter().flat_map(|p| p.data.iter().copied()).collect() }
    }
    /// Maximum absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
    /// max |a - b| / max |b|, the relative error used throughout the test suites.
    pub fn max_rel_diff(&self, reference: &Tensor) -> f32 {
        let d = self.data.iter().zip(&reference.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        d / reference.max_abs().max(f32::MIN_POSITIVE)
    }
    /// max |a - b|.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        self.data.iter().zip(&other.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
    }
}
