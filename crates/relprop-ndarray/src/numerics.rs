//! [`Numerics`] on ndarray: the primitives the core engine needs, on `ArrayD<f32>` (shared through `Arc` so
//! the engine's clones are free).

use std::sync::Arc;

use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};
use rayon::prelude::*;
use relprop_core::engine::Numerics;
use relprop_core::graph::{Activation, Interpolation, Merge, Op, PadMode};
use relprop_core::program::{BiasMod, WeightMod, XMod, BN_EPSILON};
use relprop_core::rules::KERAS_EPSILON;
use relprop_core::{Error, Result, Tensor};

use crate::kernels;
use crate::model::NdModel;

/// A batched tensor; cloning shares the data.
pub type T = Arc<ArrayD<f32>>;

fn err(msg: impl Into<String>) -> Error {
    Error::Backend { backend: "ndarray".into(), msg: msg.into() }
}

fn arc(a: ArrayD<f32>) -> T {
    Arc::new(a)
}

/// Elements from which elementwise ops run on the rayon pool.
const PAR_LEN: usize = 1 << 16;
/// Smallest piece of a parallel elementwise op.
const PAR_CHUNK: usize = 1 << 14;

/// `f` over equal-length slices into a new vector, in chunks of [`PAR_CHUNK`] on the rayon pool for more than
/// [`PAR_LEN`] elements. Each chunk is one loop over zipped slices, which vectorises; rayon's `collect` of a
/// mapped parallel iterator did not (`div_stabilized` on one 256×56×56 tensor: about 0.6 → 0.14 ms).
fn map_slices<const K: usize>(ins: [&[f32]; K], f: impl Fn([f32; K]) -> f32 + Sync + Send) -> Vec<f32> {
    use std::mem::MaybeUninit;
    let n = ins.first().map_or(0, |s| s.len());
    debug_assert!(ins.iter().all(|s| s.len() == n));
    let mut out: Vec<f32> = Vec::with_capacity(n);
    let chunk = |start: usize, o: &mut [MaybeUninit<f32>]| {
        // Slices of exactly the chunk's length, so the loop's indexing needs no bounds checks.
        let parts = ins.map(|s| &s[start..start + o.len()]);
        for (i, o) in o.iter_mut().enumerate() {
            o.write(f(parts.map(|p| p[i])));
        }
    };
    let dst = &mut out.spare_capacity_mut()[..n];
    if n > PAR_LEN {
        dst.par_chunks_mut(PAR_CHUNK).enumerate().for_each(|(k, o)| chunk(k * PAR_CHUNK, o));
    } else {
        chunk(0, dst);
    }
    // SAFETY: `dst` is the first `n` slots of the capacity, and every one of them was written above.
    unsafe { out.set_len(n) };
    out
}

/// Elementwise binary op on equal shapes (parallel for large tensors). Contiguous tensors (the usual case) run
/// on plain slices ([`map_slices`]); others go through ndarray's `Zip`.
fn zip2(a: &T, b: &T, f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Result<T> {
    if a.shape() != b.shape() {
        return Err(err(format!("shape mismatch {:?} vs {:?}", a.shape(), b.shape())));
    }
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        let out = map_slices([x, y], |[p, q]| f(p, q));
        return Ok(arc(ArrayD::from_shape_vec(a.raw_dim(), out).map_err(|e| err(e.to_string()))?));
    }
    let out = if a.len() > PAR_LEN {
        Zip::from(&**a).and(&**b).par_map_collect(|&x, &y| f(x, y))
    } else {
        Zip::from(&**a).and(&**b).map_collect(|&x, &y| f(x, y))
    };
    Ok(arc(out))
}

fn map1(a: &T, f: impl Fn(f32) -> f32 + Sync + Send) -> T {
    if let Some(x) = a.as_slice() {
        return arc(ArrayD::from_shape_vec(a.raw_dim(), map_slices([x], |[v]| f(v))).expect("same shape"));
    }
    let out = if a.len() > PAR_LEN { Zip::from(&**a).par_map_collect(|&x| f(x)) } else { a.mapv(f) };
    arc(out)
}

/// Per-sample values broadcast over every other axis.
fn rows_op(a: &T, v: &T, f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Result<T> {
    let n = a.shape()[0];
    if v.len() != n {
        return Err(err(format!("row tensor of {} values for a batch of {n}", v.len())));
    }
    let (Some(x), Some(vs)) = (a.as_slice(), v.as_slice()) else {
        let mut out = (**a).clone();
        for (mut slab, &c) in out.axis_iter_mut(Axis(0)).zip(v.iter()) {
            slab.mapv_inplace(|x| f(x, c));
        }
        return Ok(arc(out));
    };
    // Row by row, each row in parallel chunks of plain loops (as `map_slices`).
    let per = x.len() / n.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(x.len());
    let dst = &mut out.spare_capacity_mut()[..x.len()];
    let chunk = |c: f32, o: &mut [std::mem::MaybeUninit<f32>], xs: &[f32]| {
        o.iter_mut().zip(xs).for_each(|(o, &xv)| {
            o.write(f(xv, c));
        });
    };
    if per > 0 {
        for ((o, xr), &c) in dst.chunks_mut(per).zip(x.chunks(per)).zip(vs) {
            if per > PAR_LEN {
                o.par_chunks_mut(PAR_CHUNK).zip(xr.par_chunks(PAR_CHUNK)).for_each(|(o, xs)| chunk(c, o, xs));
            } else {
                chunk(c, o, xr);
            }
        }
    }
    // SAFETY: the rows cover all `x.len()` slots (`per · n`), and every slot of every row was written.
    unsafe { out.set_len(x.len()) };
    Ok(arc(ArrayD::from_shape_vec(a.raw_dim(), out).map_err(|e| err(e.to_string()))?))
}

/// A conv kernel as the kernels read it: the plain weights borrowed, or a substituted copy.
enum Kernel<'a> {
    Borrowed(&'a [f32]),
    Shared(Arc<Vec<f32>>),
}

impl std::ops::Deref for Kernel<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Kernel::Borrowed(s) => s,
            Kernel::Shared(v) => v,
        }
    }
}

