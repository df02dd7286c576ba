//! `relprop-bench`: the measurements around the criterion benches (see the crate docs).
//!
//! ```text
//! relprop-bench zoo NAME --output FILE [--seed N] [--golden DIR]
//! relprop-bench gemm [--seconds S]
//! relprop-bench rss --model NAME --backend B --analyzer A --batch N [--zoo DIR] [--repeat N]   (one JSON line)
//! relprop-bench report --models M,.. --backends B,.. [--quick] [--since UNIX_S] [--duration S]
//!                      [--criterion DIR] [--out DIR] [--zoo DIR] [--memory none|quick|full]
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use relprop_bench::report::{Memory, Report, Timing};
use relprop_bench::{flops, load_model, specs_for, sys, workspace, zoo, Spec, BATCHES, ORT_REFERENCE};
use relprop_core::Target;
use serde_json::{json, Value};

type Res<T> = std::result::Result<T, String>;

fn opts(args: &[String]) -> Res<(Vec<String>, HashMap<String, String>)> {
    let (mut pos, mut kv) = (Vec::new(), HashMap::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(k) = a.strip_prefix("--") {
            if k == "quick" {
                kv.insert(k.to_string(), "1".to_string());
            } else {
                kv.insert(k.to_string(), it.next().ok_or(format!("--{k} needs a value"))?.clone());
            }
        } else {
            pos.push(a.clone());
        }
    }
    Ok((pos, kv))
}

fn get<'a>(kv: &'a HashMap<String, String>, k: &str) -> Res<&'a str> {
    kv.get(k).map(String::as_str).ok_or(format!("--{k} is required"))
}

fn zoo_dir(kv: &HashMap<String, String>) -> PathBuf {
    kv.get("zoo").map(PathBuf::from).unwrap_or_else(|| workspace().join("zoo"))
}

const MIB: f64 = 1024.0 * 1024.0;

/// One configuration in this process: peak RSS while loading, then (peak reset) of one run.
fn rss(kv: &HashMap<String, String>) -> Res<Value> {
    let model = get(kv, "model")?;
    let backend = get(kv, "backend")?;
    let label = get(kv, "analyzer")?;
    let batch: usize = get(kv, "batch")?.parse().map_err(|_| "--batch: a number")?;
    let spec = Spec::by_label(label).ok_or(format!("unknown analyzer {label}"))?;
    let g = load_model(&zoo_dir(kv), model).map_err(|e| e.to_string())?;
    let x = zoo::input(&g, batch, zoo::SEED);
    let (out, load_peak, run_peak, secs) = if backend == ORT_REFERENCE {
        #[cfg(feature = "ort-forward")]
        {
            let path = relprop_bench::zoo_file(&zoo_dir(kv), model).map_err(|e| e.to_string())?;
            let s = relprop_bench::ortref::OrtForward::new(&path, &g.nodes[0].name, relprop_bench::ORT_REFERENCE_THREADS)?;
            let load_peak = sys::peak_rss_kb().unwrap_or(0);
            let reset = sys::reset_peak_rss();
            let t = Instant::now();
            let out = s.run(&x)?;
            let secs = t.elapsed().as_secs_f64();
            (out, load_peak, if reset { sys::peak_rss_kb().unwrap_or(0) } else { 0 }, secs)
        }
        #[cfg(not(feature = "ort-forward"))]
        {
            let _ = &x;
            return Err("ortref: built without the ort-forward feature".into());
        }
    } else {
        // `--device cuda` (tch only) times the GPU path; relevance comes back to the host, so each run is complete.
        let device = kv.get("device").map(String::as_str).unwrap_or("cpu");
        let compiled = relprop_bench::compile(backend, device, &g).map_err(|e| e.to_string())?;
        let job = relprop_bench::Job::new(compiled, &g, &spec, batch).map_err(|e| e.to_string())?;
        let load_peak = sys::peak_rss_kb().unwrap_or(0);
        let reset = sys::reset_peak_rss();
        // `--repeat N` (for profilers and quick timings): N runs, the median time.
        let repeat: usize = kv.get("repeat").and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
        let mut out = None;
        let mut secs = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = Instant::now();
            out = Some(job.run().map_err(|e| e.to_string())?);
            secs.push(t.elapsed().as_secs_f64());
        }
        secs.sort_by(f64::total_cmp);
        (out.expect("ran"), load_peak, if reset { sys::peak_rss_kb().unwrap_or(0) } else { 0 }, secs[secs.len() / 2])
    };
    let sum: f64 = out.data.iter().map(|&v| v as f64).sum();
    Ok(json!({
        "model": model, "backend": backend, "analyzer": label, "batch": batch,
        "load_peak_kib": load_peak, "run_peak_kib": run_peak, "seconds": secs,
        "weights_bytes": zoo::parameters(&g) * 4, "activation_bytes": zoo::activation_elements(&g) * 4 * batch,
        "relevance_sum": sum, "finite": out.data.iter().all(|v| v.is_finite()),
    }))
}

