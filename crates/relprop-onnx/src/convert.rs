//! Per-op lowering of ONNX nodes to IR nodes, with ONNX semantics. Shapes in the IR exclude the batch axis, so
//! an ONNX axis `a` of the full tensor is per-sample axis `a - 1`, and axis 0 (the batch) must never move.
//!
//! Peepholes that recover Keras layers from tf2onnx output:
//! * Conv/MatMul/Gemm followed by an `Add` of a per-channel constant (their only consumer) → the layer's bias;
//! * then an activation in the same layer (its only consumer) → the layer's fused `activation`;
//! * chained Adds (Muls, Maxes, Mins) of one layer → one n-ary node; reshape after reshape → one reshape;
//! * `x · Sigmoid(x)` in one layer → a Swish activation (Keras `swish`, PyTorch `SiLU`);
//! * GELU spelled out with `Erf`, Keras' ELU layer with α ≠ 1 → one activation (`patterns.rs`);
//! * `Max`/`Min` with a scalar constant (tf2onnx's `clip_by_value`) → a Clip activation.

use std::rc::Rc;
use std::sync::Arc;

use relprop_core::{Activation, BatchNorm, Conv, Coordinates, Dense, Interpolation, Merge, Op, PadMode, Pool, Result, Tensor};

use crate::attrs::NodeCtx;
use crate::import::{generated_name, is_op, Importer, MAX_ELEMENTS};
use crate::patterns::SpelledOp;
use crate::shapes::Dim;
use crate::tensors::Const;

const SUPPORTED: &str = "Conv, ConvTranspose, MatMul, Gemm, Add, Sum, Relu, LeakyRelu, Elu (also Keras' ELU layer with \
    alpha != 1, a select written with masks), Sigmoid, Tanh, Softplus, Softsign (also spelled out with Abs), Celu, \
    LogSigmoid (Log of a Sigmoid), Exp, ThresholdedRelu, \
    Selu, Gelu (also spelled out with Erf), PRelu (also Keras' spelled-out form), HardSigmoid, HardSwish, Clip, \
    x·Sigmoid(x), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean/ReduceMax over all spatial \
    axes, BatchNormalization, LayerNormalization (also Keras' spelled-out form), InstanceNormalization, \
    Reshape, Flatten, Squeeze, Unsqueeze, Transpose, DepthToSpace, SpaceToDepth, Tile of size-1 axes, Pad (constant, reflect, edge), Slice (step 1), Concat, Split, Mean, Resize/Upsample (nearest or linear, whole factors), Mul/Div/Add/Sub by \
    per-channel constants, Max/Min with a scalar constant (a Clip), Mul/Sub/Max/Min of computed tensors \
    (broadcasting size-1 axes), Dropout, Identity, \
    Constant, a final Softmax/LogSoftmax, integer shape arithmetic for reshape targets (Shape, Gather, Concat, \
    Slice, Cast, Unsqueeze, Squeeze, ReduceProd, Mul, Div, Add, Sub, Mod, Neg), and integer constant arithmetic for op \
    parameters (ConstantOfShape, Reshape, Transpose, Slice, Concat, Cast)";

/// Most inputs an n-ary Add recovered from a chain of binary Adds gets (Keras `Add` layers have a handful).
const MAX_MERGED_ADD: usize = 64;

