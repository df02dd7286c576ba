//! Method names and analyzer classes with parameters: `relprop_core::methods::parse_method` on the first line,
//! `relprop_core::Analyzer::from_class` with the first line as class and the others as `KEY=VALUE` parameters.
//! Whatever builds is resolved on a tiny conv + dense model and explained: parameters that pass the checks must
//! give a finite-or-error result, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use relprop_core::graph::{Activation, Conv, Dense, Graph, Op};
use relprop_core::{methods, Analyzer, CompiledModel, ExplainOptions, Params, RulePlan, Target, Tensor};
use relprop_ndarray::NdModel;

fn model() -> &'static (Graph, NdModel, Tensor) {
    static M: OnceLock<(Graph, NdModel, Tensor)> = OnceLock::new();
    M.get_or_init(|| {
        let t = |shape: &[usize], k: f32| {
            let n: usize = shape.iter().product();
            Arc::new(Tensor::new(shape.to_vec(), (0..n).map(|i| (i as f32 * k).sin()).collect()).unwrap())
        };
        let mut g = Graph::new("x", vec![2, 5]);
        let conv = Conv { weight: t(&[3, 2, 2], 1.3), bias: Some(t(&[3], 0.7)), strides: vec![1], dilations: vec![1], pads_begin: vec![1], pads_end: vec![0], groups: 1, activation: Some(Activation::Relu), pointwise: None, transposed: None };
        let c = g.push("m/conv/Conv", Op::Conv(conv), &[0]).unwrap();
        let f = g.push_reshape("m/flat/Reshape", "m/flat", c, vec![15]).unwrap();
        let d = Dense { weight: t(&[15, 4], 0.9), bias: Some(t(&[4], 2.1)), activation: None };
        g.push("m/dense/MatMul", Op::Dense(d), &[f]).unwrap();
        let x = Tensor::new(vec![2, 2, 5], (0..20).map(|i| if i % 4 == 1 { 0.0 } else { (i as f32 * 0.37).cos() }).collect()).unwrap();
        let m = NdModel::new(Arc::new(g.clone())).unwrap();
        (g, m, x)
    })
}

fn run(a: &Analyzer) {
    let (g, m, x) = model();
    let plan = RulePlan::resolve(g, a).expect("a built analyzer resolves on any graph");
    let _ = plan.describe(g);
    for t in [Target::Max, Target::Index(3), Target::All] {
        if let Ok(e) = m.explain(&plan, x, &t, &ExplainOptions::default()) {
            assert_eq!(e.relevance.shape, x.shape);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    if let Ok(a) = methods::parse_method(first) {
        run(&a);
    }
    let Ok(params) = Params::parse(&lines.collect::<Vec<_>>()) else { return };
    if let Ok(a) = Analyzer::from_class(first, &params) {
        let _ = format!("{a:?}");
        run(&a);
    }
    let _ = relprop_core::analyzer_from(None, Some(first), &params);
});
