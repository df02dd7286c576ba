//! Regression corpus of the `npy_decode` and `method_parse` fuzz targets (fuzz/, docs/hardening.md), run in the
//! normal test suite: every saved input gives a value or an error, never a panic. The explanation half of
//! `method_parse` runs in relprop-ndarray's fuzz_regressions on the same files.

use std::path::PathBuf;
use std::sync::Arc;

use relprop_core::graph::{Conv, Dense, Graph, Op};
use relprop_core::{methods, npy, Analyzer, Params, RulePlan, Tensor};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn npy_decode_corpus() {
    let files = corpus("npy_decode");
    assert!(!files.is_empty());
    for (name, bytes) in &files {
        if let Ok(t) = npy::decode(bytes, name) {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>(), "{name}");
            let again = npy::decode(&npy::encode(&t), name).unwrap();
            assert_eq!(again.shape, t.shape, "{name}");
            assert!(again.data.iter().zip(&t.data).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}");
        }
    }
}

/// x (2, 5) -> conv1d -> flatten -> dense(4), as in the fuzz target.
fn tiny() -> Graph {
    let t = |shape: &[usize]| Arc::new(Tensor::new(shape.to_vec(), (0..shape.iter().product::<usize>()).map(|i| (i as f32).sin()).collect()).unwrap());
    let mut g = Graph::new("x", vec![2, 5]);
    let conv = Conv { weight: t(&[3, 2, 2]), bias: Some(t(&[3])), strides: vec![1], dilations: vec![1], pads_begin: vec![1], pads_end: vec![0], groups: 1, activation: None, pointwise: None, transposed: None };
    let c = g.push("m/conv/Conv", Op::Conv(conv), &[0]).unwrap();
    let f = g.push_reshape("m/flat/Reshape", "m/flat", c, vec![15]).unwrap();
    g.push("m/dense/MatMul", Op::Dense(Dense { weight: t(&[15, 4]), bias: None, activation: None }), &[f]).unwrap();
    g
}

/// The method_parse harness without the explanation: the first line as method name and as class, the other
/// lines as KEY=VALUE parameters.
pub fn method_harness(bytes: &[u8]) -> Vec<Analyzer> {
    let Ok(text) = std::str::from_utf8(bytes) else { return vec![] };
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let mut built = Vec::new();
    built.extend(methods::parse_method(first));
    if let Ok(params) = Params::parse(&lines.collect::<Vec<_>>()) {
        built.extend(Analyzer::from_class(first, &params));
        let _ = relprop_core::analyzer_from(None, Some(first), &params);
    }
    let g = tiny();
    for a in &built {
        RulePlan::resolve(&g, a).unwrap().describe(&g);
    }
    built
}

#[test]
fn method_parse_corpus() {
    let files = corpus("method_parse");
    assert!(!files.is_empty());
    for (_, bytes) in &files {
        method_harness(bytes);
    }
}
