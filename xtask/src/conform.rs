//! `cargo xtask conform [--backend ndarray|ort|tch|all] [--device cpu|cuda|cuda:N] [--filter GLOB]`: builds the conformance runner with
//! the backends that are set up (a backend that is not says so in one line) and runs it.

use std::path::Path;
use std::process::Command;

use crate::util;

/// Whether the native library of `backend` is installed in `.deps/`.
pub fn ready(root: &Path, backend: &str) -> bool {
    match backend {
        "ort" => root.join(".deps/onnxruntime/libonnxruntime.so.1.31.1").is_file(),
        "tch" => root.join(".deps/libtorch/build-version").is_file(),
        _ => true,
    }
}

/// The backends asked for (`ndarray`, `ort`, `tch`, comma-separated, or `all`) that are set up, and the cargo
/// features that build them in; a backend whose library is missing says so in one line and is left out.
pub fn select_backends<'a>(root: &Path, which: &'a str) -> Result<(Vec<&'a str>, Vec<&'a str>), String> {
    let wanted: Vec<&str> = if which == "all" { vec!["ndarray", "ort", "tch"] } else { which.split(',').collect() };
    let (mut backends, mut features) = (Vec::new(), Vec::new());
    for b in wanted {
        match b {
            "ndarray" => backends.push(b),
            "ort" | "tch" if ready(root, b) => {
                backends.push(b);
                features.push(b);
            }
            "ort" | "tch" => println!("{b}: not available (its library is not installed: run `cargo xtask setup {b}`)"),
            other => return Err(format!("unknown backend {other} (known: ndarray, ort, tch, all)")),
        }
    }
    if backends.is_empty() {
        return Err("no backend to run".into());
    }
    Ok((backends, features))
}

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let mut which = "ndarray".to_string();
    let mut filter = None;
    let mut device = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => which = it.next().ok_or("--backend needs a value")?.clone(),
            "--filter" => filter = Some(it.next().ok_or("--filter needs a value")?.clone()),
            "--device" => device = Some(it.next().ok_or("--device needs a value")?.clone()),
            _ => return Err(format!("unknown argument {a}: cargo xtask conform [--backend ndarray|ort|tch|all] [--device cpu|cuda|cuda:N] [--filter GLOB]")),
        }
    }
    let (backends, features) = select_backends(root, &which)?;
    let mut cmd = Command::new(util::cargo());
    cmd.current_dir(root).args(["run", "--release", "--quiet", "-p", "relprop-conform"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.args(["--", "--backend", &backends.join(",")]);
    if let Some(d) = device {
        cmd.args(["--device", &d]);
    }
    if let Some(f) = filter {
        cmd.args(["--filter", &f]);
    }
    util::run(&mut cmd)
}
