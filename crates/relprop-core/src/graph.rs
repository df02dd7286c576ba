//! The model IR: a DAG of layers with static per-sample shapes.
//!
//! Ops keep ONNX semantics (convolution, pooling and batch norm work channels-first on axis 1 of the batched
//! tensor; Dense works on the last axis), so a Keras export keeps its layout Transposes as ordinary nodes and
//! relevance comes back in the file's own input layout without any special casing: the backward pass of a
//! Transpose is its inverse permutation.
//!
//! Shapes in the IR never include the batch axis: `Node::shape` is the per-sample output shape. Nodes are stored
//! in topological order (`inputs` always point to earlier nodes), so a graph cannot hold a cycle.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Pointwise activation. All of them are the identity in LRP's backward pass (SPEC 2); they matter only for the
/// forward pass and for the top layer's output (SPEC 1.5).
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Sigmoid,
    Tanh,
    Softplus,
    Selu,
    Gelu,
    HardSigmoid { alpha: f32, beta: f32 },
    Clip { min: f32, max: f32 },
    /// `x · sigmoid(x)` (Keras `swish`, PyTorch `SiLU`; ONNX: a Sigmoid and a Mul).
    Swish,
    /// `x · clamp(x/6 + ½, 0, 1)` (ONNX HardSwish, PyTorch `Hardswish`).
    HardSwish,
    /// `x / (1 + |x|)` (ONNX Softsign, Keras `softsign`, PyTorch `Softsign`).
    Softsign,
    /// `max(0, x) + min(0, α·(exp(x/α) − 1))` (ONNX Celu, PyTorch `CELU`); α ≠ 0.
    Celu(f32),
    /// `log σ(x) = −softplus(−x)` (PyTorch `LogSigmoid`, exported as a Sigmoid and a Log).
    LogSigmoid,
    /// `eˣ` (ONNX Exp, Keras `exponential`).
    Exp,
    /// `x` where `x > θ`, else 0 (ONNX ThresholdedRelu, Keras ThresholdedReLU).
    ThresholdedRelu(f32),
}

impl Activation {
    /// Apply to one value.
    pub fn apply(&self, x: f32) -> f32 {
        match *self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => if x >= 0.0 { x } else { a * x },
            Activation::Elu(a) => if x >= 0.0 { x } else { a * (x.exp() - 1.0) },
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Softplus => softplus(x),
            Activation::Selu => {
                let (a, s) = (1.673_263_2_f32, 1.050_701_f32);
                if x > 0.0 { s * x } else { s * a * (x.exp() - 1.0) }
            }
            Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            // not f32::clamp, which panics on min > max or NaN bounds (rejected by validate anyway)
            Activation::Clip { min, max } => x.max(min).min(max),
            Activation::Swish => x * (1.0 / (1.0 + (-x).exp())),
            Activation::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            Activation::Softsign => x / (1.0 + x.abs()),
            Activation::Celu(a) => x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0),
            // The stable form (as PyTorch computes it), not log(σ(x)), which reaches −∞ below x ≈ −88.
            Activation::LogSigmoid => -softplus(-x),
            Activation::Exp => x.exp(),
            Activation::ThresholdedRelu(t) => if x > t { x } else { 0.0 },
        }
    }
}

/// `ln(1 + eˣ)`, `x` itself above 20 (where the two agree in f32).
fn softplus(x: f32) -> f32 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

/// TensorFlow's float32 `erf` (Eigen's `generic_fast_erf_float`): the input clamped to [−4, 4], then an odd
/// polynomial over an even one in `x²`. `ERF_NUM` holds the numerator's coefficients from `x¹²` down to `x⁰`
/// (it is multiplied by `x` last), `ERF_DEN` the denominator's from `x⁸` down, each for Horner's scheme with a
/// separate multiply and add (TensorFlow's CPU build has no FMA). With these operations in this order relprop's
/// GELU equals Keras' bit for bit (300 000 inputs over [−7, 7] checked against TF 2.12); the Abramowitz-Stegun
/// formula used before was off by up to 6e-7 in erf, enough to move an α2β1 map by 6.5e-4 through a GELU whose
/// inputs were far below zero (`cargo xtask diffcheck`, `gelu_dense4d`).
#[allow(clippy::excessive_precision)] // Eigen's literals, rounded to f32 by the compiler as by Eigen's
pub const ERF_NUM: [f32; 7] = [
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
];
#[allow(clippy::excessive_precision)]
pub const ERF_DEN: [f32; 5] =
    [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02];

/// [`ERF_NUM`]/[`ERF_DEN`]: TensorFlow's float32 erf.
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ERF_NUM[1..].iter().fold(ERF_NUM[0], |p, &c| x2 * p + c);
    let q = ERF_DEN[1..].iter().fold(ERF_DEN[0], |q, &c| x2 * q + c);
    (x * p) / q
}

/// A fully connected layer on the last axis: `y = x · W + b`, `W` of shape `(in, out)` (Keras layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub weight: Arc<Tensor>,
    pub bias: Option<Arc<Tensor>>,
    /// Activation fused into the layer (Keras `activation=`); identity in the backward pass.
    pub activation: Option<Activation>,
}

