//! The explanation engine, written once for every backend.
//!
//! A backend implements [`Numerics`]: a handful of tensor primitives (the layer's linear map with substituted
//! weights and its transpose, per-channel and per-sample broadcasts, elementwise ops, row selection). The
//! forward pass, the walk back through the DAG, the fixed BN/Add/AvgPool rules, the kernel rules as
//! [`Program`]s and signxai's top-layer neuron selection all live here, so backends cannot drift apart.

use std::cell::{OnceCell, RefCell};

use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Op};
use crate::limits::Limits;
use crate::plan::{LayerRule, RulePlan};
use crate::program::{BiasMod, Program, Stabilizer, Term, TopInit, WeightMod, XMod, BN_EPSILON};
use crate::target::Target;
use crate::tensor::Tensor;

/// Tensor primitives a backend provides. Tensors are batched (axis 0 = samples). "Rows" are samples: a
/// row tensor has shape `[N]`; `*_rows` ops broadcast a row tensor over all other axes.
pub trait Numerics {
    /// The backend's tensor (or, for a graph compiler, a symbolic value).
    type T: Clone;

    /// The input as a backend tensor.
    fn input(&self, x: &Tensor) -> Result<Self::T>;
    /// Back to a plain tensor.
    fn output(&self, t: &Self::T) -> Result<Tensor>;

    /// `M x` for the Dense/Conv node `node` with weights substituted per `w`, without bias.
    fn linear(&self, node: usize, w: WeightMod, x: &Self::T) -> Result<Self::T>;
    /// `Mᵀ s`: the vector-Jacobian product of [`Numerics::linear`] with respect to its input.
    fn linear_t(&self, node: usize, w: WeightMod, s: &Self::T) -> Result<Self::T>;
    /// `z + b` with the bias of `node` substituted per `b` (channel axis 1 for Conv, last axis for Dense).
    fn add_bias(&self, node: usize, b: BiasMod, z: &Self::T) -> Result<Self::T>;
    /// `linear` then `add_bias` (skipped for [`BiasMod::None`]). A backend may add the bias to the fresh
    /// product in place (no second tensor) but must give the same values.
    fn linear_bias(&self, node: usize, w: WeightMod, b: BiasMod, x: &Self::T) -> Result<Self::T> {
        let l = self.linear(node, w, x)?;
        match b {
            BiasMod::None => Ok(l),
            b => self.add_bias(node, b, &l),
        }
    }
    /// Pointwise activation.
    fn activation(&self, a: &Activation, z: &Self::T) -> Result<Self::T>;
    /// Forward pass of every op without a kernel.
    fn forward(&self, node: usize, inputs: &[&Self::T]) -> Result<Self::T>;
    /// Transpose of an average pooling node as a linear map (AvgPool, GlobalAvgPool).
    fn pool_t(&self, node: usize, s: &Self::T) -> Result<Self::T>;
    /// Vector-Jacobian product of a data-movement node (MaxPool, GlobalMaxPool, Reshape, Transpose, Pad,
    /// Concat): relevance for each input.
    fn route(&self, node: usize, inputs: &[&Self::T], r: &Self::T) -> Result<Vec<Self::T>>;
    /// `t + v[c]` along channel axis 1.
    fn add_channel(&self, t: &Self::T, v: &[f32]) -> Result<Self::T>;

