//! Models exported by tf2onnx itself (fixtures from `tools/keras_fixtures.py`, with Keras' own logits).

mod common;

use std::path::PathBuf;

use common::*;
use relprop_core::Op;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Keras LayerNormalization at its default epsilon takes the fused path (module docs of `patterns.rs`): each of
/// the three becomes one LayerNorm over the axes Keras normalizes, and the logits are Keras'.
#[test]
fn keras_fused_layer_norm() {
    let g = relprop_onnx::load(&data("keras_ln_fused.onnx")).unwrap();
    let lns: Vec<(String, usize, Vec<usize>, f32)> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::LayerNorm(l) => Some((n.layer.clone(), l.axes, l.gamma.shape.clone(), l.epsilon)),
            _ => None,
        })
        .collect();
    let layers: Vec<&str> = lns.iter().map(|l| l.0.rsplit('/').next().unwrap()).collect();
    assert_eq!(layers, ["ln", "ln2", "ln3"]);
    assert_eq!(lns.iter().map(|l| (l.1, l.2.clone())).collect::<Vec<_>>(), [(1, vec![4]), (3, vec![4, 4, 5]), (1, vec![8])]);
    assert!(lns.iter().all(|l| l.3 == 1e-3));
    // Nothing of the batch-norm form is left.
    assert!(g.nodes.iter().all(|n| !matches!(n.op, Op::BatchNorm(_))));
    check_logits(&g, &data("keras_ln_input.npy"), &data("keras_ln_logits.npy"), "Keras");
}

/// A Keras Conv1DTranspose with `same` padding, as tf2onnx writes it (a VALID 2-D ConvTranspose cropped by a
/// Slice and a Pad computed from shapes, then Squeeze, bias and ReLU), becomes one transposed conv with its bias
/// (and its ReLU in the same layer), as signxai sees the layer; the ThresholdedReLU tf2onnx renames keeps a layer
/// of its own; the Dense keeps its `exponential` activation. The logits are Keras'.
#[test]
fn keras_conv1d_transpose_thresholded_relu_and_exponential() {
    use relprop_core::Activation;
    let g = relprop_onnx::load(&data("keras_conv1d_transpose.onnx")).unwrap();
    let convs: Vec<_> = g.nodes.iter().filter_map(|n| match &n.op {
        Op::Conv(c) => Some((n.layer.clone(), c.transposed.is_some(), c.bias.is_some(), c.activation.clone())),
        _ => None,
    }).collect();
    assert_eq!(convs.len(), 1, "{convs:?}");
    let (layer, transposed, bias, act) = &convs[0];
    // (The ReLU after the Squeeze stays a node of its own, in the same layer.)
    assert!(layer.ends_with("/ct") && *transposed && *bias && act.is_none(), "{convs:?}");
    assert!(g.nodes.iter().all(|n| !matches!(n.op, Op::Slice { .. } | Op::Pad { .. } | Op::Affine(_))), "crop, pads and bias folded");
    assert!(g.nodes.iter().any(|n| n.layer.ends_with("/ct") && n.op == Op::Activation(Activation::Relu)));
    let tr = g.nodes.iter().find(|n| n.op == Op::Activation(Activation::ThresholdedRelu(0.2))).expect("ThresholdedRelu");
    assert!(tr.layer.starts_with("ThresholdedRelu__"), "a layer of its own: {}", tr.layer);
    assert!(g.nodes.iter().any(|n| matches!(&n.op, Op::Dense(d) if d.activation == Some(Activation::Exp))));
    check_logits(&g, &data("keras_ct_input.npy"), &data("keras_ct_logits.npy"), "Keras");
}
