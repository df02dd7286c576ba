//! Shape arithmetic: the small integer graphs exporters emit to compute a reshape target at run time.
//!
//! PyTorch's `x.view(x.size(0), -1)` exported with a dynamic batch becomes
//! `Shape → Gather(0) → Unsqueeze → Concat([·, -1]) → Reshape`. Every per-sample size is known at import
//! time, so these nodes are evaluated here, once: each integer value is a list of [`Dim`]s, a known number or
//! a multiple of the batch size, which stays symbolic. A result with no batch entry becomes an ordinary int64
//! constant (so any op that wants a constant list can use it); one with a batch entry is kept for `Reshape`,
//! which accepts the batch only in its first entry (the batch axis must stay where it is). tf2onnx's Tensordot
//! (Keras Dense on a rank-4 input) multiplies the batch by the other free axes (`ReduceProd`): a first entry
//! `N·k` merges `k` rows per sample into the batch axis, as a `-1` would.

use std::rc::Rc;

use relprop_core::Result;

use crate::attrs::NodeCtx;
use crate::import::Importer;
use crate::tensors::{Const, ConstData};

/// One entry of an integer value computed from shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dim {
    /// The batch size (not known at import time) times a known factor.
    Batch(i64),
    Known(i64),
}

/// An integer tensor of rank 0 or 1 whose entries may include the batch size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShapeValue {
    /// Rank 0 (a scalar, one entry) or 1.
    pub scalar: bool,
    pub dims: Vec<Dim>,
}

/// The ops this module evaluates when their data input is a shape value or an integer constant.
pub(crate) const SHAPE_OPS: [&str; 17] = [
    "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Identity", "ReduceProd", "Mul", "Div", "Add", "Sub", "Mod",
    "Neg", "Max", "Min",
];