/// A 1-D or 2-D (or n-D) convolution, channels-first: weight `(out, in/groups, k1, .., kn)` (ONNX layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub weight: Arc<Tensor>,
    pub bias: Option<Arc<Tensor>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding before each spatial axis.
    pub pads_begin: Vec<usize>,
    /// Padding after each spatial axis (Keras "same" with an even kernel pads more at the end).
    pub pads_end: Vec<usize>,
    pub groups: usize,
    pub activation: Option<Activation>,
    /// A Keras SeparableConv1D/2D: after this (depthwise) convolution, a pointwise stage with weight
    /// `(out, mid, 1, .., 1)` mixes the channels; the bias and activation come after it. signxai explains the
    /// layer as one kernel and substitutes every weight tensor of it (W⁺ of both, W² of both, ...), so a rule's
    /// map here is `P_w ∘ D_w` and its transpose `D_wᵀ ∘ P_wᵀ`, never two layers with a rule each.
    pub pointwise: Option<Arc<Tensor>>,
    /// A ConvTranspose (Keras Conv2DTranspose), holding its output padding per spatial axis: the layer computes
    /// the transpose (vector-Jacobian product) of the convolution this struct describes, with the weight in
    /// ONNX ConvTranspose's layout `(in, out/groups, k1, ..)`. Output extent per axis:
    /// `stride·(i − 1) + dilation·(k − 1) + 1 − pad_begin − pad_end + output_padding`. signxai applies its rules to
    /// it like to any conv layer (`M_w` is the transposed map with substituted weights).
    pub transposed: Option<Vec<usize>>,
}

impl Conv {
    /// Number of spatial axes.
    pub fn rank(&self) -> usize {
        self.weight.shape.len() - 2
    }
    /// Kernel extent per spatial axis (of the first stage).
    pub fn kernel(&self) -> &[usize] {
        &self.weight.shape[2..]
    }
    /// Output channels of the layer (of the pointwise stage when there is one).
    pub fn out_channels(&self) -> usize {
        match (&self.pointwise, &self.transposed) {
            (Some(p), _) => p.shape[0],
            (None, Some(_)) => self.weight.shape[1] * self.groups,
            (None, None) => self.weight.shape[0],
        }
    }
    /// For a ConvTranspose: the convolution it is the transpose of (its weight read as `(out, in/groups, k..)`).
    pub fn untransposed(&self) -> Conv {
        Conv { transposed: None, ..self.clone() }
    }
    /// The layer as the convolutions it applies in order, each without bias and activation: itself, then its
    /// pointwise stage (a 1×1, stride-1, unpadded convolution). Backends run rules stage by stage with
    /// [`crate::program::WeightMod`] applied to each stage's weight.
    pub fn stages(&self) -> Vec<Conv> {
        let first = Conv { bias: None, activation: None, pointwise: None, transposed: None, ..self.clone() };
        let r = self.rank();
        let second = self.pointwise.as_ref().map(|p| Conv {
            weight: p.clone(),
            bias: None,
            strides: vec![1; r],
            dilations: vec![1; r],
            pads_begin: vec![0; r],
            pads_end: vec![0; r],
            groups: 1,
            activation: None,
            pointwise: None,
            transposed: None,
        });
        std::iter::once(first).chain(second).collect()
    }
}

/// Window geometry of a max or average pooling, channels-first.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
    /// Average pooling only: whether padded positions count in the divisor (Keras and ONNX default: no).
    pub count_include_pad: bool,
    /// ONNX `ceil_mode`.
    pub ceil_mode: bool,
}

/// Batch normalization at inference, channel axis 1: `y = gamma (x - mean) / sqrt(var + eps) + beta`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub gamma: Arc<Tensor>,
    pub beta: Arc<Tensor>,
    pub mean: Arc<Tensor>,
    pub var: Arc<Tensor>,
    pub epsilon: f32,
}

/// Layer normalization over the last `axes` per-sample axes (ONNX LayerNormalization, PyTorch `nn.LayerNorm`,
/// Keras LayerNormalization): `y = (x − mean) / sqrt(var + eps) · gamma + beta`, mean and (biased) variance over
/// those axes. `gamma` and `beta` hold one value per normalized element (their shape is the trailing shape).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    pub axes: usize,
    pub gamma: Arc<Tensor>,
    pub beta: Arc<Tensor>,
    pub epsilon: f32,
}

impl LayerNorm {
    /// One row of `gamma.len()` values normalized in place (the backends' shared reference: mean, then the mean
    /// of squared deviations, in f32).
    pub fn normalize_row(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + self.epsilon).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&self.gamma.data).zip(&self.beta.data) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

impl BatchNorm {
    /// Per-channel scale `gamma / sqrt(var + eps)` and shift `beta - scale * mean`.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> =
            self.gamma.data.iter().zip(&self.var.data).map(|(g, v)| g / (v + self.epsilon).sqrt()).collect();
        let shift = scale.iter().zip(&self.beta.data).zip(&self.mean.data).map(|((s, b), m)| b - s * m).collect();
        (scale, shift)
    }
}

/// An elementwise merge of computed tensors that is neither a sum nor a mean (Keras Multiply, Subtract, Maximum,
/// Minimum). signxai has no rule for these layers: relevance goes back by the gradient (SPEC 2), e.g. `R ⊙ b` to
/// `a` for `a ⊙ b`, and for Maximum all of `R` to the first input holding the maximum (TensorFlow's gradient of
/// Keras' pairwise loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Multiply,
    /// Exactly two inputs: the first minus the second.
    Subtract,
    Maximum,
    Minimum,
}

