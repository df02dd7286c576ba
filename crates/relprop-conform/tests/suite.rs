//! The conformance suite itself: its files parse and cover what they must, malformed files are refused with
//! file, line and field, the whole suite passes on every backend built in, and the report stands alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use relprop_conform::spec::{self, Check};
use relprop_conform::{report, runner};
use relprop_core::analyzers::ANALYZER_CLASSES;
use relprop_core::methods::method_names;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn cases() -> Vec<spec::Case> {
    spec::load_dir(&root().join("specs"), &root()).unwrap()
}

fn write_spec(name: &str, text: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("relprop-spec-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn malformed_case_files_name_file_line_and_field() {
    let head = "suite: bad\ndefaults:\n  model: golden/onnx/model_a_opset13.onnx\n  input: golden/input_x.npy\ncases:\n  - name: fine\n    method: lrp_z\n";
    let cases: &[(&str, &str, &str)] = &[
        ("  - name: typo\n    analyser: LRPZ\n", ":8", "analyser"),
        ("  - name: both\n    method: lrp_z\n    analyzer: LRPZ\n", ":8", "cases[1].method"),
        ("  - name: nofile\n    method: lrp_z\n    golden: golden/nope.npy\n", ":8", "cases[1].golden"),
        ("  - name: target\n    method: lrp_z\n    target: sideways\n", ":8", "cases[1].target"),
        ("  - name: eps\n    analyzer: LRPEpsilon\n    params: {epsilon: 0}\n", ":8", "epsilon must be > 0"),
        ("  - name: check\n    method: lrp_z\n    checks: [{check: conservation}]\n", ":", "tol"),
        ("  - name: unknown check\n    method: lrp_z\n    checks: [{check: magic, tol: 1}]\n", ":", "magic"),
        ("  - name: backend\n    method: lrp_z\n    backends: [cuda]\n", ":8", "cases[1].backends"),
        ("  - [not, a, case\n", ":", "yaml"),
    ];
    for (i, (tail, line, field)) in cases.iter().enumerate() {
        let p = write_spec(&format!("bad{i}.yaml"), &format!("{head}{tail}"));
        let e = spec::load_file(&p, &root()).unwrap_err().to_string();
        // "<file>:<line>: ..." with the line of the case (8) or of the offending field inside it
        let line_no: usize = e.strip_prefix(&format!("{}:", p.display())).and_then(|r| r.split(':').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!((8..=10).contains(&line_no) || (*line == ":" && line_no > 0), "case {i}: line {line_no}: {e}");
        assert!(e.contains(field), "case {i}: {e}");
    }
    let ok = write_spec("good.yaml", head);
    assert_eq!(spec::load_file(&ok, &root()).unwrap().len(), 1);
}

#[test]
fn coverage_every_class_rule_method_and_edge_on_every_golden_model() {
    let all = cases();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("golden/manifest.json")).unwrap()).unwrap();
    let models: Vec<String> = manifest["models"].as_object().unwrap().keys().cloned().collect();
    assert!(models.len() >= 2);
    for m in &models {
        let on: Vec<&spec::Case> = all.iter().filter(|c| c.model.file_name().unwrap().to_string_lossy().starts_with(m.as_str())).collect();
        let classes: BTreeSet<&str> = on.iter().filter_map(|c| c.analyzer_class.as_deref()).collect();
        for c in ANALYZER_CLASSES {
            assert!(classes.contains(c), "{m}: no case for class {c}");
        }
        let methods: BTreeSet<&str> = on.iter().filter_map(|c| c.method.as_deref()).collect();
        for n in method_names() {
            assert!(methods.contains(n.as_str()), "{m}: no case for method {n}");
        }
        let named_rules: BTreeSet<String> = on.iter().flat_map(|c| [c.params.get("rule"), c.params.get("input_layer_rule")]).flatten().map(|r| r.trim_end_matches("Rule").to_string()).collect();
        for r in ["Z", "ZIgnoreBias", "Epsilon", "EpsilonIgnoreBias", "StdxEpsilon", "SIGN", "SIGNmu", "WSquare", "Flat", "AlphaBeta", "AlphaBetaIgnoreBias", "Alpha2Beta1", "Alpha2Beta1IgnoreBias", "Alpha1Beta0", "Alpha1Beta0IgnoreBias", "ZPlus", "ZPlusFast", "Gamma", "Bounded", "AlphaBetaX", "AlphaBetaX1000", "AlphaBetaX1010", "AlphaBetaX1001", "AlphaBetaX2m100", "ZBox", "GammaTextbook", "AlphaBetaXTextbook"] {
            assert!(named_rules.contains(r), "{m}: no case names rule {r}");
        }
        let values = |k: &str| -> Vec<f64> { on.iter().filter_map(|c| c.params.get(k)).filter_map(|v| v.parse().ok()).collect() };
        let has = |k: &str, f: &dyn Fn(f64) -> bool| values(k).into_iter().any(f);
        assert!(has("epsilon", &|e| e <= 1e-7) && has("epsilon", &|e| e >= 100.0) && has("epsilon", &|e| e <= 0.0), "{m}: epsilon edges");
        assert!(has("stdfactor", &|s| s <= 0.1) && has("stdfactor", &|s| s >= 3.0), "{m}: stdfactor edges");
        assert!(has("alpha", &|a| a == 1.0) && has("alpha", &|a| a < 1.0), "{m}: alpha edges");
        assert!(has("gamma", &|g| g == 0.0) && has("gamma", &|g| g < 0.0), "{m}: gamma edges");
        assert!(has("mu", &|v| v < 0.0) && has("mu", &|v| v == 0.0) && has("mu", &|v| v > 0.0), "{m}: mu edges");
        assert!(has("until_layer_idx", &|v| v == 0.0) && has("until_layer_idx", &|v| v > 10.0), "{m}: until_layer_idx edges");
        assert!(on.iter().any(|c| c.target == relprop_core::Target::All), "{m}: target all");
    }
    // the property checks are all used somewhere
    let used: BTreeSet<String> = all.iter().flat_map(|c| c.checks.iter().map(|k| format!("{k:?}").split([' ', '{']).next().unwrap().to_string())).collect();
    for k in ["Finite", "Shape", "Conservation", "TotalVsLogit", "SameAs", "SignmuThreshold", "BatchPerSample"] {
        assert!(used.contains(k), "check {k} unused");
    }
    assert!(all.iter().any(|c| c.checks.iter().any(|k| matches!(k, Check::SameAs { input_transform: Some(_), .. }))));
}

