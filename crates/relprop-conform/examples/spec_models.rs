//! Writes the small hand-made models and inputs the property cases of `specs/` use (not goldens: their
//! expected values are either properties or written by hand in the YAML).
//! `cargo run -p relprop-conform --example spec_models` regenerates them (deterministic).

use std::path::Path;
use std::sync::Arc;

use relprop_core::graph::{Activation, BatchNorm, Conv, Dense, Graph, Op, Pool};
use relprop_core::rng::Lcg;
use relprop_core::{npy, Tensor};

fn conv(rng: &mut Lcg, cin: usize, cout: usize, k: usize, stride: usize, pads: (usize, usize), bias: bool) -> Op {
    Op::Conv(Conv {
        weight: rng.tensor(&[cout, cin, k, k]),
        bias: bias.then(|| rng.tensor(&[cout])),
        strides: vec![stride; 2],
        dilations: vec![1; 2],
        pads_begin: vec![pads.0; 2],
        pads_end: vec![pads.1; 2],
        groups: 1,
        activation: Some(Activation::Relu),
        pointwise: None,
        transposed: None,
    })
}

fn dense(rng: &mut Lcg, i: usize, o: usize, bias: bool, relu: bool) -> Op {
    Op::Dense(Dense { weight: rng.tensor(&[i, o]), bias: bias.then(|| rng.tensor(&[o])), activation: relu.then_some(Activation::Relu) })
}

fn pool(k: usize, s: usize, p: usize) -> Pool {
    Pool { kernel: vec![k, k], strides: vec![s, s], pads_begin: vec![p, p], pads_end: vec![p, p], count_include_pad: false, ceil_mode: false }
}

fn save(dir: &Path, name: &str, g: &Graph) {
    g.validate().unwrap();
    std::fs::write(dir.join(format!("models/{name}.onnx")), relprop_onnx::encode_model(&relprop_onnx::graph_to_onnx(g))).unwrap();
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs");
    // 1. No bias anywhere (NCHW, PyTorch-style): Z conserves relevance layer by layer.
    let mut rng = Lcg(7);
    let mut g = Graph::new("x", vec![3, 11, 9]);
    let c1 = g.push("c1", conv(&mut rng, 3, 4, 3, 2, (0, 1), false), &[0]).unwrap();
    let mp = g.push("mp", Op::MaxPool(pool(3, 1, 1)), &[c1]).unwrap();
    let ap = g.push("ap", Op::AvgPool(pool(2, 1, 0)), &[mp]).unwrap();
    let c2 = g.push("c2", conv(&mut rng, 4, 5, 2, 1, (1, 0), false), &[ap]).unwrap();
    let n = g.nodes[c2].shape.iter().product();
    let f = g.push_reshape("flat", "flat", c2, vec![n]).unwrap();
    let d = g.push("d", dense(&mut rng, n, 6, false, false), &[f]).unwrap();
    g.push("out", dense(&mut rng, 6, 3, false, false), &[d]).unwrap();
    save(&dir, "nobias_cnn", &g);
    npy::write(&dir.join("inputs/nobias_cnn_x.npy"), &Lcg(99).input(&[1, 3, 11, 9])).unwrap();

    // 2. z = 0 exactly in the first layer: x = (0.5, 0.5), w = (1, -1), no bias; d1 (output 1).
    let mut g = Graph::new("x", vec![2]);
    let w = |shape: Vec<usize>, v: Vec<f32>| Arc::new(Tensor::new(shape, v).unwrap());
    let d0 = g.push("d0", Op::Dense(Dense { weight: w(vec![2, 1], vec![1.0, -1.0]), bias: None, activation: None }), &[0]).unwrap();
    g.push("d1", Op::Dense(Dense { weight: w(vec![1, 1], vec![1.0]), bias: Some(w(vec![1], vec![1.0])), activation: None }), &[d0]).unwrap();
    save(&dir, "zero_z", &g);
    npy::write(&dir.join("inputs/zero_z_x.npy"), &Tensor::new(vec![1, 2], vec![0.5, 0.5]).unwrap()).unwrap();

    // 3. The first layer feeds two layers (signxai crashes there with SIGN, SIGNmu, Bounded), with BN.
    let mut rng = Lcg(21);
    let mut g = Graph::new("x", vec![3, 6, 6]);
    let c0 = g.push("c0", conv(&mut rng, 3, 4, 3, 1, (1, 1), true), &[0]).unwrap();
    let bn = Op::BatchNorm(BatchNorm { gamma: rng.tensor(&[4]), beta: rng.tensor(&[4]), mean: rng.tensor(&[4]), var: w(vec![4], vec![0.5, 1.0, 2.0, 0.7]), epsilon: 1e-3 });
    let bn = g.push("bn", bn, &[c0]).unwrap();
    let c1 = g.push("c1", conv(&mut rng, 4, 4, 3, 1, (1, 1), true), &[bn]).unwrap();
    let c2 = g.push("c2", conv(&mut rng, 4, 4, 1, 1, (0, 0), true), &[bn]).unwrap();
    let add = g.push("add", Op::Add, &[c1, c2]).unwrap();
    let gap = g.push("gap", Op::GlobalAvgPool, &[add]).unwrap();
    g.push("out", dense(&mut rng, 4, 3, true, false), &[gap]).unwrap();
    save(&dir, "branch_first", &g);
    npy::write(&dir.join("inputs/branch_first_x.npy"), &Lcg(4).input(&[1, 3, 6, 6])).unwrap();
    println!("wrote specs/models and specs/inputs");
}
