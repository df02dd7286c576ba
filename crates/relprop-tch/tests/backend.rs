//! The backend contract: a batch explains like its samples one by one (1e-5, or within 10× the map's rounding
//! sensitivity where it amplifies rounding; the backend runs its kernels per sample, so it is exact in practice),
//! hostile input gives the shared errors (never a libtorch exception or a panic), and asking for CUDA works or
//! fails cleanly.
#![cfg(feature = "libtorch")]

mod common;

use std::path::Path;
use std::sync::Arc;

use relprop_core::rng::{agreement, ulp_nudge};
use relprop_core::{analyzer_from, Backend, CompiledModel, Error, ExplainOptions, Params, RulePlan, Target, Tensor};
use relprop_ndarray::NdModel;
use relprop_tch::TchBackend;

fn golden_model(name: &str) -> Arc<relprop_core::Graph> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden");
    Arc::new(relprop_onnx::load(&dir.join(format!("onnx/{name}_opset13.onnx"))).unwrap())
}

#[test]
fn batch_of_three_equals_each_sample_alone() {
    let backend = TchBackend::new("cpu").unwrap();
    let methods = ["lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x", "lrp_alpha_1_beta_0", "w2lrp_z", "zblrp_epsilon_0_1_VGG16ILSVRC"];
    let models = [("model_a", golden_model("model_a")), ("model_b", golden_model("model_b")), ("cnn2d", Arc::new(common::cnn2d())), ("cnn1d", Arc::new(common::cnn1d()))];
    for (name, g) in models {
        let m = backend.compile(g.clone()).unwrap();
        let shape: Vec<usize> = std::iter::once(3).chain(g.input_shape().iter().copied()).collect();
        let x = common::Lcg(5).input(&shape, false);
        for method in methods {
            let plan = RulePlan::resolve(&g, &analyzer_from(Some(method), None, &Params::default()).unwrap()).unwrap();
            for target in [Target::Max, Target::Index(2), Target::All] {
                let batch = m.explain(&plan, &x, &target, &ExplainOptions::default()).unwrap();
                assert_eq!(batch.relevance.shape, x.shape);
                for i in 0..3 {
                    let one = m.explain(&plan, &x.slice_batch(i, 1), &target, &ExplainOptions::default()).unwrap();
                    let part = batch.relevance.slice_batch(i, 1);
                    let nudged = m.explain(&plan, &ulp_nudge(&x.slice_batch(i, 1)), &target, &ExplainOptions::default()).unwrap();
                    let (rel, bound, _) = agreement(&part, &one.relevance, &nudged.relevance);
                    assert!(rel <= bound, "{name} {method} {target} sample {i}: {rel:.2e} > {bound:.2e}");
                    assert!(batch.output.slice_batch(i, 1).max_rel_diff(&one.output) <= 1e-6);
                }
            }
        }
    }
}

#[test]
fn hostile_input_gives_the_shared_errors() {
    let g = golden_model("model_a");
    let tch = TchBackend::new("cpu").unwrap().compile(g.clone()).unwrap();
    let nd = NdModel::new(g.clone()).unwrap();
    let plan = RulePlan::resolve(&g, &analyzer_from(Some("lrp_epsilon_0_1"), None, &Params::default()).unwrap()).unwrap();
    let good = common::Lcg(3).input(&[2, 8, 8, 3], false);
    let mut nan = good.clone();
    nan.data[17] = f32::NAN;
    let mut inf = good.clone();
    inf.data[5] = f32::NEG_INFINITY;
    let cases: Vec<(&str, Tensor, Target)> = vec![
        ("wrong shape", Tensor::zeros(vec![2, 3, 8, 8]), Target::Max),
        ("no batch axis", Tensor::zeros(vec![8, 8, 3]), Target::Max),
        ("empty batch", Tensor::zeros(vec![0, 8, 8, 3]), Target::Max),
        ("NaN", nan, Target::Max),
        ("Inf", inf, Target::All),
        ("target out of range", good.clone(), Target::Index(99)),
    ];
    for (what, x, target) in cases {
        let et = tch.explain(&plan, &x, &target, &ExplainOptions::default()).unwrap_err();
        let en = nd.explain(&plan, &x, &target, &ExplainOptions::default()).unwrap_err();
        assert_eq!(et, en, "{what}: tch and ndarray disagree");
        assert!(matches!(et, Error::Input(_) | Error::Target(_)), "{what}: {et}");
        if target != Target::Index(99) {
            assert_eq!(tch.forward(&x).unwrap_err(), nd.forward(&x).unwrap_err(), "{what}: forward");
        }
    }
    // A plan of another graph is refused, not run.
    let other = golden_model("model_b");
    let plan_b = RulePlan::resolve(&other, &analyzer_from(Some("lrp_z"), None, &Params::default()).unwrap()).unwrap();
    assert!(tch.explain(&plan_b, &good, &Target::Max, &ExplainOptions::default()).is_err());
    // Device names.
    for bad in ["tpu", "cuda:x", ""] {
        assert!(matches!(TchBackend::new(bad), Err(Error::Param { .. })), "{bad}");
    }
}

#[test]
fn cuda_works_or_fails_cleanly() {
    for dev in ["cuda", "cuda:0", "cuda:15"] {
        let r = std::panic::catch_unwind(|| TchBackend::new(dev));
        let r = r.unwrap_or_else(|_| panic!("TchBackend::new({dev}) panicked"));
        match r {
            Ok(b) => {
                // A GPU is there: the CUDA maps equal the CPU maps.
                let g = golden_model("model_b");
                let plan = RulePlan::resolve(&g, &analyzer_from(Some("lrp_epsilon_0_1"), None, &Params::default()).unwrap()).unwrap();
                let x = common::Lcg(9).input(&[2, 8, 8, 3], false);
                let cpu = TchBackend::new("cpu").unwrap().compile(g.clone()).unwrap();
                let gpu = b.compile(g).unwrap();
                let (a, c) = (gpu.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap(), cpu.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap());
                assert!(a.relevance.max_rel_diff(&c.relevance) <= 1e-4, "{dev}: {:.2e}", a.relevance.max_rel_diff(&c.relevance));
                println!("{dev}: available ({}), max rel diff to cpu {:.2e}", b.device(), a.relevance.max_rel_diff(&c.relevance));
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(matches!(e, Error::Backend { .. }) && msg.contains("CUDA"), "{dev}: {msg}");
                println!("{dev}: {msg}");
            }
        }
    }
}
