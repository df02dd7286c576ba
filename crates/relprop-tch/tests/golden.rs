//! Every reference map of `golden/manifest.json` (signxai 1.1.9.2 on TensorFlow 2.12.1), reproduced from the
//! ONNX exports on the libtorch backend (CPU), exactly like `relprop-ndarray/tests/golden.rs`: at least the 386
//! maps of model_a/model_b per opset (and every further model the manifest lists with its ONNX file and
//! inputs), tolerance max|R - R_ref| <= 1e-4 · max|R_ref| (signxai's Bounded maps, ≈0, within 1e-6 absolute).
//! A map the ndarray backend also misses is reported, not failed here (ndarray's golden test owns it).
//! Each map is also compared with the ndarray backend's: max|R_tch - R_nd| <= 1e-5 · max|R_nd|, except for maps
//! that amplify float rounding (`common::compare`: a near-zero denominator, e.g. signxai's Z rule without bias,
//! turns a last-bit difference of summation order into ~1e-4 of the map). Those are held to 10× the ndarray map's
//! own change when the input moves by a few ulp, and listed. (With the current goldens and the per-sample
//! kernels, none needs it: all maps are within 8.3e-6 of ndarray.)
#![cfg(feature = "libtorch")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use relprop_core::{analyzer_from, npy, Backend, CompiledModel, ExplainOptions, Params, RulePlan, Target};
use relprop_ndarray::NdModel;
use relprop_tch::TchBackend;
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

/// The ONNX file of `model` for `opset`: `onnx/<model>_opset<N>.onnx` where the goldens have one per opset,
/// else the manifest's single export (replayed in the opset-13 run only).
fn onnx_file(dir: &Path, manifest: &Value, model: &str, opset: u32) -> Option<PathBuf> {
    let per_opset = dir.join(format!("onnx/{model}_opset{opset}.onnx"));
    if per_opset.exists() {
        return Some(per_opset);
    }
    let single = manifest["models"][model]["onnx"].as_str().map(|f| dir.join(f))?;
    (opset == 13 && single.exists()).then_some(single)
}

fn run(opset: u32) {
    let dir = golden();
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let backend = TchBackend::new("cpu").unwrap();
    let mut models = std::collections::HashMap::new();
    for m in manifest["models"].as_object().unwrap().keys() {
        if let Some(file) = onnx_file(&dir, &manifest, m, opset) {
            let g = Arc::new(relprop_onnx::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
            models.insert(m.clone(), (g.clone(), backend.compile(g.clone()).unwrap(), NdModel::new(g).unwrap()));
        }
    }
    let mut inputs = std::collections::HashMap::new();
    let mut expected = 0;
    let (mut checked, mut worst, mut worst_nd, mut worst_ill) = (0, 0f32, 0f32, 0f32);
    let (mut ill_names, mut shared, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for rec in manifest["results"].as_array().unwrap() {
        let model = rec["model"].as_str().unwrap();
        let Some((graph, tch, nd)) = models.get(model) else { continue };
        let input = rec["input"].as_str().unwrap_or("input_x.npy");
        let x = inputs.entry(input.to_string()).or_insert_with(|| npy::read(&dir.join(input)).unwrap()).clone();
        let x = &x;
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
        expected += 1;
        let analyzer = analyzer.unwrap_or_else(|e| panic!("{model} {name}: {e}"));
        let target = match &rec["neuron_selection"] {
            Value::String(_) => Target::Max,
            v => Target::Index(v.as_u64().unwrap() as usize),
        };
        let plan = RulePlan::resolve(graph, &analyzer).unwrap();
        let e = tch.explain(&plan, x, &target, &ExplainOptions::default()).unwrap();
        let reference = npy::read(&dir.join(rec["file"].as_str().unwrap())).unwrap();
        assert!(e.relevance.shape == reference.shape || e.relevance.shape[1..] == reference.shape[..], "{model} {name}");
        let scale = reference.max_abs();
        let diff = e.relevance.max_abs_diff(&reference);
        checked += 1;
        let within = |d: f32| if scale < 1e-6 { d <= 1e-6 } else { d <= 1e-4 * scale };
        if scale >= 1e-6 {
            worst = worst.max(diff / scale);
        }
        // Same engine, other numerics: the ndarray backend's map.
        let en = nd.explain(&plan, x, &target, &ExplainOptions::default()).unwrap();
        assert_eq!(e.relevance.shape, en.relevance.shape);
        if !within(diff) {
            if within(en.relevance.max_abs_diff(&reference)) {
                failures.push(format!("{model} {name} {target}: max|diff| {diff:.3e}, max|ref| {scale:.3e}"));
            } else {
                // The reference backend misses this map too: ndarray's golden test owns it; here only the
                // comparison with ndarray below applies.
                shared.push(format!("{model} {name} {target} ({:.2e})", diff / scale));
            }
        }
        let ep = nd.explain(&plan, &common::ulp_nudge(x), &target, &ExplainOptions::default()).unwrap();
        let (rel, bound, ill) = common::compare(&e.relevance, &en.relevance, &ep.relevance);
        if ill {
            worst_ill = worst_ill.max(rel);
            ill_names.push(format!("{model} {name} {target}"));
        } else {
            worst_nd = worst_nd.max(rel);
        }
        if rel > bound {
            failures.push(format!("{model} {name} {target}: vs ndarray {rel:.2e} > {bound:.2e}"));
        }
        assert!(e.output.max_rel_diff(&en.output) <= 1e-5, "{model} {name}: logits differ from ndarray");
    }
    println!(
        "opset {opset}: {checked} maps checked on tch cpu, worst relative error vs signxai {worst:.2e}, vs ndarray {worst_nd:.2e} \
         (ill-conditioned, within 10x ndarray's rounding sensitivity: {worst_ill:.2e} on {} maps: {ill_names:?})",
        ill_names.len()
    );
    if !shared.is_empty() {
        println!("opset {opset}: outside the golden tolerance on ndarray too (not counted here): {shared:?}");
    }
    assert!(checked >= 386 && checked == expected, "every successful reference map is checked ({checked} of {expected})");
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
