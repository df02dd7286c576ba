//! relprop-core: the backend-free half of relprop.
//!
//! The model IR ([`graph`]), LRP rules as data ([`rules`], [`program`]), signxai's analyzer presets
//! ([`analyzers`]) and method names ([`methods`]), their resolution to a per-layer [`plan`], neuron selection
//! ([`target`]), the generic explanation [`engine`] every backend runs through its [`engine::Numerics`]
//! primitives, and the [`backend`] trait the front ends use.

pub mod analyzers;
pub mod arrival;
pub mod backend;
pub mod engine;
pub mod error;
pub mod graph;
pub mod limits;
pub mod methods;
pub mod npy;
pub mod plan;
pub mod program;
pub mod rng;
pub mod rules;
pub mod target;
pub mod tensor;

pub use analyzers::{Analyzer, KernelChoice};
pub use arrival::MergeOrder;
pub use backend::{Backend, CompiledModel};
pub use engine::{ExplainOptions, Explanation};
pub use error::{Error, Result};
pub use graph::{Activation, BatchNorm, Conv, Coordinates, Dense, Graph, Interpolation, LayerNorm, Layout, Merge, Node, Op, PadMode, Pool};
pub use limits::Limits;
pub use plan::{LayerRule, RulePlan};
pub use rules::{Params, Rule};
pub use target::Target;
pub use tensor::Tensor;

/// Parse what the user asked for: a signxai method name, or an analyzer class with parameters.
pub fn analyzer_from(method: Option<&str>, class: Option<&str>, params: &Params) -> Result<Analyzer> {
    match (method, class) {
        (Some(m), None) => {
            if !params.0.is_empty() {
                return Err(Error::param("--param", params.0.keys().cloned().collect::<Vec<_>>().join(","), "method names carry their own parameters; use --analyzer CLASS to set parameters"));
            }
            methods::parse_method(m)
        }
        (None, Some(c)) => Analyzer::from_class(c, params),
        _ => Err(Error::param("method/analyzer", "", "give exactly one of a method name or an analyzer class")),
    }
}
