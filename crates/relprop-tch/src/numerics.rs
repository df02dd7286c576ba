//! [`Numerics`] on `tch::Tensor` (f32, any device), with the semantics of the ndarray reference implementation
//! (`relprop-ndarray/src/numerics.rs`): same formulas and rounding order wherever libtorch allows, every
//! tensor on the model's device, no per-element loops on the host.
//!
//! Batch invariance: every GEMM, convolution and reduction runs per sample on a fresh contiguous copy
//! ([`per_sample`]), because libtorch picks its kernels' blocking (and summation order) by batch size and
//! alignment; so a batch explains bit for bit like its samples one by one (the conformance suite checks this at
//! 1e-5 on maps that amplify rounding).
//!
//! Geometry (ONNX conventions, as in `relprop-ndarray/src/kernels`):
//! - convolutions: the symmetric part of the padding goes to libtorch, the asymmetric rest is padded explicitly;
//!   the transpose is a transposed convolution with `output_padding` so it reaches the padded input size, then
//!   the explicit padding is cropped;
//! - max pooling: explicit `-inf` padding (plus the extra end padding ONNX `ceil_mode` needs), libtorch's
//!   `max_poolNd_with_indices` with no padding (first maximum in row-major window order, padding never wins),
//!   empty windows give 0; routing scatter-adds into the padded plane (overlapping windows add) and crops; 3-D
//!   pooling routes to every tied maximum, as TensorFlow's MaxPool3D gradient does (`maxpool_ties_vjp`);
//! - average pooling: a sum over zero-padded windows (a ones kernel, one channel) divided by a cached divisor map
//!   (in-bounds positions, or the window clipped to the padded input with `count_include_pad`); its transpose is
//!   the transposed sum of `s / divisor`.

use relprop_core::engine::Numerics;
use relprop_core::graph::{window_out, Activation, Interpolation, Merge, Op, PadMode, Pool};
use relprop_core::program::{BiasMod, WeightMod, XMod, BN_EPSILON};
use relprop_core::rules::KERAS_EPSILON;
use relprop_core::{Error, Result, Tensor};
use tch::{Device, Kind, TchError};

use crate::err;
use crate::model::TchModel;

/// A device tensor; cloning shares the storage (the engine never mutates a tensor in place).
pub struct T(pub tch::Tensor);

impl Clone for T {
    fn clone(&self) -> T {
        T(self.0.shallow_clone())
    }
}

impl std::fmt::Debug for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tch::Tensor{:?}", self.0.size())
    }
}

/// libtorch errors as relprop errors.
pub(crate) trait Ck<V> {
    fn ck(self) -> Result<V>;
}

impl<V> Ck<V> for std::result::Result<V, TchError> {
    fn ck(self) -> Result<V> {
        self.map_err(|e| err(e.to_string()))
    }
}

fn i64s(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&d| d as i64).collect()
}

fn usizes(v: &[i64]) -> Vec<usize> {
    v.iter().map(|&d| d as usize).collect()
}

fn batched(n: i64, per: &[usize]) -> Vec<i64> {
    std::iter::once(n).chain(per.iter().map(|&d| d as i64)).collect()
}

/// `torch.nn.functional.pad` spec for the trailing axes: last axis first, (begin, end) pairs.
fn pad_spec(begin: &[usize], end: &[usize]) -> Vec<i64> {
    begin.iter().zip(end).rev().flat_map(|(&b, &e)| [b as i64, e as i64]).collect()
}

/// Pad the trailing `begin.len()` axes with `value` (no copy when there is nothing to pad).
fn pad(t: &tch::Tensor, begin: &[usize], end: &[usize], value: f64) -> Result<tch::Tensor> {
    if begin.iter().chain(end).all(|&p| p == 0) {
        return Ok(t.shallow_clone());
    }
    t.f_pad(pad_spec(begin, end).as_slice(), "constant", value).ck()
}

/// A reflect (else edge) Pad of the per-sample axes, axis by axis, the first first ([`PadMode`]): each axis'
/// border is the flipped slice next to the edge, or the edge slice repeated.
fn mirror_pad(t: &tch::Tensor, begin: &[usize], end: &[usize], reflect: bool) -> Result<tch::Tensor> {
    let mut out = t.shallow_clone();
    for (a, (&b, &e)) in begin.iter().zip(end).enumerate() {
        let (d, b, e, len) = ((a + 1) as i64, b as i64, e as i64, out.size()[a + 1]);
        let border = |from: i64, n: i64, edge: i64| -> Result<tch::Tensor> {
            if reflect {
                return out.f_narrow(d, from, n).ck()?.f_flip([d].as_slice()).ck();
            }
            let mut size = out.size();
            size[a + 1] = n;
            out.f_narrow(d, edge, 1).ck()?.f_expand(size.as_slice(), false).ck()
        };
        let mut parts = Vec::with_capacity(3);
        if b > 0 {
            parts.push(border(1, b, 0)?);
        }
        parts.push(out.shallow_clone());
        if e > 0 {
            parts.push(border(len - 1 - e, e, len - 1)?);
        }
        if parts.len() > 1 {
            out = tch::Tensor::f_cat(&parts, d).ck()?;
        }
    }
    Ok(out)
}

/// The gradient of [`mirror_pad`] for `r` at its output, the input's per-sample shape `in_shape`: axis by axis,
/// last first, the interior plus each border's relevance on the positions it copied (flipped back one in from
/// the edge, or summed onto the edge).
fn mirror_pad_vjp(r: &tch::Tensor, begin: &[usize], in_shape: &[usize], reflect: bool) -> Result<tch::Tensor> {
    let mut g = r.shallow_clone();
    for a in (0..begin.len()).rev() {
        let (d, b, len) = ((a + 1) as i64, begin[a] as i64, in_shape[a] as i64);
        let e = g.size()[a + 1] - b - len;
        // `part` (extent `n` on this axis) at offset `at` of the axis' input extent.
        let place = |part: tch::Tensor, at: i64, n: i64| -> Result<tch::Tensor> {
            let (mut before, mut after) = (vec![0; begin.len()], vec![0; begin.len()]);
            (before[a], after[a]) = (at as usize, (len - at - n) as usize);
            pad(&part, &before, &after, 0.0)
        };
        let border = |from: i64, n: i64| -> Result<tch::Tensor> {
            let s = g.f_narrow(d, from, n).ck()?;
            if reflect { s.f_flip([d].as_slice()).ck() } else { s.f_sum_dim_intlist([d].as_slice(), true, None::<Kind>).ck() }
        };
        let mut sum = g.f_narrow(d, b, len).ck()?;
        if b > 0 {
            let part = if reflect { place(border(0, b)?, 1, b)? } else { place(border(0, b)?, 0, 1)? };
            sum = sum.f_add(&part).ck()?;
        }
        if e > 0 {
            let part = if reflect { place(border(b + len, e)?, len - 1 - e, e)? } else { place(border(b + len, e)?, len - 1, 1)? };
            sum = sum.f_add(&part).ck()?;
        }
        g = sum;
    }
    Ok(g)
}

