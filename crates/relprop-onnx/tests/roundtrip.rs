//! IR → ONNX → IR gives back the same graph: ops (with weights), inputs, shapes, layers, layout.

mod common;

use std::sync::Arc;

use common::*;
use relprop_core::{Activation, BatchNorm, Conv, Dense, Graph, Merge, Op, PadMode, Pool, Tensor};
use relprop_onnx::{decode, encode_model, graph_to_onnx};

fn roundtrip(g: &Graph) -> Graph {
    let bytes = encode_model(&graph_to_onnx(g));
    decode(&bytes, "roundtrip").unwrap_or_else(|e| panic!("re-import failed: {e}"))
}

fn assert_same(a: &Graph, b: &Graph) {
    assert_eq!(summary(a), summary(b));
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        assert_eq!(x.op, y.op, "node {} (weights included)", x.name);
    }
    assert_eq!(a.output, b.output);
    assert_eq!(a.layout, b.layout);
}

#[test]
fn golden_models_roundtrip() {
    // (separable: SeparableConv2D layers, two ONNX Convs each)
    for stem in ONNX_FILES.into_iter().chain(["separable", "conv_transpose", "upsampling", "se_merges"]) {
        let g = relprop_onnx::load(&onnx_path(stem)).unwrap();
        let back = roundtrip(&g);
        assert_same(&g, &back);
        assert_eq!(back.nodes[0].name, g.nodes[0].name);
        // And once more: the writer's own output is a fixed point.
        assert_same(&back, &roundtrip(&back));
    }
}

#[test]
fn exported_model_is_plain_onnx() {
    let g = relprop_onnx::load(&onnx_path("model_a_opset17")).unwrap();
    let m = graph_to_onnx(&g);
    assert_eq!(m.ir_version, Some(8));
    assert_eq!(m.opset_import[0].version, Some(17));
    let gp = m.graph.as_ref().unwrap();
    let ops: Vec<&str> = gp.node.iter().map(|n| n.op_type.as_deref().unwrap()).collect();
    assert_eq!(
        ops,
        ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "Relu", "AveragePool", "BatchNormalization", "Transpose", "Reshape", "MatMul", "Add", "Relu", "MatMul", "Add"]
    );
    let names: Vec<&str> = gp.node.iter().map(|n| n.name.as_deref().unwrap()).collect();
    assert_eq!(names[1], "model_a/conv1/Conv");
    assert_eq!(names[2], "model_a/conv1/Relu");
    assert_eq!(names[5], "model_a/relu2/Relu");
    assert_eq!(names[10..13], ["model_a/dense1/MatMul", "model_a/dense1/Add", "model_a/dense1/Relu"]);
    assert_eq!(gp.input.len(), 1);
    assert_eq!(gp.output.len(), 1);
}

fn t(shape: &[usize], seed: u32) -> Arc<Tensor> {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0).collect();
    Arc::new(Tensor::new(shape.to_vec(), data).unwrap())
}

