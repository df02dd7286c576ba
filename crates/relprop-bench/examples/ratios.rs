//! The issue-6 ratios in one process, quickly: each analyzer's time against ONNX Runtime's forward pass of the
//! same zoo model, both as the fastest of `ROUNDS` interleaved runs (this shared machine drifts by tens of
//! percent between minutes, so the two sides are timed side by side and compared at their best).
//! `cargo run --release -p relprop-bench --features ort-forward --example ratios -- MODEL [BATCH] [ROUNDS] [ANALYZER...]`
//! The ndarray backend by default; `RATIOS_BACKEND=tch` in a `--features tch,ort-forward` build (with
//! `LD_LIBRARY_PATH=.deps/libtorch/lib`). The last column is the ratio to the same backend's own forward pass.

use std::time::Instant;

use relprop_bench::ortref::OrtForward;
use relprop_bench::{compile, load_model, workspace, zoo, zoo_file, Job, Spec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map(String::as_str).unwrap_or("vgg16");
    let batch: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1);
    let rounds: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut labels: Vec<&str> = args.iter().skip(3).map(String::as_str).collect();
    if labels.is_empty() {
        labels = vec!["forward", "LRPEpsilon", "LRPAlpha1Beta0", "LRPSequentialCompositeB"];
    }
    let dir = workspace().join("zoo");
    let g = load_model(&dir, model).expect("model");
    let threads = relprop_bench::ORT_REFERENCE_THREADS;
    let ort = OrtForward::new(&zoo_file(&dir, model).expect("zoo"), &g.nodes[0].name, threads).expect("ort");
    let x = zoo::input(&g, batch, zoo::SEED);
    let backend = std::env::var("RATIOS_BACKEND").unwrap_or_else(|_| "ndarray".into());
    let compiled = compile(&backend, "cpu", &g).expect("compile");
    let jobs: Vec<Job> = labels
        .iter()
        .map(|l| Job::new(compiled.clone(), &g, &Spec::by_label(l).expect("analyzer label"), batch).expect("plan"))
        .collect();
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    // Warm-up: thread-local buffers, page faults, ORT's arenas.
    ort.run(&x).expect("ort run");
    jobs.iter().for_each(|j| drop(j.run().expect("run")));
    let mut best = vec![f64::MAX; jobs.len() + 1];
    for _ in 0..rounds {
        best[0] = best[0].min(time(&|| drop(ort.run(&x).expect("ort run"))));
        // ONNX Runtime's pool spins for a while after a run; let it go idle before relprop's threads start.
        std::thread::sleep(std::time::Duration::from_millis(100));
        for (b, j) in best[1..].iter_mut().zip(&jobs) {
            *b = b.min(time(&|| drop(j.run().expect("run"))));
        }
    }
    println!("{model} batch {batch}, {backend}, best of {rounds}, {threads} threads");
    println!("  {:<28} {:>8.1} ms", "ONNX Runtime forward", best[0] * 1e3);
    let own = labels.iter().position(|l| *l == "forward").map(|i| best[i + 1]);
    for (l, b) in labels.iter().zip(&best[1..]) {
        let vs_own = own.map(|f| format!("  {:.2}x own forward", b / f)).unwrap_or_default();
        println!("  {l:<28} {:>8.1} ms  {:.2}x{vs_own}", b * 1e3, b / best[0]);
    }
}
