//! relprop-tch: the libtorch backend (CPU, and CUDA where the installed libtorch has it), through `tch`.
//!
//! Like every relprop backend it implements tensor primitives only ([`relprop_core::engine::Numerics`] on
//! `tch::Tensor`, f32); all LRP logic is the shared engine of `relprop-core`, so the maps equal the ndarray
//! backend's to float rounding. Every tensor lives on the chosen device; weights and their substituted forms
//! (W⁺, W⁻, W², ones, W + γW⁺) are uploaded / computed once per (node, modifier) and cached.
//!
//! libtorch is optional: without the crate feature `libtorch` this crate builds with nothing installed and
//! [`TchBackend::new`] returns an error. With it, run `cargo xtask setup tch` first (README.md).

use std::sync::Arc;

use relprop_core::{Backend, CompiledModel, Error, Graph, Result};

#[cfg(feature = "libtorch")]
mod model;
#[cfg(feature = "libtorch")]
mod numerics;

#[cfg(feature = "libtorch")]
pub use model::TchModel;
/// The `tch` crate this backend was built with (for callers that want to exchange tensors).
#[cfg(feature = "libtorch")]
pub use tch;

pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error::Backend { backend: "tch".into(), msg: msg.into() }
}

/// The libtorch backend on one device.
#[derive(Debug, Clone)]
pub struct TchBackend {
    #[cfg(feature = "libtorch")]
    device: tch::Device,
}

/// The device a name asks for: `None` for "cpu", `Some(i)` for "cuda" (i = 0) or "cuda:i".
fn parse_device(name: &str) -> Result<Option<usize>> {
    let bad = || Error::param("device", name, "expected cpu, cuda or cuda:N");
    match name.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(None),
        "cuda" | "gpu" => Ok(Some(0)),
        s => s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()).map(Some).ok_or_else(bad),
    }
}

impl TchBackend {
    /// The backend on `device`: "cpu", "cuda" or "cuda:N". Errors when CUDA (or that GPU) is not available,
    /// and always when the crate was built without the `libtorch` feature.
    pub fn new(device: &str) -> Result<TchBackend> {
        let dev = parse_device(device)?;
        #[cfg(feature = "libtorch")]
        {
            let device = match dev {
                None => tch::Device::Cpu,
                Some(i) => {
                    let count = cuda_device_count();
                    if count <= 0 {
                        return Err(err(format!(
                            "device {device}: CUDA is not available (this libtorch has {}; `cargo xtask setup tch` \
                             installs a CPU-only libtorch, see crates/relprop-tch/README.md); use --device cpu",
                            if tch::utils::has_cuda() { "CUDA support but no usable GPU or driver" } else { "no CUDA support" }
                        )));
                    }
                    if i as i64 >= count {
                        return Err(err(format!("device {device}: only {count} CUDA device(s) (cuda:0..cuda:{})", count - 1)));
                    }
                    tch::Device::Cuda(i)
                }
            };
            Ok(TchBackend { device })
        }
        #[cfg(not(feature = "libtorch"))]
        {
            let _ = dev;
            Err(err("built without libtorch: run `cargo xtask setup tch` and build with --features tch"))
        }
    }

    /// The device name ("cpu", "cuda:0", ...).
    pub fn device(&self) -> String {
        #[cfg(feature = "libtorch")]
        {
            match self.device {
                tch::Device::Cuda(i) => format!("cuda:{i}"),
                d => format!("{d:?}").to_ascii_lowercase(),
            }
        }
        #[cfg(not(feature = "libtorch"))]
        {
            "none".into()
        }
    }

    /// Compile to the concrete model type (gives access to device tensors).
    #[cfg(feature = "libtorch")]
    pub fn compile_tch(&self, graph: Arc<Graph>) -> Result<TchModel> {
        TchModel::new(graph, self.device)
    }
}

/// Number of usable CUDA devices; 0 when libtorch has no CUDA or the query fails (never panics).
#[cfg(feature = "libtorch")]
fn cuda_device_count() -> i64 {
    std::panic::catch_unwind(|| if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 }).unwrap_or(0)
}

impl Backend for TchBackend {
    fn name(&self) -> &'static str {
        "tch"
    }

    fn compile(&self, graph: Arc<Graph>) -> Result<Box<dyn CompiledModel>> {
        #[cfg(feature = "libtorch")]
        {
            Ok(Box::new(self.compile_tch(graph)?))
        }
        #[cfg(not(feature = "libtorch"))]
        {
            let _ = graph;
            Err(err("built without libtorch: run `cargo xtask setup tch` and build with --features tch"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(parse_device("cpu").unwrap(), None);
        assert_eq!(parse_device("CUDA").unwrap(), Some(0));
        assert_eq!(parse_device("cuda:3").unwrap(), Some(3));
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            assert!(matches!(parse_device(bad), Err(Error::Param { .. })), "{bad}");
        }
    }

    #[cfg(not(feature = "libtorch"))]
    #[test]
    fn without_libtorch_new_errors() {
        let e = TchBackend::new("cpu").unwrap_err().to_string();
        assert!(e.contains("built without libtorch") && e.contains("cargo xtask setup tch"), "{e}");
    }
}