/// `ln(1 + eˣ)`, `x` itself above 20 (core's `Activation::apply`).
fn softplus(x: &tch::Tensor) -> Result<tch::Tensor> {
    let soft = x.f_exp().ck()?.f_log1p().ck()?;
    x.f_where_self(&x.f_gt(20.0).ck()?, &soft).ck()
}

/// Keep `[begin[a], begin[a] + len[a])` of axis `first + a`, for every `a`.
fn crop(t: &tch::Tensor, first: usize, begin: &[usize], len: &[usize]) -> Result<tch::Tensor> {
    let mut out = t.shallow_clone();
    for (a, (&b, &l)) in begin.iter().zip(len).enumerate() {
        if b != 0 || out.size()[first + a] != l as i64 {
            out = out.f_narrow((first + a) as i64, b as i64, l as i64).ck()?;
        }
    }
    Ok(out)
}

fn same_shape(a: &T, b: &T) -> Result<()> {
    let (sa, sb) = (a.0.size(), b.0.size());
    if sa != sb {
        return Err(err(format!("shape mismatch {sa:?} vs {sb:?}")));
    }
    Ok(())
}

/// `+1` where `z >= 0` (also `-0.0`), else `-1`: `sign(sign(z) + ½)`, exact (NaN gives +1: callers that add
/// it to `z` get NaN anyway). Arithmetic rather
/// than a comparison and `where`: libtorch 2.13's CPU `where` took 1.5 ms on a 256×56×56 map, these 0.05 ms each.
fn sign_ge0(z: &tch::Tensor) -> Result<tch::Tensor> {
    z.f_sign().ck()?.f_add_scalar(0.5).ck()?.f_sign().ck()
}

/// `+1` where `z >= 0` (sgn(0) = +1), else `-1` (NaN included, like the ndarray backend), as f32. NaN becomes −1
/// first: libtorch's `sign(NaN)` is 0.
fn sgn1(z: &tch::Tensor) -> Result<tch::Tensor> {
    sign_ge0(&z.f_nan_to_num(Some(-1.0), None, None).ck()?)
}

/// A row tensor `[N]` shaped to broadcast over a tensor of `ndim` axes.
fn rows_view(v: &T, a: &T) -> Result<tch::Tensor> {
    let n = a.0.size()[0];
    if v.0.numel() as i64 != n {
        return Err(err(format!("row tensor of {} values for a batch of {n}", v.0.numel())));
    }
    let shape: Vec<i64> = std::iter::once(n).chain(std::iter::repeat_n(1, a.0.dim() - 1)).collect();
    v.0.f_reshape(shape.as_slice()).ck()
}

/// `f` applied to each sample of the batch alone (a fresh, aligned copy of it), results concatenated: libtorch's
/// GEMM and convolution kernels pick their blocking (and so the summation order) by batch size, and LRP maps with
/// a near-zero denominator turn that last-bit difference into ~1e-4 of the map. Per sample, a batch explains
/// exactly like its samples one by one, as on the ndarray backend.
fn per_sample(x: &tch::Tensor, f: impl Fn(&tch::Tensor) -> Result<tch::Tensor>) -> Result<tch::Tensor> {
    let n = x.size()[0];
    let fresh = |t: &tch::Tensor| -> Result<tch::Tensor> {
        let mut out = tch::Tensor::f_empty(t.size().as_slice(), (t.kind(), t.device())).ck()?;
        out.f_copy_(t).ck()?;
        Ok(out)
    };
    if n == 1 {
        return f(&fresh(x)?);
    }
    let parts = (0..n).map(|i| f(&fresh(&x.f_narrow(0, i, 1).ck()?)?)).collect::<Result<Vec<_>>>()?;
    tch::Tensor::f_cat(&parts, 0).ck()
}

fn check_rank(what: &str, r: usize) -> Result<()> {
    if !(1..=3).contains(&r) {
        return Err(err(format!("{what} with {r} spatial axes: libtorch supports 1 to 3")));
    }
    Ok(())
}

/// Geometry of a pooling over a per-sample input with spatial extent `sp`: the end padding including what
/// ONNX `ceil_mode` adds, so a floor-mode window op on the padded input gives the ONNX output size.
fn pool_end_pads(p: &Pool, sp: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut out = Vec::with_capacity(sp.len());
    let mut end = Vec::with_capacity(sp.len());
    for (a, &len) in sp.iter().enumerate() {
        let (k, s, pb, pe) = (p.kernel[a], p.strides[a], p.pads_begin[a], p.pads_end[a]);
        let o = window_out(len, k, s, 1, pb, pe, p.ceil_mode).map_err(|e| err(format!("pool geometry: {e}")))?;
        let need = (o - 1) * s + k;
        end.push(pe + need.saturating_sub(len + pb + pe));
        out.push(o);
    }
    Ok((out, end))
}

impl TchModel {
    fn opts(&self) -> (Kind, Device) {
        self.f32_options()
    }

    /// Convolution of `x` with `w` (one channel group layout as in the IR), ONNX pads.
    #[allow(clippy::too_many_arguments)]
    fn conv(&self, x: &tch::Tensor, w: &tch::Tensor, strides: &[usize], dils: &[usize], pb: &[usize], pe: &[usize], groups: usize) -> Result<tch::Tensor> {
        let r = strides.len();
        check_rank("convolution", r)?;
        let sym: Vec<usize> = pb.iter().zip(pe).map(|(&b, &e)| b.min(e)).collect();
        let eb: Vec<usize> = pb.iter().zip(&sym).map(|(&b, &m)| b - m).collect();
        let ee: Vec<usize> = pe.iter().zip(&sym).map(|(&e, &m)| e - m).collect();
        pad(x, &eb, &ee, 0.0)?
            .f_internal_convolution(
            w,
            None::<&tch::Tensor>,
            i64s(strides).as_slice(),
            i64s(&sym).as_slice(),
            i64s(dils).as_slice(),
            false,
            vec![0i64; r].as_slice(),
            groups as i64,
            false,
            false,
            true,
                false, // no TF32 on CUDA: keep f32 accuracy
            )
            .ck()
    }

