//! The `relprop` binary end to end: a golden map through the CLI, and hostile input of every kind ending in a
//! one-line message that names the problem, a non-zero exit, and never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use relprop_core::{npy, Tensor};
use relprop_onnx::builder::*;

fn golden(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden").join(p)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("relprop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn relprop(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relprop")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn explain(model: &Path, input: &Path, extra: &[&str]) -> (i32, String) {
    let out = tmp("R.npy");
    let mut args = vec!["explain", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, _, err) = relprop(&args);
    (code, err)
}

/// Fails unless the run failed cleanly with a message containing `needle`.
fn assert_refused(code: i32, err: &str, needle: &str) {
    assert_ne!(code, 0, "must fail: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "message should mention '{needle}': {err}");
}

fn model_a() -> PathBuf {
    golden("onnx/model_a_opset13.onnx")
}

fn input() -> PathBuf {
    golden("input_x.npy")
}

fn write_npy(name: &str, t: &Tensor) -> PathBuf {
    let p = tmp(name);
    npy::write(&p, t).unwrap();
    p
}

fn write_onnx(name: &str, nodes: Vec<relprop_onnx::proto::NodeProto>, inits: Vec<relprop_onnx::proto::TensorProto>, out: &str) -> PathBuf {
    let g = make_graph("g", nodes, vec![value_info("x", &[4])], vec![value_info(out, &[4])], inits);
    let p = tmp(name);
    std::fs::write(&p, encode_model(&make_model(g, 13))).unwrap();
    p
}

use relprop_onnx::encode_model;

#[test]
fn explain_reproduces_a_signxai_map_and_writes_a_heatmap() {
    let out = tmp("golden.npy");
    let png = tmp("golden.png");
    let (code, _, err) = relprop(&[
        "explain", "--model", model_a().to_str().unwrap(), "--input", input().to_str().unwrap(), "--method", "lrpsign_epsilon_0_1",
        "--output", out.to_str().unwrap(), "--heatmap", png.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = npy::read(&out).unwrap();
    let reference = npy::read(&golden("model_a__wrapper__lrpsign_epsilon_0_1.npy")).unwrap();
    assert_eq!(r.shape, vec![1, 8, 8, 3]);
    assert!(Tensor::new(vec![8, 8, 3], r.data.clone()).unwrap().max_rel_diff(&reference) <= 1e-4);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // `--logits` writes the model output the explanation starts from: Keras' logits for this input.
    let logits = tmp("golden_logits.npy");
    let (code, _, err) = relprop(&[
        "explain", "--model", model_a().to_str().unwrap(), "--input", input().to_str().unwrap(), "--method", "lrp_z",
        "--output", out.to_str().unwrap(), "--logits", logits.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (got, keras) = (npy::read(&logits).unwrap(), npy::read(&golden("model_a__logits.npy")).unwrap());
    assert_eq!(got.shape, keras.shape);
    assert!(got.max_rel_diff(&keras) <= 1e-5, "logits {:?} vs Keras {:?}", got.data, keras.data);
    // The class API with parameters gives the same map.
    let (code, _, err) = relprop(&[
        "explain", "--model", model_a().to_str().unwrap(), "--input", input().to_str().unwrap(), "--analyzer", "LRPEpsilon",
        "--param", "epsilon=0.1", "--param", "input_layer_rule=SIGN", "--output", out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(npy::read(&out).unwrap(), r);
}

#[test]
fn merge_layers_take_signxai_order_unless_declared_is_asked() {
    // dense_blocks: signxai applies its Concatenates as [f(x), x] and its Subtract as c - a (docs/divergences.md).
    let model = golden("onnx/dense_blocks.onnx");
    let x = golden("dense_blocks__input0.npy");
    let out = tmp("blocks.npy");
    let run = |extra: &[&str]| {
        let mut args = vec!["explain", "--model", model.to_str().unwrap(), "--input", x.to_str().unwrap(), "--analyzer", "LRPZ", "--output", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, _, err) = relprop(&args);
        assert_eq!(code, 0, "{err}");
        (npy::read(&out).unwrap(), err)
    };
    let (r, err) = run(&[]);
    assert_eq!(err.matches("note: signxai applies").count(), 3, "{err}");
    assert!(err.contains("dense_blocks/b1_concat") && err.contains("dense_blocks/sub"), "{err}");
    let reference = npy::read(&golden("dense_blocks__in0__LRPZ__max.npy")).unwrap();
    assert!(Tensor::new(vec![8, 8, 3], r.data.clone()).unwrap().max_rel_diff(&reference) <= 1e-4);
    // The model as declared: no note, and another map (another function).
    let (d, err) = run(&["--merge-order", "declared"]);
    assert!(!err.contains("note:"), "{err}");
    assert!(Tensor::new(vec![8, 8, 3], d.data).unwrap().max_rel_diff(&reference) > 1e-2);
    let (code, err) = explain(&model, &x, &["--analyzer", "LRPZ", "--merge-order", "sideways"]);
    assert_refused(code, &err, "merge-order");
}

#[test]
fn methods_and_plan() {
    let (code, out, _) = relprop(&["methods"]);
    assert_eq!(code, 0);
    assert!(out.contains("lrpsign_epsilon_0_25_std_x_mu_neg_0_5") && out.contains("LRPRuleUntilIndex") && out.contains("ZBox"));
    let (code, out, err) = relprop(&["plan", "--model", model_a().to_str().unwrap(), "--method", "lrpz_sequential_composite_b"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Z") && out.contains("AlphaBeta(alpha=2, beta=1)") && out.contains("Epsilon(epsilon=0.1)") && out.contains("BatchNorm"), "{out}");
}

#[test]
fn bad_model_files() {
    let m = |args: &[&str]| explain(&PathBuf::from(args[0]), &input(), &["--method", "lrp_z"]);
    let (c, e) = m(&["/nonexistent/model.onnx"]);
    assert_refused(c, &e, "/nonexistent/model.onnx");
    let bytes = std::fs::read(model_a()).unwrap();
    let trunc = tmp("trunc.onnx");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let (c, e) = m(&[trunc.to_str().unwrap()]);
    assert_refused(c, &e, "trunc.onnx");
    let garbage = tmp("garbage.onnx");
    std::fs::write(&garbage, (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>()).unwrap();
    let (c, e) = m(&[garbage.to_str().unwrap()]);
    assert_refused(c, &e, "garbage.onnx");
}

#[test]
fn bad_graphs() {
    let x4 = write_npy("x4.npy", &Tensor::new(vec![1, 4], vec![0.1, -0.2, 0.3, 0.0]).unwrap());
    let run = |p: &Path| explain(p, &x4, &["--method", "lrp_z"]);
    // a cycle: a = Add(x, b); b = Relu(a)
    let cyc = write_onnx("cycle.onnx", vec![make_node("Add", "add1", &["x", "b"], &["a"], vec![]), make_node("Relu", "relu1", &["a"], &["b"], vec![])], vec![], "b");
    let (c, e) = run(&cyc);
    assert_refused(c, &e, "cycle");
    // an unsupported op
    let sin = write_onnx("sin.onnx", vec![make_node("Sin", "my_sin", &["x"], &["y"], vec![])], vec![], "y");
    let (c, e) = run(&sin);
    assert_refused(c, &e, "my_sin");
    assert!(e.contains("Sin"));
    // softmax at the output
    let w = make_tensor_f32("W", &[4, 4], &[0.5; 16]);
    let sm = write_onnx(
        "softmax.onnx",
        vec![make_node("MatMul", "dense/MatMul", &["x", "W"], &["z"], vec![]), make_node("Softmax", "dense/Softmax", &["z"], &["y"], vec![attr_int("axis", -1)])],
        vec![w.clone()],
        "y",
    );
    let (c, e) = run(&sm);
    assert_refused(c, &e, "softmax");
    // ... which --strip-softmax removes
    let (c, e) = explain(&sm, &x4, &["--method", "lrp_z", "--strip-softmax"]);
    assert_eq!(c, 0, "{e}");
}

#[test]
fn bad_inputs() {
    let run = |x: &Path| explain(&model_a(), x, &["--method", "lrp_z"]);
    let wrong = write_npy("wrong.npy", &Tensor::zeros(vec![1, 8, 8, 4]));
    let (c, e) = run(&wrong);
    assert_refused(c, &e, "[1, 8, 8, 4]");
    let mut nan = npy::read(&input()).unwrap();
    nan.data[17] = f32::NAN;
    let (c, e) = run(&write_npy("nan.npy", &nan));
    assert_refused(c, &e, "not finite");
    nan.data[17] = f32::INFINITY;
    let (c, e) = run(&write_npy("inf.npy", &nan));
    assert_refused(c, &e, "not finite");
    let garbled = tmp("garbled.npy");
    std::fs::write(&garbled, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<i8'}").unwrap();
    let (c, e) = run(&garbled);
    assert_refused(c, &e, "garbled.npy");
}

#[test]
fn bad_parameters_and_names() {
    let run = |extra: &[&str]| explain(&model_a(), &input(), extra);
    let cases: &[(&[&str], &str)] = &[
        (&["--analyzer", "LRPEpsilon", "--param", "epsilon=0"], "epsilon must be > 0"),
        (&["--analyzer", "LRPEpsilon", "--param", "epsilon=-0.5"], "epsilon"),
        (&["--analyzer", "LRPAlphaBeta", "--param", "alpha=3", "--param", "beta=1"], "alpha - beta = 1"),
        (&["--analyzer", "LRPAlphaBeta", "--param", "alpha=0.5"], "alpha >= 1"),
        (&["--analyzer", "LRPEpsilon", "--param", "epsilon=tiny"], "not a number"),
        (&["--analyzer", "LRPEpsilon", "--param", "epsilon"], "KEY=VALUE"),
        (&["--method", "lrp_epsilon_0_3"], "unknown method"),
        (&["--analyzer", "LRPMagic"], "unknown analyzer"),
        (&["--analyzer", "LRP", "--param", "rule=Magic"], "unknown rule"),
        (&["--method", "lrp_z", "--target", "7"], "out of range"),
        (&["--method", "lrp_z", "--target", "seven"], "target"),
        (&["--method", "lrp_z", "--backend", "cuda"], "unknown backend"),
        (&["--analyzer", "LRP", "--param", "rule=AlphaBetaX1000"], "AlphaBetaX"),
    ];
    for (extra, needle) in cases {
        let (c, e) = run(extra);
        assert_refused(c, &e, needle);
    }
    // neither or both of --method/--analyzer
    let (c, e) = run(&[]);
    assert_refused(c, &e, "method");
}

/// `--backend ort|tch` give ndarray's map (within 1e-5) through the CLI.
#[cfg(any(feature = "ort", feature = "tch"))]
#[test]
fn other_backends_through_the_cli() {
    let run = |backend: &str| {
        let out = tmp(&format!("R_{backend}.npy"));
        let (code, _, err) = relprop(&[
            "explain", "--model", model_a().to_str().unwrap(), "--input", input().to_str().unwrap(), "--method", "lrp_sequential_composite_b",
            "--backend", backend, "--output", out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{backend}: {err}");
        npy::read(&out).unwrap()
    };
    let reference = run("ndarray");
    for b in ["ort", "tch"].into_iter().filter(|b| (*b == "ort" && cfg!(feature = "ort")) || (*b == "tch" && cfg!(feature = "tch"))) {
        let r = run(b);
        assert!(r.max_rel_diff(&reference) <= 1e-5, "{b}: {}", r.max_rel_diff(&reference));
    }
}

/// `relprop export` writes an explanation graph (outputs logits and relevance); its numbers are checked against
/// Python's onnxruntime in relprop-ort's tests.
#[cfg(feature = "ort")]
#[test]
fn export_writes_an_explanation_graph() {
    let out = tmp("model_a_lrp.onnx");
    let (code, _, err) = relprop(&["export", "--model", model_a().to_str().unwrap(), "--method", "lrpz_epsilon_0_1", "--output", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.len() > 2000 && bytes.windows(9).any(|w| w == b"relevance"), "{} bytes", bytes.len());
    let (code, _, err) = relprop(&["export", "--model", model_a().to_str().unwrap(), "--method", "lrp_nope", "--output", out.to_str().unwrap()]);
    assert_refused(code, &err, "unknown method");
}

/// Relevance through reflect and edge pads against PyTorch's autograd: the fixture network is linear in its input
/// (pads, bias-free convolutions, a bias-free Linear), so LRP-Z without bias is the input times the gradient of the
/// selected logit, which tools/torch_fixtures.py stored from torch.
#[test]
fn pads_route_relevance_as_torch_autograd_does() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../relprop-onnx/tests/data");
    let (model, x, out) = (data.join("torch_pad_grad.onnx"), data.join("torch_pad_grad_input.npy"), tmp("pad_grad.npy"));
    let args = ["explain", "--model", model.to_str().unwrap(), "--input", x.to_str().unwrap(), "--output", out.to_str().unwrap()];
    let (code, _, err) = relprop(&[&args[..], &["--analyzer", "LRPZ", "--param", "bias=False"]].concat());
    assert_eq!(code, 0, "{err}");
    let r = npy::read(&out).unwrap();
    let reference = npy::read(&data.join("torch_pad_grad_reference.npy")).unwrap();
    assert_eq!(r.shape, reference.shape);
    assert!(reference.max_abs() > 0.0 && r.max_rel_diff(&reference) <= 1e-5, "{}", r.max_rel_diff(&reference));
}
