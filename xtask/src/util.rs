//! Small helpers shared by the xtask commands.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo that runs us.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Run a command, inheriting stdio; error with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed with {status}")) }
}

/// The interpreter used to create venvs: `$PYTHON`, else `python3.11`, else `python3`; must be 3.11 (TensorFlow
/// 2.12 has no wheels for newer versions; the PyTorch peers are pinned on the same interpreter).
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
                eprintln!("xtask: {p} is Python {v}; the project's venvs need Python 3.11");
            }
        }
    }
    Err(format!("no Python 3.11 found (tried {candidates:?}); set PYTHON to a Python 3.11 interpreter"))
}

/// Create or update the venv `dir` (relative to `root`) with one `pip install` per entry of `installs`, from the
/// package registry; returns its python. Idempotent: a stamp file holds `stamp` after a complete install, and the
/// installs run again only when it changes.
pub fn venv(root: &Path, dir: &str, stamp: &str, installs: &[&[&str]]) -> Result<PathBuf, String> {
    let venv = root.join(dir);
    let python = venv.join("bin/python");
    let stamp_file = venv.join(".relprop-stamp");
    if python.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp) {
        eprintln!("xtask: {} is up to date", venv.display());
        return Ok(python);
    }
    if !python.is_file() {
        let base = base_python()?;
        std::fs::create_dir_all(root.join(".deps")).map_err(|e| format!(".deps: {e}"))?;
        eprintln!("xtask: creating {} with {base}", venv.display());
        run(Command::new(&base).args(["-m", "venv"]).arg(&venv))?;
    }
    let _ = std::fs::remove_file(&stamp_file);
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--upgrade", "pip"]))?;
    for args in installs {
        eprintln!("xtask: pip install {} into {}", args.join(" "), venv.display());
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(*args))?;
    }
    std::fs::write(&stamp_file, stamp).map_err(|e| format!("{}: {e}", stamp_file.display()))?;
    Ok(python)
}
