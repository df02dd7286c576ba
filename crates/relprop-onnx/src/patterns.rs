//! Layers that exporters write as several ONNX nodes, recognised before conversion: GELU, Keras'
//! LayerNormalization (both of TensorFlow's forms), Keras' ELU layer with α ≠ 1, Keras' PReLU, and PyTorch's
//! Softsign and LogSigmoid.
//!
//! GELU's exact form `x · ½ · (1 + erf(x / √2))` has its own ONNX op only from opset 20; below that exporters
//! spell it out, and the nodes in between are no layers of their own (signxai's Keras model has one `gelu`
//! activation there):
//! * tf2onnx (Keras `gelu`): `Mul(x, 1/√2) → Erf → Add(1, ·)`, `Mul(0.5, x)`, then `Mul` of the two;
//! * PyTorch's TorchScript exporter (`nn.GELU()`): `Div(x, √2) → Erf → Add(·, 1) → Mul(x, ·) → Mul(·, 0.5)`;
//! * PyTorch's dynamo exporter: `Div(x, √2) → Erf → Add(·, 1) → Mul(0.5, ·) → Mul(x, ·)`.
//!
//! Keras' LayerNormalization (TensorFlow's `moments` and `batch_normalization`, as tf2onnx writes them):
//! `mean = ReduceMean(x)`, `var = ReduceMean((x − mean)²)`, `s = γ / Sqrt(var + ε)` (a Reciprocal and a Mul),
//! `y = x·s + (β − mean·s)`.
//!
//! Keras' LayerNormalization on its fused path (Keras takes it for trailing axes and ε ≥ 1.001e-5, e.g. the
//! default 1e-3): `Reshape(x, [1, rows, in_dim, 1])`, a training-mode `FusedBatchNormV3` with unit scale and
//! zero offset over the `in_dim` values of each row, `Reshape` back, then `· γ` and `+ β`. tf2onnx writes the
//! batch norm's statistics out: `mean = ReduceMean(xr)`, `var = ReduceSumSquare(xr − mean) / count` (the count
//! from `Shape(xr)`), the scale and offset as `Expand`s of 1 and 0 to the row count, and an inference-mode
//! `BatchNormalization`.
//!
//! Keras' ELU layer with α ≠ 1 (`tf.where(x > 0, elu(x), α·elu(x))`; tf2onnx turns the select into masks):
//! `Cast(Greater(x, 0))·Elu(x) + (α·Elu(x))·Cast(Not(Greater(x, 0)))`.
//!
//! Keras' PReLU (tf2onnx): `Relu(x) + Mul(Relu(Neg(x)), −α)`, the Mul possibly between a Transpose and its
//! inverse (a slope that is not shared over the spatial axes is laid out channels-last), or, after a Conv1D,
//! both Relus transposed to channels-last and the Add left there.
//!
//! PyTorch's Softsign (TorchScript exporter): `Div(x, Add(Abs(x), 1))`; its LogSigmoid: `Log(Sigmoid(x))`.
//!
//! [`Importer::find_spelled`] matches them (from each `Erf`, `ReduceMean`, `BatchNormalization`, `Neg`, `Elu`,
//! `Abs`, `Log`);
//! conversion skips a match's nodes until the one that computes its output, and turns that one into the IR
//! layer. (Waiting for the last node matters for the fused LayerNorm: its `Expand`s can come before the
//! Reshape that starts it, and some of its nodes are shape arithmetic on a value that never exists in the IR.)

use std::collections::HashMap;

use crate::import::{is_op, Importer};