impl Merge {
    /// The merge of two values.
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Merge::Multiply => a * b,
            Merge::Subtract => a - b,
            Merge::Maximum => a.max(b),
            Merge::Minimum => a.min(b),
        }
    }
}

/// The output shape of inputs that broadcast against each other: equal ranks, each axis equal or 1 (Keras'
/// squeeze-and-excitation gate `(C, 1, 1)` against `(C, H, W)`).
pub fn broadcast_shape(ins: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
    let first = ins.first().ok_or("needs inputs")?;
    let mut out = first.to_vec();
    for s in &ins[1..] {
        if s.len() != out.len() {
            return Err(format!("inputs must have equal ranks, got {ins:?}"));
        }
        for (o, &d) in out.iter_mut().zip(s.iter()) {
            match (*o, d) {
                (a, b) if a == b => {}
                (1, b) => *o = b,
                (_, 1) => {}
                _ => return Err(format!("input shapes {ins:?} do not broadcast (each axis must be equal or 1)")),
            }
        }
    }
    Ok(out)
}

/// How [`Op::Upsample`] computes an output position from the input along each axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Output `o` reads input `⌊o / f⌋`.
    Nearest,
    /// Linear between the two inputs around the source coordinate, edges clamped (ONNX Resize `linear`, TF and
    /// PyTorch bilinear), the source coordinate per ONNX's `coordinate_transformation_mode`.
    Linear(Coordinates),
}

/// ONNX Resize's coordinate transformations that relprop supports for linear upsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinates {
    /// `(o + ½)/f − ½` (Keras bilinear UpSampling2D, PyTorch `align_corners=False`).
    HalfPixel,
    /// `o · (len − 1)/(f·len − 1)` (PyTorch `align_corners=True`).
    AlignCorners,
    /// `o / f`.
    Asymmetric,
}

impl Interpolation {
    /// The two input positions output `o` of an axis of `len` upsampled by `f` reads, with their weights
    /// (nearest: one position, weight 1, twice with weight 0). Every backend builds its maps from this.
    pub fn taps(self, len: usize, f: usize, o: usize) -> [(usize, f32); 2] {
        let Interpolation::Linear(c) = self else { return [(o / f, 1.0), (o / f, 0.0)] };
        let (of, ff, out) = (o as f64, f as f64, (len * f) as f64);
        let src = match c {
            Coordinates::HalfPixel => (of + 0.5) / ff - 0.5,
            Coordinates::AlignCorners if out > 1.0 => of * (len as f64 - 1.0) / (out - 1.0),
            Coordinates::AlignCorners => 0.0,
            Coordinates::Asymmetric => of / ff,
        };
        let lo = src.floor();
        let lambda = (src - lo) as f32;
        let at = |i: f64| i.clamp(0.0, len as f64 - 1.0) as usize;
        [(at(lo), 1.0 - lambda), (at(lo + 1.0), lambda)]
    }

    /// The map of one axis of `len` upsampled by `f` as a row-major `(len·f) × len` matrix.
    pub fn matrix(self, len: usize, f: usize) -> Vec<f32> {
        let mut m = vec![0f32; len * f * len];
        for o in 0..len * f {
            for (i, w) in self.taps(len, f, o) {
                m[o * len + i] += w;
            }
        }
        m
    }
}

/// A layer of the IR.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The model input (always node 0).
    Input,
    Dense(Dense),
    Conv(Conv),
    MaxPool(Pool),
    AvgPool(Pool),
    /// Mean over all spatial axes (channels-first), output `(C,)`.
    GlobalAvgPool,
    /// Max over all spatial axes (channels-first), output `(C,)`.
    GlobalMaxPool,
    BatchNorm(BatchNorm),
    /// A per-channel `x·a + b` that is not a BatchNormalization layer (Keras Rescaling and Normalization,
    /// arithmetic with a constant, PyTorch's in-model `(x − mean) / std`), held as a [`BatchNorm`] (γ = a, β = b,
    /// mean 0, variance 1). signxai passes relevance through such same-shape layers unchanged (SPEC 2), so its
    /// rule is the identity, not the BN rule.
    Affine(BatchNorm),
    /// Parametric ReLU (Keras PReLU, ONNX PRelu): `x` where `x >= 0`, else `slope · x`, with `slope` broadcast
    /// against the per-sample shape (same rank, each axis 1 or the input's). signxai passes relevance through it
    /// unchanged, like an activation layer.
    PRelu { slope: Arc<Tensor> },
    /// Layer normalization ([`LayerNorm`]). signxai passes relevance through it unchanged, as through every
    /// same-shape layer without a kernel (SPEC 2): its rule is the identity.
    LayerNorm(LayerNorm),
    /// Elementwise sum of any number of same-shaped inputs (residual connections).
    Add,
    /// Upsampling of the spatial axes (channels-first) by an integer factor per axis (Keras UpSampling1D/2D,
    /// ONNX Resize): nearest (every value repeated into a block) or linear along each axis ([`Interpolation`]).
    /// A linear map; signxai routes relevance through it by the gradient (nearest: each input gets the sum of its
    /// block).
    Upsample { factors: Vec<usize>, mode: Interpolation },
    /// Elementwise product, difference, maximum or minimum of broadcasting inputs ([`Merge`]).
    Merge(Merge),
    /// Elementwise mean of same-shaped inputs (Keras `Average`, ONNX `Mean`): their sum divided by their count.
    /// signxai routes relevance through it by the gradient (`R/n` to each input), not by the Add rule.
    Mean,
    /// Any row-major reshape to `Node::shape` (Flatten, Reshape, Squeeze, Unsqueeze).
    Reshape,
    /// Axis permutation of the batched tensor; `perm[0] == 0` (the batch axis stays first).
    Transpose { perm: Vec<usize> },
    /// Padding of the per-sample axes (Keras ZeroPadding, ONNX Pad, PyTorch's Reflection/ReplicationPad).
    Pad { begin: Vec<usize>, end: Vec<usize>, mode: PadMode },
    /// The window `[begin, end)` of every per-sample axis (Keras Cropping, ONNX Slice with step 1). A layer of
    /// its own for signxai's layer walks, which look through neither; relevance routes by the gradient.
    Slice { begin: Vec<usize>, end: Vec<usize> },
    /// Concatenation along a per-sample axis (0 = first axis after the batch).
    Concat { axis: usize },
    /// A standalone activation layer.
    Activation(Activation),
    /// Dropout, Identity and other no-ops at inference.
    Identity,
}

