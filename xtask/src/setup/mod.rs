//! `cargo xtask setup ort|tch|all`: native libraries from PyPI wheels into `.deps/`, idempotently.

use std::path::Path;

mod ort;
mod tch;

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("ort") => ort::setup(root).map(|_| ()),
        Some("tch") => tch::setup(root).map(|_| ()),
        Some("all") => {
            ort::setup(root)?;
            tch::setup(root).map(|_| ())
        }
        _ => Err("usage: cargo xtask setup ort|tch|all".into()),
    }
}
