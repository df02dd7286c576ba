//! `cargo xtask <command>`: the project's own scripts (setup of native libraries, golden regeneration,
//! conformance, benchmarks, the full test run). Everything installs into git-ignored `.deps/`, idempotently.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod conform;
mod golden;
mod setup;
mod util;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

const USAGE: &str = "usage: cargo xtask <command>
  test                   install what the tests need (.deps/) and run every test (the README's test command)
  setup ort|tch|all      install ONNX Runtime / libtorch from PyPI wheels into .deps/
  conform [--backend ndarray|ort|tch|all] [--device cpu|cuda] [--filter GLOB]   run the conformance suite, write reports/conformance/
  golden [--check]       rebuild the goldens from signxai in a project-local venv
  diffcheck [--seed N] [--models a,b] [--methods m,...] [--plain]   relprop's CLI against live signxai on
                         Keras architectures the goldens lack (tools/signxai_diffcheck.py, golden venv)
  bench [--backend ...] [--model ...] [--quick] [--vs-signxai] [--vs-zennit]   run the benchmarks, write reports/bench/";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("setup") => setup::run(&root, &args[1..]),
        Some("golden") => golden::run(&root, &args[1..]),
        Some("diffcheck") => golden::diffcheck(&root, &args[1..]),
        Some("conform") => conform::run(&root, &args[1..]),
        Some("bench") => bench::run(&root, &args[1..]),
        Some(other) => Err(format!("unknown or not yet available command '{other}'\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The README's test command: installs the native libraries (idempotent), then runs every test of the
/// workspace with every backend built in.
fn test(root: &Path) -> Result<(), String> {
    setup::run(root, &["all".to_string()])?;
    // The CLI's features turn the backends on everywhere they are used (CLI, conformance suite, property tests).
    util::run(Command::new(util::cargo()).current_dir(root).args(["test", "--workspace", "--features", "relprop-cli/ort,relprop-cli/tch"]))
}
