//! Models exported by PyTorch itself (`tools/torch_fixtures.py`, torch 2.13): the TorchScript exporter's
//! `x.view(x.size(0), -1)` shape chain with a dynamic batch, and the default (dynamo) exporter's external data
//! file. Both must import to the same IR computation and reproduce torch's logits.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use relprop_core::{Graph, PadMode, Tensor};
use relprop_onnx::builder::{make_node, make_tensor_f32, make_tensor_i64};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.kind()).collect()
}

/// torch's logits for the fixture batch (`logits`, a file in tests/data), against the IR's forward pass.
fn check_torch_logits(g: &Graph, logits: &str) {
    check_logits(g, &data("torch_view_input.npy"), &data(logits), "torch");
}

#[test]
fn legacy_exporter_view_shape_chain() {
    let g = relprop_onnx::load(&data("torch_view_legacy.onnx")).unwrap();
    // Both exporters fold a BatchNorm2d that follows a conv into the conv (eval mode); BatchNorm1d stays.
    assert_eq!(kinds(&g), ["Input", "Conv2D", "Activation", "MaxPool", "Reshape", "BatchNorm", "Dense"]);
    assert_eq!(g.nodes[4].shape, [64]);
    check_torch_logits(&g, "torch_view_logits.npy");
}

#[test]
fn dynamo_exporter_external_data() {
    let path = data("torch_view_dynamo.onnx");
    let g = relprop_onnx::load(&path).unwrap();
    assert_eq!(kinds(&g), ["Input", "Conv2D", "Activation", "MaxPool", "Reshape", "BatchNorm", "Dense"]);
    check_torch_logits(&g, "torch_view_logits.npy");
    // From bytes alone the side file cannot be found: a clear error, not zeros.
    let e = relprop_onnx::decode(&std::fs::read(&path).unwrap(), "bytes.onnx").unwrap_err().to_string();
    assert!(e.contains("external data file") && e.contains("path"), "{e}");
}

/// A one-Dense model whose weight is external data described by `entries` (key, value), with `bin` written as
/// the side file `w.bin` next to it; returns the import result.
fn external_model(dir: &Path, entries: &[(&str, &str)], bin: &[u8]) -> relprop_core::Result<Graph> {
    use relprop_onnx::proto::tensor_proto::DataLocation;
    use relprop_onnx::proto::StringStringEntryProto;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("w.bin"), bin).unwrap();
    let mut w = make_tensor_f32("w", &[2, 2], &[0.0; 4]);
    w.raw_data = None;
    w.float_data.clear();
    w.data_location = Some(DataLocation::External as i32);
    w.external_data = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto { key: Some(k.to_string()), value: Some(v.to_string()) })
        .collect();
    let nodes = vec![make_node("MatMul", "fc/MatMul", &["x", "w"], &["y"], vec![])];
    let path = dir.join("m.onnx");
    std::fs::write(&path, model_bytes(nodes, vec![w], &[2], "y", 17)).unwrap();
    relprop_onnx::load(&path)
}

