//! Malformed, hostile and unsupported inputs: every one is an `Err` naming the problem, never a panic.

mod common;

use common::*;
use relprop_core::Error;
use relprop_onnx::builder::*;
use relprop_onnx::proto::tensor_proto::DataType;
use relprop_onnx::proto::{ModelProto, TensorProto};
use relprop_onnx::{decode, decode_with, encode_model, ImportOptions};

fn golden_bytes(stem: &str) -> Vec<u8> {
    std::fs::read(onnx_path(stem)).unwrap()
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

/// x(4) -> MatMul(W 4x3) -> out
fn dense_model(extra: Vec<relprop_onnx::proto::NodeProto>, out: &str) -> Vec<u8> {
    let mut nodes = vec![make_node("MatMul", "m/MatMul", &["x", "W"], &["h"], vec![])];
    nodes.extend(extra);
    model_bytes(nodes, vec![make_tensor_f32("W", &[4, 3], &vals(12, 1))], &[4], out, 17)
}

#[test]
fn empty_file() {
    let e = decode(&[], "empty.onnx").unwrap_err();
    assert!(matches!(&e, Error::Model { file, .. } if file == "empty.onnx"), "{e:?}");
    assert_contains(&e.to_string(), &["empty"]);
}

#[test]
fn missing_file() {
    let e = relprop_onnx::load(std::path::Path::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
    assert_contains(&e.to_string(), &["/nonexistent/model.onnx", "cannot read"]);
}

#[test]
fn truncated_files() {
    for stem in ONNX_FILES {
        let bytes = golden_bytes(stem);
        let e = decode(&bytes[..bytes.len() / 2], stem).unwrap_err();
        assert!(matches!(e, Error::Model { .. }), "{stem}: {e:?}");
        assert_contains(&e.to_string(), &[stem, "not a valid ONNX protobuf"]);
        // Every prefix: some happen to end on a field boundary and decode; none may panic.
        for len in (0..bytes.len()).step_by(5) {
            let _ = decode(&bytes[..len], stem);
        }
    }
}

#[test]
fn random_garbage() {
    for seed in 0..200u64 {
        let len = 1 + (seed as usize * 37) % 3000;
        let bytes: Vec<u8> = vals(len, seed).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        let e = decode(&bytes, "garbage.bin").unwrap_err();
        assert!(matches!(e, Error::Model { .. } | Error::Node { .. }), "{e:?}");
    }
    let e = decode(b"this is definitely not an onnx model", "text.onnx").unwrap_err();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
}

#[test]
fn mutated_golden_files_never_panic() {
    // Flip a few bytes at a time all over the real files: decoding may succeed or fail, but never panic, and
    // whatever succeeds is a valid graph.
    for stem in ONNX_FILES {
        let orig = golden_bytes(stem);
        for round in 0..400u64 {
            let mut bytes = orig.clone();
            let r = vals(8, round * 31 + stem.len() as u64);
            for pair in r.chunks(2) {
                let at = (((pair[0] + 1.0) / 2.0) * bytes.len() as f32) as usize % bytes.len();
                bytes[at] = ((pair[1] + 1.0) * 127.9) as u8;
            }
            if let Ok(g) = decode(&bytes, stem) {
                g.validate().unwrap();
            }
        }
    }
}

#[test]
fn cycle() {
    let nodes = vec![
        make_node("Relu", "loop/b", &["a"], &["b"], vec![]),
        make_node("Add", "loop/a", &["x", "b"], &["a"], vec![]),
        make_node("Relu", "out/r", &["b"], &["y"], vec![]),
    ];
    let msg = err(&model_bytes(nodes, vec![], &[4], "y", 17));
    assert_contains(&msg, &["cycle"]);
    assert!(msg.contains("loop/a") || msg.contains("loop/b"), "{msg}");
}

#[test]
fn unsupported_op() {
    let nodes = vec![make_node("Sin", "trig/Sin", &["x"], &["y"], vec![])];
    assert_contains(&err(&model_bytes(nodes, vec![], &[4], "y", 17)), &["trig/Sin", "Sin", "unsupported op"]);
    let mut n = make_node("Relu", "custom/Relu", &["x"], &["y"], vec![]);
    n.domain = Some("com.example".into());
    assert_contains(&err(&model_bytes(vec![n], vec![], &[4], "y", 17)), &["custom/Relu", "com.example"]);
}

#[test]
fn softmax_at_output() {
    let bytes = dense_model(vec![make_node("Softmax", "m/Softmax", &["h"], &["y"], vec![attr_int("axis", -1)])], "y");
    let msg = err(&bytes);
    assert_contains(&msg, &["m/Softmax", "remove the softmax before export", "model.layers[-1].activation = None", "remove_softmax", "strip_softmax"]);
    let opts = ImportOptions { strip_softmax: true, ..Default::default() };
    let g = decode_with(&bytes, "t", &opts).unwrap();
    assert_eq!(g.nodes[g.output].op.kind(), "Dense");
    assert_eq!(g.output_shape(), [3]);
    let log = dense_model(vec![make_node("LogSoftmax", "m/LogSoftmax", &["h"], &["y"], vec![])], "y");
    assert_contains(&err(&log), &["m/LogSoftmax", "strip_softmax"]);
    // A softmax in the middle cannot be stripped.
    let mid = dense_model(
        vec![make_node("Softmax", "m/Softmax", &["h"], &["s"], vec![]), make_node("Relu", "r/Relu", &["s"], &["y"], vec![])],
        "y",
    );
    assert_contains(&decode_with(&mid, "t", &opts).unwrap_err().to_string(), &["m/Softmax", "softmax"]);
}

#[test]
fn mismatched_weight_shapes() {
    // Dense weight (5, 3) on a 4-vector.
    let nodes = vec![make_node("MatMul", "d/MatMul", &["x", "W"], &["y"], vec![])];
    let msg = err(&model_bytes(nodes, vec![make_tensor_f32("W", &[5, 3], &vals(15, 1))], &[4], "y", 17));
    assert_contains(&msg, &["d/MatMul", "4"]);
    // 1-D weight.
    let nodes = vec![make_node("MatMul", "d/MatMul", &["x", "W"], &["y"], vec![])];
    assert_contains(&err(&model_bytes(nodes, vec![make_tensor_f32("W", &[4], &vals(4, 1))], &[4], "y", 17)), &["d/MatMul", "2-D"]);
    // Conv expecting 2 input channels on 3.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W"], &["y"], vec![])];
    let msg = err(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 2, 3, 3], &vals(72, 1))], &[3, 8, 8], "y", 17));
    assert_contains(&msg, &["c/Conv", "input channels"]);
    // kernel_shape attribute disagreeing with the weight.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W"], &["y"], vec![attr_ints("kernel_shape", &[5, 5])])];
    let msg = err(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 3, 3, 3], &vals(108, 1))], &[3, 8, 8], "y", 17));
    assert_contains(&msg, &["c/Conv", "kernel_shape"]);
    // Conv bias of the wrong length.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W", "B"], &["y"], vec![])];
    let inits = vec![make_tensor_f32("W", &[4, 3, 3, 3], &vals(108, 1)), make_tensor_f32("B", &[5], &vals(5, 2))];
    assert_contains(&err(&model_bytes(nodes, inits, &[3, 8, 8], "y", 17)), &["c/Conv", "bias"]);
    // BatchNorm statistics for 5 channels on 3.
    let p = |n: &str| make_tensor_f32(n, &[5], &[1.0; 5]);
    let nodes = vec![make_node("BatchNormalization", "bn/BN", &["x", "g", "b", "m", "v"], &["y"], vec![])];
    let msg = err(&model_bytes(nodes, vec![p("g"), p("b"), p("m"), p("v")], &[3, 4, 4], "y", 17));
    assert_contains(&msg, &["bn/BN", "channels"]);
    // Add of two differently shaped tensors.
    let nodes = vec![
        make_node("MatMul", "d/MatMul", &["x", "W"], &["h"], vec![]),
        make_node("Add", "add/add", &["x", "h"], &["y"], vec![]),
    ];
    let msg = err(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 3], &vals(12, 1))], &[4], "y", 17));
    assert_contains(&msg, &["add/add", "equal shapes"]);
}

