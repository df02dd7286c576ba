//! Installs the ort native library (being implemented).

use std::path::{Path, PathBuf};

pub fn setup(root: &Path) -> Result<PathBuf, String> {
    let _ = root;
    Err("setup ort is not implemented yet".into())
}
