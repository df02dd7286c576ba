//! `cargo xtask bench [--backend ndarray|ort|tch|all] [--model vgg16,resnet50,model_a,model_b] [--quick]
//! [--vs-signxai] [--vs-zennit]`: criterion benchmarks of the zoo models (built on demand into `zoo/`), then
//! `reports/bench/index.html` and `summary.json` (figures, ratios, GEMM rate, peak memory per configuration).
//!
//! `--vs-signxai` times signxai's `analyze()` on the same architectures in the golden generator's venv
//! (`.deps/venv-golden`); `--vs-zennit` times zennit and captum in `.deps/venv-peers` (torch 2.13.0 from PyPI,
//! a few GB with its CUDA wheels, installed on first use). Their figures land in `reports/bench/peers.json`,
//! which the report turns into speed-up ratios. The peers run after relprop's benches, never concurrently.
//!
//! ONNX Runtime's own forward pass of each zoo file (2 threads, the targets' reference) is measured whenever
//! `.deps/onnxruntime` is installed, in a bench process of its own (one ONNX Runtime environment per process).

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::conform::ready;
use crate::util;

const USAGE: &str = "cargo xtask bench [--backend ndarray|ort|tch|all] [--model vgg16,resnet50,model_a,model_b] [--quick] [--vs-signxai] [--vs-zennit]";

/// The PyTorch peers' venv and requirements.
const PEERS_VENV: &str = ".deps/venv-peers";
const PEERS_REQUIREMENTS: &str = "crates/relprop-bench/peers/requirements-torch.txt";

/// Run a peer script with `python`; returns its JSON output (stdout).
fn peer(root: &Path, python: &Path, script: &str, models: &str, quick: bool) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new(python);
    cmd.current_dir(root).arg(root.join("crates/relprop-bench/peers").join(script)).args(["--models", models]);
    if quick {
        cmd.args(["--repeat", "1"]);
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().map_err(|e| format!("{script}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{script} failed with {}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{script}: unreadable output: {e}"))
}

/// The peers' figures for `models` (only the zoo models the peers know), written to reports/bench/peers.json.
fn peers(root: &Path, models: &str, signxai: bool, torch: bool, quick: bool) -> Result<(), String> {
    let models: Vec<&str> = models.split(',').filter(|m| matches!(*m, "vgg16" | "resnet50")).collect();
    let models = models.join(",");
    let path = root.join("reports/bench/peers.json");
    let _ = std::fs::remove_file(&path);
    if models.is_empty() || !(signxai || torch) {
        return Ok(());
    }
    let mut all = serde_json::Map::new();
    if signxai {
        let python = crate::golden::ensure_venv(root)?;
        all.insert("signxai".into(), peer(root, &python, "signxai_peer.py", &models, quick)?);
    }
    if torch {
        let reqs = std::fs::read_to_string(root.join(PEERS_REQUIREMENTS)).map_err(|e| format!("{PEERS_REQUIREMENTS}: {e}"))?;
        let reqs_path = root.join(PEERS_REQUIREMENTS).to_string_lossy().to_string();
        let python = util::venv(root, PEERS_VENV, &reqs, &[&["--ignore-requires-python", "-r", &reqs_path]])?;
        all.insert("torch".into(), peer(root, &python, "torch_peers.py", &models, quick)?);
    }
    std::fs::create_dir_all(root.join("reports/bench")).map_err(|e| e.to_string())?;
    std::fs::write(&path, serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", path.display()))
}

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
    let (mut vs_signxai, mut vs_torch) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => which = it.next().ok_or("--backend needs a value")?.clone(),
            "--model" => models = it.next().ok_or("--model needs a value")?.clone(),
            "--quick" => quick = true,
            "--vs-signxai" => vs_signxai = true,
            "--vs-zennit" => vs_torch = true,
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
    peers(root, &models, vs_signxai, vs_torch, quick)?;
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
