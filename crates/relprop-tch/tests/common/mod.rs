//! Small models covering every op and geometry the libtorch numerics implement, and helpers to compare the
//! tch backend with the ndarray reference.
#![allow(dead_code)]

use std::sync::Arc;

use relprop_core::graph::{Activation, BatchNorm, Conv, Dense, Graph, LayerNorm, Merge, Op, PadMode, Pool};
use relprop_core::{Analyzer, Params, Tensor};

/// Deterministic uniform(-1, 1) numbers.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn tensor(&mut self, shape: &[usize]) -> Arc<Tensor> {
        let n = shape.iter().product();
        Arc::new(Tensor::new(shape.to_vec(), (0..n).map(|_| self.next()).collect()).unwrap())
    }
    /// A batch with about 20% exact zeros and negative values; `ties`: small integers (many equal values).
    pub fn input(&mut self, shape: &[usize], ties: bool) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n).map(|i| if i % 5 == 2 { 0.0 } else if ties { (self.next() * 2.0).round() } else { self.next() }).collect();
        Tensor::new(shape.to_vec(), data).unwrap()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn conv(rng: &mut Lcg, cin: usize, cout: usize, k: &[usize], strides: &[usize], dils: &[usize], pb: &[usize], pe: &[usize], groups: usize, act: Option<Activation>) -> Op {
    let shape: Vec<usize> = [cout, cin / groups].into_iter().chain(k.iter().copied()).collect();
    Op::Conv(Conv {
        weight: rng.tensor(&shape),
        bias: Some(rng.tensor(&[cout])),
        strides: strides.to_vec(),
        dilations: dils.to_vec(),
        pads_begin: pb.to_vec(),
        pads_end: pe.to_vec(),
        groups,
        activation: act,
        pointwise: None,
        transposed: None,
    })
}

pub fn dense(rng: &mut Lcg, i: usize, o: usize, act: Option<Activation>) -> Op {
    Op::Dense(Dense { weight: rng.tensor(&[i, o]), bias: Some(rng.tensor(&[o])), activation: act })
}

pub fn pool(k: &[usize], s: &[usize], pb: &[usize], pe: &[usize], cip: bool, ceil: bool) -> Pool {
    Pool { kernel: k.to_vec(), strides: s.to_vec(), pads_begin: pb.to_vec(), pads_end: pe.to_vec(), count_include_pad: cip, ceil_mode: ceil }
}

pub fn bn(rng: &mut Lcg, c: usize) -> Op {
    let var = Arc::new(Tensor::new(vec![c], (0..c).map(|i| 0.5 + 0.3 * i as f32).collect()).unwrap());
    Op::BatchNorm(BatchNorm { gamma: rng.tensor(&[c]), beta: rng.tensor(&[c]), mean: rng.tensor(&[c]), var, epsilon: 1e-3 })
}

