//! relprop-ndarray: the native backend (the embedded default; needs nothing installed).
//!
//! Convolutions run as im2col + GEMM ([`kernels`]); the LRP logic itself is the shared engine of
//! `relprop-core`, reached through this crate's [`relprop_core::engine::Numerics`] implementation.

mod alloc;
pub mod kernels;
mod model;
mod numerics;

use std::sync::Arc;

use relprop_core::{Backend, CompiledModel, Graph, Result};

pub use alloc::tune_allocator;
pub use model::NdModel;

/// The ndarray backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct NdarrayBackend;

impl Backend for NdarrayBackend {
    fn name(&self) -> &'static str {
        "ndarray"
    }
    fn compile(&self, graph: Arc<Graph>) -> Result<Box<dyn CompiledModel>> {
        Ok(Box::new(NdModel::new(graph)?))
    }
}