impl Op {
    /// Short name used in messages and plan listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Dense(_) => "Dense",
            Op::Conv(c) => match c.rank() {
                1 => "Conv1D",
                2 => "Conv2D",
                _ => "ConvND",
            },
            Op::MaxPool(_) => "MaxPool",
            Op::AvgPool(_) => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Affine(_) => "Affine",
            Op::LayerNorm(_) => "LayerNorm",
            Op::PRelu { .. } => "PRelu",
            Op::Add => "Add",
            Op::Mean => "Mean",
            Op::Merge(m) => match m {
                Merge::Multiply => "Multiply",
                Merge::Subtract => "Subtract",
                Merge::Maximum => "Maximum",
                Merge::Minimum => "Minimum",
            },
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Pad { .. } => "Pad",
            Op::Slice { .. } => "Slice",
            Op::Concat { .. } => "Concat",
            Op::Upsample { .. } => "Upsample",
            Op::Activation(_) => "Activation",
            Op::Identity => "Identity",
        }
    }
    /// Layers with a kernel: the ones the configurable LRP rules apply to (SPEC 2).
    pub fn has_kernel(&self) -> bool {
        matches!(self, Op::Dense(_) | Op::Conv(_))
    }
    /// Pure data movement that signxai's `is_input_layer` / `is_layer_at_idx` look through (SPEC 7:
    /// Flatten, Permute, Reshape, ZeroPadding; tf2onnx adds layout Transposes and Squeeze/Unsqueeze).
    pub fn is_layout(&self) -> bool {
        matches!(self, Op::Reshape | Op::Transpose { .. } | Op::Pad { .. })
    }

    /// Whether signxai's layer index (`until_layer_idx`) steps over this op without counting it: its
    /// `is_layer_at_idx` skips Flatten, Permute and Reshape, but not ZeroPadding (SPEC 7; verified against
    /// signxai on a ZeroPadding2D → Conv2D model), so a Pad counts as a layer there while `is_input_layer`
    /// skips it.
    pub fn skipped_by_layer_index(&self) -> bool {
        matches!(self, Op::Reshape | Op::Transpose { .. })
    }
}

/// How a [`Op::Pad`] fills its border (ONNX Pad's `mode`). Every mode pads axis by axis, the first per-sample axis
/// first, so corners take the mirrored or repeated values of the axes padded before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    /// This value (Keras ZeroPadding, ONNX "constant").
    Constant(f32),
    /// Mirrored about the edge, which is not repeated (ONNX "reflect", PyTorch ReflectionPad): `x₂ x₁ | x₀ x₁ x₂ …`.
    Reflect,
    /// The edge value repeated (ONNX "edge", PyTorch ReplicationPad): `x₀ x₀ | x₀ x₁ …`.
    Edge,
}

impl PadMode {
    /// ONNX Pad's `mode` string.
    pub fn onnx_name(self) -> &'static str {
        match self {
            PadMode::Constant(_) => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
        }
    }

    /// Why `pad` positions cannot go on a side of an axis of `len` values, when they cannot: a reflection needs
    /// more values than pads, a repeated edge one value.
    pub fn misfit(self, pad: usize, len: usize) -> Option<&'static str> {
        match self {
            PadMode::Reflect if pad > 0 && pad >= len => Some("a reflection needs more values than pads"),
            PadMode::Edge if pad > 0 && len == 0 => Some("a repeated edge needs a value"),
            _ => None,
        }
    }

    /// On an axis padded by `begin` around `len` values to `ext`: each padded output position with the output
    /// position of the value it copies (none for a constant).
    pub fn copies(self, begin: usize, len: usize, ext: usize) -> impl Iterator<Item = (usize, usize)> {
        (0..begin).chain(begin + len..ext).filter_map(move |i| self.source(i, begin, len).map(|j| (i, begin + j)))
    }

    /// For output position `i` of an axis padded by `begin` around `len` values: the input position it copies
    /// (`None`: the constant). `i` must lie in the padded extent.
    pub fn source(self, i: usize, begin: usize, len: usize) -> Option<usize> {
        let j = i as isize - begin as isize;
        let last = len as isize - 1;
        match self {
            _ if (0..=last).contains(&j) => Some(j as usize),
            PadMode::Constant(_) => None,
            PadMode::Reflect => Some(if j < 0 { -j } else { 2 * last - j } as usize),
            PadMode::Edge => Some(j.clamp(0, last) as usize),
        }
    }
}

