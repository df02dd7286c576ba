//! The ort backend against the ndarray backend on small IR graphs that use every op (strided, dilated, grouped,
//! 1-D convs; overlapping, padded and ceil-mode pools with ties; BN, Add, Concat, Pad, Transpose, Reshape, every
//! activation), every rule, analyzer class and method name, each neuron selection and per-layer relevance; batch
//! independence; the session cache; hostile input.

mod common;

use std::sync::Arc;

use relprop_core::analyzers::ANALYZER_CLASSES;
use relprop_core::graph::{Activation, BatchNorm, Conv, Dense, Graph, LayerNorm, Op, PadMode, Pool};
use relprop_core::methods::method_names;
use relprop_core::rng::{agreement, ulp_nudge};
use relprop_core::rules::RULE_NAMES;
use relprop_core::{analyzer_from, Analyzer, CompiledModel, Error, ExplainOptions, Params, RulePlan, Target, Tensor};
use relprop_ndarray::NdModel;
use relprop_ort::OrtModel;

/// Deterministic uniform(-1, 1) numbers.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize]) -> Arc<Tensor> {
        let n = shape.iter().product();
        Arc::new(Tensor::new(shape.to_vec(), (0..n).map(|_| self.next()).collect()).unwrap())
    }
    /// A batch with exact zeros, negative values and (with `ties`) many equal values.
    fn input(&mut self, shape: &[usize], ties: bool) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|i| {
                let v = if i % 5 == 2 { 0.0 } else { self.next() };
                if ties { (v * 3.0).round() / 3.0 } else { v }
            })
            .collect();
        Tensor::new(shape.to_vec(), data).unwrap()
    }
}

#[allow(clippy::too_many_arguments)]
fn conv(rng: &mut Lcg, cin: usize, cout: usize, k: &[usize], stride: usize, dil: usize, pads: (usize, usize), groups: usize, act: Option<Activation>) -> Op {
    let mut shape = vec![cout, cin / groups];
    shape.extend_from_slice(k);
    let r = k.len();
    Op::Conv(Conv {
        weight: rng.tensor(&shape),
        bias: Some(rng.tensor(&[cout])),
        strides: vec![stride; r],
        dilations: vec![dil; r],
        pads_begin: vec![pads.0; r],
        pads_end: vec![pads.1; r],
        groups,
        activation: act,
        pointwise: None,
        transposed: None,
    })
}

fn dense(rng: &mut Lcg, i: usize, o: usize, act: Option<Activation>) -> Op {
    Op::Dense(Dense { weight: rng.tensor(&[i, o]), bias: Some(rng.tensor(&[o])), activation: act })
}

fn pool(k: &[usize], s: usize, pb: usize, pe: usize, cip: bool, ceil: bool) -> Pool {
    let r = k.len();
    Pool { kernel: k.to_vec(), strides: vec![s; r], pads_begin: vec![pb; r], pads_end: vec![pe; r], count_include_pad: cip, ceil_mode: ceil }
}

fn bn(rng: &mut Lcg, c: usize) -> Op {
    let var = Arc::new(Tensor::new(vec![c], (0..c).map(|i| 0.5 + i as f32 * 0.3).collect()).unwrap());
    Op::BatchNorm(BatchNorm { gamma: rng.tensor(&[c]), beta: rng.tensor(&[c]), mean: rng.tensor(&[c]), var, epsilon: 1e-3 })
}

/// NCHW residual CNN: conv (stride 2, asymmetric pads) → overlapping max pool → BN → conv → Add → GAP → dense.
/// Layer normalization over trailing axes of extents `trailing`.
fn layer_norm(rng: &mut Lcg, trailing: &[usize]) -> Op {
    Op::LayerNorm(LayerNorm { axes: trailing.len(), gamma: rng.tensor(trailing), beta: rng.tensor(trailing), epsilon: 1e-5 })
}

