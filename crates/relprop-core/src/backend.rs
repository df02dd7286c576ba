//! The backend trait: what the CLI, the conformance suite and the benchmarks talk to.

use std::sync::Arc;

use crate::engine::{ExplainOptions, Explanation};
use crate::error::Result;
use crate::graph::Graph;
use crate::plan::RulePlan;
use crate::target::Target;
use crate::tensor::Tensor;

/// A numeric backend (ndarray, ONNX Runtime, libtorch).
pub trait Backend {
    /// Short name (`ndarray`, `ort`, `tch`).
    fn name(&self) -> &'static str;
    /// Prepare a model once: weights converted and cached, ready for many explanations with any plan.
    fn compile(&self, graph: Arc<Graph>) -> Result<Box<dyn CompiledModel>>;
}

/// A model prepared by a backend.
pub trait CompiledModel: Send + Sync {
    /// The model output for a batch.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// Explain a batch: relevance in the input's shape and layout.
    fn explain(&self, plan: &RulePlan, x: &Tensor, target: &Target, opts: &ExplainOptions) -> Result<Explanation<Tensor>>;
}
