//! The four tf2onnx exports of the golden Keras models import to the expected IR, with the Keras weights, and
//! reproduce the Keras logits.

mod common;

use common::*;
use relprop_core::{Activation, Graph, Layout, Op, Tensor};

fn load(stem: &str) -> Graph {
    relprop_onnx::load(&onnx_path(stem)).unwrap_or_else(|e| panic!("{stem}: {e}"))
}

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.kind()).collect()
}

fn layers(g: &Graph) -> Vec<&str> {
    g.nodes.iter().map(|n| n.layer.as_str()).collect()
}

fn shapes(g: &Graph) -> Vec<Vec<usize>> {
    g.nodes.iter().map(|n| n.shape.clone()).collect()
}

fn fused(g: &Graph, i: usize) -> Option<Activation> {
    match &g.nodes[i].op {
        Op::Conv(c) => c.activation.clone(),
        Op::Dense(d) => d.activation.clone(),
        op => panic!("node {i} is {}", op.kind()),
    }
}

/// Keras HWIO (or WIO) conv kernel → ONNX OIHW (OIW).
fn hwio_to_oihw(t: &Tensor) -> Tensor {
    let r = t.shape.len();
    let mut perm = vec![r - 1, r - 2];
    perm.extend(0..r - 2);
    permute(t, &perm)
}

fn assert_conv(g: &Graph, i: usize, model: &str, layer: &str) {
    let Op::Conv(c) = &g.nodes[i].op else { panic!("node {i} is not a conv") };
    assert_eq!(*c.weight, hwio_to_oihw(&read_npy(&format!("{model}__{layer}__kernel.npy"))), "{layer} kernel");
    assert_eq!(**c.bias.as_ref().unwrap(), read_npy(&format!("{model}__{layer}__bias.npy")), "{layer} bias");
}

fn assert_dense(g: &Graph, i: usize, model: &str, layer: &str) {
    let Op::Dense(d) = &g.nodes[i].op else { panic!("node {i} is not dense") };
    assert_eq!(*d.weight, read_npy(&format!("{model}__{layer}__kernel.npy")), "{layer} kernel");
    assert_eq!(**d.bias.as_ref().unwrap(), read_npy(&format!("{model}__{layer}__bias.npy")), "{layer} bias");
}

fn assert_logits(g: &Graph, model: &str) {
    let y = forward(g, &golden_input());
    let keras = read_npy(&format!("{model}__logits.npy"));
    assert_eq!(y.shape, keras.shape[1..]);
    let rel = Tensor::new(keras.shape[1..].to_vec(), y.data).unwrap().max_rel_diff(&Tensor::new(keras.shape[1..].to_vec(), keras.data).unwrap());
    assert!(rel < 1e-4, "{model}: logits differ from Keras by {rel}");
}

#[test]
fn model_a_imports_as_keras_layers() {
    for stem in ["model_a_opset13", "model_a_opset17"] {
        let g = load(stem);
        assert_eq!(g.layout, Layout::ChannelsLast, "{stem}");
        assert_eq!(
            kinds(&g),
            ["Input", "Transpose", "Conv2D", "MaxPool", "Conv2D", "Activation", "AvgPool", "BatchNorm", "Transpose", "Reshape", "Dense", "Dense"],
            "{stem}"
        );
        assert_eq!(
            layers(&g),
            [
                "input", "model_a/conv1", "model_a/conv1", "model_a/maxpool", "model_a/conv2", "model_a/relu2", "model_a/avgpool",
                "model_a/bn", "model_a/bn", "model_a/flatten", "model_a/dense1", "model_a/logits"
            ],
            "{stem}"
        );
        let expect: Vec<Vec<usize>> = vec![
            vec![8, 8, 3], vec![3, 8, 8], vec![4, 8, 8], vec![4, 4, 4], vec![6, 4, 4], vec![6, 4, 4], vec![6, 2, 2],
            vec![6, 2, 2], vec![2, 2, 6], vec![24], vec![16], vec![5],
        ];
        assert_eq!(shapes(&g), expect, "{stem}");
        assert!(g.nodes.iter().enumerate().skip(1).all(|(i, n)| n.inputs == [i - 1]), "{stem}: a plain chain");
        assert_eq!(g.output, g.nodes.len() - 1);
        assert_eq!(g.nodes[1].op, Op::Transpose { perm: vec![0, 3, 1, 2] });
        assert_eq!(g.nodes[8].op, Op::Transpose { perm: vec![0, 2, 3, 1] });
        assert_eq!(g.nodes[5].op, Op::Activation(Activation::Relu));
        // Keras Conv2D/Dense(activation='relu') fuse; the separate ReLU layer stays separate.
        assert_eq!(fused(&g, 2), Some(Activation::Relu));
        assert_eq!(fused(&g, 4), None);
        assert_eq!(fused(&g, 10), Some(Activation::Relu));
        assert_eq!(fused(&g, 11), None);
        assert_conv(&g, 2, "model_a", "conv1");
        assert_conv(&g, 4, "model_a", "conv2");
        assert_dense(&g, 10, "model_a", "dense1");
        assert_dense(&g, 11, "model_a", "logits");
        let Op::Conv(c) = &g.nodes[2].op else { unreachable!() };
        assert_eq!((c.strides.as_slice(), c.pads_begin.as_slice(), c.pads_end.as_slice(), c.groups), (&[1, 1][..], &[1, 1][..], &[1, 1][..], 1));
        let Op::MaxPool(p) = &g.nodes[3].op else { unreachable!() };
        assert_eq!((p.kernel.as_slice(), p.strides.as_slice()), (&[2, 2][..], &[2, 2][..]));
        let Op::BatchNorm(bn) = &g.nodes[7].op else { unreachable!() };
        assert_eq!(*bn.gamma, read_npy("model_a__bn__gamma.npy"));
        assert_eq!(*bn.beta, read_npy("model_a__bn__beta.npy"));
        assert_eq!(*bn.mean, read_npy("model_a__bn__moving_mean.npy"));
        assert_eq!(*bn.var, read_npy("model_a__bn__moving_variance.npy"));
        assert!((bn.epsilon - 1e-3).abs() < 1e-9);
        assert_logits(&g, "model_a");
    }
}