fn cnn(seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("x", vec![3, 9, 7]);
    let c1 = g.push("c1", conv(&mut rng, 3, 4, &[3, 3], 2, 1, (0, 1), 1, Some(Activation::Relu)), &[0]).unwrap();
    let mp = g.push("mp", Op::MaxPool(pool(&[3, 3], 1, 1, 1, false, false)), &[c1]).unwrap();
    let b = g.push("bn", bn(&mut rng, 4), &[mp]).unwrap();
    let c2 = g.push("c2", conv(&mut rng, 4, 4, &[3, 3], 1, 1, (1, 1), 1, Some(Activation::Relu)), &[b]).unwrap();
    let add = g.push("add", Op::Add, &[b, c2]).unwrap();
    let gap = g.push("gap", Op::GlobalAvgPool, &[add]).unwrap();
    g.push("out", dense(&mut rng, 4, 3, None), &[gap]).unwrap();
    g
}

/// Everything else: pad → tie-prone max pool on the input → dilated conv → grouped strided conv → PReLU →
/// ceil-mode max pool, padded average pools (with and without padding in the count, ceil mode), an edge-padded 1x1
/// branch, concat, layer norm and dense on rank 3 (channels-last), a reflect pad, global max pool, standalone
/// activations (swish, hard swish, softsign, CELU, log-sigmoid, exp and thresholded ReLU included).
fn zoo(seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("input_1", vec![2, 13, 12]);
    let pad = g.push("pad", Op::Pad { begin: vec![0, 1, 0], end: vec![0, 0, 2], mode: PadMode::Constant(0.0) }, &[0]).unwrap(); // 2x14x14
    let mp0 = g.push("mp0", Op::MaxPool(pool(&[2, 2], 1, 0, 0, false, false)), &[pad]).unwrap(); // 2x13x13
    let c1 = g.push("c1", conv(&mut rng, 2, 4, &[3, 3], 1, 2, (1, 2), 1, Some(Activation::LeakyRelu(0.1))), &[mp0]).unwrap(); // 4x12x12
    let c2 = g.push("c2", conv(&mut rng, 4, 6, &[3, 2], 2, 1, (0, 1), 2, None), &[c1]).unwrap(); // grouped, stride 2
    let a1 = g.push("elu", Op::Activation(Activation::Elu(1.0)), &[c2]).unwrap();
    let pr = g.push("prelu", Op::PRelu { slope: rng.tensor(&[6, 1, 1]) }, &[a1]).unwrap();
    let mp = g.push("mp", Op::MaxPool(pool(&[3, 3], 2, 0, 0, false, true)), &[pr]).unwrap(); // ceil: 3x3
    let ap1 = g.push("ap1", Op::AvgPool(pool(&[3, 3], 1, 1, 1, true, false)), &[mp]).unwrap();
    let ap2 = g.push("ap2", Op::AvgPool(pool(&[2, 2], 2, 0, 0, false, true)), &[ap1]).unwrap(); // ceil: 2x2
    let edge = g.push("edge", Op::Pad { begin: vec![0, 1, 0], end: vec![0, 0, 1], mode: PadMode::Edge }, &[ap1]).unwrap(); // 4x4
    let side = g.push("side", conv(&mut rng, 6, 3, &[1, 1], 2, 1, (0, 0), 1, Some(Activation::Softplus)), &[edge]).unwrap();
    let cat = g.push("cat", Op::Concat { axis: 0 }, &[ap2, side]).unwrap();
    let t = g.push("t", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[cat]).unwrap();
    let ln = g.push("ln", layer_norm(&mut rng, &[9]), &[t]).unwrap();
    let d = g.push("d", dense(&mut rng, 9, 5, Some(Activation::Tanh)), &[ln]).unwrap();
    let t2 = g.push("t2", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[d]).unwrap();
    let reflect = g.push("reflect", Op::Pad { begin: vec![0, 1, 0], end: vec![0, 1, 1], mode: PadMode::Reflect }, &[t2]).unwrap();
    let b = g.push("bn", bn(&mut rng, 5), &[reflect]).unwrap();
    let gmp = g.push("gmp", Op::GlobalMaxPool, &[b]).unwrap();
    let s = g.push("selu", Op::Activation(Activation::Selu), &[gmp]).unwrap();
    let h = g.push("d1", dense(&mut rng, 5, 8, Some(Activation::Gelu)), &[s]).unwrap();
    let hs = g.push("hs", Op::Activation(Activation::HardSigmoid { alpha: 0.2, beta: 0.5 }), &[h]).unwrap();
    let cl = g.push("clip", Op::Activation(Activation::Clip { min: -0.5, max: 0.8 }), &[hs]).unwrap();
    let sg = g.push("sig", Op::Activation(Activation::Sigmoid), &[cl]).unwrap();
    let sw = g.push("swish", Op::Activation(Activation::Swish), &[sg]).unwrap();
    let hw = g.push("hardswish", Op::Activation(Activation::HardSwish), &[sw]).unwrap();
    let ss = g.push("softsign", Op::Activation(Activation::Softsign), &[hw]).unwrap();
    let ce = g.push("celu", Op::Activation(Activation::Celu(0.7)), &[ss]).unwrap();
    let ls = g.push("logsigmoid", Op::Activation(Activation::LogSigmoid), &[ce]).unwrap();
    let ex = g.push("exp", Op::Activation(Activation::Exp), &[ls]).unwrap();
    let th = g.push("thresholded", Op::Activation(Activation::ThresholdedRelu(0.3)), &[ex]).unwrap();
    let id = g.push("drop", Op::Identity, &[th]).unwrap();
    g.push("out", dense(&mut rng, 8, 4, None), &[id]).unwrap();
    g
}

