//! Shared test helpers: golden paths, a tiny .npy reader and a naive reference forward pass over the IR.
#![allow(dead_code)]

use std::path::PathBuf;

use relprop_core::{Graph, Op, Tensor};

pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../golden").join(name)
}

pub const ONNX_FILES: [&str; 4] = ["model_a_opset13", "model_a_opset17", "model_b_opset13", "model_b_opset17"];

pub fn onnx_path(stem: &str) -> PathBuf {
    golden(&format!("onnx/{stem}.onnx"))
}

/// Read a little-endian float32 C-order .npy file (format 1.0/2.0) under `golden/`.
pub fn read_npy(name: &str) -> Tensor {
    read_npy_at(&golden(name))
}

/// [`read_npy`] of any path.
pub fn read_npy_at(path: &std::path::Path) -> Tensor {
    let name = path.display();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}: not an npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{name}: not <f4: {header}");
    assert!(header.contains("'fortran_order': False"), "{name}: fortran order");
    let shape_str = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_str.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data: Vec<f32> =
        bytes[start + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::new(shape, data).unwrap()
}

/// Permute the axes of a row-major tensor: output axis i is input axis perm[i].
pub fn permute(t: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let strides = strides(&t.shape);
    let mut out = Vec::with_capacity(t.data.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..t.data.len() {
        let off: usize = idx.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum();
        out.push(t.data[off]);
        for a in (0..shape.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    Tensor::new(shape, out).unwrap()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

/// Lift a 1-D channels-first op to 2-D: (C, L) → (C, 1, L).
fn as_2d(v: &[usize], fill: usize) -> [usize; 2] {
    match v {
        [a] => [fill, *a],
        [a, b] => [*a, *b],
        _ => panic!("reference forward supports 1-D and 2-D windows only"),
    }
}

/// A 1-D or 2-D convolution's sizes as the reference forward reads them (1-D as height 1): input, kernel, strides,
/// dilations, leading pads, output.
struct ConvGeometry {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl ConvGeometry {
    fn of(c: &relprop_core::Conv, input: &[usize], output: &[usize]) -> ConvGeometry {
        let ([h, w], [kh, kw]) = (as_2d(&input[1..], 1), as_2d(&c.weight.shape[2..], 1));
        let ([sh, sw], [dh, dw]) = (as_2d(&c.strides, 1), as_2d(&c.dilations, 1));
        let ([ph, pw], [oh, ow]) = (as_2d(&c.pads_begin, 0), as_2d(&output[1..], 1));
        ConvGeometry { h, w, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow }
    }
}

/// The value of `t` (broadcasting along its size-1 axes) at row-major position `k` of a tensor of shape `shape`
/// (same rank): `t` indexed with its own strides, a size-1 axis read at index 0.
fn broadcast_at(t: &Tensor, shape: &[usize], mut k: usize) -> f32 {
    let (mut off, mut stride) = (0, 1);
    for a in (0..shape.len()).rev() {
        let i = k % shape[a];
        k /= shape[a];
        if t.shape[a] != 1 {
            off += i * stride;
        }
        stride *= t.shape[a];
    }
    t.data[off]
}

/// Naive per-sample forward pass of the IR (one sample, no batch axis), for 1-D/2-D models.
pub fn forward(g: &Graph, x: &Tensor) -> Tensor {
    assert_eq!(x.shape, g.input_shape());
    let mut vals: Vec<Tensor> = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let ins: Vec<&Tensor> = n.inputs.iter().map(|&i| &vals[i]).collect();
        let out = match &n.op {
            Op::Input => x.clone(),
            Op::Transpose { perm } => permute(ins[0], &perm[1..].iter().map(|p| p - 1).collect::<Vec<_>>()),
            Op::Reshape => Tensor::new(n.shape.clone(), ins[0].data.clone()).unwrap(),
            Op::Identity => ins[0].clone(),
            Op::Slice { begin, end } => {
                let (src, shape) = (ins[0], &ins[0].shape);
                let mut data = Vec::new();
                let mut idx = vec![0usize; shape.len()];
                for (k, &v) in src.data.iter().enumerate() {
                    let mut rem = k;
                    for a in (0..shape.len()).rev() {
                        idx[a] = rem % shape[a];
                        rem /= shape[a];
                    }
                    if idx.iter().zip(begin.iter().zip(end)).all(|(&i, (&b, &e))| i >= b && i < e) {
                        data.push(v);
                    }
                }
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::Activation(a) => map(ins[0], |v| a.apply(v)),
            Op::PRelu { slope } => {
                let data = ins[0].data.iter().enumerate().map(|(k, &v)| if v < 0.0 { broadcast_at(slope, &n.shape, k) * v } else { v }).collect();
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::LayerNorm(l) => {
                // In f64, as the textbook writes it (an independent check of the backends' f32 rows).
                let row = l.gamma.data.len();
                let mut data = Vec::with_capacity(ins[0].data.len());
                for r in ins[0].data.chunks(row) {
                    let mean = r.iter().map(|&v| v as f64).sum::<f64>() / row as f64;
                    let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / row as f64;
                    for (k, &v) in r.iter().enumerate() {
                        let y = (v as f64 - mean) / (var + l.epsilon as f64).sqrt() * l.gamma.data[k] as f64 + l.beta.data[k] as f64;
                        data.push(y as f32);
                    }
                }
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::Add | Op::Mean => {
                let mut t = ins[0].clone();
                for o in &ins[1..] {
                    t.data.iter_mut().zip(&o.data).for_each(|(a, b)| *a += b);
                }
                if n.op == Op::Mean {
                    t.data.iter_mut().for_each(|v| *v /= ins.len() as f32);
                }
                t
            }
            Op::Upsample { factors, mode } => {
                // 1-D or 2-D: output (y, z) mixes the inputs its taps name on each axis.
                let xs = ins[0];
                let [h, w] = as_2d(&xs.shape[1..], 1);
                let [fy, fz] = as_2d(factors, 1);
                let mut data = Vec::new();
                for c in 0..xs.shape[0] {
                    for y in 0..h * fy {
                        for z in 0..w * fz {
                            let mut v = 0.0;
                            for (iy, wy) in mode.taps(h, fy, y) {
                                for (iz, wz) in mode.taps(w, fz, z) {
                                    v += wy * wz * xs.data[(c * h + iy) * w + iz];
                                }
                            }
                            data.push(v);
                        }
                    }
                }
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::Merge(m) => {
                let out_len: usize = n.shape.iter().product();
                let at = |t: &Tensor, k: usize| broadcast_at(t, &n.shape, k);
                let data = (0..out_len).map(|k| ins[1..].iter().fold(at(ins[0], k), |acc, t| m.apply(acc, at(t, k)))).collect();
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::Dense(d) => {
                let (k, m) = (d.weight.shape[0], d.weight.shape[1]);
                let rows = ins[0].data.len() / k;
                let mut out = vec![0f32; rows * m];
                for r in 0..rows {
                    for j in 0..m {
                        let mut s = d.bias.as_ref().map_or(0.0, |b| b.data[j]);
                        for i in 0..k {
                            s += ins[0].data[r * k + i] * d.weight.data[i * m + j];
                        }
                        out[r * m + j] = d.activation.as_ref().map_or(s, |a| a.apply(s));
                    }
                }
                Tensor::new(n.shape.clone(), out).unwrap()
            }
            Op::Conv(c) if c.transposed.is_some() => {
                // Scatter: input (ci, y, z) through tap (i, j) lands on output (y·sh + i·dh − ph, z·sw + j·dw − pw).
                let xs = ins[0];
                let ConvGeometry { h, w, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow } = ConvGeometry::of(c, &xs.shape, &n.shape);
                let (cin, opg) = (c.weight.shape[0], c.weight.shape[1]);
                let ipg = cin / c.groups;
                let mut out = vec![0f32; n.shape[0] * oh * ow];
                for ci in 0..cin {
                    for k in 0..opg {
                        let o = (ci / ipg) * opg + k;
                        for y in 0..h {
                            for z in 0..w {
                                for i in 0..kh {
                                    for j in 0..kw {
                                        let (yy, zz) = ((y * sh + i * dh) as isize - ph as isize, (z * sw + j * dw) as isize - pw as isize);
                                        if yy < 0 || zz < 0 || yy >= oh as isize || zz >= ow as isize {
                                            continue;
                                        }
                                        out[(o * oh + yy as usize) * ow + zz as usize] +=
                                            xs.data[(ci * h + y) * w + z] * c.weight.data[((ci * opg + k) * kh + i) * kw + j];
                                    }
                                }
                            }
                        }
                    }
                }
                for (o, plane) in out.chunks_mut(oh * ow).enumerate() {
                    for v in plane {
                        let b = *v + c.bias.as_ref().map_or(0.0, |b| b.data[o]);
                        *v = c.activation.as_ref().map_or(b, |a| a.apply(b));
                    }
                }
                Tensor::new(n.shape.clone(), out).unwrap()
            }
            Op::Conv(c) => {
                let xs = ins[0];
                let ConvGeometry { h, w, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow } = ConvGeometry::of(c, &xs.shape, &n.shape);
                let (m, cpg) = (c.weight.shape[0], c.weight.shape[1]);
                let opg = m / c.groups;
                let mut out = vec![0f32; m * oh * ow];
                // A SeparableConv: the first stage without bias and activation, then the pointwise mix.
                let first_bias = if c.pointwise.is_some() { None } else { c.bias.as_ref() };
                let first_act = if c.pointwise.is_some() { None } else { c.activation.as_ref() };
                for o in 0..m {
                    let g0 = (o / opg) * cpg;
                    for y in 0..oh {
                        for z in 0..ow {
                            let mut s = first_bias.map_or(0.0, |b| b.data[o]);
                            for ci in 0..cpg {
                                for i in 0..kh {
                                    for j in 0..kw {
                                        let (yy, zz) = ((y * sh + i * dh) as isize - ph as isize, (z * sw + j * dw) as isize - pw as isize);
                                        if yy < 0 || zz < 0 || yy >= h as isize || zz >= w as isize {
                                            continue;
                                        }
                                        let xv = xs.data[((g0 + ci) * h + yy as usize) * w + zz as usize];
                                        s += xv * c.weight.data[((o * cpg + ci) * kh + i) * kw + j];
                                    }
                                }
                            }
                            out[(o * oh + y) * ow + z] = first_act.map_or(s, |a| a.apply(s));
                        }
                    }
                }
                if let Some(p) = &c.pointwise {
                    let co = p.shape[0];
                    let mut mixed = vec![0f32; co * oh * ow];
                    for o in 0..co {
                        for k in 0..oh * ow {
                            let s: f32 = (0..m).map(|i| p.data[o * m + i] * out[i * oh * ow + k]).sum::<f32>() + c.bias.as_ref().map_or(0.0, |b| b.data[o]);
                            mixed[o * oh * ow + k] = c.activation.as_ref().map_or(s, |a| a.apply(s));
                        }
                    }
                    out = mixed;
                }
                Tensor::new(n.shape.clone(), out).unwrap()
            }
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let is_max = matches!(n.op, Op::MaxPool(_));
                let xs = ins[0];
                let ch = xs.shape[0];
                let [h, w] = as_2d(&xs.shape[1..], 1);
                let [kh, kw] = as_2d(&p.kernel, 1);
                let [sh, sw] = as_2d(&p.strides, 1);
                let [ph, pw] = as_2d(&p.pads_begin, 0);
                let [oh, ow] = as_2d(&n.shape[1..], 1);
                let mut out = vec![0f32; ch * oh * ow];
                for c in 0..ch {
                    for y in 0..oh {
                        for z in 0..ow {
                            let (mut best, mut sum, mut cnt) = (f32::NEG_INFINITY, 0f32, 0usize);
                            for i in 0..kh {
                                for j in 0..kw {
                                    let (yy, zz) = ((y * sh + i) as isize - ph as isize, (z * sw + j) as isize - pw as isize);
                                    if yy < 0 || zz < 0 || yy >= h as isize || zz >= w as isize {
                                        continue;
                                    }
                                    let v = xs.data[(c * h + yy as usize) * w + zz as usize];
                                    best = best.max(v);
                                    sum += v;
                                    cnt += 1;
                                }
                            }
                            let div = if p.count_include_pad { kh * kw } else { cnt };
                            out[(c * oh + y) * ow + z] = if is_max { best } else { sum / div as f32 };
                        }
                    }
                }
                Tensor::new(n.shape.clone(), out).unwrap()
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool => {
                let xs = ins[0];
                let per = xs.data.len() / xs.shape[0];
                let out = xs
                    .data
                    .chunks(per)
                    .map(|c| if n.op == Op::GlobalAvgPool { c.iter().sum::<f32>() / per as f32 } else { c.iter().cloned().fold(f32::MIN, f32::max) })
                    .collect();
                Tensor::new(n.shape.clone(), out).unwrap()
            }
            Op::BatchNorm(b) | Op::Affine(b) => {
                let (scale, shift) = b.scale_shift();
                let xs = ins[0];
                let per = xs.data.len() / xs.shape[0];
                let out = xs.data.iter().enumerate().map(|(i, v)| v * scale[i / per] + shift[i / per]).collect();
                Tensor::new(n.shape.clone(), out).unwrap()
            }
            Op::Concat { axis } => {
                // outer = product of the axes before `axis`; each input contributes its contiguous block per outer
                let outer: usize = ins[0].shape[..*axis].iter().product();
                let mut data = Vec::new();
                for o in 0..outer {
                    for t in &ins {
                        let block = t.data.len() / outer;
                        data.extend_from_slice(&t.data[o * block..(o + 1) * block]);
                    }
                }
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::Pad { begin, mode, .. } => {
                // Each output position reads, axis by axis, the input position its mode names (or the constant).
                let (x, value) = (ins[0], if let relprop_core::PadMode::Constant(v) = mode { *v } else { 0.0 });
                let (si, so) = (strides(&x.shape), strides(&n.shape));
                let out = (0..n.shape.iter().product())
                    .map(|k| {
                        let src: Option<usize> = (0..n.shape.len())
                            .map(|a| mode.source(k / so[a] % n.shape[a], begin[a], x.shape[a]).map(|j| j * si[a]))
                            .sum();
                        src.map_or(value, |i| x.data[i])
                    })
                    .collect();
                Tensor::new(n.shape.clone(), out).unwrap()
            }
        };
        assert_eq!(out.shape, n.shape, "node {}", n.name);
        vals.push(out);
    }
    vals.swap_remove(g.output)
}

fn map(t: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    Tensor { shape: t.shape.clone(), data: t.data.iter().map(|&v| f(v)).collect() }
}

/// The golden input sample (8, 8, 3), NHWC without the batch axis.
pub fn golden_input() -> Tensor {
    let x = read_npy("input_x.npy");
    Tensor::new(x.shape[1..].to_vec(), x.data).unwrap()
}

/// Structural summary of a graph: (layer, kind, inputs, shape) per node.
pub fn summary(g: &Graph) -> Vec<(String, &'static str, Vec<usize>, Vec<usize>)> {
    g.nodes.iter().map(|n| (n.layer.clone(), n.op.kind(), n.inputs.clone(), n.shape.clone())).collect()
}

// ---- hand-built models ---------------------------------------------------------------------------------------

use relprop_onnx::builder::{make_graph, make_model, make_tensor_i64, value_info};
use relprop_onnx::proto::{NodeProto, TensorProto, ValueInfoProto};

/// An output value with no declared type (so no shape check applies).
pub fn untyped(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: Some(name.into()), ..Default::default() }
}

/// Bytes of a single-input model: input "x" of per-sample shape `shape`, output `out`.
pub fn model_bytes(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, shape: &[usize], out: &str, opset: i64) -> Vec<u8> {
    let g = make_graph("test", nodes, vec![value_info("x", shape)], vec![untyped(out)], inits);
    relprop_onnx::encode_model(&make_model(g, opset))
}

pub fn import(bytes: &[u8]) -> relprop_core::Result<Graph> {
    relprop_onnx::decode(bytes, "test.onnx")
}

/// Import that must succeed.
pub fn ok(bytes: &[u8]) -> Graph {
    import(bytes).unwrap_or_else(|e| panic!("import failed: {e}"))
}

/// Import that must fail; returns the message.
pub fn err(bytes: &[u8]) -> String {
    match import(bytes) {
        Ok(g) => panic!("import unexpectedly succeeded: {:?}", summary(&g)),
        Err(e) => e.to_string(),
    }
}

/// Deterministic pseudo-random values in [-1, 1).
/// The exporter's logits for a fixture batch (`.npy` files) against the IR's forward pass, sample by sample;
/// `source` names the framework in the failure message.
pub fn check_logits(g: &Graph, input: &std::path::Path, logits: &std::path::Path, source: &str) {
    let x = read_npy_at(input);
    let want = read_npy_at(logits);
    let per: usize = x.shape[1..].iter().product();
    let classes = want.shape[1];
    for b in 0..x.shape[0] {
        let xb = Tensor::new(x.shape[1..].to_vec(), x.data[b * per..(b + 1) * per].to_vec()).unwrap();
        let y = forward(g, &xb);
        for (k, (a, e)) in y.data.iter().zip(&want.data[b * classes..(b + 1) * classes]).enumerate() {
            assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "sample {b} logit {k}: {a} vs {source} {e}");
        }
    }
}

/// A 1-D int64 initializer.
pub fn i64s(name: &str, v: &[i64]) -> TensorProto {
    make_tensor_i64(name, &[v.len()], v)
}

pub fn vals(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
