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

/// `cargo xtask diffcheck`: build the CLI (release) and run `tools/signxai_diffcheck.py` in the golden venv.
pub fn diffcheck(root: &Path, args: &[String]) -> Result<(), String> {
    let python = ensure_venv(root)?;
    util::run(Command::new(util::cargo()).current_dir(root).args(["build", "--release", "--quiet", "-p", "relprop-cli"]))?;
    util::run(Command::new(&python).current_dir(root).arg(root.join("tools/signxai_diffcheck.py")).args(args))
}

/// Create or update `.deps/venv-golden`; returns its python.
pub fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    let reqs_path = root.join("golden/requirements.txt");
    let reqs = std::fs::read_to_string(&reqs_path).map_err(|e| format!("{}: {e}", reqs_path.display()))?;
    let reqs_arg = reqs_path.to_string_lossy().to_string();
    util::venv(
        root,
        VENV,
        &format!("{reqs}\n--no-deps {SIGNXAI}\n"),
        &[&["-r", &reqs_arg], &["--no-deps", SIGNXAI]],
    )
}