/// Channels-last 1-D signal: transpose → Conv1D (stride 2, asymmetric pads) → BN → avg pool (ceil) → reshape →
/// dense.
/// A dead ReLU layer (bias −100) under the output Dense: its input is all zeros, so WSquare's `argmax(W²x)`
/// under `max` ties every output (split equally, as signxai's TensorFlow selection does).
fn dead(seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("x", vec![4]);
    let mut d = dense(&mut rng, 4, 6, Some(Activation::Relu));
    if let Op::Dense(dd) = &mut d {
        dd.bias = Some(Arc::new(Tensor::new(vec![6], vec![-100.0; 6]).unwrap()));
    }
    let d = g.push("d", d, &[0]).unwrap();
    g.push("out", dense(&mut rng, 6, 3, None), &[d]).unwrap();
    g
}

fn signal(seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("signal", vec![17, 2]);
    let t = g.push("t", Op::Transpose { perm: vec![0, 2, 1] }, &[0]).unwrap();
    let c = g.push("c", conv(&mut rng, 2, 3, &[4], 2, 1, (1, 2), 1, Some(Activation::Relu)), &[t]).unwrap();
    let b = g.push("bn", bn(&mut rng, 3), &[c]).unwrap();
    let ap = g.push("ap", Op::AvgPool(pool(&[2], 2, 0, 0, false, true)), &[b]).unwrap();
    let n = g.nodes[ap].shape.iter().product();
    let f = g.push_reshape("f", "f", ap, vec![n]).unwrap();
    g.push("out", dense(&mut rng, n, 3, None), &[f]).unwrap();
    g
}

struct Pair {
    g: Arc<Graph>,
    ort: OrtModel,
    nd: NdModel,
}

/// A 3-D max pooling (overlapping, padded, ceil mode) straight on the input: the window geometry of the route
/// that TensorFlow's MaxPool3D gradient takes (fed floats, so every map is well-conditioned; ties are checked by
/// value in `max_pool_3d_gives_every_tied_maximum_the_whole_relevance`).
fn pool3d(seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let mut g = Graph::new("x", vec![2, 5, 6, 4]);
    let p = Pool { kernel: vec![2, 3, 2], strides: vec![1, 2, 2], pads_begin: vec![0, 1, 1], pads_end: vec![1, 1, 0], ceil_mode: true, count_include_pad: false };
    let mp = g.push("mp", Op::MaxPool(p), &[0]).unwrap();
    let n: usize = g.nodes[mp].shape.iter().product();
    let f = g.push_reshape("flat", "flat", mp, vec![n]).unwrap();
    g.push("out", dense(&mut rng, n, 3, None), &[f]).unwrap();
    g
}

fn pair(g: Graph) -> Pair {
    let g = Arc::new(g);
    Pair { ort: OrtModel::new(&common::backend(), g.clone()).unwrap(), nd: NdModel::new(g.clone()).unwrap(), g }
}

