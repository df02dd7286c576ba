//! LRP properties on small models built with the IR builder, and the corrected textbook rules against plain
//! formulas computed here independently of the engine.

use std::sync::Arc;

use relprop_core::graph::{Activation, BatchNorm, Conv, Dense, Graph, Op, Pool};
use relprop_core::rng::Lcg;
use relprop_core::{Analyzer, CompiledModel, ExplainOptions, Params, RulePlan, Target, Tensor};
use relprop_ndarray::NdModel;

fn conv(rng: &mut Lcg, cin: usize, cout: usize, k: &[usize], stride: usize, pads: (usize, usize), bias: bool) -> Op {
    let mut shape = vec![cout, cin];
    shape.extend_from_slice(k);
    let r = k.len();
    Op::Conv(Conv {
        weight: rng.tensor(&shape),
        bias: bias.then(|| rng.tensor(&[cout])),
        strides: vec![stride; r],
        dilations: vec![1; r],
        pads_begin: vec![pads.0; r],
        pads_end: vec![pads.1; r],
        groups: 1,
        activation: Some(Activation::Relu),
        pointwise: None,
        transposed: None,
    })
}

fn dense(rng: &mut Lcg, i: usize, o: usize, bias: bool, relu: bool) -> Op {
    Op::Dense(Dense { weight: rng.tensor(&[i, o]), bias: bias.then(|| rng.tensor(&[o])), activation: relu.then_some(Activation::Relu) })
}

/// NCHW CNN: conv (stride 2, asymmetric pads) → overlapping max pool → BN → conv → residual add → GAP → dense.
fn cnn(bias: bool, seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("x", vec![3, 9, 7]);
    let c1 = g.push("c1", conv(&mut rng, 3, 4, &[3, 3], 2, (0, 1), bias), &[0]).unwrap();
    let pool = Pool { kernel: vec![3, 3], strides: vec![1, 1], pads_begin: vec![1, 1], pads_end: vec![1, 1], count_include_pad: false, ceil_mode: false };
    let mp = g.push("mp", Op::MaxPool(pool), &[c1]).unwrap();
    let bn = Op::BatchNorm(BatchNorm { gamma: rng.tensor(&[4]), beta: rng.tensor(&[4]), mean: rng.tensor(&[4]), var: Arc::new(Tensor::new(vec![4], vec![0.5, 1.0, 2.0, 0.7]).unwrap()), epsilon: 1e-3 });
    let bn = if bias { g.push("bn", bn, &[mp]).unwrap() } else { mp };
    let c2 = g.push("c2", conv(&mut rng, 4, 4, &[3, 3], 1, (1, 1), bias), &[bn]).unwrap();
    let add = g.push("add", Op::Add, &[bn, c2]).unwrap();
    let gap = g.push("gap", Op::GlobalAvgPool, &[add]).unwrap();
    g.push("out", dense(&mut rng, 4, 3, bias, false), &[gap]).unwrap();
    g
}

fn explain(g: &Graph, rule: &str, params: &[&str], x: &Tensor, t: Target, keep: bool) -> (Tensor, Vec<Option<Tensor>>) {
    let mut p = Params::parse(params).unwrap();
    p.set("rule", rule);
    let a = Analyzer::from_class("LRP", &p).unwrap();
    let plan = RulePlan::resolve(g, &a).unwrap();
    let m = NdModel::new(Arc::new(g.clone())).unwrap();
    let e = m.explain(&plan, x, &t, &ExplainOptions { keep_layers: keep }).unwrap();
    (e.relevance, e.layers.unwrap_or_default())
}

fn sum(t: &Tensor) -> f64 {
    t.data.iter().map(|&v| v as f64).sum()
}

/// A chain without branches: conv (stride 2, asymmetric pads) → overlapping max pool → avg pool → conv →
/// flatten → dense → dense, optionally without any bias.
fn chain(bias: bool, seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("x", vec![3, 11, 9]);
    let c1 = g.push("c1", conv(&mut rng, 3, 4, &[3, 3], 2, (0, 1), bias), &[0]).unwrap();
    let pool = |k: usize, s: usize, p: usize| Pool { kernel: vec![k, k], strides: vec![s, s], pads_begin: vec![p, p], pads_end: vec![p, p], count_include_pad: false, ceil_mode: false };
    let mp = g.push("mp", Op::MaxPool(pool(3, 1, 1)), &[c1]).unwrap();
    let ap = g.push("ap", Op::AvgPool(pool(2, 1, 0)), &[mp]).unwrap();
    let c2 = g.push("c2", conv(&mut rng, 4, 5, &[2, 2], 1, (1, 0), bias), &[ap]).unwrap();
    let n = g.nodes[c2].shape.iter().product();
    let f = g.push_reshape("flat", "flat", c2, vec![n]).unwrap();
    let d = g.push("d", dense(&mut rng, n, 6, bias, false), &[f]).unwrap();
    g.push("out", dense(&mut rng, 6, 3, bias, false), &[d]).unwrap();
    g
}

