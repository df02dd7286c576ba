//! The LRP rules of signxai (SPEC sections 3-6) with their parameters, plus the corrected textbook rules
//! that signxai gets wrong (SPEC section 10), each under its own name.
//!
//! A [`Rule`] says *what* to do with a layer that has a kernel; [`crate::program`] turns it into a small
//! description (terms of linear maps, modifiers, stabilizers) that every backend executes the same way.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// signxai's `K.epsilon()`, used by SafeDivide and the BN rule.
pub const KERAS_EPSILON: f32 = 1e-7;

/// A rule for a layer with a kernel (Dense, Conv).
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `ZRule` (bias) / `ZIgnoreBiasRule`.
    Z { bias: bool },
    /// `EpsilonRule` / `EpsilonIgnoreBiasRule`: sign-aware stabilizer with sign(0) = +1.
    Epsilon { epsilon: f32, bias: bool },
    /// `StdxEpsilonRule`: epsilon = stdfactor * std(layer input). signxai takes the std over the whole batch;
    /// relprop's default is per sample (`batch_std = false`) so samples do not influence each other.
    StdxEpsilon { stdfactor: f32, bias: bool, batch_std: bool },
    /// `SIGNRule`: sign(x) (sign(0) = +1) instead of x, bias kept, no epsilon.
    Sign,
    /// `SIGNmuRule`: +1 where x >= mu else -1.
    SignMu { mu: f32 },
    /// `WSquareRule`: W², no bias, not multiplied by x.
    WSquare,
    /// `FlatRule`: all-ones kernel, no bias, not multiplied by x.
    Flat,
    /// `AlphaBetaRule` and its fixed variants (ZPlus = alpha 1, beta 0, no bias). signxai puts the full bias in
    /// both denominators (SPEC 4).
    AlphaBeta { alpha: f32, beta: f32, bias: bool },
    /// `ZPlusFastRule`: W⁺ on the unclipped input, no bias.
    ZPlusFast,
    /// `GammaRule` exactly as signxai codes it: (gamma-1)·LRP(W+W⁺) on non-negative inputs (SPEC 5).
    Gamma { gamma: f32, bias: bool },
    /// `BoundedRule` exactly as signxai codes it: returns ≈0 (SPEC 6).
    Bounded { low: f32, high: f32 },
    /// Corrected Z^B (textbook, iNNvestigate 1.x, zennit `ZBox`): `x⊙Wᵀs − low⊙W⁺ᵀs − high⊙W⁻ᵀs`.
    ZBox { low: f32, high: f32 },
    /// Corrected LRP-gamma: `x⊙(W+γW⁺)ᵀ[R / stab((W+γW⁺)x + b + γb⁺)]` with a 1e-6 sign-aware stabilizer
    /// (zennit's formula for non-negative inputs).
    GammaTextbook { gamma: f32, bias: bool },
    /// `AlphaBetaXRule` with the formula signxai would run if its constructor did not crash (SPEC 4b): four
    /// separately normalised parts, `a0·R_pp + a1·R_nn − (b0·R_pn + b1·R_np)`.
    AlphaBetaX { alpha: (f32, f32), beta: (f32, f32), bias: bool },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Z { bias: true } => write!(f, "Z"),
            Rule::Z { bias: false } => write!(f, "ZIgnoreBias"),
            Rule::Epsilon { epsilon, bias } => write!(f, "Epsilon(epsilon={epsilon}{})", nb(*bias)),
            Rule::StdxEpsilon { stdfactor, bias, batch_std } => {
                write!(f, "StdxEpsilon(stdfactor={stdfactor}{}{})", nb(*bias), if *batch_std { ", std over batch" } else { "" })
            }
            Rule::Sign => write!(f, "SIGN"),
            Rule::SignMu { mu } => write!(f, "SIGNmu(mu={mu})"),
            Rule::WSquare => write!(f, "WSquare"),
            Rule::Flat => write!(f, "Flat"),
            Rule::AlphaBeta { alpha, beta, bias } => write!(f, "AlphaBeta(alpha={alpha}, beta={beta}{})", nb(*bias)),
            Rule::ZPlusFast => write!(f, "ZPlusFast"),
            Rule::Gamma { gamma, bias } => write!(f, "Gamma(gamma={gamma}{})", nb(*bias)),
            Rule::Bounded { low, high } => write!(f, "Bounded(low={low}, high={high})"),
            Rule::ZBox { low, high } => write!(f, "ZBox(low={low}, high={high})"),
            Rule::GammaTextbook { gamma, bias } => write!(f, "GammaTextbook(gamma={gamma}{})", nb(*bias)),
            Rule::AlphaBetaX { alpha, beta, bias } => {
                write!(f, "AlphaBetaX(alpha=({}, {}), beta=({}, {}){})", alpha.0, alpha.1, beta.0, beta.1, nb(*bias))
            }
        }
    }
}

fn nb(bias: bool) -> &'static str {
    if bias { "" } else { ", no bias" }
}

