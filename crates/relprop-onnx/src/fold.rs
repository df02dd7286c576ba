//! Constant folding of the small integer tensor graphs exporters emit to compute op parameters.
//!
//! torch.onnx writes the pads of `nn.ReflectionPad2d` and `nn.ReplicationPad2d` as
//! `ConstantOfShape → Concat → Reshape([-1, 2]) → Slice(step −1) → Transpose → Reshape([-1]) → Cast`: PyTorch's
//! per-axis pad pairs, last axis first, turned into ONNX's begins-then-ends order. Every input is a constant, so
//! the chain is evaluated here, once, on n-D integer tensors (`shapes.rs` holds only lists, some entries of
//! which may be the batch size). Whatever a node computes becomes an ordinary constant for the op that reads it.
//! tf2onnx's Conv1DTranspose computes its output crop and pads the same way (a Split among them).

use std::rc::Rc;

use relprop_core::Result;

use crate::attrs::NodeCtx;
use crate::import::Importer;
use crate::tensors::{decode_tensor, Const, ConstData};

/// The ops folded when every input is an integer constant.
const FOLD_OPS: [&str; 7] = ["ConstantOfShape", "Reshape", "Transpose", "Slice", "Concat", "Cast", "Split"];

/// Most elements a folded tensor may have: these graphs compute parameter lists, not data.
const MAX_FOLDED: usize = 1 << 16;

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for a in (0..dims.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * dims[a + 1];
    }
    s
}