#[test]
fn z_rule_without_bias_conserves_relevance_layer_by_layer() {
    let g = chain(false, 7);
    let x = Lcg(99).input(&[1, 3, 11, 9]);
    let (r, layers) = explain(&g, "Z", &[], &x, Target::All, true);
    let total = sum(layers[g.output].as_ref().unwrap());
    assert!(total.abs() > 1e-3, "non-trivial start {total}");
    let mut seen = 0;
    for (i, l) in layers.iter().enumerate() {
        if let Some(l) = l {
            seen += 1;
            assert!((sum(l) - total).abs() <= 1e-4 * total.abs(), "node {} ({}) holds {} of {total}", i, g.nodes[i].name, sum(l));
        }
    }
    assert_eq!(seen, g.nodes.len(), "every layer was checked");
    // Branches: on the residual CNN the input still receives all of it.
    let g2 = cnn(false, 7);
    let x2 = Lcg(98).input(&[1, 3, 9, 7]);
    let (r2, l2) = explain(&g2, "Z", &[], &x2, Target::Index(0), true);
    let t2 = sum(l2[g2.output].as_ref().unwrap());
    assert!((sum(&r2) - t2).abs() <= 1e-4 * t2.abs(), "{} vs {t2}", sum(&r2));
    // epsilon -> 0 approaches Z
    let (re, _) = explain(&g, "Epsilon", &["epsilon=1e-9"], &x, Target::All, false);
    assert!(re.max_rel_diff(&r) < 1e-3);
}

#[test]
fn zplus_equals_alpha1beta0_ignore_bias_exactly() {
    let g = cnn(true, 3);
    let x = Lcg(5).input(&[2, 3, 9, 7]);
    let m = NdModel::new(Arc::new(g.clone())).unwrap();
    let run = |class: &str| {
        let plan = RulePlan::resolve(&g, &Analyzer::from_class(class, &Params::default()).unwrap()).unwrap();
        m.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap().relevance
    };
    let a = run("LRPZPlus");
    assert!(a.max_abs() > 0.0);
    assert_eq!(a, run("LRPAlpha1Beta0IgnoreBias"));
}

#[test]
fn batch_of_four_equals_each_sample_alone() {
    let g = cnn(true, 11);
    let x = Lcg(8).input(&[4, 3, 9, 7]);
    for (rule, params) in [("StdxEpsilon", vec!["stdfactor=0.25"]), ("Epsilon", vec!["epsilon=0.1"]), ("AlphaBeta", vec!["alpha=2", "beta=1"]), ("Gamma", vec!["gamma=0.25"])] {
        for t in [Target::Max, Target::Index(2), Target::All] {
            let (rb, _) = explain(&g, rule, &params, &x, t, false);
            for n in 0..4 {
                let (r1, _) = explain(&g, rule, &params, &x.slice_batch(n, 1), t, false);
                assert!(rb.slice_batch(n, 1).max_rel_diff(&r1) <= 1e-5, "{rule} {t} sample {n}");
            }
        }
    }
    // signxai's batch-wide std is available and does couple the samples
    let (coupled, _) = explain(&g, "StdxEpsilon", &["stdfactor=1", "std_over_batch=true"], &x, Target::Max, false);
    let (alone, _) = explain(&g, "StdxEpsilon", &["stdfactor=1", "std_over_batch=true"], &x.slice_batch(0, 1), Target::Max, false);
    assert!(coupled.slice_batch(0, 1).max_rel_diff(&alone) > 1e-6);
}

/// One dense layer: y = x·W + b with given numbers.
fn one_dense(w: Vec<f32>, b: Vec<f32>, i: usize, o: usize) -> Graph {
    let mut g = Graph::new("x", vec![i]);
    let op = Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![i, o], w).unwrap()), bias: Some(Arc::new(Tensor::new(vec![o], b).unwrap())), activation: None });
    g.push("d", op, &[0]).unwrap();
    g
}