    /// A pointwise function of `x` (x⁺, x⁻, sign, constants).
    fn xmod(&self, x: &Self::T, m: XMod) -> Result<Self::T>;
    fn add(&self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn sub(&self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn mul(&self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// [`Numerics::mul`] where the caller hands over `b`, a fresh product such as `Mᵀ s`: a backend may write
    /// the result into `b`'s buffer (one tensor fewer, and `b` is still in cache) but must give the same values.
    fn mul_owned(&self, a: &Self::T, b: Self::T) -> Result<Self::T> {
        self.mul(a, &b)
    }
    fn scale(&self, a: &Self::T, c: f32) -> Result<Self::T>;
    /// signxai's SafeDivide: `a / (b + [b == 0]·1e-7)`.
    fn safe_div(&self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// `z + eps·sgn(z)` with sgn(0) = +1.
    fn stabilize(&self, z: &Self::T, eps: f32) -> Result<Self::T>;
    /// `safe_div(r, stabilize(z, eps))`, the epsilon rules' `s = R / z`. A backend may fuse the two (one pass
    /// instead of two over every layer's output) but must give the same values.
    fn div_stabilized(&self, r: &Self::T, z: &Self::T, eps: f32) -> Result<Self::T> {
        self.safe_div(r, &self.stabilize(z, eps)?)
    }
    /// Like [`Numerics::stabilize`] with one epsilon per sample (`eps` is a row tensor).
    fn stabilize_rows(&self, z: &Self::T, eps: &Self::T) -> Result<Self::T>;
    /// Population standard deviation of each sample (row tensor), or of the whole batch repeated per sample.
    fn std_rows(&self, x: &Self::T, over_batch: bool) -> Result<Self::T>;
    /// `a · v[n]` per sample.
    fn scale_rows(&self, a: &Self::T, v: &Self::T) -> Result<Self::T>;
    /// For a `[N, K]` tensor: per row, the indicator of its maxima divided by their number, and the maxima as
    /// a row tensor. A tie splits the selection equally, as TensorFlow's `reduce_max` gradient does, through
    /// which signxai's `max_activation` selects (a row of equal values, e.g. a dead layer's zeros under
    /// WSquare's `argmax(W²x)`, selects every output; docs/divergences.md).
    fn row_max(&self, t: &Self::T) -> Result<(Self::T, Self::T)>;
    /// For a `[N, K]` tensor: the one-hot of column `k` and the picked values as a row tensor.
    fn row_pick(&self, t: &Self::T, k: usize) -> Result<(Self::T, Self::T)>;

    /// `act(z + b)` for the forward pass of a kernel node (bias substituted per `b`). Default:
    /// [`composed::bias_activation`]; a backend may fuse it into one pass with the same float operations.
    fn bias_activation(&self, node: usize, b: BiasMod, z: &Self::T, act: Option<&Activation>) -> Result<Self::T> {
        composed::bias_activation(self, node, b, z, act)
    }

    /// The BatchNorm rule (SPEC 2), per sample. Default: [`composed::batch_norm_rule`], which is the
    /// definition; a backend that fuses it must perform the same float operations in the same order.
    fn batch_norm_rule(&self, x: &Self::T, y: &Self::T, r: &Self::T, beta: &[f32], mean: &[f32]) -> Result<Self::T> {
        composed::batch_norm_rule(self, x, y, r, beta, mean)
    }

    /// The kernel layer below a BatchNorm divides the BN rule's result by its own `z`:
    /// `div_stabilized(batch_norm_rule(x, y, r, β, μ), z, ε)`, or with `eps = None` `safe_div` of it by `z`.
    /// A backend may do both in one pass (the BN rule's result is never stored) with the same float operations.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_rule_then_divide(&self, x: &Self::T, y: &Self::T, r: &Self::T, beta: &[f32], mean: &[f32], z: &Self::T, eps: Option<f32>) -> Result<Self::T> {
        let rb = self.batch_norm_rule(x, y, r, beta, mean)?;
        match eps {
            Some(e) => self.div_stabilized(&rb, z, e),
            None => self.safe_div(&rb, z),
        }
    }

    /// Whether `t` is known to be all zeros (a cheap check on a concrete tensor). The engine then skips work
    /// whose result it multiplies by `t`: the `Mᵀ s` of a term whose output modifier is zero, e.g. the `x⁻`
    /// term of alpha-beta rules on post-ReLU inputs. Symbolic backends keep the default (`false`).
    fn is_zero(&self, _t: &Self::T) -> bool {
        false
    }

    /// Whether `t` is known to have no negative entry (a cheap check on a concrete tensor; NaN counts as
    /// negative). The engine then takes `x⁺ = x` and `x⁻ = 0` without computing either: post-ReLU inputs.
    /// Symbolic backends keep the default (`false`).
    fn nonnegative(&self, _t: &Self::T) -> bool {
        false
    }
}

/// The compound primitives of [`Numerics`] written with the basic ones: their default implementations, and
/// the reference that a backend's fused version is tested against (bit for bit).
pub mod composed {
    use super::*;

    /// `act(z + b)`: [`Numerics::add_bias`] (skipped for [`BiasMod::None`]) then [`Numerics::activation`].
    pub fn bias_activation<N: Numerics + ?Sized>(nx: &N, node: usize, b: BiasMod, z: &N::T, act: Option<&Activation>) -> Result<N::T> {
        let z = if b == BiasMod::None { z.clone() } else { nx.add_bias(node, b, z)? };
        match act {
            Some(a) => nx.activation(a, &z),
            None => Ok(z),
        }
    }

    /// SPEC 2: `R_in = SafeDivide(x ⊙ (y − β) ⊙ R, stab((x − μ) ⊙ y, 1e-7))` with per-channel β, μ, per sample
    /// (signxai uses sample 0's `y − β` for the whole batch; docs/divergences.md).
    pub fn batch_norm_rule<N: Numerics + ?Sized>(nx: &N, x: &N::T, y: &N::T, r: &N::T, beta: &[f32], mean: &[f32]) -> Result<N::T> {
        let neg = |v: &[f32]| v.iter().map(|a| -a).collect::<Vec<f32>>();
        let y_minus_beta = nx.add_channel(y, &neg(beta))?;
        let x_minus_mu = nx.add_channel(x, &neg(mean))?;
        let num = nx.mul(&nx.mul(x, &y_minus_beta)?, r)?;
        let den = nx.stabilize(&nx.mul(&x_minus_mu, y)?, BN_EPSILON)?;
        nx.safe_div(&num, &den)
    }
}

/// Options of one explanation.
#[derive(Debug, Clone, Default)]
pub struct ExplainOptions {
    /// Keep the relevance arriving at every node's output (for conservation checks and reports).
    pub keep_layers: bool,
}

/// The result of an explanation.
#[derive(Debug, Clone)]
pub struct Explanation<T> {
    /// Relevance of the input, same shape and layout as the input.
    pub relevance: T,
    /// The model output (logits) of the forward pass.
    pub output: T,
    /// With `keep_layers`: the relevance that arrived at each node's output (None where none did).
    pub layers: Option<Vec<Option<T>>>,
}

/// Checks shared by every backend: shape `[N, input shape...]` with N >= 1, all values finite, and the
/// explanation's estimated memory within the process-wide [`Limits`] (see [`check_input_with`]).
pub fn check_input(g: &Graph, x: &Tensor) -> Result<()> {
    check_input_with(g, x, &Limits::global())
}

/// [`check_input`] with explicit limits: refuses, before anything is allocated, a batch whose activations
/// (`N × Σ per-node elements × 4 bytes ×` [`Limits::ACTIVATION_FACTOR`]) would exceed
/// `limits.max_activation_bytes`.
pub fn check_input_with(g: &Graph, x: &Tensor, limits: &Limits) -> Result<()> {
    if g.nodes.is_empty() || g.output >= g.nodes.len() {
        return Err(Error::Backend { backend: "core".into(), msg: "malformed graph (no nodes or output out of range)".into() });
    }
    let want = g.input_shape();
    if x.shape.len() != want.len() + 1 || x.shape[1..] != *want || x.shape[0] == 0 {
        return Err(Error::Input(format!(
            "shape {:?} does not fit the model: expected [N, {}] with N >= 1 (layout {:?})",
            x.shape,
            want.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            g.layout
        )));
    }
    if x.data.len() != x.shape.iter().product::<usize>() {
        return Err(Error::Input(format!("shape {:?} does not match its {} values", x.shape, x.data.len())));
    }
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!("value {} at flat index {i} is not finite (NaN/Inf)", x.data[i])));
    }
    let bytes = (x.shape[0] as u64)
        .saturating_mul(g.activation_elements())
        .saturating_mul(4 * Limits::ACTIVATION_FACTOR);
    if bytes > limits.max_activation_bytes {
        return Err(Error::Input(format!(
            "explaining a batch of {} would need about {bytes} bytes of activations, more than the limit of {} \
             (RELPROP_MAX_ACTIVATION_BYTES); use smaller batches",
            x.shape[0], limits.max_activation_bytes
        )));
    }
    Ok(())
}

