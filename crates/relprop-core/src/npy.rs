//! Reading and writing NumPy `.npy` files (float32 and float64, little-endian, C order).
//! Hostile files give an error naming the problem, never a panic or a huge allocation.

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::tensor::Tensor;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Largest array accepted by the reader with the default [`Limits`], in elements (1 G floats = 4 GiB); the bound
/// actually applied is `Limits::max_bytes / 4` (configurable, see [`crate::limits`]).
pub const MAX_ELEMENTS: usize = (Limits::DEFAULT.max_bytes / 4) as usize;

/// Decode `.npy` bytes (`label` names the file in errors) under the process-wide [`Limits`]. float64 and
/// float32 are accepted; float64 is converted to float32.
pub fn decode(bytes: &[u8], label: &str) -> Result<Tensor> {
    decode_with(bytes, label, &Limits::global())
}

/// [`decode`] with explicit limits: an array whose declared shape needs more than `limits.max_bytes` as float32
/// is refused before anything is allocated.
pub fn decode_with(bytes: &[u8], label: &str, limits: &Limits) -> Result<Tensor> {
    let err = |m: &str| Error::Io { path: label.into(), msg: format!("not a valid .npy file: {m}") };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err("missing \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err(&format!("unsupported format version {v}"))),
    };
    let header = bytes.get(start..start.checked_add(hlen).ok_or_else(|| err("header length overflows"))?).ok_or_else(|| err("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| err("header has no 'descr'"))?;
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| err("header has no 'fortran_order'"))?;
    let shape_s = dict_value(header, "shape").ok_or_else(|| err("header has no 'shape'"))?;
    if fortran.trim() != "False" {
        return Err(err("fortran_order arrays are not supported; save with np.ascontiguousarray"));
    }
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let width = match descr {
        "<f4" | "=f4" | "f4" => 4,
        "<f8" | "=f8" | "f8" => 8,
        d => return Err(err(&format!("dtype {d} is not supported (use float32 '<f4')"))),
    };
    let inner = shape_s.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| err("shape is not a tuple"))?;
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(part.parse::<usize>().map_err(|_| err(&format!("bad dimension '{part}'")))?);
    }
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| err("array too large (shape overflows)"))?;
    limits.check_f32s(n as u64, "the array").map_err(|m| err(&format!("array too large: {m}")))?;
    let need = n.checked_mul(width).ok_or_else(|| err("array too large (shape overflows)"))?;
    let body = &bytes[start + hlen..];
    if body.len() != need {
        return Err(err(&format!("shape {shape:?} needs {need} data bytes, file has {}", body.len())));
    }
    let data: Vec<f32> = if width == 4 {
        body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        body.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
    };
    Tensor::new(shape, data)
}

/// Read a `.npy` file.
pub fn read(path: &std::path::Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })?;
    decode(&bytes, &path.display().to_string())
}

/// Encode a tensor as float32 `.npy` (version 1.0).
pub fn encode(t: &Tensor) -> Vec<u8> {
    let shape = match t.shape.len() {
        1 => format!("({},)", t.shape[0]),
        _ => format!("({})", t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &t.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write a tensor to a `.npy` file.
pub fn write(path: &std::path::Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, encode(t)).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })
}

/// The text after `'key':` up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile() {
        let t = Tensor::new(vec![2, 3], vec![1.0, -2.0, 0.0, 4.5, 5.0, f32::MIN_POSITIVE]).unwrap();
        let b = encode(&t);
        assert_eq!(decode(&b, "t").unwrap(), t);
        assert_eq!((b.len() - t.data.len() * 4) % 64, 0, "header padded to 64 bytes");
        for bad in [&b[..5], &b[..b.len() - 1], b"\x93NUMPY\x01\x00\xff\xff{}"] {
            assert!(decode(bad, "bad").is_err());
        }
        let mut big = b.clone();
        let s = String::from_utf8_lossy(&big[10..]).replace("(2, 3)", "(9999999999, 9999999999)");
        big.truncate(10);
        big.extend_from_slice(s.as_bytes());
        assert!(decode(&big, "big").unwrap_err().to_string().contains("too large"));
    }
}