/// One node: an op, its inputs (indices of earlier nodes) and its per-sample output shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Node name from the file (unique).
    pub name: String,
    /// The (Keras) layer this node belongs to; several ONNX nodes may share one (see crates/relprop-onnx/README.md).
    pub layer: String,
    pub op: Op,
    pub inputs: Vec<usize>,
    /// Per-sample output shape (no batch axis).
    pub shape: Vec<usize>,
}

/// Input layout of a model, as far as the importer can tell; only used for messages and heatmaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    ChannelsLast,
    ChannelsFirst,
    Unknown,
}

/// A single-input, single-output model.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Nodes in topological order; `nodes[0]` is the input.
    pub nodes: Vec<Node>,
    /// Index of the output node.
    pub output: usize,
    pub layout: Layout,
    /// The ONNX file's `producer_name` ("tf2onnx", "pytorch", ...; empty when unknown). Decides whether
    /// signxai's order of merge inputs applies ([`crate::arrival`]): signxai explains Keras models only.
    pub producer: String,
}

impl Graph {
    /// A graph holding only its input, of per-sample shape `shape`.
    pub fn new(input_name: &str, shape: Vec<usize>) -> Graph {
        let node = Node { name: input_name.into(), layer: input_name.into(), op: Op::Input, inputs: vec![], shape };
        Graph { nodes: vec![node], output: 0, layout: Layout::Unknown, producer: String::new() }
    }

    /// Append a node (its layer named like the node), infer its shape, make it the output. Returns its index.
    pub fn push(&mut self, name: &str, op: Op, inputs: &[usize]) -> Result<usize> {
        self.push_in_layer(name, name, op, inputs)
    }

    /// Append a node belonging to `layer`, infer its shape, make it the output. Returns its index.
    pub fn push_in_layer(&mut self, name: &str, layer: &str, op: Op, inputs: &[usize]) -> Result<usize> {
        let id = self.nodes.len();
        if let Some(&bad) = inputs.iter().find(|&&i| i >= id) {
            return Err(Error::node(name, op.kind(), format!("input {bad} is not an earlier node (cycle or bad order)")));
        }
        let in_shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.nodes[i].shape.as_slice()).collect();
        let shape = infer_shape(&op, &in_shapes).map_err(|msg| Error::node(name, op.kind(), msg))?;
        self.nodes.push(Node { name: name.into(), layer: layer.into(), op, inputs: inputs.to_vec(), shape });
        self.output = id;
        Ok(id)
    }

    /// The input node's per-sample shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[0].shape
    }

    /// The output node's per-sample shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.output].shape
    }

    /// For each node, the nodes that consume its output (in order, a consumer listed once per use).
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut c = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &j in &n.inputs {
                c[j].push(i);
            }
        }
        c
    }

    /// Nodes the output depends on (others are dead and skipped by backends).
    pub fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        live[self.output] = true;
        for i in (0..self.nodes.len()).rev() {
            if live[i] {
                for &j in &self.nodes[i].inputs {
                    live[j] = true;
                }
            }
        }
        live
    }

    /// Check the whole graph again (shapes, weights, parameters). Importers and builders call this once.
    pub fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() || self.nodes[0].op != Op::Input {
            return Err(Error::node("?", "Input", "graph must start with its input"));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if i > 0 && n.op == Op::Input {
                return Err(Error::node(&n.name, "Input", "only single-input models are supported (as in signxai)"));
            }
            if n.inputs.iter().any(|&j| j >= i) {
                return Err(Error::node(&n.name, n.op.kind(), "graph is not acyclic / not in topological order"));
            }
            let in_shapes: Vec<&[usize]> = n.inputs.iter().map(|&j| self.nodes[j].shape.as_slice()).collect();
            if n.op == Op::Reshape {
                if n.inputs.len() != 1 {
                    return Err(Error::node(&n.name, "Reshape", "expects 1 input"));
                }
                let (a, b): (usize, usize) = (n.shape.iter().product(), self.nodes[n.inputs[0]].shape.iter().product());
                if a != b {
                    return Err(Error::node(&n.name, "Reshape", "element count changes"));
                }
            } else if i > 0 {
                let s = infer_shape(&n.op, &in_shapes).map_err(|m| Error::node(&n.name, n.op.kind(), m))?;
                if s != n.shape {
                    return Err(Error::node(&n.name, n.op.kind(), format!("shape {:?} disagrees with inferred {:?}", n.shape, s)));
                }
            }
            for t in weights_of(&n.op) {
                if t.data.iter().any(|v| !v.is_finite()) {
                    return Err(Error::node(&n.name, n.op.kind(), "weights hold NaN or Inf"));
                }
            }
        }
        if self.output >= self.nodes.len() {
            return Err(Error::node("?", "?", "output index out of range"));
        }
        Ok(())
    }
}

