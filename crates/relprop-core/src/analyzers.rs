//! signxai's analyzer classes (SPEC 7) as presets: which rule each kernel layer gets, plus the
//! `input_layer_rule` and `until_layer_idx` overrides. [`crate::plan`] resolves a preset on a concrete graph.

use crate::error::{Error, Result};
use crate::rules::{check_alpha_beta, check_epsilon, gamma, stdfactor, Params, Rule};

/// The kernel-layer rule of a preset before the overrides.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelChoice {
    /// The same rule on every Dense and Conv layer.
    All(Rule),
    /// The sequential composites: one rule for Dense layers, another for convolutions.
    Composite { dense: Rule, conv: Rule },
}

/// A resolved analyzer configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Analyzer {
    /// What the user asked for (class name or method name), for reports.
    pub name: String,
    pub kernel: KernelChoice,
    /// Rule for the first kernel layer(s) after the input (highest priority).
    pub input_layer_rule: Option<Rule>,
    /// `until_index_rule` for kernel layers at depth `0..=idx`.
    pub until: Option<(usize, Rule)>,
}

/// The 21 analyzer classes of the seed (`LRPRuleUntilIndex` included).
pub const ANALYZER_CLASSES: &[&str] = &[
    "LRP", "LRPZ", "LRPZIgnoreBias", "LRPEpsilon", "LRPEpsilonIgnoreBias", "LRPStdxEpsilon", "LRPWSquare",
    "LRPFlat", "LRPAlphaBeta", "LRPAlpha2Beta1", "LRPAlpha2Beta1IgnoreBias", "LRPAlpha1Beta0",
    "LRPAlpha1Beta0IgnoreBias", "LRPZPlus", "LRPZPlusFast", "LRPGamma", "LRPSequentialCompositeA",
    "LRPSequentialCompositeB", "LRPSequentialCompositeAFlat", "LRPSequentialCompositeBFlat", "LRPRuleUntilIndex",
];

/// Parameter keys every class accepts: they either configure the class or travel, as in signxai's kwargs
/// route (SPEC 1.8), to the rules named by string.
const KEYS: &[&str] = &[
    "rule", "input_layer_rule", "until_layer_idx", "until_index_rule", "default_rule_configuration",
    "bn_layer_rule", "bn_layer_fuse_mode", "epsilon", "stdfactor", "bias", "alpha", "beta", "gamma", "mu", "low",
    "high", "std_over_batch", "alpha0", "alpha1", "beta0", "beta1", "copy_weights",
];

