//! relprop-onnx: read ONNX models into relprop's IR ([`relprop_core::Graph`]) and write IR graphs back as ONNX.
//!
//! * [`load`] / [`decode`] (and their `_with` variants taking [`ImportOptions`]) turn an ONNX file into a
//!   validated [`Graph`]. Every malformed or unsupported input is an [`relprop_core::Error`], never a panic.
//! * [`graph_to_onnx`] and [`encode_model`] write a graph back as a plain opset-17 ONNX model; the [`builder`]
//!   helpers build ONNX graphs by hand (tests, tools).
//!
//! The protobuf types in [`proto`] are generated ahead of time from the vendored `proto/onnx.proto`
//! (`cargo run -p relprop-onnx --features gen-proto --example gen_proto`), so building this crate needs no `protoc`.

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod proto;

mod attrs;
pub mod builder;
mod convert;
mod export;
mod external;
mod fold;
mod import;
mod patterns;
mod shapes;
mod tensors;

pub use export::{encode_model, graph_to_onnx};
pub use import::{decode, decode_with, import_model, load, load_with, ImportOptions};
pub use relprop_core::Graph;

/// The layer a node belongs to, from its name: everything before the last `/` when that prefix is non-empty
/// (tf2onnx `model_a/conv1/BiasAdd__6` → `model_a/conv1`, PyTorch `/conv1/Conv` → `/conv1`), else the whole
/// name. Nodes of one Keras layer share it, which is what fuses `Dense(activation=...)` back into one layer.
pub fn layer_of(node_name: &str) -> &str {
    let layer = match node_name.rfind('/') {
        Some(i) if i > 0 => &node_name[..i],
        _ => node_name,
    };
    // Keras Dense on a rank-3 input computes in a `Tensordot` name scope (`model/d/Tensordot/MatMul`).
    layer.strip_suffix("/Tensordot").filter(|l| !l.is_empty()).unwrap_or(layer)
}