#[test]
fn sign_of_zero_is_plus_one_in_the_stabilizer_and_in_sign() {
    // x = (0.5, 0.5), d0: w = (1, -1), no bias -> z = 0 exactly. d1 (WSquare, output 1) passes R = 1 down
    // unscaled by the activation, so d0's Epsilon(0.5) sees R = 1 over stab(0) = +0.5 -> R_in = (1, -1);
    // with sign(0) = -1 it would be (-1, 1).
    let mut g = Graph::new("x", vec![2]);
    let w0 = Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![2, 1], vec![1.0, -1.0]).unwrap()), bias: None, activation: None });
    let d0 = g.push("d0", w0, &[0]).unwrap();
    let w1 = Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![1, 1], vec![1.0]).unwrap()), bias: Some(Arc::new(Tensor::new(vec![1], vec![1.0]).unwrap())), activation: None });
    g.push("d1", w1, &[d0]).unwrap();
    let x = Tensor::new(vec![1, 2], vec![0.5, 0.5]).unwrap();
    let (r, _) = explain(&g, "WSquare", &["input_layer_rule=Epsilon", "epsilon=0.5"], &x, Target::Index(0), false);
    assert_eq!(r.data, vec![1.0, -1.0]);
    // Direct check of the primitive: stabilize(0, eps) = +eps, and SIGN(0) = +1.
    use relprop_core::engine::Numerics;
    let m = NdModel::new(Arc::new(g.clone())).unwrap();
    let z = m.input(&Tensor::new(vec![1, 3], vec![0.0, -0.0, -2.0]).unwrap()).unwrap();
    assert_eq!(m.output(&m.stabilize(&z, 0.5).unwrap()).unwrap().data, vec![0.5, 0.5, -2.5]);
    assert_eq!(m.output(&m.xmod(&z, relprop_core::program::XMod::Sign).unwrap()).unwrap().data, vec![1.0, 1.0, -1.0]);
    // End to end: SIGN on an input with zeros multiplies by +1 there: R_in = sgn(x)·w·R/z.
    let g3 = one_dense(vec![2.0, 3.0, -1.0], vec![0.5], 3, 1);
    let mut g3b = g3.clone();
    let top = Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![1, 1], vec![1.0]).unwrap()), bias: None, activation: None });
    g3b.push("top", top, &[1]).unwrap();
    let x3 = Tensor::new(vec![1, 3], vec![0.0, -1.0, 2.0]).unwrap();
    let (r3, _) = explain(&g3b, "Z", &["input_layer_rule=SIGN"], &x3, Target::Index(0), false);
    // z = 0·2 - 1·3 - 2·1 + 0.5 = -4.5 reaches d with R = z (Z top layer of weight 1), so R_in = sgn(x)·w·z/z.
    let expect = [2.0, -3.0, -1.0];
    for (a, b) in r3.data.iter().zip(expect) {
        assert!((a - b).abs() < 1e-6, "{:?} vs {expect:?}", r3.data);
    }
    // SIGNmu thresholds at mu: x >= mu -> +1 else -1.
    let (r4, _) = explain(&g3b, "Z", &["input_layer_rule=SIGNmu", "mu=-1"], &x3, Target::Index(0), false);
    assert_eq!(r4.data, vec![2.0, 3.0, -1.0]);
    let (r5, _) = explain(&g3b, "Z", &["input_layer_rule=SIGNmu", "mu=0.5"], &x3, Target::Index(0), false);
    assert_eq!(r5.data, vec![-2.0, -3.0, -1.0]);
}

#[test]
fn first_layer_feeding_two_layers_works_for_sign_signmu_and_bounded() {
    // x -> d0 -> {d1, d2} -> add -> out. signxai crashes here; relprop sums the two relevances (linear rules).
    let mut rng = Lcg(21);
    let mut g = Graph::new("x", vec![5]);
    let d0 = g.push("d0", dense(&mut rng, 5, 4, true, true), &[0]).unwrap();
    let d1 = g.push("d1", dense(&mut rng, 4, 4, true, true), &[d0]).unwrap();
    let d2 = g.push("d2", dense(&mut rng, 4, 4, true, true), &[d0]).unwrap();
    let add = g.push("add", Op::Add, &[d1, d2]).unwrap();
    g.push("out", dense(&mut rng, 4, 3, true, false), &[add]).unwrap();
    let x = Lcg(4).input(&[2, 5]);
    for input_rule in ["SIGN", "SIGNmu", "(-1, 1)", "ZBox"] {
        let (r, layers) = explain(&g, "Z", &[&format!("input_layer_rule={input_rule}"), "mu=0.1"], &x, Target::Max, true);
        assert!(r.data.iter().all(|v| v.is_finite()));
        let r_d0 = layers[d0].as_ref().unwrap();
        // Independent check of the d0 rule on the summed relevance, by plain formulas.
        let Op::Dense(d) = &g.nodes[d0].op else { unreachable!() };
        for n in 0..2 {
            let xs = &x.data[n * 5..(n + 1) * 5];
            let rs = &r_d0.data[n * 4..(n + 1) * 4];
            let w = |i: usize, j: usize| d.weight.data[i * 4 + j];
            let b = &d.bias.as_ref().unwrap().data;
            for i in 0..5 {
                let expect: f32 = (0..4)
                    .map(|j| {
                        let z: f32 = (0..5).map(|k| xs[k] * w(k, j)).sum::<f32>();
                        match input_rule {
                            "SIGN" => (if xs[i] >= 0.0 { 1.0 } else { -1.0 }) * w(i, j) * rs[j] / (z + b[j]),
                            "SIGNmu" => (if xs[i] >= 0.1 { 1.0 } else { -1.0 }) * w(i, j) * rs[j] / (z + b[j]),
                            // signxai's Bounded: no x/low/high factors, so W - W+ - W- = 0
                            "(-1, 1)" => 0.0,
                            _ => {
                                let (lo, hi) = (-1.0f32, 1.0f32);
                                let zb = z - (0..5).map(|k| lo * w(k, j).max(0.0) + hi * w(k, j).min(0.0)).sum::<f32>();
                                (xs[i] * w(i, j) - lo * w(i, j).max(0.0) - hi * w(i, j).min(0.0)) * rs[j] / zb
                            }
                        }
                    })
                    .sum();
                let got = r.data[n * 5 + i];
                assert!((got - expect).abs() <= 1e-5 * (1.0 + expect.abs()), "{input_rule} sample {n} input {i}: {got} vs {expect}");
            }
        }
    }
}

