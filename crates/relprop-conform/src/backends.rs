//! Backends by name, as the CLI, the conformance runner and the benchmarks choose them.

use relprop_core::{Backend, Error, Result};

/// Every backend relprop knows, whether or not this build has it.
pub const ALL: &[&str] = &["ndarray", "ort", "tch"];

/// Whether this build contains the backend.
pub fn built(name: &str) -> bool {
    name == "ndarray" || (name == "ort" && cfg!(feature = "ort")) || (name == "tch" && cfg!(feature = "tch"))
}

/// Whether `device` is a device name at all (cpu, cuda, gpu, cuda:N), before any backend is asked for it: a
/// misspelt device is the user's error, not an unavailable backend.
pub fn check_device(device: &str) -> Result<()> {
    let d = device.trim().to_ascii_lowercase();
    let cuda_n = d.strip_prefix("cuda:").is_some_and(|i| i.parse::<usize>().is_ok());
    if matches!(d.as_str(), "cpu" | "cuda" | "gpu") || cuda_n {
        Ok(())
    } else {
        Err(Error::param("--device", device, "expected cpu, cuda or cuda:N"))
    }
}

/// The backend named `name` (`device` only matters for tch: cpu, cuda, cuda:N).
pub fn by_name(name: &str, device: &str) -> Result<Box<dyn Backend>> {
    check_device(device)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_checked_before_any_backend() {
        for ok in ["cpu", "cuda", "CUDA", "gpu", "cuda:0", "cuda:3"] {
            assert!(check_device(ok).is_ok(), "{ok}");
        }
        for bad in ["gpu0", "cuda:", "cuda:x", "tpu", ""] {
            let e = check_device(bad).unwrap_err().to_string();
            assert!(e.contains("--device") && e.contains("expected cpu, cuda or cuda:N"), "{bad}: {e}");
            assert!(by_name("ndarray", bad).is_err(), "{bad}");
        }
        assert!(by_name("ndarray", "cuda").err().expect("refused").to_string().contains("only the tch backend"));
    }
}