/// Checks that the model output can be selected from: `(N, K)` and an index below K.
pub fn check_target(g: &Graph, target: &Target) -> Result<()> {
    let out = g.output_shape();
    if out.len() != 1 {
        return Err(Error::Target(format!(
            "the model output has per-sample shape {out:?}; explanations need a (batch, classes) output"
        )));
    }
    if let Target::Index(k) = target {
        if *k >= out[0] {
            return Err(Error::Target(format!("index {k} out of range: the model has {} outputs", out[0])));
        }
    }
    Ok(())
}

/// Plain forward pass: the model output.
pub fn forward<N: Numerics>(nx: &N, g: &Graph, x: &Tensor) -> Result<Tensor> {
    check_input(g, x)?;
    let acts = run_forward(nx, g, nx.input(x)?, &vec![false; g.nodes.len()])?;
    nx.output(acts.out[g.output].as_ref().expect("output is live"))
}

struct Activations<T> {
    /// Output of each live node (after any fused activation).
    out: Vec<Option<T>>,
    /// For kernel nodes: `W x` without bias (reused by rules whose term is plain W on plain x).
    lin: Vec<Option<T>>,
}

impl<T> Activations<T> {
    fn release(&mut self, i: usize) {
        self.out[i] = None;
        self.lin[i] = None;
    }
}