/// Run `rss` in a child process (fresh address space, so the peak is this configuration's alone).
fn rss_child(model: &str, backend: &str, label: &str, batch: usize, zoo: &std::path::Path) -> Res<Memory> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["rss", "--model", model, "--backend", backend, "--analyzer", label, "--batch", &batch.to_string(), "--zoo"])
        .arg(zoo)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Memory {
        model: model.into(),
        batch,
        backend: backend.into(),
        analyzer: label.into(),
        load_peak_mb: f("load_peak_kib") / 1024.0,
        run_peak_mb: f("run_peak_kib") / 1024.0,
        weights_mb: f("weights_bytes") / MIB,
        activations_mb: f("activation_bytes") / MIB,
        relevance_sum: f("relevance_sum"),
        finite: v["finite"].as_bool().unwrap_or(false),
        seconds: f("seconds"),
    })
}

fn report(kv: &HashMap<String, String>) -> Res<()> {
    let started = Instant::now();
    let root = workspace();
    let list = |k: &str, d: &str| -> Vec<String> { kv.get(k).map(String::as_str).unwrap_or(d).split(',').filter(|s| !s.is_empty()).map(String::from).collect() };
    let models = list("models", "vgg16,resnet50");
    let mut backends = list("backends", "ndarray");
    let quick = kv.contains_key("quick");
    let since = kv.get("since").and_then(|s| s.parse::<u64>().ok()).map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let criterion = kv.get("criterion").map(PathBuf::from).unwrap_or_else(|| root.join("target/criterion"));
    let out_dir = kv.get("out").map(PathBuf::from).unwrap_or_else(|| root.join("reports/bench"));
    let zoo = zoo_dir(kv);
    let memory_mode = kv.get("memory").map(String::as_str).unwrap_or(if quick { "quick" } else { "full" }).to_string();
    let mut notes = Vec::new();
    if let Some(d) = kv.get("duration") {
        notes.push(format!("benchmark run (criterion part) took {d} s{}", if quick { " in quick mode" } else { "" }));
    }

    eprintln!("bench report: machine info and GEMM rate ...");
    let info = sys::machine_info();
    let gemm = sys::gemm_rate(if quick { 1.5 } else { 4.0 });

    let mut timings = Vec::new();
    let mut graphs = HashMap::new();
    for model in &models {
        let g = match load_model(&zoo, model) {
            Ok(g) => g,
            Err(e) => {
                notes.push(format!("{model}: {e}"));
                continue;
            }
        };
        for &batch in BATCHES {
            for spec in relprop_bench::SPECS {
                for backend in &backends {
                    let Some((median, lo, hi)) = relprop_bench::report::read_estimate(&criterion, model, batch, backend, spec.label, since) else { continue };
                    let plan = spec.plan(&g).map_err(|e| e.to_string())?;
                    let f = match &plan {
                        None => flops::forward(&g, batch),
                        Some(p) => flops::explain(&g, p, batch, &Target::Max),
                    }
                    .map_err(|e| e.to_string())?;
                    timings.push(Timing { model: model.clone(), batch, backend: backend.clone(), analyzer: spec.label.into(), median, lo, hi, gemm_flops: f.gemm, elem_ops: f.elementwise });
                }
            }
        }
        graphs.insert(model.clone(), g);
    }
    drop(graphs);
    if !timings.iter().any(|t| t.backend == ORT_REFERENCE) {
        notes.push("no ONNX Runtime forward was measured (ortref): ratios are against relprop's own forward passes only".into());
    }
    for b in backends.clone() {
        if b != ORT_REFERENCE && !timings.iter().any(|t| t.backend == b) {
            notes.push(format!("{b}: no timings in this run (backend not available or failed)"));
            backends.retain(|x| x != &b);
        }
    }

    let mut memory = Vec::new();
    if memory_mode != "none" {
        for model in &models {
            for &batch in BATCHES {
                if batch > 1 && memory_mode != "full" {
                    continue;
                }
                for backend in &backends {
                    for spec in specs_for(batch, quick) {
                        let is_ref = backend == ORT_REFERENCE;
                        if (is_ref && spec.label != "forward") || (backend != "ndarray" && !is_ref && memory_mode != "full") {
                            continue;
                        }
                        if relprop_bench::report::read_estimate(&criterion, model, batch, backend, spec.label, since).is_none() {
                            continue;
                        }
                        eprintln!("bench report: peak memory {model} b{batch} {backend} {} ...", spec.label);
                        match rss_child(model, backend, spec.label, batch, &zoo) {
                            Ok(m) => memory.push(m),
                            Err(e) => notes.push(format!("peak memory {model} b{batch} {backend} {}: {e}", spec.label)),
                        }
                    }
                }
            }
        }
    }
    // The peers' figures, when this run produced them (cargo xtask bench --vs-signxai / --vs-zennit).
    let peers_file = out_dir.join("peers.json");
    let fresh = |p: &std::path::Path| match (since, std::fs::metadata(p).and_then(|m| m.modified())) {
        (Some(s), Ok(t)) => t >= s,
        (None, Ok(_)) => true,
        _ => false,
    };
    let peers = if fresh(&peers_file) {
        let text = std::fs::read_to_string(&peers_file).map_err(|e| format!("{}: {e}", peers_file.display()))?;
        Some(serde_json::from_str::<Value>(&text).map_err(|e| format!("{}: {e}", peers_file.display()))?)
    } else {
        None
    };
    let r = Report { info, gemm, timings, memory, notes, quick, models, backends, peers };
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut j = r.json();
    j["report_seconds"] = json!(started.elapsed().as_secs_f64());
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(&j).unwrap_or_default()).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("index.html"), r.html()).map_err(|e| e.to_string())?;
    println!("bench report: {} and summary.json written", out_dir.join("index.html").display());
    println!("targets:");
    for (name, v, goal, stretch) in r.targets() {
        println!("  {:<95} {:>8}  goal {goal}{}", name, v.map(|v| format!("{v:.2}")).unwrap_or("–".into()), if stretch.is_empty() { String::new() } else { format!(" (stretch {stretch})") });
    }
    Ok(())
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (pos, kv) = opts(args.get(1..).unwrap_or(&[]))?;
    match args.first().map(String::as_str) {
        Some("zoo") => {
            let name = pos.first().ok_or("zoo NAME --output FILE")?;
            let out = PathBuf::from(get(&kv, "output")?);
            let seed = kv.get("seed").map(|s| s.parse::<u64>().map_err(|_| "--seed: a number")).transpose()?.unwrap_or(zoo::SEED);
            let golden = kv.get("golden").map(PathBuf::from).unwrap_or_else(|| workspace().join("golden/onnx"));
            let g = zoo::write(name, seed, &golden, &out).map_err(|e| e.to_string())?;
            println!("{name}: {} parameters, written to {}", zoo::parameters(&g), out.display());
            Ok(())
        }
        Some("gemm") => {
            let s = kv.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);
            for (shape, r) in sys::gemm_rate(s) {
                println!("{shape}: {r:.1} GFLOP/s ({} threads, {:?})", rayon::current_num_threads(), relprop_ndarray::kernels::gemm_engine());
            }
            Ok(())
        }
        Some("rss") => {
            println!("{}", rss(&kv)?);
            Ok(())
        }
        Some("report") => report(&kv),
        _ => Err("usage: relprop-bench zoo|gemm|rss|report ... (see the crate docs)".into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relprop-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
