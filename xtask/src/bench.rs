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

/// Build relprop-bench (benches and the report binary) with `features`.
fn build(root: &Path, features: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(util::cargo());
    cmd.current_dir(root).args(["build", "--release", "--quiet", "-p", "relprop-bench", "--benches", "--bins"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    util::run(&mut cmd)
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
    let (backends, mut features) = crate::conform::select_backends(root, &which)?;
    // The reference column: ONNX Runtime's plain forward of the zoo file, whenever the library is installed.
    let reference = ready(root, "ort");
    if reference && !features.contains(&"ort") {
        features.push("ort-forward");
    }
    if !reference {
        println!("ortref (ONNX Runtime's forward, the targets' reference): not available (`cargo xtask setup ort`); ratios are against relprop's own forward");
    }
    build(root, &features)?;

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
