//! Rules as data: every kernel rule of SPEC 3-6 written in one small vocabulary, so that the backends
//! execute descriptions and cannot drift apart (docs/architecture.md).
//!
//! A rule is a sum of groups; each group normalises the incoming relevance by its own denominator:
//!
//! ```text
//! z_g    = Σ_t sign_t · (M_t · in_t(x) + b_t)            (M_t: the layer's linear map with modified weights)
//! s_g    = R / stab_g(z_g)
//! R_in   = Σ_g coef_g · Σ_t sign_t · out_t(x) ⊙ M_tᵀ s_g
//! ```
//!
//! At the top layer with signxai's `max_activation` selection (SPEC 1.4), every forward tensor is reduced by
//! its own maximum, so each term carries which tensor picks its gradient path (`path`).

use crate::rules::{Rule, KERAS_EPSILON};

/// Substituted kernel weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightMod {
    /// W itself.
    Plain,
    /// W⁺ = max(W, 0).
    Pos,
    /// W⁻ = min(W, 0).
    Neg,
    /// W².
    Square,
    /// Every kernel entry set to 1 (Flat); for a padded conv this counts the in-bounds taps.
    Ones,
    /// W + γ·W⁺ (textbook LRP-gamma).
    GammaPos(f32),
}

impl WeightMod {
    /// The substituted value of one kernel entry. Every backend builds its modified weights with this, so they
    /// are bit-identical everywhere.
    pub fn apply(self, w: f32) -> f32 {
        match self {
            WeightMod::Plain => w,
            WeightMod::Pos => w.max(0.0),
            WeightMod::Neg => w.min(0.0),
            WeightMod::Square => w * w,
            WeightMod::Ones => 1.0,
            WeightMod::GammaPos(g) => w + g * w.max(0.0),
        }
    }
}

/// Substituted bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BiasMod {
    None,
    Plain,
    Pos,
    Neg,
    /// b + γ·b⁺.
    GammaPos(f32),
}

impl BiasMod {
    /// The substituted value of one bias entry (shared by every backend).
    pub fn apply(self, b: f32) -> f32 {
        match self {
            BiasMod::None => 0.0,
            BiasMod::Plain => b,
            BiasMod::Pos => b.max(0.0),
            BiasMod::Neg => b.min(0.0),
            BiasMod::GammaPos(g) => b + g * b.max(0.0),
        }
    }
}

/// A pointwise function of the layer input `x` (also used for the multiplier after the transposed map).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XMod {
    /// x.
    X,
    /// x⁺ = x·[x > 0].
    Pos,
    /// x⁻ = x·[x < 0].
    Neg,
    /// +1 where x >= 0, else -1 (SIGN; sign(0) = +1).
    Sign,
    /// +1 where x >= mu, else -1 (SIGNmu).
    SignMu(f32),
    /// A constant tensor of x's shape (1 for WSquare/Flat, low/high for Z^B).
    Const(f32),
}

/// How a group's denominator is stabilised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stabilizer {
    /// signxai's SafeDivide: only exact zeros become 1e-7.
    SafeDivide,
    /// `z + eps·sgn(z)` with sgn(0) = +1.
    Epsilon(f32),
    /// `Epsilon(stdfactor · std(x))`, std per sample or over the whole batch (signxai).
    StdEpsilon { factor: f32, batch: bool },
}

/// One linear map inside a group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    pub weight: WeightMod,
    pub bias: BiasMod,
    /// What the map is applied to in the forward (denominator) pass.
    pub input: XMod,
    /// What multiplies `Mᵀ s` afterwards; `Const(1.0)` means nothing.
    pub out: XMod,
    /// ±1, applied to both the denominator contribution and the output (signxai's Bounded: `A − (B + C)`).
    pub sign: f32,
    /// Top layer, max selection only: the input whose forward tensor `M · path + b` selects this term's gradient
    /// path, when it differs from `input` (WSquare/Flat select on `M x` but divide by `M 1`).
    pub path: Option<XMod>,
}

/// Terms normalised together.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub coef: f32,
    pub stab: Stabilizer,
    pub terms: Vec<Term>,
}

/// What the top layer's relevance starts from (SPEC 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopInit {
    /// The (selected) pre-activation `Zs` of the rule (Z, epsilon family).
    PreActivation,
    /// The layer's real output after its activation (all other rules).
    Output,
}

/// A rule as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub groups: Vec<Group>,
    pub top_init: TopInit,
}

fn term(weight: WeightMod, bias: BiasMod, input: XMod, out: XMod) -> Term {
    Term { weight, bias, input, out, sign: 1.0, path: None }
}

fn group(coef: f32, stab: Stabilizer, terms: Vec<Term>) -> Group {
    Group { coef, stab, terms }
}

const ONE: XMod = XMod::Const(1.0);

