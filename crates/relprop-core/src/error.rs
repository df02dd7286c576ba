//! Errors are values: every failure names what is wrong (file, node, field, value).

use thiserror::Error;

/// Everything that can go wrong in relprop's core and backends.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The model file could not be read or decoded.
    #[error("model {file}: {msg}")]
    Model { file: String, msg: String },
    /// A node of the graph is malformed or unsupported.
    #[error("node '{node}' ({op}): {msg}")]
    Node { node: String, op: String, msg: String },
    /// An analyzer, rule or method name, or one of its parameters, is invalid.
    #[error("invalid parameter {field} = {value}: {msg}")]
    Param { field: String, value: String, msg: String },
    /// Something the user named does not exist (method, analyzer, rule).
    #[error("unknown {kind} '{name}'{hint}")]
    Unknown { kind: String, name: String, hint: String },
    /// The input tensor does not fit the model or holds non-finite values.
    #[error("input: {0}")]
    Input(String),
    /// The neuron selection does not fit the model output.
    #[error("target: {0}")]
    Target(String),
    /// Reproduces a documented signxai failure (see docs/divergences.md).
    #[error("{0}")]
    Signxai(String),
    /// A backend-specific failure.
    #[error("backend {backend}: {msg}")]
    Backend { backend: String, msg: String },
    /// A file could not be read or written.
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
}

/// Result alias used across relprop.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Param`].
    pub fn param(field: &str, value: impl std::fmt::Display, msg: impl Into<String>) -> Self {
        Error::Param { field: field.into(), value: value.to_string(), msg: msg.into() }
    }
    /// Shorthand for [`Error::Node`].
    pub fn node(node: &str, op: &str, msg: impl Into<String>) -> Self {
        Error::Node { node: node.into(), op: op.into(), msg: msg.into() }
    }
}
