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