    /// Vector-Jacobian product of [`TchModel::conv`] for an input of spatial extent `in_sp`.
    #[allow(clippy::too_many_arguments)]
    fn conv_t(&self, s: &tch::Tensor, w: &tch::Tensor, strides: &[usize], dils: &[usize], pb: &[usize], pe: &[usize], groups: usize, in_sp: &[usize]) -> Result<tch::Tensor> {
        let r = strides.len();
        check_rank("convolution", r)?;
        let ssz = s.size();
        if ssz.len() != r + 2 {
            return Err(err(format!("transposed convolution of a {:?} tensor with {r} spatial axes", ssz)));
        }
        let kernel = &w.size()[2..];
        let (mut sym, mut eb, mut opad) = (vec![0usize; r], vec![0usize; r], vec![0i64; r]);
        for a in 0..r {
            sym[a] = pb[a].min(pe[a]);
            eb[a] = pb[a] - sym[a];
            let target = (in_sp[a] + pb[a] + pe[a] - 2 * sym[a]) as i64;
            let eff = dils[a] as i64 * (kernel[a] - 1) + 1;
            let base = (ssz[2 + a] - 1) * strides[a] as i64 - 2 * sym[a] as i64 + eff;
            opad[a] = target - base;
            if opad[a] < 0 || opad[a] >= (strides[a].max(dils[a])) as i64 {
                return Err(err(format!("transposed convolution: output padding {} out of range (axis {a})", opad[a])));
            }
        }
        let y = s
            .f_internal_convolution(
                w,
                None::<&tch::Tensor>,
                i64s(strides).as_slice(),
                i64s(&sym).as_slice(),
                i64s(dils).as_slice(),
                true,
                opad.as_slice(),
                groups as i64,
                false,
                false,
                true,
                false,
            )
            .ck()?;
        crop(&y, 2, &eb, in_sp)
    }

    /// Max pooling: output (empty windows 0), winner indices into the padded plane, padded spatial extent,
    /// begin pads.
    fn maxpool(&self, p: &Pool, x: &tch::Tensor) -> Result<(tch::Tensor, tch::Tensor, Vec<usize>)> {
        let r = p.kernel.len();
        check_rank("max pooling", r)?;
        let sp = usizes(&x.size()[2..]);
        let (_, end) = pool_end_pads(p, &sp)?;
        let xp = pad(x, &p.pads_begin, &end, f64::NEG_INFINITY)?;
        let (k, s, z, one) = (i64s(&p.kernel), i64s(&p.strides), vec![0i64; r], vec![1i64; r]);
        let (y, idx) = match r {
            1 => xp.f_max_pool1d_with_indices(k.as_slice(), s.as_slice(), z.as_slice(), one.as_slice(), false),
            2 => xp.f_max_pool2d_with_indices(k.as_slice(), s.as_slice(), z.as_slice(), one.as_slice(), false),
            _ => xp.f_max_pool3d_with_indices(k.as_slice(), s.as_slice(), z.as_slice(), one.as_slice(), false),
        }
        .ck()?;
        let y = y.f_masked_fill(&y.f_isneginf().ck()?, 0.0).ck()?;
        Ok((y, idx, usizes(&xp.size()[2..])))
    }

    /// The relevance through a max pooling as TensorFlow's MaxPool3D gradient routes it: per kernel offset, the
    /// strided slice of the (−∞-)padded input holding that offset of every window is compared with the windows'
    /// maxima, and where equal the window's relevance `r` is added into the same strided view of the result. Tied
    /// maxima each get the whole relevance.
    fn maxpool_ties_vjp(&self, p: &Pool, x: &tch::Tensor, r: &tch::Tensor) -> Result<tch::Tensor> {
        let sp = usizes(&x.size()[2..]);
        let (out, end) = pool_end_pads(p, &sp)?;
        let xp = pad(x, &p.pads_begin, &end, f64::NEG_INFINITY)?;
        let (y, _, _) = self.maxpool(p, x)?;
        let dx = xp.f_zeros_like().ck()?;
        if out.contains(&0) {
            return crop(&dx, 2, &p.pads_begin, &sp);
        }
        for k in 0..p.kernel.iter().product::<usize>() {
            let (mut xv, mut dv, mut rest) = (xp.shallow_clone(), dx.shallow_clone(), k);
            for a in (0..sp.len()).rev() {
                let (off, s) = ((rest % p.kernel[a]) as i64, p.strides[a] as i64);
                rest /= p.kernel[a];
                let stop = off + (out[a] as i64 - 1) * s + 1;
                xv = xv.f_slice(2 + a as i64, off, stop, s).ck()?;
                dv = dv.f_slice(2 + a as i64, off, stop, s).ck()?;
            }
            let hit = xv.f_eq_tensor(&y).ck()?.f_to_kind(Kind::Float).ck()?.f_mul(r).ck()?;
            // In place: `dv` is a strided view into `dx`.
            let _ = dv.f_add_(&hit).ck()?;
        }
        crop(&dx, 2, &p.pads_begin, &sp)
    }

    /// Sum over windows of zero-padded `x`: per sample, a ones kernel on its channels as `(C, 1, ...)`.
    fn sumpool(&self, p: &Pool, xp: &tch::Tensor) -> Result<tch::Tensor> {
        let r = xp.dim() - 2;
        let ones = tch::Tensor::f_ones(batched(1, &[&[1usize][..], &p.kernel].concat()).as_slice(), self.opts()).ck()?;
        per_sample(xp, |x| {
            let sz = x.size();
            let flat: Vec<i64> = [sz[0] * sz[1], 1].into_iter().chain(sz[2..].iter().copied()).collect();
            let y = self.conv(&x.f_reshape(flat.as_slice()).ck()?, &ones, &p.strides, &vec![1; r], &vec![0; r], &vec![0; r], 1)?;
            let out: Vec<i64> = [sz[0], sz[1]].into_iter().chain(y.size()[2..].iter().copied()).collect();
            y.f_reshape(out.as_slice()).ck()
        })
    }