/// What a spelled-out match computes.
#[derive(Clone, Debug)]
pub(crate) enum SpelledOp {
    /// An activation: GELU, or Keras' ELU layer with α ≠ 1.
    Activation(relprop_core::Activation),
    /// Over ONNX axes `axes` (of the full-rank tensor), with γ and β as constant names (None: 1 and 0).
    /// `mean_target`: the target of a Reshape of the mean before the subtraction, to be checked to change
    /// nothing (the mean's shape is the input's with the normalized axes 1).
    LayerNorm { axes: Vec<i64>, epsilon: f32, gamma: Option<String>, beta: Option<String>, mean_target: Option<Vec<i64>> },
    /// Slope `−neg_slope` (the name of the constant Keras multiplies `relu(−x)` by), laid out as after the
    /// Transpose `perm` when there is one; with `transposed_out` the result is in that layout too (a Transpose
    /// follows the PReLU).
    PRelu { neg_slope: String, perm: Option<Vec<i64>>, transposed_out: bool },
    /// Keras' fused LayerNorm path: the normalized axes are the trailing ones holding `in_dim` values, read at
    /// conversion from `target` (the first Reshape's `[1, rows, in_dim, 1]`); `back` is the Reshape restoring
    /// the input's shape; `count` a constant divisor of the variance when the file folded it (else it is
    /// `Shape(xr)`'s product over the reduced axes, matched structurally).
    FusedLayerNorm { target: String, back: String, count: Option<String>, epsilon: f32, gamma: Option<String>, beta: Option<String> },
}

/// One spelled-out layer: `x` in, `out` out, and every ONNX node of it.
#[derive(Clone, Debug)]
pub(crate) struct Spelled {
    pub op: SpelledOp,
    pub x: String,
    pub out: String,
    pub nodes: Vec<usize>,
}

