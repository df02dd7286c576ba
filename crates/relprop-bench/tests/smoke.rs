//! Small checks of the bench crate that need no zoo files: zoo graphs of the golden architectures, exact
//! operation counts, and a report rendered from made-up timings.

use std::path::PathBuf;

use relprop_bench::report::{Report, Timing};
use relprop_bench::{flops, zoo, Spec};
use relprop_core::Target;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../golden/onnx")
}

#[test]
fn golden_architecture_with_seeded_weights_round_trips() {
    let a = zoo::build("model_a", 1, &golden()).unwrap();
    let b = zoo::build("model_a", 1, &golden()).unwrap();
    let c = zoo::build("model_a", 2, &golden()).unwrap();
    assert_eq!(a, b, "same seed, same model");
    assert_ne!(a, c, "another seed, other weights");
    let bytes = relprop_onnx::encode_model(&relprop_onnx::graph_to_onnx(&a));
    let back = relprop_onnx::decode(&bytes, "model_a").unwrap();
    assert_eq!(zoo::parameters(&back), zoo::parameters(&a));
    // Relevance is finite and non-trivial on the zoo input.
    let m = relprop_bench::compile("ndarray", "cpu", &a).unwrap();
    let job = relprop_bench::Job::new(m, &a, &Spec::by_label("LRPEpsilon").unwrap(), 2).unwrap();
    let r = job.run().unwrap();
    assert!(r.data.iter().all(|v| v.is_finite()) && r.data.iter().any(|&v| v != 0.0));
}

#[test]
fn operation_counts_follow_the_rules() {
    let g = zoo::build("model_a", 1, &golden()).unwrap();
    let fwd = flops::forward(&g, 1).unwrap();
    let fwd8 = flops::forward(&g, 8).unwrap();
    assert!(fwd.gemm > 0.0);
    assert_eq!(fwd8.gemm, 8.0 * fwd.gemm);
    // Epsilon: the forward pass plus one transposed product per kernel layer (W x is reused).
    let eps = Spec::by_label("LRPEpsilon").unwrap().plan(&g).unwrap().unwrap();
    let e = flops::explain(&g, &eps, 1, &Target::Max).unwrap();
    assert!((e.gemm - 2.0 * fwd.gemm).abs() < 1e-6 * fwd.gemm, "{} vs {}", e.gemm, fwd.gemm);
}

#[test]
fn report_renders() {
    let t = |backend: &str, analyzer: &str, batch: usize, median: f64| Timing {
        model: "vgg16".into(), batch, backend: backend.into(), analyzer: analyzer.into(), median, lo: median * 0.9, hi: median * 1.1,
        gemm_flops: 31e9, elem_ops: 1e8,
    };
    let r = Report {
        info: vec![("cpu".into(), "test".into())],
        gemm: vec![("512x512x3136".into(), 100.0)],
        timings: vec![
            t("ortref", "forward", 1, 0.15),
            t("ndarray", "forward", 1, 0.2),
            t("ndarray", "LRPEpsilon", 1, 0.4),
            t("ndarray", "LRPEpsilon", 8, 2.0),
            t("tch", "forward", 1, 0.1),
            t("tch", "LRPEpsilon", 1, 0.25),
        ],
        memory: vec![],
        notes: vec![],
        quick: true,
        models: vec!["vgg16".into()],
        backends: vec!["ortref".into(), "ndarray".into()],
        peers: Some(serde_json::json!({
            "signxai": {"rows": [{"peer": "signxai", "model": "vgg16", "analyzer": "LRPEpsilon", "seconds": 1.07}], "versions": {"signxai": "1.1.9.2"}},
            "torch": {"rows": [
                {"peer": "captum", "model": "vgg16", "analyzer": "LRPEpsilon", "seconds": 0.649},
                {"peer": "zennit", "model": "vgg16", "analyzer": "LRPEpsilon", "seconds": 0.810}
            ], "versions": {"torch": "2.13.0"}}
        })),
    };
    let html = r.html();
    assert!(html.contains("<svg") && html.contains("criterion/report/index.html"));
    let j = r.json();
    let eps = j["timings"].as_array().unwrap().iter().find(|v| v["analyzer"] == "LRPEpsilon" && v["batch"] == 1).unwrap();
    assert!((eps["ratio_to_ort_forward"].as_f64().unwrap() - 0.4 / 0.15).abs() < 1e-9);
    assert!((eps["ratio_to_own_forward"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    let rows = r.targets();
    // A backend against its own forward pass, only where measured (no ort rows here).
    let own = rows.iter().find(|r| r.0 == "vgg16 b1 tch LRPEpsilon / tch forward").unwrap();
    assert!((own.1.unwrap() - 2.5).abs() < 1e-9 && own.2 == "<= 3");
    assert!(!rows.iter().any(|r| r.0.contains(" ort ")));
    let b8 = rows.iter().find(|r| r.0.contains("LRPEpsilon: batch 8")).unwrap();
    assert!((b8.1.unwrap() - 8.0 * 0.4 / 2.0).abs() < 1e-9);
    // Peers: signxai's time over ours, and the fastest PyTorch peer (captum here) over ours.
    let sx = rows.iter().find(|r| r.0.contains("LRPEpsilon: speed-up over signxai")).unwrap();
    assert!((sx.1.unwrap() - 1.07 / 0.4).abs() < 1e-9);
    let pt = rows.iter().find(|r| r.0.contains("LRPEpsilon: speed-up over the fastest PyTorch peer")).unwrap();
    assert!((pt.1.unwrap() - 0.649 / 0.4).abs() < 1e-9 && pt.2 == ">= 1.5");
    assert!(html.contains("Peers (same machine") && html.contains("captum"));
}