#[test]
fn textbook_rules_against_plain_formulas() {
    // Two dense layers so the rules under test sit below the top layer and receive relevance R.
    let mut rng = Lcg(31);
    let mut g = Graph::new("x", vec![4]);
    let d0 = g.push("d0", dense(&mut rng, 4, 3, true, true), &[0]).unwrap();
    g.push("out", dense(&mut rng, 3, 2, true, false), &[d0]).unwrap();
    let Op::Dense(d) = g.nodes[d0].op.clone() else { unreachable!() };
    let w = |i: usize, j: usize| d.weight.data[i * 3 + j];
    let b = d.bias.as_ref().unwrap().data.clone();
    let x = Lcg(77).input(&[1, 4]);
    let xs = &x.data;
    let check = |rule: &str, params: &[&str], formula: &dyn Fn(usize, &[f32]) -> f32| {
        let mut all = vec![format!("input_layer_rule={rule}")];
        all.extend(params.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let (r, layers) = explain(&g, "Z", &all, &x, Target::Index(1), true);
        let rs = layers[d0].as_ref().unwrap().data.clone();
        for i in 0..4 {
            let expect = formula(i, &rs);
            assert!((r.data[i] - expect).abs() <= 1e-5 * (1.0 + expect.abs()), "{rule} input {i}: {} vs {expect}", r.data[i]);
        }
        (r, rs)
    };
    // Z^B: x_i w_ij - l w+_ij - h w-_ij over z_j - sum_k (l w+ + h w-), no bias.
    let (r, rs) = check("ZBox", &["low=-1", "high=1"], &|i, rs| {
        (0..3)
            .map(|j| {
                let den: f32 = (0..4).map(|k| xs[k] * w(k, j) + w(k, j).max(0.0) - w(k, j).min(0.0)).sum();
                (xs[i] * w(i, j) + w(i, j).max(0.0) - w(i, j).min(0.0)) * rs[j] / den
            })
            .sum()
    });
    // Z^B conserves (no bias): the input relevance sums to the relevance of the layer output.
    assert!((sum(&r) - rs.iter().map(|&v| v as f64).sum::<f64>()).abs() < 1e-4);
    // Textbook gamma: x (w + γ w+) / ((w + γ w+)·x + b + γ b+ ± 1e-6).
    let gm = 0.25f32;
    check("GammaTextbook", &["gamma=0.25"], &|i, rs| {
        (0..3)
            .map(|j| {
                let wg = |k: usize| w(k, j) + gm * w(k, j).max(0.0);
                let z: f32 = (0..4).map(|k| xs[k] * wg(k)).sum::<f32>() + b[j] + gm * b[j].max(0.0);
                xs[i] * wg(i) * rs[j] / (z + 1e-6 * if z >= 0.0 { 1.0 } else { -1.0 })
            })
            .sum()
    });
    // AlphaBetaX 2m100: 2 R_pp - R_pn, each normalised separately (SPEC 4b).
    check("AlphaBetaX2m100Textbook", &[], &|i, rs| {
        let xp = xs[i].max(0.0);
        (0..3)
            .map(|j| {
                let zpp: f32 = (0..4).map(|k| xs[k].max(0.0) * w(k, j).max(0.0)).sum::<f32>() + b[j].max(0.0);
                let zpn: f32 = (0..4).map(|k| xs[k].max(0.0) * w(k, j).min(0.0)).sum::<f32>() + b[j].min(0.0);
                let sdiv = |a: f32, b: f32| a / if b == 0.0 { 1e-7 } else { b };
                2.0 * sdiv(xp * w(i, j).max(0.0) * rs[j], zpp) - sdiv(xp * w(i, j).min(0.0) * rs[j], zpn)
            })
            .sum()
    });
    // signxai's Gamma: (γ-1)·LRP(W+W⁺) on non-negative inputs (SPEC 5), checked on the ReLU output layer.
    let h: Vec<f32> = (0..3).map(|j| ((0..4).map(|k| xs[k] * w(k, j)).sum::<f32>() + b[j]).max(0.0)).collect();
    let mut p = Params::parse(&["gamma=0.25", "until_layer_idx=0", "until_index_rule=Z"]).unwrap();
    p.set("rule", "Gamma");
    let plan = RulePlan::resolve(&g, &Analyzer::from_class("LRP", &p).unwrap()).unwrap();
    let m = NdModel::new(Arc::new(g.clone())).unwrap();
    let e = m.explain(&plan, &x, &Target::All, &ExplainOptions { keep_layers: true }).unwrap();
    let Op::Dense(o) = &g.nodes[2].op else { unreachable!() };
    let (wo, bo) = (&o.weight.data, &o.bias.as_ref().unwrap().data);
    let y: Vec<f32> = (0..2).map(|j| (0..3).map(|k| h[k] * wo[k * 2 + j]).sum::<f32>() + bo[j]).collect();
    let got = e.layers.unwrap()[d0].clone().unwrap();
    for k in 0..3 {
        let expect: f32 = (0..2)
            .map(|j| {
                let m2 = |kk: usize| wo[kk * 2 + j] + wo[kk * 2 + j].max(0.0);
                let z: f32 = (0..3).map(|kk| h[kk] * m2(kk)).sum::<f32>() + bo[j] + bo[j].max(0.0);
                (gm - 1.0) * h[k] * m2(k) * y[j] / z
            })
            .sum();
        assert!((got.data[k] - expect).abs() <= 1e-5 * (1.0 + expect.abs()), "signxai gamma {k}: {} vs {expect}", got.data[k]);
    }
}

#[test]
fn conv1d_and_dense_on_rank3_and_channels_last_run() {
    // Keras-style channels-last signal: (L, C) -> transpose -> conv1d -> BN -> transpose -> dense on last axis.
    let mut rng = Lcg(41);
    let mut g = Graph::new("x", vec![16, 2]);
    let t = g.push("t", Op::Transpose { perm: vec![0, 2, 1] }, &[0]).unwrap();
    let c = g.push("c", conv(&mut rng, 2, 3, &[4], 2, (1, 2), true), &[t]).unwrap();
    let bn = Op::BatchNorm(BatchNorm { gamma: rng.tensor(&[3]), beta: rng.tensor(&[3]), mean: rng.tensor(&[3]), var: Arc::new(Tensor::new(vec![3], vec![1.0; 3]).unwrap()), epsilon: 1e-3 });
    let bn = g.push("bn", bn, &[c]).unwrap();
    let t2 = g.push("t2", Op::Transpose { perm: vec![0, 2, 1] }, &[bn]).unwrap();
    let d = g.push("d", dense(&mut rng, 3, 2, true, true), &[t2]).unwrap();
    let f = g.push_reshape("f", "f", d, vec![g.nodes[d].shape.iter().product()]).unwrap();
    g.push("out", dense(&mut rng, g.nodes[f].shape[0], 3, true, false), &[f]).unwrap();
    let x = Lcg(3).input(&[3, 16, 2]);
    let (r, _) = explain(&g, "Epsilon", &["epsilon=0.01"], &x, Target::Max, false);
    assert_eq!(r.shape, vec![3, 16, 2]);
    assert!(r.data.iter().all(|v| v.is_finite()) && r.max_abs() > 0.0);
}

/// The ndarray backend fuses `bias_activation` and the BatchNorm rule into single passes; they must give the
/// composed definitions' values bit for bit (same float operations, same order), including at exact zeros and
/// where the stabiliser meets `(x − μ)·y = 0`.
#[test]
fn fused_primitives_equal_their_composed_definitions_bit_for_bit() {
    use relprop_core::engine::{composed, Numerics};
    use relprop_core::program::{BiasMod, WeightMod};
    let mut rng = Lcg(5);
    let mut g = Graph::new("x", vec![4, 5, 6]);
    g.push("c", conv(&mut rng, 4, 3, &[3, 3], 1, (1, 1), true), &[0]).unwrap();
    let m = NdModel::new(Arc::new(g)).unwrap();
    let batch = |rng: &mut Lcg, c: usize| {
        let mut t = rng.tensor(&[2, c, 5, 6]).as_ref().clone();
        t.data[0] = 0.0;
        t.data[7] = 0.0;
        m.input(&t).unwrap()
    };
    let bits = |t: &<NdModel as Numerics>::T| m.output(t).unwrap().data.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let z = batch(&mut rng, 3);
    for b in [BiasMod::None, BiasMod::Plain, BiasMod::Pos] {
        for act in [None, Some(Activation::Relu)] {
            let fused = m.bias_activation(1, b, &z, act.as_ref()).unwrap();
            let plain = composed::bias_activation(&m, 1, b, &z, act.as_ref()).unwrap();
            assert_eq!(bits(&fused), bits(&plain), "bias_activation {b:?} {act:?}");
        }
    }
    let (x, r) = (batch(&mut rng, 4), batch(&mut rng, 4));
    let y = batch(&mut rng, 4);
    let (beta, mean) = (vec![0.5, -0.25, 0.0, 1.0], vec![0.25, 0.0, -1.0, 2.0]);
    let mut xm = x.as_ref().clone();
    xm[[0, 0, 3, 3]] = 0.25; // x = μ: the stabiliser sees an exact zero
    let xm = Arc::new(xm);
    let fused = m.batch_norm_rule(&xm, &y, &r, &beta, &mean).unwrap();
    let plain = composed::batch_norm_rule(&m, &xm, &y, &r, &beta, &mean).unwrap();
    assert_eq!(bits(&fused), bits(&plain), "batch_norm_rule");
    assert!(fused.iter().any(|v| *v != 0.0));
    // ... and then divided by the kernel layer's z (with exact zeros in z), in the same pass.
    let mut zb = batch(&mut rng, 4).as_ref().clone();
    zb[[1, 2, 0, 0]] = 0.0;
    let zb = Arc::new(zb);
    for eps in [None, Some(0.1), Some(1e-7)] {
        let once = m.batch_norm_rule_then_divide(&xm, &y, &r, &beta, &mean, &zb, eps).unwrap();
        let two = match eps {
            Some(e) => m.div_stabilized(&plain, &zb, e).unwrap(),
            None => m.safe_div(&plain, &zb).unwrap(),
        };
        assert_eq!(bits(&once), bits(&two), "batch_norm_rule_then_divide {eps:?}");
    }
    for (w, b) in [(WeightMod::Plain, BiasMod::Plain), (WeightMod::Pos, BiasMod::Neg), (WeightMod::Neg, BiasMod::None)] {
        let fused = m.linear_bias(1, w, b, &x).unwrap();
        let plain = m.add_bias(1, b, &m.linear(1, w, &x).unwrap()).unwrap();
        assert_eq!(bits(&fused), bits(&plain), "linear_bias {w:?} {b:?}");
    }
    let zr = m.linear_bias(1, WeightMod::Plain, BiasMod::Plain, &x).unwrap();
    let rz = batch(&mut rng, 3);
    for eps in [1e-7, 0.1] {
        let fused = m.div_stabilized(&rz, &zr, eps).unwrap();
        let plain = m.safe_div(&rz, &m.stabilize(&zr, eps).unwrap()).unwrap();
        assert_eq!(bits(&fused), bits(&plain), "div_stabilized {eps}");
    }
    // `mul_owned` writes into the handed-over product when it is the only owner (serial and parallel sizes),
    // and leaves a shared one untouched.
    for len in [240, 200_000] {
        let (a, b) = (m.input(&rng.tensor(&[len])).unwrap(), m.input(&rng.tensor(&[len])).unwrap());
        let plain = bits(&m.mul(&a, &b).unwrap());
        let before = bits(&b);
        assert_eq!(bits(&m.mul_owned(&a, b.clone()).unwrap()), plain, "mul_owned shared, {len}");
        assert_eq!(bits(&b), before, "mul_owned changed a shared operand");
        assert_eq!(bits(&m.mul_owned(&a, b).unwrap()), plain, "mul_owned in place, {len}");
    }
}

/// `nonnegative` lets the engine take x⁺ = x and x⁻ = 0 without computing them: it must say no for any
/// negative entry or NaN, wherever it is (the large tensors are scanned in parallel chunks).
#[test]
fn nonnegative_sees_every_negative_and_nan() {
    use relprop_core::engine::Numerics;
    let mut g = Graph::new("x", vec![300_000]);
    g.push("r", Op::Activation(Activation::Relu), &[0]).unwrap();
    let m = NdModel::new(Arc::new(g)).unwrap();
    let mut data = vec![0.5f32; 300_000];
    data[17] = 0.0;
    data[18] = -0.0;
    let t = |d: &[f32]| m.input(&Tensor::new(vec![1, d.len()], d.to_vec()).unwrap()).unwrap();
    assert!(m.nonnegative(&t(&data)), "zeros of either sign are not negative");
    for (at, v) in [(0, -1e-30), (299_999, -2.0), (150_001, f32::NAN)] {
        let mut d = data.clone();
        d[at] = v;
        assert!(!m.nonnegative(&t(&d)), "{v} at {at}");
    }
}

#[test]
fn affine_passes_relevance_unchanged_and_batchnorm_does_not() {
    // A constant scaling and shift that is not a BN layer (Keras Rescaling/Normalization) is signxai's identity;
    // the same numbers as a BatchNorm get the BN rule, which moves relevance by x·w/y.
    let mut rng = Lcg(11);
    let affine = BatchNorm {
        gamma: Arc::new(Tensor::new(vec![3], vec![2.0, -1.0, 0.5]).unwrap()),
        beta: Arc::new(Tensor::new(vec![3], vec![1.0, 0.3, -3.0]).unwrap()),
        mean: Arc::new(Tensor::new(vec![3], vec![0.0; 3]).unwrap()),
        var: Arc::new(Tensor::new(vec![3], vec![1.0; 3]).unwrap()),
        epsilon: 0.0,
    };
    let x = Tensor::new(vec![1, 3], vec![0.5, -2.0, 1.5]).unwrap();
    for (op, identity) in [(Op::Affine(affine.clone()), true), (Op::BatchNorm(affine), false)] {
        let mut g = Graph::new("x", vec![3]);
        let a = g.push("scale", op, &[0]).unwrap();
        g.push("out", dense(&mut rng, 3, 2, true, false), &[a]).unwrap();
        let (r, layers) = explain(&g, "Epsilon", &[], &x, Target::Index(0), true);
        let above = layers[a].clone().unwrap();
        assert_eq!(r.data == above.data, identity, "{:?} vs {:?}", r.data, above.data);
    }
}

/// `max_activation` with tied maxima splits the selection equally, as TensorFlow's `reduce_max` gradient does
/// (signxai, checked live: WSquare on a model whose top Dense input was all zeros). WSquare's top layer selects
/// by `argmax(W²x)`: with `x = 0` every output ties, so the map is the mean of the per-output maps.
#[test]
fn max_activation_splits_ties_equally() {
    let mut rng = Lcg(17);
    let mut g = Graph::new("x", vec![4]);
    let d = dense(&mut rng, 4, 3, true, false);
    let Op::Dense(dd) = &d else { unreachable!() };
    let (w, b) = (dd.weight.data.clone(), dd.bias.as_ref().unwrap().data.clone());
    g.push("out", d, &[0]).unwrap();
    let x = Tensor::new(vec![1, 4], vec![0.0; 4]).unwrap();
    let (r, _) = explain(&g, "WSquare", &[], &x, Target::Max, false);
    // R_in = mean over k of (W²)[:, k] · max(y) / max_k Σ_i W²[i, k], with y = b.
    let col = |k: usize| (0..4).map(|i| w[i * 3 + k] * w[i * 3 + k]).collect::<Vec<f32>>();
    let m1 = (0..3).map(|k| col(k).iter().sum::<f32>()).fold(f32::MIN, f32::max);
    let ymax = b.iter().copied().fold(f32::MIN, f32::max);
    let want: Vec<f32> = (0..4).map(|i| (0..3).map(|k| col(k)[i]).sum::<f32>() / 3.0 * ymax / m1).collect();
    assert!(r.data.iter().zip(&want).all(|(a, e)| (a - e).abs() <= 1e-6 * (1.0 + e.abs())), "{:?} vs {want:?}", r.data);
    // Without a tie the first maximum alone is selected: a non-zero input.
    let x1 = Tensor::new(vec![1, 4], vec![1.0, 0.5, -0.25, 2.0]).unwrap();
    let zx: Vec<f32> = (0..3).map(|k| (0..4).map(|i| col(k)[i] * x1.data[i]).sum()).collect();
    let k = (0..3).fold(0, |a, j| if zx[j] > zx[a] { j } else { a });
    let y1: Vec<f32> = (0..3).map(|j| b[j] + (0..4).map(|i| w[i * 3 + j] * x1.data[i]).sum::<f32>()).collect();
    let want1: Vec<f32> = (0..4).map(|i| col(k)[i] * y1.iter().copied().fold(f32::MIN, f32::max) / m1).collect();
    let (r1, _) = explain(&g, "WSquare", &[], &x1, Target::Max, false);
    assert!(r1.data.iter().zip(&want1).all(|(a, e)| (a - e).abs() <= 1e-5 * (1.0 + e.abs())), "{:?} vs {want1:?}", r1.data);
}

/// A BatchNorm right above a conv: the engine hands the BN rule's result straight to the conv's division
/// (`batch_norm_rule_then_divide`) unless every layer's relevance is kept. Both ways give the same bits.
#[test]
fn deferred_batch_norm_rule_gives_the_same_bits() {
    let mut rng = Lcg(21);
    let mut g = Graph::new("x", vec![3, 8, 7]);
    let mut c1 = conv(&mut rng, 3, 4, &[3, 3], 1, (1, 1), false);
    if let Op::Conv(c) = &mut c1 {
        c.activation = None;
    }
    let c1 = g.push("c1", c1, &[0]).unwrap();
    let bn = Op::BatchNorm(BatchNorm { gamma: rng.tensor(&[4]), beta: rng.tensor(&[4]), mean: rng.tensor(&[4]), var: Arc::new(Tensor::new(vec![4], vec![0.5, 1.0, 2.0, 0.7]).unwrap()), epsilon: 1e-3 });
    let b = g.push("bn", bn, &[c1]).unwrap();
    let r = g.push("relu", Op::Activation(Activation::Relu), &[b]).unwrap();
    let c2 = g.push("c2", conv(&mut rng, 4, 4, &[3, 3], 2, (1, 1), true), &[r]).unwrap();
    let gap = g.push("gap", Op::GlobalAvgPool, &[c2]).unwrap();
    g.push("out", dense(&mut rng, 4, 3, true, false), &[gap]).unwrap();
    let x = Lcg(22).input(&[2, 3, 8, 7]);
    for (rule, params) in [("Epsilon", &["epsilon=0.1"][..]), ("Z", &[][..]), ("AlphaBeta", &["alpha=2", "beta=1"][..])] {
        for t in [Target::Max, Target::Index(1)] {
            let (fused, _) = explain(&g, rule, params, &x, t, false);
            let (kept, layers) = explain(&g, rule, params, &x, t, true);
            assert!(layers[c1].is_some(), "{rule}: the conv's relevance is kept");
            let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused), bits(&kept), "{rule} {t}");
            assert!(fused.max_abs() > 0.0);
        }
    }
}

