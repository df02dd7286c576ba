//! Installs the tch native library (being implemented).

use std::path::{Path, PathBuf};

pub fn setup(root: &Path) -> Result<PathBuf, String> {
    let _ = root;
    Err("setup tch is not implemented yet".into())
}
