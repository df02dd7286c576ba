//! The benchmark model zoo: VGG16, ResNet50 and the golden test models, built through relprop's IR with seeded
//! random weights and written with relprop's own ONNX writer, so benchmarks need no download and no Python.
//!
//! * Layout: PyTorch-style NCHW input `(3, 224, 224)` and torchvision's layer structure (ResNet50 v1.5: the
//!   stride sits on the 3×3 conv of a bottleneck; BatchNorm after every conv, unfolded; ReLU as its own node).
//!   ONNX Runtime and relprop then run the same graph without layout Transposes.
//! * Weights: He-normal convolutions and dense layers (`N(0, 2/fan_in)`), so activations keep their scale
//!   through ReLU chains; small random biases. ResNet50's BatchNorm statistics are calibrated on the zoo's own
//!   input (a forward pass that sets each BN's running mean and variance to its input's per-channel moments), so
//!   every BN normalises and the residual sums stay bounded. Relevance is then finite and non-trivial.
//! * The small models take the architecture of `golden/onnx/model_{a,b}_opset13.onnx` (Keras layout, with
//!   tf2onnx's Transposes) and replace every weight with seeded random values.

use std::path::Path;
use std::sync::Arc;

use relprop_core::engine::Numerics;
use relprop_core::{Activation, BatchNorm, Conv, Dense, Error, Graph, Layout, Op, Pool, Result, Tensor};
use relprop_ndarray::NdModel;

use crate::rng::Rng;

/// Model names `relprop zoo` and the benchmarks know.
pub const MODELS: &[&str] = &["vgg16", "resnet50", "model_a", "model_b"];

/// The default seed of zoo weights and inputs.
pub const SEED: u64 = 2024;

/// Build a zoo model by name. `golden_dir` holds the golden ONNX files (for `model_a`, `model_b`).
pub fn build(name: &str, seed: u64, golden_dir: &Path) -> Result<Graph> {
    let g = match name {
        "vgg16" => vgg16(seed)?,
        "resnet50" => resnet50(seed)?,
        "model_a" | "model_b" => golden_random(&golden_dir.join(format!("{name}_opset13.onnx")), seed)?,
        other => {
            return Err(Error::Unknown { kind: "zoo model".into(), name: other.into(), hint: format!(" (known: {})", MODELS.join(", ")) })
        }
    };
    g.validate()?;
    Ok(g)
}

/// Build `name` and write it as ONNX to `path` (parent folders created).
pub fn write(name: &str, seed: u64, golden_dir: &Path, path: &Path) -> Result<Graph> {
    let g = build(name, seed, golden_dir)?;
    let bytes = relprop_onnx::encode_model(&relprop_onnx::graph_to_onnx(&g));
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), msg: e.to_string() };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Write to a temporary name first: a half-written file is never mistaken for a finished model.
    let tmp = path.with_extension("onnx.partial");
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(g)
}

/// A seeded benchmark input for `g`: `N(0, 1)` values, batch `n`.
pub fn input(g: &Graph, n: usize, seed: u64) -> Tensor {
    let shape: Vec<usize> = std::iter::once(n).chain(g.input_shape().iter().copied()).collect();
    let len = shape.iter().product();
    let mut rng = Rng::new(seed ^ 0x1217);
    Tensor { shape, data: rng.normals(len, 1.0) }
}

/// Number of weights (parameters) of a graph.
pub fn parameters(g: &Graph) -> usize {
    g.nodes.iter().flat_map(|n| relprop_core::graph::weights_of(&n.op)).map(|t| t.data.len()).sum()
}

/// Per-sample activation elements: the sum of every node's output size (input included).
pub fn activation_elements(g: &Graph) -> usize {
    g.nodes.iter().map(|n| n.shape.iter().product::<usize>()).sum()
}

fn he(rng: &mut Rng, shape: Vec<usize>, fan_in: usize) -> Arc<Tensor> {
    let len = shape.iter().product();
    Arc::new(Tensor { shape, data: rng.normals(len, (2.0 / fan_in as f32).sqrt()) })
}

