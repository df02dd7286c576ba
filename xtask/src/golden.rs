//! `cargo xtask golden`: rebuild the goldens from signxai (being implemented).

use std::path::Path;

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let _ = (root, args);
    Err("golden is not implemented yet".into())
}