/// Normalize a possibly negative ONNX axis against `rank` (full rank, batch included).
fn norm_axis(ctx: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..r).contains(&a) {
        return Err(ctx.err(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Values of a bias constant that broadcasts along `axis` of a `full_rank` tensor with `n` entries there
/// (shape `(n,1,1)`, `(1,n,1,1)`, `(n,)` for the last axis, or a scalar), expanded to `n` values.
fn channel_bias(c: &Const, full_rank: usize, axis: usize, n: usize) -> Option<Vec<f32>> {
    let v = c.f32s()?;
    let pad = full_rank.checked_sub(c.dims.len())?;
    for (i, &d) in c.dims.iter().enumerate() {
        let ok = if i + pad == axis { d == n || d == 1 } else { d == 1 };
        if !ok {
            return None;
        }
    }
    match v.len() {
        l if l == n => Some(v.to_vec()),
        1 => Some(vec![v[0]; n]),
        _ => None,
    }
}

/// The per-channel `x·γ + β` held as a [`BatchNorm`] (mean 0, variance 1, epsilon 0 compute the same function).
fn channel_affine(gamma: Vec<f32>, beta: Vec<f32>) -> BatchNorm {
    let n = gamma.len();
    let filled = |v: f32| Arc::new(Tensor { shape: vec![n], data: vec![v; n] });
    BatchNorm {
        gamma: Arc::new(Tensor { shape: vec![n], data: gamma }),
        beta: Arc::new(Tensor { shape: vec![n], data: beta }),
        mean: filled(0.0),
        var: filled(1.0),
        epsilon: 0.0,
    }
}

impl Importer<'_> {
    /// Lower node `k` (and any nodes it absorbs) into the IR.
    pub(crate) fn convert(&mut self, k: usize) -> Result<()> {
        let ctx = self.ctx(k);
        let domain = ctx.proto.domain.as_deref().unwrap_or("");
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Err(ctx.err(format!("unsupported op '{}' from domain '{domain}' (only standard ONNX ops are supported)", ctx.op)));
        }
        // A batch-merged tensor (see `reshape_op`) goes only where merging rows changes nothing.
        if let Some((name, (m, by))) = ctx.proto.input.iter().find_map(|i| self.merged.get(i).map(|v| (i, v.clone()))) {
            if !matches!(ctx.op, "MatMul" | "Gemm" | "Reshape") {
                return Err(ctx.err(format!(
                    "'{name}' has the batch merged with {m} rows per sample (node '{by}' reshapes to [-1, ...], as \
                     tf2onnx writes Keras Dense on rank-3 inputs); relprop follows such a tensor through MatMul/Gemm \
                     by constant weights (with their bias Add) to the Reshape that restores the batch, not through {}",
                    ctx.op
                )));
            }
        }
        if let Some(sp) = self.spelled.get(&k).cloned() {
            // A spelled-out layer converts as a whole at the node computing its output; its other nodes
            // (shape arithmetic among them) wait for it, and nothing outside the match reads them.
            if self.nodes[k].output.first() != Some(&sp.out) {
                return Ok(());
            }
            sp.nodes.iter().for_each(|&m| self.done[m] = true);
            // Named after the match's first node (GELU's scaling, the LayerNorm's mean or Reshape, PReLU's Neg).
            let ctx = self.ctx(sp.nodes[0]);
            let x = *self.values.get(&sp.x).ok_or_else(|| ctx.err(format!("input '{}' is not a computed tensor", sp.x)))?;
            return match sp.op {
                SpelledOp::PRelu { neg_slope, perm, transposed_out } => {
                    let c = self.spelled_const(&ctx, &neg_slope)?;
                    let neg: Vec<f32> = c.f32s().unwrap_or_default().iter().map(|v| -v).collect();
                    let mut id = self.push_prelu(&ctx, x, &neg, &c.dims, perm.as_deref())?;
                    if let (true, Some(p)) = (transposed_out, perm) {
                        // Checked as a Transpose node's perm is (`push` rejects what is no permutation).
                        let perm: Vec<usize> = p.iter().map(|&a| usize::try_from(a).unwrap_or(usize::MAX)).collect();
                        if perm.first() != Some(&0) {
                            return Err(ctx.err(format!("the PReLU's transpose {p:?} moves the batch axis")));
                        }
                        id = self.push_as(&format!("{}__out", ctx.name), &ctx.layer, Op::Transpose { perm }, &[id])?;
                    }
                    self.bind(&sp.out, id)
                }
                SpelledOp::Activation(a) => {
                    let id = self.push(&ctx, Op::Activation(a), &[x])?;
                    self.bind(&sp.out, id)
                }
                SpelledOp::LayerNorm { axes, epsilon, gamma, beta, mean_target } => {
                    if let Some(t) = mean_target {
                        // The Reshape of the mean must keep its shape (entry 0, the batch, aside).
                        let rank = self.shape(x).len() + 1;
                        let norm: Vec<usize> = axes.iter().map(|&a| norm_axis(&ctx, a, rank)).collect::<Result<_>>()?;
                        let mean_shape: Vec<i64> = (1..rank).map(|a| if norm.contains(&a) { 1 } else { self.shape(x)[a - 1] as i64 }).collect();
                        if t.len() != rank || t[1..] != mean_shape[..] {
                            return Err(ctx.err(format!("the layer normalization's mean is reshaped to {t:?}, not kept as {mean_shape:?}")));
                        }
                    }
                    let param = |name: &Option<String>| name.as_ref().map(|n| self.spelled_const(&ctx, n)).transpose();
                    let (gamma, beta) = (param(&gamma)?, param(&beta)?);
                    // The Keras layer, not TensorFlow's `moments` scope inside it.
                    let layer = ctx.layer.strip_suffix("/moments").unwrap_or(&ctx.layer).to_string();
                    let ctx = NodeCtx { layer, ..ctx };
                    self.push_layer_norm(&ctx, x, &axes, epsilon, gamma.as_deref(), beta.as_deref(), &sp.out)
                }
                SpelledOp::FusedLayerNorm { target, back, count, epsilon, gamma, beta } => {
                    let axes = self.fused_layer_norm_axes(&ctx, x, &target, &back, count.as_deref())?;
                    let param = |name: &Option<String>| name.as_ref().map(|n| self.spelled_const(&ctx, n)).transpose();
                    let (gamma, beta) = (param(&gamma)?, param(&beta)?);
                    self.push_layer_norm(&ctx, x, &axes, epsilon, gamma.as_deref(), beta.as_deref(), &sp.out)
                }
            };
        }
        if self.is_int_fold(&ctx) {
            return self.int_fold(&ctx);
        }
        if self.is_shape_op(&ctx) {
            return self.shape_op(&ctx);
        }
        match ctx.op {
            "Conv" | "ConvTranspose" => self.conv(&ctx),
            "MatMul" => self.matmul(&ctx),
            "Gemm" => self.gemm(&ctx),
            "Add" | "Sum" => self.add(&ctx),
            "Mul" | "Div" | "Sub" => self.affine(&ctx),
            "Max" | "Min" if self.scalar_operand(&ctx).is_some() => self.clip_by_scalar(&ctx),
            "Max" => self.merge(&ctx, Merge::Maximum),
            "Min" => self.merge(&ctx, Merge::Minimum),
            "Mean" => self.mean(&ctx),
            "Slice" => self.slice(&ctx),
            "Split" => self.split(&ctx),
            "MaxPool" | "AveragePool" => self.pool(&ctx),
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(&ctx),
            "ReduceMean" | "ReduceMax" => self.reduce(&ctx),
            "BatchNormalization" => self.batchnorm(&ctx),
            "LayerNormalization" => self.layer_norm(&ctx),
            "InstanceNormalization" => self.instance_norm(&ctx),
            "DepthToSpace" | "SpaceToDepth" => self.depth_space(&ctx),
            "Tile" => self.tile(&ctx),
            "PRelu" => {
                let x = self.value(&ctx, 0)?;
                let c = self.konst(&ctx, 1, "slope")?;
                let slope = c.f32s().ok_or_else(|| ctx.err("slope must be float32"))?.to_vec();
                let id = self.push_prelu(&ctx, x, &slope, &c.dims, None)?;
                self.bind(ctx.main_output()?, id)
            }
            "Reshape" => self.reshape_op(&ctx),
            "Flatten" => self.flatten(&ctx),
            "Squeeze" => self.squeeze(&ctx),
            "Unsqueeze" => self.unsqueeze(&ctx),
            "Transpose" => self.transpose(&ctx),
            "Pad" => self.pad(&ctx),
            "Concat" => self.concat(&ctx),
            "Resize" | "Upsample" => self.resize(&ctx),
            "Dropout" | "Identity" => self.identity(&ctx),
            "Softmax" | "LogSoftmax" => Err(ctx.err(
                "unsupported op inside the graph: a softmax is only accepted as the model's last op, where it must be \
                 removed before export or dropped with strip_softmax",
            )),
            _ => match self.parse_activation(&ctx)? {
                Some(act) => {
                    let x = self.value(&ctx, 0)?;
                    // A Keras Activation("swish") layer: its Sigmoid, then the Mul by its input.
                    let (act, out) = match self.swish_mul(&ctx) {
                        Some(out) => (Activation::Swish, out),
                        None => (act, ctx.main_output()?.to_string()),
                    };
                    let id = self.push(&ctx, Op::Activation(act), &[x])?;
                    self.bind(&out, id)
                }
                None => Err(ctx.err(format!("unsupported op '{}' (supported: {SUPPORTED})", ctx.op))),
            },
        }
    }

    // ---- helpers -------------------------------------------------------------------------------------------

    /// The IR node computing input `i` (which must not be a constant).
    pub(crate) fn value(&self, ctx: &NodeCtx, i: usize) -> Result<usize> {
        let name = ctx.required_input(i)?;
        if let Some(&id) = self.values.get(name) {
            return Ok(id);
        }
        if self.consts.contains_key(name) {
            return Err(ctx.err(format!("input {i} ('{name}') is a constant; this op needs a computed tensor there")));
        }
        Err(ctx.err(format!("input {i} ('{name}') is not computed by any supported node")))
    }

    /// Constant input `i`.
    fn konst(&self, ctx: &NodeCtx, i: usize, what: &str) -> Result<Rc<Const>> {
        let name = ctx.required_input(i)?;
        self.consts
            .get(name)
            .cloned()
            .ok_or_else(|| ctx.err(format!("{what} (input {i}, '{name}') must be a constant (initializer or Constant node)")))
    }

    /// Constant int64 input `i` as a list.
    pub(crate) fn const_ints(&self, ctx: &NodeCtx, i: usize, what: &str) -> Result<Vec<i64>> {
        let c = self.konst(ctx, i, what)?;
        if c.dims.len() > 1 {
            return Err(ctx.err(format!("{what} must be a 1-D list, has shape {:?}", c.dims)));
        }
        c.i64s().map(<[i64]>::to_vec).ok_or_else(|| ctx.err(format!("{what} must be int64")))
    }

    /// Constant float scalar input `i`.
    fn const_scalar(&self, ctx: &NodeCtx, i: usize, what: &str) -> Result<f32> {
        let c = self.konst(ctx, i, what)?;
        match c.f32s() {
            Some(&[v]) => Ok(v),
            _ => Err(ctx.err(format!("{what} must be a float32 scalar, has shape {:?}", c.dims))),
        }
    }

    /// Constant float32 input `i` as a non-empty weight tensor.
    fn weight(&self, ctx: &NodeCtx, i: usize, what: &str) -> Result<Tensor> {
        let c = self.konst(ctx, i, what)?;
        let data = c.f32s().ok_or_else(|| ctx.err(format!("{what} must be float32")))?;
        if data.is_empty() {
            return Err(ctx.err(format!("{what} is empty (shape {:?})", c.dims)));
        }
        Ok(Tensor { shape: c.dims.clone(), data: data.to_vec() })
    }

    /// Input 0 of a windowed or resizing op: its IR node, per-sample shape `(channels, spatial..)` and number of
    /// spatial axes, which must be at least one.
    fn spatial_input(&self, ctx: &NodeCtx) -> Result<(usize, Vec<usize>, usize)> {
        let x = self.value(ctx, 0)?;
        let in_shape = self.shape(x);
        let r = in_shape.len().saturating_sub(1);
        if r == 0 {
            return Err(ctx.err(format!("input per-sample shape {in_shape:?} needs channels and spatial axes")));
        }
        Ok((x, in_shape, r))
    }

    /// Per-sample shape of IR node `id`.
    pub(crate) fn shape(&self, id: usize) -> Vec<usize> {
        self.graph.nodes.get(id).map(|n| n.shape.clone()).unwrap_or_default()
    }

    fn bind(&mut self, value: &str, id: usize) -> Result<()> {
        self.values.insert(value.to_string(), id);
        Ok(())
    }

    fn push(&mut self, ctx: &NodeCtx, op: Op, inputs: &[usize]) -> Result<usize> {
        self.push_as(&ctx.name, &ctx.layer, op, inputs)
    }

    /// Append an IR node; its output must stay within `MAX_ELEMENTS` so later shape products cannot overflow.
    fn push_as(&mut self, name: &str, layer: &str, op: Op, inputs: &[usize]) -> Result<usize> {
        let kind = op.kind();
        let id = self.graph.push_in_layer(name, layer, op, inputs)?;
        let shape = self.shape(id);
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(relprop_core::Error::node(name, kind, format!("output shape {shape:?} is too large")));
        }
        Ok(id)
    }

    /// Reshape the value `input` (computed by IR node `x`) to the per-sample `target`. A reshape of a reshape
    /// that nothing else reads collapses into one; when that leaves the shape unchanged, no node is added.
    fn reshape_to(&mut self, ctx: &NodeCtx, input: &str, x: usize, target: Vec<usize>) -> Result<usize> {
        let mut base = x;
        if self.graph.nodes.get(x).is_some_and(|n| n.op == Op::Reshape) && self.sole_consumer(input) == Some(ctx.index) {
            base = self.graph.nodes[x].inputs.first().copied().unwrap_or(x);
            if self.shape(base) == target {
                return Ok(base);
            }
        }
        self.graph.push_reshape(&ctx.name, &ctx.layer, base, target)
    }

    /// Explicit (begin, end) pads from `auto_pad` / `pads` for a window op over `spatial`.
    fn pads(ctx: &NodeCtx, spatial: &[usize], kernel: &[usize], strides: &[usize], dilations: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let r = spatial.len();
        match ctx.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => {
                let p = ctx.geometry("pads", 2 * r, 0, 0)?;
                Ok((p[..r].to_vec(), p[r..].to_vec()))
            }
            "VALID" => Ok((vec![0; r], vec![0; r])),
            mode @ ("SAME_UPPER" | "SAME_LOWER") => {
                let (mut begin, mut end) = (Vec::with_capacity(r), Vec::with_capacity(r));
                for a in 0..r {
                    // Output = ceil(in / stride); SAME_UPPER puts the odd pixel at the end (like TF "same").
                    let out = spatial[a].div_ceil(strides[a]);
                    let eff = dilations[a] * (kernel[a].max(1) - 1) + 1;
                    let total = ((out.max(1) - 1) * strides[a] + eff).saturating_sub(spatial[a]);
                    let (small, big) = (total / 2, total - total / 2);
                    if mode == "SAME_UPPER" {
                        begin.push(small);
                        end.push(big);
                    } else {
                        begin.push(big);
                        end.push(small);
                    }
                }
                Ok((begin, end))
            }
            other => Err(ctx.err(format!("auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"))),
        }
    }

    /// A ConvTranspose's pads and output padding (ONNX semantics): explicit `pads`, or from `output_shape` (the
    /// total padding `stride·(in − 1) + output_padding + d·(k − 1) + 1 − out`, the odd pixel at the end for
    /// SAME_UPPER, else at the start), or from `auto_pad` SAME_* with `out = in · stride`.
    fn transpose_pads(ctx: &NodeCtx, spatial: &[usize], kernel: &[usize], strides: &[usize], dilations: &[usize]) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
        let r = spatial.len();
        let op = ctx.geometry("output_padding", r, 0, 0)?;
        let auto = ctx.string("auto_pad", "NOTSET")?;
        let target: Option<Vec<i64>> = match ctx.ints("output_shape")? {
            Some(os) if os.len() == r || os.len() == r + 2 => Some(os[os.len() - r..].to_vec()),
            Some(os) => return Err(ctx.err(format!("output_shape {os:?} must give the {r} spatial extents"))),
            None if auto.starts_with("SAME") => Some(spatial.iter().zip(strides).map(|(&i, &s)| (i * s) as i64).collect()),
            None => None,
        };
        let Some(target) = target else {
            return match auto.as_str() {
                "NOTSET" | "" => {
                    let p = ctx.geometry("pads", 2 * r, 0, 0)?;
                    Ok((p[..r].to_vec(), p[r..].to_vec(), op))
                }
                "VALID" => Ok((vec![0; r], vec![0; r], op)),
                other => Err(ctx.err(format!("auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"))),
            };
        };
        let (mut begin, mut end) = (Vec::with_capacity(r), Vec::with_capacity(r));
        for a in 0..r {
            let full = (strides[a] * spatial[a].saturating_sub(1) + op[a] + dilations[a] * (kernel[a].max(1) - 1) + 1) as i64;
            let total = full - target[a];
            if total < 0 {
                return Err(ctx.err(format!("output_shape {target:?} is larger than the transposed convolution produces ({full} on axis {a})")));
            }
            let total = total as usize;
            let (small, big) = (total / 2, total - total / 2);
            let (b, e) = if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
            begin.push(b);
            end.push(e);
        }
        Ok((begin, end, op))
    }

    /// Fold `out`'s only consumer into a bias when it adds a constant broadcasting along `axis` (n entries).
    /// Returns the bias values and the Add's output, marking the Add done.
    fn fold_bias_add(&mut self, out: &str, full_rank: usize, axis: usize, n: usize) -> Option<(Vec<f32>, String)> {
        let k = self.sole_consumer(out)?;
        let node = self.nodes.get(k)?;
        if !is_op(node, "Add") || node.input.len() != 2 {
            return None;
        }
        let other = if node.input[0] == out { &node.input[1] } else { &node.input[0] };
        let bias = channel_bias(self.consts.get(other)?, full_rank, axis, n)?;
        let add_out = node.output.first().filter(|o| !o.is_empty())?.clone();
        self.done[k] = true;
        Some((bias, add_out))
    }

    /// Fuse `out`'s only consumer when it is an activation of the same layer (Keras `activation=`).
    /// Returns the activation and its output, marking it done.
    fn fuse_activation(&mut self, out: &str, layer: &str) -> Result<Option<(Activation, String)>> {
        // Keras `activation="swish"`: a Sigmoid and the Mul of `out` by it both read `out`.
        if let Some(&[a, b]) = self.consumers.get(out).map(Vec::as_slice) {
            let sigmoid = [a, b].into_iter().find(|&k| is_op(&self.nodes[k], "Sigmoid"));
            if let Some(k) = sigmoid {
                let c = self.ctx(k);
                if c.layer == layer && c.input(0) == Some(out) {
                    if let Some(o) = self.swish_mul(&c) {
                        self.done[k] = true;
                        return Ok(Some((Activation::Swish, o)));
                    }
                }
            }
        }
        // Keras `activation="gelu"`: a spelled-out activation of `out` in the same layer (its readers are the
        // activation's).
        let spelled = self.consumers.get(out).and_then(|c| c.first()).and_then(|k| self.spelled.get(k));
        if let Some((g, SpelledOp::Activation(a))) = spelled.map(|g| (g.clone(), g.op.clone())) {
            let readers = &self.consumers[out];
            let gl = self.ctx(g.nodes[1]).layer;
            let same_layer = gl == layer || gl.strip_prefix(layer).is_some_and(|r| r.starts_with('/'));
            if g.x == out && readers.iter().all(|r| g.nodes.contains(r)) && same_layer {
                g.nodes.iter().for_each(|&m| self.done[m] = true);
                return Ok(Some((a, g.out)));
            }
        }
        let Some(k) = self.sole_consumer(out) else { return Ok(None) };
        let c = self.ctx(k);
        let domain_ok = matches!(c.proto.domain.as_deref(), None | Some("") | Some("ai.onnx"));
        if !domain_ok || c.layer != layer || c.input(0) != Some(out) {
            return Ok(None);
        }
        let (Some(act), Some(o)) = (self.parse_activation(&c)?, c.output(0)) else { return Ok(None) };
        self.done[k] = true;
        Ok(Some((act, o.to_string())))
    }

    /// For a Sigmoid node `sig` of `x`: when its only reader is a Mul of `x` by it in the same layer (`x · σ(x)`,
    /// Keras swish, PyTorch SiLU), marks that Mul done and returns its output.
    fn swish_mul(&mut self, sig: &NodeCtx) -> Option<String> {
        if sig.op != "Sigmoid" {
            return None;
        }
        let (x, s) = (sig.input(0)?, sig.output(0)?);
        let k = self.sole_consumer(s)?;
        let m = self.ctx(k);
        let ins: Vec<&str> = m.proto.input.iter().map(String::as_str).collect();
        let pair = ins == [x, s] || ins == [s, x];
        // One layer; or, in a PyTorch export, both at the top level (`F.silu` in the model's own forward:
        // `/Sigmoid`, `/Mul_3`), where no module groups them.
        let top_level = |name: &str| name.strip_prefix('/').is_some_and(|n| !n.contains('/'));
        let together = m.layer == sig.layer || (top_level(&m.name) && top_level(&sig.name));
        if m.op != "Mul" || !together || !pair {
            return None;
        }
        let out = m.output(0)?.to_string();
        self.done[k] = true;
        Some(out)
    }

    /// The activation an activation node computes, or None when the node is something else.
    fn parse_activation(&self, ctx: &NodeCtx) -> Result<Option<Activation>> {
        let finite = |what: &str, v: f32| if v.is_finite() { Ok(v) } else { Err(ctx.err(format!("{what} must be finite, is {v}"))) };
        let act = match ctx.op {
            "Relu" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            "HardSwish" => Activation::HardSwish,
            "Tanh" => Activation::Tanh,
            "Softplus" => Activation::Softplus,
            "Softsign" => Activation::Softsign,
            "Exp" => Activation::Exp,
            "ThresholdedRelu" => Activation::ThresholdedRelu(finite("alpha", ctx.float("alpha", 1.0)?)?),
            "Celu" => match ctx.float("alpha", 1.0)? {
                a if a.is_finite() && a != 0.0 => Activation::Celu(a),
                a => return Err(ctx.err(format!("Celu alpha must be finite and non-zero, is {a}"))),
            },
            "LeakyRelu" => Activation::LeakyRelu(finite("alpha", ctx.float("alpha", 0.01)?)?),
            "Elu" => Activation::Elu(finite("alpha", ctx.float("alpha", 1.0)?)?),
            "Selu" => {
                // The IR's Selu has the standard constants; other values would silently change the forward pass.
                let (a, g) = (ctx.float("alpha", 1.673_263_2)?, ctx.float("gamma", 1.050_701)?);
                if (a - 1.673_263_2).abs() > 1e-5 || (g - 1.050_701).abs() > 1e-5 {
                    return Err(ctx.err(format!("Selu with alpha {a}, gamma {g} is not supported (only the standard constants)")));
                }
                Activation::Selu
            }
            "Gelu" => match ctx.string("approximate", "none")?.as_str() {
                "none" => Activation::Gelu,
                other => return Err(ctx.err(format!("Gelu approximate='{other}' is not supported (only the exact erf form)"))),
            },
            "HardSigmoid" => Activation::HardSigmoid {
                alpha: finite("alpha", ctx.float("alpha", 0.2)?)?,
                beta: finite("beta", ctx.float("beta", 0.5)?)?,
            },
            "Clip" => {
                // opset >= 11 passes the bounds as optional inputs, older opsets as attributes.
                let min = match ctx.input(1) {
                    Some(_) => self.const_scalar(ctx, 1, "min")?,
                    None => ctx.float("min", f32::NEG_INFINITY)?,
                };
                let max = match ctx.input(2) {
                    Some(_) => self.const_scalar(ctx, 2, "max")?,
                    None => ctx.float("max", f32::INFINITY)?,
                };
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(ctx.err(format!("Clip bounds min {min} / max {max} are invalid")));
                }
                Activation::Clip { min, max }
            }
            _ => return Ok(None),
        };
        Ok(Some(act))
    }

    // ---- kernel ops ----------------------------------------------------------------------------------------

    /// Conv, and ConvTranspose (Keras Conv2DTranspose, PyTorch ConvTranspose): the transpose of the convolution
    /// with the same weight and geometry ([`Conv::transposed`]), its pads from `pads`, `auto_pad` or `output_shape`.
    fn conv(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let transposed = ctx.op == "ConvTranspose";
        let separable = if transposed { None } else { self.separable_first_stage(ctx, x)? };
        let w = self.weight(ctx, 1, "weight")?;
        let in_shape = self.shape(x);
        let r = w.shape.len().saturating_sub(2);
        if r == 0 {
            return Err(ctx.err(format!("weight shape {:?} must be (out, in/groups, k1, ..)", w.shape)));
        }
        if in_shape.len() != r + 1 {
            return Err(ctx.err(format!("input per-sample shape {in_shape:?} must be (channels, {r} spatial axes) for weight {:?}", w.shape)));
        }
        let kernel = w.shape[2..].to_vec();
        if let Some(ks) = ctx.ints("kernel_shape")? {
            if ks.len() != r || ks.iter().zip(&kernel).any(|(&a, &b)| a != b as i64) {
                return Err(ctx.err(format!("kernel_shape {ks:?} disagrees with weight shape {:?}", w.shape)));
            }
        }
        let strides = ctx.geometry("strides", r, 1, 1)?;
        let dilations = ctx.geometry("dilations", r, 1, 1)?;
        let groups = ctx.bounded("group", ctx.int("group", 1)?, 1)?;
        let (pads_begin, pads_end, output_padding) = if transposed {
            Self::transpose_pads(ctx, &in_shape[1..], &kernel, &strides, &dilations)?
        } else {
            let (b, e) = Self::pads(ctx, &in_shape[1..], &kernel, &strides, &dilations)?;
            (b, e, vec![])
        };
        let m = if transposed { w.shape[1] * groups } else { w.shape[0] };
        let mut bias = match ctx.input(2) {
            Some(_) => Some(self.weight(ctx, 2, "bias")?.data),
            None => None,
        };
        let mut out = ctx.main_output()?.to_string();
        if let Some((b, o)) = self.fold_bias_add(&out, r + 2, 1, m) {
            bias = Some(match bias {
                Some(old) if old.len() == b.len() => old.iter().zip(&b).map(|(a, b)| a + b).collect(),
                Some(_) => return Err(ctx.err(format!("bias does not have {m} values"))),
                None => b,
            });
            out = o;
        }
        let activation = self.fuse_activation(&out, &ctx.layer)?.map(|(a, o)| {
            out = o;
            a
        });
        let bias = bias.map(|b| Arc::new(Tensor { shape: vec![b.len()], data: b }));
        let (conv, input) = match separable {
            None => {
                let transposed = transposed.then_some(output_padding);
                (Conv { weight: Arc::new(w), bias, strides, dilations, pads_begin, pads_end, groups, activation, pointwise: None, transposed }, x)
            }
            Some((first, between)) => {
                let pointwise = kernel.iter().chain(&strides).chain(&dilations).all(|&v| v == 1)
                    && pads_begin.iter().chain(&pads_end).all(|&p| p == 0)
                    && groups == 1;
                if !pointwise {
                    return Err(ctx.err(format!(
                        "second convolution of the SeparableConv layer '{}' must be pointwise (1x1, stride 1, no \
                         padding, one group); has kernel {kernel:?}, strides {strides:?}, group {groups}",
                        ctx.layer
                    )));
                }
                // The first stage and the no-op reshapes after it were the last nodes pushed (checked): they
                // become this one layer.
                let input = first.inputs[0];
                let keep = self.graph.nodes.len() - 1 - between;
                self.graph.nodes.truncate(keep);
                // (Their values had no other reader; none may name the nodes pushed next.)
                self.values.retain(|_, v| *v < keep);
                let Op::Conv(dw) = first.op else { unreachable!("checked to be a Conv") };
                (Conv { pointwise: Some(Arc::new(w)), bias, activation, ..dw }, input)
            }
        };
        let id = self.push(ctx, Op::Conv(conv), &[input])?;
        self.bind(&out, id)
    }

    /// A Keras SeparableConv2D is one layer of two convolutions (tf2onnx: `…/sep/separable_conv2d/depthwise`
    /// feeding `…/sep/separable_conv2d`). signxai applies each rule to the layer as a whole (z⁺ through both
    /// convolutions with positive weights, ε on the composite output), so the pair becomes one IR Conv with a
    /// pointwise stage ([`Conv::pointwise`]). A conv whose input comes straight from a bias-free,
    /// activation-free conv of a layer nested in its own is taken as such a pair: returns that first stage's
    /// node and how many no-op layout nodes lie between the two. Through anything else (or read by anything
    /// else) it cannot be merged and is refused, rather than explained as two layers with a rule each (different
    /// numbers from signxai's).
    fn separable_first_stage(&self, ctx: &NodeCtx, x: usize) -> Result<Option<(relprop_core::graph::Node, usize)>> {
        // Walk back through reshapes and transposes. `noop` while each keeps the values' row-major order and the
        // chain ends at the shape it started from, i.e. the chain changes nothing: tf2onnx puts a shape-keeping
        // Reshape between the two convolutions of a strided SeparableConv, and on a 1×1 plane it sometimes
        // writes its NCHW→NHWC→NCHW pair as a Reshape to (1, 1, C) and a Transpose back (NASNet's last cells).
        let (mut j, mut between, mut noop) = (x, 0, true);
        while matches!(self.graph.nodes[j].op, Op::Reshape | Op::Transpose { .. }) {
            let input = self.graph.nodes[j].inputs[0];
            let keeps_order = match &self.graph.nodes[j].op {
                Op::Transpose { perm } => moves_only_unit_axes(perm, &self.shape(input)),
                _ => true,
            };
            noop &= keeps_order && self.sole_reader(j);
            (j, between) = (input, between + 1);
        }
        noop &= self.shape(x) == self.shape(j);
        let prev = &self.graph.nodes[j];
        let nested = prev.layer.len() > ctx.layer.len() + 1 && prev.layer.starts_with(&format!("{}/", ctx.layer));
        if !(matches!(&prev.op, Op::Conv(c) if c.activation.is_none() && c.pointwise.is_none() && c.transposed.is_none()) && nested) {
            return Ok(None);
        }
        let bias_free = matches!(&prev.op, Op::Conv(c) if c.bias.is_none());
        let direct = noop && x == j + between && x + 1 == self.graph.nodes.len();
        if !direct || !bias_free || !self.sole_reader(j) {
            return Err(ctx.err(format!(
                "this convolution and '{}' form one Keras layer (a SeparableConv): relprop explains such a pair as \
                 one kernel only when the first convolution (bias-free) feeds this one directly (or through \
                 reshapes and transposes that change nothing) and nothing else reads it",
                prev.name
            )));
        }
        Ok(Some((prev.clone(), between)))
    }

    /// Whether every ONNX value that IR node `id` computes has exactly one reader (later nodes are not
    /// converted yet, so this is checked at the ONNX level).
    fn sole_reader(&self, id: usize) -> bool {
        // A Shape node reads only the size, which folding a bias or an activation leaves as it is.
        let value_readers = |c: &Vec<usize>| c.iter().filter(|&&k| !is_op(&self.nodes[k], "Shape")).count();
        self.values.iter().filter(|(_, &v)| v == id).all(|(name, _)| self.consumers.get(name).is_some_and(|c| value_readers(c) == 1))
    }

    /// Dense from a weight `(in, out)` and optional bias, folding a following bias Add and activation.
    fn dense(&mut self, ctx: &NodeCtx, x: usize, w: Tensor, bias: Option<Vec<f32>>) -> Result<()> {
        let n = w.shape.get(1).copied().unwrap_or(0);
        let full_rank = self.shape(x).len() + 1;
        let merged = ctx.input(0).and_then(|i| self.merged.get(i)).cloned();
        let (bias, activation, out) = self.dense_tail(ctx.main_output()?, full_rank, n, &ctx.layer, bias)?;
        let id = self.push(ctx, Op::Dense(Dense { weight: Arc::new(w), bias, activation }), &[x])?;
        // Row by row on the last axis: a batch-merged input gives a batch-merged output.
        if let Some(m) = merged {
            self.merged.insert(out.clone(), m);
        }
        self.bind(&out, id)
    }

    /// What follows a Dense's product `out` (of `n` units, full rank `full_rank`) in the same Keras layer: a bias
    /// Add (added to `bias`) and an activation, each absorbed when it is the only reader. Returns the bias, the
    /// activation and the last absorbed output.
    fn dense_tail(
        &mut self,
        out: &str,
        full_rank: usize,
        n: usize,
        layer: &str,
        mut bias: Option<Vec<f32>>,
    ) -> Result<(Option<Arc<Tensor>>, Option<Activation>, String)> {
        let mut out = out.to_string();
        if let Some((b, o)) = self.fold_bias_add(&out, full_rank, full_rank - 1, n) {
            bias = Some(match bias {
                Some(old) => old.iter().zip(&b).map(|(a, b)| a + b).collect(),
                None => b,
            });
            out = o;
        }
        let activation = self.fuse_activation(&out, layer)?.map(|(a, o)| {
            out = o;
            a
        });
        Ok((bias.map(|b| Arc::new(Tensor { shape: vec![b.len()], data: b })), activation, out))
    }

    fn matmul(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let w = self.weight(ctx, 1, "weight (2nd MatMul operand)")?;
        if w.shape.len() != 2 {
            return Err(ctx.err(format!("weight must be 2-D (in, out), has shape {:?}", w.shape)));
        }
        self.dense(ctx, x, w, None)
    }

    fn gemm(&mut self, ctx: &NodeCtx) -> Result<()> {
        if ctx.int("transA", 0)? != 0 {
            return Err(ctx.err("transA=1 is not supported: the batch must be the rows of A"));
        }
        let trans_b = ctx.int("transB", 0)? != 0;
        let (alpha, beta) = (ctx.float("alpha", 1.0)?, ctx.float("beta", 1.0)?);
        if !alpha.is_finite() || !beta.is_finite() {
            return Err(ctx.err(format!("alpha {alpha} and beta {beta} must be finite")));
        }
        let x = self.value(ctx, 0)?;
        let merged = ctx.input(0).is_some_and(|i| self.merged.contains_key(i));
        if self.shape(x).len() != 1 && !merged {
            return Err(ctx.err(format!("input A must be 2-D (batch, features), has per-sample shape {:?}", self.shape(x))));
        }
        let b = self.weight(ctx, 1, "B")?;
        let [r, c] = b.shape[..] else {
            return Err(ctx.err(format!("B must be 2-D, has shape {:?}", b.shape)));
        };
        // alpha * A·B + beta * C == A·(alpha B) + (beta C): scaling the constants is exact.
        let mut w = if trans_b {
            let mut data = Vec::with_capacity(b.data.len());
            for j in 0..c {
                data.extend((0..r).map(|i| b.data[i * c + j]));
            }
            Tensor { shape: vec![c, r], data }
        } else {
            b
        };
        if alpha != 1.0 {
            w.data.iter_mut().for_each(|v| *v *= alpha);
        }
        let n = w.shape[1];
        let bias = match ctx.input(2) {
            Some(_) => {
                let c = self.konst(ctx, 2, "C")?;
                let v = channel_bias(&c, 2, 1, n).ok_or_else(|| ctx.err(format!("C of shape {:?} does not broadcast as a bias of {n} outputs", c.dims)))?;
                Some(v.into_iter().map(|v| v * beta).collect())
            }
            None => None,
        };
        self.dense(ctx, x, w, bias)
    }

    // ---- other layers --------------------------------------------------------------------------------------

    fn add(&mut self, ctx: &NodeCtx) -> Result<()> {
        let names: Vec<&str> = ctx.proto.input.iter().map(String::as_str).collect();
        if names.is_empty() || names.iter().any(|n| n.is_empty()) {
            return Err(ctx.err("needs at least one input, none of them empty"));
        }
        let mut ins = Vec::new();
        if names.len() == 2 && names.iter().any(|n| self.consts.contains_key(*n)) {
            // x + c outside a Conv/Dense bias: a per-channel shift.
            return self.affine(ctx);
        }
        for (i, name) in names.iter().enumerate() {
            if self.consts.contains_key(*name) {
                return Err(ctx.err(format!(
                    "adding a constant ('{name}') is only supported as the bias right after a Conv, MatMul or Gemm, \
                     or as a per-channel shift of one tensor"
                )));
            }
            let id = self.value(ctx, i)?;
            // Keras Add([a, b, c]) becomes chained Adds of one layer: merge them back into one n-ary Add.
            // Merging stops at MAX_MERGED_ADD inputs: a hostile chain of thousands of Adds in one layer would
            // otherwise copy a growing input list at every step (quadratic time and memory).
            ins.extend(self.chain_inputs(ctx, name, id, &Op::Add));
        }
        let id = self.push(ctx, Op::Add, &ins)?;
        self.chainable.insert(id, ctx.layer.clone());
        self.bind(ctx.main_output()?, id)
    }

    /// The IR inputs that input `name` (IR node `id`) contributes to an associative `op` of this node: the
    /// inputs of `id` itself when it is the same op in the same layer and only this node reads it (a chain of
    /// binary ONNX nodes back into one n-ary node), else `id`. Merging stops at MAX_MERGED_ADD inputs: a hostile
    /// chain of thousands in one layer would otherwise copy a growing input list at every step.
    fn chain_inputs(&self, ctx: &NodeCtx, name: &str, id: usize, op: &Op) -> Vec<usize> {
        let chain = self.chainable.get(&id) == Some(&ctx.layer) && self.sole_consumer(name) == Some(ctx.index);
        match self.graph.nodes.get(id) {
            Some(n) if chain && n.op == *op && n.inputs.len() < MAX_MERGED_ADD => n.inputs.clone(),
            _ => vec![id],
        }
    }

    /// Keras Multiply, Subtract, Maximum and Minimum (tf2onnx: Mul, Sub, Max, Min of computed tensors, with
    /// size-1 axes broadcasting, as a squeeze-and-excitation gate): a [`Merge`] node, relevance by the gradient.
    fn merge(&mut self, ctx: &NodeCtx, kind: Merge) -> Result<()> {
        let names: Vec<&str> = ctx.proto.input.iter().map(String::as_str).collect();
        if names.len() < 2 || names.iter().any(|n| n.is_empty()) {
            return Err(ctx.err("needs at least two inputs, none of them empty"));
        }
        if let Some(c) = names.iter().find(|n| self.consts.contains_key(**n)) {
            return Err(ctx.err(format!("{} with a constant ('{c}') is not supported (only of computed tensors)", ctx.op)));
        }
        let mut ins = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let id = self.value(ctx, i)?;
            let op = Op::Merge(kind);
            ins.extend(if kind == Merge::Subtract { vec![id] } else { self.chain_inputs(ctx, name, id, &op) });
        }
        let id = self.push(ctx, Op::Merge(kind), &ins)?;
        if kind != Merge::Subtract {
            self.chainable.insert(id, ctx.layer.clone());
        }
        self.bind(ctx.main_output()?, id)
    }

    /// For a binary node with one operand a one-element float constant: the other operand's index and the value.
    fn scalar_operand(&self, ctx: &NodeCtx) -> Option<(usize, f32)> {
        let [a, b] = ctx.proto.input.as_slice() else { return None };
        let one = |n: &str| self.consts.get(n).and_then(|c| match c.f32s() {
            Some(&[v]) => Some(v),
            _ => None,
        });
        match (one(a), one(b)) {
            (None, Some(v)) if !self.consts.contains_key(a) => Some((0, v)),
            (Some(v), None) if !self.consts.contains_key(b) => Some((1, v)),
            _ => None,
        }
    }

    /// `Max(x, c)` / `Min(x, c)` with a scalar `c`: a Clip activation (tf2onnx's `clip_by_value`, e.g. in Keras'
    /// `hard_sigmoid`); relevance passes it unchanged, as through every activation.
    fn clip_by_scalar(&mut self, ctx: &NodeCtx) -> Result<()> {
        let Some((i, c)) = self.scalar_operand(ctx) else { return Err(ctx.err("needs a computed tensor and a scalar constant")) };
        if c.is_nan() {
            return Err(ctx.err("the bound is NaN"));
        }
        let x = self.value(ctx, i)?;
        let act = if ctx.op == "Max" { Activation::Clip { min: c, max: f32::INFINITY } } else { Activation::Clip { min: f32::NEG_INFINITY, max: c } };
        let id = self.push(ctx, Op::Activation(act), &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    /// `x·c`, `x/c`, `x+c`, `x−c` or `c−x` with a per-channel (or scalar) constant `c`, outside a Conv/Dense:
    /// tf2onnx's lowering of a Keras BatchNormalization that is not fused (inputs of rank 2 or 3, i.e. after
    /// Dense or Conv1D: `x·a + b`), PyTorch's in-model normalisation (`(x − mean) / std`) and scalar scalings.
    /// A Mul/Div whose only consumer is an Add/Sub of a constant in the same layer absorbs it. Held as γ = a,
    /// β = b, mean 0, variance 1 and epsilon 0, which computes the same function. A lowered Keras BN (node names
    /// `.../batchnorm/...`) is an [`Op::BatchNorm`] with signxai's BN rule, which differs from the one on the
    /// original layer only in its stabiliser's argument (`x·y` instead of `(x − μ)·y`;
    /// crates/relprop-onnx/README.md). Anything else (Keras Rescaling and Normalization, arithmetic with a
    /// constant, PyTorch's `(x − mean) / std`) is an [`Op::Affine`], whose relevance passes unchanged as in signxai.
    fn affine(&mut self, ctx: &NodeCtx) -> Result<()> {
        let names: Vec<&str> = ctx.proto.input.iter().map(String::as_str).collect();
        let [a, b] = names.as_slice() else { return Err(ctx.err("needs exactly two inputs")) };
        let (x_first, cname) = match (self.consts.contains_key(*a), self.consts.contains_key(*b)) {
            (false, true) => (true, *b),
            (true, false) => (false, *a),
            (true, true) => return Err(ctx.err("both inputs are constants (nothing to compute)")),
            (false, false) => {
                return match ctx.op {
                    "Mul" => self.merge(ctx, Merge::Multiply),
                    "Sub" => self.merge(ctx, Merge::Subtract),
                    _ => Err(ctx.err(format!(
                        "{} of two computed tensors is not supported (only by a per-channel or scalar constant)",
                        ctx.op
                    ))),
                }
            }
        };
        let x = self.value(ctx, if x_first { 0 } else { 1 })?;
        let shape = self.shape(x);
        let full_rank = shape.len() + 1;
        let c = self.consts.get(cname).cloned().ok_or_else(|| ctx.err("constant vanished"))?;
        // The channel axis: ONNX axis 1 (channels-first, and the only axis of a Dense output) or the last one
        // (channels-last, Keras); a scalar takes axis 1.
        let found = [1, full_rank - 1].into_iter().find_map(|axis| {
            let n = *shape.get(axis.checked_sub(1)?)?;
            channel_bias(&c, full_rank, axis, n).map(|v| (axis, v))
        });
        let Some((axis, v)) = found else {
            return Err(ctx.err(format!(
                "constant '{cname}' of shape {:?} is not per-channel for input shape {shape:?} (channels on axis 1 \
                 or the last axis)",
                c.dims
            )));
        };
        let n = v.len();
        if ctx.op == "Add" && axis == 1 && self.fold_bias_through_reshape(x, &v) {
            return self.bind(ctx.main_output()?, x);
        }
        if (x_first || ctx.op == "Mul") && self.average_of_add(ctx, x, &c) {
            return self.bind(ctx.main_output()?, x);
        }
        let (mut gamma, mut beta) = (vec![1.0f32; n], vec![0.0f32; n]);
        match (ctx.op, x_first) {
            ("Mul", _) => gamma = v,
            ("Div", true) => {
                if v.contains(&0.0) {
                    return Err(ctx.err(format!("divides by zero (constant '{cname}')")));
                }
                gamma = v.iter().map(|d| 1.0 / d).collect();
            }
            ("Div", false) => return Err(ctx.err("dividing a constant by a tensor is not supported")),
            ("Add", _) => beta = v,
            ("Sub", true) => beta = v.iter().map(|d| -d).collect(),
            ("Sub", false) => {
                gamma = vec![-1.0; n];
                beta = v;
            }
            (op, _) => return Err(ctx.err(format!("unexpected op {op}"))),
        }
        let mut out = ctx.main_output()?.to_string();
        if matches!(ctx.op, "Mul" | "Div") {
            if let Some(k) = self.sole_consumer(&out) {
                let next = self.ctx(k);
                let ins: Vec<&str> = next.proto.input.iter().map(String::as_str).collect();
                let shift = match (next.op, ins.as_slice()) {
                    ("Add", [p, q]) if *p == out => Some((*q, 1.0)),
                    ("Add", [q, p]) if *p == out => Some((*q, 1.0)),
                    ("Sub", [p, q]) if *p == out => Some((*q, -1.0)),
                    _ => None,
                };
                let shift = shift.filter(|_| next.layer == ctx.layer).and_then(|(q, sign)| {
                    channel_bias(self.consts.get(q)?, full_rank, axis, n).map(|b| b.iter().map(|v| sign * v).collect::<Vec<f32>>())
                });
                if let (Some(b), Some(o)) = (shift, next.output(0)) {
                    beta = b;
                    out = o.to_string();
                    self.done[k] = true;
                }
            }
        }
        let bn = channel_affine(gamma, beta);
        // Only tf2onnx's lowering of a Keras BatchNormalization (`.../batchnorm/mul_1`) is a BN layer with the BN
        // rule; every other constant scaling or shift is an Affine, which signxai passes relevance through.
        let lowered_bn = ctx.name.split('/').any(|part| part == "batchnorm");
        let op = if lowered_bn { Op::BatchNorm(bn) } else { Op::Affine(bn) };
        // The IR's BatchNorm works on per-sample axis 0: a channels-last tensor is transposed around it.
        let id = if axis == 1 {
            self.push(ctx, op, &[x])?
        } else {
            let to_first: Vec<usize> = [0, axis].into_iter().chain(1..axis).collect();
            let back: Vec<usize> = [0].into_iter().chain(2..=axis).chain([1]).collect();
            let t1 = self.unique_name(&format!("{}__channels_first", ctx.name));
            let t2 = self.unique_name(&format!("{}__channels_last", ctx.name));
            let pre = self.push_as(&t1, &ctx.layer, Op::Transpose { perm: to_first }, &[x])?;
            let mid = self.push(ctx, op, &[pre])?;
            self.push_as(&t2, &ctx.layer, Op::Transpose { perm: back }, &[mid])?
        };
        self.bind(&out, id)
    }

    /// Keras `Average` through tf2onnx: an Add of `k` tensors, then (in the same layer, its only reader) a Mul by
    /// `1/k` or a Div by `k`. The Add node becomes a [`Op::Mean`], which computes the sum and one division like
    /// Keras and routes relevance like signxai (by the gradient); a plain Add + scale would get the Add rule.
    fn average_of_add(&mut self, ctx: &NodeCtx, x: usize, c: &Const) -> bool {
        let Some(node) = self.graph.nodes.get(x).filter(|n| n.op == Op::Add) else { return false };
        let k = node.inputs.len() as f32;
        let factor = match (ctx.op, c.f32s()) {
            ("Mul", Some(&[v])) => v * k,
            ("Div", Some(&[v])) => k / v,
            _ => return false,
        };
        let same_layer = self.chainable.get(&x) == Some(&ctx.layer);
        let sole = ctx.input(0).is_some_and(|i| self.sole_consumer(i) == Some(ctx.index));
        if !(same_layer && sole && (factor - 1.0).abs() <= 4.0 * f32::EPSILON) {
            return false;
        }
        self.graph.nodes[x].op = Op::Mean;
        self.chainable.remove(&x);
        true
    }

    /// ONNX Resize (and the older Upsample) by an integer factor per spatial axis, the batch and channel axes
    /// kept. Nearest mode: Keras UpSampling1D/2D through tf2onnx (`tf_half_pixel_for_nn`), PyTorch `nn.Upsample`
    /// (`asymmetric`, `floor`); the index mapping the attributes define is computed and must repeat every input
    /// value into a block (output `i` reads input `⌊i / f⌋`). Linear mode (Keras bilinear: `half_pixel`; PyTorch
    /// `align_corners` either way) keeps its coordinate transformation. Anything else (cubic, fractional factors,
    /// a nearest mapping that shifts or rounds differently) is refused rather than approximated.
    fn resize(&mut self, ctx: &NodeCtx) -> Result<()> {
        let (x, in_shape, r) = self.spatial_input(ctx)?;
        let mode = ctx.string("mode", "nearest")?;
        if mode != "nearest" && mode != "linear" {
            return Err(ctx.err(format!(
                "mode '{mode}' is not supported: only nearest and linear upsampling by whole factors (Keras \
                 UpSampling with interpolation 'nearest' or 'bilinear', torch nn.Upsample in 'nearest' or \
                 '(bi)linear' mode)"
            )));
        }
        if ctx.attr("axes").is_some() {
            return Err(ctx.err("the 'axes' attribute is not supported (scales or sizes must cover every axis)"));
        }
        // Scales (Resize input 2, or the older Upsample's input 1 / attribute) or sizes (input 3), full rank.
        let full: Vec<f64> = if ctx.op == "Upsample" {
            match ctx.input(1) {
                Some(_) => self.konst(ctx, 1, "scales")?.f32s().ok_or_else(|| ctx.err("scales must be float32"))?.iter().map(|&v| v as f64).collect(),
                None => return Err(ctx.err("Upsample needs its scales as a constant input")),
            }
        } else if ctx.input(2).is_some_and(|n| self.consts.get(n).is_some_and(|c| !c.dims.contains(&0))) {
            // (an empty scales tensor means: sizes are given instead)
            self.konst(ctx, 2, "scales")?.f32s().ok_or_else(|| ctx.err("scales must be float32"))?.iter().map(|&v| v as f64).collect()
        } else if ctx.input(3).is_some() {
            let sizes = self.const_ints(ctx, 3, "sizes")?;
            let full_in: Vec<usize> = std::iter::once(1).chain(in_shape.iter().copied()).collect();
            if sizes.len() != full_in.len() {
                return Err(ctx.err(format!("sizes {sizes:?} must have one entry per axis of the input (rank {})", full_in.len())));
            }
            sizes.iter().zip(&full_in).enumerate().map(|(a, (&s, &d))| if a == 0 { 1.0 } else { s as f64 / d as f64 }).collect()
        } else {
            return Err(ctx.err("needs constant scales or sizes"));
        };
        if full.len() != r + 2 {
            return Err(ctx.err(format!("scales {full:?} must have one entry per axis of the input (rank {})", r + 2)));
        }
        if full[0] != 1.0 || full[1] != 1.0 {
            return Err(ctx.err(format!("scales {full:?} resize the batch or channel axis; only the spatial axes (channels first) may be upsampled")));
        }
        let factors: Vec<usize> = full[2..]
            .iter()
            .map(|&f| if f >= 1.0 && f.fract() == 0.0 && f <= 1024.0 { Ok(f as usize) } else { Err(ctx.err(format!("scale {f} is not a whole factor of at least 1 (scales {full:?})"))) })
            .collect::<Result<_>>()?;
        let coord = ctx.string("coordinate_transformation_mode", if ctx.op == "Upsample" { "asymmetric" } else { "half_pixel" })?;
        if mode == "linear" {
            // (pytorch_half_pixel differs from half_pixel only for an output extent of 1)
            let c = match coord.as_str() {
                "half_pixel" | "pytorch_half_pixel" => Coordinates::HalfPixel,
                "align_corners" => Coordinates::AlignCorners,
                "asymmetric" => Coordinates::Asymmetric,
                other => return Err(ctx.err(format!("coordinate_transformation_mode '{other}' is not supported in linear mode"))),
            };
            let id = self.push(ctx, Op::Upsample { factors, mode: Interpolation::Linear(c) }, &[x])?;
            return self.bind(ctx.main_output()?, id);
        }
        let nearest = ctx.string("nearest_mode", if ctx.op == "Upsample" { "floor" } else { "round_prefer_floor" })?;
        for (a, &f) in factors.iter().enumerate() {
            let (len_in, len_out) = (in_shape[a + 1], in_shape[a + 1] * f);
            for o in 0..len_out {
                let (of, sf) = (o as f64, f as f64);
                let src = match coord.as_str() {
                    "half_pixel" => (of + 0.5) / sf - 0.5,
                    "pytorch_half_pixel" => if len_out > 1 { (of + 0.5) / sf - 0.5 } else { 0.0 },
                    "align_corners" => if len_out > 1 { of * (len_in as f64 - 1.0) / (len_out as f64 - 1.0) } else { 0.0 },
                    "asymmetric" => of / sf,
                    "tf_half_pixel_for_nn" => (of + 0.5) / sf,
                    other => return Err(ctx.err(format!("coordinate_transformation_mode '{other}' is not supported in nearest mode"))),
                };
                let i = match nearest.as_str() {
                    "round_prefer_floor" => if src.fract() == 0.5 { src.floor() } else { src.round() },
                    "round_prefer_ceil" => src.round(),
                    "floor" => src.floor(),
                    "ceil" => src.ceil(),
                    other => return Err(ctx.err(format!("nearest_mode '{other}' is not one of round_prefer_floor, round_prefer_ceil, floor, ceil"))),
                };
                let i = i.clamp(0.0, len_in as f64 - 1.0) as usize;
                if i != o / f {
                    return Err(ctx.err(format!(
                        "coordinate_transformation_mode '{coord}' with nearest_mode '{nearest}' maps output {o} of \
                         axis {} to input {i}, not {}: only block-repeating upsampling is supported",
                        a + 2,
                        o / f
                    )));
                }
            }
        }
        let id = self.push(ctx, Op::Upsample { factors, mode: Interpolation::Nearest }, &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    /// ONNX Slice with step 1 (Keras Cropping, PyTorch `x[:, :, 1:-1]`): a window of the per-sample axes; the
    /// batch axis must stay whole. Opset 10+ takes starts/ends/axes/steps as constant inputs, older ones as
    /// attributes. Indices follow ONNX: negative counts from the end, out-of-range clamps.
    fn slice(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let shape = self.shape(x);
        let list = |i: usize, attr: &str, what: &str| -> Result<Option<Vec<i64>>> {
            match ctx.input(i) {
                Some(_) => self.const_ints(ctx, i, what).map(Some),
                None => ctx.ints(attr),
            }
        };
        let starts = list(1, "starts", "starts")?.ok_or_else(|| ctx.err("needs starts"))?;
        let ends = list(2, "ends", "ends")?.ok_or_else(|| ctx.err("needs ends"))?;
        let axes = list(3, "axes", "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = list(4, "steps", "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(ctx.err(format!("starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length")));
        }
        let (mut begin, mut end): (Vec<usize>, Vec<usize>) = (vec![0; shape.len()], shape.clone());
        let mut seen = vec![false; shape.len() + 1];
        for k in 0..starts.len() {
            let a = norm_axis(ctx, axes[k], shape.len() + 1)?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(ctx.err(format!("axis {a} is sliced twice")));
            }
            if steps[k] != 1 {
                return Err(ctx.err(format!("step {} on axis {a}: only step 1 is supported", steps[k])));
            }
            if a == 0 {
                // The batch axis: only "everything" (start 0, end past any batch size) keeps it.
                let whole = starts[k] == 0 && (ends[k] >= i32::MAX as i64 || self.batch.is_some_and(|b| ends[k] >= b as i64));
                if !whole {
                    return Err(ctx.err(format!("slices the batch axis ({}..{})", starts[k], ends[k])));
                }
                continue;
            }
            let dim = shape[a - 1] as i64;
            let at = |v: i64| (if v < 0 { v + dim } else { v }).clamp(0, dim) as usize;
            let (b, e) = (at(starts[k]), at(ends[k]));
            if e <= b {
                return Err(ctx.err(format!("the window {}..{} of axis {a} (size {dim}) is empty", starts[k], ends[k])));
            }
            (begin[a - 1], end[a - 1]) = (b, e);
        }
        if begin.iter().all(|&b| b == 0) && end == shape {
            return self.bind(ctx.main_output()?, x);
        }
        if let Some(id) = self.crop_into_conv_transpose(ctx, x, &begin, &end)? {
            return self.bind(ctx.main_output()?, id);
        }
        let id = self.push(ctx, Op::Slice { begin, end }, &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    /// tf2onnx writes a Keras Conv1DTranspose with `same` padding as a VALID ConvTranspose (on an unsqueezed 2-D
    /// tensor) cropped to the output size by a Slice of its own (`Slice__N`, computed pads after it). The crop
    /// becomes more of the ConvTranspose's own padding, so the Keras layer stays one kernel layer for the rules
    /// and for `until_layer_idx`; relevance would reach the cropped positions as zeros anyway. Only for such a
    /// generated Slice that alone reads a ConvTranspose without activation, keeping the channels whole.
    fn crop_into_conv_transpose(&mut self, ctx: &NodeCtx, x: usize, begin: &[usize], end: &[usize]) -> Result<Option<usize>> {
        let shape = self.shape(x);
        // Its only reader but for Shape nodes (tf2onnx computes the crop from the ConvTranspose's shape).
        let readers: Vec<usize> = ctx.input(0).and_then(|i| self.consumers.get(i)).into_iter().flatten().copied().filter(|&k| !is_op(&self.nodes[k], "Shape")).collect();
        let alone = readers == [ctx.index];
        let Op::Conv(c) = &self.graph.nodes[x].op else { return Ok(None) };
        if !generated_name(&ctx.name) || !alone || c.transposed.is_none() || c.activation.is_some() || c.pointwise.is_some() || begin[0] != 0 || end[0] != shape[0] {
            return Ok(None);
        }
        let mut c = c.clone();
        for a in 0..c.pads_begin.len() {
            c.pads_begin[a] += begin[a + 1];
            c.pads_end[a] += shape[a + 1] - end[a + 1];
        }
        let input = self.shape(self.graph.nodes[x].inputs[0]);
        let out = relprop_core::graph::infer_shape(&Op::Conv(c.clone()), &[&input]).map_err(|e| ctx.err(e))?;
        let node = &mut self.graph.nodes[x];
        node.op = Op::Conv(c);
        node.shape = out;
        Ok(Some(x))
    }

    /// ONNX Split of a per-sample axis (PyTorch `chunk`/`split`, tf2onnx's Keras `repeat_elements`): one Slice node
    /// per used output, each routing relevance back into its window. Sizes from input 1 (opset 13+), the `split`
    /// attribute, or equal parts (`num_outputs`, or the number of outputs).
    fn split(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let shape = self.shape(x);
        let a = norm_axis(ctx, ctx.int("axis", 0)?, shape.len() + 1)?;
        if a == 0 {
            return Err(ctx.err("splits the batch axis"));
        }
        let dim = shape[a - 1];
        let parts = ctx.proto.output.len();
        let sizes: Vec<i64> = match ctx.input(1) {
            Some(_) => self.const_ints(ctx, 1, "split")?,
            None => match ctx.ints("split")? {
                Some(v) => v,
                None => {
                    let n = ctx.int("num_outputs", parts as i64)?.max(1) as usize;
                    // ONNX: equal parts, the last one smaller when the axis does not divide evenly.
                    let each = dim.div_ceil(n);
                    (0..n).map(|k| (each.min(dim.saturating_sub(k * each))) as i64).collect()
                }
            },
        };
        if sizes.len() != parts || sizes.iter().any(|&v| v <= 0) || sizes.iter().sum::<i64>() != dim as i64 {
            return Err(ctx.err(format!("split sizes {sizes:?} must be {parts} positive sizes adding up to axis {a}'s extent {dim}")));
        }
        let mut start = 0;
        for (k, &size) in sizes.iter().enumerate() {
            let (b, e) = (start, start + size as usize);
            start = e;
            let Some(out) = ctx.output(k) else { continue };
            let (mut begin, mut end) = (vec![0; shape.len()], shape.clone());
            (begin[a - 1], end[a - 1]) = (b, e);
            let name = self.unique_name(&format!("{}:{k}", ctx.name));
            let id = self.push_as(&name, &ctx.layer, Op::Slice { begin, end }, &[x])?;
            self.bind(out, id)?;
        }
        Ok(())
    }

    fn mean(&mut self, ctx: &NodeCtx) -> Result<()> {
        let ins = (0..ctx.proto.input.len()).map(|i| self.value(ctx, i)).collect::<Result<Vec<_>>>()?;
        let id = self.push(ctx, Op::Mean, &ins)?;
        self.bind(ctx.main_output()?, id)
    }

    /// tf2onnx writes a Keras Conv1D as `Unsqueeze → Conv → Squeeze → Add(bias)`: when IR node `x` is a
    /// reshape that keeps the channel axis, of a bias-free Conv whose output nothing else reads, and only the
    /// Add reads the reshape, the per-channel `bias` becomes the conv's own (so the conv's rule sees it).
    fn fold_bias_through_reshape(&mut self, x: usize, bias: &[f32]) -> bool {
        let Some(r) = self.graph.nodes.get(x).filter(|r| r.op == Op::Reshape) else { return false };
        let Some(&k) = r.inputs.first() else { return false };
        let conv = &self.graph.nodes[k];
        let ok = matches!(&conv.op, Op::Conv(c) if c.bias.is_none() && c.activation.is_none())
            && conv.shape.first() == r.shape.first()
            && conv.shape.first() == Some(&bias.len());
        if !ok || !self.sole_reader(k) || !self.sole_reader(x) {
            return false;
        }
        if let Op::Conv(c) = &mut self.graph.nodes[k].op {
            c.bias = Some(Arc::new(Tensor { shape: vec![bias.len()], data: bias.to_vec() }));
        }
        true
    }

    fn pool(&mut self, ctx: &NodeCtx) -> Result<()> {
        let (x, in_shape, r) = self.spatial_input(ctx)?;
        if ctx.attr("kernel_shape").is_none() {
            return Err(ctx.err("attribute 'kernel_shape' is required"));
        }
        let kernel = ctx.geometry("kernel_shape", r, 1, 1)?;
        let strides = ctx.geometry("strides", r, 1, 1)?;
        let is_max = ctx.op == "MaxPool";
        if is_max {
            if ctx.geometry("dilations", r, 1, 1)?.iter().any(|&d| d != 1) {
                return Err(ctx.err("dilated max pooling is not supported"));
            }
            if ctx.output(1).is_some_and(|o| self.is_used(o)) {
                return Err(ctx.err("the indices output of MaxPool is used, which is not supported"));
            }
        }
        let (pads_begin, pads_end) = Self::pads(ctx, &in_shape[1..], &kernel, &strides, &vec![1; r])?;
        let flag = |key: &str| -> Result<bool> {
            match ctx.int(key, 0)? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(ctx.err(format!("attribute '{key}' must be 0 or 1, is {v}"))),
            }
        };
        let ceil_mode = flag("ceil_mode")?;
        let count_include_pad = !is_max && flag("count_include_pad")?;
        let pool = Pool { kernel, strides, pads_begin, pads_end, count_include_pad, ceil_mode };
        let id = self.push(ctx, if is_max { Op::MaxPool(pool) } else { Op::AvgPool(pool) }, &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    /// ReduceMean / ReduceMax over every spatial axis (PyTorch's `x.mean((2, 3))`, TF's `reduce_mean`): a global
    /// pool. Channels first (axes 2..) pools directly; channels last (axes 1..r-1) is transposed to channels
    /// first around it. The result keeps the input's layout (`keepdims=1`) or is `(C,)`.
    fn reduce(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let in_shape = self.shape(x);
        let rank = in_shape.len() + 1;
        let axes = match ctx.input(1) {
            Some(_) => self.const_ints(ctx, 1, "axes")?,
            None => ctx.ints("axes")?.unwrap_or_else(|| (0..rank as i64).collect()),
        };
        let mut axes: Vec<usize> = axes.iter().map(|&a| norm_axis(ctx, a, rank)).collect::<Result<_>>()?;
        axes.sort_unstable();
        axes.dedup();
        let keepdims = ctx.int("keepdims", 1)? != 0;
        let first: Vec<usize> = (2..rank).collect();
        let last: Vec<usize> = (1..rank - 1).collect();
        let channels_last = rank > 2 && axes == last && axes != first;
        if rank < 3 || (axes != first && !channels_last) {
            return Err(ctx.err(format!(
                "reducing axes {axes:?} of a rank-{rank} tensor is not supported (only all spatial axes: a global pool)"
            )));
        }
        let mut src = x;
        if channels_last {
            let name = self.unique_name(&format!("{}__channels_first", ctx.name));
            let perm = [0, rank - 1].into_iter().chain(1..rank - 1).collect();
            src = self.push_as(&name, &ctx.layer, Op::Transpose { perm }, &[x])?;
        }
        let op = if ctx.op == "ReduceMax" { Op::GlobalMaxPool } else { Op::GlobalAvgPool };
        let pooled = self.push(ctx, op, &[src])?;
        let c = self.shape(pooled)[0];
        let target = match (keepdims, channels_last) {
            (false, _) => vec![c],
            (true, false) => [c].into_iter().chain(std::iter::repeat_n(1, rank - 2)).collect(),
            (true, true) => std::iter::repeat_n(1, rank - 2).chain([c]).collect(),
        };
        let id = if target == [c] {
            pooled
        } else {
            let name = self.unique_name(&format!("{}__keepdims", ctx.name));
            self.graph.push_reshape(&name, &ctx.layer, pooled, target)?
        };
        self.bind(ctx.main_output()?, id)
    }

    /// ONNX global pools keep the spatial axes as 1s; the IR's drop them, so a reshape restores them (and
    /// collapses away again when a Squeeze or Flatten follows, as in Keras' GlobalAveragePooling2D).
    fn global_pool(&mut self, ctx: &NodeCtx) -> Result<()> {
        let (x, in_shape, _) = self.spatial_input(ctx)?;
        let op = if ctx.op == "GlobalMaxPool" { Op::GlobalMaxPool } else { Op::GlobalAvgPool };
        let pooled = self.push(ctx, op, &[x])?;
        let mut keep = vec![in_shape[0]];
        keep.resize(in_shape.len(), 1);
        let name = self.unique_name(&format!("{}__keepdims", ctx.name));
        let id = self.graph.push_reshape(&name, &ctx.layer, pooled, keep)?;
        self.bind(ctx.main_output()?, id)
    }

    fn batchnorm(&mut self, ctx: &NodeCtx) -> Result<()> {
        if ctx.int("training_mode", 0)? != 0 {
            return Err(ctx.err("training_mode=1 is not supported (inference only)"));
        }
        if ctx.proto.output.iter().skip(1).any(|o| !o.is_empty() && self.is_used(o)) {
            return Err(ctx.err("running mean/variance outputs are used, which is not supported (inference only)"));
        }
        let x = self.value(ctx, 0)?;
        let epsilon = ctx.float("epsilon", 1e-5)?;
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(ctx.err(format!("epsilon {epsilon} must be finite and non-negative")));
        }
        let bn = BatchNorm {
            gamma: Arc::new(self.weight(ctx, 1, "scale")?),
            beta: Arc::new(self.weight(ctx, 2, "B")?),
            mean: Arc::new(self.weight(ctx, 3, "mean")?),
            var: Arc::new(self.weight(ctx, 4, "var")?),
            epsilon,
        };
        let id = self.push(ctx, Op::BatchNorm(bn), &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    /// A constant a spelled-out layer's match named (checked to exist when matched).
    fn spelled_const(&self, ctx: &NodeCtx, name: &str) -> Result<Rc<Const>> {
        self.consts.get(name).cloned().ok_or_else(|| ctx.err(format!("constant '{name}' is missing")))
    }

    /// A [`Op::PRelu`] of IR node `x` with slope `data` (shape `dims`, broadcasting against the full-rank input,
    /// or against it transposed by `perm` when given); returns its id.
    fn push_prelu(&mut self, ctx: &NodeCtx, x: usize, data: &[f32], dims: &[usize], perm: Option<&[i64]>) -> Result<usize> {
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ctx.err("slope values must be finite"));
        }
        let shape = self.shape(x);
        let rank = shape.len() + 1;
        let bad = || ctx.err(format!("slope of shape {dims:?} does not broadcast against the input (per sample {shape:?})"));
        if dims.len() > rank {
            return Err(bad());
        }
        // Right-aligned to the full rank (in the Mul's layout when transposed), then back to the input's axes.
        let full: Vec<usize> = std::iter::repeat_n(1, rank - dims.len()).chain(dims.iter().copied()).collect();
        let (full, data) = match perm {
            None => (full, data.to_vec()),
            Some(p) => {
                let p: Vec<usize> = p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < rank)).collect::<Option<_>>().ok_or_else(bad)?;
                if p.len() != rank {
                    return Err(bad());
                }
                permute_back(&full, data, &p)
            }
        };
        if full[0] != 1 || full[1..].iter().zip(&shape).any(|(&s, &d)| s != 1 && s != d) {
            return Err(bad());
        }
        let slope = Arc::new(Tensor { shape: full[1..].to_vec(), data });
        self.push(ctx, Op::PRelu { slope }, &[x])
    }

    /// ONNX LayerNormalization: over axes `axis..` (opset 17; PyTorch's `nn.LayerNorm`).
    fn layer_norm(&mut self, ctx: &NodeCtx) -> Result<()> {
        if ctx.proto.output.iter().skip(1).any(|o| !o.is_empty() && self.is_used(o)) {
            return Err(ctx.err("the Mean/InvStdDev outputs are used, which is not supported"));
        }
        let x = self.value(ctx, 0)?;
        let rank = self.shape(x).len() as i64 + 1;
        let axis = ctx.int("axis", -1)?;
        let first = if axis < 0 { axis + rank } else { axis };
        if !(1..rank).contains(&first) {
            return Err(ctx.err(format!("axis {axis} of a rank-{rank} input: the batch axis cannot be normalized over")));
        }
        let epsilon = ctx.float("epsilon", 1e-5)?;
        let gamma = self.konst(ctx, 1, "Scale")?;
        let beta = ctx.input(2).map(|_| self.konst(ctx, 2, "B")).transpose()?;
        let axes: Vec<i64> = (first..rank).collect();
        self.push_layer_norm(ctx, x, &axes, epsilon, Some(&gamma), beta.as_deref(), ctx.main_output()?)
    }

    /// ONNX InstanceNormalization (PyTorch's InstanceNorm, and GroupNorm, which torch.onnx writes as a reshape to
    /// `(N, groups, -1)` around one): per sample and channel over the spatial axes, then a per-channel scale and
    /// bias. Held as a [`LayerNorm`] over the spatial axes (γ = 1, β = 0) and, unless the scale is 1 and the bias 0,
    /// an [`Op::Affine`]; signxai passes relevance through both unchanged, as through every same-shape layer
    /// without a kernel.
    fn instance_norm(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let shape = self.shape(x);
        if shape.len() < 2 {
            return Err(ctx.err(format!("input of per-sample shape {shape:?}: needs (C, spatial...)")));
        }
        let epsilon = ctx.float("epsilon", 1e-5)?;
        let param = |i: usize, what: &str| -> Result<Vec<f32>> {
            let c = self.konst(ctx, i, what)?;
            let v = c.f32s().ok_or_else(|| ctx.err(format!("{what} must be float32")))?;
            if v.len() != shape[0] {
                return Err(ctx.err(format!("{what} has {} values for {} channels", v.len(), shape[0])));
            }
            Ok(v.to_vec())
        };
        let (scale, bias) = (param(1, "scale")?, param(2, "B")?);
        let axes: Vec<i64> = (2..=shape.len() as i64).collect();
        let out = ctx.main_output()?.to_string();
        if scale.iter().all(|&v| v == 1.0) && bias.iter().all(|&v| v == 0.0) {
            return self.push_layer_norm(ctx, x, &axes, epsilon, None, None, &out);
        }
        let normalized = format!("{out}__normalized");
        self.push_layer_norm(ctx, x, &axes, epsilon, None, None, &normalized)?;
        let ln = self.values[&normalized];
        let id = self.push_as(&format!("{}__affine", ctx.name), &ctx.layer, Op::Affine(channel_affine(scale, bias)), &[ln])?;
        self.bind(&out, id)
    }

    /// ONNX Tile of size-1 axes (Keras RepeatVector: `ExpandDims` then `Tile`): copies of the one value, which is
    /// nearest upsampling of that axis. Held as an [`Op::Upsample`] between reshapes that add and remove a unit
    /// channel axis (so every per-sample axis is a spatial one); relevance by the gradient, each copy's back onto
    /// the value. Tiling an axis longer than 1 (repeating a whole sequence) is refused.
    fn tile(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let shape = self.shape(x);
        let repeats = self.const_ints(ctx, 1, "repeats")?;
        if repeats.len() != shape.len() + 1 || repeats[0] != 1 {
            return Err(ctx.err(format!("repeats {repeats:?} must have one entry per axis of a rank-{} input and keep the batch", shape.len() + 1)));
        }
        let mut factors = Vec::with_capacity(shape.len());
        for (&r, &d) in repeats[1..].iter().zip(&shape) {
            match usize::try_from(r) {
                Ok(1) => factors.push(1),
                Ok(r) if r > 1 && d == 1 => factors.push(r),
                _ => return Err(ctx.err(format!("repeats {repeats:?} of an input {shape:?}: only a size-1 axis may be repeated (Keras RepeatVector)"))),
            }
        }
        if factors.iter().all(|&f| f == 1) {
            return self.bind(ctx.main_output()?, x);
        }
        let name = &ctx.name;
        let unit = self.graph.push_reshape(&format!("{name}__unit"), &ctx.layer, x, [1].iter().chain(&shape).copied().collect())?;
        let up = self.push_as(&format!("{name}__copies"), &ctx.layer, Op::Upsample { factors: factors.clone(), mode: Interpolation::Nearest }, &[unit])?;
        let out: Vec<usize> = shape.iter().zip(&factors).map(|(d, f)| d * f).collect();
        let id = self.graph.push_reshape(name, &ctx.layer, up, out)?;
        self.bind(ctx.main_output()?, id)
    }

    /// ONNX DepthToSpace (PyTorch's PixelShuffle, mode CRD; TensorFlow's depth_to_space, DCR) and SpaceToDepth, as
    /// the reshape, transpose, reshape that the ONNX specification defines them by (relevance follows the
    /// gradient through all three: pure data movement).
    fn depth_space(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let shape = self.shape(x);
        let [c, h, w] = shape[..] else {
            return Err(ctx.err(format!("input of per-sample shape {shape:?}: needs (C, H, W)")));
        };
        let b = ctx.int("blocksize", 0)?;
        // A block never exceeds the axes it moves (which also keeps the products below from overflowing).
        let most = if ctx.op == "DepthToSpace" { c } else { h.min(w) };
        let b = usize::try_from(b).ok().filter(|&b| (1..=most.max(1)).contains(&b)).ok_or_else(|| ctx.err(format!("blocksize {b} must be between 1 and {most}")))?;
        let mode = ctx.string("mode", "DCR")?;
        // (first reshape, permutation with the batch axis, final per-sample shape)
        let (split, perm, target) = if ctx.op == "DepthToSpace" {
            if c % (b * b) != 0 {
                return Err(ctx.err(format!("{c} channels are not a multiple of blocksize² = {}", b * b)));
            }
            let co = c / (b * b);
            match mode.as_str() {
                "DCR" => (vec![b, b, co, h, w], vec![0, 3, 4, 1, 5, 2], vec![co, h * b, w * b]),
                "CRD" => (vec![co, b, b, h, w], vec![0, 1, 4, 2, 5, 3], vec![co, h * b, w * b]),
                m => return Err(ctx.err(format!("mode '{m}' is not DCR or CRD"))),
            }
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(ctx.err(format!("spatial size {h}×{w} is not a multiple of blocksize {b}")));
            }
            (vec![c, h / b, b, w / b, b], vec![0, 3, 5, 1, 2, 4], vec![c * b * b, h / b, w / b])
        };
        let name = &ctx.name;
        let split = self.graph.push_reshape(&format!("{name}__split"), &ctx.layer, x, split)?;
        let moved = self.push_as(&format!("{name}__move"), &ctx.layer, Op::Transpose { perm }, &[split])?;
        let id = self.graph.push_reshape(name, &ctx.layer, moved, target)?;
        self.bind(ctx.main_output()?, id)
    }

    /// The ONNX axes Keras' fused LayerNorm path normalizes over (`patterns.rs`): the fewest trailing axes of
    /// `x` that hold the `in_dim` values of the Reshape target `[1, rows, in_dim, 1]`, with `rows` the batch
    /// times the other axes, and `back` restoring `x`'s shape.
    fn fused_layer_norm_axes(&self, ctx: &NodeCtx, x: usize, target: &str, back: &str, count: Option<&str>) -> Result<Vec<i64>> {
        use crate::shapes::Dim;
        let shape = self.shape(x);
        let value = |name: &str| -> Result<Vec<Dim>> {
            self.shape_value_of(name).ok_or_else(|| ctx.err(format!("the layer normalization's reshape target '{name}' is not an integer list")))
        };
        let t = value(target)?;
        let [Dim::Known(1), rows, Dim::Known(in_dim), Dim::Known(1)] = t[..] else {
            return Err(ctx.err(format!("the layer normalization reshapes its input to {t:?}, not [1, rows, values, 1]")));
        };
        let k = (1..=shape.len())
            .find(|&k| shape[shape.len() - k..].iter().product::<usize>() as i64 == in_dim)
            .ok_or_else(|| ctx.err(format!("no trailing axes of the input {shape:?} hold the {in_dim} values the layer normalization normalizes")))?;
        let pre = shape[..shape.len() - k].iter().product::<usize>() as i64;
        let batch_ok = |d: Dim, per: i64| match d {
            Dim::Batch(f) => f == per,
            Dim::Known(-1) => true,
            Dim::Known(v) => self.batch.is_some_and(|b| v == b as i64 * per),
        };
        if !batch_ok(rows, pre) {
            return Err(ctx.err(format!("the layer normalization's rows {rows:?} are not the batch times {pre}")));
        }
        let b = value(back)?;
        if b.len() != shape.len() + 1 || !batch_ok(b[0], 1) || b[1..].iter().zip(&shape).any(|(&d, &s)| d != Dim::Known(s as i64)) {
            return Err(ctx.err(format!("the layer normalization is reshaped back to {b:?}, not to its input's shape {shape:?}")));
        }
        if let Some(c) = count {
            let c = self.spelled_const(ctx, c)?;
            if c.f32s() != Some(&[in_dim as f32][..]) {
                return Err(ctx.err(format!("the layer normalization's variance divides by {:?}, not by its {in_dim} values", c.f32s())));
            }
        }
        let rank = shape.len() as i64 + 1;
        Ok((rank - k as i64..rank).collect())
    }

    /// A [`LayerNorm`] of IR node `x` over the ONNX axes `axes`, bound to `out`. γ and β (None: 1 and 0) broadcast
    /// against the input (right-aligned) and must be constant along the axes not normalized. Axes other than the
    /// last ones are moved there and back by two transposes (relevance passes them by the gradient, unchanged).
    #[allow(clippy::too_many_arguments)]
    fn push_layer_norm(&mut self, ctx: &NodeCtx, x: usize, axes: &[i64], epsilon: f32, gamma: Option<&Const>, beta: Option<&Const>, out: &str) -> Result<()> {
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(ctx.err(format!("epsilon {epsilon} must be finite and non-negative")));
        }
        let shape = self.shape(x);
        let rank = shape.len() + 1;
        let mut norm: Vec<usize> = Vec::with_capacity(axes.len());
        for &a in axes {
            let a = norm_axis(ctx, a, rank)?;
            if a == 0 || norm.contains(&a) {
                return Err(ctx.err(format!("normalizes over axes {axes:?}: the batch axis, or an axis twice")));
            }
            norm.push(a);
        }
        norm.sort_unstable();
        let keep: Vec<usize> = (1..rank).filter(|a| !norm.contains(a)).collect();
        let trailing: Vec<usize> = norm.iter().map(|&a| shape[a - 1]).collect();
        let param = |c: Option<&Const>, what: &str, default: f32| -> Result<Tensor> {
            let data = match c {
                None => vec![default; trailing.iter().product()],
                Some(c) => {
                    let v = c.f32s().ok_or_else(|| ctx.err(format!("{what} must be float32")))?;
                    along_axes(v, &c.dims, &shape, &norm)
                        .ok_or_else(|| ctx.err(format!("{what} of shape {:?} does not vary only along the normalized axes {axes:?} of an input {shape:?}", c.dims)))?
                }
            };
            Ok(Tensor { shape: trailing.clone(), data })
        };
        let ln = relprop_core::LayerNorm { axes: norm.len(), gamma: Arc::new(param(gamma, "scale (gamma)", 1.0)?), beta: Arc::new(param(beta, "shift (beta)", 0.0)?), epsilon };
        let id = if keep.iter().all(|&a| a < norm[0]) {
            self.push(ctx, Op::LayerNorm(ln), &[x])?
        } else {
            let perm: Vec<usize> = std::iter::once(0).chain(keep.iter().copied()).chain(norm.iter().copied()).collect();
            let mut back = vec![0; rank];
            for (i, &p) in perm.iter().enumerate() {
                back[p] = i;
            }
            let to_last = self.push_as(&format!("{}__to_last", ctx.name), &ctx.layer, Op::Transpose { perm }, &[x])?;
            let y = self.push(ctx, Op::LayerNorm(ln), &[to_last])?;
            self.push_as(&format!("{}__back", ctx.name), &ctx.layer, Op::Transpose { perm: back }, &[y])?
        };
        self.bind(out, id)
    }

    // ---- layout ops ----------------------------------------------------------------------------------------

    /// ONNX Reshape with the batch kept in axis 0. One more form: tf2onnx writes Keras Dense on a rank-3 input
    /// `(N, T, C)` as `Reshape(x, [-1, C])`, a MatMul, then `Reshape(·, [-1, T, U])`, merging the batch with `T`
    /// rows in between. Row by row that MatMul is a Dense on the last axis, so the merged tensor is held as the
    /// per-sample `[T, C]` (the same values in the same order) and marked in `merged`, which only MatMul/Gemm and
    /// Reshape may read (`convert`); the Reshape that restores `[N, T, U]` clears the mark.
    fn reshape_op(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let in_shape = self.shape(x);
        let numel: usize = in_shape.iter().product();
        // Rows per sample merged into the input's ONNX batch axis (0: none).
        let merged_in = ctx.input(0).and_then(|i| self.merged.get(i)).map_or(0, |(m, _)| *m);
        // A target computed from shapes (`x.view(x.size(0), -1)`) or a constant list.
        // `batch`: the first entry is the batch size itself (a computed target), not ONNX's "copy input axis 0".
        // `want_rows`: a computed target `[N·k, ...]` must merge exactly `k` rows per sample.
        let (t, allow_zero, batch, want_rows) = match ctx.input(1).and_then(|i| self.shape_values.get(i)) {
            Some(v) => {
                let (t, rows) = self.reshape_target(ctx, v)?;
                (t, false, v.dims.first() == Some(&Dim::Batch(1)), rows)
            }
            None => (self.const_ints(ctx, 1, "shape")?, ctx.int("allowzero", 0)? != 0, false, None),
        };
        let Some((&first, rest)) = t.split_first() else {
            return Err(ctx.err("target shape is empty: the batch axis must stay"));
        };
        if allow_zero && t.contains(&0) {
            return Err(ctx.err(format!("target shape {t:?} has a zero-size axis (allowzero=1)")));
        }
        // Axis 0 is the batch: 0 (copy), -1 (infer) or the file's fixed batch size keep it.
        match first {
            0 | -1 => {}
            b if b > 0 && merged_in == 0 && self.batch.is_none_or(|fixed| fixed as i64 == b) => {}
            b => return Err(ctx.err(format!("target shape {t:?} changes the batch axis (entry 0 is {b})"))),
        }
        let mut target = Vec::with_capacity(rest.len());
        let mut infer = None;
        for (i, &d) in rest.iter().enumerate() {
            let v = match d {
                // "Copy axis i + 1": of the ONNX input, whose axes are the IR's shifted by one when merged.
                0 if merged_in > 0 => return Err(ctx.err(format!("target shape {t:?} copies an axis of a batch-merged tensor"))),
                0 => *in_shape.get(i).ok_or_else(|| ctx.err(format!("target shape {t:?} copies axis {} the input lacks", i + 1)))?,
                -1 if infer.is_none() && first != -1 && merged_in == 0 => {
                    infer = Some(i);
                    1
                }
                d if d > 0 && d as u64 <= MAX_ELEMENTS as u64 => d as usize,
                _ => return Err(ctx.err(format!("target shape {t:?} has an invalid entry {d}"))),
            };
            target.push(v);
        }
        let known = target.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&k| k > 0);
        let cannot = || ctx.err(format!("cannot reshape per-sample shape {in_shape:?} into {t:?} keeping the batch axis"));
        // Rows per sample the output merges into its batch axis: `0` copies the input's (ONNX keeps axis 0 as it
        // is), `-1` takes what is left over after the other entries.
        let rows = match (infer, known) {
            (Some(i), Some(k)) if numel.is_multiple_of(k) => {
                target[i] = numel / k;
                1
            }
            (None, Some(k)) if numel.is_multiple_of(k) => match first {
                0 if !batch => merged_in.max(1),
                -1 => numel / k,
                _ => 1,
            },
            _ => return Err(cannot()),
        };
        if target.iter().product::<usize>() * rows != numel || want_rows.is_some_and(|k| k != rows) {
            return Err(cannot());
        }
        let out = ctx.main_output()?.to_string();
        if rows > 1 {
            target.insert(0, rows);
            self.merged.insert(out.clone(), (rows, ctx.name.clone()));
        } else if merged_in > 0 && self.finish_tensordot(ctx, x, &target)? {
            return Ok(());
        }
        let id = self.reshape_to(ctx, ctx.required_input(0)?, x, target)?;
        self.bind(&out, id)
    }

    /// The Reshape `ctx` restores the batch of `x`, a Dense on a batch-merged tensor (tf2onnx's Tensordot), and
    /// Keras' bias Add and activation after it are the Dense's, as for any Keras layer. On a rank-3 input the
    /// restored shape is `x`'s own per-sample shape `[T, U]` and the Reshape is no node at all; on a rank-4 input
    /// (`[H·W, U]` restored to `[H, W, U]`) it stays, after the Dense with its bias and activation (the same values:
    /// both act on the last axis). Whether it was so (the last absorbed output is then bound).
    fn finish_tensordot(&mut self, ctx: &NodeCtx, x: usize, target: &[usize]) -> Result<bool> {
        let Some(input) = ctx.input(0) else { return Ok(false) };
        let Some(Op::Dense(d)) = self.graph.nodes.get(x).map(|n| &n.op) else { return Ok(false) };
        let shape = self.shape(x);
        let same_rows = match (shape.split_last(), target.split_last()) {
            (Some((u, [rows])), Some((v, lead))) => u == v && lead.iter().product::<usize>() == *rows,
            _ => false,
        };
        if d.activation.is_some() || !(shape == target || same_rows) || self.sole_consumer(input) != Some(ctx.index) {
            return Ok(false);
        }
        let mut d = d.clone();
        let (n, layer) = (target.last().copied().unwrap_or(0), self.graph.nodes[x].layer.clone());
        let old_bias = d.bias.as_ref().map(|b| b.data.clone());
        let (bias, activation, out) = self.dense_tail(ctx.main_output()?, target.len() + 1, n, &layer, old_bias)?;
        (d.bias, d.activation) = (bias, activation);
        self.graph.nodes[x].op = Op::Dense(d);
        let id = if shape == target { x } else { self.graph.push_reshape(&ctx.name, &ctx.layer, x, target.to_vec())? };
        self.bind(&out, id)?;
        Ok(true)
    }

    fn flatten(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let in_shape = self.shape(x);
        // axis == rank is legal ONNX (everything in the first factor) but merges the batch like axis 0.
        let axis = norm_axis(ctx, ctx.int("axis", 1)?, in_shape.len() + 1)
            .map_err(|_| ctx.err("only Flatten axis=1 keeps the batch axis"))?;
        if axis != 1 {
            return Err(ctx.err(format!("Flatten axis={axis} would merge the batch axis; only axis=1 is supported")));
        }
        let id = self.reshape_to(ctx, ctx.required_input(0)?, x, vec![in_shape.iter().product()])?;
        self.bind(ctx.main_output()?, id)
    }

    /// Axes from input 1 (opset >= 13) or the `axes` attribute (older opsets).
    fn axes(&self, ctx: &NodeCtx) -> Result<Option<Vec<i64>>> {
        match ctx.input(1) {
            Some(_) => self.const_ints(ctx, 1, "axes").map(Some),
            None => ctx.ints("axes"),
        }
    }

    fn squeeze(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let in_shape = self.shape(x);
        let rank = in_shape.len() + 1;
        let drop: Vec<usize> = match self.axes(ctx)? {
            // No axes: every size-1 axis goes, except the batch, whose size is not known here.
            None => (1..rank).filter(|&a| in_shape[a - 1] == 1).collect(),
            Some(axes) => {
                let mut v = Vec::with_capacity(axes.len());
                for &a in &axes {
                    let a = norm_axis(ctx, a, rank)?;
                    if a == 0 {
                        return Err(ctx.err("squeezing axis 0 (the batch axis) is not supported"));
                    }
                    if in_shape[a - 1] != 1 {
                        return Err(ctx.err(format!("axis {a} of per-sample shape {in_shape:?} is not 1")));
                    }
                    v.push(a);
                }
                v
            }
        };
        let target = (1..rank).filter(|a| !drop.contains(a)).map(|a| in_shape[a - 1]).collect();
        let id = self.reshape_to(ctx, ctx.required_input(0)?, x, target)?;
        self.bind(ctx.main_output()?, id)
    }

    fn unsqueeze(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let in_shape = self.shape(x);
        let axes = self.axes(ctx)?.ok_or_else(|| ctx.err("needs axes (input 1 or attribute)"))?;
        let out_rank = in_shape.len() + 1 + axes.len();
        let mut new = vec![false; out_rank];
        for &a in &axes {
            let a = norm_axis(ctx, a, out_rank)?;
            if a == 0 {
                return Err(ctx.err("inserting an axis before the batch axis is not supported"));
            }
            if std::mem::replace(&mut new[a], true) {
                return Err(ctx.err(format!("axis {a} repeated in {axes:?}")));
            }
        }
        let mut dims = in_shape.iter();
        let target = (1..out_rank).map(|a| if new[a] { 1 } else { dims.next().copied().unwrap_or(1) }).collect();
        let id = self.reshape_to(ctx, ctx.required_input(0)?, x, target)?;
        self.bind(ctx.main_output()?, id)
    }

    fn transpose(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let rank = self.shape(x).len() + 1;
        let perm: Vec<usize> = match ctx.ints("perm")? {
            Some(p) => p.iter().map(|&a| usize::try_from(a).map_err(|_| ctx.err(format!("perm {p:?} has a negative entry")))).collect::<Result<_>>()?,
            None => (0..rank).rev().collect(), // ONNX default: reverse all axes (moves the batch: rejected below)
        };
        if perm.first() != Some(&0) {
            return Err(ctx.err(format!("perm {perm:?} moves the batch axis; perm[0] must be 0")));
        }
        let id = self.push(ctx, Op::Transpose { perm }, &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    fn pad(&mut self, ctx: &NodeCtx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let rank = self.shape(x).len() + 1;
        let mode = ctx.string("mode", "constant")?;
        if !matches!(mode.as_str(), "constant" | "reflect" | "edge") {
            return Err(ctx.err(format!("pad mode '{mode}' is not supported (constant, reflect or edge)")));
        }
        // opset >= 11: pads (and value, axes) are inputs; older opsets use attributes.
        let pads = match ctx.input(1) {
            Some(_) => self.const_ints(ctx, 1, "pads")?,
            None => ctx.ints("pads")?.ok_or_else(|| ctx.err("needs pads (input 1 or attribute)"))?,
        };
        let value = match ctx.input(2) {
            Some(_) => self.const_scalar(ctx, 2, "constant_value")?,
            None => ctx.float("value", 0.0)?,
        };
        if !value.is_finite() {
            return Err(ctx.err(format!("pad value {value} must be finite")));
        }
        let mode = match mode.as_str() {
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            _ => PadMode::Constant(value),
        };
        let axes: Vec<usize> = match ctx.input(3) {
            Some(_) => self.const_ints(ctx, 3, "axes")?.iter().map(|&a| norm_axis(ctx, a, rank)).collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(ctx.err(format!("pads {pads:?} must have {} entries", 2 * axes.len())));
        }
        let (mut begin, mut end) = (vec![0usize; rank], vec![0usize; rank]);
        for (i, &a) in axes.iter().enumerate() {
            begin[a] = ctx.bounded("pads (negative pads crop, which is not supported)", pads[i], 0)?;
            end[a] = ctx.bounded("pads (negative pads crop, which is not supported)", pads[i + axes.len()], 0)?;
        }
        if begin[0] != 0 || end[0] != 0 {
            return Err(ctx.err(format!("pads {pads:?} pad the batch axis")));
        }
        // tf2onnx's computed pads after a cropped ConvTranspose (`Pad__N`) are usually all zero: nothing to do. (A
        // Keras ZeroPadding layer of zero keeps its node: signxai counts it for until_layer_idx.)
        if generated_name(&ctx.name) && begin.iter().chain(&end).all(|&p| p == 0) {
            return self.bind(ctx.main_output()?, x);
        }
        let op = Op::Pad { begin: begin[1..].to_vec(), end: end[1..].to_vec(), mode };
        let id = self.push(ctx, op, &[x])?;
        self.bind(ctx.main_output()?, id)
    }

    fn concat(&mut self, ctx: &NodeCtx) -> Result<()> {
        let ins: Vec<usize> = (0..ctx.proto.input.len()).map(|i| self.value(ctx, i)).collect::<Result<_>>()?;
        let first = ins.first().ok_or_else(|| ctx.err("needs inputs"))?;
        let rank = self.shape(*first).len() + 1;
        if ctx.attr("axis").is_none() {
            return Err(ctx.err("attribute 'axis' is required"));
        }
        let axis = norm_axis(ctx, ctx.int("axis", 1)?, rank)?;
        if axis == 0 {
            return Err(ctx.err("concatenation along the batch axis is not supported"));
        }
        let id = self.push(ctx, Op::Concat { axis: axis - 1 }, &ins)?;
        self.bind(ctx.main_output()?, id)
    }

    fn identity(&mut self, ctx: &NodeCtx) -> Result<()> {
        if ctx.op == "Dropout" && ctx.output(1).is_some_and(|o| self.is_used(o)) {
            return Err(ctx.err("the mask output of Dropout is used, which is not supported"));
        }
        let out = ctx.main_output()?.to_string();
        // An Identity of a constant is a constant (tf2onnx leaves some around weights).
        if let Some(c) = ctx.input(0).and_then(|i| self.consts.get(i)).cloned() {
            self.consts.insert(out, c);
            return Ok(());
        }
        let x = self.value(ctx, 0)?;
        let id = self.push(ctx, Op::Identity, &[x])?;
        self.bind(&out, id)
    }
}

/// Whether a transpose (`perm` of the batched tensor, batch axis first) of a tensor with per-sample shape `shape`
/// keeps the values' row-major order: the axes longer than 1 stay in the same order.
fn moves_only_unit_axes(perm: &[usize], shape: &[usize]) -> bool {
    let long: Vec<usize> = perm.iter().copied().filter(|&a| a == 0 || shape.get(a - 1).is_some_and(|&d| d > 1)).collect();
    long.windows(2).all(|w| w[0] < w[1])
}

/// The values of a constant (`data` of shape `dims`) broadcast against a tensor of per-sample shape `shape`
/// (right-aligned, batch axis included), listed over the full-rank axes `norm` in row-major order; None when it
/// does not broadcast or varies along any other axis.
fn along_axes(data: &[f32], dims: &[usize], shape: &[usize], norm: &[usize]) -> Option<Vec<f32>> {
    let full: Vec<usize> = std::iter::once(1).chain(shape.iter().copied()).collect();
    if dims.len() > full.len() {
        return None;
    }
    let d: Vec<usize> = std::iter::repeat_n(1, full.len() - dims.len()).chain(dims.iter().copied()).collect();
    if d.iter().zip(&full).enumerate().any(|(a, (&c, &f))| !(c == 1 || (c == f && norm.contains(&a)))) {
        return None;
    }
    // Row-major strides of the constant; an axis of extent 1 is read at index 0.
    let mut strides = vec![0; d.len()];
    let mut acc = 1;
    for a in (0..d.len()).rev() {
        strides[a] = if d[a] == 1 { 0 } else { acc };
        acc *= d[a];
    }
    let extents: Vec<usize> = norm.iter().map(|&a| full[a]).collect();
    let count: usize = extents.iter().product();
    let mut out = Vec::with_capacity(count);
    for mut i in 0..count {
        let mut off = 0;
        for (k, &a) in norm.iter().enumerate().rev() {
            off += (i % extents[k]) * strides[a];
            i /= extents[k];
        }
        out.push(*data.get(off)?);
    }
    Some(out)
}

/// A tensor laid out as `t = transpose(u, perm)` (`dims` = t's shape), rearranged into `u`'s layout: axis
/// `perm[j]` of `u` is axis `j` of `t`.
fn permute_back(dims: &[usize], data: &[f32], perm: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let r = dims.len();
    let mut udims = vec![0; r];
    for (j, &p) in perm.iter().enumerate() {
        udims[p] = dims[j];
    }
    // Row-major strides of t, indexed by u's axes.
    let mut tstride = vec![0; r];
    let mut acc = 1;
    for j in (0..r).rev() {
        tstride[perm[j]] = acc;
        acc *= dims[j];
    }
    let count: usize = udims.iter().product();
    let mut out = Vec::with_capacity(count);
    for mut i in 0..count {
        let mut off = 0;
        for a in (0..r).rev() {
            off += (i % udims[a]) * tstride[a];
            i /= udims[a];
        }
        out.push(data[off]);
    }
    (udims, out)
}