fn small(rng: &mut Rng, len: usize, std: f32) -> Arc<Tensor> {
    Arc::new(Tensor { shape: vec![len], data: rng.normals(len, std) })
}

#[allow(clippy::too_many_arguments)]
fn conv_op(rng: &mut Rng, cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool, relu: bool) -> Op {
    Op::Conv(Conv {
        weight: he(rng, vec![cout, cin, k, k], cin * k * k),
        bias: bias.then(|| small(rng, cout, 0.01)),
        strides: vec![stride; 2],
        dilations: vec![1; 2],
        pads_begin: vec![pad; 2],
        pads_end: vec![pad; 2],
        groups: 1,
        activation: relu.then_some(Activation::Relu),
        pointwise: None,
        transposed: None,
    })
}

fn dense_op(rng: &mut Rng, fin: usize, fout: usize, relu: bool) -> Op {
    Op::Dense(Dense { weight: he(rng, vec![fin, fout], fin), bias: Some(small(rng, fout, 0.01)), activation: relu.then_some(Activation::Relu) })
}

fn pool(k: usize, s: usize, p: usize) -> Pool {
    Pool { kernel: vec![k; 2], strides: vec![s; 2], pads_begin: vec![p; 2], pads_end: vec![p; 2], count_include_pad: false, ceil_mode: false }
}

/// VGG16 (torchvision layout): 13 3×3 convs with ReLU, 5 max pools, 25088 → 4096 → 4096 → 1000 (no softmax);
/// 138.4 M parameters, 15.5 GMAC per image.
pub fn vgg16(seed: u64) -> Result<Graph> {
    let mut rng = Rng::new(seed);
    let mut g = Graph::new("input", vec![3, 224, 224]);
    g.layout = Layout::ChannelsFirst;
    let blocks: [&[usize]; 5] = [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];
    let (mut x, mut c) = (0, 3);
    for (b, widths) in blocks.iter().enumerate() {
        for (i, &w) in widths.iter().enumerate() {
            let name = format!("block{}_conv{}", b + 1, i + 1);
            x = g.push(&name, conv_op(&mut rng, c, w, 3, 1, 1, true, true), &[x])?;
            c = w;
        }
        x = g.push(&format!("block{}_pool", b + 1), Op::MaxPool(pool(2, 2, 0)), &[x])?;
    }
    x = g.push_reshape("flatten", "flatten", x, vec![512 * 7 * 7])?;
    x = g.push("fc1", dense_op(&mut rng, 512 * 7 * 7, 4096, true), &[x])?;
    x = g.push("fc2", dense_op(&mut rng, 4096, 4096, true), &[x])?;
    g.push("predictions", dense_op(&mut rng, 4096, 1000, false), &[x])?;
    Ok(g)
}

/// BatchNorm placeholder (identity until calibrated).
fn bn_op(rng: &mut Rng, c: usize, gamma: f32) -> Op {
    let gam: Vec<f32> = (0..c).map(|_| gamma * (1.0 + 0.1 * rng.uniform())).collect();
    Op::BatchNorm(BatchNorm {
        gamma: Arc::new(Tensor { shape: vec![c], data: gam }),
        beta: small(rng, c, 0.05),
        mean: Arc::new(Tensor { shape: vec![c], data: vec![0.0; c] }),
        var: Arc::new(Tensor { shape: vec![c], data: vec![1.0; c] }),
        epsilon: 1e-5,
    })
}