#[test]
fn model_b_imports_as_keras_layers() {
    for stem in ["model_b_opset13", "model_b_opset17"] {
        let g = load(stem);
        assert_eq!(g.layout, Layout::ChannelsLast, "{stem}");
        assert_eq!(kinds(&g), ["Input", "Transpose", "Conv2D", "Conv2D", "Conv2D", "Activation", "Add", "GlobalAvgPool", "Dense", "Dense"], "{stem}");
        assert_eq!(
            layers(&g),
            ["input", "model_b/c0", "model_b/c0", "model_b/c1", "model_b/c2", "model_b/relu_c2", "model_b/add", "model_b/gap", "model_b/d1", "model_b/logits"],
            "{stem}"
        );
        let inputs: Vec<Vec<usize>> = g.nodes.iter().map(|n| n.inputs.clone()).collect();
        assert_eq!(inputs, vec![vec![], vec![0], vec![1], vec![2], vec![3], vec![4], vec![3, 5], vec![6], vec![7], vec![8]], "{stem}");
        assert_eq!(g.nodes[7].shape, [4], "GlobalAveragePool + Squeeze collapse to the Keras (C,)");
        assert_eq!(g.output_shape(), [5]);
        assert_eq!(fused(&g, 2), Some(Activation::Relu));
        assert_eq!(fused(&g, 3), Some(Activation::Relu));
        assert_eq!(fused(&g, 4), None);
        assert_eq!(fused(&g, 8), Some(Activation::Relu));
        assert_eq!(fused(&g, 9), None);
        for (i, l) in [(2, "c0"), (3, "c1"), (4, "c2")] {
            assert_conv(&g, i, "model_b", l);
        }
        assert_dense(&g, 8, "model_b", "d1");
        assert_dense(&g, 9, "model_b", "logits");
        assert_logits(&g, "model_b");
    }
}

#[test]
fn node_names_come_from_the_file() {
    let g = load("model_a_opset13");
    assert_eq!(g.nodes[0].name, "input");
    assert_eq!(g.nodes[1].name, "model_a/conv1/BiasAdd__6");
    assert_eq!(g.nodes[10].name, "model_a/dense1/MatMul");
    let names: std::collections::HashSet<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), g.nodes.len(), "names are unique");
}

#[test]
fn decode_matches_load() {
    for stem in ONNX_FILES {
        let bytes = std::fs::read(onnx_path(stem)).unwrap();
        assert_eq!(relprop_onnx::decode(&bytes, stem).unwrap(), load(stem));
    }
}

/// The SeparableConv2D golden model (tf2onnx: two Convs per layer) imports as one Conv per Keras layer, with a
/// pointwise stage, the Keras weights, and the Keras logits.
#[test]
fn separable_model_has_one_kernel_layer_per_separable_conv() {
    let g = load("separable");
    let convs: Vec<usize> = (0..g.nodes.len()).filter(|&i| matches!(g.nodes[i].op, Op::Conv(_))).collect();
    assert_eq!(convs.iter().map(|&i| g.nodes[i].layer.as_str()).collect::<Vec<_>>(), ["separable/sep1", "separable/sep2"]);
    for (&i, layer) in convs.iter().zip(["sep1", "sep2"]) {
        let Op::Conv(c) = &g.nodes[i].op else { unreachable!() };
        // Keras depthwise kernel (kh, kw, C, multiplier) → ONNX (C·multiplier, 1, kh, kw).
        let dk = read_npy(&format!("separable__{layer}__depthwise_kernel.npy"));
        let (kh, kw, ch, mult) = (dk.shape[0], dk.shape[1], dk.shape[2], dk.shape[3]);
        let mut want = vec![0f32; dk.data.len()];
        for (k, &v) in dk.data.iter().enumerate() {
            let (m, cc, j, i) = (k % mult, (k / mult) % ch, (k / (mult * ch)) % kw, k / (mult * ch * kw));
            want[((cc * mult + m) * kh + i) * kw + j] = v;
        }
        assert_eq!((c.weight.shape.as_slice(), c.groups), (&[ch * mult, 1, kh, kw][..], ch), "{layer} depthwise");
        assert_eq!(c.weight.data, want, "{layer} depthwise kernel");
        let pk = hwio_to_oihw(&read_npy(&format!("separable__{layer}__pointwise_kernel.npy")));
        assert_eq!(c.pointwise.as_deref(), Some(&pk), "{layer} pointwise kernel");
    }
    let Op::Conv(sep1) = &g.nodes[convs[0]].op else { unreachable!() };
    assert_eq!(sep1.activation, Some(Activation::Relu));
    assert_eq!(**sep1.bias.as_ref().unwrap(), read_npy("separable__sep1__bias.npy"));
    let keras = read_npy("separable__logits.npy");
    for k in 0..2 {
        let x = read_npy(&format!("separable__input{k}.npy"));
        let y = forward(&g, &Tensor::new(x.shape[1..].to_vec(), x.data).unwrap());
        let want = &keras.data[k * y.data.len()..(k + 1) * y.data.len()];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(y.data.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-4 * scale), "input {k}: {:?} vs {want:?}", y.data);
    }
}
