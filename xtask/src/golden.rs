//! `cargo xtask golden [--check] [generate.py options]`: rebuild the goldens from the reference implementation
//! (signxai 1.1.9.2 on TensorFlow 2.12.1, CPU) with `golden/generate.py`, in a project-local virtual environment.
//!
//! * `cargo xtask golden`: regenerate every golden into a staging folder, verify that the shipped model_a/model_b
//!   files are reproduced (they are never rewritten), then write the other models' files and the manifest into
//!   `golden/`.
//! * `cargo xtask golden --check`: regenerate everything into a temporary folder and compare each committed golden
//!   (maps, logits, inputs, weights, ONNX Runtime outputs of the ONNX exports, manifest records) within 1e-6
//!   relative; prints the worst difference and fails on any mismatch.
//!
//! Other options are passed on to generate.py (`--models a,b`, `--tol`, `--reuse-trained`).
//!
//! The environment is `.deps/venv-golden` (git-ignored), created with `python3.11 -m venv` and filled from the
//! package registry with pip: `golden/requirements.txt` (exact pins), then `signxai==1.1.9.2` with `--no-deps`
//! (its own TensorFlow pins are stale). Idempotent: a stamp file records what was installed; the install runs
//! again only when the requirements change. Set `PYTHON` to choose the interpreter (it must be Python 3.11:
//! TensorFlow 2.12 has no wheels for newer versions).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const VENV: &str = ".deps/venv-golden";
const SIGNXAI: &str = "signxai==1.1.9.2";
const STAMP: &str = ".relprop-golden-stamp";

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let check = args.iter().any(|a| a == "--check");
    let rest: Vec<&String> = args.iter().filter(|a| a.as_str() != "--check").collect();
    if rest.iter().any(|a| matches!(a.as_str(), "-h" | "--help")) {
        eprintln!("usage: cargo xtask golden [--check] [--models a,b,...] [--tol 1e-6] [--reuse-trained]");
        return Ok(());
    }
    let python = ensure_venv(root)?;
    let script = root.join("golden/generate.py");
    let stage = std::env::temp_dir().join(format!(
        "relprop-golden-{}-{}",
        if check { "check" } else { "stage" },
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&stage);
    let mut cmd = Command::new(&python);
    cmd.current_dir(root).arg(&script).arg("--out").arg(&stage);
    if check {
        cmd.arg("--check").arg(root.join("golden"));
    } else {
        cmd.arg("--install");
    }
    cmd.args(rest);
    let started = std::time::Instant::now();
    let result = util::run(&mut cmd);
    eprintln!("golden: generate.py ran {:.0} s", started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&stage);
            Ok(())
        }
        Err(e) => Err(format!("{e}\n(regenerated files kept in {} for inspection)", stage.display())),
    }
}

/// The interpreter used to create the venv: `$PYTHON`, else `python3.11`, else `python3`; must be 3.11.
fn base_python() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("PYTHON") {
        Ok(p) => vec![p],
        Err(_) => vec!["python3.11".into(), "python3".into()],
    };
    for p in &candidates {
        if let Ok(out) = Command::new(p).args(["-c", "import sys;print('%d.%d' % sys.version_info[:2])"]).output() {
            if out.status.success() {
                let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if v == "3.11" {
                    return Ok(p.clone());
                }
                eprintln!("golden: {p} is Python {v}; TensorFlow 2.12.1 needs Python 3.11");
            }
        }
    }
    Err(format!("no Python 3.11 found (tried {candidates:?}); set PYTHON to a Python 3.11 interpreter"))
}

/// Create or update `.deps/venv-golden`; returns its python.
fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join(VENV);
    let python = venv.join("bin/python");
    let reqs_path = root.join("golden/requirements.txt");
    let reqs = std::fs::read_to_string(&reqs_path).map_err(|e| format!("{}: {e}", reqs_path.display()))?;
    let want = format!("{reqs}\n--no-deps {SIGNXAI}\n");
    let stamp = venv.join(STAMP);
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        eprintln!("golden: {} is up to date", venv.display());
        return Ok(python);
    }
    if !python.is_file() {
        let base = base_python()?;
        std::fs::create_dir_all(root.join(".deps")).map_err(|e| format!(".deps: {e}"))?;
        eprintln!("golden: creating {} with {base}", venv.display());
        util::run(Command::new(&base).args(["-m", "venv"]).arg(&venv))?;
    }
    let _ = std::fs::remove_file(&stamp);
    eprintln!("golden: installing golden/requirements.txt and {SIGNXAI} (--no-deps) from the package registry");
    util::run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--upgrade", "pip"]))?;
    util::run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "-r"]).arg(&reqs_path))?;
    util::run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--no-deps", SIGNXAI]))?;
    std::fs::write(&stamp, want).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}