/// ResNet50 v1.5 (torchvision layout): 7×7/2 stem, bottlenecks [3, 4, 6, 3], BatchNorm after every conv,
/// residual Adds, global average pool, 2048 → 1000 (no softmax); 25.6 M parameters, 4.1 GMAC per image.
pub fn resnet50(seed: u64) -> Result<Graph> {
    let mut rng = Rng::new(seed);
    let mut g = Graph::new("input", vec![3, 224, 224]);
    g.layout = Layout::ChannelsFirst;
    let mut x = g.push("conv1", conv_op(&mut rng, 3, 64, 7, 2, 3, false, false), &[0])?;
    x = g.push("bn1", bn_op(&mut rng, 64, 1.0), &[x])?;
    x = g.push("relu", Op::Activation(Activation::Relu), &[x])?;
    x = g.push("maxpool", Op::MaxPool(pool(3, 2, 1)), &[x])?;
    let mut cin = 64;
    for (li, (&blocks, &width)) in [3usize, 4, 6, 3].iter().zip(&[64usize, 128, 256, 512]).enumerate() {
        for b in 0..blocks {
            let stride = if b == 0 && li > 0 { 2 } else { 1 };
            let p = format!("layer{}.{}", li + 1, b);
            let cout = width * 4;
            let mut y = g.push(&format!("{p}.conv1"), conv_op(&mut rng, cin, width, 1, 1, 0, false, false), &[x])?;
            y = g.push(&format!("{p}.bn1"), bn_op(&mut rng, width, 1.0), &[y])?;
            y = g.push(&format!("{p}.relu1"), Op::Activation(Activation::Relu), &[y])?;
            y = g.push(&format!("{p}.conv2"), conv_op(&mut rng, width, width, 3, stride, 1, false, false), &[y])?;
            y = g.push(&format!("{p}.bn2"), bn_op(&mut rng, width, 1.0), &[y])?;
            y = g.push(&format!("{p}.relu2"), Op::Activation(Activation::Relu), &[y])?;
            y = g.push(&format!("{p}.conv3"), conv_op(&mut rng, width, cout, 1, 1, 0, false, false), &[y])?;
            // A smaller scale on the branch's last BN keeps the residual sums from growing block by block.
            y = g.push(&format!("{p}.bn3"), bn_op(&mut rng, cout, 0.5), &[y])?;
            let short = if b == 0 {
                let s = g.push(&format!("{p}.downsample.0"), conv_op(&mut rng, cin, cout, 1, stride, 0, false, false), &[x])?;
                g.push(&format!("{p}.downsample.1"), bn_op(&mut rng, cout, 1.0), &[s])?
            } else {
                x
            };
            let s = g.push(&format!("{p}.add"), Op::Add, &[y, short])?;
            x = g.push(&format!("{p}.relu3"), Op::Activation(Activation::Relu), &[s])?;
            cin = cout;
        }
    }
    x = g.push("avgpool", Op::GlobalAvgPool, &[x])?;
    g.push("fc", dense_op(&mut rng, 2048, 1000, false), &[x])?;
    calibrate_batchnorm(&mut g, seed)?;
    Ok(g)
}