/// 2-D NCHW: asymmetric / grouped / dilated / depthwise convolutions, max pooling with asymmetric pads and
/// ceil_mode, PReLU, an edge Pad, average pooling with and without count_include_pad, BN, Concat, a constant Pad,
/// softsign, CELU, log-sigmoid, exp and thresholded ReLU, GlobalMaxPool, and most activations.
pub fn cnn2d() -> Graph {
    let mut r = Lcg(11);
    let mut g = Graph::new("x", vec![3, 16, 15]);
    let c1 = g.push("c1", conv(&mut r, 3, 4, &[3, 3], &[1, 1], &[1, 1], &[0, 1], &[1, 0], 1, Some(Activation::Elu(1.0))), &[0]).unwrap();
    let pr = g.push("prelu", Op::PRelu { slope: r.tensor(&[4, 1, 1]) }, &[c1]).unwrap();
    let edge = g.push("edge", Op::Pad { begin: vec![0, 2, 1], end: vec![0, 1, 2], mode: PadMode::Edge }, &[pr]).unwrap();
    let mp = g.push("mp", Op::MaxPool(pool(&[3, 3], &[2, 2], &[1, 0], &[0, 1], false, true)), &[edge]).unwrap();
    let c2 = g.push("c2", conv(&mut r, 4, 4, &[3, 3], &[1, 1], &[2, 2], &[2, 2], &[2, 2], 2, Some(Activation::LeakyRelu(0.1))), &[mp]).unwrap();
    let c3 = g.push("c3", conv(&mut r, 4, 4, &[2, 3], &[2, 1], &[1, 1], &[0, 1], &[1, 1], 4, Some(Activation::Softplus)), &[c2]).unwrap();
    let ap = g.push("ap", Op::AvgPool(pool(&[3, 2], &[2, 1], &[1, 0], &[2, 1], true, true)), &[c3]).unwrap();
    let b = g.push("bn", bn(&mut r, 4), &[ap]).unwrap();
    let ap2 = g.push("ap2", Op::AvgPool(pool(&[2, 2], &[1, 1], &[0, 1], &[1, 0], false, false)), &[b]).unwrap();
    let cat = g.push("cat", Op::Concat { axis: 0 }, &[b, ap2]).unwrap();
    let pd = g.push("pad", Op::Pad { begin: vec![0, 1, 0], end: vec![0, 0, 2], mode: PadMode::Constant(0.0) }, &[cat]).unwrap();
    let c4 = g.push("c4", conv(&mut r, 8, 6, &[3, 3], &[2, 2], &[1, 1], &[1, 0], &[1, 2], 1, Some(Activation::Relu)), &[pd]).unwrap();
    let ss = g.push("softsign", Op::Activation(Activation::Softsign), &[c4]).unwrap();
    let ce = g.push("celu", Op::Activation(Activation::Celu(0.7)), &[ss]).unwrap();
    let ls = g.push("logsigmoid", Op::Activation(Activation::LogSigmoid), &[ce]).unwrap();
    let ex = g.push("exp", Op::Activation(Activation::Exp), &[ls]).unwrap();
    let th = g.push("thresholded", Op::Activation(Activation::ThresholdedRelu(0.3)), &[ex]).unwrap();
    let gm = g.push("gmp", Op::GlobalMaxPool, &[th]).unwrap();
    let d1 = g.push("d1", dense(&mut r, 6, 5, Some(Activation::Tanh)), &[gm]).unwrap();
    g.push("out", dense(&mut r, 5, 3, None), &[d1]).unwrap();
    g
}

/// 1-D: strided dilated conv with asymmetric pads, max pooling with ceil_mode, residual Add, average pooling
/// (ceil, no count_include_pad), LayerNorm over both axes, a reflect Pad, GlobalAvgPool, Selu/Gelu/Clip/HardSigmoid.
pub fn cnn1d() -> Graph {
    let mut r = Lcg(12);
    let mut g = Graph::new("x", vec![4, 23]);
    let c1 = g.push("c1", conv(&mut r, 4, 6, &[5], &[2], &[2], &[3], &[1], 1, Some(Activation::Selu)), &[0]).unwrap();
    let mp = g.push("mp", Op::MaxPool(pool(&[3], &[2], &[1], &[1], false, true)), &[c1]).unwrap();
    let c2 = g.push("c2", conv(&mut r, 6, 6, &[3], &[1], &[1], &[1], &[1], 1, Some(Activation::Gelu)), &[mp]).unwrap();
    let add = g.push("add", Op::Add, &[mp, c2]).unwrap();
    // A ReLU before the average pooling keeps its Z rule well conditioned (no near-zero window means).
    let re = g.push("relu", Op::Activation(Activation::Relu), &[add]).unwrap();
    let ap = g.push("ap", Op::AvgPool(pool(&[3], &[2], &[1], &[2], false, true)), &[re]).unwrap();
    let ln = g.push("ln", Op::LayerNorm(LayerNorm { axes: 2, gamma: r.tensor(&[6, 4]), beta: r.tensor(&[6, 4]), epsilon: 1e-5 }), &[ap]).unwrap();
    let hs = g.push("hs", Op::Activation(Activation::HardSigmoid { alpha: 0.2, beta: 0.5 }), &[ln]).unwrap();
    let reflect = g.push("reflect", Op::Pad { begin: vec![0, 3], end: vec![0, 1], mode: PadMode::Reflect }, &[hs]).unwrap();
    let gap = g.push("gap", Op::GlobalAvgPool, &[reflect]).unwrap();
    let d1 = g.push("d1", dense(&mut r, 6, 4, Some(Activation::Clip { min: -0.5, max: 0.8 })), &[gap]).unwrap();
    g.push("out", dense(&mut r, 4, 3, Some(Activation::Sigmoid)), &[d1]).unwrap();
    g
}