impl Graph {
    /// Float32 values one sample's forward pass produces over all live nodes (input included), saturating.
    pub fn activation_elements(&self) -> u64 {
        // (a malformed graph with its output out of range counts every node)
        let live = if self.output < self.nodes.len() { self.live() } else { vec![true; self.nodes.len()] };
        self.nodes
            .iter()
            .zip(live)
            .filter(|(_, l)| *l)
            .map(|(n, _)| n.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add)
    }

    /// Refuse graphs beyond `limits`: more than `max_nodes` nodes, or one sample's activations above
    /// `max_bytes`.
    pub fn check_limits(&self, limits: &crate::limits::Limits) -> Result<()> {
        if self.nodes.len() > limits.max_nodes {
            return Err(Error::node("?", "graph", format!("{} nodes, more than the limit of {} (RELPROP_MAX_NODES)", self.nodes.len(), limits.max_nodes)));
        }
        limits
            .check_f32s(self.activation_elements(), "the activations of one sample")
            .map_err(|m| Error::node("?", "graph", m))
    }
}

/// All weight tensors of an op.
pub fn weights_of(op: &Op) -> Vec<&Tensor> {
    match op {
        Op::Dense(d) => std::iter::once(&*d.weight).chain(d.bias.as_deref()).collect(),
        Op::Conv(c) => std::iter::once(&*c.weight).chain(c.pointwise.as_deref()).chain(c.bias.as_deref()).collect(),
        Op::BatchNorm(b) | Op::Affine(b) => vec![&*b.gamma, &*b.beta, &*b.mean, &*b.var],
        Op::LayerNorm(l) => vec![&*l.gamma, &*l.beta],
        Op::PRelu { slope } => vec![&**slope],
        _ => vec![],
    }
}

/// The output shape of a ConvTranspose ([`Conv::transposed`]) on input `x` (`r` spatial axes, output padding
/// `op`): checked to be exactly the input of the convolution it transposes, so that the two maps are adjoint.
fn transposed_conv_shape(c: &Conv, x: &[usize], r: usize, op: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let (cin, opg) = (c.weight.shape[0], c.weight.shape[1]);
    if c.groups == 0 || x[0] != cin || cin % c.groups != 0 {
        return Err(format!("{} input channels do not fit ConvTranspose weight {:?} with {} groups", x[0], c.weight.shape, c.groups));
    }
    if c.pointwise.is_some() {
        return Err("a ConvTranspose has no pointwise stage".into());
    }
    check_geometry(r, &[("output_padding", op.len())])?;
    let o = opg * c.groups;
    if let Some(b) = &c.bias {
        if b.data.len() != o {
            return Err(format!("bias has {} values, expected {o}", b.data.len()));
        }
    }
    let mut s = vec![o];
    for a in 0..r {
        let (k, st, d) = (c.weight.shape[a + 2], c.strides[a], c.dilations[a]);
        if k == 0 || st == 0 || d == 0 || op[a] >= st.max(d) {
            return Err(format!("axis {a}: kernel {k}, stride {st}, dilation {d}, output_padding {} (must be below the stride)", op[a]));
        }
        let full = st.checked_mul(x[a + 1].saturating_sub(1)).and_then(|v| v.checked_add(d * (k - 1) + 1 + op[a])).ok_or("output too large")?;
        let out = full.checked_sub(c.pads_begin[a] + c.pads_end[a]).filter(|&v| v > 0).ok_or_else(|| format!("axis {a}: padding leaves no output"))?;
        // The convolution it transposes must map this output extent back onto the input extent.
        if window_out(out, k, st, d, c.pads_begin[a], c.pads_end[a], false)? != x[a + 1] {
            return Err(format!("axis {a}: output {out} does not map back onto input {} (output_padding too large)", x[a + 1]));
        }
        s.push(out);
    }
    Ok(s)
}

/// Output extent of a window op along one axis (ONNX formula).
pub fn window_out(len: usize, k: usize, stride: usize, dil: usize, pb: usize, pe: usize, ceil: bool) -> std::result::Result<usize, String> {
    if k == 0 || stride == 0 || dil == 0 {
        return Err(format!("kernel {k}, stride {stride} and dilation {dil} must be positive"));
    }
    let eff = dil.checked_mul(k - 1).and_then(|e| e.checked_add(1)).ok_or("window too large")?;
    let padded = len.checked_add(pb).and_then(|l| l.checked_add(pe)).ok_or("padding too large")?;
    if padded < eff {
        return Err(format!("window {eff} larger than padded input {padded}"));
    }
    let num = padded - eff;
    Ok(if ceil { num.div_ceil(stride) + 1 } else { num / stride + 1 })
}

fn check_geometry(rank: usize, parts: &[(&str, usize)]) -> std::result::Result<(), String> {
    for (name, len) in parts {
        if *len != rank {
            return Err(format!("{name} has {len} entries, expected {rank}"));
        }
    }
    Ok(())
}

