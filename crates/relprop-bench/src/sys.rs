//! Machine facts: the GEMM rate of the ndarray backend's GEMM, peak memory of this process, versions.

use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use relprop_core::Conv;

use crate::rng::Rng;

/// Single-precision GEMM rate in GFLOP/s through the ndarray backend's own GEMM: a pointwise (1×1, stride 1,
/// unpadded) convolution, which the conv kernels run as one `(O × C) · (C × HW)` product straight on the input
/// (no im2col), tiled over the rayon pool exactly like every conv layer. Best over a few VGG/ResNet-like
/// shapes, each timed for about `seconds / shapes`.
pub fn gemm_rate(seconds: f64) -> Vec<(String, f64)> {
    let shapes = [(512usize, 512usize, 56 * 56usize), (256, 2304, 28 * 28), (1024, 1024, 14 * 14)];
    let mut rng = Rng::new(7);
    shapes
        .iter()
        .map(|&(m, k, n)| {
            let side = (n as f64).sqrt() as usize;
            let conv = Conv {
                weight: std::sync::Arc::new(relprop_core::Tensor { shape: vec![m, k, 1, 1], data: rng.normals(m * k, 0.05) }),
                bias: None,
                strides: vec![1, 1],
                dilations: vec![1, 1],
                pads_begin: vec![0, 0],
                pads_end: vec![0, 0],
                groups: 1,
                activation: None,
                pointwise: None,
                transposed: None,
            };
            let x = ArrayD::from_shape_vec(IxDyn(&[1, k, side, side]), rng.normals(k * side * side, 1.0)).expect("shape");
            let flops = 2.0 * (m * k * side * side) as f64;
            // Warm up (thread pool, scratch buffers), then time repeated runs; report the best run.
            let _ = relprop_ndarray::kernels::conv_forward(&conv, &conv.weight.data, x.view());
            let (mut best, start) = (f64::INFINITY, Instant::now());
            while start.elapsed().as_secs_f64() < seconds / shapes.len() as f64 {
                let t = Instant::now();
                let y = relprop_ndarray::kernels::conv_forward(&conv, &conv.weight.data, x.view());
                best = best.min(t.elapsed().as_secs_f64());
                std::hint::black_box(y);
            }
            (format!("{m}x{k}x{}", side * side), flops / best / 1e9)
        })
        .collect()
}

fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process so far (VmHWM), in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    status_kb("VmHWM:")
}

/// Current resident set size (VmRSS), in KiB.
pub fn rss_kb() -> Option<u64> {
    status_kb("VmRSS:")
}

/// Reset the peak (VmHWM) to the current RSS (Linux: `5` into `/proc/self/clear_refs`). False when refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string())
}

/// Machine and version facts, as (key, value) pairs in report order.
pub fn machine_info() -> Vec<(String, String)> {
    let mut v = Vec::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim().to_string();
    v.push(("cpu".into(), cpu));
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"].into_iter().filter(|f| flags.split_whitespace().any(|x| x == *f)).collect();
    v.push(("simd".into(), simd.join(" ")));
    v.push(("cores (available_parallelism)".into(), std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or("?".into())));
    v.push(("rayon threads (ndarray backend)".into(), rayon::current_num_threads().to_string()));
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    for key in ["MemTotal", "MemAvailable"] {
        if let Some(l) = mem.lines().find(|l| l.starts_with(key)) {
            let kb: f64 = l.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            v.push((key.into(), format!("{:.1} GiB", kb / 1024.0 / 1024.0)));
        }
    }
    v.push(("load average (1/5/15 min)".into(), std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")));
    v.push(("kernel".into(), std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()));
    v.push(("rustc".into(), first_line("rustc", &["-V"]).unwrap_or("?".into())));
    v.push(("relprop".into(), env!("CARGO_PKG_VERSION").to_string()));
    let root = crate::workspace();
    let root_s = root.display().to_string();
    let rev = first_line("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"]).unwrap_or("?".into());
    let dirty = first_line("git", &["-C", &root_s, "status", "--porcelain", "--untracked-files=no"]).is_some_and(|l| !l.is_empty());
    v.push(("git".into(), format!("{rev}{}", if dirty { " (uncommitted changes)" } else { "" })));
    v.push(("ndarray GEMM engine".into(), format!("{:?}", relprop_ndarray::kernels::gemm_engine())));
    let ort = root.join(".deps/onnxruntime");
    let ort_lib = std::fs::read_dir(&ort).ok().and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).find(|n| n.starts_with("libonnxruntime.so.")));
    v.push(("ONNX Runtime".into(), ort_lib.map(|n| n.trim_start_matches("libonnxruntime.so.").to_string()).unwrap_or("not installed".into())));
    let tch = std::fs::read_to_string(root.join(".deps/libtorch/build-version")).map(|s| s.trim().to_string()).unwrap_or("not installed".into());
    v.push(("libtorch".into(), tch));
    v
}
