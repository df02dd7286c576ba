//! Analyzer presets, method names and parameter checks (SPEC 7-9), without any backend.

use relprop_core::analyzers::{Analyzer, KernelChoice, ANALYZER_CLASSES};
use relprop_core::methods::{method_names, parse_method};
use relprop_core::{Error, Params, Rule};

fn p(items: &[&str]) -> Params {
    Params::parse(items).unwrap()
}

#[test]
fn the_114_method_names_are_signxais() {
    let names = method_names();
    assert_eq!(names.len(), 114);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../golden/manifest.json")).unwrap()).unwrap();
    let mut from_reference: Vec<String> = manifest["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["api"] != "class" && r["model"] == "model_a")
        .map(|r| r["analyzer"].as_str().unwrap().to_string())
        .collect();
    from_reference.sort();
    let mut ours = names.clone();
    ours.sort();
    assert_eq!(ours, from_reference);
    for n in &names {
        parse_method(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
}

#[test]
fn method_names_resolve_like_the_wrappers() {
    let a = parse_method("lrpsign_epsilon_0_25_std_x_mu_neg_0_5").unwrap();
    assert_eq!(a.kernel, KernelChoice::All(Rule::StdxEpsilon { stdfactor: 0.25, bias: true, batch_std: false }));
    assert_eq!(a.input_layer_rule, Some(Rule::SignMu { mu: -0.5 }));
    let a = parse_method("zblrp_epsilon_0_001_VGG16ILSVRC").unwrap();
    assert_eq!(a.kernel, KernelChoice::All(Rule::Epsilon { epsilon: 0.001, bias: true }));
    assert_eq!(a.input_layer_rule, Some(Rule::Bounded { low: -123.68, high: 151.061 }));
    let a = parse_method("lrpz_sequential_composite_b").unwrap();
    assert_eq!(
        a.kernel,
        KernelChoice::Composite { dense: Rule::Epsilon { epsilon: 0.1, bias: true }, conv: Rule::AlphaBeta { alpha: 2.0, beta: 1.0, bias: true } }
    );
    assert_eq!(a.input_layer_rule, Some(Rule::Z { bias: true }));
    assert_eq!(parse_method("lrp_epsilon_100").unwrap().input_layer_rule, None);
    for bad in ["lrpz_z", "lrp_epsilon_0_3", "gradient", "", "lrp_"] {
        assert!(matches!(parse_method(bad), Err(Error::Unknown { .. })), "{bad}");
    }
}

#[test]
fn every_seed_class_builds_with_defaults() {
    for c in ANALYZER_CLASSES {
        let params = if *c == "LRP" { p(&["rule=Z"]) } else if *c == "LRPAlphaBeta" { p(&["alpha=2"]) } else { Params::default() };
        Analyzer::from_class(c, &params).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    let a = Analyzer::from_class("LRPRuleUntilIndex", &Params::default()).unwrap();
    let b = Analyzer::from_class("LRPSequentialCompositeBFlat", &p(&["until_layer_idx=0", "until_index_rule=Flat"])).unwrap();
    assert_eq!((a.kernel, a.input_layer_rule, a.until), (b.kernel, b.input_layer_rule, b.until));
}

#[test]
fn parameter_checks_are_signxais() {
    let err = |c: &str, items: &[&str]| Analyzer::from_class(c, &p(items)).unwrap_err().to_string();
    assert!(err("LRPEpsilon", &["epsilon=0"]).contains("epsilon must be > 0"));
    assert!(err("LRPEpsilon", &["epsilon=-1"]).contains("epsilon"));
    assert!(err("LRPStdxEpsilon", &["epsilon=0"]).contains("epsilon"));
    assert!(err("LRPAlphaBeta", &[]).contains("neither alpha or beta"));
    assert!(err("LRPAlphaBeta", &["alpha=0.5"]).contains("alpha >= 1"));
    assert!(err("LRPAlphaBeta", &["beta=-1"]).contains("beta >= 0"));
    assert!(err("LRPAlphaBeta", &["alpha=3", "beta=1"]).contains("alpha - beta = 1"));
    assert!(err("LRPEpsilon", &["epsilon=abc"]).contains("not a number"));
    assert!(err("LRPGamma", &["gamma=x"]).contains("not a number"));
    assert!(err("LRP", &["rule=Gamma"]).contains("gamma must be given"));
    assert!(err("LRP", &["rule=Nope"]).contains("unknown rule"));
    assert!(err("LRPNope", &[]).contains("unknown analyzer"));
    assert!(err("LRPZ", &["frobnicate=1"]).contains("unknown parameter"));
    assert!(err("LRP", &["rule=AlphaBetaX1000Rule"]).contains("cannot construct AlphaBetaX"));
    assert!(err("LRP", &["rule=Z", "bn_layer_fuse_mode=three"]).contains("one_linear"));
    assert!(err("LRPSequentialCompositeAFlat", &["input_layer_rule=Z"]).contains("fixes input_layer_rule"));
    // inferred alpha/beta
    let a = Analyzer::from_class("LRPAlphaBeta", &p(&["beta=2"])).unwrap();
    assert_eq!(a.kernel, KernelChoice::All(Rule::AlphaBeta { alpha: 3.0, beta: 2.0, bias: true }));
    // gamma accepts zero and negative values, as signxai does
    assert!(Analyzer::from_class("LRPGamma", &p(&["gamma=-0.5"])).is_ok());
}

#[test]
fn string_rules_take_parameters_from_the_kwargs_route() {
    // LRP(rule='Epsilon', input_layer_rule='SIGN', epsilon=0.1): the epsilon reaches the Epsilon rule.
    let a = Analyzer::from_class("LRP", &p(&["rule=Epsilon", "input_layer_rule=SIGN", "epsilon=0.1"])).unwrap();
    assert_eq!(a.kernel, KernelChoice::All(Rule::Epsilon { epsilon: 0.1, bias: true }));
    assert_eq!(a.input_layer_rule, Some(Rule::Sign));
    // class names and rule keys alike; a (low, high) tuple is Bounded
    let a = Analyzer::from_class("LRP", &p(&["rule=ZPlusRule", "input_layer_rule=(-2, 3)"])).unwrap();
    assert_eq!(a.kernel, KernelChoice::All(Rule::AlphaBeta { alpha: 1.0, beta: 0.0, bias: false }));
    assert_eq!(a.input_layer_rule, Some(Rule::Bounded { low: -2.0, high: 3.0 }));
    let a = Analyzer::from_class("LRP", &p(&["rule=Z", "input_layer_rule=SIGNmu", "mu=0.5"])).unwrap();
    assert_eq!(a.input_layer_rule, Some(Rule::SignMu { mu: 0.5 }));
    // corrected rules under their own names
    assert_eq!(Rule::from_name("ZBox", &p(&["low=-1", "high=2"])).unwrap(), Rule::ZBox { low: -1.0, high: 2.0 });
    assert_eq!(
        Rule::from_name("AlphaBetaX2m100Textbook", &Params::default()).unwrap(),
        Rule::AlphaBetaX { alpha: (2.0, 0.0), beta: (1.0, 0.0), bias: true }
    );
}
