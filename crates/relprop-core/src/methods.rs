//! signxai's method-name strings (`signxai.methods.wrappers`, SPEC 9): all 114 LRP names, each parsed into the
//! same [`Analyzer`] presets the class API uses.
//!
//! Grammar: `<prefix>_<body>[_mu_<m>][_VGG16ILSVRC]`. Only the names signxai defines are accepted, so a
//! pipeline that runs on relprop also runs on signxai.

use crate::analyzers::Analyzer;
use crate::error::{Error, Result};
use crate::rules::Params;

const EPS12: &[&str] = &["0_001", "0_01", "0_1", "0_2", "0_5", "1", "5", "10", "20", "50", "75", "100"];
const EPS_ZB: &[&str] = &["0_001", "0_01", "0_1", "0_2", "0_5", "1", "5", "10", "20", "100"];
const EPS6: &[&str] = &["0_01", "0_1", "1", "10", "20", "100"];
const STD6: &[&str] = &["0_1", "0_25", "0_5", "1", "2", "3"];
const STD3: &[&str] = &["0_1", "0_25", "0_5"];
const MU3: &[&str] = &["0", "0_5", "neg_0_5"];
const ZB: &str = "_VGG16ILSVRC";

/// All 114 LRP method names of signxai 1.1.9.2, in a stable order.
pub fn method_names() -> Vec<String> {
    let mut v: Vec<String> = Vec::with_capacity(114);
    let mut push_all = |prefixes: &[&str], body: &str| {
        for p in prefixes {
            v.push(if *p == "zblrp" { format!("zblrp_{body}{ZB}") } else { format!("{p}_{body}") });
        }
    };
    push_all(&["lrp", "lrpsign", "w2lrp", "flatlrp", "zblrp"], "z");
    for e in EPS12 {
        push_all(&["lrp", "lrpsign", "lrpz"], &format!("epsilon_{e}"));
    }
    for e in EPS_ZB {
        push_all(&["zblrp"], &format!("epsilon_{e}"));
    }
    for e in EPS6 {
        push_all(&["w2lrp", "flatlrp"], &format!("epsilon_{e}"));
    }
    for m in MU3 {
        push_all(&["lrpsign"], &format!("epsilon_100_mu_{m}"));
    }
    for s in STD6 {
        push_all(&["lrp", "lrpsign", "lrpz"], &format!("epsilon_{s}_std_x"));
    }
    for s in STD3 {
        push_all(&["zblrp", "w2lrp", "flatlrp"], &format!("epsilon_{s}_std_x"));
    }
    for m in MU3 {
        push_all(&["lrpsign"], &format!("epsilon_0_25_std_x_mu_{m}"));
    }
    let all6 = ["lrp", "lrpsign", "lrpz", "zblrp", "w2lrp", "flatlrp"];
    push_all(&all6, "alpha_1_beta_0");
    push_all(&all6, "sequential_composite_a");
    push_all(&all6, "sequential_composite_b");
    v
}

/// "0_001" → 0.001, "neg_0_5" → -0.5.
fn number(s: &str) -> Option<f32> {
    let (neg, s) = match s.strip_prefix("neg_") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let x: f32 = s.replacen('_', ".", 1).parse().ok()?;
    Some(if neg { -x } else { x })
}

/// Parse a signxai method name into its analyzer preset.
pub fn parse_method(name: &str) -> Result<Analyzer> {
    let names = method_names();
    if !names.iter().any(|n| n == name) {
        let close: Vec<&String> = names.iter().filter(|n| n.starts_with(name.split('_').next().unwrap_or(""))).take(6).collect();
        let hint = if close.is_empty() {
            " (run `relprop methods` for the 114 names)".to_string()
        } else {
            format!(" (similar: {}, ...; run `relprop methods` for all 114)", close.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
        };
        return Err(Error::Unknown { kind: "method".into(), name: name.into(), hint });
    }
    let bad = || Error::Unknown { kind: "method".into(), name: name.into(), hint: String::new() };
    let n = name.strip_suffix(ZB).unwrap_or(name);
    let (n, mu) = match n.split_once("_mu_") {
        Some((head, m)) => (head, Some(number(m).ok_or_else(bad)?)),
        None => (n, None),
    };
    let (prefix, body) = n.split_once('_').ok_or_else(bad)?;
    let mut p = Params::default();
    let class = if body == "z" {
        "LRPZ"
    } else if body == "alpha_1_beta_0" {
        "LRPAlpha1Beta0"
    } else if body == "sequential_composite_a" {
        "LRPSequentialCompositeA"
    } else if body == "sequential_composite_b" {
        "LRPSequentialCompositeB"
    } else if let Some(f) = body.strip_prefix("epsilon_").and_then(|b| b.strip_suffix("_std_x")) {
        p.set("stdfactor", &number(f).ok_or_else(bad)?.to_string());
        "LRPStdxEpsilon"
    } else if let Some(e) = body.strip_prefix("epsilon_") {
        p.set("epsilon", &number(e).ok_or_else(bad)?.to_string());
        "LRPEpsilon"
    } else {
        return Err(bad());
    };
    let input_rule = match (prefix, mu) {
        (_, Some(m)) => {
            p.set("mu", &m.to_string());
            Some("SIGNmu")
        }
        ("lrp", None) => None,
        ("lrpsign", None) => Some("SIGN"),
        ("lrpz", None) => Some("Z"),
        ("w2lrp", None) => Some("WSquare"),
        ("flatlrp", None) => Some("Flat"),
        ("zblrp", None) => {
            p.set("low", "-123.68").set("high", "151.061");
            Some("Bounded")
        }
        _ => return Err(bad()),
    };
    if let Some(r) = input_rule {
        p.set("input_layer_rule", r);
    }
    let mut a = Analyzer::from_class(class, &p)?;
    a.name = name.to_string();
    Ok(a)
}
