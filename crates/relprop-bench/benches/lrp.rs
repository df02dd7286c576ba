//! Criterion benchmarks: forward and five analyzers, batch 1 and 8, on the zoo models, for every requested
//! backend. Steered by environment variables (see `relprop_bench::Config`; `cargo xtask bench` sets them):
//! `RELPROP_BENCH_MODELS=vgg16,resnet50`, `RELPROP_BENCH_BACKENDS=ndarray,ort,tch` or `ortref` (ONNX Runtime's
//! own forward pass of the zoo file, 2 threads: run in a process of its own, ONNX Runtime allows one
//! environment per process), `RELPROP_BENCH_QUICK=1`.
//!
//! Ids: group `<model>-b<batch>`, function `<backend>-<analyzer>`; results in `target/criterion/`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use criterion::measurement::WallTime;
use relprop_bench::{compile, function_id, group_id, load_model, specs_for, Config, Job, BATCHES};

fn configure(group: &mut BenchmarkGroup<WallTime>, quick: bool, batch: usize) {
    // Flat sampling: these runs take 10 ms to seconds each, so every sample is one (or a few) iterations.
    group.sampling_mode(SamplingMode::Flat).sample_size(10).throughput(Throughput::Elements(batch as u64));
    if quick {
        group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2)).nresamples(10_000);
    } else {
        group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(if batch > 1 { 30 } else { 10 }));
    }
}

fn relprop_backends(c: &mut Criterion, cfg: &Config) {
    for model in &cfg.models {
        let g = match load_model(&cfg.zoo, model) {
            Ok(g) => g,
            Err(e) => {
                println!("{model}: cannot load: {e}");
                continue;
            }
        };
        for backend in cfg.backends.iter().filter(|b| b.as_str() != relprop_bench::ORT_REFERENCE) {
            let compiled = match compile(backend, "cpu", &g) {
                Ok(m) => m,
                Err(e) => {
                    println!("{backend}: not available: {e}");
                    continue;
                }
            };
            for &batch in BATCHES {
                let mut group = c.benchmark_group(group_id(model, batch));
                configure(&mut group, cfg.quick, batch);
                for spec in specs_for(batch, cfg.quick) {
                    let job = match Job::new(Arc::clone(&compiled), &g, &spec, batch) {
                        Ok(j) => j,
                        Err(e) => {
                            println!("{backend} {model} b{batch} {}: {e}", spec.label);
                            continue;
                        }
                    };
                    // One probe run outside the timing: a backend that fails says so in one line and is skipped.
                    if let Err(e) = job.run() {
                        println!("{backend} {model} b{batch} {}: failed: {e}", spec.label);
                        continue;
                    }
                    group.bench_function(function_id(backend, spec.label), |b| b.iter(|| job.run().expect("ran in the probe")));
                }
                group.finish();
            }
        }
    }
}

#[cfg(feature = "ort-forward")]
fn ort_reference(c: &mut Criterion, cfg: &Config) {
    use relprop_bench::{ortref::OrtForward, zoo_file, ORT_REFERENCE, ORT_REFERENCE_THREADS};
    for model in &cfg.models {
        let path = match zoo_file(&cfg.zoo, model) {
            Ok(p) => p,
            Err(e) => {
                println!("{model}: {e}");
                continue;
            }
        };
        let g = match relprop_onnx::load(&path) {
            Ok(g) => g,
            Err(e) => {
                println!("{model}: {e}");
                continue;
            }
        };
        let sess = match OrtForward::new(&path, &g.nodes[0].name, ORT_REFERENCE_THREADS) {
            Ok(s) => s,
            Err(e) => {
                println!("{ORT_REFERENCE}: not available: {e}");
                return;
            }
        };
        for &batch in BATCHES {
            let x = relprop_bench::zoo::input(&g, batch, relprop_bench::zoo::SEED);
            if let Err(e) = sess.run(&x) {
                println!("{ORT_REFERENCE} {model} b{batch}: failed: {e}");
                continue;
            }
            let mut group = c.benchmark_group(group_id(model, batch));
            configure(&mut group, cfg.quick, batch);
            group.bench_function(function_id(ORT_REFERENCE, "forward"), |b| b.iter(|| sess.run(&x).expect("ran in the probe")));
            group.finish();
        }
    }
}

#[cfg(not(feature = "ort-forward"))]
fn ort_reference(_c: &mut Criterion, _cfg: &Config) {
    println!("ortref: not available (relprop-bench was built without its `ort-forward` feature)");
}

fn main() {
    let cfg = Config::from_env();
    let mut c = Criterion::default().configure_from_args();
    if cfg.backends.iter().any(|b| b == relprop_bench::ORT_REFERENCE) {
        ort_reference(&mut c, &cfg);
    }
    relprop_backends(&mut c, &cfg);
    c.final_summary();
}