/// The forward pass; `keep_lin[i]`: keep node i's `W x` for the backward pass.
fn run_forward<N: Numerics>(nx: &N, g: &Graph, x: N::T, keep_lin: &[bool]) -> Result<Activations<N::T>> {
    let live = g.live();
    let n = g.nodes.len();
    let mut out: Vec<Option<N::T>> = vec![None; n];
    let mut lin: Vec<Option<N::T>> = vec![None; n];
    out[0] = Some(x);
    for i in 1..n {
        if !live[i] {
            continue;
        }
        let node = &g.nodes[i];
        let ins: Vec<&N::T> = node.inputs.iter().map(|&j| out[j].as_ref().expect("inputs computed first")).collect();
        let y = match &node.op {
            Op::Dense(_) | Op::Conv(_) => {
                let (act, has_bias) = match &node.op {
                    Op::Dense(d) => (&d.activation, d.bias.is_some()),
                    Op::Conv(c) => (&c.activation, c.bias.is_some()),
                    _ => unreachable!(),
                };
                let l = nx.linear(i, WeightMod::Plain, ins[0])?;
                let y = if has_bias || act.is_some() {
                    nx.bias_activation(i, if has_bias { BiasMod::Plain } else { BiasMod::None }, &l, act.as_ref())?
                } else {
                    l.clone()
                };
                if keep_lin[i] {
                    lin[i] = Some(l);
                }
                y
            }
            Op::Activation(a) => nx.activation(a, ins[0])?,
            _ => nx.forward(i, &ins)?,
        };
        out[i] = Some(y);
    }
    Ok(Activations { out, lin })
}