    /// Average-pooling divisors `(1, 1, out...)` for node `node` (cached; at least 1, so empty windows give 0).
    fn pool_divisor(&self, node: usize, p: &Pool, sp: &[usize]) -> Result<tch::Tensor> {
        self.misc.get((node, "div".into()), || {
            let (_, end) = pool_end_pads(p, sp)?;
            let ones = tch::Tensor::f_ones(batched(1, &[&[1usize][..], sp].concat()).as_slice(), self.opts()).ck()?;
            let padded = if p.count_include_pad {
                // Ones over the padded input [-pb, len + pe), zeros past it (ceil_mode windows).
                let extra: Vec<usize> = end.iter().zip(&p.pads_end).map(|(&e, &pe)| e - pe).collect();
                pad(&pad(&ones, &p.pads_begin, &p.pads_end, 1.0)?, &vec![0; sp.len()], &extra, 0.0)?
            } else {
                pad(&ones, &p.pads_begin, &end, 0.0)?
            };
            self.sumpool(p, &padded)?.f_clamp_min(1.0).ck()
        })
    }

    fn avgpool(&self, node: usize, p: &Pool, x: &tch::Tensor) -> Result<tch::Tensor> {
        check_rank("average pooling", p.kernel.len())?;
        let sp = usizes(&x.size()[2..]);
        let (_, end) = pool_end_pads(p, &sp)?;
        let sum = self.sumpool(p, &pad(x, &p.pads_begin, &end, 0.0)?)?;
        sum.f_div(&self.pool_divisor(node, p, &sp)?).ck()
    }

    fn avgpool_t(&self, node: usize, p: &Pool, s: &tch::Tensor, in_shape: &[usize]) -> Result<tch::Tensor> {
        let r = p.kernel.len();
        check_rank("average pooling", r)?;
        let sp = &in_shape[1..];
        let (_, end) = pool_end_pads(p, sp)?;
        let q = s.f_div(&self.pool_divisor(node, p, sp)?).ck()?;
        let ones = tch::Tensor::f_ones(batched(1, &[&[1usize][..], &p.kernel].concat()).as_slice(), self.opts()).ck()?;
        let padded: Vec<usize> = (0..r).map(|a| sp[a] + p.pads_begin[a] + end[a]).collect();
        let y = per_sample(&q, |q| {
            let sz = q.size();
            let flat: Vec<i64> = [sz[0] * sz[1], 1].into_iter().chain(sz[2..].iter().copied()).collect();
            let y = self.conv_t(&q.f_reshape(flat.as_slice()).ck()?, &ones, &p.strides, &vec![1; r], &vec![0; r], &vec![0; r], 1, &padded)?;
            let full: Vec<i64> = [sz[0], sz[1]].into_iter().chain(padded.iter().map(|&d| d as i64)).collect();
            y.f_reshape(full.as_slice()).ck()
        })?;
        crop(&y, 2, &p.pads_begin, sp)
    }

    fn select(&self, t: &T, k: Option<usize>) -> Result<(T, T)> {
        let sz = t.0.size();
        if sz.len() != 2 {
            return Err(err(format!("neuron selection needs a (batch, outputs) tensor, got {sz:?}")));
        }
        let (n, kk) = (sz[0], sz[1]);
        let idx = match k {
            Some(j) if (j as i64) < kk => tch::Tensor::f_full([n, 1].as_slice(), j as i64, (Kind::Int64, self.device)).ck()?,
            Some(j) => return Err(Error::Target(format!("index {j} out of range for {kk} outputs"))),
            None => {
                // Every maximum, each with an equal share (`Numerics::row_max`).
                let (hot, m) = max_shares(&t.0, 1)?;
                return Ok((T(hot), T(m.f_reshape([n].as_slice()).ck()?)));
            }
        };
        let hot = t.0.f_zeros_like().ck()?.f_scatter_value(1, &idx, 1.0).ck()?;
        let vals = t.0.f_gather(1, &idx, false).ck()?.f_reshape([n].as_slice()).ck()?;
        Ok((T(hot), T(vals)))
    }

    fn gelu(x: &tch::Tensor) -> Result<tch::Tensor> {
        // 0.5·x·(1 + erf(x/√2)) with TensorFlow's erf, operation for operation as `relprop_core::graph::erf`.
        use relprop_core::graph::{ERF_DEN, ERF_NUM};
        let z = x.f_div_scalar(std::f32::consts::SQRT_2 as f64).ck()?.f_clamp(-4.0, 4.0).ck()?;
        let z2 = z.f_mul(&z).ck()?;
        let horner = |cs: &[f32]| -> Result<tch::Tensor> {
            let mut acc = z2.f_mul_scalar(cs[0] as f64).ck()?.f_add_scalar(cs[1] as f64).ck()?;
            for &c in &cs[2..] {
                acc = z2.f_mul(&acc).ck()?.f_add_scalar(c as f64).ck()?;
            }
            Ok(acc)
        };
        let erf = z.f_mul(&horner(&ERF_NUM)?).ck()?.f_div(&horner(&ERF_DEN)?).ck()?;
        x.f_mul_scalar(0.5).ck()?.f_mul(&erf.f_add_scalar(1.0).ck()?).ck()
    }
}

/// Along `axis` of `t`: each maximum's share `1/ties` (0 elsewhere) and the maxima (kept as a size-1 axis), as
/// TensorFlow's `reduce_max` gradient shares a selection.
fn max_shares(t: &tch::Tensor, axis: i64) -> Result<(tch::Tensor, tch::Tensor)> {
    let m = t.f_amax([axis].as_slice(), true).ck()?;
    let ind = t.f_eq_tensor(&m).ck()?.f_to_kind(Kind::Float).ck()?;
    let share = ind.f_div(&ind.f_sum_dim_intlist([axis].as_slice(), true, Kind::Float).ck()?).ck()?;
    Ok((share, m))
}

impl Numerics for TchModel {
    type T = T;

    fn input(&self, x: &Tensor) -> Result<T> {
        Ok(T(self.upload(&x.data, &x.shape)?))
    }

