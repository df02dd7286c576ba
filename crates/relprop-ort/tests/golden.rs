//! Every reference map of `golden/manifest.json` (signxai on TensorFlow) reproduced on the ONNX Runtime backend
//! from the ONNX exports, both opsets, exactly as relprop-ndarray's golden test: max|R - R_ref| <= 1e-4 ·
//! max|R_ref| (signxai's Bounded maps, ≈0, within 1e-6 absolute). Each map is also compared with the ndarray
//! backend's: max relative difference <= 1e-5.

mod common;

use std::sync::Arc;

use relprop_core::{analyzer_from, npy, Backend, CompiledModel, ExplainOptions, Params, RulePlan, Target};
use relprop_ndarray::NdModel;
use serde_json::Value;

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
    let be = common::backend();
    let dir = common::golden();
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let x = npy::read(&dir.join("input_x.npy")).unwrap();
    let mut models = std::collections::HashMap::new();
    for m in ["model_a", "model_b"] {
        let g = Arc::new(relprop_onnx::load(&dir.join(format!("onnx/{m}_opset{opset}.onnx"))).unwrap());
        models.insert(m, (g.clone(), be.compile(g.clone()).unwrap(), NdModel::new(g).unwrap()));
    }
    let (mut checked, mut worst, mut worst_nd, mut failures) = (0, 0f32, 0f32, Vec::new());
    for rec in manifest["results"].as_array().unwrap() {
        let model = rec["model"].as_str().unwrap();
        let (graph, ort, nd) = &models[model];
        let name = rec["analyzer"].as_str().unwrap();
        let class_api = rec["api"] == "class";
        let analyzer = if class_api {
            analyzer_from(None, rec["class"].as_str(), &params_of(rec))
        } else {
            analyzer_from(Some(name), None, &Params::default())
        };
        if rec["status"] != "ok" {
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
        let opts = ExplainOptions::default();
        let e = ort.explain(&plan, &x, &target, &opts).unwrap_or_else(|e| panic!("{model} {name} {target}: {e}"));
        let en = nd.explain(&plan, &x, &target, &opts).unwrap();
        let reference = npy::read(&dir.join(rec["file"].as_str().unwrap())).unwrap();
        assert!(e.relevance.shape == reference.shape || e.relevance.shape[1..] == reference.shape[..], "{model} {name}");
        assert_eq!(e.relevance.shape, en.relevance.shape);
        let scale = reference.max_abs();
        let diff = e.relevance.max_abs_diff(&reference);
        checked += 1;
        let ok = if scale < 1e-6 { diff <= 1e-6 } else { diff <= 1e-4 * scale };
        if scale >= 1e-6 {
            worst = worst.max(diff / scale);
        }
        if !ok {
            failures.push(format!("{model} {name} {target}: vs golden max|diff| {diff:.3e}, max|ref| {scale:.3e}"));
        }
        // Against the ndarray backend (same rules, other numerics): relative to the ndarray map's scale.
        let nd_scale = en.relevance.max_abs();
        let nd_diff = e.relevance.max_abs_diff(&en.relevance);
        let rel = if nd_scale < 1e-6 { 0.0 } else { nd_diff / nd_scale };
        worst_nd = worst_nd.max(rel);
        if (nd_scale < 1e-6 && nd_diff > 1e-6) || rel > 1e-5 {
            failures.push(format!("{model} {name} {target}: vs ndarray max|diff| {nd_diff:.3e}, max|nd| {nd_scale:.3e} (rel {rel:.2e})"));
        }
        let logit_rel = e.output.max_rel_diff(&en.output);
        if logit_rel > 1e-5 {
            failures.push(format!("{model} {name} {target}: logits differ from ndarray by {logit_rel:.2e}"));
        }
    }
    println!(
        "opset {opset}: {checked} maps checked, worst relative error vs golden {worst:.2e}, vs ndarray {worst_nd:.2e}"
    );
    assert_eq!(checked, 386, "every successful reference map is checked");
    assert!(failures.is_empty(), "{} problems in {checked} maps:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn all_reference_maps_opset13() {
    run(13);
}

#[test]
fn all_reference_maps_opset17() {
    run(17);
}