impl Importer<'_> {
    /// Every spelled-out layer of the graph, by each of its nodes.
    pub(crate) fn find_spelled(&self) -> HashMap<usize, Spelled> {
        let mut found = HashMap::new();
        let triggers = ["Erf", "ReduceMean", "BatchNormalization", "Neg", "Elu", "Abs", "Log"];
        if !self.nodes.iter().any(|n| triggers.iter().any(|t| is_op(n, t))) {
            return found;
        }
        let producers: HashMap<&str, usize> =
            self.nodes.iter().enumerate().flat_map(|(k, n)| n.output.iter().map(move |o| (o.as_str(), k))).collect();
        for (k, n) in self.nodes.iter().enumerate() {
            let m = if is_op(n, "Erf") {
                self.gelu_at(k, &producers)
            } else if is_op(n, "ReduceMean") {
                self.keras_layer_norm_at(k)
            } else if is_op(n, "BatchNormalization") {
                self.keras_fused_layer_norm_at(k, &producers)
            } else if is_op(n, "Neg") {
                self.keras_prelu_at(k, &producers)
            } else if is_op(n, "Elu") {
                self.keras_elu_at(k, &producers)
            } else if is_op(n, "Abs") {
                self.softsign_at(k)
            } else if is_op(n, "Log") {
                self.log_sigmoid_at(k, &producers)
            } else {
                None
            };
            // Matches never share a node; should two claim one, the first found wins (the other's nodes then
            // convert one by one and fail on what they cannot, never silently).
            if let Some(s) = m.filter(|s| !s.nodes.iter().any(|j| found.contains_key(j))) {
                for &j in &s.nodes {
                    found.insert(j, s.clone());
                }
            }
        }
        found
    }

    /// The Keras PReLU around `Neg` node `neg`: `Relu(x) + Mul(Relu(Neg(x)), c)` with `c = −α` constant.
    fn keras_prelu_at(&self, neg: usize, producers: &HashMap<&str, usize>) -> Option<Spelled> {
        let perm_of = |k: usize| self.ctx(k).ints("perm").ok().flatten();
        let x = *self.ins(neg).first()?;
        let r2 = self.sole_op(self.out(neg)?, "Relu")?;
        let mut nodes = vec![neg, r2];
        // Optionally into another layout for the Mul and back.
        let (mut v, mut perm) = (self.out(r2)?, None);
        if let Some(t1) = self.sole_op(v, "Transpose") {
            perm = Some(perm_of(t1)?);
            nodes.push(t1);
            v = self.out(t1)?;
        }
        let m = self.sole_op(v, "Mul")?;
        let c = self.other_operand(m, v)?;
        if self.consts.get(c).is_none_or(|k| k.f32s().is_none()) {
            return None;
        }
        nodes.push(m);
        v = self.out(m)?;
        // Back by the inverse Transpose; or (tf2onnx after a Conv1D) the Relu(x) branch goes through the same
        // Transpose and the Add stays in the Mul's layout.
        let mut transposed_out = false;
        if let Some(p) = &perm {
            match self.sole_op(v, "Transpose") {
                Some(t2) => {
                    let back = perm_of(t2)?;
                    let inverse = p.len() == back.len() && (0..p.len()).all(|i| usize::try_from(p[i]).ok().and_then(|j| back.get(j)) == Some(&(i as i64)));
                    if !inverse {
                        return None;
                    }
                    nodes.push(t2);
                    v = self.out(t2)?;
                }
                None => transposed_out = true,
            }
        }
        let add = self.sole_op(v, "Add")?;
        let mut r1 = self.other_operand(add, v)?;
        if transposed_out {
            let t = producers.get(r1).copied().filter(|&t| self.op_is(t, "Transpose") && perm_of(t) == perm && self.sole_consumer(r1) == Some(add))?;
            nodes.push(t);
            r1 = *self.ins(t).first()?;
        }
        let relu = *producers.get(r1)?;
        let reader = if transposed_out { nodes.last().copied() } else { Some(add) };
        if !self.op_is(relu, "Relu") || self.ins(relu) != [x] || self.sole_consumer(r1) != reader {
            return None;
        }
        nodes.extend([add, relu]);
        let op = SpelledOp::PRelu { neg_slope: c.to_string(), perm, transposed_out };
        Some(Spelled { op, x: x.to_string(), out: self.out(add)?.to_string(), nodes })
    }

    /// The Keras LayerNormalization whose mean is `ReduceMean` node `mean`, if the nodes after it are exactly
    /// TensorFlow's and nothing else reads their intermediate values.
    fn keras_layer_norm_at(&self, mean: usize) -> Option<Spelled> {
        let (ins, out) = (|k: usize| self.ins(k), |k: usize| self.out(k));
        let keepdims = |k: usize| self.ctx(k).int("keepdims", 1).ok() == Some(1);
        let x = *ins(mean).first()?;
        let m = out(mean)?;
        let axes = self.axes_of(mean)?;
        if axes.is_empty() || !keepdims(mean) {
            return None;
        }
        // Readers of the mean: Sub(x, mean) (tf2onnx may put a layout Reshape, a no-op here, in between) and
        // Mul(mean, s).
        let rm = self.readers(m);
        let reshape = rm.iter().copied().find(|&k| self.op_is(k, "Reshape") && ins(k).first() == Some(&m));
        let (centred_from, mean_target) = match reshape {
            Some(r) => (out(r)?, Some(self.consts.get(*ins(r).get(1)?)?.i64s()?.to_vec())),
            None => (m, None),
        };
        let subs = if reshape.is_some() { self.readers(centred_from) } else { rm.clone() };
        let sub = *subs.iter().find(|&&k| self.op_is(k, "Sub") && ins(k) == [x, centred_from])?;
        if reshape.is_some() && subs.len() != 1 {
            return None;
        }
        let mul2 = *rm.iter().find(|&&k| self.op_is(k, "Mul") && Some(k) != reshape && k != sub)?;
        if rm.len() != 2 {
            return None;
        }
        let d = out(sub)?;
        let sq = *self.readers(d).first()?;
        if !(self.op_is(sq, "Mul") && ins(sq) == [d, d] && self.readers(d) == [sq, sq]) {
            return None;
        }
        let var = self.sole_op(out(sq)?, "ReduceMean")?;
        if self.axes_of(var)? != axes || !keepdims(var) {
            return None;
        }
        let add = self.sole_op(out(var)?, "Add")?;
        let epsilon = match self.consts.get(self.other_operand(add, out(var)?)?)?.f32s()? {
            [e] if e.is_finite() && *e >= 0.0 => *e,
            _ => return None,
        };
        let sqrt = self.sole_op(out(add)?, "Sqrt")?;
        let recip = self.sole_op(out(sqrt)?, "Reciprocal")?;
        // s = 1/σ, times γ when the layer scales.
        let (s, gamma, scale_node) = match self.sole_op(out(recip)?, "Mul") {
            Some(k) => {
                let g = self.other_operand(k, out(recip)?)?;
                (out(k)?, Some(self.consts.contains_key(g).then(|| g.to_string())?), Some(k))
            }
            None => (out(recip)?, None, None),
        };
        // Readers of s: Mul(mean, s) and Mul(x, s).
        let rs = self.readers(s);
        let mul1 = *rs.iter().find(|&&k| k != mul2)?;
        let pair = |k: usize, a: &str| ins(k) == [a, s] || ins(k) == [s, a];
        if rs.len() != 2 || !rs.contains(&mul2) || !pair(mul2, m) || !self.op_is(mul1, "Mul") || !pair(mul1, x) {
            return None;
        }
        // β − mean·s (or −mean·s without β), then the final Add.
        let shift = self.sole_consumer(out(mul2)?)?;
        let beta = if self.op_is(shift, "Sub") && ins(shift).get(1) == out(mul2).as_ref() {
            let b = ins(shift)[0];
            Some(self.consts.contains_key(b).then(|| b.to_string())?)
        } else if self.op_is(shift, "Neg") {
            None
        } else {
            return None;
        };
        let y = self.sole_op(out(mul1)?, "Add")?;
        let (a, b) = (out(mul1)?, out(shift)?);
        if !(ins(y) == [a, b] || ins(y) == [b, a]) {
            return None;
        }
        let mut nodes = vec![mean, sub, sq, var, add, sqrt, recip, mul2, mul1, shift, y];
        nodes.extend(scale_node);
        nodes.extend(reshape);
        Some(Spelled {
            op: SpelledOp::LayerNorm { axes, epsilon, gamma, beta, mean_target },
            x: x.to_string(),
            out: out(y)?.to_string(),
            nodes,
        })
    }

    /// The Keras LayerNormalization on its fused path around `BatchNormalization` node `bn` (module docs), if
    /// the nodes around it are exactly tf2onnx's and nothing else reads their intermediate values.
    fn keras_fused_layer_norm_at(&self, bn: usize, producers: &HashMap<&str, usize>) -> Option<Spelled> {
        let producer = |v: &str| producers.get(v).copied();
        let reduced = |k: usize, keep: i64| self.axes_of(k).as_deref() == Some(&[0, 2, 3][..]) && self.ctx(k).int("keepdims", 1).ok() == Some(keep);
        let bn_out = self.out(bn)?;
        let [xr, scale, offset, mean_in, var_in] = self.ins(bn)[..] else { return None };
        if self.nodes[bn].output.iter().skip(1).any(|o| !o.is_empty()) {
            return None; // training statistics as outputs: not Keras' inference graph
        }
        let r1 = producer(xr).filter(|&k| self.op_is(k, "Reshape"))?;
        let [x, target] = self.ins(r1)[..] else { return None };
        // mean = Squeeze(ReduceMean(xr)), var = ReduceSumSquare(xr − that mean) / count
        let squeeze = producer(mean_in).filter(|&k| self.op_is(k, "Squeeze") && self.sole_consumer(mean_in) == Some(bn))?;
        let rm_out = *self.ins(squeeze).first()?;
        let rm = producer(rm_out).filter(|&k| self.op_is(k, "ReduceMean") && reduced(k, 1) && self.ins(k).first() == Some(&xr))?;
        let sub = *self.readers(rm_out).iter().find(|&&k| self.op_is(k, "Sub") && self.ins(k) == [xr, rm_out])?;
        let rm_readers = self.readers(rm_out);
        if rm_readers.len() != 2 || !rm_readers.contains(&squeeze) {
            return None;
        }
        let rss = self.sole_op(self.out(sub)?, "ReduceSumSquare").filter(|&k| reduced(k, 0))?;
        let div = self.sole_op(self.out(rss)?, "Div").filter(|&k| self.out(k) == Some(var_in) && self.sole_consumer(var_in) == Some(bn))?;
        let [ss, count] = self.ins(div)[..] else { return None };
        let bn_ctx = self.ctx(bn);
        if Some(ss) != self.out(rss) || self.axes_of(squeeze).as_deref() != Some(&[0, 2, 3][..]) || bn_ctx.int("training_mode", 0).ok() != Some(0) {
            return None;
        }
        let mut nodes = vec![r1, rm, sub, squeeze, rss, div, bn];
        // The count: a float constant, or [Cast] ← ReduceProd ← Gather(·, the reduced axes) ← Shape(xr).
        let (count, shape_node) = if self.consts.contains_key(count) {
            (Some(count.to_string()), None)
        } else {
            let mut v = count;
            let cast = producer(v).filter(|&k| self.op_is(k, "Cast"));
            if let Some(c) = cast {
                nodes.push(c);
                v = *self.ins(c).first()?;
            }
            let prod = producer(v).filter(|&k| self.op_is(k, "ReduceProd"))?;
            let gather = producer(self.ins(prod).first()?).filter(|&k| self.op_is(k, "Gather"))?;
            let idx = self.consts.get(*self.ins(gather).get(1)?)?.i64s()?;
            let shape = producer(self.ins(gather).first()?).filter(|&k| self.op_is(k, "Shape") && self.ins(k) == [xr])?;
            if idx != [0, 2, 3] || self.ctx(gather).int("axis", 0).ok() != Some(0) || !self.nodes[shape].attribute.is_empty() {
                return None;
            }
            // Each link read only by the next one.
            let links: Vec<usize> = [shape, gather, prod].into_iter().chain(cast).collect();
            for (w, &k) in links.iter().enumerate() {
                let next = links.get(w + 1).copied().unwrap_or(div);
                if self.sole_consumer(self.out(k)?) != Some(next) {
                    return None;
                }
            }
            nodes.extend([shape, gather, prod]);
            (None, Some(shape))
        };
        let expect: Vec<usize> = [rm, sub, bn].into_iter().chain(shape_node).collect();
        if !self.read_only_by(xr, &expect) {
            return None;
        }
        // Unit scale and zero offset: constants, or Expand(scalar) to the row count.
        for (v, value) in [(scale, 1.0), (offset, 0.0)] {
            if let Some(c) = self.consts.get(v) {
                if !c.f32s()?.iter().all(|&e| e == value) {
                    return None;
                }
            } else {
                let e = producer(v).filter(|&k| self.op_is(k, "Expand") && self.sole_consumer(v) == Some(bn))?;
                if !self.is_scalar(self.ins(e).first()?, value) {
                    return None;
                }
                nodes.push(e);
            }
        }
        let epsilon = bn_ctx.float("epsilon", 1e-5).ok()?;
        let r2 = self.sole_op(bn_out, "Reshape")?;
        let back = *self.ins(r2).get(1)?;
        nodes.push(r2);
        // `· γ` then `+ β` (each optional) of the same Keras layer, with constant operands.
        let layer = bn_ctx.layer;
        let mut y = self.out(r2)?;
        let mut params = [None, None];
        for (param, op) in params.iter_mut().zip(["Mul", "Add"]) {
            let Some(k) = self.sole_op(y, op).filter(|&k| self.ctx(k).layer == layer) else { continue };
            let Some(c) = self.other_operand(k, y).filter(|c| self.consts.contains_key(*c)) else { continue };
            *param = Some(c.to_string());
            nodes.push(k);
            y = self.out(k)?;
        }
        let [gamma, beta] = params;
        Some(Spelled {
            op: SpelledOp::FusedLayerNorm { target: target.to_string(), back: back.to_string(), count, epsilon, gamma, beta },
            x: x.to_string(),
            out: y.to_string(),
            nodes,
        })
    }

    /// Keras' ELU layer with α ≠ 1 around `Elu` node `elu` (module docs), if nothing else reads its values.
    fn keras_elu_at(&self, elu: usize, producers: &HashMap<&str, usize>) -> Option<Spelled> {
        let producer = |v: &str| producers.get(v).copied();
        let cast_of = |v: &str| producer(v).filter(|&k| self.op_is(k, "Cast") && self.ctx(k).int("to", 0).ok() == Some(1) && self.sole_consumer(v).is_some());
        if self.ctx(elu).float("alpha", 1.0).ok() != Some(1.0) {
            return None;
        }
        let (x, e) = (*self.ins(elu).first()?, self.out(elu)?);
        let r = self.readers(e);
        let scaled = *r.iter().find(|&&k| self.op_is(k, "Mul") && self.consts.contains_key(self.other_operand(k, e).unwrap_or("")))?;
        let alpha = match self.consts.get(self.other_operand(scaled, e)?)?.f32s()? {
            [a] if a.is_finite() => *a,
            _ => return None,
        };
        let kept = *r.iter().find(|&&k| k != scaled && self.op_is(k, "Mul"))?;
        if r.len() != 2 {
            return None;
        }
        // kept = Cast(Greater(x, 0))·e; masked = (α·e)·Cast(Not(Greater(x, 0))); their sum.
        let cast_g = cast_of(self.other_operand(kept, e)?)?;
        let greater = producer(self.ins(cast_g).first()?).filter(|&k| self.op_is(k, "Greater"))?;
        let gt = self.out(greater)?;
        if self.ins(greater).first() != Some(&x) || !self.is_scalar(self.ins(greater).get(1)?, 0.0) {
            return None;
        }
        let masked = self.sole_op(self.out(scaled)?, "Mul")?;
        let cast_n = cast_of(self.other_operand(masked, self.out(scaled)?)?)?;
        let not = producer(self.ins(cast_n).first()?).filter(|&k| self.op_is(k, "Not") && self.ins(k) == [gt])?;
        if !self.read_only_by(gt, &[cast_g, not]) || self.sole_consumer(self.out(not)?) != Some(cast_n) {
            return None;
        }
        let add = self.sole_op(self.out(kept)?, "Add")?;
        if self.other_operand(add, self.out(kept)?)? != self.out(masked)? || self.sole_consumer(self.out(masked)?) != Some(add) {
            return None;
        }
        Some(Spelled {
            op: SpelledOp::Activation(relprop_core::Activation::Elu(alpha)),
            x: x.to_string(),
            out: self.out(add)?.to_string(),
            nodes: vec![greater, not, cast_n, cast_g, elu, scaled, masked, kept, add],
        })
    }

    /// PyTorch's Softsign from `Abs` node `abs`: `Div(x, Add(Abs(x), 1))`, nothing else reading the Abs or Add.
    fn softsign_at(&self, abs: usize) -> Option<Spelled> {
        let x = *self.ins(abs).first()?;
        let add = self.sole_op(self.out(abs)?, "Add")?;
        if self.other_if_scalar(add, 1.0) != self.out(abs) {
            return None;
        }
        let div = self.sole_op(self.out(add)?, "Div")?;
        if self.ins(div) != [x, self.out(add)?] {
            return None;
        }
        Some(Spelled { op: SpelledOp::Activation(relprop_core::Activation::Softsign), x: x.to_string(), out: self.out(div)?.to_string(), nodes: vec![abs, add, div] })
    }

    /// PyTorch's LogSigmoid from `Log` node `log`: `Log(Sigmoid(x))`, the Sigmoid read by nothing else.
    fn log_sigmoid_at(&self, log: usize, producers: &HashMap<&str, usize>) -> Option<Spelled> {
        let sig = producers.get(self.ins(log).first()?).copied().filter(|&k| self.op_is(k, "Sigmoid"))?;
        if self.sole_consumer(self.out(sig)?) != Some(log) {
            return None;
        }
        let x = *self.ins(sig).first()?;
        Some(Spelled { op: SpelledOp::Activation(relprop_core::Activation::LogSigmoid), x: x.to_string(), out: self.out(log)?.to_string(), nodes: vec![sig, log] })
    }

    /// The GELU around `Erf` node `erf`, if the nodes around it are exactly one of the three spellings and
    /// nothing else reads their intermediate values.
    fn gelu_at(&self, erf: usize, producers: &HashMap<&str, usize>) -> Option<Spelled> {
        let producer = |v: &str| producers.get(v).copied();
        // The scaled input: Div(x, √2) or Mul(x, 1/√2) (either operand order for Mul).
        let scaled = *self.ins(erf).first()?;
        let d = producer(scaled)?;
        let x = if self.op_is(d, "Div") {
            let ins = self.ins(d);
            self.is_scalar(ins.get(1)?, std::f32::consts::SQRT_2).then(|| ins[0])?
        } else if self.op_is(d, "Mul") {
            self.other_if_scalar(d, std::f32::consts::FRAC_1_SQRT_2)?
        } else {
            return None;
        };
        // 1 + erf(·)
        let a = self.sole_op(self.out(erf)?, "Add")?;
        if self.sole_consumer(scaled)? != erf || self.other_if_scalar(a, 1.0)? != self.out(erf)? {
            return None;
        }
        let m2 = self.sole_op(self.out(a)?, "Mul")?;
        let half = self.other_operand(m2, self.out(a)?)?;
        let mut nodes = vec![d, erf, a, m2];
        let out = if half == x || self.is_scalar(half, 0.5) {
            // TorchScript: (x · (1 + erf)) · 0.5; dynamo: x · ((1 + erf) · 0.5)
            let m3 = self.sole_op(self.out(m2)?, "Mul")?;
            let ok = match half == x {
                true => self.other_if_scalar(m3, 0.5) == self.out(m2),
                false => self.other_operand(m3, self.out(m2)?) == Some(x),
            };
            if !ok {
                return None;
            }
            nodes.push(m3);
            self.out(m3)?
        } else {
            // tf2onnx: (0.5 · x) · (1 + erf)
            let m1 = producer(half)?;
            if !self.op_is(m1, "Mul") || self.other_if_scalar(m1, 0.5)? != x || self.sole_consumer(half)? != m2 {
                return None;
            }
            nodes.push(m1);
            self.out(m2)?
        };
        Some(Spelled { op: SpelledOp::Activation(relprop_core::Activation::Gelu), x: x.to_string(), out: out.to_string(), nodes })
    }

    // ---- node access shared by the matchers ----

    fn ins(&self, k: usize) -> Vec<&str> {
        self.nodes[k].input.iter().map(String::as_str).collect()
    }

    fn out(&self, k: usize) -> Option<&str> {
        self.nodes[k].output.first().map(String::as_str).filter(|o| !o.is_empty())
    }

    /// A reduction's or Squeeze's axes: an attribute (before opset 18 / 13) or a constant second input.
    fn axes_of(&self, k: usize) -> Option<Vec<i64>> {
        let a = self.ctx(k).ints("axes").ok().flatten();
        a.or_else(|| self.nodes[k].input.get(1).and_then(|n| self.consts.get(n)).and_then(|c| c.i64s().map(<[i64]>::to_vec)))
    }

    fn op_is(&self, k: usize, op: &str) -> bool {
        is_op(&self.nodes[k], op)
    }

    fn readers(&self, v: &str) -> Vec<usize> {
        self.consumers.get(v).cloned().unwrap_or_default()
    }

    /// Whether `v`'s readers are exactly `nodes` (once each, in any order).
    fn read_only_by(&self, v: &str, nodes: &[usize]) -> bool {
        let (mut have, mut want) = (self.readers(v), nodes.to_vec());
        have.sort_unstable();
        want.sort_unstable();
        have == want
    }

    /// The only reader of `v`, when it is an `op` node.
    fn sole_op(&self, v: &str, op: &str) -> Option<usize> {
        self.sole_consumer(v).filter(|&k| self.op_is(k, op))
    }

    /// For binary node `k` with `v` as one operand: the other one.
    fn other_operand(&self, k: usize, v: &str) -> Option<&str> {
        match self.nodes[k].input.as_slice() {
            [p, q] if p == v => Some(q),
            [p, q] if q == v => Some(p),
            _ => None,
        }
    }

    /// For a binary node `k` with one operand the float32 scalar constant `value`: its other operand.
    fn other_if_scalar(&self, k: usize, value: f32) -> Option<&str> {
        let ins = &self.nodes[k].input;
        let [p, q] = ins.as_slice() else { return None };
        if self.is_scalar(q, value) {
            Some(p)
        } else if self.is_scalar(p, value) {
            Some(q)
        } else {
            None
        }
    }

    /// Whether `name` is a float32 constant holding one value within float32 rounding of `value`.
    fn is_scalar(&self, name: &str, value: f32) -> bool {
        self.consts
            .get(name)
            .and_then(|c| c.f32s().map(|v| matches!(v, [s] if (s - value).abs() <= 4.0 * f32::EPSILON * value.abs())))
            .unwrap_or(false)
    }
}