impl NdModel {
    /// Stage `stage` of conv node `node` (kernel `c`) with `w` substituted. A substituted kernel is built on
    /// first use and kept in [`crate::model::RecentKernels`] while the same layer asks: an α-β rule needs W⁺ and
    /// W⁻ twice each (the forward and the transposed product), and building each twice cost ResNet50 about 25 ms
    /// per substitution and explanation. Keeping W⁺ and W⁻ of every kernel instead would cost memory (118 MB on
    /// VGG16). Plain weights are borrowed.
    fn conv_weights<'a>(&self, node: usize, stage: usize, c: &'a relprop_core::graph::Conv, w: WeightMod) -> Kernel<'a> {
        if w == WeightMod::Plain {
            return Kernel::Borrowed(&c.weight.data);
        }
        Kernel::Shared(self.recent.get((node, stage, w), || {
            // One loop per substitution (the match outside the loop), so each vectorises.
            let src = &c.weight.data[..];
            match w {
                WeightMod::Pos => map_slices([src], |[v]| WeightMod::Pos.apply(v)),
                WeightMod::Neg => map_slices([src], |[v]| WeightMod::Neg.apply(v)),
                WeightMod::Square => map_slices([src], |[v]| WeightMod::Square.apply(v)),
                w => map_slices([src], |[v]| w.apply(v)),
            }
        }))
    }
}

/// `t` with axis `axis` mapped through the row-major matrix `m` (output × input), or with `transpose` through
/// its transpose (then `m` is read as rows × output); the axis' extent becomes `out`.
fn along_axis(t: ArrayD<f32>, axis: usize, m: &[f32], out: usize, transpose: bool) -> ArrayD<f32> {
    let last = t.ndim() - 1;
    let mut perm: Vec<usize> = (0..=last).collect();
    perm.swap(axis, last);
    let moved = t.permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
    let mut shape = moved.shape().to_vec();
    let len = shape[last];
    let rows = moved.into_shape_with_order((shape[..last].iter().product(), len)).expect("standard layout");
    let prod = if transpose {
        rows.dot(&ndarray::ArrayView2::from_shape((len, out), m).expect("matrix shape"))
    } else {
        rows.dot(&ndarray::ArrayView2::from_shape((out, len), m).expect("matrix shape").t())
    };
    shape[last] = out;
    let y = prod.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&shape)).expect("same size");
    // (swapping two axes is its own inverse)
    y.permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()
}

/// For nearest-neighbour upsampling of a plane of spatial shape `sp` by `factors`: the input position (flat, row
/// major) each output position reads, and the input plane's size.
fn upsample_index(sp: &[usize], factors: &[usize]) -> (Vec<usize>, usize) {
    let out: Vec<usize> = sp.iter().zip(factors).map(|(&d, &f)| d * f).collect();
    let src = (0..out.iter().product())
        .map(|mut k| {
            let (mut i, mut stride) = (0, 1);
            for a in (0..sp.len()).rev() {
                i += (k % out[a]) / factors[a] * stride;
                k /= out[a];
                stride *= sp[a];
            }
            i
        })
        .collect();
    (src, sp.iter().product())
}

/// `t` broadcast to `shape` (size-1 axes repeated), as a view.
fn broadcast<'a>(t: &'a T, shape: &[usize]) -> Result<ndarray::ArrayViewD<'a, f32>> {
    t.broadcast(IxDyn(shape)).ok_or_else(|| err(format!("{:?} does not broadcast to {shape:?}", t.shape())))
}

/// `g` summed over the axes where `shape` has 1 and `g` more: the gradient of a broadcast input.
fn sum_to(mut g: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    for (a, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[a] != 1 {
            g = g.sum_axis(Axis(a)).insert_axis(Axis(a));
        }
    }
    g
}

fn sgn1(z: f32) -> f32 {
    if z >= 0.0 { 1.0 } else { -1.0 }
}

impl NdModel {
    fn node_op(&self, node: usize) -> &Op {
        &self.graph.nodes[node].op
    }

    /// The batched shape `[N] + per-sample shape`.
    fn batched(n: usize, per: &[usize]) -> Vec<usize> {
        std::iter::once(n).chain(per.iter().copied()).collect()
    }

    /// The bias of kernel node `node` substituted per `b`, with the axis of `z` it runs along (the last for
    /// Dense, the channel axis 1 for Conv); None when the node has no bias.
    fn bias(&self, node: usize, b: BiasMod, z: &T) -> Result<Option<(Vec<f32>, usize)>> {
        let (bias, axis) = match self.node_op(node) {
            Op::Dense(d) => (d.bias.as_deref(), z.ndim() - 1),
            Op::Conv(c) => (c.bias.as_deref(), 1),
            op => return Err(err(format!("{} has no bias", op.kind()))),
        };
        Ok(bias.map(|t| (t.data.iter().map(|&v| b.apply(v)).collect(), axis)))
    }

