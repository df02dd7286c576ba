//! Shared by the ort backend's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use relprop_ort::OrtBackend;

pub fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden")
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The backend; fails with the fix when ONNX Runtime is not installed.
pub fn backend() -> OrtBackend {
    OrtBackend::new().unwrap_or_else(|e| panic!("{e}\n(the ort tests need ONNX Runtime: run `cargo xtask setup ort`)"))
}

/// The cross-check venv's python; fails with the fix when missing.
pub fn venv_python() -> PathBuf {
    let py = root().join(".deps/venv-ort/bin/python");
    assert!(py.is_file(), "{} not found: run `cargo xtask setup ort`", py.display());
    py
}
