//! `cargo xtask bench [--backend ndarray|ort|tch|all] [--model vgg16,resnet50,model_a,model_b] [--quick]`:
//! criterion benchmarks of the zoo models (built on demand into `zoo/`), then `reports/bench/index.html` and
//! `summary.json` (figures, ratios, GEMM rate, peak memory per configuration).
//!
//! ONNX Runtime's own forward pass of each zoo file (2 threads, the targets' reference) is measured whenever
//! `.deps/onnxruntime` is installed, in a bench process of its own (one ONNX Runtime environment per process).

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::conform::ready;
use crate::util;

const USAGE: &str = "cargo xtask bench [--backend ndarray|ort|tch|all] [--model vgg16,resnet50,model_a,model_b] [--quick]";

/// Whether `cargo build` of relprop-bench with `features` succeeds (a backend crate may be mid-change).
fn builds(root: &Path, features: &[&str]) -> bool {
    let mut cmd = Command::new(util::cargo());
    cmd.current_dir(root).args(["build", "--release", "--quiet", "-p", "relprop-bench", "--benches", "--bins"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let (mut which, mut models, mut quick) = ("ndarray".to_string(), "vgg16,resnet50".to_string(), false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => which = it.next().ok_or("--backend needs a value")?.clone(),
            "--model" => models = it.next().ok_or("--model needs a value")?.clone(),
            "--quick" => quick = true,
            _ => return Err(format!("unknown argument {a}: {USAGE}")),
        }
    }
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
    // The reference column: ONNX Runtime's plain forward of the zoo file, whenever the library is installed.
    let reference = ready(root, "ort");
    if reference && !features.contains(&"ort") {
        features.push("ort-forward");
    }
    if !reference {
        println!("ortref (ONNX Runtime's forward, the targets' reference): not available (`cargo xtask setup ort`); ratios are against relprop's own forward");
    }
    if !builds(root, &features) {
        // A backend crate that does not build right now costs only its own column.
        for b in ["ort", "tch"] {
            if features.contains(&b) {
                let fewer: Vec<&str> = features.iter().copied().filter(|f| *f != b).chain((b == "ort").then_some("ort-forward")).collect();
                if builds(root, &fewer) {
                    println!("{b}: not available (relprop-{b} does not build with this tree)");
                    backends.retain(|x| *x != b);
                    features = fewer;
                    break;
                }
            }
        }
        if !builds(root, &features) {
            return Err("relprop-bench does not build".into());
        }
    }
    if backends.is_empty() {
        return Err("no backend to run".into());
    }

    let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs().saturating_sub(1)).unwrap_or(0);
    let started = Instant::now();
    let bench = |backends: &str| -> Result<(), String> {
        let mut cmd = Command::new(util::cargo());
        cmd.current_dir(root).args(["bench", "--quiet", "-p", "relprop-bench", "--bench", "lrp"]);
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        cmd.env("RELPROP_BENCH_MODELS", &models).env("RELPROP_BENCH_BACKENDS", backends);
        if quick {
            cmd.env("RELPROP_BENCH_QUICK", "1");
        }
        util::run(&mut cmd)
    };
    if reference {
        bench("ortref")?;
    }
    bench(&backends.join(","))?;
    let duration = started.elapsed().as_secs();

    let mut all: Vec<&str> = Vec::new();
    if reference {
        all.push("ortref");
    }
    all.extend(&backends);
    let mut cmd = Command::new(util::cargo());
    cmd.current_dir(root).args(["run", "--release", "--quiet", "-p", "relprop-bench", "--bin", "relprop-bench"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.args(["--", "report", "--models", &models, "--backends", &all.join(","), "--since", &since.to_string(), "--duration", &duration.to_string()]);
    if quick {
        cmd.arg("--quick");
    }
    util::run(&mut cmd)?;
    println!("bench: {} s in all (criterion part {duration} s); report: reports/bench/index.html", started.elapsed().as_secs());
    Ok(())
}