/// Named parameters as the user gave them (`--param key=value`), with typed accessors that produce
/// [`Error::Param`] on bad values. Mirrors signxai's kwargs route (SPEC 1.8): every rule built from a name
/// takes the parameters it knows from this bag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// Parse `key=value` strings.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Params> {
        let mut p = Params::default();
        for it in items {
            let it = it.as_ref();
            let (k, v) = it.split_once('=').ok_or_else(|| Error::param(it, "", "expected KEY=VALUE"))?;
            p.set(k.trim(), v.trim());
        }
        Ok(p)
    }
    /// Set a parameter.
    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.0.insert(k.to_string(), v.to_string());
        self
    }
    /// Builder-style set.
    pub fn with(mut self, k: &str, v: impl fmt::Display) -> Self {
        self.set(k, &v.to_string());
        self
    }
    /// The raw string, if present.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }
    /// A float parameter, if present; errors if it is not a finite number.
    pub fn f32(&self, k: &str) -> Result<Option<f32>> {
        match self.get(k) {
            None | Some("None") => Ok(None),
            Some(v) => {
                let x: f32 = v.parse().map_err(|_| Error::param(k, v, "not a number"))?;
                if !x.is_finite() {
                    return Err(Error::param(k, v, "must be finite"));
                }
                Ok(Some(x))
            }
        }
    }
    /// A float parameter with a default.
    pub fn f32_or(&self, k: &str, default: f32) -> Result<f32> {
        Ok(self.f32(k)?.unwrap_or(default))
    }
    /// A boolean parameter (true/false/1/0, Python spellings too) with a default.
    pub fn bool_or(&self, k: &str, default: bool) -> Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Error::param(k, v, "expected true or false")),
            },
        }
    }
    /// A non-negative integer parameter.
    pub fn usize(&self, k: &str) -> Result<Option<usize>> {
        match self.get(k) {
            None | Some("None") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| Error::param(k, v, "expected a non-negative integer")),
        }
    }
}

/// signxai's `assert_lrp_epsilon_param` (SPEC 8): epsilon must be > 0 (no upper bound).
pub fn check_epsilon(epsilon: f32, caller: &str) -> Result<f32> {
    if epsilon.is_nan() || epsilon <= 0.0 {
        return Err(Error::param("epsilon", epsilon, format!("{caller}: parameter epsilon must be > 0")));
    }
    Ok(epsilon)
}

/// signxai's `assert_infer_lrp_alpha_beta_param` (SPEC 8), in its order of checks.
pub fn check_alpha_beta(alpha: Option<f32>, beta: Option<f32>, caller: &str) -> Result<(f32, f32)> {
    let (a, b) = match (alpha, beta) {
        (None, None) => return Err(Error::param("alpha", "None", format!("{caller}: neither alpha or beta were given"))),
        (Some(a), _) if a < 1.0 => return Err(Error::param("alpha", a, format!("{caller}: expecting alpha >= 1"))),
        (_, Some(b)) if b < 0.0 => return Err(Error::param("beta", b, format!("{caller}: expecting beta >= 0"))),
        (Some(a), Some(b)) => (a, b),
        (None, Some(b)) => (b + 1.0, b),
        (Some(a), None) => (a, a - 1.0),
    };
    if a - b != 1.0 {
        return Err(Error::param("alpha", format!("{a} (beta={b})"), format!("{caller}: condition alpha - beta = 1 not fulfilled")));
    }
    Ok((a, b))
}

/// Every rule name accepted for `rule=`, `input_layer_rule=` and `until_index_rule=`, as signxai's `LRP_RULES`
/// keys; the class names (`ZRule`, ...) are accepted too. The last group are relprop's corrected rules.
pub const RULE_NAMES: &[&str] = &[
    "Z", "ZIgnoreBias", "Epsilon", "EpsilonIgnoreBias", "StdxEpsilon", "SIGN", "SIGNmu", "WSquare", "Flat",
    "AlphaBeta", "AlphaBetaIgnoreBias", "Alpha2Beta1", "Alpha2Beta1IgnoreBias", "Alpha1Beta0",
    "Alpha1Beta0IgnoreBias", "ZPlus", "ZPlusFast", "Gamma", "Bounded", "AlphaBetaX", "AlphaBetaX1000",
    "AlphaBetaX1010", "AlphaBetaX1001", "AlphaBetaX2m100",
    // relprop's corrected rules (docs/divergences.md)
    "ZBox", "GammaTextbook", "AlphaBetaXTextbook", "AlphaBetaX1000Textbook", "AlphaBetaX1010Textbook",
    "AlphaBetaX1001Textbook", "AlphaBetaX2m100Textbook",
];