/// Infer the per-sample output shape of `op` from its inputs' per-sample shapes. Errors are plain text; the
/// caller attaches the node.
pub fn infer_shape(op: &Op, ins: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
    let one = || -> std::result::Result<&[usize], String> {
        if ins.len() != 1 {
            return Err(format!("expects 1 input, got {}", ins.len()));
        }
        Ok(ins[0])
    };
    match op {
        Op::Input => Err("Input cannot be pushed".into()),
        Op::Dense(d) => {
            let x = one()?;
            let w = &d.weight.shape;
            if w.len() != 2 {
                return Err(format!("weight must be 2-D (in, out), got {w:?}"));
            }
            if x.last() != Some(&w[0]) {
                return Err(format!("input shape {x:?} does not end in the weight's {} inputs", w[0]));
            }
            if let Some(b) = &d.bias {
                if b.data.len() != w[1] {
                    return Err(format!("bias has {} values, expected {}", b.data.len(), w[1]));
                }
            }
            let mut s = x.to_vec();
            *s.last_mut().unwrap() = w[1];
            Ok(s)
        }
        Op::Conv(c) => {
            let x = one()?;
            let r = c.weight.shape.len().checked_sub(2).filter(|&r| r >= 1).ok_or("weight must be (out, in/groups, k...)")?;
            check_geometry(r, &[("strides", c.strides.len()), ("dilations", c.dilations.len()), ("pads_begin", c.pads_begin.len()), ("pads_end", c.pads_end.len())])?;
            if x.len() != r + 1 {
                return Err(format!("input {x:?} must be (channels, {r} spatial axes)"));
            }
            if let Some(op) = &c.transposed {
                return transposed_conv_shape(c, x, r, op);
            }
            let (o, ipg) = (c.weight.shape[0], c.weight.shape[1]);
            if c.groups == 0 || x[0] != ipg * c.groups || o % c.groups != 0 {
                return Err(format!("{} input channels do not fit weight {:?} with {} groups", x[0], c.weight.shape, c.groups));
            }
            if let Some(p) = &c.pointwise {
                let want: Vec<usize> = [c.out_channels(), o].into_iter().chain(std::iter::repeat_n(1, r)).collect();
                if p.shape.len() != r + 2 || p.shape[1..] != want[1..] {
                    return Err(format!("pointwise weight {:?} must be (out, {o}{})", p.shape, ", 1".repeat(r)));
                }
            }
            let o = c.out_channels();
            if let Some(b) = &c.bias {
                if b.data.len() != o {
                    return Err(format!("bias has {} values, expected {o}", b.data.len()));
                }
            }
            let mut s = vec![o];
            for a in 0..r {
                s.push(window_out(x[a + 1], c.weight.shape[a + 2], c.strides[a], c.dilations[a], c.pads_begin[a], c.pads_end[a], false)?);
            }
            Ok(s)
        }
        Op::MaxPool(p) | Op::AvgPool(p) => {
            let x = one()?;
            let r = p.kernel.len();
            check_geometry(r, &[("strides", p.strides.len()), ("pads_begin", p.pads_begin.len()), ("pads_end", p.pads_end.len())])?;
            if x.len() != r + 1 || r == 0 {
                return Err(format!("input {x:?} must be (channels, {r} spatial axes)"));
            }
            for a in 0..r {
                if p.pads_begin[a] >= p.kernel[a] || p.pads_end[a] >= p.kernel[a] {
                    return Err("padding must be smaller than the window".into());
                }
            }
            let mut s = vec![x[0]];
            for a in 0..r {
                s.push(window_out(x[a + 1], p.kernel[a], p.strides[a], 1, p.pads_begin[a], p.pads_end[a], p.ceil_mode)?);
            }
            Ok(s)
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool => {
            let x = one()?;
            if x.len() < 2 {
                return Err(format!("input {x:?} needs channels and at least one spatial axis"));
            }
            Ok(vec![x[0]])
        }
        Op::BatchNorm(b) | Op::Affine(b) => {
            let x = one()?;
            let c = *x.first().ok_or("input must have a channel axis")?;
            for (n, t) in [("gamma", &b.gamma), ("beta", &b.beta), ("mean", &b.mean), ("var", &b.var)] {
                if t.data.len() != c {
                    return Err(format!("{n} has {} values, expected {c} channels", t.data.len()));
                }
            }
            if b.var.data.iter().any(|v| v + b.epsilon < 0.0) {
                return Err("variance + epsilon is negative".into());
            }
            Ok(x.to_vec())
        }
        Op::LayerNorm(l) => {
            let x = one()?;
            if l.axes == 0 || l.axes > x.len() {
                return Err(format!("normalizes over the last {} axes of an input {x:?}", l.axes));
            }
            let trailing = &x[x.len() - l.axes..];
            for (n, t) in [("gamma", &l.gamma), ("beta", &l.beta)] {
                if t.shape != trailing || t.data.len() != trailing.iter().product::<usize>() {
                    return Err(format!("{n} has shape {:?}, expected {trailing:?} (the normalized axes of {x:?})", t.shape));
                }
            }
            if l.epsilon.is_nan() || l.epsilon < 0.0 {
                return Err(format!("epsilon {} must be >= 0", l.epsilon));
            }
            Ok(x.to_vec())
        }
        Op::Add | Op::Mean => {
            if ins.is_empty() {
                return Err(format!("{} needs at least one input", op.kind()));
            }
            if ins.iter().any(|s| *s != ins[0]) {
                return Err(format!("inputs must have equal shapes (no broadcasting), got {ins:?}"));
            }
            Ok(ins[0].to_vec())
        }
        Op::Merge(m) => {
            let n_ok = if *m == Merge::Subtract { ins.len() == 2 } else { ins.len() >= 2 };
            if !n_ok {
                return Err(format!("{} takes {} inputs, got {}", op.kind(), if *m == Merge::Subtract { "exactly 2" } else { "at least 2" }, ins.len()));
            }
            broadcast_shape(ins)
        }
        Op::Reshape => Err("Reshape needs a target shape: use Graph::push_reshape".into()),
        Op::Transpose { perm } => {
            let x = one()?;
            let mut seen = vec![false; perm.len()];
            if perm.len() != x.len() + 1 || perm[0] != 0 || perm.iter().any(|&p| p >= perm.len() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("perm {perm:?} must permute {} axes and keep the batch axis first", x.len() + 1));
            }
            Ok(perm[1..].iter().map(|&p| x[p - 1]).collect())
        }
        Op::Slice { begin, end } => {
            let x = one()?;
            check_geometry(x.len(), &[("slice begin", begin.len()), ("slice end", end.len())])?;
            x.iter()
                .zip(begin.iter().zip(end))
                .map(|(&s, (&b, &e))| if b <= e && e <= s { Ok(e - b) } else { Err(format!("slice [{b}, {e}) does not fit an axis of {s}")) })
                .collect()
        }
        Op::Pad { begin, end, mode } => {
            let x = one()?;
            check_geometry(x.len(), &[("pad begin", begin.len()), ("pad end", end.len())])?;
            if let Some((a, why)) = (0..x.len()).find_map(|a| mode.misfit(begin[a].max(end[a]), x[a]).map(|w| (a, w))) {
                return Err(format!("{mode:?} padding of {} on an axis of {}: {why}", begin[a].max(end[a]), x[a]));
            }
            x.iter().zip(begin.iter().zip(end)).map(|(s, (b, e))| s.checked_add(*b).and_then(|v| v.checked_add(*e)).ok_or_else(|| "padding too large".to_string())).collect()
        }
        Op::Upsample { factors, .. } => {
            let x = one()?;
            if x.len() < 2 || factors.len() != x.len() - 1 {
                return Err(format!("{} factors for input {x:?}: one per spatial axis (channels first)", factors.len()));
            }
            if factors.contains(&0) {
                return Err(format!("factors {factors:?} must be at least 1"));
            }
            std::iter::once(Some(x[0]))
                .chain(x[1..].iter().zip(factors).map(|(&d, &f)| d.checked_mul(f)))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| "upsampled shape too large".to_string())
        }
        Op::Concat { axis } => {
            let first = ins.first().ok_or("Concat needs inputs")?;
            if *axis >= first.len() {
                return Err(format!("axis {axis} out of range for {first:?}"));
            }
            let mut s = first.to_vec();
            s[*axis] = 0;
            for x in ins {
                if x.len() != first.len() || x.iter().enumerate().any(|(a, &d)| a != *axis && d != first[a]) {
                    return Err(format!("inputs {ins:?} disagree off axis {axis}"));
                }
                s[*axis] = s[*axis].checked_add(x[*axis]).ok_or("concatenated axis too large")?;
            }
            Ok(s)
        }
        Op::Activation(Activation::Clip { min, max }) if min.is_nan() || max.is_nan() || min > max => Err(format!("Clip bounds {min} > {max}")),
        Op::Activation(_) | Op::Identity => Ok(one()?.to_vec()),
        Op::PRelu { slope } => {
            let x = one()?;
            let fits = slope.shape.len() == x.len() && slope.shape.iter().zip(x).all(|(&s, &d)| s == 1 || s == d);
            if !fits {
                return Err(format!("slope of shape {:?} does not broadcast against {x:?}", slope.shape));
            }
            Ok(x.to_vec())
        }
    }
}

