//! ONNX bytes → IR (`relprop_onnx::decode`), then, for models small enough to run in microseconds, a plan and an
//! explanation on the ndarray backend: a file the importer accepts must explain or fail cleanly, never panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use relprop_core::{Analyzer, CompiledModel, ExplainOptions, Params, RulePlan, Target, Tensor};

fuzz_target!(|data: &[u8]| {
    let Ok(g) = relprop_onnx::decode(data, "fuzz.onnx") else { return };
    // Only small graphs are run: the point is the shapes and ops the importer lets through, not big kernels.
    let weights: usize = g.nodes.iter().flat_map(|n| relprop_core::graph::weights_of(&n.op)).map(|t| t.data.len()).sum();
    if g.activation_elements() > 4_000 || weights > 4_000 || g.nodes.len() > 48 {
        return;
    }
    // One analyzer and one target per input (chosen from its bytes) keeps the executions fast.
    let h = data.iter().fold(0usize, |a, &b| a.wrapping_mul(31).wrapping_add(b as usize));
    let class = ["LRPEpsilon", "LRPAlpha2Beta1", "LRPSequentialCompositeBFlat", "LRPZPlus", "LRPGamma"][h % 5];
    let target = [Target::Max, Target::Index(0), Target::All][(h / 5) % 3];
    let a = Analyzer::from_class(class, &Params::default()).unwrap();
    let plan = RulePlan::resolve(&g, &a).expect("presets resolve on any graph");
    if h % 16 == 0 {
        let _ = plan.describe(&g);
    }
    let shape: Vec<usize> = std::iter::once(2).chain(g.input_shape().iter().copied()).collect();
    let n: usize = shape.iter().product();
    let x = Tensor::new(shape, (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect()).unwrap();
    let Ok(m) = relprop_ndarray::NdModel::new(Arc::new(g)) else { return };
    if let Ok(e) = m.explain(&plan, &x, &target, &ExplainOptions { keep_layers: true }) {
        assert_eq!(e.relevance.shape, x.shape, "relevance must have the input's shape");
    }
});
