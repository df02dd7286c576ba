//! Every op and geometry on small synthetic models (1-D, 2-D, 3-D, channels-last, ties), every rule program and
//! neuron selection: the tch backend (CPU) against the ndarray reference, max|R_tch - R_nd| <= 1e-5 · max|R_nd|
//! for every layer's relevance. Random weights make some maps ill-conditioned (a near-zero denominator of the Z
//! rule or of the AvgPool/Add rules turns a last-bit difference into ~1e-4 of the map); there the bound is 10× the
//! ndarray map's own change when the input moves by a few ulp (`relprop_core::rng::agreement`), and the count is printed.
#![cfg(feature = "libtorch")]

mod common;

use std::sync::Arc;

use relprop_core::rng::{agreement, ulp_nudge};
use relprop_core::{CompiledModel, ExplainOptions, RulePlan, Target};
use relprop_ndarray::NdModel;
use relprop_tch::TchBackend;

#[test]
fn every_op_and_rule_matches_ndarray() {
    let backend = TchBackend::new("cpu").unwrap();
    let (mut worst, mut worst_ill, mut runs, mut ill_conditioned, mut failures) = (0f32, 0f32, 0, 0, Vec::new());
    for (name, g, ties) in common::models() {
        let g = Arc::new(g);
        let tch = backend.compile_tch(g.clone()).unwrap();
        let nd = NdModel::new(g.clone()).unwrap();
        let shape: Vec<usize> = std::iter::once(2).chain(g.input_shape().iter().copied()).collect();
        let x = common::Lcg(77).input(&shape, ties);
        let x_nudged = ulp_nudge(&x);
        let (yt, yn) = (tch.forward(&x).unwrap(), nd.forward(&x).unwrap_or_else(|e| panic!("{name}: ndarray forward: {e}")));
        assert!(yt.max_rel_diff(&yn) <= 1e-6, "{name}: forward differs by {:.2e}", yt.max_rel_diff(&yn));
        for (aname, a) in common::analyzers() {
            let plan = match RulePlan::resolve(&g, &a) {
                Ok(p) => p,
                Err(e) => panic!("{name} {aname}: {e}"),
            };
            for target in [Target::Max, Target::Index(1), Target::All] {
                let opts = ExplainOptions { keep_layers: true };
                let (et, en) = (tch.explain(&plan, &x, &target, &opts), nd.explain(&plan, &x, &target, &opts));
                let (et, en) = match (et, en) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(a), Err(b)) => {
                        assert_eq!(a, b, "{name} {aname} {target}: both fail, differently");
                        continue;
                    }
                    (a, b) => panic!("{name} {aname} {target}: tch {:?} vs ndarray {:?}", a.err(), b.err()),
                };
                let ep = nd.explain(&plan, &x_nudged, &target, &opts).unwrap();
                runs += 1;
                assert_eq!(et.relevance.shape, en.relevance.shape);
                let (rel, bound, ill) = agreement(&et.relevance, &en.relevance, &ep.relevance);
                let map_bound = bound;
                if ill {
                    ill_conditioned += 1;
                    worst_ill = worst_ill.max(rel);
                } else {
                    worst = worst.max(rel);
                }
                if rel > bound || !rel.is_finite() {
                    failures.push(format!("{name} {aname} {target}: relevance differs by {rel:.2e} > {bound:.2e}"));
                }
                // Every layer's relevance, not only the input's.
                let layers = et.layers.unwrap().into_iter().zip(en.layers.unwrap()).zip(ep.layers.unwrap());
                for (i, ((lt, ln), lp)) in layers.enumerate() {
                    match (lt, ln, lp) {
                        (Some(a), Some(b), Some(p)) => {
                            // A layer's own nudge may miss the near-zero denominator the input map shows; the
                            // map's bound covers the whole backward chain.
                            let (r, lbound, _) = agreement(&a, &b, &p);
                            let bound = lbound.max(map_bound);
                            if r > bound || a.shape != b.shape {
                                failures.push(format!("{name} {aname} {target}: node {} differs by {r:.2e} > {bound:.2e}", g.nodes[i].name));
                            }
                        }
                        (None, None, _) => {}
                        _ => failures.push(format!("{name} {aname} {target}: node {} kept on one backend only", g.nodes[i].name)),
                    }
                }
            }
        }
    }
    println!(
        "{runs} explanations: worst relative difference tch vs ndarray {worst:.2e}; {ill_conditioned} maps amplify \
         rounding beyond 1e-5 (worst {worst_ill:.2e}, within 10x ndarray's own rounding sensitivity)"
    );
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