#[test]
fn external_data_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("relprop-ext-{}", std::process::id()));
    let floats: Vec<u8> = [9.0f32, 1.0, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    // Offset 4 skips the first float: W = [[1, 2], [3, 4]].
    let g = external_model(&dir, &[("location", "w.bin"), ("offset", "4"), ("length", "16")], &floats).unwrap();
    let y = forward(&g, &Tensor::new(vec![2], vec![1.0, 10.0]).unwrap());
    assert_eq!(y.data, [31.0, 42.0]);
    for (entries, want) in [
        (vec![("location", "../w.bin")], "relative path inside"),
        (vec![("location", "/etc/passwd")], "relative path inside"),
        (vec![("location", "missing.bin")], "missing.bin"),
        (vec![("location", "w.bin"), ("offset", "8")], "outside the file"),
        (vec![("location", "w.bin"), ("length", "12")], "differs from the 16 bytes"),
        (vec![("location", "w.bin"), ("offset", "x")], "not a byte count"),
        (vec![("offset", "0")], "no 'location'"),
    ] {
        let e = external_model(&dir, &entries, &floats).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("'w'"), "{entries:?}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shape_arithmetic_for_reshape_targets() {
    // x (N, 2, 3) → reshape to [Shape(x)[0], Shape(x)[1] * Shape(x)[2]] via Slice, Gather, Mul, Concat, Cast.
    let nodes = vec![
        make_node("Shape", "s", &["x"], &["shp"], vec![]),
        make_node("Gather", "g0", &["shp", "i0"], &["n"], vec![]),
        make_node("Unsqueeze", "u0", &["n", "ax"], &["n1"], vec![]),
        make_node("Slice", "sl", &["shp", "st", "en"], &["hw"], vec![]),
        make_node("Gather", "g1", &["hw", "i0"], &["h"], vec![]),
        make_node("Gather", "g2", &["hw", "i1"], &["w"], vec![]),
        make_node("Mul", "m", &["h", "w"], &["hw1"], vec![]),
        make_node("Unsqueeze", "u1", &["hw1", "ax"], &["hw2"], vec![]),
        make_node("Concat", "c", &["n1", "hw2"], &["t0"], vec![relprop_onnx::builder::attr_int("axis", 0)]),
        make_node("Cast", "cast", &["t0"], &["t"], vec![relprop_onnx::builder::attr_int("to", 7)]),
        make_node("Reshape", "r", &["x", "t"], &["y"], vec![]),
    ];
    let inits = vec![
        make_tensor_i64("i0", &[], &[0]),
        make_tensor_i64("i1", &[], &[1]),
        make_tensor_i64("ax", &[1], &[0]),
        make_tensor_i64("st", &[1], &[1]),
        make_tensor_i64("en", &[1], &[3]),
    ];
    let g = ok(&model_bytes(nodes.clone(), inits.clone(), &[2, 3], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Reshape"]);
    assert_eq!(g.nodes[1].shape, [6]);

    // The batch size anywhere but the first entry would move the batch axis: refused, naming the node.
    let mut swapped = nodes.clone();
    swapped[8] = make_node("Concat", "c", &["hw2", "n1"], &["t0"], vec![relprop_onnx::builder::attr_int("axis", 0)]);
    let e = err(&model_bytes(swapped, inits.clone(), &[2, 3], "y", 17));
    assert!(e.contains("'r'") && e.contains("only axis 0 may hold it"), "{e}");
    // A multiple of the batch size (tf2onnx's Tensordot merges rows so) is refused there just the same; other
    // arithmetic on the batch size is refused where it happens.
    let mut on_batch = nodes;
    on_batch[6] = make_node("Mul", "m", &["n", "w"], &["hw1"], vec![]);
    let e = err(&model_bytes(on_batch.clone(), inits.clone(), &[2, 3], "y", 17));
    assert!(e.contains("'r'") && e.contains("only axis 0 may hold it"), "{e}");
    on_batch[6] = make_node("Add", "m", &["n", "w"], &["hw1"], vec![]);
    let e = err(&model_bytes(on_batch, inits, &[2, 3], "y", 17));
    assert!(e.contains("'m'") && e.contains("batch size"), "{e}");

    // Integer Mod takes the divisor's sign, as Python's % (torch.onnx normalises nn.Unflatten's axis with it):
    // -1 mod 3 = 2 gives the target [0, 2, -1]; with fmod = 1 (C's %) it is -1, and two -1 entries are refused.
    let unflatten = |fmod: i64| {
        let nodes = vec![
            make_node("Mod", "mod", &["neg1", "three"], &["two"], vec![relprop_onnx::builder::attr_int("fmod", fmod)]),
            make_node("Concat", "c", &["zero", "two", "neg1"], &["t"], vec![relprop_onnx::builder::attr_int("axis", 0)]),
            make_node("Reshape", "r", &["x", "t"], &["y"], vec![]),
        ];
        let inits = vec![make_tensor_i64("neg1", &[1], &[-1]), make_tensor_i64("three", &[1], &[3]), make_tensor_i64("zero", &[1], &[0])];
        model_bytes(nodes, inits, &[6], "y", 17)
    };
    assert_eq!(ok(&unflatten(0)).nodes[1].shape, [2, 3]);
    assert!(err(&unflatten(1)).contains("'r'"));
}

#[test]
fn common_pytorch_idioms() {
    // (x - mean) / std (two Affines: not BN layers), relu6, slicing, torch.cat, x.mean((2, 3)): consecutive
    // slices of one axis each.
    let g = relprop_onnx::load(&data("torch_ops.onnx")).unwrap();
    let k = kinds(&g);
    for op in ["Affine", "Activation", "Slice", "Concat", "GlobalAvgPool", "Dense"] {
        assert!(k.contains(&op), "{op} missing from {k:?}");
    }
    check_torch_logits(&g, "torch_ops_logits.npy");
}

#[test]
fn mobilenet_shufflenet_and_decoder_idioms() {
    // Hardswish, an SE gate (Hardsigmoid, broadcasting Mul), chunk (Slices with computed ends), F.silu at the top
    // level (Sigmoid + Mul, one Swish), the 5-D channel shuffle, ConvTranspose2d with output_padding, nn.Upsample
    // (Resize), torch.maximum.
    let g = relprop_onnx::load(&data("torch_blocks.onnx")).unwrap();
    let k = kinds(&g);
    for op in ["Conv2D", "Multiply", "Slice", "Concat", "Transpose", "Upsample", "Maximum", "GlobalAvgPool", "Dense"] {
        assert!(k.contains(&op), "{op} missing from {k:?}");
    }
    let acts: Vec<_> = g.nodes.iter().filter_map(|n| match &n.op {
        relprop_core::Op::Activation(a) => Some(a.clone()),
        relprop_core::Op::Conv(c) => c.activation.clone(),
        _ => None,
    }).collect();
    for a in [relprop_core::Activation::HardSwish, relprop_core::Activation::Swish] {
        assert!(acts.contains(&a), "{a:?} missing from {acts:?}");
    }
    assert!(g.nodes.iter().any(|n| matches!(&n.op, relprop_core::Op::Conv(c) if c.transposed == Some(vec![1, 1]))), "ConvTranspose2d");
    check_torch_logits(&g, "torch_blocks_logits.npy");
}

#[test]
fn image_restoration_idioms() {
    // ReflectionPad2d and ReplicationPad2d (their pads an integer constant chain: ConstantOfShape, Concat, Reshape,
    // a reversing Slice, Transpose, Cast), InstanceNorm2d, GroupNorm (InstanceNormalization inside reshapes, then
    // Mul / Add), PixelShuffle (DepthToSpace) and PixelUnshuffle (reshapes and a transpose).
    let g = relprop_onnx::load(&data("torch_restore.onnx")).unwrap();
    let modes: Vec<PadMode> = g.nodes.iter().filter_map(|n| match &n.op {
        relprop_core::Op::Pad { mode, .. } => Some(*mode),
        _ => None,
    }).collect();
    assert_eq!(modes, [PadMode::Reflect, PadMode::Edge]);
    let k = kinds(&g);
    assert_eq!(k.iter().filter(|&&o| o == "LayerNorm").count(), 2, "{k:?}");
    for op in ["Affine", "Transpose", "Slice", "GlobalAvgPool", "Dense"] {
        assert!(k.contains(&op), "{op} missing from {k:?}");
    }
    check_torch_logits(&g, "torch_restore_logits.npy");
}