impl Analyzer {
    /// Build the preset of analyzer class `class` with parameters `p`, applying signxai's checks.
    pub fn from_class(class: &str, p: &Params) -> Result<Analyzer> {
        if let Some(k) = p.0.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::param(k, p.get(k).unwrap_or(""), format!("unknown parameter for {class} (known: {})", KEYS.join(", "))));
        }
        if let Some(mode) = p.get("bn_layer_fuse_mode") {
            if mode != "one_linear" && mode != "two_linear" {
                return Err(Error::param("bn_layer_fuse_mode", mode, "must be one_linear or two_linear"));
            }
        }
        if class != "LRP" && p.get("rule").is_some() && ANALYZER_CLASSES.contains(&class) {
            return Err(Error::param("rule", p.get("rule").unwrap_or(""), format!("{class} fixes its rule; use the LRP class to choose one")));
        }
        let bias = p.bool_or("bias", true)?;
        let all = |r: Rule| KernelChoice::All(r);
        let ab = |a: f32, b: f32, bias: bool| all(Rule::AlphaBeta { alpha: a, beta: b, bias });
        let composite = |conv: Rule| -> Result<KernelChoice> {
            let epsilon = check_epsilon(p.f32_or("epsilon", 0.1)?, class)?;
            Ok(KernelChoice::Composite { dense: Rule::Epsilon { epsilon, bias: true }, conv })
        };
        let a10 = Rule::AlphaBeta { alpha: 1.0, beta: 0.0, bias: true };
        let a21 = Rule::AlphaBeta { alpha: 2.0, beta: 1.0, bias: true };
        let mut fixed_input_rule = None;
        let kernel = match class {
            "LRP" => {
                let r = p.get("rule").ok_or_else(|| Error::param("rule", "None", "LRP needs a rule (e.g. rule=Epsilon)"))?;
                all(Rule::from_name(r, p)?)
            }
            "LRPZ" => all(Rule::Z { bias: true }),
            "LRPZIgnoreBias" => all(Rule::Z { bias: false }),
            "LRPEpsilon" => all(Rule::Epsilon { epsilon: check_epsilon(p.f32_or("epsilon", 1e-7)?, class)?, bias }),
            "LRPEpsilonIgnoreBias" => all(Rule::Epsilon { epsilon: check_epsilon(p.f32_or("epsilon", 1e-7)?, class)?, bias: false }),
            "LRPStdxEpsilon" => {
                // signxai asserts epsilon > 0 here but never uses it.
                check_epsilon(p.f32_or("epsilon", 1e-7)?, class)?;
                all(Rule::StdxEpsilon { stdfactor: stdfactor(p)?, bias, batch_std: p.bool_or("std_over_batch", false)? })
            }
            "LRPWSquare" => all(Rule::WSquare),
            "LRPFlat" => all(Rule::Flat),
            "LRPAlphaBeta" => {
                let (a, b) = check_alpha_beta(p.f32("alpha")?, p.f32("beta")?, class)?;
                ab(a, b, bias)
            }
            "LRPAlpha2Beta1" => ab(2.0, 1.0, true),
            "LRPAlpha2Beta1IgnoreBias" => ab(2.0, 1.0, false),
            "LRPAlpha1Beta0" => ab(1.0, 0.0, true),
            "LRPAlpha1Beta0IgnoreBias" | "LRPZPlus" => ab(1.0, 0.0, false),
            "LRPZPlusFast" => all(Rule::ZPlusFast),
            "LRPGamma" => all(Rule::Gamma { gamma: gamma(p, Some(0.5), class)?, bias }),
            "LRPSequentialCompositeA" => composite(a10)?,
            "LRPSequentialCompositeB" => composite(a21)?,
            "LRPSequentialCompositeAFlat" => {
                fixed_input_rule = Some(Rule::Flat);
                composite(a10)?
            }
            "LRPSequentialCompositeBFlat" => {
                fixed_input_rule = Some(Rule::Flat);
                composite(a21)?
            }
            "LRPRuleUntilIndex" => return Self::rule_until_index(p),
            _ => {
                return Err(Error::Unknown {
                    kind: "analyzer".into(),
                    name: class.into(),
                    hint: format!(" (known: {})", ANALYZER_CLASSES.join(", ")),
                })
            }
        };
        let mut input_layer_rule = p.get("input_layer_rule").filter(|s| *s != "None").map(|r| Rule::from_name(r, p)).transpose()?;
        if let Some(fixed) = fixed_input_rule {
            if input_layer_rule.is_some() {
                return Err(Error::param("input_layer_rule", p.get("input_layer_rule").unwrap_or(""), format!("{class} fixes input_layer_rule to Flat")));
            }
            input_layer_rule = Some(fixed);
        }
        let until = match p.usize("until_layer_idx")? {
            None => None,
            Some(idx) => {
                let r = p.get("until_index_rule").ok_or_else(|| Error::param("until_index_rule", "None", "until_layer_idx needs until_index_rule"))?;
                Some((idx, Rule::from_name(r, p)?))
            }
        };
        Ok(Analyzer { name: class.to_string(), kernel, input_layer_rule, until })
    }

    /// `LRPRuleUntilIndex(until_layer_idx=0, until_index_rule=FlatRule,
    /// default_rule_configuration=LRPSequentialCompositeBFlat, **kw)`.
    fn rule_until_index(p: &Params) -> Result<Analyzer> {
        let base = p.get("default_rule_configuration").unwrap_or("LRPSequentialCompositeBFlat");
        if base == "LRPRuleUntilIndex" {
            return Err(Error::param("default_rule_configuration", base, "cannot nest LRPRuleUntilIndex"));
        }
        let mut q = p.clone();
        q.0.remove("default_rule_configuration");
        if q.get("until_layer_idx").is_none() {
            q.set("until_layer_idx", "0");
        }
        if q.get("until_index_rule").is_none() {
            q.set("until_index_rule", "Flat");
        }
        let mut a = Analyzer::from_class(base, &q)?;
        a.name = "LRPRuleUntilIndex".into();
        Ok(a)
    }
}
