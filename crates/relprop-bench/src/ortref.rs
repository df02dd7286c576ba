//! ONNX Runtime's own forward pass of a zoo file: the reference the targets are quoted against.
//!
//! ONNX Runtime allows one environment per process, and the relprop-ort backend holds its own, so the reference
//! runs in processes that do not use the ort backend (`RELPROP_BENCH_BACKENDS=ortref`, `relprop-bench rss
//! --backend ortref`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{ArrayViewD, IxDyn};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use relprop_core::Tensor;

/// Where the library is: `ORT_DYLIB_PATH` (set by `.cargo/config.toml`), else the workspace's `.deps/`.
pub fn library_path() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| crate::workspace().join(".deps/onnxruntime/libonnxruntime.so.1.31.1"))
}

/// A session on an ONNX file.
pub struct OrtForward {
    session: Mutex<Session>,
    input: String,
}

fn environment() -> Result<&'static ort::environment::Environment, String> {
    static ENV: std::sync::OnceLock<Result<ort::environment::Environment, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let path = library_path();
        if !path.is_file() {
            return Err(format!("ONNX Runtime library not found at {} (cargo xtask setup ort)", path.display()));
        }
        ort::init_from(&path).map_err(|e| e.to_string())?.with_name("relprop-bench").build().map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

impl OrtForward {
    /// Open `model` with `threads` intra-op threads and full graph optimisation.
    pub fn new(model: &Path, input: &str, threads: usize) -> Result<OrtForward, String> {
        let env = environment()?;
        let session = Session::builder(env)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level3)?))
            .and_then(|b| Ok(b.with_intra_threads(threads)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|mut b| b.commit_from_file(model))
            .map_err(|e| format!("ONNX Runtime session on {}: {e}", model.display()))?;
        Ok(OrtForward { session: Mutex::new(session), input: input.to_string() })
    }

    /// The model's first output for `x`.
    pub fn run(&self, x: &Tensor) -> Result<Tensor, String> {
        let view = ArrayViewD::from_shape(IxDyn(&x.shape), &x.data).map_err(|e| e.to_string())?;
        let input = TensorRef::from_array_view(view).map_err(|e| e.to_string())?;
        let mut s = self.session.lock().map_err(|_| "session poisoned".to_string())?;
        let out = s.run(ort::inputs![self.input.as_str() => input]).map_err(|e| e.to_string())?;
        let (shape, data) = out[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        Ok(Tensor { shape: shape.iter().map(|&d| d as usize).collect(), data: data.to_vec() })
    }
}
