//! Backends by name, as the CLI, the conformance runner and the benchmarks choose them.

use relprop_core::{Backend, Error, Result};

/// Every backend relprop knows, whether or not this build has it.
pub const ALL: &[&str] = &["ndarray", "ort", "tch"];

/// Whether this build contains the backend.
pub fn built(name: &str) -> bool {
    name == "ndarray" || (name == "ort" && cfg!(feature = "ort")) || (name == "tch" && cfg!(feature = "tch"))
}

/// The backend named `name` (`device` only matters for tch: cpu, cuda, cuda:N).
pub fn by_name(name: &str, device: &str) -> Result<Box<dyn Backend>> {
    if name != "tch" && device != "cpu" {
        return Err(Error::param("--device", device, "only the tch backend runs on other devices"));
    }
    match name {
        "ndarray" => Ok(Box::new(relprop_ndarray::NdarrayBackend)),
        #[cfg(feature = "ort")]
        "ort" => Ok(Box::new(relprop_ort::OrtBackend::new()?)),
        #[cfg(feature = "tch")]
        "tch" => Ok(Box::new(relprop_tch::TchBackend::new(device)?)),
        _ if ALL.contains(&name) => Err(Error::param(
            "--backend",
            name,
            format!("this relprop was built without it: `cargo xtask setup {name}`, then build with `--features {name}`"),
        )),
        _ => Err(Error::Unknown { kind: "backend".into(), name: name.into(), hint: format!(" (known: {})", ALL.join(", ")) }),
    }
}