/// Both backends on one analyzer; returns a failure line or None. Errors must agree.
/// Worst relative difference so far, and how many relevance maps were non-trivial (max |R| >= 1e-6).
#[derive(Default)]
struct Stats {
    worst: f32,
    nontrivial: usize,
    /// Maps beyond 1e-5 accepted as ill-conditioned.
    ill: usize,
}

fn compare(p: &Pair, label: &str, a: &Analyzer, x: &Tensor, t: Target, keep: bool, st: &mut Stats) -> Option<String> {
    let plan = match RulePlan::resolve(&p.g, a) {
        Ok(plan) => plan,
        Err(_) => return None,
    };
    let opts = ExplainOptions { keep_layers: keep };
    let (eo, en) = (p.ort.explain(&plan, x, &t, &opts), p.nd.explain(&plan, x, &t, &opts));
    let (eo, en) = match (eo, en) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(a), Err(b)) if a == b => return None,
        (a, b) => return Some(format!("{label} {t}: ort {:?} vs ndarray {:?}", a.err(), b.err())),
    };
    if en.relevance.max_abs() >= 1e-6 {
        st.nontrivial += 1;
    }
    let mut pairs = vec![("relevance".to_string(), eo.relevance, en.relevance), ("logits".into(), eo.output, en.output)];
    if keep {
        let (lo, ln) = (eo.layers.unwrap(), en.layers.unwrap());
        for (i, (o, n)) in lo.into_iter().zip(ln).enumerate() {
            match (o, n) {
                (Some(o), Some(n)) => pairs.push((format!("layer {i}"), o, n)),
                (None, None) => {}
                _ => return Some(format!("{label} {t}: layer {i} present in one backend only")),
            }
        }
    }
    for (what, o, n) in pairs {
        if o.shape != n.shape {
            return Some(format!("{label} {t} {what}: shape {:?} vs {:?}", o.shape, n.shape));
        }
        let (d, s) = (o.max_abs_diff(&n), n.max_abs());
        let rel = if s < 1e-6 { 0.0 } else { d / s };
        st.worst = st.worst.max(rel);
        let mut ok = !((s < 1e-6 && d > 1e-6) || rel > 1e-5 || o.data.iter().any(|v| !v.is_finite()));
        if !ok && what != "logits" && o.data.iter().all(|v| v.is_finite()) {
            // An ill-conditioned map (signxai's Gamma, SIGN without stabiliser): the bound the tch suite uses,
            // 10× ndarray's own change under a rounding-sized nudge of the input.
            let nudged = p.nd.explain(&plan, &ulp_nudge(x), &t, &opts).ok().and_then(|e| match what.strip_prefix("layer ") {
                None => Some(e.relevance),
                Some(i) => e.layers?.into_iter().nth(i.parse().ok()?)?,
            });
            if let Some(nudged) = nudged {
                let (r, bound, _) = agreement(&o, &n, &nudged);
                ok = r <= bound;
                st.ill += usize::from(ok);
            }
        }
        if !ok {
            return Some(format!("{label} {t} {what}: max|diff| {d:.3e}, max|nd| {s:.3e}"));
        }
    }
    None
}

fn rule_analyzer(rule: &str) -> Option<Analyzer> {
    let mut p = Params::default();
    p.set("rule", rule);
    match rule {
        "AlphaBeta" | "AlphaBetaIgnoreBias" => {
            p.set("alpha", "2").set("beta", "1");
        }
        "Epsilon" | "EpsilonIgnoreBias" => {
            p.set("epsilon", "0.01");
        }
        "SIGNmu" => {
            p.set("mu", "0.1");
        }
        "Gamma" => {
            p.set("gamma", "0.25");
        }
        _ => {}
    }
    match Analyzer::from_class("LRP", &p) {
        Ok(a) => Some(a),
        // signxai cannot build these (reproduced on purpose).
        Err(Error::Signxai(_)) => None,
        Err(e) => panic!("{rule}: {e}"),
    }
}