impl Graph {
    /// Append a reshape of `input` to the per-sample `shape` (same element count).
    pub fn push_reshape(&mut self, name: &str, layer: &str, input: usize, shape: Vec<usize>) -> Result<usize> {
        let id = self.nodes.len();
        if input >= id {
            return Err(Error::node(name, "Reshape", "input is not an earlier node"));
        }
        let from: usize = self.nodes[input].shape.iter().product();
        let to: usize = shape.iter().product();
        if from != to {
            return Err(Error::node(name, "Reshape", format!("cannot reshape {:?} into {:?}", self.nodes[input].shape, shape)));
        }
        self.nodes.push(Node { name: name.into(), layer: layer.into(), op: Op::Reshape, inputs: vec![input], shape });
        self.output = id;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::Activation;

    /// Keras' `gelu(x, approximate=False)` on TF 2.12 (CPU), as float32 bits: relprop's GELU gives the same bits,
    /// including the exact zeros far below 0 (where erf is clamped to −1).
    #[test]
    fn gelu_equals_keras_bit_for_bit() {
        let keras: [(f32, u32); 13] = [
            (-6.0, 0x80000000),
            (-5.5, 0x80000000),
            (-4.5, 0xb7828000),
            (-3.3, 0xbad11c99),
            (-2.0, 0xbd3a5e80),
            (-1.0, 0xbe227688),
            (-0.3, 0xbdeac157),
            (-1e-3, 0xba02f7a9),
            (0.0, 0x00000000),
            (1e-3, 0x3a032d35),
            (0.7, 0x3f07d712),
            (2.5, 0x401f01a7),
            (5.0, 0x409ffffc),
        ];
        for (x, bits) in keras {
            let y = Activation::Gelu.apply(x);
            assert_eq!(y.to_bits(), bits, "gelu({x}) = {y:e}, Keras {:e}", f32::from_bits(bits));
        }
    }
}
