//! Exported explanation graphs run by plain Python onnxruntime (the `.deps/venv-ort` venv of `cargo xtask setup
//! ort`) give relprop's numbers (max relative difference <= 1e-5) and pass `onnx.checker.check_model(full_check=True)`.

mod common;

use std::process::Command;
use std::sync::Arc;

use relprop_core::{analyzer_from, npy, CompiledModel, ExplainOptions, Params, RulePlan, Target, Tensor};
use relprop_ort::OrtModel;

const SCRIPT: &str = r#"
import sys, json, numpy as np, onnx, onnxruntime as ort
cases = json.load(open(sys.argv[1]))
worst = 0.0
for c in cases:
    m = onnx.load(c["model"])
    onnx.checker.check_model(m, full_check=True)
    assert [o.name for o in m.graph.output][:2] == ["logits", "relevance"], [o.name for o in m.graph.output]
    s = ort.InferenceSession(c["model"], providers=["CPUExecutionProvider"])
    (inp,) = s.get_inputs()
    assert inp.name == c["input_name"], (inp.name, c["input_name"])
    x = np.load(c["x"])
    logits, rel = s.run(["logits", "relevance"], {inp.name: x})
    for got, want_file in ((rel, c["relevance"]), (logits, c["logits"])):
        want = np.load(want_file)
        assert got.shape == want.shape, (c["model"], got.shape, want.shape)
        diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
        if scale < 1e-6:  # signxai's Bounded rule gives maps of rounding noise (about 0): absolute check
            assert diff <= 1e-6, (c["model"], want_file, diff)
            continue
        worst = max(worst, diff / scale)
        assert diff <= 1e-5 * scale, (c["model"], want_file, diff / scale)
print(f"{len(cases)} exported graphs: onnx checker ok, worst relative difference {worst:.2e}")
"#;

#[test]
fn exported_graphs_run_in_python_onnxruntime() {
    let py = common::venv_python();
    let be = common::backend();
    let dir = std::env::temp_dir().join(format!("relprop-ort-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let golden = common::golden();
    // A batch of 2 (the graph's batch axis is symbolic).
    let x1 = npy::read(&golden.join("input_x.npy")).unwrap();
    let x2 = Tensor { shape: x1.shape.clone(), data: x1.data.iter().map(|v| 0.5 - v).collect() };
    let x = Tensor::concat_batch(&[x1, x2]);
    let x_file = dir.join("x.npy");
    npy::write(&x_file, &x).unwrap();
    let mut cases = Vec::new();
    let runs: &[(&str, &str, Target)] = &[
        ("model_a", "lrp_epsilon_0_1_std_x", Target::Max),
        ("model_a", "lrpsign_z", Target::Index(2)),
        ("model_a", "w2lrp_alpha_1_beta_0", Target::All),
        ("model_b", "zblrp_sequential_composite_b_VGG16ILSVRC", Target::Max),
        ("model_b", "lrpsign_sequential_composite_a", Target::Max),
        ("model_b", "flatlrp_epsilon_1", Target::Index(1)),
        ("model_b", "lrp_alpha_1_beta_0", Target::Max),
    ];
    for (i, (model, method, target)) in runs.iter().enumerate() {
        let g = Arc::new(relprop_onnx::load(&golden.join(format!("onnx/{model}_opset13.onnx"))).unwrap());
        let plan = RulePlan::resolve(&g, &analyzer_from(Some(method), None, &Params::default()).unwrap()).unwrap();
        let m = relprop_ort::export_explanation(&g, &plan, target, i == 0).unwrap();
        let file = dir.join(format!("{i}_{model}_{method}.onnx"));
        std::fs::write(&file, relprop_ort::encode(&m)).unwrap();
        let e = OrtModel::new(&be, g.clone()).unwrap().explain(&plan, &x, target, &ExplainOptions::default()).unwrap();
        let (rf, lf) = (dir.join(format!("{i}_relevance.npy")), dir.join(format!("{i}_logits.npy")));
        npy::write(&rf, &e.relevance).unwrap();
        npy::write(&lf, &e.output).unwrap();
        cases.push(format!(
            r#"{{"model": {:?}, "x": {:?}, "relevance": {:?}, "logits": {:?}, "input_name": {:?}}}"#,
            file.display().to_string(),
            x_file.display().to_string(),
            rf.display().to_string(),
            lf.display().to_string(),
            g.nodes[0].name
        ));
    }
    let cases_file = dir.join("cases.json");
    std::fs::write(&cases_file, format!("[{}]", cases.join(","))).unwrap();
    let out = Command::new(&py).arg("-c").arg(SCRIPT).arg(&cases_file).output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{so}");
    assert!(out.status.success(), "python onnxruntime cross-check failed:\n{so}\n{se}");
    if out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