impl Rule {
    /// Build a rule from its name (rule key or class name) taking parameters from `p`, with signxai's
    /// defaults and checks. A `(low, high)` pair gives a Bounded rule, as signxai's `input_layer_rule` tuple.
    pub fn from_name(name: &str, p: &Params) -> Result<Rule> {
        let t = name.trim();
        if let Some((lo, hi)) = parse_pair(t) {
            return Ok(Rule::Bounded { low: lo, high: hi });
        }
        let key = t.strip_suffix("Rule").filter(|k| !k.is_empty()).unwrap_or(t);
        let bias = p.bool_or("bias", true)?;
        let eps = |default: f32| -> Result<f32> { check_epsilon(p.f32_or("epsilon", default)?, key) };
        let low_high = || -> Result<(f32, f32)> { Ok((p.f32_or("low", -1.0)?, p.f32_or("high", 1.0)?)) };
        let ab = |a: f32, b: f32, bias: bool| Rule::AlphaBeta { alpha: a, beta: b, bias };
        Ok(match key {
            "Z" => Rule::Z { bias },
            "ZIgnoreBias" => Rule::Z { bias: false },
            "Epsilon" => Rule::Epsilon { epsilon: eps(1e-7)?, bias },
            "EpsilonIgnoreBias" => Rule::Epsilon { epsilon: eps(1e-7)?, bias: false },
            "StdxEpsilon" => Rule::StdxEpsilon { stdfactor: stdfactor(p)?, bias, batch_std: p.bool_or("std_over_batch", false)? },
            "SIGN" => Rule::Sign,
            "SIGNmu" => Rule::SignMu { mu: p.f32_or("mu", 0.0)? },
            "WSquare" => Rule::WSquare,
            "Flat" => Rule::Flat,
            "AlphaBeta" | "AlphaBetaIgnoreBias" => {
                let (a, b) = check_alpha_beta(p.f32("alpha")?, p.f32("beta")?, key)?;
                ab(a, b, bias && key == "AlphaBeta")
            }
            "Alpha2Beta1" => ab(2.0, 1.0, true),
            "Alpha2Beta1IgnoreBias" => ab(2.0, 1.0, false),
            "Alpha1Beta0" => ab(1.0, 0.0, true),
            "Alpha1Beta0IgnoreBias" | "ZPlus" => ab(1.0, 0.0, false),
            "ZPlusFast" => Rule::ZPlusFast,
            "Gamma" => Rule::Gamma { gamma: gamma(p, None, key)?, bias },
            "Bounded" => {
                let (low, high) = low_high()?;
                Rule::Bounded { low, high }
            }
            "AlphaBetaX" | "AlphaBetaX1000" | "AlphaBetaX1010" | "AlphaBetaX1001" | "AlphaBetaX2m100" => {
                return Err(Error::Signxai(format!(
                    "{t}: signxai 1.1.9.2 cannot construct AlphaBetaX rules (TypeError: '<' not supported between \
                     instances of 'tuple' and 'int', SPEC 4b); use {key}Textbook for the formula it would compute"
                )))
            }
            "ZBox" => {
                let (low, high) = low_high()?;
                Rule::ZBox { low, high }
            }
            "GammaTextbook" => Rule::GammaTextbook { gamma: gamma(p, Some(0.25), key)?, bias },
            "AlphaBetaXTextbook" => {
                let g = |k: &str, d: f32| p.f32_or(k, d);
                Rule::AlphaBetaX { alpha: (g("alpha0", 1.0)?, g("alpha1", 0.0)?), beta: (g("beta0", 0.0)?, g("beta1", 0.0)?), bias }
            }
            "AlphaBetaX1000Textbook" => Rule::AlphaBetaX { alpha: (1.0, 0.0), beta: (0.0, 0.0), bias },
            "AlphaBetaX1010Textbook" => Rule::AlphaBetaX { alpha: (1.0, 0.0), beta: (0.0, -1.0), bias },
            "AlphaBetaX1001Textbook" => Rule::AlphaBetaX { alpha: (1.0, 1.0), beta: (0.0, 0.0), bias },
            "AlphaBetaX2m100Textbook" => Rule::AlphaBetaX { alpha: (2.0, 0.0), beta: (1.0, 0.0), bias },
            _ => {
                return Err(Error::Unknown {
                    kind: "rule".into(),
                    name: t.into(),
                    hint: format!(" (known: {}, or a (low, high) pair)", RULE_NAMES.join(", ")),
                })
            }
        })
    }
}

/// `stdfactor` with its default 0.25; must be positive.
pub fn stdfactor(p: &Params) -> Result<f32> {
    let s = p.f32_or("stdfactor", 0.25)?;
    if s <= 0.0 {
        return Err(Error::param("stdfactor", s, "must be > 0"));
    }
    Ok(s)
}

/// `gamma`: required by signxai's GammaRule (None → ValueError); any value accepted.
pub fn gamma(p: &Params, default: Option<f32>, caller: &str) -> Result<f32> {
    p.f32("gamma")?.or(default).ok_or_else(|| Error::param("gamma", "None", format!("{caller}: parameter gamma must be given")))
}

/// Parse "(low, high)", "[low, high]" or "low,high".
pub fn parse_pair(s: &str) -> Option<(f32, f32)> {
    let inner = s.trim().trim_start_matches(['(', '[']).trim_end_matches([')', ']']);
    let (a, b) = inner.split_once(',')?;
    let (a, b) = (a.trim().parse::<f32>().ok()?, b.trim().parse::<f32>().ok()?);
    (a.is_finite() && b.is_finite()).then_some((a, b))
}