/// A hand-built graph touching every op kind the writer knows.
#[test]
fn every_op_roundtrips() {
    let mut g = Graph::new("x", vec![3, 10]);
    let pad = g.push("pad", Op::Pad { begin: vec![0, 1], end: vec![0, 2], mode: PadMode::Constant(0.5) }, &[0]).unwrap();
    let pad = g.push("reflect", Op::Pad { begin: vec![0, 2], end: vec![0, 1], mode: PadMode::Reflect }, &[pad]).unwrap();
    let pad = g.push("edge", Op::Pad { begin: vec![1, 0], end: vec![0, 3], mode: PadMode::Edge }, &[pad]).unwrap();
    let pad = g.push("crop", Op::Slice { begin: vec![1, 3], end: vec![4, 16] }, &[pad]).unwrap();
    let conv = Conv {
        weight: t(&[4, 3, 3], 1),
        bias: Some(t(&[4], 2)),
        strides: vec![2],
        dilations: vec![1],
        pads_begin: vec![1],
        pads_end: vec![0],
        groups: 1,
        activation: Some(Activation::LeakyRelu(0.2)),
        pointwise: None,
        transposed: None,
    };
    let c = g.push_in_layer("c/conv", "c", Op::Conv(conv), &[pad]).unwrap();
    let gconv = Conv {
        weight: t(&[4, 2, 1], 3),
        bias: None,
        strides: vec![1],
        dilations: vec![1],
        pads_begin: vec![0],
        pads_end: vec![0],
        groups: 2,
        activation: None,
        pointwise: None,
        transposed: None,
    };
    let c2 = g.push_in_layer("g/conv", "g", Op::Conv(gconv), &[c]).unwrap();
    // A ConvTranspose (grouped, stride 2, output padding) back to the same extent through a strided conv.
    let ct = Conv {
        weight: t(&[4, 3, 3], 13),
        bias: Some(t(&[6], 14)),
        strides: vec![2],
        dilations: vec![1],
        pads_begin: vec![1],
        pads_end: vec![1],
        groups: 2,
        activation: None,
        pointwise: None,
        transposed: Some(vec![1]),
    };
    let ct = g.push_in_layer("ct/ConvTranspose", "ct", Op::Conv(ct), &[c2]).unwrap();
    let back = Conv { weight: t(&[4, 6, 2], 15), bias: None, strides: vec![2], dilations: vec![1], pads_begin: vec![0], pads_end: vec![0], groups: 1, activation: None, pointwise: None, transposed: None };
    let c2 = g.push_in_layer("back/conv", "back", Op::Conv(back), &[ct]).unwrap();
    // A SeparableConv1D (depth multiplier 2): written as two ONNX Convs, read back as one layer.
    let sep = Conv {
        weight: t(&[8, 1, 3], 10),
        bias: Some(t(&[4], 11)),
        strides: vec![1],
        dilations: vec![2],
        pads_begin: vec![2],
        pads_end: vec![2],
        groups: 4,
        activation: Some(Activation::Tanh),
        pointwise: Some(t(&[4, 8, 1], 12)),
        transposed: None,
    };
    let sep = g.push_in_layer("sep/conv", "sep", Op::Conv(sep), &[c2]).unwrap();
    let act = g.push_in_layer("act/Clip", "act", Op::Activation(Activation::Clip { min: 0.0, max: 6.0 }), &[sep]).unwrap();
    // Merges: a Multiply of three (a chain of ONNX Muls), Subtract, Maximum, Minimum; a Swish layer.
    let mul = g.push_in_layer("mul/m", "mul", Op::Merge(Merge::Multiply), &[c, act, c2]).unwrap();
    let sub = g.push_in_layer("sub/s", "sub", Op::Merge(Merge::Subtract), &[mul, c]).unwrap();
    let mx = g.push_in_layer("max/m", "max", Op::Merge(Merge::Maximum), &[sub, act, c2]).unwrap();
    let mn = g.push_in_layer("min/m", "min", Op::Merge(Merge::Minimum), &[mx, c]).unwrap();
    let sw = g.push_in_layer("sw/s", "sw", Op::Activation(Activation::Swish), &[mn]).unwrap();
    let sum = g.push_in_layer("sum/Sum", "sum", Op::Add, &[c, act, sw]).unwrap();
    let pool = Pool { kernel: vec![2], strides: vec![1], pads_begin: vec![1], pads_end: vec![0], count_include_pad: true, ceil_mode: true };
    let avg = g.push_in_layer("avg/p", "avg", Op::AvgPool(pool.clone()), &[sum]).unwrap();
    // count_include_pad means nothing to a max pool (and ONNX MaxPool has no such attribute).
    let max = g.push_in_layer("max/p", "max", Op::MaxPool(Pool { count_include_pad: false, ..pool }), &[sum]).unwrap();
    let cat = g.push_in_layer("cat/c", "cat", Op::Concat { axis: 0 }, &[avg, max]).unwrap();
    let up = g.push_in_layer("up/Resize", "up", Op::Upsample { factors: vec![2], mode: relprop_core::Interpolation::Nearest }, &[cat]).unwrap();
    let up = g.push_in_layer("lin/Resize", "lin", Op::Upsample { factors: vec![1], mode: relprop_core::Interpolation::Linear(relprop_core::Coordinates::AlignCorners) }, &[up]).unwrap();
    let cat = g.push_in_layer("down/p", "down", Op::MaxPool(Pool { kernel: vec![2], strides: vec![2], pads_begin: vec![0], pads_end: vec![0], count_include_pad: false, ceil_mode: false }), &[up]).unwrap();
    let bn = BatchNorm { gamma: t(&[8], 4), beta: t(&[8], 5), mean: t(&[8], 6), var: Arc::new(Tensor::new(vec![8], vec![0.5; 8]).unwrap()), epsilon: 1e-3 };
    let bn = g.push_in_layer("bn/b", "bn", Op::BatchNorm(bn), &[cat]).unwrap();
    // A constant scaling and shift that is not a BN layer (written as Mul + Add, read back as one Affine).
    let zeros = Arc::new(Tensor::new(vec![8], vec![0.0; 8]).unwrap());
    let ones = Arc::new(Tensor::new(vec![8], vec![1.0; 8]).unwrap());
    let aff = BatchNorm { gamma: t(&[8], 10), beta: t(&[8], 11), mean: zeros, var: ones, epsilon: 0.0 };
    let aff = g.push_in_layer("aff/a", "aff", Op::Affine(aff), &[bn]).unwrap();
    // PReLU with a per-channel slope, then layer normalization over the last axis.
    let pr = g.push_in_layer("pr/p", "pr", Op::PRelu { slope: t(&[8, 1], 12) }, &[aff]).unwrap();
    let len = g.nodes[pr].shape[1];
    let ln = relprop_core::LayerNorm { axes: 1, gamma: t(&[len], 13), beta: t(&[len], 14), epsilon: 1e-5 };
    let ln = g.push_in_layer("ln/l", "ln", Op::LayerNorm(ln), &[pr]).unwrap();
    let gmp = g.push_in_layer("gmp/g", "gmp", Op::GlobalMaxPool, &[ln]).unwrap();
    let id = g.push_in_layer("id/i", "id", Op::Identity, &[gmp]).unwrap();
    let r = g.push_reshape("r/r", "r", id, vec![2, 4]).unwrap();
    let tr = g.push_in_layer("tr/t", "tr", Op::Transpose { perm: vec![0, 2, 1] }, &[r]).unwrap();
    let d = Dense { weight: t(&[2, 3], 7), bias: None, activation: Some(Activation::HardSigmoid { alpha: 0.3, beta: 0.4 }) };
    let d = g.push_in_layer("d/d", "d", Op::Dense(d), &[tr]).unwrap();
    let mut last = g.push_reshape("flat/f", "flat", d, vec![12]).unwrap();
    for (i, a) in [Activation::Elu(0.7), Activation::Sigmoid, Activation::Tanh, Activation::Softplus, Activation::Selu, Activation::HardSwish, Activation::Relu, Activation::Clip { min: f32::NEG_INFINITY, max: 1.0 }]
        .into_iter()
        .enumerate()
    {
        last = g.push_in_layer(&format!("a{i}/x"), &format!("a{i}"), Op::Activation(a), &[last]).unwrap();
    }
    let d2 = Dense { weight: t(&[12, 3], 8), bias: Some(t(&[3], 9)), activation: None };
    g.push_in_layer("out/d", "out", Op::Dense(d2), &[last]).unwrap();
    g.validate().unwrap();
    let back = roundtrip(&g);
    assert_same(&g, &back);
}

#[test]
fn gelu_needs_opset_20() {
    let mut g = Graph::new("x", vec![4]);
    g.push("gelu", Op::Activation(Activation::Gelu), &[0]).unwrap();
    let m = graph_to_onnx(&g);
    assert_eq!(m.opset_import[0].version, Some(20));
    assert_same(&g, &roundtrip(&g));
}