/// Explain `x` under `plan` for `target`.
pub fn explain<N: Numerics>(
    nx: &N,
    g: &Graph,
    plan: &RulePlan,
    x: &Tensor,
    target: &Target,
    opts: &ExplainOptions,
) -> Result<Explanation<N::T>> {
    check_input(g, x)?;
    check_target(g, target)?;
    if plan.layers.len() != g.nodes.len() {
        return Err(Error::Backend { backend: "core".into(), msg: "rule plan does not belong to this graph".into() });
    }
    // `W x` is kept only where the layer's rule has a plain-weight term on x itself (ε, z, SIGN...): alpha-beta
    // and the other modified-weight rules never read it, and it is one more activation-sized tensor per layer.
    let keep_lin: Vec<bool> = plan
        .layers
        .iter()
        .map(|l| match l {
            LayerRule::Kernel(rule) => {
                Program::of(rule).groups.iter().flat_map(|g| &g.terms).any(|t| t.weight == WeightMod::Plain && t.input == XMod::X)
            }
            _ => false,
        })
        .collect();
    let mut acts = run_forward(nx, g, nx.input(x)?, &keep_lin)?;
    let output = acts.out[g.output].clone().expect("output is live");
    let n = g.nodes.len();
    let mut rel: Vec<Option<N::T>> = vec![None; n];
    let mut kept: Vec<Option<N::T>> = vec![None; n];
    // A BatchNorm whose input is a kernel layer read by nothing else, with a one-group rule that divides by
    // its z once: the BN rule's result goes straight into that division (`after_bn`), never stored.
    let bn_above = fusable_batch_norms(g, plan, opts);
    let mut after_bn: Vec<Option<N::T>> = vec![None; n];
    for i in (1..n).rev() {
        let node = &g.nodes[i];
        if let Some(j) = node.inputs.first().filter(|&&j| bn_above[j] == Some(i)) {
            if let Some(r) = rel[i].take() {
                // Deferred to the kernel layer j; node i's tensors stay until then.
                after_bn[*j] = Some(r);
                continue;
            }
        }
        let bn_r = after_bn[i].take();
        let r = if i == g.output { None } else {
            match rel[i].take().or_else(|| bn_r.clone()) {
                Some(r) => Some(r),
                None => {
                    acts.release(i);
                    continue; // no relevance reaches this node (dead branch)
                }
            }
        };
        let x_in: Vec<&N::T> = node.inputs.iter().map(|&j| acts.out[j].as_ref().expect("live")).collect();
        let y = acts.out[i].as_ref().expect("live");
        let ctx = Layer {
            nx,
            g,
            node: i,
            x: &x_in,
            y,
            lin: acts.lin[i].as_ref(),
            xmods: RefCell::new(Vec::new()),
            nonneg: OnceCell::new(),
        };
        let r_in: Vec<N::T> = match (&plan.layers[i], r) {
            (LayerRule::Kernel(rule), r) => {
                let prog = Program::of(rule);
                let r_in = match (r, bn_r) {
                    (Some(_), Some(rb)) => {
                        // The BatchNorm above, with its relevance `rb`, was deferred to here.
                        let k = bn_above[i].expect("deferred by the BatchNorm above");
                        let Op::BatchNorm(bn) = &g.nodes[k].op else { unreachable!("bn_above names BatchNorms") };
                        let y_bn = acts.out[k].as_ref().expect("kept for the layer below");
                        ctx.kernel_rule_after_bn(&prog, y_bn, &rb, &bn.beta.data, &bn.mean.data)?
                    }
                    (Some(r), None) => {
                        keep(&mut kept, opts, i, &r);
                        ctx.kernel_rule(&prog, &r)?
                    }
                    (None, _) => ctx.kernel_top(&prog, target, opts, &mut kept)?,
                };
                vec![r_in]
            }
            (fixed, r) => {
                let r = match r {
                    Some(r) => r,
                    // Non-kernel top layer: start from its selected output (SPEC 1.5).
                    None => match target {
                        Target::All => y.clone(),
                        Target::Max => {
                            let (hot, v) = nx.row_max(y)?;
                            nx.scale_rows(&hot, &v)?
                        }
                        Target::Index(k) => {
                            let (hot, v) = nx.row_pick(y, *k)?;
                            nx.scale_rows(&hot, &v)?
                        }
                    },
                };
                keep(&mut kept, opts, i, &r);
                ctx.fixed_rule(fixed, &r)?
            }
        };
        // Node i's output and `W x` are dead now: its consumers come later in topological order, so they
        // were handled first. Releasing them keeps the peak near the end of the forward pass.
        acts.release(i);
        if let Some(k) = bn_above[i] {
            acts.release(k);
        }
        for (&j, rj) in node.inputs.iter().zip(r_in) {
            rel[j] = Some(match rel[j].take() {
                None => rj,
                Some(acc) => nx.add(&acc, &rj)?, // several consumers: relevances add up (SPEC 1.3)
            });
        }
    }
    let relevance = rel[0].take().unwrap_or(nx.scale(acts.out[0].as_ref().expect("input"), 0.0)?);
    keep(&mut kept, opts, 0, &relevance);
    Ok(Explanation {
        relevance,
        output,
        layers: opts.keep_layers.then_some(kept),
    })
}

/// For each kernel node whose only reader is a BatchNorm with the BN rule, and whose rule divides by its `z`
/// once (one group, ε or SafeDivide): that BatchNorm. The BN rule's result then goes straight into the division
/// ([`Numerics::batch_norm_rule_then_divide`]). Not with `keep_layers`, which keeps the BN rule's result.
fn fusable_batch_norms(g: &Graph, plan: &RulePlan, opts: &ExplainOptions) -> Vec<Option<usize>> {
    let mut above = vec![None; g.nodes.len()];
    if opts.keep_layers {
        return above;
    }
    let mut readers = vec![0usize; g.nodes.len()];
    g.nodes.iter().flat_map(|m| &m.inputs).for_each(|&j| readers[j] += 1);
    for (i, node) in g.nodes.iter().enumerate() {
        let (&[j], LayerRule::BatchNorm) = (node.inputs.as_slice(), &plan.layers[i]) else { continue };
        let LayerRule::Kernel(rule) = &plan.layers[j] else { continue };
        let prog = Program::of(rule);
        let one_division = matches!(prog.groups.as_slice(), [grp] if matches!(grp.stab, Stabilizer::Epsilon(_) | Stabilizer::SafeDivide));
        if matches!(node.op, Op::BatchNorm(_)) && readers[j] == 1 && i != g.output && j != g.output && one_division {
            above[j] = Some(i);
        }
    }
    above
}