/// The fused BatchNorm rule gives the composed definition's values bit for bit, including where `x = μ` makes the
/// denominator an exact zero before stabilisation and where `y = β` zeroes the numerator.
#[test]
fn fused_batch_norm_rule_equals_its_definition_bit_for_bit() {
    use relprop_core::engine::{composed, Numerics};
    use relprop_core::graph::{Graph, Op};
    let mut g = Graph::new("x", vec![4, 5, 6]);
    g.push("r", Op::Activation(relprop_core::graph::Activation::Relu), &[0]).unwrap();
    let m = TchBackend::new("cpu").unwrap().compile_tch(Arc::new(g)).unwrap();
    let mut rng = common::Lcg(9);
    let (beta, mean) = (vec![0.5, -0.25, 0.0, 1.0], vec![0.25, 0.0, -1.0, 2.0]);
    let mut t = |edit: &dyn Fn(&mut relprop_core::Tensor)| {
        let mut t = rng.input(&[2, 4, 5, 6], false);
        edit(&mut t);
        m.input(&t).unwrap()
    };
    let x = t(&|t| t.data[3] = 0.25); // x = μ in channel 0
    let y = t(&|t| t.data[40] = -0.25); // y = β in channel 1
    let r = t(&|_| ());
    let bits = |v: &<relprop_tch::TchModel as Numerics>::T| m.output(v).unwrap().data.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let fused = m.batch_norm_rule(&x, &y, &r, &beta, &mean).unwrap();
    let plain = composed::batch_norm_rule(&m, &x, &y, &r, &beta, &mean).unwrap();
    assert_eq!(bits(&fused), bits(&plain));
    assert!(m.output(&fused).unwrap().data.iter().any(|v| *v != 0.0));
}

/// The sign-based stabilisers, SafeDivide and the SIGN input modifiers give the ndarray backend's values bit for
/// bit at the values where a comparison decides: ±0, ±tiny, exactly μ, the infinities, NaN (any NaN counts as
/// equal to any other).
#[test]
fn sign_tests_match_ndarray_at_the_edges() {
    use relprop_core::engine::Numerics;
    use relprop_core::graph::{Graph, Op};
    use relprop_core::program::XMod;
    let mut g = Graph::new("x", vec![13]);
    g.push("r", Op::Activation(relprop_core::graph::Activation::Relu), &[0]).unwrap();
    let g = Arc::new(g);
    let (t, n) = (TchBackend::new("cpu").unwrap().compile_tch(g.clone()).unwrap(), NdModel::new(g).unwrap());
    let z = [0.0, -0.0, 1e-38, -1e-38, 0.5, -0.5, 1e-7, -1e-7, f32::INFINITY, f32::NEG_INFINITY, 3.0, -3.0, f32::NAN];
    let r = [1.0, -2.0, 0.25, 3.0, -1.0, 0.0, 2.0, -0.5, 1.0, 1.0, -0.0, 7.0, 1.0];
    let x = |d: &[f32]| relprop_core::Tensor::new(vec![1, d.len()], d.to_vec()).unwrap();
    let (zt, zn, rt, rn) = (t.input(&x(&z)).unwrap(), n.input(&x(&z)).unwrap(), t.input(&x(&r)).unwrap(), n.input(&x(&r)).unwrap());
    let bits = |v: relprop_core::Tensor| v.data.iter().map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() }).collect::<Vec<u32>>();
    let same = |what: &str, a: relprop_core::Tensor, b: relprop_core::Tensor| assert_eq!(bits(a.clone()), bits(b.clone()), "{what}: tch {:?} vs ndarray {:?}", a.data, b.data);
    same("safe_div", t.output(&t.safe_div(&rt, &zt).unwrap()).unwrap(), n.output(&n.safe_div(&rn, &zn).unwrap()).unwrap());
    for eps in [1e-7, 0.1] {
        same("stabilize", t.output(&t.stabilize(&zt, eps).unwrap()).unwrap(), n.output(&n.stabilize(&zn, eps).unwrap()).unwrap());
        same("div_stabilized", t.output(&t.div_stabilized(&rt, &zt, eps).unwrap()).unwrap(), n.output(&n.div_stabilized(&rn, &zn, eps).unwrap()).unwrap());
    }
    for m in [XMod::Sign, XMod::SignMu(0.5), XMod::SignMu(-1e-38)] {
        same(&format!("{m:?}"), t.output(&t.xmod(&zt, m).unwrap()).unwrap(), n.output(&n.xmod(&zn, m).unwrap()).unwrap());
    }
}

/// TensorFlow's MaxPool3D gradient gives every tied maximum the whole relevance (the comparison above accepts
/// tie-dependent maps as ill-conditioned, so this is checked by value): one 2×2×2 window of five 3s under a
/// Dense of weight 2, LRP-Z, as relprop-ndarray's tests/properties.rs derives it.
#[test]
fn max_pool_3d_gives_every_tied_maximum_the_whole_relevance() {
    use relprop_core::graph::{Dense, Graph, Op};
    use relprop_core::{Analyzer, Params, Tensor};
    let mut g = Graph::new("x", vec![1, 2, 2, 2]);
    let mp = g.push("mp", Op::MaxPool(common::pool(&[2, 2, 2], &[2, 2, 2], &[0; 3], &[0; 3], false, false)), &[0]).unwrap();
    let f = g.push_reshape("flat", "flat", mp, vec![1]).unwrap();
    g.push("d", Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![1, 1], vec![2.0]).unwrap()), bias: None, activation: None }), &[f]).unwrap();
    let g = Arc::new(g);
    let t = TchBackend::new("cpu").unwrap().compile_tch(g.clone()).unwrap();
    let plan = RulePlan::resolve(&g, &Analyzer::from_class("LRPZ", &Params::default()).unwrap()).unwrap();
    let x = Tensor::new(vec![1, 1, 2, 2, 2], vec![3.0, 3.0, 1.0, 3.0, 0.0, 3.0, 2.0, 3.0]).unwrap();
    let r = t.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap().relevance;
    assert_eq!(r.data, [6.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0]);
}