#[test]
fn the_whole_suite_passes_on_every_built_backend() {
    let backends: Vec<String> = relprop_conform::backends::ALL.iter().filter(|b| relprop_conform::backends::built(b)).map(|s| s.to_string()).collect();
    let run = runner::run(cases(), &backends, "cpu", None, |_, _, _| {});
    let failures: Vec<String> = run
        .outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{} [{}]: {:?}", run.cases[o.case].name, o.backend, o.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()))
        .collect();
    assert!(run.unavailable.is_empty(), "{:?}", run.unavailable);
    assert!(run.outcomes.len() >= 1000 * backends.len(), "{} runs", run.outcomes.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let disagreements: Vec<String> = run
        .agreement
        .iter()
        .filter(|a| !a.ok())
        .map(|a| format!("{}/{}: {} vs {} differ by {:.2e} (input-rounding sensitivity {:?})", run.cases[a.case].suite, run.cases[a.case].name, a.a, a.b, a.diff, a.conditioning))
        .collect();
    assert!(disagreements.is_empty(), "cross-backend disagreement:\n{}", disagreements.join("\n"));
}

/// Minimal XHTML well-formedness: every tag closed in order, attributes quoted.
fn check_well_formed(s: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = s.trim_start_matches("<!DOCTYPE html>");
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("unclosed tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn report_is_generated_well_formed_and_self_contained() {
    let picked: Vec<spec::Case> = cases().into_iter().filter(|c| c.suite == "properties" || (c.suite.starts_with("reference model_a_opset13") && c.name.starts_with("LRPZ "))).collect();
    let run = runner::run(picked, &["ndarray".to_string(), "tch-not-built-here".to_string()], "cpu", None, |_, _, _| {});
    let html = report::html(&run);
    check_well_formed(&html);
    assert!(html.contains("data:image/png;base64,"), "heatmaps inlined");
    assert!(html.contains("<svg"), "conservation chart inlined");
    assert!(html.contains("1.1.9.2") && html.contains("2.12.1"), "reference versions");
    assert!(html.contains("not available"), "unavailable backend noted");
    let lower = html.to_lowercase();
    for bad in ["src=\"http", "href=", "<script", "<link", "url(", "@import", "src=\"/", "src=\"file"] {
        assert!(!lower.contains(bad), "report refers outside itself: {bad}");
    }
    // every img is inline
    assert_eq!(lower.matches("<img").count(), lower.matches("src=\"data:image/png;base64,").count());
}