#[test]
fn every_rule_class_and_target_matches_ndarray_on_every_op() {
    let (mut failures, mut st, mut n) = (Vec::new(), Stats::default(), 0);
    for (name, g, shape, ties) in [
        ("cnn", cnn(3), vec![2, 3, 9, 7], false),
        ("zoo", zoo(5), vec![2, 2, 13, 12], true),
        ("signal", signal(7), vec![2, 17, 2], false),
        ("pool3d", pool3d(4), vec![2, 2, 5, 6, 4], false),
    ] {
        let p = pair(g);
        let x = Lcg(11).input(&shape, ties);
        for rule in RULE_NAMES {
            let Some(a) = rule_analyzer(rule) else { continue };
            for t in [Target::Max, Target::Index(1), Target::All] {
                n += 1;
                failures.extend(compare(&p, &format!("{name} rule={rule}"), &a, &x, t, t == Target::Max, &mut st));
            }
        }
        for class in ANALYZER_CLASSES {
            let Ok(a) = Analyzer::from_class(class, &Params::default()) else { continue };
            n += 1;
            failures.extend(compare(&p, &format!("{name} {class}"), &a, &x, Target::Max, false, &mut st));
        }
    }
    println!(
        "{n} configurations ({} with non-zero relevance), worst relative difference to ndarray {:.2e} ({} beyond 1e-5 \
         within 10x ndarray's own rounding sensitivity)",
        st.nontrivial, st.worst, st.ill
    );
    assert!(failures.is_empty(), "{} of {n} differ:\n{}", failures.len(), failures.join("\n"));
    assert!(st.nontrivial * 10 >= n * 8, "only {} of {n} maps are non-trivial", st.nontrivial);
    // Tied maxima under `max` (most maps of this model are zero, so it stays out of the count above).
    let (p, x, mut st) = (pair(dead(8)), Lcg(12).input(&[2, 4], false), Stats::default());
    for rule in ["WSquare", "Flat", "Z"] {
        let a = rule_analyzer(rule).unwrap();
        failures.extend(compare(&p, &format!("dead rule={rule}"), &a, &x, Target::Max, true, &mut st));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(st.nontrivial >= 2, "WSquare and Flat give non-zero maps");
}

#[test]
fn every_method_name_matches_ndarray() {
    let p = pair(zoo(9));
    let x = Lcg(13).input(&[1, 2, 13, 12], true);
    let (mut failures, mut st) = (Vec::new(), Stats::default());
    let names = method_names();
    for m in &names {
        let a = analyzer_from(Some(m), None, &Params::default()).unwrap();
        failures.extend(compare(&p, m, &a, &x, Target::Max, false, &mut st));
    }
    println!("{} method names ({} non-trivial), worst relative difference to ndarray {:.2e}", names.len(), st.nontrivial, st.worst);
    assert!(failures.is_empty(), "{} differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn batch_of_three_equals_each_sample_alone_and_sessions_are_cached() {
    let p = pair(cnn(11));
    let x = Lcg(8).input(&[3, 3, 9, 7], false);
    let mut configs = 0;
    for (rule, params) in [("StdxEpsilon", vec!["stdfactor=0.25"]), ("Epsilon", vec!["epsilon=0.1"]), ("AlphaBeta", vec!["alpha=2", "beta=1"]), ("Flat", vec![])] {
        let mut prm = Params::parse(&params).unwrap();
        prm.set("rule", rule);
        let plan = RulePlan::resolve(&p.g, &Analyzer::from_class("LRP", &prm).unwrap()).unwrap();
        for t in [Target::Max, Target::Index(2), Target::All] {
            configs += 1;
            let rb = p.ort.explain(&plan, &x, &t, &ExplainOptions::default()).unwrap().relevance;
            assert_eq!(rb.shape, x.shape);
            for n in 0..3 {
                let r1 = p.ort.explain(&plan, &x.slice_batch(n, 1), &t, &ExplainOptions::default()).unwrap().relevance;
                assert!(rb.slice_batch(n, 1).max_rel_diff(&r1) <= 1e-5, "{rule} {t} sample {n}");
            }
        }
    }
    // One session per (plan, target, options), whatever the batch size.
    assert_eq!(p.ort.session_count(), configs);
    // Beyond the memory budget the least recently used sessions go; results stay the same.
    let plan = RulePlan::resolve(&p.g, &Analyzer::from_class("LRPEpsilon", &Params::default()).unwrap()).unwrap();
    let before = p.ort.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap().relevance;
    p.ort.set_session_budget(1);
    let flat = RulePlan::resolve(&p.g, &Analyzer::from_class("LRPFlat", &Params::default()).unwrap()).unwrap();
    p.ort.explain(&flat, &x, &Target::Max, &ExplainOptions::default()).unwrap();
    assert_eq!(p.ort.session_count(), 1);
    let again = p.ort.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap().relevance;
    assert_eq!(p.ort.session_count(), 1);
    assert_eq!(before.data, again.data);
    // Forward pass.
    let y = p.ort.forward(&x).unwrap();
    assert!(y.max_rel_diff(&p.nd.forward(&x).unwrap()) <= 1e-5);
}

#[test]
fn hostile_input_gets_the_shared_errors() {
    let p = pair(cnn(2));
    let plan = RulePlan::resolve(&p.g, &rule_analyzer("Epsilon").unwrap()).unwrap();
    let o = ExplainOptions::default();
    let good = Lcg(1).input(&[1, 3, 9, 7], false);
    let mut nan = good.clone();
    nan.data[5] = f32::NAN;
    let mut inf = good.clone();
    inf.data[0] = f32::INFINITY;
    let cases = [
        (Tensor::zeros(vec![1, 3, 7, 9]), Target::Max),
        (Tensor::zeros(vec![3, 9, 7]), Target::Max),
        (Tensor::zeros(vec![0, 3, 9, 7]), Target::Max),
        (nan, Target::Max),
        (inf, Target::Max),
        (good.clone(), Target::Index(3)),
    ];
    for (x, t) in cases {
        let eo = p.ort.explain(&plan, &x, &t, &o).map(|_| ()).unwrap_err();
        let en = p.nd.explain(&plan, &x, &t, &o).map(|_| ()).unwrap_err();
        assert_eq!(eo, en, "shape {:?} target {t}", x.shape);
        assert!(matches!(eo, Error::Input(_) | Error::Target(_)), "{eo}");
    }
    assert_eq!(p.ort.forward(&Tensor::zeros(vec![2, 3])).unwrap_err(), p.nd.forward(&Tensor::zeros(vec![2, 3])).unwrap_err());
    // A plan made for another graph.
    let other = RulePlan::resolve(&zoo(1), &rule_analyzer("Z").unwrap()).unwrap();
    assert!(p.ort.explain(&other, &good, &Target::Max, &o).is_err());
}

/// TensorFlow's MaxPool3D gradient gives every tied maximum the whole relevance (the cross-backend comparisons
/// above accept tie-dependent maps as ill-conditioned, so this is checked by value): one 2×2×2 window of five
/// 3s under a Dense of weight 2, LRP-Z, as relprop-ndarray's tests/properties.rs derives it.
#[test]
fn max_pool_3d_gives_every_tied_maximum_the_whole_relevance() {
    let mut g = Graph::new("x", vec![1, 2, 2, 2]);
    let mp = g.push("mp", Op::MaxPool(pool(&[2, 2, 2], 2, 0, 0, false, false)), &[0]).unwrap();
    let f = g.push_reshape("flat", "flat", mp, vec![1]).unwrap();
    g.push("d", Op::Dense(Dense { weight: Arc::new(Tensor::new(vec![1, 1], vec![2.0]).unwrap()), bias: None, activation: None }), &[f]).unwrap();
    let p = pair(g);
    let x = Tensor::new(vec![1, 1, 2, 2, 2], vec![3.0, 3.0, 1.0, 3.0, 0.0, 3.0, 2.0, 3.0]).unwrap();
    let plan = RulePlan::resolve(&p.g, &rule_analyzer("Z").unwrap()).unwrap();
    let r = p.ort.explain(&plan, &x, &Target::Max, &ExplainOptions::default()).unwrap().relevance;
    assert_eq!(r.data, [6.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0]);
}
