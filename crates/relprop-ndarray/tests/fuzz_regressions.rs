//! The explanation half of the `onnx_decode` and `method_parse` fuzz targets (fuzz/, docs/hardening.md) on their
//! regression corpora (kept next to the loaders, in relprop-onnx and relprop-core): a model the importer accepts
//! and an analyzer that builds must explain or fail with an error, never panic. Plus the explanation memory
//! limit.

use std::path::PathBuf;
use std::sync::Arc;

use relprop_core::engine::check_input_with;
use relprop_core::graph::{Activation, Conv, Dense, Graph, Op};
use relprop_core::{methods, Analyzer, CompiledModel, ExplainOptions, Limits, Params, RulePlan, Target, Tensor};
use relprop_ndarray::NdModel;

fn corpus(krate: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("tests/fuzz_corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn onnx_decode_corpus_explains_or_fails_cleanly() {
    for (name, bytes) in corpus("relprop-onnx", "onnx_decode") {
        let Ok(g) = relprop_onnx::decode(&bytes, &name) else { continue };
        let weights: usize = g.nodes.iter().flat_map(|n| relprop_core::graph::weights_of(&n.op)).map(|t| t.data.len()).sum();
        if g.activation_elements() > 4_000 || weights > 4_000 || g.nodes.len() > 48 {
            continue;
        }
        let shape: Vec<usize> = std::iter::once(2).chain(g.input_shape().iter().copied()).collect();
        let n: usize = shape.iter().product();
        let x = Tensor::new(shape, (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect()).unwrap();
        let Ok(m) = NdModel::new(Arc::new(g.clone())) else { continue };
        for class in ["LRPEpsilon", "LRPAlpha2Beta1", "LRPSequentialCompositeBFlat", "LRPZPlus", "LRPGamma"] {
            let plan = RulePlan::resolve(&g, &Analyzer::from_class(class, &Params::default()).unwrap()).unwrap();
            for t in [Target::Max, Target::Index(0), Target::All] {
                if let Ok(e) = m.explain(&plan, &x, &t, &ExplainOptions { keep_layers: true }) {
                    assert_eq!(e.relevance.shape, x.shape, "{name}");
                }
            }
        }
    }
}

#[test]
fn method_parse_corpus_explains_or_fails_cleanly() {
    let t = |shape: &[usize], k: f32| Arc::new(Tensor::new(shape.to_vec(), (0..shape.iter().product::<usize>()).map(|i| (i as f32 * k).sin()).collect()).unwrap());
    let mut g = Graph::new("x", vec![2, 5]);
    let conv = Conv { weight: t(&[3, 2, 2], 1.3), bias: Some(t(&[3], 0.7)), strides: vec![1], dilations: vec![1], pads_begin: vec![1], pads_end: vec![0], groups: 1, activation: Some(Activation::Relu), pointwise: None, transposed: None };
    let c = g.push("m/conv/Conv", Op::Conv(conv), &[0]).unwrap();
    let f = g.push_reshape("m/flat/Reshape", "m/flat", c, vec![15]).unwrap();
    g.push("m/dense/MatMul", Op::Dense(Dense { weight: t(&[15, 4], 0.9), bias: Some(t(&[4], 2.1)), activation: None }), &[f]).unwrap();
    let x = Tensor::new(vec![2, 2, 5], (0..20).map(|i| if i % 4 == 1 { 0.0 } else { (i as f32 * 0.37).cos() }).collect()).unwrap();
    let m = NdModel::new(Arc::new(g.clone())).unwrap();
    for (name, bytes) in corpus("relprop-core", "method_parse") {
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let mut built: Vec<Analyzer> = methods::parse_method(first).into_iter().collect();
        if let Ok(p) = Params::parse(&lines.collect::<Vec<_>>()) {
            built.extend(Analyzer::from_class(first, &p));
        }
        for a in built {
            let plan = RulePlan::resolve(&g, &a).unwrap();
            for tg in [Target::Max, Target::Index(3), Target::All] {
                if let Ok(e) = m.explain(&plan, &x, &tg, &ExplainOptions::default()) {
                    assert_eq!(e.relevance.shape, x.shape, "{name}");
                }
            }
        }
    }
}

#[test]
fn a_batch_beyond_the_activation_limit_is_refused_before_allocating() {
    // Per sample: 1024 input + 2 output floats, x 4 bytes x ACTIVATION_FACTOR 4 = 16416 bytes; 1 MiB fits 63.
    let small = Limits { max_activation_bytes: 1 << 20, ..Limits::default() };
    let mut g2 = Graph::new("x", vec![1024]);
    g2.push("d", Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![1024, 2], vec![0.5; 2048]).unwrap()), bias: None, activation: None }), &[0]).unwrap();
    let x2 = Tensor::new(vec![64, 1024], vec![1.0; 64 * 1024]).unwrap();
    let e = check_input_with(&g2, &x2, &small).unwrap_err().to_string();
    assert!(e.contains("activations") && e.contains("RELPROP_MAX_ACTIVATION_BYTES"), "{e}");
    assert!(check_input_with(&g2, &x2.slice_batch(0, 63), &small).is_ok());
    // The default limit lets the batch through, and the backend explains it.
    assert!(check_input_with(&g2, &x2, &Limits::default()).is_ok());
    let plan = RulePlan::resolve(&g2, &Analyzer::from_class("LRPZ", &Params::default()).unwrap()).unwrap();
    let m = NdModel::new(Arc::new(g2.clone())).unwrap();
    assert_eq!(m.explain(&plan, &x2, &Target::Max, &ExplainOptions::default()).unwrap().relevance.shape, vec![64, 1024]);
}

#[test]
fn dense_backward_on_a_column_major_product() {
    // Found by the property tests (proptests.rs): x (1, 2, 2) -> flatten -> dense 4->1 without bias, batch of 2.
    // `dot` against the transposed weight returned a column-major array, which the row-major reshape in the
    // dense kernel refused ("ShapeError/IncompatibleLayout") for every analyzer.
    let mut g = Graph::new("x", vec![1, 2, 2]);
    let f = g.push_reshape("flat", "flat", 0, vec![4]).unwrap();
    let w = Arc::new(Tensor::new(vec![4, 1], vec![0.5, -1.0, 0.25, 2.0]).unwrap());
    g.push("out", Op::Dense(Dense { weight: w, bias: None, activation: None }), &[f]).unwrap();
    let x = Tensor::new(vec![2, 1, 2, 2], vec![1.0, 0.0, -2.0, 0.5, 0.0, 3.0, 1.0, -1.0]).unwrap();
    let m = NdModel::new(Arc::new(g.clone())).unwrap();
    for class in ["LRPZ", "LRPZPlus", "LRPGamma", "LRPEpsilon"] {
        let plan = RulePlan::resolve(&g, &Analyzer::from_class(class, &Params::default()).unwrap()).unwrap();
        for t in [Target::Max, Target::Index(0), Target::All] {
            let e = m.explain(&plan, &x, &t, &ExplainOptions::default()).unwrap_or_else(|e| panic!("{class} {t}: {e}"));
            assert_eq!(e.relevance.shape, x.shape);
            if class == "LRPZ" {
                // one dense layer without bias: R_i = x_i w_i (the output is the logit itself)
                let want: Vec<f32> = x.data.iter().enumerate().map(|(i, v)| v * [0.5, -1.0, 0.25, 2.0][i % 4]).collect();
                assert!(e.relevance.data.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{:?} vs {want:?}", e.relevance.data);
            }
        }
    }
}
