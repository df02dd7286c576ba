//! ONNX external data: initializers whose bytes live in a side file next to the model (`location`, `offset`,
//! `length` keys). PyTorch's exporter writes models this way by default since torch 2.9 (`model.onnx` plus
//! `model.onnx.data`), and every model above protobuf's 2 GiB limit needs it.
//!
//! The bytes are read into `raw_data` before import, so the rest of the importer sees ordinary tensors. The
//! file is untrusted: `location` must be a relative path inside the model's directory (no `..`, no absolute
//! path, as `onnx.checker` requires), the declared sizes are checked against the size limit before anything is
//! read, and the range must lie inside the data file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use crate::proto::tensor_proto::DataLocation;
use crate::proto::{ModelProto, TensorProto};
use crate::tensors::declared_bytes;

/// Whether `t` keeps its bytes in an external file.
pub(crate) fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty()
}

/// Every tensor of the main graph that can hold weights: initializers and `Constant` node values.
fn tensors_mut(model: &mut ModelProto) -> Vec<&mut TensorProto> {
    let Some(g) = model.graph.as_mut() else { return Vec::new() };
    let consts = g.node.iter_mut().flat_map(|n| n.attribute.iter_mut()).filter_map(|a| a.t.as_mut());
    g.initializer.iter_mut().chain(consts).collect()
}

/// Where one external tensor's bytes are.
struct Ref {
    location: String,
    offset: u64,
    length: Option<u64>,
}

fn parse_ref(t: &TensorProto) -> Result<Ref, String> {
    let mut loc = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        let value = e.value.as_deref().unwrap_or("");
        let num = |what: &str| value.parse::<u64>().map_err(|_| format!("external data {what} '{value}' is not a byte count"));
        match e.key.as_deref().unwrap_or("") {
            "location" => loc = Some(value.to_string()),
            "offset" => offset = num("offset")?,
            "length" => length = Some(num("length")?),
            _ => {} // "checksum" and unknown keys: nothing to check against
        }
    }
    let location = loc.filter(|l| !l.is_empty()).ok_or("external data has no 'location'")?;
    let rel = Path::new(&location);
    if rel.is_absolute() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!("external data location '{location}' must be a relative path inside the model's directory"));
    }
    Ok(Ref { location, offset, length })
}

/// Read every external tensor of `model` from its file under `dir` into `raw_data`. `max_bytes` bounds the
/// declared size of all of them together (checked before reading).
pub(crate) fn inline_external(model: &mut ModelProto, dir: &Path, max_bytes: u64) -> Result<(), String> {
    let mut todo = Vec::new();
    let mut total = 0u64;
    for t in tensors_mut(model).into_iter().filter(|t| is_external(t)) {
        let name = t.name.clone().unwrap_or_default();
        let r = parse_ref(t).map_err(|m| format!("initializer '{name}': {m}"))?;
        let need = declared_bytes(t).map_err(|m| format!("initializer '{name}': {m}"))?;
        if let Some(len) = r.length.filter(|&l| l != need) {
            return Err(format!("initializer '{name}': external data length {len} differs from the {need} bytes its type and shape need"));
        }
        total = total.saturating_add(need);
        todo.push((t, r, need));
    }
    if total > max_bytes {
        return Err(format!("external data takes {total} bytes, more than the limit of {max_bytes} (ImportOptions::max_initializer_bytes)"));
    }
    let mut files: HashMap<String, (File, u64)> = HashMap::new();
    for (t, r, need) in todo {
        let name = t.name.clone().unwrap_or_default();
        let ferr = |m: String| format!("initializer '{name}': external data file '{}': {m}", r.location);
        if !files.contains_key(&r.location) {
            let f = File::open(dir.join(&r.location)).map_err(|e| ferr(e.to_string()))?;
            let len = f.metadata().map_err(|e| ferr(e.to_string()))?.len();
            files.insert(r.location.clone(), (f, len));
        }
        let (f, file_len) = files.get_mut(&r.location).expect("opened above");
        if r.offset.checked_add(need).is_none_or(|end| end > *file_len) {
            return Err(ferr(format!("bytes {}..{} lie outside the file ({file_len} bytes)", r.offset, r.offset.saturating_add(need))));
        }
        let mut buf = vec![0u8; usize::try_from(need).map_err(|_| ferr("too large".into()))?];
        f.seek(SeekFrom::Start(r.offset)).and_then(|_| f.read_exact(&mut buf)).map_err(|e| ferr(e.to_string()))?;
        t.raw_data = Some(buf);
        t.external_data.clear();
        t.data_location = None;
    }
    Ok(())
}
