//! Supported ONNX ops and patterns, on hand-built models.

mod common;

use common::*;
use relprop_core::{Activation, Graph, Layout, Merge, Op, PadMode, Tensor};
use relprop_onnx::builder::*;
use relprop_onnx::proto::tensor_proto::DataType;
use relprop_onnx::proto::{NodeProto, TensorProto};

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.kind()).collect()
}

fn conv_of(g: &Graph, i: usize) -> &relprop_core::Conv {
    match &g.nodes[i].op {
        Op::Conv(c) => c,
        op => panic!("node {i} is {}", op.kind()),
    }
}

fn dense_of(g: &Graph, i: usize) -> &relprop_core::Dense {
    match &g.nodes[i].op {
        Op::Dense(d) => d,
        op => panic!("node {i} is {}", op.kind()),
    }
}

#[test]
fn node_order_in_the_file_does_not_matter() {
    let bytes = std::fs::read(onnx_path("model_b_opset13")).unwrap();
    let mut m: relprop_onnx::proto::ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    m.graph.as_mut().unwrap().node.reverse();
    let shuffled = ok(&relprop_onnx::encode_model(&m));
    assert_eq!(shuffled, ok(&bytes));
}

#[test]
fn pytorch_style_channels_first() {
    let w = vals(4 * 3 * 9, 1);
    let fc = vals(5 * 64, 2); // Gemm B with transB=1: (out, in)
    let nodes = vec![
        make_node("Conv", "/conv1/Conv", &["x", "conv1.weight", "conv1.bias"], &["/conv1/Conv_output_0"], vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("pads", &[1, 1, 1, 1])]),
        make_node("Relu", "/relu/Relu", &["/conv1/Conv_output_0"], &["/relu/Relu_output_0"], vec![]),
        make_node("MaxPool", "/pool/MaxPool", &["/relu/Relu_output_0"], &["/pool/MaxPool_output_0"], vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])]),
        make_node("Flatten", "/Flatten", &["/pool/MaxPool_output_0"], &["/Flatten_output_0"], vec![attr_int("axis", 1)]),
        make_node("Gemm", "/fc/Gemm", &["/Flatten_output_0", "fc.weight", "fc.bias"], &["logits"], vec![attr_int("transB", 1), attr_float("alpha", 1.0), attr_float("beta", 1.0)]),
    ];
    let inits = vec![
        make_tensor_f32("conv1.weight", &[4, 3, 3, 3], &w),
        make_tensor_f32("conv1.bias", &[4], &[0.1, 0.2, 0.3, 0.4]),
        make_tensor_f32("fc.weight", &[5, 64], &fc),
        make_tensor_f32("fc.bias", &[5], &[1.0; 5]),
    ];
    let g = ok(&model_bytes(nodes, inits, &[3, 8, 8], "logits", 17));
    assert_eq!(g.layout, Layout::ChannelsFirst);
    assert_eq!(kinds(&g), ["Input", "Conv2D", "Activation", "MaxPool", "Reshape", "Dense"]);
    let layers: Vec<&str> = g.nodes.iter().map(|n| n.layer.as_str()).collect();
    assert_eq!(layers, ["x", "/conv1", "/relu", "/pool", "/Flatten", "/fc"]);
    assert_eq!(conv_of(&g, 1).activation, None, "a separate ReLU module stays separate");
    let d = dense_of(&g, 5);
    assert_eq!(d.weight.shape, [64, 5]);
    assert_eq!(d.weight.data[7 * 5 + 3], fc[3 * 64 + 7], "transB transposes (out, in) to (in, out)");
    assert_eq!(d.bias.as_ref().unwrap().data, [1.0; 5]);
}

#[test]
fn conv_auto_pad() {
    // 1-D conv: length 7, kernel 4, stride 2 → SAME output ceil(7/2) = 4, total pad (4-1)*2+4-7 = 3.
    let make = |auto_pad: &str| {
        let nodes = vec![make_node("Conv", "c/Conv", &["x", "W"], &["y"], vec![attr_string("auto_pad", auto_pad), attr_ints("strides", &[2])])];
        ok(&model_bytes(nodes, vec![make_tensor_f32("W", &[5, 2, 4], &vals(40, 3))], &[2, 7], "y", 17))
    };
    let upper = make("SAME_UPPER");
    assert_eq!((conv_of(&upper, 1).pads_begin.clone(), conv_of(&upper, 1).pads_end.clone()), (vec![1], vec![2]));
    assert_eq!(upper.output_shape(), [5, 4]);
    assert_eq!(kinds(&upper), ["Input", "Conv1D"]);
    let lower = make("SAME_LOWER");
    assert_eq!((conv_of(&lower, 1).pads_begin.clone(), conv_of(&lower, 1).pads_end.clone()), (vec![2], vec![1]));
    let valid = make("VALID");
    assert_eq!(conv_of(&valid, 1).pads_begin, [0]);
    assert_eq!(valid.output_shape(), [5, 2]);
    // 3-D convolutions are accepted too.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W"], &["y"], vec![attr_ints("dilations", &[1, 2, 1]), attr_int("group", 2)])];
    let g = ok(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 1, 2, 2, 2], &vals(32, 3))], &[2, 5, 6, 7], "y", 17));
    assert_eq!(g.output_shape(), [4, 4, 4, 6]);
    assert_eq!(kinds(&g), ["Input", "ConvND"]);
}

#[test]
fn bias_adds_fold_into_kernels() {
    // Conv without bias + Add of a (1, C, 1, 1) constant (PyTorch-style) → conv bias.
    let nodes = vec![
        make_node("Conv", "c/Conv", &["x", "W"], &["h"], vec![]),
        make_node("Add", "c/Add", &["h", "B"], &["y"], vec![]),
    ];
    let inits = vec![make_tensor_f32("W", &[2, 3, 1, 1], &vals(6, 1)), make_tensor_f32("B", &[1, 2, 1, 1], &[0.5, -0.5])];
    let g = ok(&model_bytes(nodes, inits, &[3, 4, 4], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Conv2D"]);
    assert_eq!(conv_of(&g, 1).bias.as_ref().unwrap().data, [0.5, -0.5]);
    // Conv with a bias + another (C,1,1) Add → the sum.
    let nodes = vec![
        make_node("Conv", "c/Conv", &["x", "W", "B0"], &["h"], vec![]),
        make_node("Add", "c/Add", &["B", "h"], &["y"], vec![]),
    ];
    let inits = vec![make_tensor_f32("W", &[2, 3, 1, 1], &vals(6, 1)), make_tensor_f32("B0", &[2], &[1.0, 1.0]), make_tensor_f32("B", &[2, 1, 1], &[0.5, -0.5])];
    let g = ok(&model_bytes(nodes, inits, &[3, 4, 4], "y", 17));
    assert_eq!(conv_of(&g, 1).bias.as_ref().unwrap().data, [1.5, 0.5]);
    // MatMul + Add of a (1, N) bias.
    let nodes = vec![make_node("MatMul", "d/MatMul", &["x", "W"], &["h"], vec![]), make_node("Add", "d/BiasAdd", &["h", "B"], &["y"], vec![])];
    let inits = vec![make_tensor_f32("W", &[4, 3], &vals(12, 1)), make_tensor_f32("B", &[1, 3], &[1.0, 2.0, 3.0])];
    let g = ok(&model_bytes(nodes, inits, &[4], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Dense"]);
    assert_eq!(dense_of(&g, 1).bias.as_ref().unwrap().data, [1.0, 2.0, 3.0]);
    // A (C,) constant added to a conv output broadcasts along the last (spatial) axis: not a bias.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W"], &["h"], vec![]), make_node("Add", "c/Add", &["h", "B"], &["y"], vec![])];
    let inits = vec![make_tensor_f32("W", &[2, 3, 1, 1], &vals(6, 1)), make_tensor_f32("B", &[2], &[0.5, -0.5])];
    assert!(err(&model_bytes(nodes, inits, &[3, 4, 4], "y", 17)).contains("constant"));
    // A MatMul output read twice keeps its Add separate: a per-channel shift of its own.
    let nodes = vec![
        make_node("MatMul", "d/MatMul", &["x", "W"], &["h"], vec![]),
        make_node("Add", "d/BiasAdd", &["h", "B"], &["b"], vec![]),
        make_node("Add", "res/add", &["h", "b"], &["y"], vec![]),
    ];
    let inits = vec![make_tensor_f32("W", &[4, 3], &vals(12, 1)), make_tensor_f32("B", &[3], &[1.0, 2.0, 3.0])];
    let g = ok(&model_bytes(nodes, inits, &[4], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Dense", "Affine", "Add"]);
    assert!(dense_of(&g, 1).bias.is_none());
}

#[test]
fn gemm_alpha_beta_and_c_shapes() {
    let b = vals(12, 4);
    let nodes = vec![make_node("Gemm", "g/Gemm", &["x", "B", "C"], &["y"], vec![attr_float("alpha", 2.0), attr_float("beta", 0.5)])];
    let inits = vec![make_tensor_f32("B", &[4, 3], &b), make_tensor_f32("C", &[1, 3], &[2.0, 4.0, 6.0])];
    let g = ok(&model_bytes(nodes, inits, &[4], "y", 11));
    let d = dense_of(&g, 1);
    assert_eq!(d.weight.data, b.iter().map(|v| v * 2.0).collect::<Vec<_>>());
    assert_eq!(d.bias.as_ref().unwrap().data, [1.0, 2.0, 3.0]);
    // A scalar C broadcasts.
    let nodes = vec![make_node("Gemm", "g/Gemm", &["x", "B", "C"], &["y"], vec![])];
    let inits = vec![make_tensor_f32("B", &[4, 3], &b), make_tensor_f32("C", &[], &[7.0])];
    assert_eq!(dense_of(&ok(&model_bytes(nodes, inits, &[4], "y", 11)), 1).bias.as_ref().unwrap().data, [7.0; 3]);
    // A per-row C (batch-dependent) cannot be a bias.
    let nodes = vec![make_node("Gemm", "g/Gemm", &["x", "B", "C"], &["y"], vec![])];
    let inits = vec![make_tensor_f32("B", &[4, 3], &b), make_tensor_f32("C", &[2, 3], &[0.0; 6])];
    assert!(err(&model_bytes(nodes, inits, &[4], "y", 11)).contains("broadcast"));
}

#[test]
fn activation_fusion_follows_layers() {
    let acts = [
        ("Sigmoid", vec![], Activation::Sigmoid),
        ("Tanh", vec![], Activation::Tanh),
        ("Softplus", vec![], Activation::Softplus),
        ("Selu", vec![], Activation::Selu),
        ("Gelu", vec![], Activation::Gelu),
        ("HardSwish", vec![], Activation::HardSwish),
        ("LeakyRelu", vec![attr_float("alpha", 0.3)], Activation::LeakyRelu(0.3)),
        ("Elu", vec![], Activation::Elu(1.0)),
        ("HardSigmoid", vec![attr_float("alpha", 0.25)], Activation::HardSigmoid { alpha: 0.25, beta: 0.5 }),
        ("Clip", vec![attr_float("min", 0.0), attr_float("max", 6.0)], Activation::Clip { min: 0.0, max: 6.0 }),
    ];
    for (op, attrs, act) in acts {
        // Same layer (Keras Dense(activation=...)): fused.
        let nodes = vec![make_node("MatMul", "m/d/MatMul", &["x", "W"], &["h"], vec![]), make_node(op, &format!("m/d/{op}"), &["h"], &["y"], attrs.clone())];
        let g = ok(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 3], &vals(12, 1))], &[4], "y", 11));
        assert_eq!(kinds(&g), ["Input", "Dense"], "{op}");
        assert_eq!(dense_of(&g, 1).activation, Some(act.clone()), "{op}");
        // Another layer: separate.
        let nodes = vec![make_node("MatMul", "m/d/MatMul", &["x", "W"], &["h"], vec![]), make_node(op, &format!("m/act/{op}"), &["h"], &["y"], attrs)];
        let g = ok(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 3], &vals(12, 1))], &[4], "y", 11));
        assert_eq!(g.nodes[2].op, Op::Activation(act), "{op}");
        assert_eq!(g.nodes[2].layer, "m/act");
    }
    // Clip bounds as inputs (opset >= 11), one of them left out.
    let nodes = vec![make_node("Clip", "c/Clip", &["x", "", "hi"], &["y"], vec![])];
    let g = ok(&model_bytes(nodes, vec![make_tensor_f32("hi", &[], &[6.0])], &[4], "y", 13));
    assert_eq!(g.nodes[1].op, Op::Activation(Activation::Clip { min: f32::NEG_INFINITY, max: 6.0 }));
    // An activation read by two nodes is not fused.
    let nodes = vec![
        make_node("MatMul", "d/MatMul", &["x", "W"], &["h"], vec![]),
        make_node("Relu", "d/Relu", &["h"], &["r"], vec![]),
        make_node("Add", "add/add", &["h", "r"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 4], &vals(16, 1))], &[4], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Dense", "Activation", "Add"]);
}