/// 3-D convolution and pooling.
pub fn cnn3d() -> Graph {
    let mut r = Lcg(13);
    let mut g = Graph::new("x", vec![2, 6, 7, 5]);
    let c1 = g.push("c1", conv(&mut r, 2, 3, &[2, 3, 2], &[1, 2, 1], &[1, 1, 2], &[0, 1, 1], &[1, 1, 0], 1, Some(Activation::Relu)), &[0]).unwrap();
    let mp = g.push("mp", Op::MaxPool(pool(&[2, 2, 2], &[2, 2, 1], &[0, 1, 0], &[1, 0, 1], false, true)), &[c1]).unwrap();
    let ap = g.push("ap", Op::AvgPool(pool(&[2, 2, 2], &[1, 1, 2], &[1, 0, 1], &[0, 1, 1], true, false)), &[mp]).unwrap();
    let n: usize = g.nodes[ap].shape.iter().product();
    let f = g.push_reshape("flat", "flat", ap, vec![n]).unwrap();
    g.push("out", dense(&mut r, n, 3, None), &[f]).unwrap();
    g
}

/// Channels-last input through a layout Transpose (as tf2onnx writes it), a conv, and a Dense on a rank-3
/// tensor (last axis) before flattening.
pub fn channels_last() -> Graph {
    let mut r = Lcg(14);
    let mut g = Graph::new("x", vec![7, 6, 3]);
    let t = g.push("t", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[0]).unwrap();
    let c1 = g.push("c1", conv(&mut r, 3, 5, &[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 1, Some(Activation::Relu)), &[t]).unwrap();
    let d = g.push("d", dense(&mut r, 3, 4, Some(Activation::Relu)), &[c1]).unwrap();
    let n: usize = g.nodes[d].shape.iter().product();
    let f = g.push_reshape("flat", "flat", d, vec![n]).unwrap();
    g.push("out", dense(&mut r, n, 3, None), &[f]).unwrap();
    g
}

/// Max pooling straight on the input (fed integers: many ties, first maximum wins) with overlapping windows.
pub fn ties() -> Graph {
    let mut r = Lcg(15);
    let mut g = Graph::new("x", vec![2, 9, 8]);
    let mp = g.push("mp", Op::MaxPool(pool(&[3, 3], &[1, 2], &[1, 1], &[1, 1], false, true)), &[0]).unwrap();
    let gm = g.push("gmp", Op::GlobalMaxPool, &[0]).unwrap();
    let n: usize = g.nodes[mp].shape.iter().product();
    let f = g.push_reshape("flat", "flat", mp, vec![n]).unwrap();
    let d = g.push("d", dense(&mut r, n, 2, None), &[f]).unwrap();
    let cat = g.push("cat", Op::Concat { axis: 0 }, &[d, gm]).unwrap();
    // (The ndarray backend's Dense needs a standard-layout input; its Concat along axis > 0 does not give one.)
    let re = g.push_reshape("re", "re", cat, vec![4]).unwrap();
    g.push("out", dense(&mut r, 4, 3, None), &[re]).unwrap();
    g
}

/// A 3-D max pooling (overlapping, padded, ceil mode) straight on the input: the window geometry of the route
/// that TensorFlow's MaxPool3D gradient takes (fed floats; ties are checked by value in tests/ops.rs).
pub fn pool3d() -> Graph {
    let mut r = Lcg(16);
    let mut g = Graph::new("x", vec![2, 5, 6, 4]);
    let mp = g.push("mp", Op::MaxPool(pool(&[2, 3, 2], &[1, 2, 2], &[0, 1, 1], &[1, 1, 0], false, true)), &[0]).unwrap();
    let n: usize = g.nodes[mp].shape.iter().product();
    let f = g.push_reshape("flat", "flat", mp, vec![n]).unwrap();
    g.push("out", dense(&mut r, n, 3, None), &[f]).unwrap();
    g
}

/// A SeparableConv (multiplier 2, swish), nearest upsampling, a squeeze-and-excitation Multiply (a broadcast
/// gate), Maximum, Subtract, a three-input Minimum, HardSwish.
pub fn blocks() -> Graph {
    let mut r = Lcg(16);
    let mut g = Graph::new("x", vec![3, 6, 5]);
    let mut sep = conv(&mut r, 3, 6, &[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 3, Some(Activation::Swish));
    if let Op::Conv(c) = &mut sep {
        c.pointwise = Some(r.tensor(&[4, 6, 1, 1]));
        c.bias = Some(r.tensor(&[4]));
    }
    let s = g.push("sep", sep, &[0]).unwrap(); // 4x6x5
    let up = g.push("up", Op::Upsample { factors: vec![2, 1], mode: relprop_core::Interpolation::Nearest }, &[s]).unwrap(); // 4x12x5
    let up = g.push("up2", Op::Upsample { factors: vec![1, 2], mode: relprop_core::Interpolation::Linear(relprop_core::Coordinates::HalfPixel) }, &[up]).unwrap(); // 4x12x10
    let sq = g.push("sq", Op::GlobalAvgPool, &[up]).unwrap();
    let gate = g.push_reshape("rs", "rs", sq, vec![4, 1, 1]).unwrap();
    let se = g.push("scale", Op::Merge(Merge::Multiply), &[up, gate]).unwrap();
    let c2 = g.push("c2", conv(&mut r, 4, 4, &[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1, Some(Activation::HardSwish)), &[se]).unwrap();
    let mx = g.push("max", Op::Merge(Merge::Maximum), &[se, c2]).unwrap();
    let sb = g.push("sub", Op::Merge(Merge::Subtract), &[mx, c2]).unwrap();
    let mn = g.push("min", Op::Merge(Merge::Minimum), &[sb, se, mx]).unwrap();
    let gm = g.push("gap", Op::GlobalAvgPool, &[mn]).unwrap();
    g.push("out", dense(&mut r, 4, 3, None), &[gm]).unwrap();
    g
}

/// A dead ReLU layer (bias −100) under the output Dense: its input is all zeros, so WSquare's `argmax(W²x)`
/// under `max` ties every output (split equally, as signxai's TensorFlow selection does).
pub fn dead() -> Graph {
    let mut r = Lcg(17);
    let mut g = Graph::new("x", vec![4]);
    let mut d = dense(&mut r, 4, 6, Some(Activation::Relu));
    if let Op::Dense(dd) = &mut d {
        dd.bias = Some(Arc::new(Tensor::new(vec![6], vec![-100.0; 6]).unwrap()));
    }
    let d = g.push("d", d, &[0]).unwrap();
    g.push("out", dense(&mut r, 6, 3, None), &[d]).unwrap();
    g
}

pub fn models() -> Vec<(&'static str, Graph, bool)> {
    vec![
        ("cnn2d", cnn2d(), false),
        ("cnn1d", cnn1d(), true),
        ("cnn3d", cnn3d(), false),
        ("channels_last", channels_last(), false),
        ("ties", ties(), true),
        ("pool3d", pool3d(), false),
        ("blocks", blocks(), false),
        ("dead", dead(), false),
    ]
}

/// `LRP` analyzers with one rule everywhere, covering every rule program.
pub fn analyzers() -> Vec<(String, Analyzer)> {
    let specs: &[&[&str]] = &[
        &["rule=Z"],
        &["rule=ZIgnoreBias"],
        &["rule=Epsilon", "epsilon=0.1"],
        &["rule=StdxEpsilon", "stdfactor=0.25"],
        &["rule=StdxEpsilon", "stdfactor=0.25", "std_over_batch=true"],
        &["rule=SIGN"],
        &["rule=SIGNmu", "mu=0.2"],
        &["rule=WSquare"],
        &["rule=Flat"],
        &["rule=AlphaBeta", "alpha=2", "beta=1"],
        &["rule=ZPlus"],
        &["rule=ZPlusFast"],
        &["rule=Gamma", "gamma=0.25"],
        &["rule=Bounded"],
        &["rule=ZBox", "low=-1", "high=1"],
        &["rule=GammaTextbook"],
        &["rule=AlphaBetaX2m100Textbook"],
    ];
    specs.iter().map(|s| (s.join(" "), Analyzer::from_class("LRP", &Params::parse(s).unwrap()).unwrap())).collect()
}