impl Importer<'_> {
    /// Whether node `ctx` is integer constant arithmetic this module folds.
    pub(crate) fn is_int_fold(&self, ctx: &NodeCtx) -> bool {
        let ins: Vec<&str> = ctx.proto.input.iter().map(String::as_str).filter(|i| !i.is_empty()).collect();
        FOLD_OPS.contains(&ctx.op) && !ins.is_empty() && ins.iter().all(|i| self.consts.get(*i).is_some_and(|c| c.i64s().is_some()))
    }

    /// Evaluate node `ctx` (see [`Importer::is_int_fold`]) and record its output as a constant.
    pub(crate) fn int_fold(&mut self, ctx: &NodeCtx) -> Result<()> {
        let arg = |i: usize| -> Result<(Vec<usize>, Vec<i64>)> {
            let c = self.consts.get(ctx.required_input(i)?).ok_or_else(|| ctx.err(format!("input {i} must be a constant")))?;
            Ok((c.dims.clone(), c.i64s().ok_or_else(|| ctx.err(format!("input {i} must be an integer tensor")))?.to_vec()))
        };
        let count = |dims: &[usize]| -> Result<usize> {
            dims.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= MAX_FOLDED)
                .ok_or_else(|| ctx.err(format!("folds to a constant of shape {dims:?}, more than {MAX_FOLDED} values")))
        };
        if ctx.op == "Split" {
            return self.fold_split(ctx);
        }
        let out = match ctx.op {
            "ConstantOfShape" => {
                let (_, shape) = arg(0)?;
                let dims: Vec<usize> = shape
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| ctx.err(format!("shape {shape:?} has a negative entry"))))
                    .collect::<Result<_>>()?;
                let n = count(&dims)?;
                let fill = match ctx.attr("value").and_then(|a| a.t.as_ref()) {
                    None => ConstData::F32(vec![0.0; n]),
                    Some(t) => match decode_tensor(t).map_err(|m| ctx.err(format!("attribute 'value': {m}")))?.data {
                        ConstData::F32(v) if v.len() == 1 => ConstData::F32(vec![v[0]; n]),
                        ConstData::I64(v) if v.len() == 1 => ConstData::I64(vec![v[0]; n]),
                        _ => return Err(ctx.err("attribute 'value' must hold one value")),
                    },
                };
                Const { dims, data: fill }
            }
            // Integer to anything keeps the integer values, as `shapes.rs` does (the lists these graphs compute
            // are read as integers, whatever type the exporter casts them to on the way).
            "Cast" => {
                let (dims, v) = arg(0)?;
                Const { dims, data: ConstData::I64(v) }
            }
            "Reshape" => {
                let (dims, v) = arg(0)?;
                let (_, target) = arg(1)?;
                let mut out: Vec<usize> = Vec::with_capacity(target.len());
                let mut infer = None;
                for (a, &t) in target.iter().enumerate() {
                    match t {
                        -1 if infer.is_none() => {
                            infer = Some(a);
                            out.push(1);
                        }
                        0 => out.push(*dims.get(a).ok_or_else(|| ctx.err(format!("target {target:?} copies axis {a}, which the input lacks")))?),
                        t if t > 0 => out.push(t as usize),
                        _ => return Err(ctx.err(format!("reshape target {target:?} is not valid"))),
                    }
                }
                let bad = || ctx.err(format!("cannot reshape {dims:?} into {target:?}"));
                let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(bad)?;
                if let Some(a) = infer {
                    if known == 0 || v.len() % known != 0 {
                        return Err(bad());
                    }
                    out[a] = v.len() / known;
                }
                if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(v.len()) {
                    return Err(bad());
                }
                Const { dims: out, data: ConstData::I64(v) }
            }
            "Transpose" => {
                let (dims, v) = arg(0)?;
                let r = dims.len();
                let perm: Vec<usize> = match ctx.ints("perm")? {
                    Some(p) => p.iter().map(|&a| usize::try_from(a).unwrap_or(r)).collect(),
                    None => (0..r).rev().collect(),
                };
                let mut seen = vec![false; r];
                if perm.len() != r || perm.iter().any(|&a| a >= r || std::mem::replace(&mut seen[a], true)) {
                    return Err(ctx.err(format!("perm {perm:?} is not a permutation of {r} axes")));
                }
                let out: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
                let (si, so) = (strides(&dims), strides(&out));
                let data = (0..v.len())
                    .map(|k| v[(0..r).map(|a| (k / so[a] % out[a]) * si[perm[a]]).sum::<usize>()])
                    .collect();
                Const { dims: out, data: ConstData::I64(data) }
            }
            "Slice" => {
                let (dims, v) = arg(0)?;
                let r = dims.len() as i64;
                let list = |i: usize| -> Result<Option<Vec<i64>>> { ctx.input(i).map(|_| arg(i).map(|a| a.1)).transpose() };
                let (starts, ends) = (list(1)?.unwrap_or_default(), list(2)?.unwrap_or_default());
                let axes = list(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = list(4)?.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                    return Err(ctx.err("starts, ends, axes and steps differ in length"));
                }
                // Per axis, the source indices kept (ONNX clamping, negative steps walk backwards).
                let mut keep: Vec<Vec<usize>> = dims.iter().map(|&d| (0..d).collect()).collect();
                for (((&s, &e), &a), &st) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
                    let a = if a < 0 { a + r } else { a };
                    let Some(&d) = usize::try_from(a).ok().and_then(|a| dims.get(a)) else {
                        return Err(ctx.err(format!("axis {a} of a rank-{r} constant")));
                    };
                    let d = d as i64;
                    let idx = |x: i64| if x < 0 { x + d } else { x };
                    keep[a as usize] = match st {
                        0 => return Err(ctx.err("step 0")),
                        st if st > 0 => {
                            let (s, e) = (idx(s).clamp(0, d), idx(e).clamp(0, d));
                            (s..e).step_by(st as usize).map(|i| i as usize).collect()
                        }
                        st => {
                            let (s, e) = (idx(s).clamp(-1, d - 1), idx(e).clamp(-1, d - 1));
                            let mut out = Vec::new();
                            let mut i = s;
                            while i > e {
                                out.push(i as usize);
                                i += st;
                            }
                            out
                        }
                    };
                }
                let out: Vec<usize> = keep.iter().map(Vec::len).collect();
                let (si, so) = (strides(&dims), strides(&out));
                let data = (0..count(&out)?)
                    .map(|k| v[(0..dims.len()).map(|a| keep[a][k / so[a] % out[a]] * si[a]).sum::<usize>()])
                    .collect();
                Const { dims: out, data: ConstData::I64(data) }
            }
            _ => {
                // Concat along `axis`.
                let parts: Vec<(Vec<usize>, Vec<i64>)> = (0..ctx.proto.input.len()).map(arg).collect::<Result<_>>()?;
                let r = parts[0].0.len();
                let axis = ctx.int("axis", 0)?;
                let axis = usize::try_from(if axis < 0 { axis + r as i64 } else { axis }).ok().filter(|&a| a < r);
                let axis = axis.ok_or_else(|| ctx.err(format!("axis out of range for rank-{r} constants")))?;
                let same = |d: &[usize]| d.len() == r && (0..r).all(|a| a == axis || d[a] == parts[0].0[a]);
                if !parts.iter().all(|(d, _)| same(d)) {
                    return Err(ctx.err("constants of different shapes off the concatenation axis"));
                }
                let mut dims = parts[0].0.clone();
                dims[axis] = parts.iter().map(|(d, _)| d[axis]).sum();
                count(&dims)?;
                // Rows of the concatenation: everything before `axis` is an outer loop over the parts.
                let outer: usize = dims[..axis].iter().product();
                let mut data = Vec::with_capacity(dims.iter().product());
                for o in 0..outer {
                    for (d, v) in &parts {
                        let chunk: usize = d[axis..].iter().product();
                        data.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                    }
                }
                Const { dims, data: ConstData::I64(data) }
            }
        };
        self.consts.insert(ctx.main_output()?.to_string(), Rc::new(out));
        Ok(())
    }

    /// Split of a 1-D integer constant (tf2onnx reorders a conv transpose's computed pads with one): the sizes
    /// from input 1 or the `split` attribute, else equal parts, one per output.
    fn fold_split(&mut self, ctx: &NodeCtx) -> Result<()> {
        let c = self.consts.get(ctx.required_input(0)?).cloned().ok_or_else(|| ctx.err("input 0 must be a constant"))?;
        let v = c.i64s().ok_or_else(|| ctx.err("input 0 must be an integer tensor"))?;
        if c.dims.len() != 1 || !matches!(ctx.int("axis", 0)?, 0 | -1) {
            return Err(ctx.err(format!("splitting an integer constant of shape {:?} supports one axis", c.dims)));
        }
        let outs: Vec<&String> = ctx.proto.output.iter().collect();
        let sizes: Vec<i64> = match ctx.input(1) {
            Some(name) => self.consts.get(name).and_then(|s| s.i64s()).ok_or_else(|| ctx.err("split sizes must be an integer constant"))?.to_vec(),
            None => match ctx.ints("split")? {
                Some(s) => s,
                None if !outs.is_empty() && v.len() % outs.len() == 0 => vec![(v.len() / outs.len()) as i64; outs.len()],
                None => return Err(ctx.err(format!("{} values do not split into {} equal parts", v.len(), outs.len()))),
            },
        };
        if sizes.len() != outs.len() || sizes.iter().any(|&n| n < 0) || sizes.iter().sum::<i64>() != v.len() as i64 {
            return Err(ctx.err(format!("split sizes {sizes:?} do not cut {} values into {} outputs", v.len(), outs.len())));
        }
        let mut at = 0;
        for (out, &n) in outs.into_iter().zip(&sizes) {
            let n = n as usize;
            if !out.is_empty() {
                self.consts.insert(out.clone(), Rc::new(Const { dims: vec![n], data: ConstData::I64(v[at..at + n].to_vec()) }));
            }
            at += n;
        }
        Ok(())
    }
}