fn keep<T: Clone>(kept: &mut [Option<T>], opts: &ExplainOptions, i: usize, r: &T) {
    if opts.keep_layers {
        kept[i] = Some(r.clone());
    }
}

/// One node during the backward pass.
struct Layer<'a, N: Numerics> {
    nx: &'a N,
    g: &'a Graph,
    node: usize,
    x: &'a [&'a N::T],
    y: &'a N::T,
    /// `W x` from the forward pass (kernel nodes).
    lin: Option<&'a N::T>,
    /// Modified inputs computed so far, with whether each is all zeros.
    xmods: RefCell<Vec<(XMod, N::T, bool)>>,
    /// Whether `x` is known to have no negative entry ([`Numerics::nonnegative`]), asked once per layer.
    nonneg: OnceCell<bool>,
}

impl<N: Numerics> Layer<'_, N> {
    fn fixed_rule(&self, rule: &LayerRule, r: &N::T) -> Result<Vec<N::T>> {
        let nx = self.nx;
        Ok(match rule {
            LayerRule::Identity => vec![r.clone()],
            LayerRule::Gradient => nx.route(self.node, self.x, r)?,
            LayerRule::AddZ => {
                let s = nx.safe_div(r, self.y)?;
                self.x.iter().map(|a| nx.mul(a, &s)).collect::<Result<_>>()?
            }
            LayerRule::AvgPoolZ => {
                let s = nx.safe_div(r, self.y)?;
                vec![nx.mul_owned(self.x[0], nx.pool_t(self.node, &s)?)?]
            }
            LayerRule::BatchNorm => vec![self.batch_norm(r)?],
            LayerRule::Kernel(_) | LayerRule::Input => {
                return Err(Error::Backend { backend: "core".into(), msg: format!("node {} has no fixed rule", self.node) })
            }
        })
    }

    /// SPEC 2 ([`composed::batch_norm_rule`]).
    fn batch_norm(&self, r: &N::T) -> Result<N::T> {
        let Op::BatchNorm(bn) = &self.g.nodes[self.node].op else {
            return Err(Error::Backend { backend: "core".into(), msg: format!("node {} is not a BatchNorm", self.node) });
        };
        self.nx.batch_norm_rule(self.x[0], self.y, r, &bn.beta.data, &bn.mean.data)
    }

    /// Whether `x` has no negative entry (post-ReLU inputs: then x⁺ is x and x⁻ is zero).
    fn nonneg(&self) -> bool {
        *self.nonneg.get_or_init(|| self.nx.nonnegative(self.x[0]))
    }

    /// Whether `x` under `m` is all zeros; x⁻ of a post-ReLU input is known to be without computing it.
    fn zero(&self, m: XMod) -> Result<bool> {
        if m == XMod::Neg && self.nonneg() {
            return Ok(true);
        }
        Ok(self.xmod(m)?.1)
    }

    /// `x` under an input modifier, with whether it is all zeros; `X` itself (and x⁺ of a post-ReLU input) is
    /// borrowed, and every other modifier is computed once per layer (a rule uses x⁺ and x⁻ in several terms).
    fn xmod(&self, m: XMod) -> Result<(N::T, bool)> {
        if let Some((_, t, zero)) = self.xmods.borrow().iter().find(|(k, _, _)| *k == m) {
            return Ok((t.clone(), *zero));
        }
        let t = match m {
            XMod::X => self.x[0].clone(),
            XMod::Pos if self.nonneg() => self.x[0].clone(),
            m => self.nx.xmod(self.x[0], m)?,
        };
        let zero = (m == XMod::Neg && self.nonneg()) || self.nx.is_zero(&t);
        self.xmods.borrow_mut().push((m, t.clone(), zero));
        Ok((t, zero))
    }

    /// The forward tensor of one term: `M · in(x) + b` (unsigned).
    fn term_z(&self, t: &Term, input: XMod) -> Result<N::T> {
        let nx = self.nx;
        match (t.weight, input, self.lin, t.bias) {
            (WeightMod::Plain, XMod::X, Some(l), BiasMod::None) => Ok(l.clone()),
            (WeightMod::Plain, XMod::X, Some(l), b) => nx.add_bias(self.node, b, l),
            _ => nx.linear_bias(self.node, t.weight, t.bias, &self.xmod(input)?.0),
        }
    }

    /// A group's denominator `Σ sign_t z_t` before stabilisation. A term on an all-zero input (x⁻ of a
    /// post-ReLU input) is `0 + b`: without bias it is skipped, with bias its bias is added to the sum so far
    /// (the same value, without the product); unless every term is on a zero input.
    fn group_z(&self, terms: &[Term]) -> Result<N::T> {
        let nx = self.nx;
        let mut acc: Option<N::T> = None;
        for t in terms {
            if self.zero(t.input)? {
                match (&acc, t.bias, t.sign > 0.0) {
                    (_, BiasMod::None, _) => continue,
                    (Some(a), b, true) => {
                        acc = Some(nx.add_bias(self.node, b, a)?);
                        continue;
                    }
                    _ => {}
                }
            }
            let z = self.term_z(t, t.input)?;
            acc = Some(match (acc, t.sign < 0.0) {
                (None, false) => z,
                (None, true) => nx.scale(&z, -1.0)?,
                (Some(a), false) => nx.add(&a, &z)?,
                (Some(a), true) => nx.sub(&a, &z)?,
            });
        }
        match acc {
            Some(z) => Ok(z),
            // Every term on a zero input without bias: the zero tensor, computed like any term.
            None => match terms.first() {
                Some(t) => self.term_z(t, t.input),
                None => Err(Error::Backend { backend: "core".into(), msg: "empty rule group".into() }),
            },
        }
    }

    fn stabilize(&self, z: &N::T, stab: Stabilizer) -> Result<N::T> {
        let nx = self.nx;
        match stab {
            Stabilizer::SafeDivide => Ok(z.clone()), // safe_div handles exact zeros
            Stabilizer::Epsilon(e) => nx.stabilize(z, e),
            Stabilizer::StdEpsilon { factor, batch } => {
                let eps = nx.scale(&nx.std_rows(self.x[0], batch)?, factor)?;
                nx.stabilize_rows(z, &eps)
            }
        }
    }

    /// `coef · Σ_t sign_t · out_t(x) ⊙ M_tᵀ s_t` for one group, `s_t` per term.
    fn group_out(&self, coef: f32, terms: &[Term], s: &[N::T]) -> Result<N::T> {
        let nx = self.nx;
        let mut acc: Option<N::T> = None;
        for (t, s) in terms.iter().zip(s) {
            let g = if t.out != XMod::Const(1.0) {
                // `0 ⊙ Mᵀ s` adds nothing (x⁻ of a post-ReLU input): skip the product and the sum.
                if self.zero(t.out)? {
                    continue;
                }
                nx.mul_owned(&self.xmod(t.out)?.0, nx.linear_t(self.node, t.weight, s)?)?
            } else {
                nx.linear_t(self.node, t.weight, s)?
            };
            let c = coef * t.sign;
            acc = Some(match acc {
                None if c == 1.0 => g,
                None => nx.scale(&g, c)?,
                Some(a) if c == 1.0 => nx.add(&a, &g)?,
                Some(a) if c == -1.0 => nx.sub(&a, &g)?,
                Some(a) => nx.add(&a, &nx.scale(&g, c)?)?,
            });
        }
        match (acc, terms.first()) {
            (Some(a), _) => Ok(a),
            // Every term's output modifier is zero: so is the result.
            (None, Some(t)) => Ok(self.xmod(t.out)?.0),
            (None, None) => Err(Error::Backend { backend: "core".into(), msg: "empty rule group".into() }),
        }
    }

    /// [`Layer::kernel_rule`] for a one-group rule ([`fusable_batch_norms`]) below a BatchNorm whose rule was
    /// deferred: `rb` is the relevance at the BatchNorm's output, `y_bn` that output, β and μ its parameters.
    fn kernel_rule_after_bn(&self, prog: &Program, y_bn: &N::T, rb: &N::T, beta: &[f32], mean: &[f32]) -> Result<N::T> {
        let [grp] = prog.groups.as_slice() else {
            return Err(Error::Backend { backend: "core".into(), msg: "a deferred BatchNorm rule needs a one-group rule".into() });
        };
        let z = self.group_z(&grp.terms)?;
        let eps = match grp.stab {
            Stabilizer::Epsilon(e) => Some(e),
            _ => None,
        };
        // The BatchNorm's input is this layer's output.
        let s = self.nx.batch_norm_rule_then_divide(self.y, y_bn, rb, beta, mean, &z, eps)?;
        let ss = vec![s; grp.terms.len()];
        self.group_out(grp.coef, &grp.terms, &ss)
    }

    /// A kernel rule below the top layer.
    fn kernel_rule(&self, prog: &Program, r: &N::T) -> Result<N::T> {
        let nx = self.nx;
        let mut total: Option<N::T> = None;
        for grp in &prog.groups {
            let z = self.group_z(&grp.terms)?;
            let s = match grp.stab {
                Stabilizer::Epsilon(e) => nx.div_stabilized(r, &z, e)?,
                stab => nx.safe_div(r, &self.stabilize(&z, stab)?)?,
            };
            let ss = vec![s; grp.terms.len()];
            let out = self.group_out(grp.coef, &grp.terms, &ss)?;
            total = Some(match total {
                None => out,
                Some(t) => nx.add(&t, &out)?,
            });
        }
        total.ok_or_else(|| Error::Backend { backend: "core".into(), msg: "rule without groups".into() })
    }

    /// A kernel rule on the top layer (SPEC 1.4/1.5). With a fixed index or no selection this is the ordinary
    /// rule on the initial relevance; with `max` every tensor is reduced by its own maximum.
    fn kernel_top(&self, prog: &Program, target: &Target, opts: &ExplainOptions, kept: &mut [Option<N::T>]) -> Result<N::T> {
        let nx = self.nx;
        let start = match prog.top_init {
            TopInit::Output => self.y.clone(),
            TopInit::PreActivation => self.group_z(&prog.groups[0].terms)?,
        };
        let r = match target {
            Target::All => start,
            Target::Index(k) => {
                let (hot, v) = nx.row_pick(&start, *k)?;
                nx.scale_rows(&hot, &v)?
            }
            Target::Max => return self.kernel_top_max(prog, &start, opts, kept),
        };
        keep(kept, opts, self.node, &r);
        self.kernel_rule(prog, &r)
    }

    fn kernel_top_max(&self, prog: &Program, start: &N::T, opts: &ExplainOptions, kept: &mut [Option<N::T>]) -> Result<N::T> {
        let nx = self.nx;
        let (hot, numerator) = nx.row_max(start)?;
        keep(kept, opts, self.node, &nx.scale_rows(&hot, &numerator)?);
        let mut total: Option<N::T> = None;
        for grp in &prog.groups {
            // Denominator: the sum of each term's own maximum; path: one-hot of each term's own argmax.
            let mut den: Option<N::T> = None;
            let mut paths = Vec::with_capacity(grp.terms.len());
            for t in &grp.terms {
                let (hot_z, v) = nx.row_max(&self.term_z(t, t.input)?)?;
                let hot_path = match t.path {
                    Some(p) if p != t.input => nx.row_max(&self.term_z(t, p)?)?.0,
                    _ => hot_z,
                };
                paths.push(hot_path);
                den = Some(match (den, t.sign < 0.0) {
                    (None, false) => v,
                    (None, true) => nx.scale(&v, -1.0)?,
                    (Some(a), false) => nx.add(&a, &v)?,
                    (Some(a), true) => nx.sub(&a, &v)?,
                });
            }
            let den = den.ok_or_else(|| Error::Backend { backend: "core".into(), msg: "empty rule group".into() })?;
            let num = match prog.top_init {
                TopInit::PreActivation => den.clone(),
                TopInit::Output => numerator.clone(),
            };
            let q = nx.safe_div(&num, &self.stabilize(&den, grp.stab)?)?;
            let s: Vec<N::T> = paths.iter().map(|p| nx.scale_rows(p, &q)).collect::<Result<_>>()?;
            let out = self.group_out(grp.coef, &grp.terms, &s)?;
            total = Some(match total {
                None => out,
                Some(t) => nx.add(&t, &out)?,
            });
        }
        total.ok_or_else(|| Error::Backend { backend: "core".into(), msg: "rule without groups".into() })
    }
}
