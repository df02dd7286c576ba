//! `cargo xtask setup ort`: ONNX Runtime 1.31.1 for the `ort` backend, from the PyPI wheel (the only reachable
//! source; see shared/reference/DEPS.md), plus a project-local Python venv with onnxruntime/onnx/numpy used by
//! the backend's cross-check test. Idempotent: what is present and verified is kept.
//!
//! Layout: `.deps/onnxruntime/libonnxruntime.so.1.31.1` (what `ORT_DYLIB_PATH` in `.cargo/config.toml` points at)
//! and `.deps/venv-ort/` (`bin/python`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const VERSION: &str = "1.31.1";
const LIB: &str = "libonnxruntime.so.1.31.1";
/// sha256 of the cp311 manylinux_2_28_x86_64 wheel on PyPI.
const WHEEL_SHA256: &str = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
/// sha256 of `onnxruntime/capi/libonnxruntime.so.1.31.1` inside that wheel.
const LIB_SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";
/// What the cross-check venv holds (pinned: the test compares numbers).
const VENV_PACKAGES: &[&str] = &["onnxruntime==1.31.1", "onnx==1.23.2", "numpy==2.4.6"];

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// sha256 of a file, through Python's hashlib (no Rust dependency for the xtask).
fn sha256(path: &Path) -> Result<String, String> {
    let out = Command::new(python())
        .args(["-c", "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())"])
        .arg(path)
        .output()
        .map_err(|e| format!("running {}: {e}", python()))?;
    if !out.status.success() {
        return Err(format!("sha256 of {}: {}", path.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Install (or verify) the library and the venv; returns the library's path.
pub fn setup(root: &Path) -> Result<PathBuf, String> {
    let lib = install_lib(root)?;
    install_venv(root)?;
    Ok(lib)
}

fn install_lib(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join(".deps/onnxruntime");
    let lib = dir.join(LIB);
    if lib.is_file() && sha256(&lib)? == LIB_SHA256 {
        eprintln!("setup ort: {} present", lib.display());
        return Ok(lib);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = root.join(".deps/tmp-ort-wheel");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    eprintln!("setup ort: downloading the onnxruntime=={VERSION} wheel from PyPI");
    util::run(
        Command::new(python())
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.11"])
            .args(["--abi", "cp311", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64"])
            .arg(format!("onnxruntime=={VERSION}"))
            .arg("-d")
            .arg(&tmp),
    )?;
    let wheel = std::fs::read_dir(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("setup ort: pip downloaded no wheel")?;
    let got = sha256(&wheel)?;
    if got != WHEEL_SHA256 {
        return Err(format!("setup ort: {} has sha256 {got}, expected {WHEEL_SHA256}", wheel.display()));
    }
    let member = format!("onnxruntime/capi/{LIB}");
    util::run(
        Command::new(python())
            .args([
                "-c",
                "import sys,zipfile,shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3]+'.part','wb') as dst: shutil.copyfileobj(src, dst)",
            ])
            .arg(&wheel)
            .arg(&member)
            .arg(&lib),
    )?;
    let part = PathBuf::from(format!("{}.part", lib.display()));
    let got = sha256(&part)?;
    if got != LIB_SHA256 {
        return Err(format!("setup ort: extracted {member} has sha256 {got}, expected {LIB_SHA256}"));
    }
    std::fs::rename(&part, &lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("setup ort: installed {}", lib.display());
    Ok(lib)
}

fn install_venv(root: &Path) -> Result<(), String> {
    let venv = root.join(".deps/venv-ort");
    let py = venv.join("bin/python");
    let marker = venv.join("relprop-packages.txt");
    let want = VENV_PACKAGES.join("\n");
    if py.is_file() && std::fs::read_to_string(&marker).is_ok_and(|m| m == want) {
        eprintln!("setup ort: {} present", venv.display());
        return Ok(());
    }
    if !py.is_file() {
        eprintln!("setup ort: creating {}", venv.display());
        util::run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    }
    eprintln!("setup ort: installing {} into {}", VENV_PACKAGES.join(" "), venv.display());
    util::run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(VENV_PACKAGES))?;
    util::run(Command::new(&py).args(["-c", "import onnxruntime, onnx, numpy; assert onnxruntime.__version__ == '1.31.1'"]))?;
    std::fs::write(&marker, want).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(())
}