/// Z^B: `z = W x − (W⁺ low + W⁻ high)`; the gradients are multiplied by x, low, high only when `multiply`
/// (textbook ZBox), not in signxai's Bounded.
fn z_box(low: f32, high: f32, multiply: bool) -> Program {
    let out = |m: XMod| if multiply { m } else { ONE };
    let neg = |t: Term| Term { sign: -1.0, ..t };
    Program {
        groups: vec![group(
            1.0,
            Stabilizer::SafeDivide,
            vec![
                term(WeightMod::Plain, BiasMod::None, XMod::X, out(XMod::X)),
                neg(term(WeightMod::Pos, BiasMod::None, XMod::Const(low), out(XMod::Const(low)))),
                neg(term(WeightMod::Neg, BiasMod::None, XMod::Const(high), out(XMod::Const(high)))),
            ],
        )],
        top_init: TopInit::Output,
    }
}

impl Program {
    /// The description of `rule`.
    pub fn of(rule: &Rule) -> Program {
        use BiasMod as B;
        use Stabilizer::*;
        use WeightMod as W;
        let b = |bias: bool| if bias { B::Plain } else { B::None };
        let bp = |bias: bool| if bias { (B::Pos, B::Neg) } else { (B::None, B::None) };
        let single = |stab, t: Term, init| Program { groups: vec![group(1.0, stab, vec![t])], top_init: init };
        match *rule {
            Rule::Z { bias } => single(SafeDivide, term(W::Plain, b(bias), XMod::X, XMod::X), TopInit::PreActivation),
            Rule::Epsilon { epsilon, bias } => {
                single(Epsilon(epsilon), term(W::Plain, b(bias), XMod::X, XMod::X), TopInit::PreActivation)
            }
            Rule::StdxEpsilon { stdfactor, bias, batch_std } => single(
                StdEpsilon { factor: stdfactor, batch: batch_std },
                term(W::Plain, b(bias), XMod::X, XMod::X),
                TopInit::PreActivation,
            ),
            Rule::Sign => single(SafeDivide, term(W::Plain, B::Plain, XMod::X, XMod::Sign), TopInit::PreActivation),
            Rule::SignMu { mu } => single(SafeDivide, term(W::Plain, B::Plain, XMod::X, XMod::SignMu(mu)), TopInit::PreActivation),
            Rule::WSquare | Rule::Flat => {
                let w = if *rule == Rule::WSquare { W::Square } else { W::Ones };
                let t = Term { path: Some(XMod::X), ..term(w, B::None, ONE, ONE) };
                single(SafeDivide, t, TopInit::Output)
            }
            Rule::AlphaBeta { alpha, beta, bias } => {
                let (p, n) = bp(bias);
                let mut groups = vec![group(
                    alpha,
                    SafeDivide,
                    vec![term(W::Pos, p, XMod::Pos, XMod::Pos), term(W::Neg, n, XMod::Neg, XMod::Neg)],
                )];
                // signxai skips the inhibitor term when beta is falsy (0).
                if beta != 0.0 {
                    groups.push(group(
                        -beta,
                        SafeDivide,
                        vec![term(W::Neg, n, XMod::Pos, XMod::Pos), term(W::Pos, p, XMod::Neg, XMod::Neg)],
                    ));
                }
                Program { groups, top_init: TopInit::Output }
            }
            Rule::ZPlusFast => single(SafeDivide, term(W::Pos, B::None, XMod::X, XMod::X), TopInit::Output),
            Rule::Gamma { gamma, bias } => {
                let (full, pos) = if bias { (B::Plain, B::Pos) } else { (B::None, B::None) };
                Program {
                    groups: vec![
                        group(gamma, SafeDivide, vec![term(W::Pos, pos, XMod::Pos, XMod::Pos), term(W::Plain, full, XMod::X, XMod::X)]),
                        group(-1.0, SafeDivide, vec![term(W::Plain, full, XMod::Pos, XMod::Pos), term(W::Pos, pos, XMod::X, XMod::X)]),
                    ],
                    top_init: TopInit::Output,
                }
            }
            // signxai's Bounded as coded: the three gradients are NOT multiplied by x, low, high, so R_in ≈ 0.
            Rule::Bounded { low, high } => z_box(low, high, false),
            Rule::ZBox { low, high } => z_box(low, high, true),
            Rule::GammaTextbook { gamma, bias } => {
                let bm = if bias { B::GammaPos(gamma) } else { B::None };
                single(Epsilon(1e-6), term(W::GammaPos(gamma), bm, XMod::X, XMod::X), TopInit::Output)
            }
            Rule::AlphaBetaX { alpha, beta, bias } => {
                let (p, n) = bp(bias);
                let part = |coef, w, bm, x| group(coef, SafeDivide, vec![term(w, bm, x, x)]);
                let groups = vec![
                    part(alpha.0, W::Pos, p, XMod::Pos),
                    part(alpha.1, W::Neg, n, XMod::Neg),
                    part(-beta.0, W::Neg, n, XMod::Pos),
                    part(-beta.1, W::Pos, p, XMod::Neg),
                ];
                Program { groups: groups.into_iter().filter(|g| g.coef != 0.0).collect(), top_init: TopInit::Output }
            }
        }
    }
}

/// The stabiliser of signxai's BatchNormalization rule (sign-aware K.epsilon()).
pub const BN_EPSILON: f32 = KERAS_EPSILON;