/// Set every BatchNorm's running mean and variance to the per-channel moments of its input on the zoo input
/// (batch 1), in one forward pass in topological order (each BN sees the already calibrated BNs before it).
pub fn calibrate_batchnorm(g: &mut Graph, seed: u64) -> Result<()> {
    let x = input(g, 1, seed);
    let model = NdModel::new(Arc::new(g.clone()))?;
    let live = g.live();
    let mut last_use = vec![0usize; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for &j in &n.inputs {
            last_use[j] = i;
        }
    }
    let mut out: Vec<Option<relprop_ndarray_t::T>> = vec![None; g.nodes.len()];
    out[0] = Some(model.input(&x)?);
    for i in 1..g.nodes.len() {
        if !live[i] {
            continue;
        }
        let ins: Vec<relprop_ndarray_t::T> = g.nodes[i].inputs.iter().map(|&j| out[j].clone().expect("topological order")).collect();
        let refs: Vec<&relprop_ndarray_t::T> = ins.iter().collect();
        let y = match g.nodes[i].op.clone() {
            Op::Conv(c) => {
                let l = model.linear(i, relprop_core::program::WeightMod::Plain, refs[0])?;
                let z = if c.bias.is_some() { model.add_bias(i, relprop_core::program::BiasMod::Plain, &l)? } else { l };
                match &c.activation {
                    Some(a) => model.activation(a, &z)?,
                    None => z,
                }
            }
            Op::Dense(d) => {
                let l = model.linear(i, relprop_core::program::WeightMod::Plain, refs[0])?;
                let z = if d.bias.is_some() { model.add_bias(i, relprop_core::program::BiasMod::Plain, &l)? } else { l };
                match &d.activation {
                    Some(a) => model.activation(a, &z)?,
                    None => z,
                }
            }
            Op::BatchNorm(mut bn) => {
                let t = model.output(refs[0])?;
                let c = t.shape[1];
                let plane: usize = t.shape[2..].iter().product();
                let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
                for ch in 0..c {
                    let (mut s, mut s2, mut cnt) = (0f64, 0f64, 0f64);
                    for smp in 0..t.shape[0] {
                        let base = (smp * c + ch) * plane;
                        for &v in &t.data[base..base + plane] {
                            s += v as f64;
                            s2 += (v as f64) * (v as f64);
                            cnt += 1.0;
                        }
                    }
                    let m = s / cnt;
                    mean[ch] = m as f32;
                    var[ch] = ((s2 / cnt - m * m).max(1e-6)) as f32;
                }
                bn.mean = Arc::new(Tensor { shape: vec![c], data: mean });
                bn.var = Arc::new(Tensor { shape: vec![c], data: var });
                let (scale, shift) = bn.scale_shift();
                let mut data = t.data;
                for smp in 0..t.shape[0] {
                    for ch in 0..c {
                        let base = (smp * c + ch) * plane;
                        for v in &mut data[base..base + plane] {
                            *v = *v * scale[ch] + shift[ch];
                        }
                    }
                }
                g.nodes[i].op = Op::BatchNorm(bn);
                model.input(&Tensor { shape: t.shape, data })?
            }
            Op::Activation(a) => model.activation(&a, refs[0])?,
            _ => model.forward(i, &refs)?,
        };
        out[i] = Some(y);
        // Free activations nobody reads any more (keeps calibration memory at a few layers).
        for &j in &g.nodes[i].inputs {
            if last_use[j] == i {
                out[j] = None;
            }
        }
    }
    Ok(())
}

/// The graph of a golden ONNX file with every weight replaced by seeded random values (same shapes).
pub fn golden_random(path: &Path, seed: u64) -> Result<Graph> {
    let mut g = relprop_onnx::load(path)?;
    let mut rng = Rng::new(seed);
    for n in &mut g.nodes {
        match &mut n.op {
            Op::Conv(c) => {
                let fan_in = c.weight.shape[1..].iter().product();
                c.weight = he(&mut rng, c.weight.shape.clone(), fan_in);
                if let Some(b) = &c.bias {
                    c.bias = Some(small(&mut rng, b.data.len(), 0.05));
                }
            }
            Op::Dense(d) => {
                d.weight = he(&mut rng, d.weight.shape.clone(), d.weight.shape[0]);
                if let Some(b) = &d.bias {
                    d.bias = Some(small(&mut rng, b.data.len(), 0.05));
                }
            }
            Op::BatchNorm(bn) => {
                let c = bn.gamma.data.len();
                bn.gamma = Arc::new(Tensor { shape: vec![c], data: (0..c).map(|_| 1.0 + 0.2 * rng.uniform()).collect() });
                bn.beta = small(&mut rng, c, 0.1);
                bn.mean = small(&mut rng, c, 0.1);
                bn.var = Arc::new(Tensor { shape: vec![c], data: (0..c).map(|_| 1.0 + 0.5 * rng.uniform()).collect() });
            }
            _ => {}
        }
    }
    Ok(g)
}

mod relprop_ndarray_t {
    /// The ndarray backend's tensor type.
    pub type T = <relprop_ndarray::NdModel as relprop_core::engine::Numerics>::T;
}