    fn output(&self, t: &T) -> Result<Tensor> {
        let t = t.0.f_to_kind(Kind::Float).ck()?;
        let n = t.numel();
        let mut data = vec![0f32; n];
        t.f_copy_data(&mut data, n).ck()?; // copies from any device, any strides
        Tensor::new(usizes(&t.size()), data)
    }

    fn linear(&self, node: usize, w: WeightMod, x: &T) -> Result<T> {
        let wt = self.weight(node, w)?;
        match &self.graph.nodes[node].op {
            Op::Dense(_) => Ok(T(per_sample(&x.0, |x| x.f_matmul(&wt).ck())?)),
            // A ConvTranspose: the transpose of the convolution it describes, onto this node's output extent.
            Op::Conv(c) if c.transposed.is_some() => {
                let out_sp = &self.graph.nodes[node].shape[1..];
                Ok(T(per_sample(&x.0, |x| self.conv_t(x, &wt, &c.strides, &c.dilations, &c.pads_begin, &c.pads_end, c.groups, out_sp))?))
            }
            Op::Conv(c) => {
                let y = per_sample(&x.0, |x| self.conv(x, &wt, &c.strides, &c.dilations, &c.pads_begin, &c.pads_end, c.groups))?;
                match &c.pointwise {
                    None => Ok(T(y)),
                    // A SeparableConv: the pointwise stage with its own substituted weight (one kernel to the rule).
                    Some(_) => {
                        let (pw, one, zero) = (self.pointwise(node, w)?, vec![1; c.rank()], vec![0; c.rank()]);
                        Ok(T(per_sample(&y, |y| self.conv(y, &pw, &one, &one, &zero, &zero, 1))?))
                    }
                }
            }
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    fn linear_t(&self, node: usize, w: WeightMod, s: &T) -> Result<T> {
        let n = &self.graph.nodes[node];
        let wt = self.weight(node, w)?;
        match &n.op {
            Op::Dense(_) => {
                let wt = wt.f_tr().ck()?;
                Ok(T(per_sample(&s.0, |s| s.f_matmul(&wt).ck())?))
            }
            Op::Conv(c) if c.transposed.is_some() => {
                Ok(T(per_sample(&s.0, |s| self.conv(s, &wt, &c.strides, &c.dilations, &c.pads_begin, &c.pads_end, c.groups))?))
            }
            Op::Conv(c) => {
                let in_shape = &self.graph.nodes[n.inputs[0]].shape;
                let s = match &c.pointwise {
                    None => s.0.shallow_clone(),
                    // A SeparableConv: back through the pointwise stage first (it keeps the output plane).
                    Some(_) => {
                        let (pw, one, zero) = (self.pointwise(node, w)?, vec![1; c.rank()], vec![0; c.rank()]);
                        per_sample(&s.0, |s| self.conv_t(s, &pw, &one, &one, &zero, &zero, 1, &n.shape[1..]))?
                    }
                };
                Ok(T(per_sample(&s, |s| self.conv_t(s, &wt, &c.strides, &c.dilations, &c.pads_begin, &c.pads_end, c.groups, &in_shape[1..]))?))
            }
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    fn add_bias(&self, node: usize, b: BiasMod, z: &T) -> Result<T> {
        match self.bias(node, b)? {
            None => Ok(z.clone()),
            Some(bias) => {
                if let Op::Dense(_) = self.graph.nodes[node].op {
                    if z.0.size().last() != bias.size().last() {
                        return Err(err(format!("{} bias values for the last axis of {:?}", bias.numel(), z.0.size())));
                    }
                }
                Ok(T(z.0.f_add(&bias).ck()?))
            }
        }
    }

    fn activation(&self, a: &Activation, z: &T) -> Result<T> {
        let x = &z.0;
        let pos = || x.f_ge(0.0).ck();
        let y = match *a {
            Activation::Relu => x.f_relu().ck()?,
            Activation::LeakyRelu(s) => x.f_where_self(&pos()?, &x.f_mul_scalar(s as f64).ck()?).ck()?,
            Activation::Elu(s) => {
                let neg = x.f_exp().ck()?.f_add_scalar(-1.0).ck()?.f_mul_scalar(s as f64).ck()?;
                x.f_where_self(&pos()?, &neg).ck()?
            }
            Activation::Sigmoid => x.f_neg().ck()?.f_exp().ck()?.f_add_scalar(1.0).ck()?.f_reciprocal().ck()?,
            Activation::Tanh => x.f_tanh().ck()?,
            Activation::Softplus => softplus(x)?,
            Activation::Selu => {
                let (al, sc) = (1.673_263_2_f32, 1.050_701_f32);
                let neg = x.f_exp().ck()?.f_add_scalar(-1.0).ck()?.f_mul_scalar((sc * al) as f64).ck()?;
                x.f_mul_scalar(sc as f64).ck()?.f_where_self(&x.f_gt(0.0).ck()?, &neg).ck()?
            }
            Activation::Gelu => Self::gelu(x)?,
            Activation::HardSigmoid { alpha, beta } => {
                x.f_mul_scalar(alpha as f64).ck()?.f_add_scalar(beta as f64).ck()?.f_clamp(0.0, 1.0).ck()?
            }
            Activation::Clip { min, max } => x.f_clamp_min(min as f64).ck()?.f_clamp_max(max as f64).ck()?,
            Activation::Swish => x.f_mul(&x.f_neg().ck()?.f_exp().ck()?.f_add_scalar(1.0).ck()?.f_reciprocal().ck()?).ck()?,
            Activation::HardSwish => x.f_mul(&x.f_mul_scalar(1.0 / 6.0).ck()?.f_add_scalar(0.5).ck()?.f_clamp(0.0, 1.0).ck()?).ck()?,
            Activation::Softsign => x.f_div(&x.f_abs().ck()?.f_add_scalar(1.0).ck()?).ck()?,
            Activation::Celu(a) => {
                let neg = x.f_div_scalar(a as f64).ck()?.f_exp().ck()?.f_add_scalar(-1.0).ck()?.f_mul_scalar(a as f64).ck()?;
                x.f_clamp_min(0.0).ck()?.f_add(&neg.f_clamp_max(0.0).ck()?).ck()?
            }
            Activation::LogSigmoid => softplus(&x.f_neg().ck()?)?.f_neg().ck()?,
            Activation::Exp => x.f_exp().ck()?,
            // A mask product, not `where` (slow on libtorch's CPU); 0·x is −0 for negative x, equal to 0.
            Activation::ThresholdedRelu(t) => x.f_mul(&x.f_gt(t as f64).ck()?.f_to_kind(Kind::Float).ck()?).ck()?,
        };
        Ok(T(y))
    }

    fn forward(&self, node: usize, inputs: &[&T]) -> Result<T> {
        let nd = &self.graph.nodes[node];
        let x = &inputs.first().ok_or_else(|| err("node without input"))?.0;
        let n = x.size()[0];
        Ok(T(match &nd.op {
            Op::MaxPool(p) => self.maxpool(p, x)?.0,
            Op::AvgPool(p) => self.avgpool(node, p, x)?,
            Op::GlobalAvgPool => {
                let f = x.f_flatten(2, -1).ck()?;
                let len = f.size()[2];
                per_sample(&f, |f| f.f_sum_dim_intlist([2i64].as_slice(), false, Kind::Float).ck())?.f_div_scalar(len as f64).ck()?
            }
            Op::GlobalMaxPool => x.f_flatten(2, -1).ck()?.f_amax([2i64].as_slice(), false).ck()?,
            Op::BatchNorm(bn) | Op::Affine(bn) => {
                let (scale, shift) = (
                    self.misc.get((node, "scale".into()), || self.channel_vec(&bn.scale_shift().0, x.dim()))?,
                    self.misc.get((node, "shift".into()), || self.channel_vec(&bn.scale_shift().1, x.dim()))?,
                );
                x.f_mul(&scale).ck()?.f_add(&shift).ck()?
            }
            Op::PRelu { slope } => {
                // max(x, 0) + slope · min(x, 0): the same values as `x < 0 ? slope·x : x` (libtorch's CPU `where`
                // is slow, see docs/benchmarks.md).
                let shape: Vec<usize> = std::iter::once(1).chain(slope.shape.iter().copied()).collect();
                let a = self.misc.get((node, "slope".into()), || self.upload(&slope.data, &shape))?;
                x.f_clamp_min(0.0).ck()?.f_add(&x.f_clamp_max(0.0).ck()?.f_mul(&a).ck()?).ck()?
            }
            Op::LayerNorm(l) => {
                let gamma = self.misc.get((node, "gamma".into()), || self.upload(&l.gamma.data, &l.gamma.shape))?;
                let beta = self.misc.get((node, "beta".into()), || self.upload(&l.beta.data, &l.beta.shape))?;
                let trailing: Vec<i64> = l.gamma.shape.iter().map(|&d| d as i64).collect();
                x.f_layer_norm(trailing.as_slice(), Some(&gamma), Some(&beta), l.epsilon as f64, false).ck()?
            }
            Op::Add | Op::Mean => {
                let mut acc = x.shallow_clone();
                for other in &inputs[1..] {
                    same_shape(inputs[0], other)?;
                    acc = acc.f_add(&other.0).ck()?;
                }
                if nd.op == Op::Mean {
                    acc = acc.f_div_scalar(inputs.len() as f64).ck()?;
                }
                acc
            }
            Op::Upsample { factors, mode: mode @ Interpolation::Linear(_) } => {
                // Along each axis: the axis last, times the interpolation matrix transposed, back.
                let mut y = x.shallow_clone();
                for (a, &f) in factors.iter().enumerate() {
                    let len = y.size()[a + 2] as usize;
                    let m = self.upload(&mode.matrix(len, f), &[len * f, len])?;
                    y = y.f_transpose(a as i64 + 2, -1).ck()?.f_matmul(&m.f_tr().ck()?).ck()?.f_transpose(a as i64 + 2, -1).ck()?;
                }
                y
            }
            Op::Upsample { factors, .. } => {
                let mut y = x.shallow_clone();
                for (a, &f) in factors.iter().enumerate() {
                    y = y.f_repeat_interleave_self_int(f as i64, Some(a as i64 + 2), None::<i64>).ck()?;
                }
                y
            }
            Op::Merge(m) => {
                let mut acc = x.shallow_clone();
                for other in &inputs[1..] {
                    acc = match m {
                        Merge::Multiply => acc.f_mul(&other.0),
                        Merge::Subtract => acc.f_sub(&other.0),
                        Merge::Maximum => acc.f_maximum(&other.0),
                        Merge::Minimum => acc.f_minimum(&other.0),
                    }
                    .ck()?;
                }
                acc
            }
            Op::Reshape => x.f_reshape(batched(n, &nd.shape).as_slice()).ck()?,
            Op::Transpose { perm } => x.f_permute(i64s(perm).as_slice()).ck()?,
            Op::Pad { begin, end, mode: PadMode::Constant(value) } => pad(x, begin, end, *value as f64)?,
            Op::Pad { begin, end, mode } => mirror_pad(x, begin, end, *mode == PadMode::Reflect)?,
            Op::Slice { begin, end } => {
                let len: Vec<usize> = begin.iter().zip(end).map(|(&b, &e)| e - b).collect();
                crop(x, 1, begin, &len)?
            }
            Op::Concat { axis } => {
                let ts: Vec<&tch::Tensor> = inputs.iter().map(|t| &t.0).collect();
                tch::Tensor::f_cat(&ts, (*axis + 1) as i64).ck()?
            }
            Op::Identity | Op::Activation(_) => x.shallow_clone(),
            op => return Err(err(format!("forward of {} is not a plain op", op.kind()))),
        }))
    }

    fn pool_t(&self, node: usize, s: &T) -> Result<T> {
        let nd = &self.graph.nodes[node];
        let in_shape = &self.graph.nodes[nd.inputs[0]].shape;
        match &nd.op {
            Op::AvgPool(p) => Ok(T(self.avgpool_t(node, p, &s.0, in_shape)?)),
            Op::GlobalAvgPool => {
                let inp: usize = in_shape[1..].iter().product();
                let sz = s.0.size();
                if sz.len() != 2 || sz[1] != in_shape[0] as i64 {
                    return Err(err(format!("global avgpool transpose: s {sz:?} must be (N, {})", in_shape[0])));
                }
                let view: Vec<i64> = sz.iter().copied().chain(std::iter::repeat_n(1, in_shape.len() - 1)).collect();
                let full = batched(sz[0], in_shape);
                let q = s.0.f_div_scalar(inp as f64).ck()?.f_reshape(view.as_slice()).ck()?;
                Ok(T(q.f_expand(full.as_slice(), false).ck()?.f_contiguous().ck()?))
            }
            op => Err(err(format!("{} is not an average pooling", op.kind()))),
        }
    }

    fn route(&self, node: usize, inputs: &[&T], r: &T) -> Result<Vec<T>> {
        let nd = &self.graph.nodes[node];
        let x = &inputs[0].0;
        let xs = x.size();
        Ok(match &nd.op {
            Op::Upsample { factors, mode: mode @ Interpolation::Linear(_) } => {
                // The gradient: the transposed interpolation along each axis.
                let mut g = r.0.shallow_clone();
                for (a, &f) in factors.iter().enumerate() {
                    let len = xs[a + 2] as usize;
                    let m = self.upload(&mode.matrix(len, f), &[len * f, len])?;
                    g = g.f_transpose(a as i64 + 2, -1).ck()?.f_matmul(&m).ck()?.f_transpose(a as i64 + 2, -1).ck()?;
                }
                vec![T(g.f_contiguous().ck()?)]
            }
            Op::Upsample { factors, .. } => {
                // The gradient: r viewed as (N, C, s1, f1, s2, f2, ..) summed over the block axes.
                let mut view = vec![xs[0], xs[1]];
                for (a, &f) in factors.iter().enumerate() {
                    view.extend([xs[a + 2], f as i64]);
                }
                let blocks: Vec<i64> = (0..factors.len() as i64).map(|a| 3 + 2 * a).collect();
                let rv = r.0.f_contiguous().ck()?.f_reshape(view.as_slice()).ck()?;
                vec![T(rv.f_sum_dim_intlist(blocks.as_slice(), false, None::<Kind>).ck()?)]
            }
            Op::Merge(m) => {
                let shape = r.0.size();
                let grads: Vec<tch::Tensor> = match m {
                    // ∂(Π x_j)/∂x_i = Π_{j≠i} x_j, multiplied in the order ndarray uses
                    Merge::Multiply => (0..inputs.len())
                        .map(|i| {
                            let mut g = r.0.shallow_clone();
                            for (_, xj) in inputs.iter().enumerate().filter(|&(j, _)| j != i) {
                                g = g.f_mul(&xj.0).ck()?;
                            }
                            Ok(g)
                        })
                        .collect::<Result<_>>()?,
                    Merge::Subtract => vec![r.0.shallow_clone(), r.0.f_neg().ck()?],
                    // All of R to the first input holding the extreme value (a tie keeps the running value).
                    Merge::Maximum | Merge::Minimum => {
                        let mut best = x.f_expand(shape.as_slice(), false).ck()?;
                        let mut winner = tch::Tensor::f_zeros(shape.as_slice(), (Kind::Int64, x.device())).ck()?;
                        for (i, xi) in inputs.iter().enumerate().skip(1) {
                            let v = xi.0.f_expand(shape.as_slice(), false).ck()?;
                            let take = if *m == Merge::Maximum { v.f_gt_tensor(&best) } else { v.f_lt_tensor(&best) }.ck()?;
                            best = v.f_where_self(&take, &best).ck()?;
                            winner = winner.f_masked_fill(&take, i as i64).ck()?;
                        }
                        (0..inputs.len())
                            .map(|i| r.0.f_where_self(&winner.f_eq(i as i64).ck()?, &r.0.f_zeros_like().ck()?).ck())
                            .collect::<Result<_>>()?
                    }
                };
                grads.into_iter().zip(inputs).map(|(g, x)| Ok(T(g.f_sum_to_size(x.0.size().as_slice()).ck()?))).collect::<Result<_>>()?
            }
            // TensorFlow's MaxPool3D gradient gives every tied maximum the whole relevance (docs/divergences.md).
            Op::MaxPool(p) if p.kernel.len() == 3 => vec![T(self.maxpool_ties_vjp(p, x, &r.0)?)],
            Op::MaxPool(p) => {
                let (_, idx, padded) = self.maxpool(p, x)?;
                let (n, c) = (xs[0], xs[1]);
                let plane: usize = padded.iter().product();
                let rf = r.0.f_reshape([n, c, -1].as_slice()).ck()?;
                let idx = idx.f_reshape([n, c, -1].as_slice()).ck()?;
                let acc = tch::Tensor::f_zeros([n, c, plane as i64].as_slice(), self.opts()).ck()?.f_scatter_add(2, &idx, &rf).ck()?;
                let full: Vec<i64> = [n, c].into_iter().chain(padded.iter().map(|&d| d as i64)).collect();
                vec![T(crop(&acc.f_reshape(full.as_slice()).ck()?, 2, &p.pads_begin, &usizes(&xs[2..]))?)]
            }
            Op::GlobalMaxPool => {
                // Every maximum of a plane gets an equal share, (1/ties)·r (TensorFlow's reduce_max gradient).
                let (share, _) = max_shares(&x.f_flatten(2, -1).ck()?, 2)?;
                let routed = share.f_mul(&r.0.f_unsqueeze(2).ck()?).ck()?;
                vec![T(routed.f_reshape(xs.as_slice()).ck()?)]
            }
            Op::Reshape => vec![T(r.0.f_reshape(xs.as_slice()).ck()?)],
            Op::Transpose { perm } => {
                let mut inv = vec![0i64; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i as i64;
                }
                vec![T(r.0.f_permute(inv.as_slice()).ck()?)]
            }
            Op::Pad { begin, mode: PadMode::Constant(_), .. } => vec![T(crop(&r.0, 1, begin, &usizes(&xs[1..]))?)],
            Op::Pad { begin, mode, .. } => vec![T(mirror_pad_vjp(&r.0, begin, &usizes(&xs[1..]), *mode == PadMode::Reflect)?)],
            Op::Slice { begin, end } => {
                let after: Vec<usize> = end.iter().zip(&xs[1..]).map(|(&e, &l)| l as usize - e).collect();
                vec![T(pad(&r.0, begin, &after, 0.0)?)]
            }
            Op::Mean => {
                let share = r.0.f_div_scalar(inputs.len() as f64).ck()?;
                (0..inputs.len()).map(|_| T(share.shallow_clone())).collect()
            }
            Op::Concat { axis } => {
                let mut start = 0;
                inputs
                    .iter()
                    .map(|t| {
                        let len = t.0.size()[axis + 1];
                        let part = r.0.f_narrow((axis + 1) as i64, start, len).ck()?;
                        start += len;
                        Ok(T(part))
                    })
                    .collect::<Result<_>>()?
            }
            op => return Err(err(format!("{} has no gradient routing", op.kind()))),
        })
    }

    fn add_channel(&self, t: &T, v: &[f32]) -> Result<T> {
        let sz = t.0.size();
        if sz.get(1) != Some(&(v.len() as i64)) {
            return Err(err(format!("{} values along axis 1 of {sz:?}", v.len())));
        }
        Ok(T(t.0.f_add(&self.channel_vec(v, sz.len())?).ck()?))
    }

    fn xmod(&self, x: &T, m: XMod) -> Result<T> {
        let t = &x.0;
        Ok(match m {
            XMod::X => x.clone(),
            XMod::Pos => T(t.f_relu().ck()?),
            XMod::Neg => T(t.f_clamp_max(0.0).ck()?),
            XMod::Sign => T(sgn1(t)?),
            // x − μ ≥ 0 exactly when x ≥ μ (a finite difference rounds to zero only when the two are equal).
            XMod::SignMu(mu) => T(sgn1(&t.f_sub_scalar(mu as f64).ck()?)?),
            XMod::Const(c) => T(t.f_full_like(c as f64).ck()?),
        })
    }

    fn add(&self, a: &T, b: &T) -> Result<T> {
        same_shape(a, b)?;
        Ok(T(a.0.f_add(&b.0).ck()?))
    }
    fn sub(&self, a: &T, b: &T) -> Result<T> {
        same_shape(a, b)?;
        Ok(T(a.0.f_sub(&b.0).ck()?))
    }
    fn mul(&self, a: &T, b: &T) -> Result<T> {
        same_shape(a, b)?;
        Ok(T(a.0.f_mul(&b.0).ck()?))
    }
    fn scale(&self, a: &T, c: f32) -> Result<T> {
        Ok(T(a.0.f_mul_scalar(c as f64).ck()?))
    }
    fn safe_div(&self, a: &T, b: &T) -> Result<T> {
        same_shape(a, b)?;
        // b + (1 − |sign b|)·1e-7: 1e-7 where b is ±0, b itself (plus an exact 0) elsewhere, NaN stays NaN; the
        // values of `where(b == 0, 1e-7, b)` without libtorch's slow CPU `where` (see `sign_ge0`).
        let zero = b.0.f_sign().ck()?.f_abs().ck()?.f_neg().ck()?.f_add_scalar(1.0).ck()?;
        let den = b.0.f_add(&zero.f_mul_scalar(KERAS_EPSILON as f64).ck()?).ck()?;
        Ok(T(a.0.f_div(&den).ck()?))
    }
    fn stabilize(&self, z: &T, eps: f32) -> Result<T> {
        Ok(T(z.0.f_add(&sgn1(&z.0)?.f_mul_scalar(eps as f64).ck()?).ck()?))
    }
    fn div_stabilized(&self, r: &T, z: &T, eps: f32) -> Result<T> {
        // z + eps·sgn(z) (±eps exactly; NaN's sign does not matter, the sum is NaN); the result is never 0
        // (|z ± eps| >= eps), so safe_div's zero test is left out.
        same_shape(r, z)?;
        let d = z.0.f_add(&sign_ge0(&z.0)?.f_mul_scalar(eps as f64).ck()?).ck()?;
        Ok(T(r.0.f_div(&d).ck()?))
    }
    fn batch_norm_rule(&self, x: &T, y: &T, r: &T, beta: &[f32], mean: &[f32]) -> Result<T> {
        // SPEC 2 (`composed::batch_norm_rule`, the same values) in fewer kernels: the stabilised denominator
        // `d ± 1e-7` is never zero, so SafeDivide's zero test drops out, as in `div_stabilized`.
        same_shape(x, y)?;
        same_shape(y, r)?;
        let neg = |v: &[f32]| v.iter().map(|a| -a).collect::<Vec<f32>>();
        let y_minus_beta = self.add_channel(y, &neg(beta))?;
        let x_minus_mu = self.add_channel(x, &neg(mean))?;
        let num = x.0.f_mul(&y_minus_beta.0).ck()?.f_mul(&r.0).ck()?;
        self.div_stabilized(&T(num), &T(x_minus_mu.0.f_mul(&y.0).ck()?), BN_EPSILON)
    }
    fn stabilize_rows(&self, z: &T, eps: &T) -> Result<T> {
        let e = rows_view(eps, z)?;
        Ok(T(z.0.f_add(&sgn1(&z.0)?.f_mul(&e).ck()?).ck()?))
    }
    fn std_rows(&self, x: &T, over_batch: bool) -> Result<T> {
        // In f64 with the ndarray backend's formula: sqrt(max(E[x²] − E[x]², 0)).
        let n = x.0.size()[0];
        let rows = if over_batch { 1 } else { n };
        let xd = x.0.f_to_kind(Kind::Double).ck()?.f_reshape([rows, -1].as_slice()).ck()?;
        let std = per_sample(&xd, |xd| {
            let m = xd.f_mean_dim([1i64].as_slice(), false, Kind::Double).ck()?;
            let m2 = xd.f_mul(xd).ck()?.f_mean_dim([1i64].as_slice(), false, Kind::Double).ck()?;
            m2.f_sub(&m.f_mul(&m).ck()?).ck()?.f_clamp_min(0.0).ck()?.f_sqrt().ck()?.f_to_kind(Kind::Float).ck()
        })?;
        Ok(T(if over_batch { std.f_expand([n].as_slice(), false).ck()?.f_contiguous().ck()? } else { std }))
    }
    fn scale_rows(&self, a: &T, v: &T) -> Result<T> {
        Ok(T(a.0.f_mul(&rows_view(v, a)?).ck()?))
    }
    fn row_max(&self, t: &T) -> Result<(T, T)> {
        self.select(t, None)
    }
    fn row_pick(&self, t: &T, k: usize) -> Result<(T, T)> {
        self.select(t, Some(k))
    }
}