    /// A dense layer's product with its substituted weights: `x · M(W)` or, with `transpose`, `s · M(W)ᵀ`,
    /// over the last axis. Small batches stream the original weights through the modifier (no copy);
    /// large ones multiply a cached substituted copy.
    fn dense(&self, node: usize, wm: WeightMod, x: &T, transpose: bool) -> Result<T> {
        let orig = self.weights.get(&self.graph, node, WeightMod::Plain)?;
        let (k, n) = (orig.shape[0], orig.shape[1]);
        let (inner, outer) = if transpose { (n, k) } else { (k, n) };
        let mut shape = x.shape().to_vec();
        if shape.last() != Some(&inner) {
            return Err(err(format!("dense input {shape:?} does not end in {inner}")));
        }
        let rows = x.len() / inner.max(1);
        let (w, wm) = if rows > kernels::STREAM_MAX_ROWS && wm != WeightMod::Plain {
            (self.weights.get(&self.graph, node, wm)?, WeightMod::Plain)
        } else {
            (orig, wm)
        };
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let y = if transpose {
            kernels::dense_transpose(xs, rows, n, &w.data, k, wm)
        } else {
            kernels::dense_forward(xs, rows, k, &w.data, n, wm)
        };
        *shape.last_mut().expect("checked") = outer;
        Ok(arc(ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| err(e.to_string()))?))
    }
}

impl Numerics for NdModel {
    type T = T;

    fn input(&self, x: &Tensor) -> Result<T> {
        Ok(arc(ArrayD::from_shape_vec(IxDyn(&x.shape), x.data.clone()).map_err(|e| err(e.to_string()))?))
    }

    fn output(&self, t: &T) -> Result<Tensor> {
        Tensor::new(t.shape().to_vec(), t.as_standard_layout().iter().copied().collect())
    }

