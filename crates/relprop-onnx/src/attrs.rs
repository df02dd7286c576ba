//! Checked access to one ONNX node's attributes and inputs; every failure becomes an `Error::Node` naming it.

use relprop_core::Error;

use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, NodeProto};

/// Geometry attributes (strides, pads, kernel sizes, ...) above this are rejected: no real model comes close,
/// and the bound keeps all later shape arithmetic far from overflow.
pub(crate) const MAX_GEOMETRY: i64 = 1 << 24;

/// One ONNX node being converted, with its unique name and layer.
pub(crate) struct NodeCtx<'a> {
    pub proto: &'a NodeProto,
    /// Index in the graph's node list.
    pub index: usize,
    /// Unique name (the file's, or a generated one when missing or duplicated).
    pub name: String,
    pub op: &'a str,
    pub layer: String,
}

fn type_is(a: &AttributeProto, t: AttributeType) -> bool {
    // Some writers leave `type` out; then the presence of the value decides.
    a.r#type.is_none_or(|x| x == t as i32 || x == AttributeType::Undefined as i32)
}

impl NodeCtx<'_> {
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::node(&self.name, self.op, msg)
    }

    pub fn attr(&self, key: &str) -> Option<&AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name.as_deref() == Some(key))
    }

    pub fn int(&self, key: &str, default: i64) -> relprop_core::Result<i64> {
        match self.attr(key) {
            None => Ok(default),
            Some(a) => match a.i {
                Some(v) if type_is(a, AttributeType::Int) => Ok(v),
                _ => Err(self.err(format!("attribute '{key}' must be an int"))),
            },
        }
    }

    pub fn float(&self, key: &str, default: f32) -> relprop_core::Result<f32> {
        match self.attr(key) {
            None => Ok(default),
            Some(a) => match a.f {
                Some(v) if type_is(a, AttributeType::Float) => Ok(v),
                _ => Err(self.err(format!("attribute '{key}' must be a float"))),
            },
        }
    }

    pub fn string(&self, key: &str, default: &str) -> relprop_core::Result<String> {
        match self.attr(key) {
            None => Ok(default.into()),
            Some(a) => match &a.s {
                Some(v) if type_is(a, AttributeType::String) => {
                    String::from_utf8(v.clone()).map_err(|_| self.err(format!("attribute '{key}' is not UTF-8")))
                }
                _ => Err(self.err(format!("attribute '{key}' must be a string"))),
            },
        }
    }

    pub fn ints(&self, key: &str) -> relprop_core::Result<Option<Vec<i64>>> {
        match self.attr(key) {
            None => Ok(None),
            Some(a) if type_is(a, AttributeType::Ints) => Ok(Some(a.ints.clone())),
            Some(_) => Err(self.err(format!("attribute '{key}' must be a list of ints"))),
        }
    }

    /// A list of geometry ints (`kernel_shape`, `strides`, ...) of exactly `len` entries, each in
    /// `min..=MAX_GEOMETRY`; `default` when the attribute is absent.
    pub fn geometry(&self, key: &str, len: usize, min: i64, default: usize) -> relprop_core::Result<Vec<usize>> {
        match self.ints(key)? {
            None => Ok(vec![default; len]),
            Some(v) => {
                if v.len() != len {
                    return Err(self.err(format!("attribute '{key}' has {} entries, expected {len}", v.len())));
                }
                v.iter().map(|&x| self.bounded(key, x, min)).collect()
            }
        }
    }

    /// `x` as usize when `min <= x <= MAX_GEOMETRY`.
    pub fn bounded(&self, what: &str, x: i64, min: i64) -> relprop_core::Result<usize> {
        if x < min || x > MAX_GEOMETRY {
            return Err(self.err(format!("{what} value {x} out of range [{min}, {MAX_GEOMETRY}]")));
        }
        usize::try_from(x).map_err(|_| self.err(format!("{what} value {x} out of range")))
    }

    /// Name of input `i`, or None when absent (ONNX marks skipped optional inputs with "").
    pub fn input(&self, i: usize) -> Option<&str> {
        self.proto.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Name of output `i`, or None when absent.
    pub fn output(&self, i: usize) -> Option<&str> {
        self.proto.output.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Name of input `i`, which must be present.
    pub fn required_input(&self, i: usize) -> relprop_core::Result<&str> {
        self.input(i).ok_or_else(|| self.err(format!("missing input {i}")))
    }

    /// Name of the first output, which every converted node must have.
    pub fn main_output(&self) -> relprop_core::Result<&str> {
        self.output(0).ok_or_else(|| self.err("node has no output"))
    }
}
