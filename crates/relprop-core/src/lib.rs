//! relprop-core: the backend-free half of relprop.
//!
//! The model IR ([`graph`]), LRP rules as data ([`rules`], [`program`]), signxai's analyzer presets
//! ([`analyzers`]) and method names ([`methods`]), their resolution to a per-layer [`plan`], neuron selection
//! ([`target`]) and the generic explanation engine ([`engine`]) that every backend runs through its
//! [`engine::Numerics`] implementation.

pub mod error;
pub mod graph;
pub mod npy;
pub mod tensor;

pub use error::{Error, Result};
pub use graph::{Activation, BatchNorm, Conv, Dense, Graph, Layout, Node, Op, Pool};
pub use tensor::Tensor;