    fn linear(&self, node: usize, w: WeightMod, x: &T) -> Result<T> {
        // `M · 0 = 0` exactly (weights are finite): the x⁻ terms of alpha-beta rules on post-ReLU inputs.
        // The scan stops at the first non-zero, so it costs nothing on ordinary inputs.
        if self.is_zero(x) && self.node_op(node).has_kernel() {
            let n = x.shape().first().copied().unwrap_or(0);
            return Ok(arc(ArrayD::zeros(IxDyn(&Self::batched(n, &self.graph.nodes[node].shape)))));
        }
        match self.node_op(node) {
            Op::Dense(_) => self.dense(node, w, x, false),
            // A ConvTranspose: the transpose of the convolution it describes, onto this node's output extent.
            Op::Conv(c) if c.transposed.is_some() => {
                Ok(arc(kernels::conv_transpose(&c.untransposed(), &self.conv_weights(node, 0, c, w), x.view(), &self.graph.nodes[node].shape)))
            }
            Op::Conv(c) if c.pointwise.is_none() => Ok(arc(kernels::conv_forward(c, &self.conv_weights(node, 0, c, w), x.view()))),
            Op::Conv(c) => {
                // A SeparableConv: each stage with its own substituted weight (SPEC: the rule sees one kernel).
                let mut y = x.clone();
                for (k, st) in c.stages().iter().enumerate() {
                    y = arc(kernels::conv_forward(st, &self.conv_weights(node, k, st, w), y.view()));
                }
                Ok(y)
            }
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    fn linear_t(&self, node: usize, w: WeightMod, s: &T) -> Result<T> {
        let n = &self.graph.nodes[node];
        match &n.op {
            Op::Dense(_) => self.dense(node, w, s, true),
            Op::Conv(c) if c.transposed.is_some() => Ok(arc(kernels::conv_forward(&c.untransposed(), &self.conv_weights(node, 0, c, w), s.view()))),
            Op::Conv(c) => {
                // Stage by stage in reverse; a stage's input shape is the layer input or the mid tensor
                // (the first stage's output channels on the output plane: the pointwise stage keeps the plane).
                let stages = c.stages();
                let in_shape = &self.graph.nodes[n.inputs[0]].shape;
                let mid: Vec<usize> = std::iter::once(c.weight.shape[0]).chain(n.shape[1..].iter().copied()).collect();
                let mut r = s.clone();
                for (k, st) in stages.iter().enumerate().rev() {
                    let shape = if k == 0 { in_shape } else { &mid };
                    r = arc(kernels::conv_transpose(st, &self.conv_weights(node, k, st, w), r.view(), shape));
                }
                Ok(r)
            }
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    fn add_bias(&self, node: usize, b: BiasMod, z: &T) -> Result<T> {
        match self.bias(node, b, z)? {
            Some((v, axis)) => Ok(arc(add_along(z, &v, axis, |s| s)?)),
            None => Ok(z.clone()),
        }
    }

    fn linear_bias(&self, node: usize, w: WeightMod, b: BiasMod, x: &T) -> Result<T> {
        let mut l = self.linear(node, w, x)?;
        if b == BiasMod::None {
            return Ok(l);
        }
        let Some((v, axis)) = self.bias(node, b, &l)? else { return Ok(l) };
        // The product is fresh (unshared): add the bias in place, the same sums as `add_bias`.
        match Arc::get_mut(&mut l) {
            Some(a) => add_along_in_place(a, &v, axis)?,
            None => l = arc(add_along(&l, &v, axis, |s| s)?),
        }
        Ok(l)
    }

    fn activation(&self, a: &Activation, z: &T) -> Result<T> {
        Ok(match a {
            // The common case as its own loop (vectorises); same values as `Activation::apply`.
            Activation::Relu => map1(z, |v| v.max(0.0)),
            a => {
                let a = a.clone();
                map1(z, move |v| a.apply(v))
            }
        })
    }

    fn forward(&self, node: usize, inputs: &[&T]) -> Result<T> {
        let nd = &self.graph.nodes[node];
        let x = inputs.first().ok_or_else(|| err("node without input"))?;
        let n = x.shape()[0];
        Ok(match &nd.op {
            Op::MaxPool(p) => arc(kernels::maxpool_forward(p, x.view()).0),
            Op::AvgPool(p) => arc(kernels::avgpool_forward(p, x.view())),
            Op::GlobalAvgPool => arc(kernels::global_avgpool_forward(x.view())),
            Op::GlobalMaxPool => arc(kernels::global_maxpool_forward(x.view())),
            Op::BatchNorm(bn) | Op::Affine(bn) => {
                let (scale, shift) = bn.scale_shift();
                let x = x.as_standard_layout();
                let xs = x.as_slice().expect("standard layout");
                let c = scale.len();
                if x.shape().get(1) != Some(&c) {
                    return Err(err(format!("batch norm of {c} channels on {:?}", x.shape())));
                }
                let inner: usize = x.shape()[2..].iter().product();
                // `v·s + t` per channel (no FMA: the same values as before, and as signxai's Keras).
                let out = per_plane(xs.len(), inner, |o, at, k| {
                    let (s, t) = (scale[k % c], shift[k % c]);
                    o.iter_mut().zip(&xs[at]).for_each(|(o, &v)| {
                        o.write(v * s + t);
                    });
                });
                let out = if inner == 0 { vec![0.0; xs.len()] } else { out };
                arc(ArrayD::from_shape_vec(x.raw_dim(), out).map_err(|e| err(e.to_string()))?)
            }
            Op::PRelu { slope } => {
                let shape: Vec<usize> = std::iter::once(1).chain(slope.shape.iter().copied()).collect();
                let a = ndarray::ArrayView::from_shape(IxDyn(&shape), &slope.data).map_err(|e| err(e.to_string()))?;
                let a = a.broadcast(x.raw_dim()).ok_or_else(|| err(format!("slope {:?} vs input {:?}", slope.shape, x.shape())))?;
                let f = |&v: &f32, &s: &f32| if v < 0.0 { s * v } else { v };
                arc(if x.len() > PAR_LEN { Zip::from(&***x).and(&a).par_map_collect(f) } else { Zip::from(&***x).and(&a).map_collect(f) })
            }
            Op::LayerNorm(l) => {
                let mut y = x.as_standard_layout().into_owned();
                let rows = y.as_slice_mut().expect("standard layout");
                let row = l.gamma.data.len();
                if rows.len() > PAR_LEN {
                    rows.par_chunks_mut(row).for_each(|r| l.normalize_row(r));
                } else {
                    rows.chunks_mut(row).for_each(|r| l.normalize_row(r));
                }
                arc(y)
            }
            Op::Add | Op::Mean => {
                // ((x₀ + x₁) + x₂) + …, each sum one parallel pass.
                let mut acc: T = (*x).clone();
                for other in &inputs[1..] {
                    acc = self.add(&acc, other)?;
                }
                if nd.op == Op::Mean {
                    // Keras Average: the sum, then one division (not a multiplication by 1/n)
                    let count = inputs.len() as f32;
                    acc = map1(&acc, move |v| v / count);
                }
                acc
            }
            Op::Reshape => arc(x.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&Self::batched(n, &nd.shape))).map_err(|e| err(e.to_string()))?),
            Op::Transpose { perm } => arc(x.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned()),
            Op::Pad { begin, mode: PadMode::Constant(value), .. } => arc(embed(x, IxDyn(&Self::batched(n, &nd.shape)), begin, *value)),
            Op::Pad { begin, mode, .. } => arc(mirror_pad(x, IxDyn(&Self::batched(n, &nd.shape)), begin, *mode)),
            Op::Slice { begin, end } => {
                let len: Vec<usize> = begin.iter().zip(end).map(|(&b, &e)| e - b).collect();
                arc(window(x, begin, &len))
            }
            Op::Concat { axis } => {
                let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
                arc(ndarray::concatenate(Axis(axis + 1), &views).map_err(|e| err(e.to_string()))?)
            }
            Op::Upsample { factors, mode: mode @ Interpolation::Linear(_) } => {
                let mut y: ArrayD<f32> = (***x).clone();
                for (a, &f) in factors.iter().enumerate() {
                    let len = x.shape()[a + 2];
                    y = along_axis(y, a + 2, &mode.matrix(len, f), len * f, false);
                }
                arc(y)
            }
            Op::Upsample { factors, .. } => {
                let (src, plane_in) = upsample_index(&x.shape()[2..], factors);
                let xs = x.as_standard_layout();
                let out: Vec<f32> = xs.as_slice().expect("standard layout").chunks(plane_in).flat_map(|p| src.iter().map(move |&i| p[i])).collect();
                arc(ArrayD::from_shape_vec(IxDyn(&Self::batched(n, &nd.shape)), out).map_err(|e| err(e.to_string()))?)
            }
            Op::Merge(m) => {
                let shape = Self::batched(n, &nd.shape);
                let mut acc = broadcast(x, &shape)?.to_owned();
                for other in &inputs[1..] {
                    Zip::from(&mut acc).and(&broadcast(other, &shape)?).for_each(|a, &b| *a = m.apply(*a, b));
                }
                arc(acc)
            }
            Op::Identity | Op::Activation(_) => (*x).clone(),
            op => return Err(err(format!("forward of {} is not a plain op", op.kind()))),
        })
    }

    fn pool_t(&self, node: usize, s: &T) -> Result<T> {
        let nd = &self.graph.nodes[node];
        let in_shape = &self.graph.nodes[nd.inputs[0]].shape;
        match &nd.op {
            Op::AvgPool(p) => Ok(arc(kernels::avgpool_transpose(p, s.view(), in_shape))),
            Op::GlobalAvgPool => Ok(arc(kernels::global_avgpool_transpose(s.view(), in_shape))),
            op => Err(err(format!("{} is not an average pooling", op.kind()))),
        }
    }

    fn route(&self, node: usize, inputs: &[&T], r: &T) -> Result<Vec<T>> {
        let nd = &self.graph.nodes[node];
        let x = inputs[0];
        let n = x.shape()[0];
        let in_shape = &self.graph.nodes[nd.inputs[0]].shape;
        Ok(match &nd.op {
            // TensorFlow's MaxPool3D gradient gives every tied maximum the whole relevance (docs/divergences.md).
            Op::MaxPool(p) if p.kernel.len() == 3 => vec![arc(kernels::maxpool_route_ties(p, x.view(), r.view()))],
            Op::MaxPool(p) => {
                let (_, idx) = kernels::maxpool_forward(p, x.view());
                vec![arc(kernels::maxpool_route(&idx, r.view(), in_shape))]
            }
            Op::GlobalMaxPool => vec![arc(kernels::global_maxpool_route(x.view(), r.view()))],
            Op::Reshape => vec![arc(r.as_standard_layout().into_owned().into_shape_with_order(IxDyn(x.shape())).map_err(|e| err(e.to_string()))?)],
            Op::Transpose { perm } => {
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                vec![arc(r.view().permuted_axes(IxDyn(&inv)).as_standard_layout().into_owned())]
            }
            // Pad and Slice are each other's gradient: a window out of r, or r placed into zeros.
            Op::Pad { begin, mode: PadMode::Constant(_), .. } => vec![arc(window(r, begin, &x.shape()[1..]))],
            Op::Pad { begin, mode, .. } => vec![arc(mirror_pad_vjp(r, begin, &x.shape()[1..], *mode))],
            Op::Slice { begin, .. } => vec![arc(embed(r, x.raw_dim(), begin, 0.0))],
            Op::Mean => {
                let count = inputs.len() as f32;
                vec![map1(r, |v| v / count); inputs.len()]
            }
            Op::Concat { axis } => {
                let mut start = 0;
                inputs
                    .iter()
                    .map(|t| {
                        let len = t.shape()[axis + 1];
                        let part = r.slice_axis(Axis(axis + 1), Slice::from(start..start + len)).to_owned();
                        start += len;
                        arc(part)
                    })
                    .collect()
            }
            Op::Upsample { factors, mode: mode @ Interpolation::Linear(_) } => {
                // The gradient: the transposed interpolation along each axis.
                let mut g = (**r).clone();
                for (a, &f) in factors.iter().enumerate() {
                    let len = x.shape()[a + 2];
                    g = along_axis(g, a + 2, &mode.matrix(len, f), len, true);
                }
                vec![arc(g)]
            }
            Op::Upsample { factors, .. } => {
                // The gradient: each input value gets the sum of its block.
                let (src, plane_in) = upsample_index(&x.shape()[2..], factors);
                let rs = r.as_standard_layout();
                let mut acc = vec![0f32; x.len()];
                for (a, rp) in acc.chunks_mut(plane_in).zip(rs.as_slice().expect("standard layout").chunks(src.len())) {
                    for (&i, &v) in src.iter().zip(rp) {
                        a[i] += v;
                    }
                }
                vec![arc(ArrayD::from_shape_vec(x.raw_dim(), acc).map_err(|e| err(e.to_string()))?)]
            }
            Op::Merge(m) => {
                let shape = r.shape().to_vec();
                let grads: Vec<ArrayD<f32>> = match m {
                    // ∂(Π x_j)/∂x_i = Π_{j≠i} x_j
                    Merge::Multiply => (0..inputs.len())
                        .map(|i| {
                            let mut g = (**r).clone();
                            for (_, xj) in inputs.iter().enumerate().filter(|&(j, _)| j != i) {
                                Zip::from(&mut g).and(&broadcast(xj, &shape)?).for_each(|g, &v| *g *= v);
                            }
                            Ok(g)
                        })
                        .collect::<Result<_>>()?,
                    Merge::Subtract => vec![(**r).clone(), r.mapv(|v| -v)],
                    // All of R to the first input holding the extreme value (TensorFlow's gradient of Keras'
                    // pairwise loop: a tie keeps the running value).
                    Merge::Maximum | Merge::Minimum => {
                        let mut best = broadcast(x, &shape)?.to_owned();
                        let mut winner = ArrayD::<usize>::zeros(IxDyn(&shape));
                        for (i, xi) in inputs.iter().enumerate().skip(1) {
                            Zip::from(&mut best).and(&mut winner).and(&broadcast(xi, &shape)?).for_each(|b, w, &v| {
                                if (*m == Merge::Maximum && v > *b) || (*m == Merge::Minimum && v < *b) {
                                    *b = v;
                                    *w = i;
                                }
                            });
                        }
                        (0..inputs.len())
                            .map(|i| Ok(Zip::from(&**r).and(&winner).map_collect(|&v, &w| if w == i { v } else { 0.0 })))
                            .collect::<Result<_>>()?
                    }
                };
                grads.into_iter().zip(inputs).map(|(g, x)| arc(sum_to(g, x.shape()))).collect()
            }
            op => return Err(err(format!("{} has no gradient routing (n={n})", op.kind()))),
        })
    }

    fn add_channel(&self, t: &T, v: &[f32]) -> Result<T> {
        Ok(arc(add_along(t, v, 1, |s| s)?))
    }

    fn xmod(&self, x: &T, m: XMod) -> Result<T> {
        Ok(match m {
            XMod::X => x.clone(),
            // (The engine itself takes a post-ReLU input as its own x⁺, through `nonnegative`.)
            XMod::Pos => map1(x, |v| if v > 0.0 { v } else { 0.0 }),
            XMod::Neg => map1(x, |v| if v < 0.0 { v } else { 0.0 }),
            XMod::Sign => map1(x, sgn1),
            XMod::SignMu(mu) => map1(x, move |v| if v >= mu { 1.0 } else { -1.0 }),
            XMod::Const(c) => arc(ArrayD::from_elem(x.raw_dim(), c)),
        })
    }

    fn add(&self, a: &T, b: &T) -> Result<T> {
        zip2(a, b, |x, y| x + y)
    }
    fn sub(&self, a: &T, b: &T) -> Result<T> {
        zip2(a, b, |x, y| x - y)
    }
    fn mul(&self, a: &T, b: &T) -> Result<T> {
        zip2(a, b, |x, y| x * y)
    }
    fn mul_owned(&self, a: &T, b: T) -> Result<T> {
        // In place when `b` is ours alone and both are contiguous alike; else the ordinary product.
        let mut b = match Arc::try_unwrap(b) {
            Ok(b) => b,
            Err(b) => return self.mul(a, &b),
        };
        match (a.as_slice(), a.shape() == b.shape()) {
            (Some(x), true) if b.is_standard_layout() => {
                let o = b.as_slice_mut().expect("standard layout");
                let mul = |o: &mut [f32], x: &[f32]| o.iter_mut().zip(x).for_each(|(o, &x)| *o *= x);
                if o.len() > PAR_LEN {
                    o.par_chunks_mut(PAR_CHUNK).zip(x.par_chunks(PAR_CHUNK)).for_each(|(o, x)| mul(o, x));
                } else {
                    mul(o, x);
                }
                Ok(arc(b))
            }
            _ => self.mul(a, &arc(b)),
        }
    }
    fn scale(&self, a: &T, c: f32) -> Result<T> {
        Ok(map1(a, move |x| x * c))
    }
    fn safe_div(&self, a: &T, b: &T) -> Result<T> {
        zip2(a, b, |x, y| x / (if y == 0.0 { KERAS_EPSILON } else { y }))
    }
    fn stabilize(&self, z: &T, eps: f32) -> Result<T> {
        Ok(map1(z, move |v| v + eps * sgn1(v)))
    }
    fn div_stabilized(&self, r: &T, z: &T, eps: f32) -> Result<T> {
        // `stabilize` then `safe_div`, the same operations per element, in one pass.
        zip2(r, z, move |x, v| {
            let d = v + eps * sgn1(v);
            x / (if d == 0.0 { KERAS_EPSILON } else { d })
        })
    }
    fn stabilize_rows(&self, z: &T, eps: &T) -> Result<T> {
        rows_op(z, eps, |v, e| v + e * sgn1(v))
    }
    fn std_rows(&self, x: &T, over_batch: bool) -> Result<T> {
        let n = x.shape()[0];
        // Population std in f64 from Σv and Σv², summed in parallel chunks.
        let std = |vals: &[f32]| -> f32 {
            let sums = |c: &[f32]| c.iter().fold((0f64, 0f64), |(s, s2), &v| (s + v as f64, s2 + (v as f64) * (v as f64)));
            let (s, s2) = if vals.len() > PAR_LEN {
                vals.par_chunks(PAR_CHUNK).map(sums).reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
            } else {
                sums(vals)
            };
            let c = (vals.len() as f64).max(1.0);
            let m = s / c;
            ((s2 / c - m * m).max(0.0)).sqrt() as f32
        };
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let v: Vec<f32> = if over_batch {
            vec![std(xs); n]
        } else {
            let per = xs.len() / n.max(1);
            (0..n).map(|k| std(&xs[k * per..(k + 1) * per])).collect()
        };
        Ok(arc(ArrayD::from_shape_vec(IxDyn(&[n]), v).map_err(|e| err(e.to_string()))?))
    }
    fn scale_rows(&self, a: &T, v: &T) -> Result<T> {
        rows_op(a, v, |x, c| x * c)
    }
    fn row_max(&self, t: &T) -> Result<(T, T)> {
        self.select(t, None)
    }
    fn row_pick(&self, t: &T, k: usize) -> Result<(T, T)> {
        self.select(t, Some(k))
    }
    fn is_zero(&self, t: &T) -> bool {
        t.iter().all(|&v| v == 0.0)
    }

    fn nonnegative(&self, t: &T) -> bool {
        match t.as_slice() {
            // Branch-free within a chunk (so it vectorises), stopping at the first chunk with a negative or NaN.
            Some(x) if x.len() > PAR_LEN => x.par_chunks(PAR_CHUNK).all(|c| c.iter().fold(true, |ok, &v| ok & (v >= 0.0))),
            Some(x) => x.chunks(1024).all(|c| c.iter().fold(true, |ok, &v| ok & (v >= 0.0))),
            None => t.iter().all(|&v| v >= 0.0),
        }
    }

    fn bias_activation(&self, node: usize, b: BiasMod, z: &T, act: Option<&Activation>) -> Result<T> {
        let (v, channel_axis) = match self.bias(node, b, z)? {
            Some(vb) if b != BiasMod::None => vb,
            _ => {
                let axis = if matches!(self.node_op(node), Op::Dense(_)) { z.ndim() - 1 } else { 1 };
                (vec![0.0; z.shape().get(axis).copied().unwrap_or(0)], axis)
            }
        };
        // One pass: `act(z + b)`, the same two operations per element as add_bias then activation.
        Ok(arc(match act {
            None => add_along(z, &v, channel_axis, |s| s)?,
            Some(Activation::Relu) => add_along(z, &v, channel_axis, |s| s.max(0.0))?,
            Some(a) => add_along(z, &v, channel_axis, |s| a.apply(s))?,
        }))
    }

    fn batch_norm_rule(&self, x: &T, y: &T, r: &T, beta: &[f32], mean: &[f32]) -> Result<T> {
        batch_norm_rule_then(x, y, r, beta, mean, None)
    }

    fn batch_norm_rule_then_divide(&self, x: &T, y: &T, r: &T, beta: &[f32], mean: &[f32], z: &T, eps: Option<f32>) -> Result<T> {
        batch_norm_rule_then(x, y, r, beta, mean, Some((z, eps)))
    }
}

/// A new vector of `n` values written by `f(plane, range, k)` for every (sample, channel `k`) plane of `inner`
/// values (`range`: its elements' indices; `f` must write each one), in parallel over planes for large tensors
/// with planes of at least 64 values.
fn per_plane(n: usize, inner: usize, f: impl Fn(&mut [std::mem::MaybeUninit<f32>], std::ops::Range<usize>, usize) + Sync) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(n);
    if inner > 0 {
        let dst = &mut out.spare_capacity_mut()[..n];
        let plane = |(k, o): (usize, &mut [std::mem::MaybeUninit<f32>])| f(o, k * inner..(k + 1) * inner, k);
        if n > PAR_LEN && inner >= 64 {
            dst.par_chunks_mut(inner).enumerate().for_each(plane);
        } else {
            dst.chunks_mut(inner).enumerate().for_each(plane);
        }
        // SAFETY: the planes cover the first `n` slots (`inner` divides `n`), and `f` writes every slot of its plane.
        unsafe { out.set_len(n) };
    }
    out
}

/// The BatchNorm rule, element by element, and with `divide = Some((z, ε))` the kernel layer's division of its
/// result by `z` in the same pass (`div_stabilized`, or `safe_div` without ε): the same operations as the
/// composed primitives, so the same values.
fn batch_norm_rule_then(x: &T, y: &T, r: &T, beta: &[f32], mean: &[f32], divide: Option<(&T, Option<f32>)>) -> Result<T> {
    let c = beta.len();
    // Relevance routed back through a Concat at batch > 1 is a strided view: copy what is not contiguous.
    let (x, y, r) = (x.as_standard_layout(), y.as_standard_layout(), r.as_standard_layout());
    let z = divide.map(|(z, _)| z.as_standard_layout());
    let [xs, ys, rs] = [&x, &y, &r].map(|t| t.as_slice().expect("standard layout"));
    let zs = z.as_ref().map(|z| z.as_slice().expect("standard layout"));
    if x.shape() != y.shape() || x.shape() != r.shape() || x.shape().get(1) != Some(&c) || mean.len() != c {
        return Err(err(format!("batch norm rule: shapes {:?} {:?} {:?} for {c} channels", x.shape(), y.shape(), r.shape())));
    }
    if let Some(z) = &z {
        if z.shape() != x.shape() {
            return Err(err(format!("batch norm rule: z of shape {:?} for {:?}", z.shape(), x.shape())));
        }
    }
    let inner: usize = x.shape()[2..].iter().product();
    if inner == 0 {
        return Ok(arc(ArrayD::from_shape_vec(x.raw_dim(), vec![0.0; xs.len()]).map_err(|e| err(e.to_string()))?));
    }
    // The default's operations, element by element: (x·(y + (−β)))·r / stab((x + (−μ))·y), SafeDivide; then
    // divided by z + ε·sgn(z) (or by z), SafeDivide. Each case is its own loop over zipped slices (no bounds
    // checks, no branch on the case), so it vectorises.
    #[inline(always)]
    fn bn(xv: f32, yv: f32, rv: f32, nb: f32, nm: f32) -> f32 {
        let num = (xv * (yv + nb)) * rv;
        let d = (xv + nm) * yv;
        let den = d + BN_EPSILON * sgn1(d);
        num / (if den == 0.0 { KERAS_EPSILON } else { den })
    }
    let eps = divide.and_then(|(_, e)| e);
    let out = per_plane(xs.len(), inner, |o, at, k| {
        let (nb, nm) = (-beta[k % c], -mean[k % c]);
        let it = o.iter_mut().zip(&xs[at.clone()]).zip(&ys[at.clone()]).zip(&rs[at.clone()]);
        match (zs, eps) {
            (None, _) => it.for_each(|(((o, &x), &y), &r)| {
                o.write(bn(x, y, r, nb, nm));
            }),
            (Some(zs), Some(e)) => it.zip(&zs[at]).for_each(|((((o, &x), &y), &r), &z)| {
                let d = z + e * sgn1(z);
                o.write(bn(x, y, r, nb, nm) / (if d == 0.0 { KERAS_EPSILON } else { d }));
            }),
            (Some(zs), None) => it.zip(&zs[at]).for_each(|((((o, &x), &y), &r), &z)| {
                o.write(bn(x, y, r, nb, nm) / (if z == 0.0 { KERAS_EPSILON } else { z }));
            }),
        }
    });
    Ok(arc(ArrayD::from_shape_vec(x.raw_dim(), out).map_err(|e| err(e.to_string()))?))
}

impl NdModel {
    fn select(&self, t: &T, k: Option<usize>) -> Result<(T, T)> {
        if t.ndim() != 2 {
            return Err(err(format!("neuron selection needs a (batch, outputs) tensor, got {:?}", t.shape())));
        }
        let (n, kk) = (t.shape()[0], t.shape()[1]);
        let mut hot = ArrayD::zeros(IxDyn(&[n, kk]));
        let mut vals = Vec::with_capacity(n);
        for (i, row) in t.axis_iter(Axis(0)).enumerate() {
            match k {
                Some(j) if j < kk => {
                    hot[[i, j]] = 1.0;
                    vals.push(row[j]);
                }
                Some(j) => return Err(Error::Target(format!("index {j} out of range for {kk} outputs"))),
                None => {
                    // Every maximum, each with an equal share (`Numerics::row_max`).
                    let (m, share) = kernels::max_and_share(row.iter());
                    for (j, &v) in row.iter().enumerate() {
                        if v == m {
                            hot[[i, j]] = share;
                        }
                    }
                    vals.push(m);
                }
            }
        }
        Ok((arc(hot), arc(ArrayD::from_shape_vec(IxDyn(&[n]), vals).map_err(|e| err(e.to_string()))?)))
    }
}

/// `f(t + v)` with `v` broadcast along `axis` (of the batched tensor).
/// The window `[begin, begin + len)` of every per-sample axis of `t` (axis 0, the batch, whole).
fn window(t: &ArrayD<f32>, begin: &[usize], len: &[usize]) -> ArrayD<f32> {
    let mut v = t.view();
    for (a, (&b, &l)) in begin.iter().zip(len).enumerate() {
        v.slice_axis_inplace(Axis(a + 1), Slice::from(b..b + l));
    }
    v.to_owned()
}

/// `t` placed at `begin` of the per-sample axes of a `shape` tensor filled with `fill`.
fn embed(t: &ArrayD<f32>, shape: IxDyn, begin: &[usize], fill: f32) -> ArrayD<f32> {
    let mut out = ArrayD::from_elem(shape, fill);
    let mut v = out.view_mut();
    for (a, &b) in begin.iter().enumerate() {
        v.slice_axis_inplace(Axis(a + 1), Slice::from(b..b + t.shape()[a + 1]));
    }
    v.assign(t);
    out
}

/// A reflect or edge Pad of `t` to `shape`: the interior placed, then axis by axis (the first per-sample axis
/// first, so corners mirror what the earlier axes filled) each padded position copies its source
/// ([`PadMode::copies`]).
fn mirror_pad(t: &ArrayD<f32>, shape: IxDyn, begin: &[usize], mode: PadMode) -> ArrayD<f32> {
    let mut out = embed(t, shape, begin, 0.0);
    for (a, &b) in begin.iter().enumerate() {
        for (i, j) in mode.copies(b, t.shape()[a + 1], out.shape()[a + 1]) {
            let src = out.index_axis(Axis(a + 1), j).to_owned();
            out.index_axis_mut(Axis(a + 1), i).assign(&src);
        }
    }
    out
}

/// The gradient of [`mirror_pad`] for `r` at its output: axis by axis, last first, each padded position's
/// relevance added onto the position it copied; then the interior.
fn mirror_pad_vjp(r: &ArrayD<f32>, begin: &[usize], in_shape: &[usize], mode: PadMode) -> ArrayD<f32> {
    let mut g = r.to_owned();
    for (a, &b) in begin.iter().enumerate().rev() {
        for (i, j) in mode.copies(b, in_shape[a], g.shape()[a + 1]) {
            let src = g.index_axis(Axis(a + 1), i).to_owned();
            let mut dst = g.index_axis_mut(Axis(a + 1), j);
            dst += &src;
        }
    }
    window(&g, begin, in_shape)
}

/// `t += v` along `axis` (the same sums as [`add_along`] without `f`).
fn add_along_in_place(t: &mut ArrayD<f32>, v: &[f32], axis: usize) -> Result<()> {
    if t.shape().get(axis) != Some(&v.len()) {
        return Err(err(format!("{} values along axis {axis} of {:?}", v.len(), t.shape())));
    }
    let inner: usize = t.shape()[axis + 1..].iter().product();
    let c = v.len();
    if inner == 0 || c == 0 {
        return Ok(());
    }
    let len = t.len();
    match t.as_slice_mut() {
        Some(x) => {
            let add = |(k, xs): (usize, &mut [f32])| xs.iter_mut().for_each(|x| *x += v[k % c]);
            if len > PAR_LEN && inner >= 64 {
                x.par_chunks_mut(inner).enumerate().for_each(add);
            } else {
                x.chunks_mut(inner).enumerate().for_each(add);
            }
        }
        None => {
            let mut shape = vec![1; t.ndim()];
            shape[axis] = c;
            let b = ndarray::ArrayView::from_shape(IxDyn(&shape), v).map_err(|e| err(e.to_string()))?;
            *t += &b;
        }
    }
    Ok(())
}

fn add_along(t: &T, v: &[f32], axis: usize, f: impl Fn(f32) -> f32 + Sync + Send) -> Result<ArrayD<f32>> {
    if t.shape().get(axis) != Some(&v.len()) {
        return Err(err(format!("{} values along axis {axis} of {:?}", v.len(), t.shape())));
    }
    // Contiguous: runs of `inner` values share one entry of `v` (same sums as the broadcast below).
    if let Some(x) = t.as_slice() {
        let inner: usize = t.shape()[axis + 1..].iter().product();
        let c = v.len();
        let out: Vec<f32> = if inner == 0 || c == 0 {
            Vec::new()
        } else {
            per_plane(x.len(), inner, |o, at, k| {
                let b = v[k % c];
                o.iter_mut().zip(&x[at]).for_each(|(o, &xv)| {
                    o.write(f(xv + b));
                });
            })
        };
        return ArrayD::from_shape_vec(t.raw_dim(), out).map_err(|e| err(e.to_string()));
    }
    let mut shape = vec![1; t.ndim()];
    shape[axis] = v.len();
    let b = ndarray::ArrayView::from_shape(IxDyn(&shape), v).map_err(|e| err(e.to_string()))?;
    Ok((&**t + &b).mapv_into(f))
}