/// Reflect and edge pads are linear maps, and their relevance route is the gradient: for any `v` at the input
/// and `r` at the output, `<route(r), v> = <r, pad(v)>` (the adjoint identity), on 1-, 2- and 3-D samples with
/// pads up to one less than the axis, corners included. The forward itself is checked by value in
/// relprop-onnx's tests/ops.rs.
#[test]
fn mirror_pad_routes_are_the_adjoint_of_the_pad() {
    use relprop_core::engine::Numerics;
    use relprop_core::graph::PadMode;
    let mut rng = Lcg(21);
    let cases: [(&[usize], &[usize], &[usize]); 3] = [(&[2, 5], &[0, 4], &[0, 2]), (&[3, 4, 5], &[0, 3, 1], &[1, 2, 4]), (&[1, 3, 4, 2], &[0, 2, 0, 1], &[0, 1, 3, 1])];
    for mode in [PadMode::Reflect, PadMode::Edge] {
        for (shape, begin, end) in cases {
            let mut g = Graph::new("x", shape.to_vec());
            g.push("p", Op::Pad { begin: begin.to_vec(), end: end.to_vec(), mode }, &[0]).unwrap();
            let out = g.nodes[1].shape.clone();
            let m = NdModel::new(Arc::new(g)).unwrap();
            let batch = |rng: &mut Lcg, s: &[usize]| m.input(&rng.tensor(&[&[2], s].concat())).unwrap();
            let (v, r) = (batch(&mut rng, shape), batch(&mut rng, &out));
            let padded = Numerics::forward(&m, 1, &[&v]).unwrap();
            let routed = m.route(1, &[&v], &r).unwrap().remove(0);
            let dot = |a: &<NdModel as Numerics>::T, b: &<NdModel as Numerics>::T| a.iter().zip(b.iter()).map(|(p, q)| (p * q) as f64).sum::<f64>();
            let (lhs, rhs) = (dot(&routed, &v), dot(&r, &padded));
            assert!((lhs - rhs).abs() < 1e-4 * rhs.abs().max(1.0), "{mode:?} {shape:?} {begin:?} {end:?}: {lhs} vs {rhs}");
            // The corner copies the input corner its modes name along both axes (row-major, sample 0, channel 0).
            let src: Vec<usize> = (1..shape.len()).map(|a| mode.source(0, begin[a], shape[a]).unwrap()).collect();
            let flat = src.iter().zip(&shape[1..]).fold(0, |acc, (&i, &d)| acc * d + i);
            assert_eq!(padded.as_slice().unwrap()[0], v.as_slice().unwrap()[flat], "{mode:?} {shape:?} corner");
        }
    }
}