impl Importer<'_> {
    /// Input `i` as a shape value: a computed shape value, or an integer constant of rank 0 or 1.
    fn shape_input(&self, ctx: &NodeCtx, i: usize) -> Option<ShapeValue> {
        self.shape_value_named(ctx.input(i)?)
    }

    /// The entries of value `name` when it is a shape value or an integer constant of rank 0 or 1.
    pub(crate) fn shape_value_of(&self, name: &str) -> Option<Vec<Dim>> {
        self.shape_value_named(name).map(|v| v.dims)
    }

    fn shape_value_named(&self, name: &str) -> Option<ShapeValue> {
        if let Some(v) = self.shape_values.get(name) {
            return Some(v.clone());
        }
        let c = self.consts.get(name)?;
        let v = c.i64s()?;
        (c.dims.len() <= 1).then(|| ShapeValue { scalar: c.dims.is_empty(), dims: v.iter().map(|&d| Dim::Known(d)).collect() })
    }

    /// Whether node `ctx` is shape arithmetic this module evaluates (instead of a tensor op).
    pub(crate) fn is_shape_op(&self, ctx: &NodeCtx) -> bool {
        if !SHAPE_OPS.contains(&ctx.op) {
            return false;
        }
        match ctx.op {
            "Shape" => true,
            // A computed shape value, or only integer constants (folded here).
            _ => {
                let ins: Vec<&str> = ctx.proto.input.iter().map(String::as_str).filter(|i| !i.is_empty()).collect();
                ins.iter().any(|i| self.shape_values.contains_key(*i))
                    || (!ins.is_empty()
                        && ins.iter().all(|i| self.consts.get(*i).is_some_and(|c| c.i64s().is_some()))
                        && ctx.op != "Identity")
            }
        }
    }

    /// Evaluate shape-arithmetic node `ctx` (see [`Importer::is_shape_op`]) and record its output.
    pub(crate) fn shape_op(&mut self, ctx: &NodeCtx) -> Result<()> {
        let need = |i: usize| self.shape_input(ctx, i).ok_or_else(|| ctx.err(format!("input {i} must be an integer list (a shape) here")));
        let out = match ctx.op {
            "Shape" => {
                let x = self.value(ctx, 0)?;
                let mut dims = vec![Dim::Batch(1)];
                dims.extend(self.shape(x).iter().map(|&d| Dim::Known(d as i64)));
                let r = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (start, end) = (clamp(ctx.int("start", 0)?), clamp(ctx.int("end", r)?));
                ShapeValue { scalar: false, dims: dims[start..end.max(start)].to_vec() }
            }
            "Gather" => {
                let data = need(0)?;
                let idx = need(1)?;
                if data.scalar || ctx.int("axis", 0)? != 0 {
                    return Err(ctx.err("gathering from a shape supports axis 0 of a 1-D list only"));
                }
                let n = data.dims.len() as i64;
                let mut dims = Vec::with_capacity(idx.dims.len());
                for d in &idx.dims {
                    let Dim::Known(i) = *d else { return Err(ctx.err("gather indices cannot depend on the batch size")) };
                    let j = if i < 0 { i + n } else { i };
                    if !(0..n).contains(&j) {
                        return Err(ctx.err(format!("gather index {i} out of range for a shape of {n} entries")));
                    }
                    dims.push(data.dims[j as usize]);
                }
                ShapeValue { scalar: idx.scalar, dims }
            }
            "Unsqueeze" | "Squeeze" => {
                let v = need(0)?;
                let axes = match ctx.input(1) {
                    Some(_) => self.const_ints(ctx, 1, "axes")?,
                    None => ctx.ints("axes")?.unwrap_or_default(),
                };
                match (ctx.op, v.scalar, axes.as_slice()) {
                    ("Unsqueeze", true, [0] | [-1]) => ShapeValue { scalar: false, dims: v.dims },
                    ("Squeeze", false, [] | [0] | [-1]) if v.dims.len() == 1 => ShapeValue { scalar: true, dims: v.dims },
                    _ => return Err(ctx.err(format!("{} with axes {axes:?} on a shape of rank {} is not supported", ctx.op, usize::from(!v.scalar)))),
                }
            }
            "Concat" => {
                let mut dims = Vec::new();
                for i in 0..ctx.proto.input.len() {
                    let v = need(i)?;
                    if v.scalar {
                        return Err(ctx.err("Concat of scalars is not valid ONNX"));
                    }
                    dims.extend(v.dims);
                }
                ShapeValue { scalar: false, dims }
            }
            "Cast" | "Identity" => need(0)?,
            "Neg" => {
                // tf2onnx's output-size arithmetic for a Conv1DTranspose.
                let v = need(0)?;
                let dims = v.dims.iter().map(|d| match d {
                    Dim::Known(x) => x.checked_neg().map(Dim::Known).ok_or_else(|| ctx.err(format!("Neg of {x} is not representable"))),
                    Dim::Batch(_) => Err(ctx.err("Neg of the batch size is not supported (the batch axis must stay as it is)")),
                });
                ShapeValue { scalar: v.scalar, dims: dims.collect::<Result<_>>()? }
            }
            "ReduceProd" => {
                // Over the whole list (Tensordot's product of the free axes), the result a scalar or a 1-list.
                let v = need(0)?;
                let axes = match ctx.input(1) {
                    Some(_) => self.const_ints(ctx, 1, "axes")?,
                    None => ctx.ints("axes")?.unwrap_or_default(),
                };
                if v.scalar || !matches!(axes.as_slice(), [] | [0] | [-1]) {
                    return Err(ctx.err(format!("ReduceProd over axes {axes:?} of a shape is not supported (only the whole list)")));
                }
                let mut prod = Dim::Known(1);
                for &d in &v.dims {
                    prod = dim_mul(prod, d).ok_or_else(|| ctx.err("ReduceProd of a shape: the product is not representable"))?;
                }
                ShapeValue { scalar: ctx.int("keepdims", 1)? == 0, dims: vec![prod] }
            }
            "Slice" => {
                let v = need(0)?;
                let list = |i: usize, what: &str| -> Result<Option<Vec<i64>>> { ctx.input(i).map(|_| self.const_ints(ctx, i, what)).transpose() };
                let (starts, ends) = (list(1, "starts")?.unwrap_or_default(), list(2, "ends")?.unwrap_or_default());
                let axes = list(3, "axes")?.unwrap_or(vec![0]);
                let steps = list(4, "steps")?.unwrap_or(vec![1]);
                if v.scalar || starts.len() != 1 || ends.len() != 1 || !matches!(axes.as_slice(), [0] | [-1]) || steps != [1] {
                    return Err(ctx.err("slicing a shape supports one axis with step 1"));
                }
                let n = v.dims.len() as i64;
                let clamp = |x: i64| (if x < 0 { x + n } else { x }).clamp(0, n) as usize;
                let (s, e) = (clamp(starts[0]), clamp(ends[0]));
                ShapeValue { scalar: false, dims: v.dims[s..e.max(s)].to_vec() }
            }
            _ => {
                // Mul, Div, Add, Sub, Mod, Max, Min on known entries (a scalar broadcasts).
                let (a, b) = (need(0)?, need(1)?);
                let len = a.dims.len().max(b.dims.len());
                // Each side has the full length or one entry (an empty list against a longer one is refused).
                let fits = |n: usize| n == len || n == 1;
                if !(fits(a.dims.len()) && fits(b.dims.len())) {
                    return Err(ctx.err("shape arithmetic on lists of different lengths"));
                }
                let mut dims = Vec::with_capacity(len);
                for k in 0..len {
                    let (p, q) = (a.dims[k.min(a.dims.len() - 1)], b.dims[k.min(b.dims.len() - 1)]);
                    let batch_err = || ctx.err(format!("{} on the batch size is not supported (the batch axis must stay as it is)", ctx.op));
                    if ctx.op == "Mul" {
                        dims.push(dim_mul(p, q).ok_or_else(batch_err)?);
                        continue;
                    }
                    let (Dim::Known(x), Dim::Known(y)) = (p, q) else { return Err(batch_err()) };
                    let r = match ctx.op {
                        "Add" => x.checked_add(y),
                        "Sub" => x.checked_sub(y),
                        // Integer Mod (fmod = 0) takes the divisor's sign, as Python's %: torch.onnx's axis
                        // normalisation (`nn.Unflatten`).
                        "Mod" if ctx.int("fmod", 0)? == 0 => x.checked_rem(y).map(|r| if r != 0 && (r < 0) != (y < 0) { r + y } else { r }),
                        "Mod" => x.checked_rem(y),
                        "Max" => Some(x.max(y)),
                        "Min" => Some(x.min(y)),
                        _ => (y != 0).then(|| x.div_euclid(y)),
                    };
                    dims.push(Dim::Known(r.ok_or_else(|| ctx.err(format!("{} of {x} and {y} is not representable", ctx.op)))?));
                }
                ShapeValue { scalar: a.scalar && b.scalar, dims }
            }
        };
        let name = ctx.main_output()?.to_string();
        let known: Option<Vec<i64>> = out.dims.iter().map(|d| match d { Dim::Known(v) => Some(*v), Dim::Batch(_) => None }).collect();
        match known {
            Some(v) => {
                let dims = if out.scalar { vec![] } else { vec![v.len()] };
                self.consts.insert(name, Rc::new(Const { dims, data: ConstData::I64(v) }));
            }
            None => {
                self.shape_values.insert(name, out);
            }
        }
        Ok(())
    }

    /// A reshape target from a shape value: the batch size is accepted as the first entry only (it becomes 0,
    /// "copy the batch axis"; `N·k` becomes -1, "merge what is left into the batch axis", with `k` returned to
    /// be checked against what the reshape merges).
    pub(crate) fn reshape_target(&self, ctx: &NodeCtx, v: &ShapeValue) -> Result<(Vec<i64>, Option<usize>)> {
        let mut rows = None;
        let t = v
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| match (i, d) {
                (0, Dim::Batch(1)) => Ok(0),
                (0, Dim::Batch(k)) if *k > 1 => {
                    rows = Some(*k as usize);
                    Ok(-1)
                }
                (_, Dim::Known(x)) => Ok(*x),
                (_, Dim::Batch(_)) => Err(ctx.err(format!("target shape puts the batch size in axis {i}; only axis 0 may hold it"))),
            })
            .collect::<Result<_>>()?;
        Ok((t, rows))
    }
}

/// `p · q` where at most one factor holds the batch size; None if both do or the product overflows.
fn dim_mul(p: Dim, q: Dim) -> Option<Dim> {
    match (p, q) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_mul(y).map(Dim::Known),
        (Dim::Batch(k), Dim::Known(y)) | (Dim::Known(y), Dim::Batch(k)) => k.checked_mul(y).filter(|&m| m > 0).map(Dim::Batch),
        (Dim::Batch(_), Dim::Batch(_)) => None,
    }
}