#[test]
fn add_chains_of_one_layer_merge() {
    let inits = || ["Wa", "Wb", "Wc"].iter().enumerate().map(|(i, n)| make_tensor_f32(n, &[4, 4], &vals(16, i as u64))).collect::<Vec<_>>();
    let nodes = |second_layer: &str| {
        vec![
            make_node("MatMul", "a/MatMul", &["x", "Wa"], &["a"], vec![]),
            make_node("MatMul", "b/MatMul", &["x", "Wb"], &["b"], vec![]),
            make_node("MatMul", "c/MatMul", &["x", "Wc"], &["c"], vec![]),
            make_node("Add", "m/add/add", &["a", "b"], &["ab"], vec![]),
            make_node("Add", &format!("{second_layer}/add_1"), &["ab", "c"], &["y"], vec![]),
        ]
    };
    // Keras Add()([a, b, c]) exports as chained Adds of one layer: one 3-input Add.
    let g = ok(&model_bytes(nodes("m/add"), inits(), &[4], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Dense", "Dense", "Dense", "Add"]);
    assert_eq!(g.nodes[4].inputs, [1, 2, 3]);
    // Adds of different layers stay separate.
    let g = ok(&model_bytes(nodes("m/other"), inits(), &[4], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Dense", "Dense", "Dense", "Add", "Add"]);
    // Sum is an n-ary Add.
    let nodes = vec![make_node("Relu", "r/Relu", &["x"], &["r"], vec![]), make_node("Sum", "s/Sum", &["x", "r", "x"], &["y"], vec![])];
    let g = ok(&model_bytes(nodes, vec![], &[4], "y", 17));
    assert_eq!(g.nodes[2].inputs, [0, 1, 0]);
}

#[test]
fn global_pools_keep_onnx_shapes() {
    let nodes = vec![make_node("GlobalAveragePool", "gap/GlobalAveragePool", &["x"], &["y"], vec![])];
    let g = ok(&model_bytes(nodes, vec![], &[3, 4, 5], "y", 17));
    assert_eq!(kinds(&g), ["Input", "GlobalAvgPool", "Reshape"]);
    assert_eq!(g.output_shape(), [3, 1, 1]);
    assert_eq!(g.nodes[2].layer, "gap");
    // Followed by Flatten (PyTorch) it collapses to the IR's (C,).
    let nodes = vec![
        make_node("GlobalMaxPool", "gmp/GlobalMaxPool", &["x"], &["p"], vec![]),
        make_node("Flatten", "flat/Flatten", &["p"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![], &[3, 4, 5], "y", 17));
    assert_eq!(kinds(&g), ["Input", "GlobalMaxPool"]);
    assert_eq!(g.output_shape(), [3]);
}

#[test]
fn pools() {
    let nodes = vec![make_node(
        "AveragePool",
        "p/AveragePool",
        &["x"],
        &["y"],
        vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1]), attr_int("count_include_pad", 1), attr_int("ceil_mode", 1)],
    )];
    let g = ok(&model_bytes(nodes, vec![], &[2, 6, 6], "y", 17));
    let Op::AvgPool(p) = &g.nodes[1].op else { panic!() };
    assert!(p.count_include_pad && p.ceil_mode);
    assert_eq!(g.output_shape(), [2, 4, 4]);
    // MaxPool with an unused indices output; SAME_UPPER.
    let nodes = vec![make_node("MaxPool", "p/MaxPool", &["x"], &["y", "idx"], vec![attr_ints("kernel_shape", &[2]), attr_ints("strides", &[2]), attr_string("auto_pad", "SAME_UPPER")])];
    let g = ok(&model_bytes(nodes, vec![], &[2, 7], "y", 12));
    let Op::MaxPool(p) = &g.nodes[1].op else { panic!() };
    assert_eq!((p.pads_begin.as_slice(), p.pads_end.as_slice()), (&[0][..], &[1][..]));
    assert_eq!(g.output_shape(), [2, 4]);
}

#[test]
fn layout_ops() {
    // Reshape with 0 (copy) and -1 (infer); the batch entry may be 0, -1 or the fixed batch.
    for first in [0, -1] {
        let nodes = vec![make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![])];
        let target: Vec<i64> = if first == 0 { vec![0, 0, -1] } else { vec![-1, 2, 12] };
        let g = ok(&model_bytes(nodes, vec![i64s("s", &target)], &[2, 3, 4], "y", 17));
        assert_eq!(g.output_shape(), [2, 12]);
    }
    // Squeeze / Unsqueeze: axes as attribute (opset 11) or input (opset 13), negative axes.
    let nodes = vec![
        make_node("Unsqueeze", "u/Unsqueeze", &["x"], &["u"], vec![attr_ints("axes", &[1, -1])]),
        make_node("Squeeze", "s/Squeeze", &["u"], &["y"], vec![attr_ints("axes", &[-1])]),
    ];
    let g = ok(&model_bytes(nodes, vec![], &[3, 4], "y", 11));
    assert_eq!(g.output_shape(), [1, 3, 4]);
    assert_eq!(kinds(&g), ["Input", "Reshape"], "reshape of a reshape collapses");
    let nodes = vec![
        make_node("Unsqueeze", "u/Unsqueeze", &["x", "a"], &["u"], vec![]),
        make_node("Relu", "r/Relu", &["u"], &["r"], vec![]),
        make_node("Squeeze", "s/Squeeze", &["r"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![i64s("a", &[2])], &[3, 4], "y", 13));
    assert_eq!(g.nodes[1].shape, [3, 1, 4]);
    assert_eq!(g.output_shape(), [3, 4]);
    // Transpose, Pad (inputs, opset 11; attributes, opset 2), Concat with a negative axis.
    let nodes = vec![
        make_node("Transpose", "t/Transpose", &["x"], &["t"], vec![attr_ints("perm", &[0, 2, 1])]),
        make_node("Pad", "p/Pad", &["t", "pads", "v"], &["p"], vec![]),
        make_node("Concat", "c/Concat", &["p", "p"], &["y"], vec![attr_int("axis", -1)]),
    ];
    let inits = vec![i64s("pads", &[0, 1, 0, 0, 0, 2]), make_tensor_f32("v", &[], &[0.5])];
    let g = ok(&model_bytes(nodes, inits, &[3, 4], "y", 13));
    assert_eq!(g.nodes[2].op, Op::Pad { begin: vec![1, 0], end: vec![0, 2], mode: PadMode::Constant(0.5) });
    assert_eq!(g.nodes[3].op, Op::Concat { axis: 1 });
    assert_eq!(g.output_shape(), [5, 10]);
    let nodes = vec![make_node("Pad", "p/Pad", &["x"], &["y"], vec![attr_ints("pads", &[0, 1, 0, 1]), attr_float("value", 2.0)])];
    let g = ok(&model_bytes(nodes, vec![], &[3], "y", 2));
    assert_eq!(g.nodes[1].op, Op::Pad { begin: vec![1], end: vec![1], mode: PadMode::Constant(2.0) });
    // Dropout and Identity are no-ops.
    let nodes = vec![make_node("Dropout", "d/Dropout", &["x"], &["d", "mask"], vec![]), make_node("Identity", "i/Identity", &["d"], &["y"], vec![])];
    let g = ok(&model_bytes(nodes, vec![], &[3], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Identity", "Identity"]);
}

/// PyTorch idioms beyond Keras': reflect and edge Pads (pads computed by torch.onnx's integer constant chain),
/// InstanceNormalization (InstanceNorm, GroupNorm), DepthToSpace (PixelShuffle) and SpaceToDepth; checked by
/// value through the reference forward pass.
#[test]
fn pytorch_pads_instance_norm_and_depth_to_space() {
    let t = |shape: &[usize], seed: u64| Tensor::new(shape.to_vec(), vals(shape.iter().product(), seed)).unwrap();
    let at = |t: &Tensor, idx: &[usize]| t.data[idx.iter().zip(&t.shape).fold(0, |acc, (&i, &d)| acc * d + i)];
    // nn.ReflectionPad2d((1, 2, 3, 4)) as torch.onnx (opset 13) writes its pads: PyTorch's (left, right, top,
    // bottom) list, zeros for N and C, paired, reversed, transposed and flattened into ONNX's begins-then-ends.
    let fold = |mode: &str| {
        vec![
            make_node("ConstantOfShape", "/pad/ConstantOfShape", &["four"], &["zeros"], vec![attr_tensor("value", make_tensor_i64("", &[1], &[0]))]),
            make_node("Concat", "/pad/Concat", &["torch_pads", "zeros"], &["all"], vec![attr_int("axis", 0)]),
            make_node("Reshape", "/pad/Reshape", &["all", "pairs"], &["paired"], vec![]),
            make_node("Slice", "/pad/Slice", &["paired", "start", "end", "axis0", "back"], &["reversed"], vec![]),
            make_node("Transpose", "/pad/Transpose", &["reversed"], &["ends_apart"], vec![attr_ints("perm", &[1, 0])]),
            make_node("Reshape", "/pad/Reshape_1", &["ends_apart", "flat"], &["onnx_pads"], vec![]),
            make_node("Cast", "/pad/Cast", &["onnx_pads"], &["pads"], vec![attr_int("to", 7)]),
            make_node("Pad", "/pad/Pad", &["x", "pads"], &["y"], vec![attr_string("mode", mode)]),
        ]
    };
    let inits = || {
        vec![
            i64s("four", &[4]),
            i64s("torch_pads", &[1, 2, 3, 4]),
            i64s("pairs", &[-1, 2]),
            i64s("start", &[-1]),
            i64s("end", &[-i64::MAX]),
            i64s("axis0", &[0]),
            i64s("back", &[-1]),
            i64s("flat", &[-1]),
        ]
    };
    let x = t(&[2, 5, 6], 3);
    for (mode, want) in [("reflect", PadMode::Reflect), ("edge", PadMode::Edge)] {
        let g = ok(&model_bytes(fold(mode), inits(), &[2, 5, 6], "y", 13));
        assert_eq!(kinds(&g), ["Input", "Pad"]);
        assert_eq!(g.nodes[1].op, Op::Pad { begin: vec![0, 3, 1], end: vec![0, 4, 2], mode: want });
        let y = forward(&g, &x);
        assert_eq!(y.shape, [2, 12, 9]);
        // Row 0 of the output is input row 3 (reflect) or 0 (edge); column 8 is input column 3 or 5.
        let (r0, c8) = if want == PadMode::Reflect { (3, 3) } else { (0, 5) };
        assert_eq!(at(&y, &[1, 0, 1]), at(&x, &[1, r0, 0]));
        assert_eq!(at(&y, &[1, 5, 8]), at(&x, &[1, 2, c8]));
        assert_eq!(at(&y, &[0, 4, 3]), at(&x, &[0, 1, 2]), "interior");
    }
    // Reflection needs fewer pads than values on the axis.
    let wide = vec![make_node("Pad", "p/Pad", &["x", "pads"], &["y"], vec![attr_string("mode", "reflect")])];
    let e = err(&model_bytes(wide, vec![i64s("pads", &[0, 0, 5, 0, 0, 0])], &[2, 5], "y", 13));
    assert!(e.contains("p/Pad") && e.contains("Reflect padding of 5 on an axis of 5"), "{e}");

    // InstanceNormalization: per sample and channel over the spatial axes, then the channel's scale and bias.
    let nodes = vec![make_node("InstanceNormalization", "/norm/InstanceNormalization", &["x", "s", "b"], &["y"], vec![attr_float("epsilon", 1e-3)])];
    let inits = vec![make_tensor_f32("s", &[2], &[2.0, -0.5]), make_tensor_f32("b", &[2], &[0.25, 1.0])];
    let g = ok(&model_bytes(nodes, inits, &[2, 3, 4], "y", 13));
    assert_eq!(kinds(&g), ["Input", "LayerNorm", "Affine"]);
    let x = t(&[2, 3, 4], 5);
    let y = forward(&g, &x);
    for c in 0..2 {
        let plane = &x.data[c * 12..(c + 1) * 12];
        let mean = plane.iter().sum::<f32>() / 12.0;
        let var = plane.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 12.0;
        let (s, b) = ([2.0, -0.5][c], [0.25, 1.0][c]);
        for (k, v) in plane.iter().enumerate() {
            let want = (v - mean) / (var + 1e-3).sqrt() * s + b;
            assert!((y.data[c * 12 + k] - want).abs() < 1e-5, "channel {c} value {k}");
        }
    }
    let nodes = vec![make_node("InstanceNormalization", "/gn/InstanceNormalization", &["x", "one", "zero"], &["y"], vec![])];
    let inits = vec![make_tensor_f32("one", &[2], &[1.0; 2]), make_tensor_f32("zero", &[2], &[0.0; 2])];
    assert_eq!(kinds(&ok(&model_bytes(nodes, inits, &[2, 12], "y", 13))), ["Input", "LayerNorm"], "GroupNorm's unit scale");

    // DepthToSpace in both modes and SpaceToDepth: out[c, h·b + i, w·b + j] against the input channel each
    // mode names.
    let x = t(&[8, 2, 3], 7);
    for mode in ["CRD", "DCR"] {
        let nodes = vec![make_node("DepthToSpace", "/ps/DepthToSpace", &["x"], &["y"], vec![attr_int("blocksize", 2), attr_string("mode", mode)])];
        let g = ok(&model_bytes(nodes, vec![], &[8, 2, 3], "y", 13));
        assert_eq!(kinds(&g), ["Input", "Reshape", "Transpose", "Reshape"]);
        let y = forward(&g, &x);
        assert_eq!(y.shape, [2, 4, 6]);
        for (c, h, w, i, j) in [(0, 0, 0, 1, 0), (1, 1, 2, 0, 1), (1, 0, 1, 1, 1)] {
            let src = if mode == "CRD" { c * 4 + i * 2 + j } else { (i * 2 + j) * 2 + c };
            assert_eq!(at(&y, &[c, h * 2 + i, w * 2 + j]), at(&x, &[src, h, w]), "{mode} {c} {h} {w} {i} {j}");
        }
    }
    let x = t(&[2, 4, 6], 9);
    let nodes = vec![make_node("SpaceToDepth", "/pu/SpaceToDepth", &["x"], &["y"], vec![attr_int("blocksize", 2)])];
    let y = forward(&ok(&model_bytes(nodes, vec![], &[2, 4, 6], "y", 13)), &x);
    assert_eq!(y.shape, [8, 2, 3]);
    assert_eq!(at(&y, &[(2 + 1) * 2 + 1, 1, 2]), at(&x, &[1, 3, 5]));
    let odd = vec![make_node("DepthToSpace", "/ps/DepthToSpace", &["x"], &["y"], vec![attr_int("blocksize", 2)])];
    assert!(err(&model_bytes(odd, vec![], &[6, 2, 3], "y", 13)).contains("6 channels are not a multiple of blocksize² = 4"));
}

#[test]
fn constants_and_initializer_encodings() {
    // Reshape target from a Constant node (tensor value, and value_ints), weights as float_data, an int64
    // shape as int64_data, and an Identity of a weight (tf2onnx leaves those).
    let shape = TensorProto { dims: vec![2], data_type: Some(DataType::Int64 as i32), int64_data: vec![0, -1], ..Default::default() };
    let w = TensorProto { name: Some("W".into()), dims: vec![6, 2], data_type: Some(DataType::Float as i32), float_data: vals(12, 5), ..Default::default() };
    let nodes = vec![
        make_node("Constant", "k/Constant", &[], &["s"], vec![attr_tensor("value", shape)]),
        make_node("Reshape", "r/Reshape", &["x", "s"], &["f"], vec![]),
        make_node("Identity", "w/Identity", &["W"], &["W2"], vec![]),
        make_node("MatMul", "d/MatMul", &["f", "W2"], &["h"], vec![]),
        make_node("Constant", "k2/Constant", &[], &["s2"], vec![attr_ints("value_ints", &[0, 1, 2])]),
        make_node("Reshape", "r2/Reshape", &["h", "s2"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![w], &[2, 3], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Reshape", "Dense", "Reshape"]);
    assert_eq!(dense_of(&g, 2).weight.data, vals(12, 5));
    assert_eq!(g.output_shape(), [1, 2]);
    // float64 weights are narrowed.
    let w = TensorProto { name: Some("W".into()), dims: vec![2, 1], data_type: Some(DataType::Double as i32), double_data: vec![0.5, 0.25], ..Default::default() };
    let g = ok(&model_bytes(vec![make_node("MatMul", "d/MatMul", &["x", "W"], &["y"], vec![])], vec![w], &[2], "y", 17));
    assert_eq!(dense_of(&g, 1).weight.data, [0.5, 0.25]);
}

#[test]
fn dead_branches_and_unnamed_nodes() {
    // Nodes the output does not depend on are skipped, even unsupported ones; unnamed nodes get names.
    let nodes = vec![
        make_node("Sin", "dead/Sin", &["x"], &["s"], vec![]),
        make_node("Relu", "", &["x"], &["r"], vec![]),
        make_node("Sigmoid", "", &["r"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![], &[3], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Activation", "Activation"]);
    assert_eq!(g.nodes[1].name, "Relu_1");
    assert_eq!(g.nodes[2].name, "Sigmoid_2");
    assert_eq!(g.layout, Layout::Unknown);
    // An output that is the input itself.
    let g = ok(&model_bytes(vec![make_node("Relu", "r", &["x"], &["r"], vec![])], vec![], &[3], "x", 17));
    assert_eq!(g.nodes.len(), 1);
}

#[test]
fn forward_of_imported_conv_matches_by_hand() {
    // One 1-D conv with SAME_UPPER padding, checked numerically through the reference forward pass.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W", "B"], &["y"], vec![attr_string("auto_pad", "SAME_UPPER")])];
    let inits = vec![make_tensor_f32("W", &[1, 1, 2], &[1.0, 10.0]), make_tensor_f32("B", &[1], &[0.5])];
    let g = ok(&model_bytes(nodes, inits, &[1, 3], "y", 17));
    let y = forward(&g, &Tensor::new(vec![1, 3], vec![1.0, 2.0, 3.0]).unwrap());
    // Pads (0, 1): windows [1,2], [2,3], [3,0].
    assert_eq!(y.data, [21.5, 32.5, 3.5]);
}

#[test]
fn per_channel_affine_ops_become_batchnorm_or_affine() {
    // tf2onnx's lowering of a Keras BN on channels-last data (N, L, C): Mul then Add of (C,) constants, one layer.
    let nodes = vec![
        make_node("Mul", "m/bn/batchnorm/mul_1", &["x", "a"], &["t"], vec![]),
        make_node("Add", "m/bn/batchnorm/add_1", &["t", "b"], &["y"], vec![]),
    ];
    let inits = vec![make_tensor_f32("a", &[3], &[2.0, -1.0, 0.5]), make_tensor_f32("b", &[3], &[1.0, 0.0, -3.0])];
    let g = ok(&model_bytes(nodes, inits, &[2, 3], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Transpose", "BatchNorm", "Transpose"], "channels-last: transposed around the BN");
    let Op::BatchNorm(bn) = &g.nodes[2].op else { unreachable!() };
    assert_eq!((bn.gamma.data.as_slice(), bn.beta.data.as_slice()), ([2.0, -1.0, 0.5].as_slice(), [1.0, 0.0, -3.0].as_slice()));
    assert_eq!((bn.mean.data[0], bn.var.data[0], bn.epsilon), (0.0, 1.0, 0.0));
    let y = forward(&g, &Tensor::new(vec![2, 3], vec![1.0, 2.0, 4.0, -1.0, 0.0, 2.0]).unwrap());
    assert_eq!(y.data, [3.0, -2.0, -1.0, -1.0, 0.0, -2.0]);

    // PyTorch-style in-model normalisation on NCHW: (x - mean) / std with (C,1,1) constants: two Affines (not a
    // BN layer: relevance passes through them unchanged, as signxai does for Keras Rescaling/Normalization).
    let nodes = vec![
        make_node("Sub", "/norm/Sub", &["x", "mu"], &["c"], vec![]),
        make_node("Div", "/norm/Div", &["c", "sd"], &["y"], vec![]),
    ];
    let inits = vec![make_tensor_f32("mu", &[2, 1, 1], &[1.0, -1.0]), make_tensor_f32("sd", &[2, 1, 1], &[2.0, 4.0])];
    let g = ok(&model_bytes(nodes, inits, &[2, 1, 2], "y", 17));
    assert_eq!(kinds(&g), ["Input", "Affine", "Affine"]);
    let y = forward(&g, &Tensor::new(vec![2, 1, 2], vec![3.0, 5.0, 3.0, -1.0]).unwrap());
    assert_eq!(y.data, [1.0, 2.0, 1.0, 0.0]);
    // c - x and a scalar factor.
    let nodes = vec![
        make_node("Sub", "s", &["one", "x"], &["c"], vec![]),
        make_node("Mul", "k", &["c", "half"], &["y"], vec![]),
    ];
    let inits = vec![make_tensor_f32("one", &[], &[1.0]), make_tensor_f32("half", &[], &[0.5])];
    let g = ok(&model_bytes(nodes, inits, &[3], "y", 17));
    let y = forward(&g, &Tensor::new(vec![3], vec![1.0, 3.0, -1.0]).unwrap());
    assert_eq!(y.data, [0.0, -1.0, 1.0]);
}

#[test]
fn affine_ops_refuse_what_is_not_per_channel() {
    let one = |op: &str, inputs: &[&str], c: TensorProto| {
        err(&model_bytes(vec![make_node(op, "n", inputs, &["y"], vec![])], vec![c], &[2, 3], "y", 17))
    };
    // (Mul and Sub of two computed tensors are Keras merges: `merges_of_computed_tensors_and_swish`.)
    let e = one("Div", &["x", "x"], make_tensor_f32("unused", &[1], &[1.0]));
    assert!(e.contains("'n'") && e.contains("two computed tensors"), "{e}");
    let e = one("Div", &["x", "z"], make_tensor_f32("z", &[3], &[1.0, 0.0, 2.0]));
    assert!(e.contains("divides by zero"), "{e}");
    let e = one("Mul", &["x", "full"], make_tensor_f32("full", &[2, 3], &[1.0; 6]));
    assert!(e.contains("'full'") && e.contains("not per-channel"), "{e}");
    let e = one("Div", &["k", "x"], make_tensor_f32("k", &[], &[1.0]));
    assert!(e.contains("dividing a constant by a tensor"), "{e}");
}

#[test]
fn conv_bias_after_squeeze_folds_into_the_conv() {
    // tf2onnx's Conv1D: Unsqueeze → Conv (1×k) → Squeeze → Add(bias): the bias is the conv's, not a shift layer.
    let w = vals(4 * 2 * 3, 5);
    let nodes = vec![
        make_node("Unsqueeze", "m/c/Conv1D/ExpandDims", &["x", "ax"], &["u"], vec![]),
        make_node("Conv", "m/c/Conv1D", &["u", "w"], &["cv"], vec![attr_ints("kernel_shape", &[1, 3])]),
        make_node("Squeeze", "m/c/Conv1D/Squeeze", &["cv", "ax"], &["sq"], vec![]),
        make_node("Add", "m/c/BiasAdd", &["sq", "b"], &["y"], vec![]),
    ];
    let inits = vec![
        make_tensor_i64("ax", &[1], &[2]),
        make_tensor_f32("w", &[4, 2, 1, 3], &w),
        make_tensor_f32("b", &[4, 1], &[0.5, -0.5, 1.0, 2.0]),
    ];
    let g = ok(&model_bytes(nodes.clone(), inits.clone(), &[2, 5], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Reshape", "Conv2D", "Reshape"]);
    assert_eq!(conv_of(&g, 2).bias.as_ref().unwrap().data, [0.5, -0.5, 1.0, 2.0]);
    // When the conv output is read elsewhere too, the Add stays a separate shift.
    let mut two = nodes;
    two.push(make_node("Add", "m/other", &["cv", "cv"], &["z"], vec![]));
    let g = ok(&model_bytes(two, inits, &[2, 5], "y", 13));
    assert!(conv_of(&g, 2).bias.is_none());
    assert_eq!(g.nodes[g.output].op.kind(), "Affine");
}

#[test]
fn keras_average_and_onnx_mean_become_mean() {
    // tf2onnx's Keras Average: Add, then a Mul by 1/k in the same layer.
    let nodes = vec![
        make_node("Relu", "m/a/Relu", &["x"], &["a"], vec![]),
        make_node("Sigmoid", "m/b/Sigmoid", &["x"], &["b"], vec![]),
        make_node("Add", "m/avg/add", &["a", "b"], &["s"], vec![]),
        make_node("Mul", "m/avg/truediv", &["s", "half"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes.clone(), vec![make_tensor_f32("half", &[], &[0.5])], &[3], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Activation", "Activation", "Mean"]);
    let y = forward(&g, &Tensor::new(vec![3], vec![-1.0, 0.0, 2.0]).unwrap());
    let want: Vec<f32> = [-1.0f32, 0.0, 2.0].iter().map(|&v| (v.max(0.0) + 1.0 / (1.0 + (-v).exp())) / 2.0).collect();
    for (a, b) in y.data.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // In another layer, or by another factor, it stays an Add and a scaling.
    let mut other = nodes.clone();
    other[3] = make_node("Mul", "m/scale/mul", &["s", "half"], &["y"], vec![]);
    assert_eq!(kinds(&ok(&model_bytes(other, vec![make_tensor_f32("half", &[], &[0.5])], &[3], "y", 13))), ["Input", "Activation", "Activation", "Add", "Affine"]);
    assert_eq!(kinds(&ok(&model_bytes(nodes, vec![make_tensor_f32("half", &[], &[0.25])], &[3], "y", 13))), ["Input", "Activation", "Activation", "Add", "Affine"]);
    // ONNX's own Mean.
    let nodes = vec![make_node("Relu", "r", &["x"], &["a"], vec![]), make_node("Mean", "mean", &["a", "x", "x"], &["y"], vec![])];
    let g = ok(&model_bytes(nodes, vec![], &[2], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Activation", "Mean"]);
    assert_eq!(forward(&g, &Tensor::new(vec![2], vec![-3.0, 3.0]).unwrap()).data, [-2.0, 3.0]);
}

#[test]
fn separable_conv_pairs_become_one_layer() {
    // tf2onnx's SeparableConv2D: a depthwise conv of layer `m/sep/separable_conv2d` feeding a 1x1 conv of `m/sep`.
    let dw = vals(2 * 9, 3);
    let pw = vals(4 * 2, 4);
    let pair = |first: &str, second: &str, second_attrs: Vec<relprop_onnx::proto::AttributeProto>, read_twice: bool| {
        let mut nodes = vec![
            make_node("Conv", first, &["x", "dw"], &["h"], vec![attr_ints("kernel_shape", &[3, 3]), attr_int("group", 2), attr_ints("pads", &[1, 1, 1, 1])]),
            make_node("Conv", second, &["h", "pw", "b"], &["z"], second_attrs),
            make_node("Relu", "m/sep/Relu", &["z"], &["y"], vec![]),
        ];
        if read_twice {
            nodes.push(make_node("Add", "m/add/add", &["y", "h2"], &["y2"], vec![]));
            nodes.push(make_node("Conv", "m/other/Conv2D", &["h", "pw"], &["h2"], vec![attr_ints("kernel_shape", &[1, 1])]));
            nodes.swap(3, 4);
        }
        let inits = vec![make_tensor_f32("dw", &[2, 1, 3, 3], &dw), make_tensor_f32("pw", &[4, 2, 1, 1], &pw), make_tensor_f32("b", &[4], &[0.1, -0.2, 0.3, 0.0])];
        model_bytes(nodes, inits, &[2, 5, 5], if read_twice { "y2" } else { "y" }, 13)
    };
    let one_by_one = || vec![attr_ints("kernel_shape", &[1, 1])];
    let sep = ok(&pair("m/sep/separable_conv2d/depthwise", "m/sep/separable_conv2d", one_by_one(), false));
    assert_eq!(kinds(&sep), ["Input", "Conv2D"]);
    let (node, Op::Conv(c)) = (&sep.nodes[1], &sep.nodes[1].op) else { panic!("a conv") };
    assert_eq!((node.layer.as_str(), node.shape.as_slice()), ("m/sep", &[4, 5, 5][..]));
    assert_eq!((c.weight.shape.as_slice(), c.groups, c.activation.clone()), (&[2, 1, 3, 3][..], 2, Some(Activation::Relu)));
    assert_eq!(c.pointwise.as_ref().map(|p| (p.shape.clone(), p.data.clone())), Some((vec![4, 2, 1, 1], pw.clone())));
    assert_eq!(c.bias.as_ref().map(|b| b.data.clone()), Some(vec![0.1, -0.2, 0.3, 0.0]));
    // The same function as DepthwiseConv2D then Conv2D 1x1 (two layers, each with a rule of its own).
    let two = ok(&pair("m/dw/depthwise", "m/pw/Conv2D", one_by_one(), false));
    assert_eq!(kinds(&two), ["Input", "Conv2D", "Conv2D", "Activation"]);
    let x = Tensor::new(vec![2, 5, 5], vals(50, 9)).unwrap();
    let (a, b) = (forward(&sep, &x), forward(&two, &x));
    assert!(a.data.iter().zip(&b.data).all(|(p, q)| (p - q).abs() <= 1e-6), "{:?} vs {:?}", a.data, b.data);
    // A second stage that is not pointwise, or a first stage read by another node: refused, naming both.
    let e = err(&pair("m/sep/separable_conv2d/depthwise", "m/sep/separable_conv2d", vec![attr_ints("kernel_shape", &[1, 1]), attr_ints("strides", &[2, 2])], false));
    assert!(e.contains("m/sep/separable_conv2d") && e.contains("pointwise") && e.contains("strides [2, 2]"), "{e}");
    let e = err(&pair("m/sep/separable_conv2d/depthwise", "m/sep/separable_conv2d", one_by_one(), true));
    assert!(e.contains("m/sep/separable_conv2d/depthwise") && e.contains("nothing else reads it"), "{e}");
    // tf2onnx puts a shape-keeping Reshape between the two stages of a strided SeparableConv (NASNet), and on a 1x1
    // plane sometimes a Reshape to (1, 1, C) and a Transpose back: still one layer. Layout nodes that change the
    // shape, or the order of the values, are refused.
    let through = |plane: i64, target: &[i64], perm: Option<&[i64]>| {
        let mut nodes = vec![
            make_node("Conv", "m/sep/separable_conv2d/depthwise", &["x", "dw"], &["h"], vec![attr_ints("kernel_shape", &[3, 3]), attr_int("group", 2), attr_ints("pads", &[1, 1, 1, 1])]),
            make_node("Reshape", "m/sep/separable_conv2d__7", &["h", "shape"], &["hr"], vec![]),
            make_node("Conv", "m/sep/separable_conv2d", &["hr", "pw", "b"], &["z"], one_by_one()),
        ];
        if let Some(p) = perm {
            nodes.insert(2, make_node("Transpose", "m/sep/separable_conv2d__8", &["hr"], &["ht"], vec![attr_ints("perm", p)]));
            nodes[3].input[0] = "ht".into();
        }
        let inits = vec![
            make_tensor_f32("dw", &[2, 1, 3, 3], &dw),
            make_tensor_f32("pw", &[4, 2, 1, 1], &pw),
            make_tensor_f32("b", &[4], &[0.1, -0.2, 0.3, 0.0]),
            make_tensor_i64("shape", &[4], target),
        ];
        model_bytes(nodes, inits, &[2, plane as usize, plane as usize], "z", 13)
    };
    for g in [ok(&through(5, &[-1, 2, 5, 5], None)), ok(&through(1, &[-1, 1, 1, 2], Some(&[0, 3, 1, 2])))] {
        assert_eq!(kinds(&g), ["Input", "Conv2D"]);
        assert!(matches!(&g.nodes[1].op, Op::Conv(c) if c.pointwise.is_some()));
    }
    for bad in [through(5, &[-1, 2, 25, 1], None), through(5, &[-1, 5, 5, 2], Some(&[0, 3, 1, 2]))] {
        let e = err(&bad);
        assert!(e.contains("change nothing"), "{e}");
    }
}

#[test]
fn slices_of_per_sample_axes() {
    let ints = |n: &str, v: &[i64]| make_tensor_i64(n, &[v.len()], v);
    let slice = |starts: &[i64], ends: &[i64], axes: Option<&[i64]>, steps: Option<&[i64]>| {
        let mut inputs = vec!["x", "s", "e"];
        let mut inits = vec![ints("s", starts), ints("e", ends)];
        if let Some(a) = axes {
            inputs.push("a");
            inits.push(ints("a", a));
        }
        if let Some(st) = steps {
            inputs.push("st");
            inits.push(ints("st", st));
        }
        model_bytes(vec![make_node("Slice", "crop/Slice", &inputs, &["y"], vec![])], inits, &[2, 4, 5], "y", 13)
    };
    // Keras Cropping2D((1, 0), (0, 1)) on NHWC-like (2, 4, 5): axes 2 and 3, negative end, clamped end.
    let g = ok(&slice(&[1, 0], &[i64::MAX, -1], Some(&[2, 3]), None));
    assert_eq!(g.nodes[1].op, Op::Slice { begin: vec![0, 1, 0], end: vec![2, 4, 4] });
    assert_eq!(g.nodes[1].shape, [2, 3, 4]);
    let x = Tensor::new(vec![2, 4, 5], (0..40).map(|v| v as f32).collect()).unwrap();
    let y = forward(&g, &x);
    assert_eq!(&y.data[..4], &[5.0, 6.0, 7.0, 8.0]);
    // The batch axis kept whole is fine; the whole window adds no node.
    assert_eq!(kinds(&ok(&slice(&[0, 0], &[i64::MAX, 9], Some(&[0, 1]), None))), ["Input"]);
    // Refused: cutting the batch, steps, empty windows, an axis twice.
    for (bytes, want) in [
        (slice(&[1], &[i64::MAX], Some(&[0]), None), "batch axis"),
        (slice(&[0], &[4], Some(&[2]), Some(&[2])), "only step 1"),
        (slice(&[3], &[2], Some(&[2]), None), "is empty"),
        (slice(&[0, 1], &[2, 3], Some(&[1, -3]), None), "sliced twice"),
    ] {
        let e = err(&bytes);
        assert!(e.contains("crop/Slice") && e.contains(want), "{want}: {e}");
    }
}

#[test]
fn spatial_reductions_are_global_pools() {
    let reduce = |op: &str, axes: &[i64], keep: i64, shape: &[usize]| {
        let nodes = vec![make_node(op, "r", &["x"], &["y"], vec![attr_ints("axes", axes), attr_int("keepdims", keep)])];
        model_bytes(nodes, vec![], shape, "y", 13)
    };
    // PyTorch's x.mean((2, 3)) on NCHW.
    let g = ok(&reduce("ReduceMean", &[2, 3], 0, &[2, 3, 2]));
    assert_eq!(kinds(&g), ["Input", "GlobalAvgPool"]);
    let x = Tensor::new(vec![2, 3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 12.0]).unwrap();
    assert_eq!(forward(&g, &x).data, [3.5, 2.0]);
    // Channels last (NHWC, axes 1 and 2), keepdims: transposed around the pool, (1, 1, C) out.
    let g = ok(&reduce("ReduceMax", &[-3, -2], 1, &[3, 2, 2]));
    assert_eq!(kinds(&g), ["Input", "Transpose", "GlobalMaxPool", "Reshape"]);
    assert_eq!(g.nodes[g.output].shape, [1, 1, 2]);
    // Not all spatial axes: refused.
    let e = err(&reduce("ReduceMean", &[2], 1, &[2, 3, 2]));
    assert!(e.contains("'r'") && e.contains("global pool"), "{e}");
}

/// Keras Dense on a rank-3 input as tf2onnx writes it (its reshape optimizer turns the computed targets into
/// constants): `Reshape(x, [-1, C])` merges the batch with the T rows, MatMul, `Reshape(·, [-1, T, U])`, then the
/// bias Add and the activation. relprop imports one Dense on the last axis with that bias and activation (as
/// signxai explains the Keras layer), and computes the same function.
#[test]
fn tf2onnx_tensordot_is_one_dense_on_the_last_axis() {
    let (t, c, u) = (4usize, 3usize, 5usize);
    let (w, b, w2) = (vals(c * u, 1), vals(u, 2), vals(t * u * 2, 3));
    let tensordot = |after: Vec<NodeProto>, out: &str, extra: Vec<TensorProto>| {
        let mut nodes = vec![
            make_node("Reshape", "model/dseq/Tensordot/Reshape", &["x", "s1"], &["m"], vec![]),
            make_node("MatMul", "model/dseq/Tensordot/MatMul", &["m", "W"], &["mm"], vec![]),
        ];
        nodes.extend(after);
        let mut inits = vec![i64s("s1", &[-1, c as i64]), make_tensor_f32("W", &[c, u], &w)];
        inits.extend(extra);
        model_bytes(nodes, inits, &[t, c], out, 13)
    };
    let g = ok(&tensordot(
        vec![
            make_node("Reshape", "model/dseq/Tensordot", &["mm", "s2"], &["td"], vec![]),
            make_node("Add", "model/dseq/BiasAdd", &["td", "b"], &["z"], vec![]),
            make_node("Relu", "model/dseq/Relu", &["z"], &["h"], vec![]),
            make_node("Reshape", "fl/Reshape", &["h", "s3"], &["f"], vec![]),
            make_node("MatMul", "out/MatMul", &["f", "W2"], &["y"], vec![]),
        ],
        "y",
        vec![i64s("s2", &[-1, t as i64, u as i64]), make_tensor_f32("b", &[u], &b), i64s("s3", &[-1, (t * u) as i64]), make_tensor_f32("W2", &[t * u, 2], &w2)],
    ));
    let denses: Vec<usize> = (0..g.nodes.len()).filter(|&i| matches!(g.nodes[i].op, Op::Dense(_))).collect();
    assert_eq!(denses.len(), 2, "{:?}", kinds(&g));
    let d = dense_of(&g, denses[0]);
    assert_eq!(d.bias.as_ref().map(|b| b.data.clone()), Some(b.clone()), "the bias belongs to the Dense");
    assert_eq!(d.activation, Some(Activation::Relu));
    assert_eq!(g.nodes[denses[0]].shape, [t, u]);
    assert_eq!(g.nodes[denses[0]].layer, "model/dseq", "the Keras layer, not its Tensordot scope");
    assert!(!kinds(&g).contains(&"BatchNorm"), "{:?}", kinds(&g));
    // Against the layer computed by hand.
    let x = vals(t * c, 4);
    let mut f = vec![0f32; t * u];
    for r in 0..t {
        for j in 0..u {
            let z: f32 = (0..c).map(|k| x[r * c + k] * w[k * u + j]).sum::<f32>() + b[j];
            f[r * u + j] = z.max(0.0);
        }
    }
    let y: Vec<f32> = (0..2).map(|o| (0..t * u).map(|i| f[i] * w2[i * 2 + o]).sum()).collect();
    let got = forward(&g, &Tensor::new(vec![t, c], x).unwrap());
    assert!(got.data.iter().zip(&y).all(|(a, e)| (a - e).abs() <= 1e-5 * (1.0 + e.abs())), "{:?} vs {y:?}", got.data);

    // The merged tensor anywhere but MatMul/Gemm/Reshape, or as the output, is refused with the reason.
    let e = err(&tensordot(vec![make_node("Transpose", "tr/Transpose", &["mm"], &["y"], vec![attr_ints("perm", &[1, 0])])], "y", vec![]));
    assert!(e.contains("batch merged with 4 rows") && e.contains("Transpose"), "{e}");
    let e = err(&tensordot(vec![], "mm", vec![]));
    assert!(e.contains("batch merged with 4 rows"), "{e}");
}

/// A node tf2onnx generated (`Relu__7`) takes its reader's layer even when a Shape node also reads it (the
/// Tensordot's computed target): a Shape only reads the size.
#[test]
fn generated_node_layer_ignores_shape_readers() {
    let nodes = vec![
        make_node("Relu", "Relu__7", &["x"], &["r"], vec![]),
        make_node("Shape", "model/dseq/Tensordot/Shape", &["r"], &["shp"], vec![]),
        make_node("Reshape", "model/dseq/Tensordot/Reshape", &["r", "s1"], &["m"], vec![]),
        make_node("MatMul", "model/dseq/Tensordot/MatMul", &["m", "W"], &["mm"], vec![]),
        make_node("Reshape", "model/dseq/Tensordot", &["mm", "s2"], &["y"], vec![]),
    ];
    let inits = vec![i64s("s1", &[-1, 3]), make_tensor_f32("W", &[3, 2], &vals(6, 1)), i64s("s2", &[-1, 4, 2])];
    let g = ok(&model_bytes(nodes, inits, &[4, 3], "y", 13));
    let relu = g.nodes.iter().find(|n| n.op.kind() == "Activation").expect("the Relu");
    assert_eq!(relu.layer, "model/dseq", "{:?}", g.nodes.iter().map(|n| (&n.name, &n.layer)).collect::<Vec<_>>());
}

/// A generated kernel node (`Conv__24`, tf2onnx's Conv3D without bias or activation) takes the layer of the
/// variable it reads, not its reader's (the next layer): else the two layers merge and `until_layer_idx` counts
/// one layer less (found by diffcheck on a Conv3D model, and on a DepthwiseConv2D with a multiplier).
#[test]
fn generated_kernel_node_takes_its_variables_layer() {
    let w = make_tensor_f32("m/c2/Conv2D/ReadVariableOp:0", &[2, 3, 1, 1], &vals(6, 2));
    let nodes = vec![
        make_node("Conv", "Conv__24", &["x", "m/c2/Conv2D/ReadVariableOp:0"], &["c"], vec![attr_ints("kernel_shape", &[1, 1])]),
        make_node("AveragePool", "m/ap/AvgPool", &["c"], &["y"], vec![attr_ints("kernel_shape", &[2, 2])]),
    ];
    let g = ok(&model_bytes(nodes, vec![w], &[3, 4, 4], "y", 13));
    let layers: Vec<&str> = g.nodes[1..].iter().map(|n| n.layer.as_str()).collect();
    assert_eq!(layers, ["m/c2", "m/ap"]);
    // With the variable folded into a constant (a DepthwiseConv2D with a multiplier before a BatchNorm): the
    // layer of the layout Transpose tf2onnx made for the conv's TF op.
    let w = make_tensor_f32("const_fold_opt__30", &[2, 3, 1, 1], &vals(6, 2));
    let nodes = vec![
        make_node("Transpose", "m/dw/depthwise__6", &["x"], &["t"], vec![attr_ints("perm", &[0, 3, 1, 2])]),
        make_node("Conv", "Conv__27", &["t", "const_fold_opt__30"], &["c"], vec![attr_ints("kernel_shape", &[1, 1])]),
        make_node("AveragePool", "m/ap/AvgPool", &["c"], &["y"], vec![attr_ints("kernel_shape", &[2, 2])]),
    ];
    let g = ok(&model_bytes(nodes, vec![w], &[4, 4, 3], "y", 13));
    let layers: Vec<&str> = g.nodes[1..].iter().map(|n| n.layer.as_str()).collect();
    assert_eq!(layers, ["m/dw", "m/dw", "m/ap"]);
}

/// `Max`/`Min` with a scalar constant (tf2onnx's `clip_by_value`, as in Keras' `hard_sigmoid`) are Clip
/// activations; with a per-channel constant they stay refused. Keras' ELU layer with α ≠ 1 (a select, lowered
/// to masks) is one ELU activation.
#[test]
fn clip_by_scalar_and_keras_elu_layer() {
    let hard_sigmoid = vec![
        make_node("Mul", "m/d/Mul", &["x", "a"], &["t"], vec![]),
        make_node("Add", "m/d/Add", &["t", "b"], &["u"], vec![]),
        make_node("Min", "m/d/clip_by_value/Minimum", &["u", "one"], &["v"], vec![]),
        make_node("Max", "m/d/clip_by_value", &["v", "zero"], &["y"], vec![]),
    ];
    let f = |n: &str, v: f32| make_tensor_f32(n, &[], &[v]);
    let g = ok(&model_bytes(hard_sigmoid.clone(), vec![f("a", 0.2), f("b", 0.5), f("one", 1.0), f("zero", 0.0)], &[4], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Affine", "Activation", "Activation"]);
    let x = Tensor::new(vec![4], vec![-4.0, -1.0, 0.5, 3.0]).unwrap();
    let want: Vec<f32> = x.data.iter().map(|&v| (0.2 * v + 0.5f32).clamp(0.0, 1.0)).collect();
    assert_eq!(forward(&g, &x).data, want);
    assert_eq!(want, [0.0, 0.3, 0.6, 1.0]);
    let e = err(&model_bytes(hard_sigmoid, vec![f("a", 0.2), f("b", 0.5), make_tensor_f32("one", &[4], &[1.0; 4]), f("zero", 0.0)], &[4], "y", 13));
    assert!(e.contains("with a constant"), "{e}");

    let elu = |alpha: f32, not_of_greater: bool| {
        let nodes = vec![
            make_node("Greater", "m/elu/Greater", &["x", "zero"], &["g"], vec![]),
            make_node("Not", "m/elu/SelectV2__1", &[if not_of_greater { "g" } else { "x" }], &["ng"], vec![]),
            make_node("Cast", "m/elu/SelectV2__2", &["ng"], &["cn"], vec![attr_int("to", 1)]),
            make_node("Cast", "m/elu/SelectV2__3", &["g"], &["cg"], vec![attr_int("to", 1)]),
            make_node("Elu", "m/elu/Elu", &["x"], &["e"], vec![]),
            make_node("Mul", "m/elu/mul", &["alpha", "e"], &["ae"], vec![]),
            make_node("Mul", "m/elu/SelectV2__4", &["ae", "cn"], &["p"], vec![]),
            make_node("Mul", "m/elu/SelectV2__5", &["cg", "e"], &["q"], vec![]),
            make_node("Add", "m/elu/SelectV2", &["q", "p"], &["y"], vec![]),
        ];
        model_bytes(nodes, vec![f("zero", 0.0), f("alpha", alpha)], &[4], "y", 13)
    };
    let g = ok(&elu(0.5, true));
    assert_eq!(kinds(&g), ["Input", "Activation"]);
    assert_eq!(g.nodes[1].op, Op::Activation(Activation::Elu(0.5)));
    assert_eq!(g.nodes[1].layer, "m/elu");
    // Not of something else: no ELU (and Greater is no layer relprop knows).
    assert!(err(&elu(0.5, false)).contains("'Greater'"));
}

#[test]
fn merges_of_computed_tensors_and_swish() {
    let relu = |name: &str, i: &str, o: &str| make_node("Relu", name, &[i], &[o], vec![]);
    let tanh = |name: &str, i: &str, o: &str| make_node("Tanh", name, &[i], &[o], vec![]);
    // Keras Multiply([a, b, c]) through tf2onnx: two chained Muls of one layer, read back as one node; then
    // Subtract, Maximum and Minimum of computed tensors.
    let nodes = vec![
        relu("m/a/Relu", "x", "a"),
        tanh("m/b/Tanh", "x", "b"),
        make_node("Mul", "m/mul/mul", &["a", "b"], &["ab"], vec![]),
        make_node("Mul", "m/mul/mul_1", &["ab", "x"], &["abx"], vec![]),
        make_node("Sub", "m/sub/sub", &["abx", "a"], &["s"], vec![]),
        make_node("Max", "m/max/Maximum", &["s", "b", "x"], &["mx"], vec![]),
        make_node("Min", "m/min/Minimum", &["mx", "a"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![], &[4], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Activation", "Activation", "Multiply", "Subtract", "Maximum", "Minimum"]);
    assert_eq!(g.nodes[3].inputs, [1, 2, 0], "one Multiply of a, b and x");
    let xv = [-1.5f32, 0.0, 0.5, 2.0];
    let y = forward(&g, &Tensor::new(vec![4], xv.to_vec()).unwrap());
    let want: Vec<f32> = xv
        .iter()
        .map(|&x| {
            let (a, b) = (x.max(0.0), x.tanh());
            (a * b * x - a).max(b).max(x).min(a)
        })
        .collect();
    assert_eq!(y.data, want);

    // A squeeze-and-excitation gate: (C, H, W) times (C, 1, 1); shapes that do not broadcast are refused.
    let se = |gate_shape: &[i64]| {
        let nodes = vec![
            make_node("GlobalAveragePool", "m/sq/Mean", &["x"], &["p"], vec![]),
            make_node("Sigmoid", "m/exc/Sigmoid", &["p"], &["gate"], vec![]),
            make_node("Reshape", "m/rs/Reshape", &["gate", "shape"], &["g"], vec![]),
            make_node("Mul", "m/scale/mul", &["x", "g"], &["y"], vec![]),
        ];
        model_bytes(nodes, vec![make_tensor_i64("shape", &[gate_shape.len()], gate_shape)], &[2, 3, 3], "y", 13)
    };
    let g = ok(&se(&[-1, 2, 1, 1]));
    let mul = g.nodes.last().unwrap();
    assert_eq!((mul.op.clone(), mul.shape.clone()), (Op::Merge(Merge::Multiply), vec![2, 3, 3]));
    let x = Tensor::new(vec![2, 3, 3], vals(18, 5)).unwrap();
    let y = forward(&g, &x);
    for c in 0..2 {
        let mean = x.data[c * 9..(c + 1) * 9].iter().sum::<f32>() / 9.0;
        let gate = 1.0 / (1.0 + (-mean).exp());
        for k in 0..9 {
            assert!((y.data[c * 9 + k] - x.data[c * 9 + k] * gate).abs() < 1e-6);
        }
    }
    let e = err(&se(&[-1, 1, 2, 1]));
    assert!(e.contains("m/scale/mul") && e.contains("do not broadcast"), "{e}");

    // x · Sigmoid(x): Keras activation="swish" fuses into the conv; a Swish layer of its own is an activation.
    let w = vals(2 * 2, 7);
    let nodes = vec![
        make_node("Conv", "m/c/Conv2D", &["x", "w"], &["z"], vec![attr_ints("kernel_shape", &[1, 1])]),
        make_node("Sigmoid", "m/c/Sigmoid", &["z"], &["sz"], vec![]),
        make_node("Mul", "m/c/mul_1", &["z", "sz"], &["h"], vec![]),
        make_node("Sigmoid", "m/act/Sigmoid", &["h"], &["sh"], vec![]),
        make_node("Mul", "m/act/mul_1", &["sh", "h"], &["y"], vec![]),
    ];
    let g = ok(&model_bytes(nodes, vec![make_tensor_f32("w", &[2, 2, 1, 1], &w)], &[2, 2, 2], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Conv2D", "Activation"]);
    assert_eq!(conv_of(&g, 1).activation, Some(Activation::Swish));
    assert_eq!(g.nodes[2].op, Op::Activation(Activation::Swish));
    // Division of two computed tensors, or a Max with a per-channel constant: refused, naming the node.
    let div = model_bytes(vec![relu("m/a/Relu", "x", "a"), make_node("Div", "m/d/div", &["x", "a"], &["y"], vec![])], vec![], &[3], "y", 13);
    let e = err(&div);
    assert!(e.contains("m/d/div") && e.contains("two computed tensors"), "{e}");
    let maxc = model_bytes(vec![make_node("Max", "m/mx/Max", &["x", "c"], &["y"], vec![])], vec![make_tensor_f32("c", &[3], &[0.0; 3])], &[3], "y", 13);
    let e = err(&maxc);
    assert!(e.contains("m/mx/Max") && e.contains("constant"), "{e}");
}

#[test]
fn resize_in_nearest_mode_is_upsampling_by_blocks() {
    let resize = |attrs: Vec<relprop_onnx::proto::AttributeProto>, scales: &[f32], sizes: Option<&[i64]>| {
        let mut inputs = vec!["x", "", "scales"];
        let mut inits = vec![make_tensor_f32("scales", &[scales.len()], scales)];
        if let Some(sz) = sizes {
            inputs.push("sizes");
            inits.push(make_tensor_i64("sizes", &[sz.len()], sz));
        }
        model_bytes(vec![make_node("Resize", "Resize__14", &inputs, &["y"], attrs)], inits, &[1, 2, 3], "y", 13)
    };
    let s = |k: &str, v: &str| attr_string(k, v);
    // tf2onnx's Keras UpSampling2D((2, 3)) and PyTorch's nn.Upsample: the same block repetition.
    for attrs in [
        vec![s("mode", "nearest"), s("coordinate_transformation_mode", "tf_half_pixel_for_nn"), s("nearest_mode", "floor")],
        vec![s("mode", "nearest"), s("coordinate_transformation_mode", "asymmetric"), s("nearest_mode", "floor")],
        vec![s("mode", "nearest")], // half_pixel, round_prefer_floor (the defaults)
    ] {
        let g = ok(&resize(attrs, &[1.0, 1.0, 2.0, 3.0], None));
        assert_eq!((g.nodes[1].op.clone(), g.nodes[1].shape.clone()), (Op::Upsample { factors: vec![2, 3], mode: relprop_core::Interpolation::Nearest }, vec![1, 4, 9]));
        assert_eq!(g.nodes[1].layer, "Resize__14", "a Resize is a layer of its own (Keras UpSampling)");
        let y = forward(&g, &Tensor::new(vec![1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap());
        assert_eq!(&y.data[..9], &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
        assert_eq!(&y.data[27..], &[4.0, 4.0, 4.0, 5.0, 5.0, 5.0, 6.0, 6.0, 6.0]);
    }
    // Sizes instead of scales (an empty scales tensor).
    let g = ok(&resize(vec![s("mode", "nearest"), s("nearest_mode", "floor"), s("coordinate_transformation_mode", "asymmetric")], &[], Some(&[1, 1, 4, 6])));
    assert_eq!(g.nodes[1].op, Op::Upsample { factors: vec![2, 2], mode: relprop_core::Interpolation::Nearest });
    // Linear mode keeps its coordinate transformation (Keras bilinear: half_pixel).
    let g = ok(&resize(vec![s("mode", "linear")], &[1.0, 1.0, 2.0, 3.0], None));
    assert_eq!(g.nodes[1].op, Op::Upsample { factors: vec![2, 3], mode: relprop_core::Interpolation::Linear(relprop_core::Coordinates::HalfPixel) });
    let y = forward(&g, &Tensor::new(vec![1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap());
    // Row 0 is input row 0 (half-pixel centres clamp at the edge); along the row, output 1 sits on input 0's
    // centre, output 2 a third of the way to input 1.
    let close = |got: &[f32], want: &[f32]| got.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-6);
    assert!(close(&y.data[..3], &[1.0, 1.0, 1.0 + 1.0 / 3.0]), "{:?}", &y.data[..3]);
    let want = [4.0, 4.0, 4.0 + 1.0 / 3.0, 4.0 + 2.0 / 3.0, 5.0, 5.0 + 1.0 / 3.0, 5.0 + 2.0 / 3.0, 6.0, 6.0];
    assert!(close(&y.data[27..36], &want), "{:?}", &y.data[27..36]);
    // Refused: cubic mode, fractional factors, resizing channels, a nearest mapping that is not block repetition.
    let e = err(&resize(vec![s("mode", "cubic")], &[1.0, 1.0, 2.0, 2.0], None));
    assert!(e.contains("Resize__14") && e.contains("mode 'cubic'"), "{e}");
    let e = err(&resize(vec![s("mode", "nearest")], &[1.0, 1.0, 1.5, 2.0], None));
    assert!(e.contains("scale 1.5"), "{e}");
    let e = err(&resize(vec![s("mode", "nearest")], &[1.0, 2.0, 2.0, 2.0], None));
    assert!(e.contains("batch or channel"), "{e}");
    let e = err(&resize(vec![s("mode", "nearest"), s("nearest_mode", "floor")], &[1.0, 1.0, 2.0, 2.0], None));
    assert!(e.contains("half_pixel") && e.contains("maps output 2"), "{e}");
}

#[test]
fn conv_transpose_is_the_transpose_of_its_conv() {
    // Keras Conv2DTranspose(4, 3, strides=2, padding="same") through tf2onnx: explicit pads [0, 0, 1, 1].
    let w = vals(3 * 4 * 9, 8);
    let ct = |attrs: Vec<relprop_onnx::proto::AttributeProto>, in_sp: &[usize]| {
        let nodes = vec![make_node("ConvTranspose", "m/ct/conv2d_transpose", &["x", "w", "b"], &["y"], attrs)];
        let inits = vec![make_tensor_f32("w", &[3, 4, 3, 3], &w), make_tensor_f32("b", &[4], &[0.1, -0.1, 0.2, 0.0])];
        let shape: Vec<usize> = std::iter::once(3).chain(in_sp.iter().copied()).collect();
        model_bytes(nodes, inits, &shape, "y", 13)
    };
    let k33 = || vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2])];
    let g = ok(&ct([k33(), vec![attr_ints("pads", &[0, 0, 1, 1])]].concat(), &[5, 6]));
    assert_eq!(g.nodes[1].shape, [4, 10, 12]);
    let Op::Conv(c) = &g.nodes[1].op else { panic!("a conv") };
    assert_eq!((c.transposed.clone(), c.out_channels()), (Some(vec![0, 0]), 4));
    // The same geometry from output_shape with SAME_UPPER, and from auto_pad SAME_UPPER alone.
    let same = ok(&ct([k33(), vec![attr_ints("output_shape", &[10, 12]), attr_string("auto_pad", "SAME_UPPER")]].concat(), &[5, 6]));
    assert_eq!(same.nodes[1].op, g.nodes[1].op);
    let auto = ok(&ct([k33(), vec![attr_string("auto_pad", "SAME_UPPER")]].concat(), &[5, 6]));
    assert_eq!(auto.nodes[1].op, g.nodes[1].op);
    // Output padding: one more row and column.
    let g2 = ok(&ct([k33(), vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("output_padding", &[1, 1])]].concat(), &[5, 6]));
    assert_eq!(g2.nodes[1].shape, [4, 10, 12]);
    // Adjoint of the convolution it describes: <CT(x), y> = <x, conv(y)> (bias and activation left out).
    let Op::Conv(c2) = &g2.nodes[1].op else { panic!("a conv") };
    let mut lin = relprop_core::Graph::new("x", vec![3, 5, 6]);
    lin.push("ct", Op::Conv(relprop_core::Conv { bias: None, activation: None, ..c2.clone() }), &[0]).unwrap();
    let mut fwd = relprop_core::Graph::new("y", vec![4, 10, 12]);
    fwd.push("c", Op::Conv(relprop_core::Conv { bias: None, activation: None, ..c2.untransposed() }), &[0]).unwrap();
    let x = Tensor::new(vec![3, 5, 6], vals(90, 2)).unwrap();
    let y = Tensor::new(vec![4, 10, 12], vals(480, 3)).unwrap();
    let dot = |a: &Tensor, b: &Tensor| a.data.iter().zip(&b.data).map(|(p, q)| (p * q) as f64).sum::<f64>();
    let (lhs, rhs) = (dot(&forward(&lin, &x), &y), dot(&x, &forward(&fwd, &y)));
    assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    // Output padding that the convolution cannot map back, or one not below the stride: refused.
    let e = err(&ct([k33(), vec![attr_ints("output_padding", &[2, 0])]].concat(), &[5, 6]));
    assert!(e.contains("m/ct/conv2d_transpose") && e.contains("output_padding"), "{e}");
}

#[test]
fn split_becomes_one_slice_per_output() {
    let split = |inputs: &[&str], outs: &[&str], attrs: Vec<relprop_onnx::proto::AttributeProto>, inits: Vec<TensorProto>, opset: i64| {
        let mut nodes = vec![make_node("Split", "m/s/split", inputs, outs, attrs)];
        // The model output: the used parts concatenated again in reverse order.
        let used: Vec<&str> = outs.iter().rev().copied().filter(|o| !o.is_empty()).collect();
        nodes.push(make_node("Concat", "m/cat/concat", &used, &["y"], vec![attr_int("axis", 1)]));
        model_bytes(nodes, inits, &[5, 2], "y", opset)
    };
    let x = Tensor::new(vec![5, 2], (0..10).map(|v| v as f32).collect()).unwrap();
    // Sizes as an input (opset 13+): channels [0, 2) and [2, 5).
    let g = ok(&split(&["x", "sz"], &["a", "b"], vec![attr_int("axis", 1)], vec![make_tensor_i64("sz", &[2], &[2, 3])], 13));
    assert_eq!(kinds(&g), ["Input", "Slice", "Slice", "Concat"]);
    assert_eq!(g.nodes[1].op, Op::Slice { begin: vec![0, 0], end: vec![2, 2] });
    assert_eq!(g.nodes[2].op, Op::Slice { begin: vec![2, 0], end: vec![5, 2] });
    assert_eq!(forward(&g, &x).data, [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 1.0, 2.0, 3.0]);
    // Sizes as an attribute (opset 11), equal parts by the number of outputs (the last one smaller), an unused
    // output left out.
    let g = ok(&split(&["x"], &["a", "b"], vec![attr_int("axis", 1), attr_ints("split", &[4, 1])], vec![], 11));
    assert_eq!(g.nodes[2].op, Op::Slice { begin: vec![4, 0], end: vec![5, 2] });
    let g = ok(&split(&["x"], &["a", "", "c"], vec![attr_int("axis", -2)], vec![], 13));
    assert_eq!(kinds(&g), ["Input", "Slice", "Slice", "Concat"]);
    assert_eq!(g.nodes[1].op, Op::Slice { begin: vec![0, 0], end: vec![2, 2] });
    assert_eq!(g.nodes[2].op, Op::Slice { begin: vec![4, 0], end: vec![5, 2] });
    // The batch axis, or sizes that do not add up: refused, naming the node.
    let e = err(&split(&["x"], &["a", "b"], vec![attr_int("axis", 0)], vec![], 13));
    assert!(e.contains("m/s/split") && e.contains("batch"), "{e}");
    let e = err(&split(&["x", "sz"], &["a", "b"], vec![attr_int("axis", 1)], vec![make_tensor_i64("sz", &[2], &[2, 2])], 13));
    assert!(e.contains("m/s/split") && e.contains("adding up"), "{e}");
}

/// Keras Dense on a rank-4 input as tf2onnx writes it with computed targets: the batch times the product of the
/// free axes (`ReduceProd`) merges the rows; the restoring Reshape stays (`[H·W, U]` → `[H, W, U]`) and the bias
/// Add and activation after it are the Dense's.
#[test]
fn tf2onnx_tensordot_on_rank4_with_a_reduceprod_target() {
    let (h, w_, c, u) = (2usize, 3usize, 4usize, 5usize);
    let (w, b) = (vals(c * u, 1), vals(u, 2));
    let nodes = vec![
        make_node("Shape", "model/d/Tensordot/Shape", &["x"], &["shp"], vec![]),
        make_node("Gather", "model/d/Tensordot/GatherV2", &["shp", "free"], &["fr"], vec![attr_int("axis", 0)]),
        make_node("ReduceProd", "model/d/Tensordot/Prod", &["fr"], &["prod"], vec![attr_ints("axes", &[0]), attr_int("keepdims", 0)]),
        make_node("Unsqueeze", "model/d/Tensordot/stack_Unsqueeze", &["prod", "ax0"], &["p1"], vec![]),
        make_node("Concat", "model/d/Tensordot/stack", &["p1", "cdim"], &["s1"], vec![attr_int("axis", 0)]),
        make_node("Reshape", "model/d/Tensordot/Reshape", &["x", "s1"], &["m"], vec![]),
        make_node("MatMul", "model/d/Tensordot/MatMul", &["m", "W"], &["mm"], vec![]),
        make_node("Concat", "model/d/Tensordot/concat_1", &["fr", "udim"], &["s2"], vec![attr_int("axis", 0)]),
        make_node("Reshape", "model/d/Tensordot", &["mm", "s2"], &["td"], vec![]),
        make_node("Add", "model/d/BiasAdd", &["td", "b"], &["z"], vec![]),
        make_node("Relu", "model/d/Relu", &["z"], &["y"], vec![]),
    ];
    let inits = vec![
        i64s("free", &[0, 1, 2]),
        i64s("ax0", &[0]),
        i64s("cdim", &[c as i64]),
        i64s("udim", &[u as i64]),
        make_tensor_f32("W", &[c, u], &w),
        make_tensor_f32("b", &[u], &b),
    ];
    let g = ok(&model_bytes(nodes.clone(), inits.clone(), &[h, w_, c], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Reshape", "Dense", "Reshape"]);
    let d = dense_of(&g, 2);
    assert_eq!((d.bias.as_ref().map(|b| b.data.clone()), d.activation.clone()), (Some(b.clone()), Some(Activation::Relu)));
    assert_eq!((g.nodes[2].layer.as_str(), g.nodes[3].shape.as_slice()), ("model/d", &[h, w_, u][..]));
    let x = vals(h * w_ * c, 3);
    let mut want = Vec::with_capacity(h * w_ * u);
    for r in 0..h * w_ {
        for j in 0..u {
            want.push(((0..c).map(|k| x[r * c + k] * w[k * u + j]).sum::<f32>() + b[j]).max(0.0));
        }
    }
    let got = forward(&g, &Tensor::new(vec![h, w_, c], x.clone()).unwrap());
    assert!(got.data.iter().zip(&want).all(|(a, e)| (a - e).abs() <= 1e-5), "{:?} vs {want:?}", got.data);
    // A computed first entry of N·k must merge k rows: a stray factor is refused.
    let mut bad = inits;
    bad[1] = i64s("ax0", &[0]);
    bad[2] = i64s("cdim", &[(c / 2) as i64]);
    let e = err(&model_bytes(nodes, bad, &[h, w_, c], "y", 13));
    assert!(e.contains("cannot reshape"), "{e}");
}

/// GELU written out with Erf (no Gelu op below opset 20), in the three spellings of tf2onnx, PyTorch's
/// TorchScript exporter and its dynamo exporter: one Gelu activation (fused into the Dense of its layer).
#[test]
fn gelu_spelled_out_with_erf() {
    let f = |n: &str, v: f32| make_tensor_f32(n, &[], &[v]);
    let consts = || vec![f("rs2", std::f32::consts::FRAC_1_SQRT_2), f("s2", std::f32::consts::SQRT_2), f("one", 1.0), f("half", 0.5)];
    let spellings: [Vec<NodeProto>; 3] = [
        vec![
            make_node("Mul", "m/act/Gelu/truediv", &["x", "rs2"], &["t"], vec![]),
            make_node("Erf", "m/act/Gelu/Erf", &["t"], &["e"], vec![]),
            make_node("Add", "m/act/Gelu/add", &["one", "e"], &["a"], vec![]),
            make_node("Mul", "m/act/Gelu/mul", &["half", "x"], &["h"], vec![]),
            make_node("Mul", "m/act/Gelu/mul_1", &["h", "a"], &["y"], vec![]),
        ],
        vec![
            make_node("Div", "/act/Div", &["x", "s2"], &["t"], vec![]),
            make_node("Erf", "/act/Erf", &["t"], &["e"], vec![]),
            make_node("Add", "/act/Add", &["e", "one"], &["a"], vec![]),
            make_node("Mul", "/act/Mul", &["x", "a"], &["h"], vec![]),
            make_node("Mul", "/act/Mul_1", &["h", "half"], &["y"], vec![]),
        ],
        vec![
            make_node("Div", "node_Div", &["x", "s2"], &["t"], vec![]),
            make_node("Erf", "node_Erf", &["t"], &["e"], vec![]),
            make_node("Add", "node_Add", &["e", "one"], &["a"], vec![]),
            make_node("Mul", "node_Mul", &["half", "a"], &["h"], vec![]),
            make_node("Mul", "node_gelu", &["x", "h"], &["y"], vec![]),
        ],
    ];
    let x = Tensor::new(vec![4], vec![-2.0, -0.5, 0.0, 1.5]).unwrap();
    let gelu = |v: f32| {
        let v = v as f64;
        // erf by its series (enough terms for |v| <= 2): an independent check of the activation's own erf.
        let z = v / std::f64::consts::SQRT_2;
        let (mut term, mut sum) = (z, z);
        for n in 1..60 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        (0.5 * v * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)) as f32
    };
    for nodes in spellings.iter() {
        let g = ok(&model_bytes(nodes.clone(), consts(), &[4], "y", 13));
        assert_eq!(kinds(&g), ["Input", "Activation"]);
        assert_eq!(g.nodes[1].op, Op::Activation(Activation::Gelu));
        let y = forward(&g, &x);
        assert!(y.data.iter().zip(&x.data).all(|(a, &v)| (a - gelu(v)).abs() <= 1e-6), "{:?}", y.data);
    }
    // Keras Dense(activation="gelu"): the Dense's own activation.
    let mut dense = vec![
        make_node("MatMul", "m/d/MatMul", &["x", "W"], &["z0"], vec![]),
        make_node("Add", "m/d/BiasAdd", &["z0", "b"], &["z"], vec![]),
    ];
    dense.extend(spellings[0].iter().cloned().map(|mut n| {
        n.name = n.name.map(|s| s.replace("m/act/", "m/d/"));
        n.input.iter_mut().filter(|i| *i == "x").for_each(|i| *i = "z".into());
        n
    }));
    let mut inits = consts();
    inits.extend([make_tensor_f32("W", &[4, 3], &vals(12, 1)), make_tensor_f32("b", &[3], &[0.1, 0.0, -0.1])]);
    let g = ok(&model_bytes(dense, inits, &[4], "y", 13));
    assert_eq!(kinds(&g), ["Input", "Dense"]);
    assert_eq!(dense_of(&g, 1).activation, Some(Activation::Gelu));
    // Not GELU (1 + erf replaced by 2 + erf): Erf stays unsupported, by name.
    let mut other = consts();
    other[2] = f("one", 2.0);
    let e = err(&model_bytes(spellings[0].clone(), other, &[4], "y", 13));
    assert!(e.contains("unsupported op 'Erf'"), "{e}");
}

/// LayerNormalization: the ONNX op (PyTorch's `nn.LayerNorm`) and Keras' spelled-out form (TensorFlow's
/// moments and batch_normalization), over the last axes or, moved there by two transposes, any others.
#[test]
fn layer_norm_op_and_keras_form() {
    // Rows of `row` values normalized in f64, then scaled and shifted.
    let reference = |x: &[f32], row: usize, g: &dyn Fn(usize) -> f32, b: &dyn Fn(usize) -> f32, eps: f64| -> Vec<f32> {
        x.chunks(row)
            .flat_map(|r| {
                let m = r.iter().map(|&v| v as f64).sum::<f64>() / row as f64;
                let var = r.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / row as f64;
                r.iter().enumerate().map(move |(k, &v)| ((v as f64 - m) / (var + eps).sqrt() * g(k) as f64 + b(k) as f64) as f32).collect::<Vec<_>>()
            })
            .collect()
    };
    let close = |a: &[f32], e: &[f32]| a.iter().zip(e).all(|(a, e)| (a - e).abs() <= 1e-5 * (1.0 + e.abs()));
    let (gam, bet) = (vec![0.5f32, 1.0, 1.5, 2.0], vec![0.1f32, -0.1, 0.2, 0.0]);
    let x = vals(24, 7);
    // The ONNX op over the last axis, then over the last two.
    let op = |axis: i64, scale: TensorProto, with_b: bool| {
        let mut inputs = vec!["x", "scale"];
        if with_b {
            inputs.push("B");
        }
        let nodes = vec![make_node("LayerNormalization", "/ln/LayerNormalization", &inputs, &["y"], vec![attr_int("axis", axis), attr_float("epsilon", 1e-5)])];
        model_bytes(nodes, vec![scale, make_tensor_f32("B", &[4], &bet)], &[2, 3, 4], "y", 17)
    };
    let g = ok(&op(-1, make_tensor_f32("scale", &[4], &gam), true));
    assert_eq!(kinds(&g), ["Input", "LayerNorm"]);
    let Op::LayerNorm(l) = &g.nodes[1].op else { unreachable!() };
    assert_eq!((l.axes, l.gamma.data.clone(), l.beta.data.clone(), l.epsilon), (1, gam.clone(), bet.clone(), 1e-5));
    let y = forward(&g, &Tensor::new(vec![2, 3, 4], x.clone()).unwrap());
    assert!(close(&y.data, &reference(&x, 4, &|k| gam[k], &|k| bet[k], 1e-5)));
    let g = ok(&op(-2, make_tensor_f32("scale", &[1, 4], &gam), false));
    let Op::LayerNorm(l) = &g.nodes[1].op else { unreachable!() };
    assert_eq!((l.axes, l.gamma.shape.clone(), l.beta.data.clone()), (2, vec![3, 4], vec![0.0; 12]));
    let y = forward(&g, &Tensor::new(vec![2, 3, 4], x.clone()).unwrap());
    assert!(close(&y.data, &reference(&x, 12, &|k| gam[k % 4], &|_| 0.0, 1e-5)));
    // Refused: the batch axis; a scale that varies along an axis not normalized; the Mean output in use.
    assert!(err(&op(0, make_tensor_f32("scale", &[4], &gam), true)).contains("batch axis"));
    let e = err(&op(-1, make_tensor_f32("scale", &[3, 4], &vals(12, 1)), true));
    assert!(e.contains("does not vary only along the normalized axes"), "{e}");
    let nodes = vec![
        make_node("LayerNormalization", "/ln/LayerNormalization", &["x", "scale"], &["y", "mean"], vec![]),
        make_node("Add", "/add", &["y", "mean"], &["z"], vec![]),
    ];
    let e = err(&model_bytes(nodes, vec![make_tensor_f32("scale", &[4], &gam)], &[2, 3, 4], "z", 17));
    assert!(e.contains("Mean/InvStdDev"), "{e}");

    // Keras' form, over the channels of a channels-first (C, H, W) tensor, as tf2onnx leaves it after moving its
    // transposes: ReduceMean over axis 1, γ and β as (C, 1, 1).
    let keras = |scale: bool, center: bool| {
        let mut nodes = vec![
            make_node("ReduceMean", "m/ln/moments/mean", &["x"], &["mean"], vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)]),
            make_node("Sub", "m/ln/moments/SquaredDifference", &["x", "mean"], &["d"], vec![]),
            make_node("Mul", "m/ln/moments/SquaredDifference__1", &["d", "d"], &["sq"], vec![]),
            make_node("ReduceMean", "m/ln/moments/variance", &["sq"], &["var"], vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)]),
            make_node("Add", "m/ln/batchnorm/add", &["var", "eps"], &["ve"], vec![]),
            make_node("Sqrt", "m/ln/batchnorm/Rsqrt", &["ve"], &["sd"], vec![]),
            make_node("Reciprocal", "m/ln/batchnorm/Rsqrt__2", &["sd"], &["inv"], vec![]),
        ];
        let s = if scale {
            nodes.push(make_node("Mul", "m/ln/batchnorm/mul", &["inv", "gamma"], &["s"], vec![]));
            "s"
        } else {
            "inv"
        };
        nodes.push(make_node("Mul", "m/ln/batchnorm/mul_2", &["mean", s], &["ms"], vec![]));
        nodes.push(if center {
            make_node("Sub", "m/ln/batchnorm/sub", &["beta", "ms"], &["sh"], vec![])
        } else {
            make_node("Neg", "m/ln/batchnorm/neg", &["ms"], &["sh"], vec![])
        });
        nodes.push(make_node("Mul", "m/ln/batchnorm/mul_1", &["x", s], &["xs"], vec![]));
        nodes.push(make_node("Add", "m/ln/batchnorm/add_1", &["xs", "sh"], &["y"], vec![]));
        let inits = vec![
            make_tensor_f32("eps", &[], &[1e-3]),
            make_tensor_f32("gamma", &[3, 1, 1], &gam[..3]),
            make_tensor_f32("beta", &[3, 1, 1], &bet[..3]),
        ];
        model_bytes(nodes, inits, &[3, 2, 4], "y", 13)
    };
    // The reference: per position (h, w), over the 3 channels.
    let chans = |x: &[f32], g: &dyn Fn(usize) -> f32, b: &dyn Fn(usize) -> f32| -> Vec<f32> {
        let cl: Vec<f32> = (0..8).flat_map(|p| (0..3).map(move |c| x[c * 8 + p])).collect();
        let y = reference(&cl, 3, g, b, 1e-3);
        (0..24).map(|i| y[(i % 8) * 3 + i / 8]).collect()
    };
    let g = ok(&keras(true, true));
    assert_eq!(kinds(&g), ["Input", "Transpose", "LayerNorm", "Transpose"]);
    assert!(g.nodes[1..].iter().all(|n| n.layer == "m/ln"), "{:?}", g.nodes.iter().map(|n| &n.layer).collect::<Vec<_>>());
    let y = forward(&g, &Tensor::new(vec![3, 2, 4], x.clone()).unwrap());
    assert!(close(&y.data, &chans(&x, &|k| gam[k], &|k| bet[k])), "{:?}", y.data);
    let g = ok(&keras(false, false));
    let y = forward(&g, &Tensor::new(vec![3, 2, 4], x.clone()).unwrap());
    assert!(close(&y.data, &chans(&x, &|_| 1.0, &|_| 0.0)));

    // Keras' fused path (ε ≥ 1.001e-5) as tf2onnx writes it, over the last axis of a (3, 2, 4) input: rows of
    // [1, N·6, 4, 1], a BatchNormalization with the statistics written out, the shape restored, then · γ + β.
    // With `folded`, the reshape target and the variance's divisor are constants (`count`).
    let fused = |folded: bool, count: f32, scale_value: f32| {
        let mut nodes = vec![
            make_node("Shape", "m/ln/Shape", &["x"], &["sx"], vec![]),
            make_node("Slice", "m/ln/strided_slice", &["sx", "i0", "i1", "i0"], &["n"], vec![]),
            make_node("Mul", "m/ln/mul_1", &["n", "six"], &["rows"], vec![]),
            make_node("Concat", "m/ln/Reshape/shape_Concat", &["i1", "rows", "four", "i1"], &["target"], vec![attr_int("axis", 0)]),
            make_node("Expand", "m/ln/ones", &["one", "rows"], &["ones"], vec![]),
            make_node("Expand", "m/ln/zeros", &["zero", "rows"], &["zeros"], vec![]),
            make_node("Reshape", "m/ln/Reshape", &["x", if folded { "target_c" } else { "target" }], &["xr"], vec![]),
            make_node("ReduceMean", "ReduceMean__39", &["xr"], &["rm"], vec![attr_ints("axes", &[0, 2, 3]), attr_int("keepdims", 1)]),
            make_node("Sub", "Sub__44", &["xr", "rm"], &["d"], vec![]),
            make_node("ReduceSumSquare", "ReduceSumSquare__47", &["d"], &["ss"], vec![attr_ints("axes", &[0, 2, 3]), attr_int("keepdims", 0)]),
            make_node("Squeeze", "Squeeze__42", &["rm", "axes"], &["mean"], vec![]),
        ];
        if !folded {
            nodes.extend([
                make_node("Shape", "Shape__49", &["xr"], &["sr"], vec![]),
                make_node("Gather", "Gather__52", &["sr", "axes"], &["g"], vec![]),
                make_node("ReduceProd", "ReduceProd__53", &["g"], &["cnt"], vec![attr_ints("axes", &[0]), attr_int("keepdims", 0)]),
                make_node("Cast", "Cast__54", &["cnt"], &["count"], vec![attr_int("to", 1)]),
            ]);
        }
        nodes.extend([
            make_node("Div", "Div__55", &["ss", "count"], &["var"], vec![]),
            make_node("BatchNormalization", "m/ln/FusedBatchNormV3", &["xr", "ones", "zeros", "mean", "var"], &["yb"], vec![attr_float("epsilon", 1e-3)]),
            make_node("Reshape", "m/ln/Reshape_1", &["yb", "sx"], &["y0"], vec![]),
            make_node("Mul", "m/ln/mul_4", &["y0", "gamma"], &["y1"], vec![]),
            make_node("Add", "m/ln/add", &["y1", "beta"], &["y"], vec![]),
        ]);
        let mut inits = vec![
            make_tensor_i64("i0", &[1], &[0]),
            make_tensor_i64("i1", &[1], &[1]),
            make_tensor_i64("six", &[1], &[6]),
            make_tensor_i64("four", &[1], &[4]),
            make_tensor_i64("axes", &[3], &[0, 2, 3]),
            make_tensor_i64("target_c", &[4], &[1, -1, 4, 1]),
            make_tensor_f32("one", &[], &[scale_value]),
            make_tensor_f32("zero", &[], &[0.0]),
            make_tensor_f32("gamma", &[4], &gam),
            make_tensor_f32("beta", &[4], &bet),
        ];
        if folded {
            inits.push(make_tensor_f32("count", &[], &[count]));
        }
        model_bytes(nodes, inits, &[3, 2, 4], "y", 13)
    };
    for folded in [false, true] {
        let g = ok(&fused(folded, 4.0, 1.0));
        assert_eq!(kinds(&g), ["Input", "LayerNorm"], "folded {folded}");
        assert_eq!(g.nodes[1].layer, "m/ln");
        let Op::LayerNorm(l) = &g.nodes[1].op else { unreachable!() };
        assert_eq!((l.axes, l.gamma.data.clone(), l.beta.data.clone(), l.epsilon), (1, gam.clone(), bet.clone(), 1e-3));
        let y = forward(&g, &Tensor::new(vec![3, 2, 4], x.clone()).unwrap());
        assert!(close(&y.data, &reference(&x, 4, &|k| gam[k], &|k| bet[k], 1e-3)), "{:?}", y.data);
    }
    // Refused, never read as a layer normalization: the variance divided by another count; a scale of 2
    // (not Keras' unit scale: the nodes convert one by one, and Expand is no layer).
    let e = err(&fused(true, 5.0, 1.0));
    assert!(e.contains("divides by") && e.contains("not by its 4 values"), "{e}");
    let e = err(&fused(false, 4.0, 2.0));
    assert!(e.contains("Expand"), "{e}");
}

/// PReLU: ONNX's PRelu (PyTorch `nn.PReLU`), and Keras' as tf2onnx writes it, `Relu(x) + Mul(Relu(Neg(x)), −α)`,
/// with the Mul between a Transpose and its inverse when the slope is not shared over the spatial axes.
#[test]
fn prelu_op_and_keras_form() {
    let x = Tensor::new(vec![2, 3, 2], vec![-1.0, 2.0, -3.0, 0.5, 0.0, -0.25, 1.5, -2.0, -0.5, 3.0, -4.0, 1.0]).unwrap();
    // Reference by position: channel c, row h, column w of the (2, 3, 2) input.
    let expect = |slope: &dyn Fn(usize, usize, usize) -> f32| -> Vec<f32> {
        (0..12).map(|k| {
            let (c, h, w) = (k / 6, (k / 2) % 3, k % 2);
            let v = x.data[k];
            if v < 0.0 { slope(c, h, w) * v } else { v }
        }).collect()
    };
    let prelu = |slope: TensorProto| model_bytes(vec![make_node("PRelu", "/act/PRelu", &["x", "a"], &["y"], vec![])], vec![slope], &[2, 3, 2], "y", 13);
    let g = ok(&prelu(make_tensor_f32("a", &[2, 1, 1], &[0.25, -0.5])));
    assert_eq!(kinds(&g), ["Input", "PRelu"]);
    assert_eq!(forward(&g, &x).data, expect(&|c, _, _| [0.25, -0.5][c]));
    let g = ok(&prelu(make_tensor_f32("a", &[], &[0.1])));
    assert_eq!(forward(&g, &x).data, expect(&|_, _, _| 0.1));
    let e = err(&prelu(make_tensor_f32("a", &[3], &[0.1, 0.2, 0.3])));
    assert!(e.contains("does not broadcast"), "{e}");

    // Keras: the constant is −α; with a full (H, W, C) slope tf2onnx moves to channels-last for the Mul.
    let keras = |c: TensorProto, perm: bool| {
        let mut nodes = vec![
            make_node("Relu", "m/pr/Relu", &["x"], &["p"], vec![]),
            make_node("Neg", "m/pr/Neg_1", &["x"], &["n"], vec![]),
            make_node("Relu", "m/pr/Relu_1", &["n"], &["rn"], vec![]),
        ];
        if perm {
            nodes.push(make_node("Transpose", "Transpose__1", &["rn"], &["t"], vec![attr_ints("perm", &[0, 2, 3, 1])]));
            nodes.push(make_node("Mul", "m/pr/mul", &["t", "c"], &["mt"], vec![]));
            nodes.push(make_node("Transpose", "Transpose__2", &["mt"], &["m"], vec![attr_ints("perm", &[0, 3, 1, 2])]));
        } else {
            nodes.push(make_node("Mul", "m/pr/mul", &["rn", "c"], &["m"], vec![]));
        }
        nodes.push(make_node("Add", "m/pr/add", &["p", "m"], &["y"], vec![]));
        model_bytes(nodes, vec![c], &[2, 3, 2], "y", 13)
    };
    let g = ok(&keras(make_tensor_f32("c", &[1, 2, 1, 1], &[-0.25, 0.5]), false));
    assert_eq!(kinds(&g), ["Input", "PRelu"]);
    assert_eq!(g.nodes[1].layer, "m/pr");
    assert_eq!(forward(&g, &x).data, expect(&|c, _, _| [0.25, -0.5][c]));
    // (H, W, C) = (3, 2, 2): value at (h, w, c) is −(h·4 + w·2 + c)/10.
    let hwc: Vec<f32> = (0..12).map(|i| -(i as f32) / 10.0).collect();
    let g = ok(&keras(make_tensor_f32("c", &[3, 2, 2], &hwc), true));
    assert_eq!(kinds(&g), ["Input", "PRelu"]);
    let y = forward(&g, &x);
    let want = expect(&|c, h, w| (h * 4 + w * 2 + c) as f32 / 10.0);
    assert!(y.data.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6), "{:?} vs {want:?}", y.data);
    // A Transpose that is not undone: not PReLU, so Neg stays unsupported.
    let mut bad = keras(make_tensor_f32("c", &[3, 2, 2], &hwc), true);
    let mut m: relprop_onnx::proto::ModelProto = prost::Message::decode(bad.as_slice()).unwrap();
    m.graph.as_mut().unwrap().node[5].attribute[0].ints = vec![0, 2, 3, 1];
    bad = relprop_onnx::encode_model(&m);
    assert!(err(&bad).contains("'Neg'"));

    // After a Conv1D tf2onnx transposes both Relus to channels-last and adds there: a PReLU, then a Transpose.
    let conv1d_form = |relu_perm: &[i64]| {
        let nodes = vec![
            make_node("Relu", "m/pr/Relu", &["x"], &["p"], vec![]),
            make_node("Neg", "m/pr/Neg_1", &["x"], &["n"], vec![]),
            make_node("Relu", "m/pr/Relu_1", &["n"], &["rn"], vec![]),
            make_node("Transpose", "Transpose__3", &["p"], &["tp"], vec![attr_ints("perm", relu_perm)]),
            make_node("Transpose", "Transpose__4", &["rn"], &["tn"], vec![attr_ints("perm", &[0, 2, 1])]),
            make_node("Mul", "m/pr/mul", &["tn", "c"], &["m"], vec![]),
            make_node("Add", "m/pr/add", &["tp", "m"], &["y"], vec![]),
        ];
        // Slope per (T, C) = (2, 6): value at (t, c) is −(t·6 + c)/10; the input is (C, T) = (6, 2).
        model_bytes(nodes, vec![make_tensor_f32("c", &[2, 6], &hwc)], &[6, 2], "y", 13)
    };
    let g = ok(&conv1d_form(&[0, 2, 1]));
    assert_eq!(kinds(&g), ["Input", "PRelu", "Transpose"]);
    let x1 = Tensor::new(vec![6, 2], x.data.clone()).unwrap();
    let y = forward(&g, &x1);
    let want: Vec<f32> = (0..12)
        .map(|k| {
            let (t, c) = (k / 6, k % 6);
            let v = x.data[c * 2 + t];
            if v < 0.0 { (t * 6 + c) as f32 / 10.0 * v } else { v }
        })
        .collect();
    assert!(y.data.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6), "{:?} vs {want:?}", y.data);
    // The two branches in different layouts: no PReLU.
    assert!(err(&conv1d_form(&[0, 1, 2])).contains("'Neg'"));
}

/// Softsign (its ONNX op, and PyTorch's spelling `x / (1 + |x|)`), Celu, Exp, ThresholdedRelu (strictly above
/// its α: 0.25 itself gives 0) and PyTorch's LogSigmoid (`Log` of a `Sigmoid`) import as single activations with
/// the right values; a Celu with α = 0 and a lone Abs are refused.
#[test]
fn softsign_celu_exp_thresholded_relu_and_log_sigmoid() {
    let xs: Vec<f32> = vec![-100.0, -3.0, -0.5, 0.0, 0.25, 2.0, 30.0];
    // (exp(30) and exp(−100) stay finite in f32.)
    let x = Tensor::new(vec![xs.len()], xs.clone()).unwrap();
    let one = || make_tensor_f32("one", &[], &[1.0]);
    // (nodes, initializers, the activation they import as, its value)
    type Case = (Vec<NodeProto>, Vec<TensorProto>, Activation, fn(f32) -> f32);
    let cases: Vec<Case> = vec![
        (vec![make_node("Softsign", "s/Softsign", &["x"], &["y"], vec![])], vec![], Activation::Softsign, |v| v / (1.0 + v.abs())),
        (
            vec![
                make_node("Abs", "/act/Abs", &["x"], &["a"], vec![]),
                make_node("Add", "/act/Add", &["a", "one"], &["d"], vec![]),
                make_node("Div", "/act/Div", &["x", "d"], &["y"], vec![]),
            ],
            vec![one()],
            Activation::Softsign,
            |v| v / (1.0 + v.abs()),
        ),
        (vec![make_node("Celu", "c/Celu", &["x"], &["y"], vec![attr_float("alpha", 0.5)])], vec![], Activation::Celu(0.5), |v| {
            v.max(0.0) + (0.5 * ((v / 0.5).exp() - 1.0)).min(0.0)
        }),
        (vec![make_node("Exp", "e/Exp", &["x"], &["y"], vec![])], vec![], Activation::Exp, f32::exp),
        (vec![make_node("ThresholdedRelu", "ThresholdedRelu__7", &["x"], &["y"], vec![attr_float("alpha", 0.25)])], vec![], Activation::ThresholdedRelu(0.25), |v| {
            if v > 0.25 { v } else { 0.0 }
        }),
        (
            vec![make_node("Sigmoid", "/act/Sigmoid", &["x"], &["s"], vec![]), make_node("Log", "/act/Log", &["s"], &["y"], vec![])],
            vec![],
            Activation::LogSigmoid,
            |v| -((-v as f64).exp().ln_1p() as f32),
        ),
    ];
    for (nodes, inits, act, f) in cases {
        let g = ok(&model_bytes(nodes, inits, &[xs.len()], "y", 13));
        assert_eq!(g.nodes[1].op, Op::Activation(act.clone()), "{act:?}");
        assert_eq!(g.nodes.len(), 2, "{act:?}: one node");
        let y = forward(&g, &x);
        for (v, got) in xs.iter().zip(&y.data) {
            let want = f(*v);
            assert!((got - want).abs() <= 1e-6 * (1.0 + want.abs()), "{act:?}({v}) = {got}, expected {want}");
        }
    }
    // log σ(−100) is −100, not −∞ (the stable form, as PyTorch computes it).
    assert_eq!(Activation::LogSigmoid.apply(-100.0), -100.0);
    let zero = vec![make_node("Celu", "c/Celu", &["x"], &["y"], vec![attr_float("alpha", 0.0)])];
    assert!(err(&model_bytes(zero, vec![], &[3], "y", 13)).contains("Celu alpha must be finite and non-zero"));
    let abs = vec![make_node("Abs", "a/Abs", &["x"], &["y"], vec![])];
    assert!(err(&model_bytes(abs, vec![], &[3], "y", 13)).contains("unsupported op 'Abs'"));
}

/// Keras RepeatVector (`ExpandDims`, then `Tile` of the new size-1 axis) is nearest upsampling of that axis: every
/// copy equals the value. Tiling an axis longer than 1 or the batch is refused.
#[test]
fn tile_of_a_size_one_axis() {
    let tile = |repeats: &[i64]| {
        let nodes = vec![
            make_node("Unsqueeze", "rv/ExpandDims", &["x", "ax"], &["e"], vec![]),
            make_node("Tile", "rv/Tile", &["e", "reps"], &["y"], vec![]),
        ];
        model_bytes(nodes, vec![i64s("ax", &[1]), i64s("reps", repeats)], &[4], "y", 13)
    };
    let g = ok(&tile(&[1, 3, 1]));
    assert!(kinds(&g).contains(&"Upsample"), "{:?}", kinds(&g));
    assert_eq!(g.output_shape(), [3, 4]);
    let x = Tensor::new(vec![4], vec![1.0, -2.0, 0.5, 3.0]).unwrap();
    assert_eq!(forward(&g, &x).data, [1.0, -2.0, 0.5, 3.0].repeat(3));
    assert!(err(&tile(&[1, 1, 2])).contains("only a size-1 axis may be repeated"));
    assert!(err(&tile(&[2, 3, 1])).contains("keep the batch"));
}
