//! Every reference map of `golden/manifest.json` (signxai 1.1.9.2 on TensorFlow 2.12.1), reproduced from the
//! ONNX exports on the ndarray backend: 158 class-API maps (both neuron selections) and 228 method-name maps,
//! on both opsets. Tolerance: max|R - R_ref| <= 1e-4 · max|R_ref|; signxai's Bounded maps (≈0) within 1e-6
//! absolute.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use relprop_core::{analyzer_from, npy, CompiledModel, ExplainOptions, Params, RulePlan, Target};
use relprop_ndarray::NdModel;
use serde_json::Value;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden")
}

/// The class-API parameters of a manifest record as `--param` values.
fn params_of(rec: &Value) -> Params {
    let mut p = Params::default();
    if let Some(obj) = rec["params"].as_object() {
        for (k, v) in obj {
            let s = match v {
                Value::Array(a) => format!("({}, {})", a[0], a[1]),
                Value::String(s) => s.clone(),
                Value::Bool(b) => if *b { "true".into() } else { "false".into() },
                other => other.to_string(),
            };
            p.set(k, &s);
        }
    }
    p
}

fn run(opset: u32) {
    let dir = golden();
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let x = npy::read(&dir.join("input_x.npy")).unwrap();
    let mut models = std::collections::HashMap::new();
    for m in ["model_a", "model_b"] {
        let g = relprop_onnx::load(&dir.join(format!("onnx/{m}_opset{opset}.onnx"))).unwrap();
        models.insert(m, (Arc::new(g.clone()), NdModel::new(Arc::new(g)).unwrap()));
    }
    let (mut checked, mut worst, mut failures) = (0, 0f32, Vec::new());
    for rec in manifest["results"].as_array().unwrap() {
        let model = rec["model"].as_str().unwrap();
        let (graph, nd) = &models[model];
        let name = rec["analyzer"].as_str().unwrap();
        let class_api = rec["api"] == "class";
        let analyzer = if class_api {
            analyzer_from(None, rec["class"].as_str(), &params_of(rec))
        } else {
            analyzer_from(Some(name), None, &Params::default())
        };
        if rec["status"] != "ok" {
            // signxai failed on this configuration; relprop must either reproduce the failure (AlphaBetaX) or,
            // where signxai merely crashed on a graph shape (Bounded with two consumers), run.
            let err = rec["error"].as_str().unwrap_or("");
            if err.contains("TypeError") {
                assert!(analyzer.is_err(), "{model} {name}: signxai cannot build this; relprop must refuse too");
            }
            continue;
        }
        let analyzer = analyzer.unwrap_or_else(|e| panic!("{model} {name}: {e}"));
        let target = match &rec["neuron_selection"] {
            Value::String(_) => Target::Max,
            v => Target::Index(v.as_u64().unwrap() as usize),
        };
        let plan = RulePlan::resolve(graph, &analyzer).unwrap();
        let e = nd.explain(&plan, &x, &target, &ExplainOptions::default()).unwrap();
        let reference = npy::read(&dir.join(rec["file"].as_str().unwrap())).unwrap();
        // The method-name wrappers return the single sample without its batch axis.
        assert!(e.relevance.shape == reference.shape || e.relevance.shape[1..] == reference.shape[..], "{model} {name}");
        let scale = reference.max_abs();
        let diff = e.relevance.max_abs_diff(&reference);
        checked += 1;
        let ok = if scale < 1e-6 { diff <= 1e-6 } else { diff <= 1e-4 * scale };
        if scale >= 1e-6 {
            worst = worst.max(diff / scale);
        }
        if !ok {
            failures.push(format!("{model} {name} {target}: max|diff| {diff:.3e}, max|ref| {scale:.3e}"));
        }
    }
    println!("opset {opset}: {checked} maps checked, worst relative error {worst:.2e}");
    assert_eq!(checked, 386, "every successful reference map is checked");
    assert!(failures.is_empty(), "{} of {checked} maps differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn all_reference_maps_opset13() {
    run(13);
}

#[test]
fn all_reference_maps_opset17() {
    run(17);
}