#[test]
fn bad_initializers() {
    let nodes = || vec![make_node("MatMul", "d/MatMul", &["x", "W"], &["y"], vec![])];
    // raw_data too short.
    let mut w = make_tensor_f32("W", &[4, 3], &vals(12, 1));
    w.raw_data.as_mut().unwrap().truncate(20);
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["initializer 'W'", "12 values"]);
    // float_data of the wrong length.
    let w = TensorProto { name: Some("W".into()), dims: vec![4, 3], data_type: Some(DataType::Float as i32), float_data: vec![1.0; 5], ..Default::default() };
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["initializer 'W'", "float_data"]);
    // A huge declared shape with no data: refused by the size limit before anything is allocated.
    let w = TensorProto { name: Some("W".into()), dims: vec![1 << 30, 1 << 30], data_type: Some(DataType::Float as i32), ..Default::default() };
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["limit"]);
    let w = TensorProto { name: Some("W".into()), dims: vec![i64::MAX, i64::MAX], data_type: Some(DataType::Float as i32), ..Default::default() };
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["initializer 'W'", "overflow"]);
    let w = TensorProto { name: Some("W".into()), dims: vec![-4, 3], data_type: Some(DataType::Float as i32), ..Default::default() };
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["initializer 'W'", "negative"]);
    // Unsupported element type.
    let w = TensorProto { name: Some("W".into()), dims: vec![4, 3], data_type: Some(DataType::Float16 as i32), raw_data: Some(vec![0; 24]), ..Default::default() };
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["initializer 'W'", "FLOAT16"]);
    // External data.
    let mut w = make_tensor_f32("W", &[4, 3], &vals(12, 1));
    w.data_location = Some(1);
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["initializer 'W'", "external"]);
    // NaN weights.
    let w = make_tensor_f32("W", &[4, 3], &[f32::NAN; 12]);
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["d/MatMul", "NaN"]);
    // The configurable limit.
    let bytes = model_bytes(nodes(), vec![make_tensor_f32("W", &[4, 3], &vals(12, 1))], &[4], "y", 17);
    let opts = ImportOptions { max_initializer_bytes: 40, ..Default::default() };
    assert_contains(&decode_with(&bytes, "t", &opts).unwrap_err().to_string(), &["48 bytes", "limit of 40"]);
    // An int64 weight.
    let w = make_tensor_i64("W", &[4, 3], &[1; 12]);
    assert_contains(&err(&model_bytes(nodes(), vec![w], &[4], "y", 17)), &["d/MatMul", "float32"]);
}

