//! Decoding of constant tensors (initializers and `Constant` nodes) from untrusted `TensorProto`s.
//!
//! Sizes are computed with checked arithmetic and compared with the bytes actually present before anything is
//! allocated, so a tensor that claims to be huge fails with a message instead of exhausting memory.

use crate::proto::tensor_proto::DataType;
use crate::proto::TensorProto;

/// Values of a constant, in the two element types the importer works with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConstData {
    /// float32 (float64 is narrowed on load).
    F32(Vec<f32>),
    /// int64 (int32 is widened on load): shapes, axes, pads.
    I64(Vec<i64>),
}

/// A decoded constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: ConstData,
}

impl Const {
    pub fn f32s(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }
    pub fn i64s(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }
}

/// Bytes per element as stored, for the element types we accept.
fn elem_size(data_type: i32) -> Result<usize, String> {
    match DataType::try_from(data_type) {
        Ok(DataType::Float) | Ok(DataType::Int32) => Ok(4),
        Ok(DataType::Double) | Ok(DataType::Int64) => Ok(8),
        Ok(other) => Err(format!("element type {} is not supported (float32, float64, int32, int64 are)", other.as_str_name())),
        Err(_) => Err(format!("unknown element type {data_type}")),
    }
}

/// Shape of a tensor as `usize`s, and its element count (checked).
fn dims_and_count(t: &TensorProto) -> Result<(Vec<usize>, u64), String> {
    let mut count: u64 = 1;
    let mut dims = Vec::with_capacity(t.dims.len().min(64));
    for &d in &t.dims {
        let d = u64::try_from(d).map_err(|_| format!("negative dimension {d} in {:?}", t.dims))?;
        count = count.checked_mul(d).ok_or_else(|| format!("dimensions {:?} overflow", t.dims))?;
        dims.push(usize::try_from(d).map_err(|_| format!("dimension {d} too large"))?);
    }
    Ok((dims, count))
}

/// The number of bytes this tensor will occupy once decoded, from its declared type and shape only.
pub(crate) fn declared_bytes(t: &TensorProto) -> Result<u64, String> {
    let (_, count) = dims_and_count(t)?;
    let size = elem_size(t.data_type.unwrap_or(0))? as u64;
    count.checked_mul(size).ok_or_else(|| format!("dimensions {:?} overflow", t.dims))
}

/// Decode a tensor's values. Errors are plain text; the caller names the tensor.
pub(crate) fn decode_tensor(t: &TensorProto) -> Result<Const, String> {
    if crate::external::is_external(t) {
        return Err("its weights are in an external data file, which only loading the model from its path reads".into());
    }
    let (dims, count) = dims_and_count(t)?;
    let dtype = t.data_type.unwrap_or(0);
    let size = elem_size(dtype)?;
    let count = usize::try_from(count).map_err(|_| format!("{count} elements is too many"))?;
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let mismatch = |have: usize, what: &str| format!("shape {dims:?} needs {count} values, {what} holds {have}");
    if let Some(raw) = raw {
        if Some(raw.len()) != count.checked_mul(size) {
            return Err(mismatch(raw.len() / size, "raw_data"));
        }
    }
    let data = match DataType::try_from(dtype) {
        Ok(DataType::Float) => ConstData::F32(match raw {
            Some(r) => r.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            None if t.float_data.len() == count => t.float_data.clone(),
            None => return Err(mismatch(t.float_data.len(), "float_data")),
        }),
        Ok(DataType::Double) => ConstData::F32(match raw {
            Some(r) => r.chunks_exact(8).map(|c| f64::from_le_bytes(eight(c)) as f32).collect(),
            None if t.double_data.len() == count => t.double_data.iter().map(|&v| v as f32).collect(),
            None => return Err(mismatch(t.double_data.len(), "double_data")),
        }),
        Ok(DataType::Int64) => ConstData::I64(match raw {
            Some(r) => r.chunks_exact(8).map(|c| i64::from_le_bytes(eight(c))).collect(),
            None if t.int64_data.len() == count => t.int64_data.clone(),
            None => return Err(mismatch(t.int64_data.len(), "int64_data")),
        }),
        Ok(DataType::Int32) => ConstData::I64(match raw {
            Some(r) => r.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            None if t.int32_data.len() == count => t.int32_data.iter().map(|&v| v as i64).collect(),
            None => return Err(mismatch(t.int32_data.len(), "int32_data")),
        }),
        // elem_size already rejected everything else.
        _ => return Err(format!("unsupported element type {dtype}")),
    };
    Ok(Const { dims, data })
}

fn eight(c: &[u8]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(c);
    b
}