/// TensorFlow's MaxPool3D gradient, which signxai's maps follow, gives every tied maximum of a window the whole
/// relevance (2-D and 1-D max pooling route it to the first maximum): one 2×2×2 window holding five 3s under a
/// Dense of weight 2, LRP-Z: the Dense's input relevance is 6, and each of the five 3s gets all of it.
#[test]
fn max_pool_3d_gives_every_tied_maximum_the_whole_relevance() {
    let mut g = Graph::new("x", vec![1, 2, 2, 2]);
    let p = Pool { kernel: vec![2, 2, 2], strides: vec![2, 2, 2], pads_begin: vec![0; 3], pads_end: vec![0; 3], ceil_mode: false, count_include_pad: false };
    let mp = g.push("mp", Op::MaxPool(p), &[0]).unwrap();
    let f = g.push_reshape("flat", "flat", mp, vec![1]).unwrap();
    g.push("d", Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![1, 1], vec![2.0]).unwrap()), bias: None, activation: None }), &[f]).unwrap();
    let x = Tensor::new(vec![1, 1, 2, 2, 2], vec![3.0, 3.0, 1.0, 3.0, 0.0, 3.0, 2.0, 3.0]).unwrap();
    let (r, _) = explain(&g, "Z", &[], &x, Target::Max, false);
    assert_eq!(r.data, [6.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0]);
}