#[test]
fn bad_inputs_and_outputs() {
    let relu = || vec![make_node("Relu", "r/Relu", &["x"], &["y"], vec![])];
    // Two inputs.
    let g = make_graph("t", relu(), vec![value_info("x", &[4]), value_info("z", &[4])], vec![untyped("y")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["single-input", "2 inputs"]);
    // No input.
    let g = make_graph("t", relu(), vec![], vec![untyped("y")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["0 inputs"]);
    // Two outputs.
    let g = make_graph("t", relu(), vec![value_info("x", &[4])], vec![untyped("y"), untyped("x")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["exactly one output"]);
    // Symbolic non-batch axis.
    use relprop_onnx::proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |v: Value| Dimension { value: Some(v), ..Default::default() };
    let vi = value_info_dims("x", vec![dim(Value::DimParam("N".into())), dim(Value::DimParam("T".into()))]);
    let g = make_graph("t", relu(), vec![vi], vec![untyped("y")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["input 'x'", "axis 1", "fixed positive"]);
    // Batch only.
    let g = make_graph("t", relu(), vec![value_info("x", &[])], vec![untyped("y")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["input 'x'", "rank 1"]);
    // Declared output shape disagreeing with the graph.
    let g = make_graph("t", relu(), vec![value_info("x", &[4])], vec![value_info("y", &[5])], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["[5]", "[4]"]);
    // No graph, no nodes.
    assert_contains(&err(&encode_model(&ModelProto { ir_version: Some(8), ..Default::default() })), &["no graph"]);
    let g = make_graph("t", vec![], vec![value_info("x", &[4])], vec![untyped("x")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["no nodes"]);
    // Undefined value.
    let nodes = vec![make_node("Add", "a/add", &["x", "ghost"], &["y"], vec![])];
    assert_contains(&err(&model_bytes(nodes, vec![], &[4], "y", 17)), &["a/add", "'ghost'", "not produced"]);
    // A value defined twice.
    let nodes = vec![make_node("Relu", "a/Relu", &["x"], &["y"], vec![]), make_node("Sigmoid", "b/Sigmoid", &["x"], &["y"], vec![])];
    assert_contains(&err(&model_bytes(nodes, vec![], &[4], "y", 17)), &["'y'", "more than once"]);
    // Output nobody produces.
    assert_contains(&err(&model_bytes(relu(), vec![], &[4], "nothing", 17)), &["'nothing'", "not produced"]);
}

#[test]
fn unsupported_node_configurations() {
    let conv_w = || make_tensor_f32("W", &[2, 3, 3, 3], &vals(54, 1));
    let conv = |attrs| model_bytes(vec![make_node("Conv", "c/Conv", &["x", "W"], &["y"], attrs)], vec![conv_w()], &[3, 8, 8], "y", 17);
    assert_contains(&err(&conv(vec![attr_ints("strides", &[0, 1])])), &["c/Conv", "strides"]);
    assert_contains(&err(&conv(vec![attr_ints("strides", &[1])])), &["c/Conv", "strides", "expected 2"]);
    assert_contains(&err(&conv(vec![attr_ints("pads", &[i64::MAX, 0, 0, 0])])), &["c/Conv", "pads"]);
    assert_contains(&err(&conv(vec![attr_ints("dilations", &[1 << 40, 1])])), &["c/Conv", "dilations"]);
    assert_contains(&err(&conv(vec![attr_ints("dilations", &[5, 1])])), &["c/Conv", "larger than"]);
    assert_contains(&err(&conv(vec![attr_int("group", 0)])), &["c/Conv", "group"]);
    assert_contains(&err(&conv(vec![attr_string("auto_pad", "FULL")])), &["c/Conv", "auto_pad"]);
    assert_contains(&err(&conv(vec![attr_float("group", 1.0)])), &["c/Conv", "'group' must be an int"]);
    // A zero-size kernel.
    let nodes = vec![make_node("Conv", "c/Conv", &["x", "W"], &["y"], vec![])];
    let msg = err(&model_bytes(nodes, vec![make_tensor_f32("W", &[2, 3, 0, 3], &[])], &[3, 8, 8], "y", 17));
    assert_contains(&msg, &["c/Conv", "empty"]);
    // MaxPool whose indices are used.
    let nodes = vec![
        make_node("MaxPool", "p/MaxPool", &["x"], &["v", "idx"], vec![attr_ints("kernel_shape", &[2, 2])]),
        make_node("Identity", "i/Identity", &["idx"], &["y"], vec![]),
    ];
    assert_contains(&err(&model_bytes(nodes, vec![], &[3, 8, 8], "y", 17)), &["p/MaxPool", "indices"]);
    let nodes = vec![make_node("MaxPool", "p/MaxPool", &["x"], &["y"], vec![])];
    assert_contains(&err(&model_bytes(nodes, vec![], &[3, 8, 8], "y", 17)), &["p/MaxPool", "kernel_shape"]);
    // Gemm with transA.
    let nodes = vec![make_node("Gemm", "g/Gemm", &["x", "W"], &["y"], vec![attr_int("transA", 1)])];
    assert_contains(&err(&model_bytes(nodes, vec![make_tensor_f32("W", &[4, 3], &vals(12, 1))], &[4], "y", 17)), &["g/Gemm", "transA"]);
    // Layout ops that would touch the batch axis.
    let shape = |n: &str, v: &[i64]| make_tensor_i64(n, &[v.len()], v);
    // [-1] merges the batch with the 6 values of a sample: nothing restores it before the output.
    let reshape = model_bytes(vec![make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![])], vec![shape("s", &[-1])], &[2, 3], "y", 17);
    assert_contains(&err(&reshape), &["r/Reshape", "batch merged with 6 rows"]);
    let reshape = model_bytes(vec![make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![])], vec![shape("s", &[-1, -1])], &[2, 3], "y", 17);
    assert_contains(&err(&reshape), &["r/Reshape", "invalid entry"]);
    let reshape = model_bytes(vec![make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![])], vec![shape("s", &[0, 4])], &[2, 3], "y", 17);
    assert_contains(&err(&reshape), &["r/Reshape", "cannot reshape"]);
    let reshape = model_bytes(vec![make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![])], vec![shape("s", &[-2, 6])], &[2, 3], "y", 17);
    assert_contains(&err(&reshape), &["r/Reshape", "batch"]);
    let reshape = model_bytes(vec![make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&reshape), &["r/Reshape", "'s' is not produced"]);
    let reshape = model_bytes(vec![make_node("Reshape", "r/Reshape", &["x"], &["y"], vec![])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&reshape), &["r/Reshape", "missing input 1"]);
    let sq = model_bytes(vec![make_node("Squeeze", "s/Squeeze", &["x", "a"], &["y"], vec![])], vec![shape("a", &[0])], &[1, 3], "y", 17);
    assert_contains(&err(&sq), &["s/Squeeze", "batch"]);
    let sq = model_bytes(vec![make_node("Squeeze", "s/Squeeze", &["x", "a"], &["y"], vec![])], vec![shape("a", &[2])], &[1, 3], "y", 17);
    assert_contains(&err(&sq), &["s/Squeeze", "not 1"]);
    let sq = model_bytes(vec![make_node("Squeeze", "s/Squeeze", &["x", "a"], &["y"], vec![])], vec![shape("a", &[7])], &[1, 3], "y", 17);
    assert_contains(&err(&sq), &["s/Squeeze", "out of range"]);
    let un = model_bytes(vec![make_node("Unsqueeze", "u/Unsqueeze", &["x", "a"], &["y"], vec![])], vec![shape("a", &[0])], &[3], "y", 17);
    assert_contains(&err(&un), &["u/Unsqueeze", "batch"]);
    let tr = model_bytes(vec![make_node("Transpose", "t/Transpose", &["x"], &["y"], vec![attr_ints("perm", &[1, 0, 2])])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&tr), &["t/Transpose", "perm[0] must be 0"]);
    let tr = model_bytes(vec![make_node("Transpose", "t/Transpose", &["x"], &["y"], vec![attr_ints("perm", &[0, 1, 1])])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&tr), &["t/Transpose", "perm"]);
    let fl = model_bytes(vec![make_node("Flatten", "f/Flatten", &["x"], &["y"], vec![attr_int("axis", 2)])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&fl), &["f/Flatten", "axis=1"]);
    let fl = model_bytes(vec![make_node("Flatten", "f/Flatten", &["x"], &["y"], vec![attr_int("axis", 0)])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&fl), &["f/Flatten", "axis=1"]);
    let cat = model_bytes(vec![make_node("Concat", "c/Concat", &["x", "x"], &["y"], vec![attr_int("axis", 0)])], vec![], &[2, 3], "y", 17);
    assert_contains(&err(&cat), &["c/Concat", "batch"]);
    let pad = model_bytes(vec![make_node("Pad", "p/Pad", &["x", "p"], &["y"], vec![])], vec![shape("p", &[1, 0, 0, 0])], &[3], "y", 17);
    assert_contains(&err(&pad), &["p/Pad", "batch"]);
    let pad = model_bytes(vec![make_node("Pad", "p/Pad", &["x", "p"], &["y"], vec![])], vec![shape("p", &[0, -1, 0, 0])], &[3], "y", 17);
    assert_contains(&err(&pad), &["p/Pad", "negative pads"]);
    let pad = model_bytes(vec![make_node("Pad", "p/Pad", &["x", "p"], &["y"], vec![attr_string("mode", "wrap")])], vec![shape("p", &[0, 1, 0, 1])], &[3], "y", 17);
    assert_contains(&err(&pad), &["p/Pad", "wrap"]);
    // Activations with bad parameters.
    let clip = model_bytes(vec![make_node("Clip", "c/Clip", &["x"], &["y"], vec![attr_float("min", 6.0), attr_float("max", 0.0)])], vec![], &[3], "y", 11);
    assert_contains(&err(&clip), &["c/Clip", "min 6"]);
    let lrelu = model_bytes(vec![make_node("LeakyRelu", "l/LeakyRelu", &["x"], &["y"], vec![attr_float("alpha", f32::NAN)])], vec![], &[3], "y", 17);
    assert_contains(&err(&lrelu), &["l/LeakyRelu", "alpha"]);
    let selu = model_bytes(vec![make_node("Selu", "s/Selu", &["x"], &["y"], vec![attr_float("alpha", 2.0)])], vec![], &[3], "y", 17);
    assert_contains(&err(&selu), &["s/Selu", "alpha"]);
    // Adding a constant that is neither a layer bias nor a per-channel shift.
    let add = model_bytes(vec![make_node("Add", "a/Add", &["x", "c"], &["y"], vec![])], vec![make_tensor_f32("c", &[2, 3], &[1.0; 6])], &[3], "y", 17);
    assert_contains(&err(&add), &["a/Add", "constant", "not per-channel"]);
    // A constant where a computed tensor is needed.
    let mm = model_bytes(vec![make_node("MatMul", "m/MatMul", &["W", "x"], &["y"], vec![])], vec![make_tensor_f32("W", &[3, 3], &[1.0; 9])], &[3], "y", 17);
    assert_contains(&err(&mm), &["m/MatMul", "constant"]);
    // A weight that is not a constant.
    let mm = model_bytes(vec![make_node("MatMul", "m/MatMul", &["x", "x"], &["y"], vec![])], vec![], &[3], "y", 17);
    assert_contains(&err(&mm), &["m/MatMul", "must be a constant"]);
    // A bad Constant node.
    let c = make_node("Constant", "k/Constant", &[], &["s"], vec![attr_string("value_string", "hi")]);
    let r = make_node("Reshape", "r/Reshape", &["x", "s"], &["y"], vec![]);
    assert_contains(&err(&model_bytes(vec![c, r], vec![], &[3], "y", 17)), &["k/Constant", "value_string"]);
}

#[test]
fn huge_shapes_are_refused() {
    // 2^21 padding per side on a 2-D input would make a 2^44-element tensor.
    let p = 1i64 << 21;
    let pads = make_tensor_i64("p", &[6], &[0, p, p, 0, p, p]);
    let bytes = model_bytes(vec![make_node("Pad", "p/Pad", &["x", "p"], &["y"], vec![])], vec![pads], &[2, 2], "y", 17);
    assert_contains(&err(&bytes), &["p/Pad", "too large"]);
    // Upsampling by the largest factor allowed on both axes of a large plane.
    let scales = make_tensor_f32("s", &[4], &[1.0, 1.0, 1024.0, 1024.0]);
    let bytes = model_bytes(vec![make_node("Resize", "up/Resize", &["x", "", "s"], &["y"], vec![attr_string("mode", "nearest")])], vec![scales.clone()], &[4, 512, 512], "y", 17);
    assert_contains(&err(&bytes), &["activations of one sample would take", "RELPROP_MAX_BYTES"]);
    let big = make_tensor_f32("s", &[4], &[1.0, 1.0, 1e9, 2.0]);
    let bytes = model_bytes(vec![make_node("Resize", "up/Resize", &["x", "", "s"], &["y"], vec![attr_string("mode", "nearest")])], vec![big], &[1, 2, 2], "y", 17);
    assert_contains(&err(&bytes), &["up/Resize", "scale 1000000000"]);
    let vi = value_info("x", &[1 << 30, 1 << 30]);
    let g = make_graph("t", vec![make_node("Relu", "r", &["x"], &["y"], vec![])], vec![vi], vec![untyped("y")], vec![]);
    assert_contains(&err(&encode_model(&make_model(g, 17))), &["input 'x'", "too large"]);
}

/// Structured fuzzing: decode a golden model, change one thing (an attribute, a dimension, an op type, an
/// input name, the input shape), re-encode and import. Nothing may panic; whatever imports must validate.
#[test]
fn structured_mutations_never_panic() {
    use relprop_onnx::proto::tensor_shape_proto::dimension::Value as Dim;
    use relprop_onnx::proto::type_proto::Value as Ty;

    const INTS: [i64; 12] = [-7, -2, -1, 0, 1, 2, 3, 4, 7, 1 << 20, i64::MAX, i64::MIN];
    const FLOATS: [f32; 7] = [0.0, -1.0, 0.5, 1e30, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    const OPS: [&str; 49] = [
        "Conv", "MatMul", "Gemm", "Add", "Sum", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization",
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Pad", "Concat", "Dropout", "Identity", "Softmax",
        "LeakyRelu", "GlobalMaxPool", "Constant", "Erf", "Neg", "ReduceMean", "Sqrt", "Reciprocal", "LayerNormalization",
        "PRelu", "ReduceProd", "ReduceSumSquare", "Expand", "Elu", "Greater", "Not", "Min", "Max", "InstanceNormalization",
        "DepthToSpace", "SpaceToDepth", "ConstantOfShape", "Cast", "Abs", "Log", "Softsign", "Celu", "Tile",
    ];
    // The shipped models, two goldens whose layers are spelled out over several nodes (LayerNorm, GELU, a
    // rank-4 Tensordot; PReLU), tf2onnx's fused Keras LayerNorm, so the pattern matchers see broken variants of
    // their patterns, torch.onnx's restoration idioms (pads from an integer constant chain) and tf2onnx's
    // Conv1DTranspose (a crop and pads computed from shapes).
    let fused_ln = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keras_ln_fused.onnx")).unwrap();
    let data = |f: &str| std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(f)).unwrap();
    let files: Vec<Vec<u8>> = ONNX_FILES
        .iter()
        .chain(&["convnext_block", "prelu"])
        .map(|s| golden_bytes(s))
        .chain([fused_ln, data("torch_restore.onnx"), data("keras_conv1d_transpose.onnx")])
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    // RELPROP_FUZZ_ROUNDS=100000 for a longer run.
    let rounds: usize = std::env::var("RELPROP_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let mut imported = 0;
    for bytes in &files {
        let orig: ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
        for _ in 0..rounds {
            let mut m = orig.clone();
            let g = m.graph.as_mut().unwrap();
            for _ in 0..1 + next(3) {
                let k = next(g.node.len());
                match next(7) {
                    0 => {
                        let node = &mut g.node[k];
                        if !node.attribute.is_empty() {
                            let a = next(node.attribute.len());
                            let len = next(6);
                            node.attribute[a].ints = (0..len).map(|_| INTS[next(INTS.len())]).collect();
                            node.attribute[a].i = Some(INTS[next(INTS.len())]);
                            node.attribute[a].f = Some(FLOATS[next(FLOATS.len())]);
                        }
                    }
                    1 => {
                        let names = ["strides", "pads", "kernel_shape", "dilations", "group", "axis", "axes", "perm", "auto_pad", "epsilon", "transB", "ceil_mode"];
                        let name = names[next(names.len())];
                        let ints: Vec<i64> = (0..next(6)).map(|_| INTS[next(INTS.len())]).collect();
                        let attr = match name {
                            "auto_pad" => attr_string(name, ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET", "x"][next(5)]),
                            "epsilon" => attr_float(name, FLOATS[next(FLOATS.len())]),
                            "group" | "axis" | "transB" | "ceil_mode" => attr_int(name, INTS[next(INTS.len())]),
                            _ => attr_ints(name, &ints),
                        };
                        g.node[k].attribute.retain(|a| a.name.as_deref() != Some(name));
                        g.node[k].attribute.push(attr);
                    }
                    2 => g.node[k].op_type = Some(OPS[next(OPS.len())].into()),
                    3 => {
                        let i = next(g.initializer.len());
                        let t = &mut g.initializer[i];
                        match next(3) {
                            0 => t.dims = (0..next(5)).map(|_| INTS[next(8)]).collect(),
                            1 => {
                                let d = next(t.dims.len());
                                if let Some(x) = t.dims.get_mut(d) {
                                    *x = INTS[next(INTS.len())];
                                }
                            }
                            _ => {
                                if let Some(r) = t.raw_data.as_mut() {
                                    let n = next(r.len() + 1);
                                    r.truncate(n);
                                }
                            }
                        }
                    }
                    4 => {
                        // Rewire an input to some other value (possibly creating cycles or dangling names).
                        let j = next(g.node.len());
                        let other = g.node[j].output.first().cloned().unwrap_or_default();
                        let node = &mut g.node[k];
                        if !node.input.is_empty() {
                            let i = next(node.input.len());
                            node.input[i] = if next(4) == 0 { String::new() } else { other };
                        }
                    }
                    5 => {
                        if let Some(Ty::TensorType(tt)) = g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut()) {
                            let dims = &mut tt.shape.as_mut().unwrap().dim;
                            let d = next(dims.len());
                            dims[d].value = Some(Dim::DimValue(INTS[next(INTS.len())]));
                        }
                    }
                    _ => {
                        let node = &mut g.node[k];
                        match next(3) {
                            0 => node.output.push(format!("extra{}", next(3))),
                            1 => node.input.truncate(next(node.input.len() + 1)),
                            _ => node.input.push(["x", "", "input", "const_fold_opt__27"][next(4)].into()),
                        }
                    }
                }
            }
            if let Ok(graph) = relprop_onnx::decode(&encode_model(&m), "mutated.onnx") {
                graph.validate().unwrap();
                imported += 1;
            }
        }
    }
    assert!(imported > 0, "some mutations (e.g. harmless attribute values) still import");
    eprintln!("{imported} of {} mutated models imported", files.len() * rounds);
}
