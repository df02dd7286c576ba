//! [`Numerics`] implemented symbolically: every primitive appends standard ONNX nodes to a graph instead of
//! computing. Running the shared engine (`relprop_core::engine::explain`) once on this builder emits the whole
//! explanation (forward pass, rules, top-layer selection) as one ONNX graph; see the crate README.
//!
//! Values are batched with a symbolic batch axis; [`Sym::shape`] is the per-sample shape (a row tensor `[N]` has
//! the per-sample shape `[]`). Reshapes keep the batch with `0` or `-1`, so the graph runs on any batch size.
//! The numerics copy relprop-ndarray's exactly where ONNX allows (same selection of first maxima, same
//! SafeDivide and sign conventions, std in f64); sums (MatMul, Conv) differ only in summation order.

use std::cell::RefCell;
use std::collections::HashMap;

use relprop_core::engine::{self, ExplainOptions, Numerics};
use relprop_core::graph::{Activation, Conv, Graph, Interpolation, Merge, Op, PadMode, Pool};
use relprop_core::program::{BiasMod, WeightMod, XMod};
use relprop_core::rules::KERAS_EPSILON;
use relprop_core::{Error, Result, RulePlan, Target, Tensor};
use relprop_onnx::builder::{self as ob, attr_float, attr_int, attr_ints};
use relprop_onnx::proto::tensor_proto::DataType;
use relprop_onnx::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// The ONNX opset the explanation graphs import (ScatterElements with `reduction="add"` needs 16).
pub const OPSET: i64 = 17;
/// Name of the model-output (logits) graph output.
pub const LOGITS: &str = "logits";
/// Name of the input-relevance graph output.
pub const RELEVANCE: &str = "relevance";

/// Name of the graph output holding the relevance that reached node `i` (with `keep_layers`).
pub fn layer_output_name(i: usize) -> String {
    format!("relevance_node{i}")
}

pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error::Backend { backend: "ort".into(), msg: msg.into() }
}

/// A symbolic batched value: its ONNX name and its per-sample shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sym {
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Default)]
struct State {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Pure nodes already emitted (op, inputs, attributes) → outputs: the engine's repeated requests (x⁺, W x,
    /// the same maximum) become one node.
    memo: HashMap<String, Vec<String>>,
    /// Initializers by content key.
    consts: HashMap<String, String>,
    next: usize,
    /// MaxPool node → its `Indices` output from the forward pass.
    pool_indices: HashMap<usize, String>,
    /// What `Numerics::output` was last asked for (the forward-only graph).
    last_output: Option<Sym>,
}

/// Emits ONNX nodes for the engine's primitives on one graph.
pub struct OnnxBuilder<'g> {
    g: &'g Graph,
    input_name: String,
    st: RefCell<State>,
}

fn i64s_of(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&d| d as i64).collect()
}

fn f32_key(dims: &[usize], data: &[f32]) -> String {
    let mut k = format!("f{dims:?}:");
    for v in data {
        k.push_str(&format!("{:x},", v.to_bits()));
    }
    k
}

impl<'g> OnnxBuilder<'g> {
    pub fn new(g: &'g Graph) -> Self {
        OnnxBuilder { g, input_name: g.nodes[0].name.clone(), st: RefCell::new(State::default()) }
    }

    fn fresh(&self, hint: &str) -> String {
        let mut st = self.st.borrow_mut();
        st.next += 1;
        format!("rp{}_{hint}", st.next)
    }

    /// Append a node with `n_out` outputs (deduplicated: the same op on the same inputs is emitted once).
    fn node_n(&self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, n_out: usize) -> Vec<String> {
        let key = format!("{op}|{inputs:?}|{attrs:?}|{n_out}");
        if let Some(outs) = self.st.borrow().memo.get(&key) {
            return outs.clone();
        }
        let outs: Vec<String> = (0..n_out).map(|_| self.fresh(op)).collect();
        let out_refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        let name = format!("{}_node", outs[0]);
        let node = ob::make_node(op, &name, inputs, &out_refs, attrs);
        let mut st = self.st.borrow_mut();
        st.nodes.push(node);
        st.memo.insert(key, outs.clone());
        outs
    }

    fn node(&self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.node_n(op, inputs, attrs, 1).remove(0)
    }

    /// A float32 initializer, shared by content.
    fn const_f32(&self, dims: &[usize], data: &[f32]) -> String {
        self.const_keyed(f32_key(dims, data), || ob::make_tensor_f32("", dims, data))
    }

    /// An int64 initializer, shared by content.
    fn const_i64(&self, dims: &[usize], data: &[i64]) -> String {
        self.const_keyed(format!("i{dims:?}:{data:?}"), || ob::make_tensor_i64("", dims, data))
    }

    fn const_keyed(&self, key: String, make: impl FnOnce() -> TensorProto) -> String {
        if let Some(n) = self.st.borrow().consts.get(&key) {
            return n.clone();
        }
        let name = self.fresh("const");
        let mut t = make();
        t.name = Some(name.clone());
        let mut st = self.st.borrow_mut();
        st.inits.push(t);
        st.consts.insert(key, name.clone());
        name
    }

    fn scalar(&self, v: f32) -> String {
        self.const_f32(&[], &[v])
    }

    fn i64_vec(&self, v: &[i64]) -> String {
        self.const_i64(&[v.len()], v)
    }

    fn sym(&self, name: String, shape: Vec<usize>) -> Sym {
        Sym { name, shape }
    }

    /// The gradient of a reflect or edge Pad, `g` at its output: axis by axis, last first (the forward pads the
    /// first axis first), the interior plus what each padded position copied, added back onto its source
    /// (reflected: the border slices flipped, one position in from the edge; edge: their sums on the edge).
    fn mirror_pad_vjp(&self, g: &str, begin: &[usize], end: &[usize], in_shape: &[usize], reflect: bool) -> String {
        let mut g = g.to_string();
        for a in (0..in_shape.len()).rev() {
            let (p, q, len) = (begin[a] as i64, end[a] as i64, in_shape[a] as i64);
            if p == 0 && q == 0 {
                continue;
            }
            let axis = self.i64_vec(&[a as i64 + 1]);
            let slice = |from: i64, to: i64, step: i64| {
                let (f, t, s) = (self.i64_vec(&[from]), self.i64_vec(&[to]), self.i64_vec(&[step]));
                self.node("Slice", &[&g, &f, &t, &axis, &s], vec![])
            };
            // `part` (extent `n` on this axis) placed at `at` in a zero tensor of the axis' input extent.
            let place = |part: String, at: i64, n: i64| {
                let mut pads = vec![0i64; 2 * (in_shape.len() + 1)];
                pads[a + 1] = at;
                pads[in_shape.len() + 2 + a] = len - at - n;
                self.node("Pad", &[&part, &self.i64_vec(&pads)], vec![ob::attr_string("mode", "constant")])
            };
            let mut sum = slice(p, p + len, 1);
            let sums = |s: String| self.node("ReduceSum", &[&s, &axis], vec![attr_int("keepdims", 1)]);
            if p > 0 {
                let part = if reflect { place(slice(p - 1, -i64::MAX, -1), 1, p) } else { place(sums(slice(0, p, 1)), 0, 1) };
                sum = self.node("Add", &[&sum, &part], vec![]);
            }
            if q > 0 {
                let part = if reflect {
                    place(slice(p + len + q - 1, p + len - 1, -1), len - 1 - q, q)
                } else {
                    place(sums(slice(p + len, p + len + q, 1)), len - 1, 1)
                };
                sum = self.node("Add", &[&sum, &part], vec![]);
            }
            g = sum;
        }
        g
    }

    /// The relevance through a max pooling as TensorFlow's MaxPool3D gradient routes it: per kernel offset, a
    /// strided Slice of the (−∞-)padded input holds that offset of every window; where it equals the window's
    /// maximum, the window's relevance `r` goes back to that input position through a stride-`s` ConvTranspose
    /// whose one-hot kernel sits at the offset (its pads crop the padding). Tied maxima each get all of `r`.
    fn maxpool_ties_vjp(&self, node: usize, p: &Pool, x: &str, r: &str, in_shape: &[usize]) -> String {
        let (c, sp, out) = (in_shape[0], &in_shape[1..], &self.g.nodes[node].shape[1..]);
        if out.contains(&0) {
            return self.zeros_like(x);
        }
        // Windows reach `(o − 1)·s + k` positions into the padded axis; pad the input at least that far.
        let reach: Vec<usize> = (0..sp.len()).map(|a| (out[a] - 1) * p.strides[a] + p.kernel[a]).collect();
        let end: Vec<usize> = (0..sp.len()).map(|a| reach[a].saturating_sub(p.pads_begin[a] + sp[a])).collect();
        let pads: Vec<i64> = [0, 0].iter().chain(&p.pads_begin).chain(&[0, 0]).chain(&end).map(|&v| v as i64).collect();
        let xp = self.node("Pad", &[x, &self.i64_vec(&pads), &self.scalar(f32::NEG_INFINITY)], vec![ob::attr_string("mode", "constant")]);
        let y = self.maxpool(node, p, x).0;
        let axes: Vec<i64> = (2..2 + sp.len() as i64).collect();
        let steps: Vec<i64> = p.strides.iter().map(|&s| s as i64).collect();
        // The ConvTranspose's output is the input's extent: trailing positions no window reaches come from
        // output_padding, positions past the input from the end pads.
        let (tpads, opad): (Vec<i64>, Vec<i64>) = (0..sp.len())
            .map(|a| {
                let over = reach[a] as i64 - (p.pads_begin[a] + sp[a]) as i64;
                (over.max(0), (-over).max(0))
            })
            .unzip();
        let kp: usize = p.kernel.iter().product();
        let mut parts = Vec::with_capacity(kp);
        for k in 0..kp {
            let (mut off, mut rest) = (vec![0usize; sp.len()], k);
            for a in (0..sp.len()).rev() {
                off[a] = rest % p.kernel[a];
                rest /= p.kernel[a];
            }
            let starts: Vec<i64> = off.iter().map(|&o| o as i64).collect();
            let ends: Vec<i64> = (0..sp.len()).map(|a| (off[a] + (out[a] - 1) * p.strides[a] + 1) as i64).collect();
            let xk = self.node("Slice", &[&xp, &self.i64_vec(&starts), &self.i64_vec(&ends), &self.i64_vec(&axes), &self.i64_vec(&steps)], vec![]);
            let hit = self.node("Cast", &[&self.node("Equal", &[&xk, &y], vec![])], vec![attr_int("to", DataType::Float as i64)]);
            let m = self.node("Mul", &[&hit, r], vec![]);
            let mut w = vec![0f32; c * kp];
            for ch in 0..c {
                w[ch * kp + k] = 1.0;
            }
            let wdims: Vec<usize> = [c, 1].iter().chain(&p.kernel).copied().collect();
            let all_pads: Vec<i64> = p.pads_begin.iter().map(|&v| v as i64).chain(tpads.iter().copied()).collect();
            let attrs = vec![
                attr_ints("kernel_shape", &p.kernel.iter().map(|&v| v as i64).collect::<Vec<_>>()),
                attr_ints("strides", &steps),
                attr_ints("pads", &all_pads),
                attr_ints("output_padding", &opad),
                attr_int("group", c as i64),
            ];
            parts.push(self.node("ConvTranspose", &[&m, &self.const_f32(&wdims, &w)], attrs));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if refs.len() == 1 { parts[0].clone() } else { self.node("Sum", &refs, vec![]) }
    }

    /// A reshape keeping the batch axis (`0`) to the per-sample `shape`.
    fn reshape_batched(&self, x: &str, shape: &[usize]) -> String {
        let dims: Vec<i64> = std::iter::once(0).chain(shape.iter().map(|&d| d as i64)).collect();
        let s = self.i64_vec(&dims);
        self.node("Reshape", &[x, &s], vec![])
    }

    /// Zeros shaped like `x` (batch included).
    fn zeros_like(&self, x: &str) -> String {
        let shape = self.node("Shape", &[x], vec![]);
        let zero = ob::make_tensor_f32("value", &[1], &[0.0]);
        self.node("ConstantOfShape", &[&shape], vec![ob::attr_tensor("value", zero)])
    }

    /// A row tensor `[N]` reshaped to `[N, 1, .., 1]` so it broadcasts over a value of per-sample rank `rank`.
    fn rows_to(&self, v: &Sym, rank: usize) -> Result<String> {
        if !v.shape.is_empty() {
            return Err(err(format!("row tensor expected, got per-sample shape {:?}", v.shape)));
        }
        if rank == 0 {
            return Ok(v.name.clone());
        }
        let dims: Vec<i64> = std::iter::once(-1).chain(std::iter::repeat_n(1, rank)).collect();
        let s = self.i64_vec(&dims);
        Ok(self.node("Reshape", &[&v.name, &s], vec![]))
    }

    /// `+1` where `x >= t`, else `-1`.
    fn sign_ge(&self, x: &str, t: f32) -> String {
        let t = self.scalar(t);
        let cond = self.node("GreaterOrEqual", &[x, &t], vec![]);
        let (p, m) = (self.scalar(1.0), self.scalar(-1.0));
        self.node("Where", &[&cond, &p, &m], vec![])
    }

    fn same_shape(&self, a: &Sym, b: &Sym, what: &str) -> Result<()> {
        if a.shape != b.shape {
            return Err(err(format!("{what}: shape mismatch {:?} vs {:?}", a.shape, b.shape)));
        }
        Ok(())
    }

    fn kernel_of(&self, node: usize) -> Result<&'g relprop_core::Tensor> {
        match &self.g.nodes[node].op {
            Op::Dense(d) => Ok(&d.weight),
            Op::Conv(c) => Ok(&c.weight),
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    /// The kernel of `node` with `w` applied (as relprop-ndarray's weight cache), as an initializer created once.
    fn weight(&self, node: usize, w: WeightMod) -> Result<String> {
        let key = format!("w{node}:{w:?}");
        if let Some(n) = self.st.borrow().consts.get(&key) {
            return Ok(n.clone());
        }
        let orig = self.kernel_of(node)?;
        let data: Vec<f32> = orig.data.iter().map(|&v| w.apply(v)).collect();
        Ok(self.const_keyed(key, || ob::make_tensor_f32("", &orig.shape, &data)))
    }

    /// The weight of stage `k` of conv `node` ([`Conv::stages`]) with `w` applied, as an initializer created once.
    fn stage_weight(&self, node: usize, k: usize, stage: &Conv, w: WeightMod) -> Result<String> {
        if k == 0 {
            return self.weight(node, w);
        }
        let key = format!("w{node}.{k}:{w:?}");
        if let Some(n) = self.st.borrow().consts.get(&key) {
            return Ok(n.clone());
        }
        let data: Vec<f32> = stage.weight.data.iter().map(|&v| w.apply(v)).collect();
        Ok(self.const_keyed(key, || ob::make_tensor_f32("", &stage.weight.shape, &data)))
    }

    /// Per-sample shapes around the stages of conv `node`: its input, the mid tensor of a SeparableConv (the
    /// first stage's channels on the output plane), its output.
    fn stage_shapes(&self, node: usize, c: &Conv) -> Vec<Vec<usize>> {
        let out = &self.g.nodes[node].shape;
        let mut shapes = vec![self.in_shape(node).to_vec()];
        if c.pointwise.is_some() {
            shapes.push(std::iter::once(c.weight.shape[0]).chain(out[1..].iter().copied()).collect());
        }
        shapes.push(out.clone());
        shapes
    }

    fn in_shape(&self, node: usize) -> &'g [usize] {
        &self.g.nodes[self.g.nodes[node].inputs[0]].shape
    }

    /// Begin pads, end pads and output padding of the ConvTranspose that inverts a window op with these
    /// parameters exactly onto the input extent `in_sp` (crop at the end, or pad when the forward windows
    /// stopped short of the input's end).
    #[allow(clippy::too_many_arguments)]
    fn transpose_geometry(
        in_sp: &[usize],
        out_sp: &[usize],
        kernel: &[usize],
        strides: &[usize],
        dils: &[usize],
        pb: &[usize],
    ) -> (Vec<i64>, Vec<i64>) {
        let r = in_sp.len();
        let mut pads = vec![0i64; 2 * r];
        let mut outpad = vec![0i64; r];
        for a in 0..r {
            let eff = (dils[a] * (kernel[a] - 1) + 1) as i64;
            let full = (strides[a] * (out_sp[a] - 1)) as i64 + eff;
            let extra = full - pb[a] as i64 - in_sp[a] as i64;
            pads[a] = pb[a] as i64;
            if extra >= 0 {
                pads[r + a] = extra;
            } else {
                outpad[a] = -extra;
            }
        }
        (pads, outpad)
    }

    /// `x` (full rank `rank`) with axis `axis` moved last, multiplied by the constant matrix `m` (its extent ×
    /// the new extent), and moved back.
    fn along_axis(&self, x: &str, axis: usize, rank: usize, m: &str) -> String {
        let mut perm: Vec<i64> = (0..rank as i64).collect();
        perm.swap(axis, rank - 1);
        let t = self.node("Transpose", &[x], vec![attr_ints("perm", &perm)]);
        let p = self.node("MatMul", &[&t, m], vec![]);
        self.node("Transpose", &[&p], vec![attr_ints("perm", &perm)])
    }

    /// For upsampling a per-sample `(C, s1, .., sr)` by `factors`: the input as `(C, s1, 1, s2, 1, ..)` and the
    /// output as `(C, s1, f1, s2, f2, ..)` (each spatial axis followed by its block axis).
    fn block_shapes(shape: &[usize], factors: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let pairs = |with: &dyn Fn(usize) -> usize| -> Vec<usize> {
            std::iter::once(shape[0]).chain(shape[1..].iter().zip(factors).flat_map(|(&d, &f)| [d, with(f)])).collect()
        };
        (pairs(&|_| 1), pairs(&|f| f))
    }

    /// Attributes of the ConvTranspose that maps a `out_sp` extent back onto `in_sp` through convolution `c`'s
    /// geometry.
    fn transpose_attrs(&self, in_sp: &[usize], out_sp: &[usize], c: &Conv) -> Vec<AttributeProto> {
        let (pads, outpad) = Self::transpose_geometry(in_sp, out_sp, c.kernel(), &c.strides, &c.dilations, &c.pads_begin);
        let i = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<i64>>();
        vec![
            attr_ints("kernel_shape", &i(c.kernel())),
            attr_ints("strides", &i(&c.strides)),
            attr_ints("dilations", &i(&c.dilations)),
            attr_ints("pads", &pads),
            attr_ints("output_padding", &outpad),
            attr_int("group", c.groups as i64),
        ]
    }

    fn conv_attrs(c: &Conv) -> Vec<AttributeProto> {
        let i = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<i64>>();
        let pads: Vec<i64> = c.pads_begin.iter().chain(&c.pads_end).map(|&d| d as i64).collect();
        vec![
            attr_ints("kernel_shape", &i(c.kernel())),
            attr_ints("strides", &i(&c.strides)),
            attr_ints("dilations", &i(&c.dilations)),
            attr_ints("pads", &pads),
            attr_int("group", c.groups as i64),
        ]
    }

    fn pool_attrs(p: &Pool, avg: bool) -> Vec<AttributeProto> {
        let i = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<i64>>();
        let pads: Vec<i64> = p.pads_begin.iter().chain(&p.pads_end).map(|&d| d as i64).collect();
        let mut a = vec![
            attr_ints("kernel_shape", &i(&p.kernel)),
            attr_ints("strides", &i(&p.strides)),
            attr_ints("pads", &pads),
            attr_int("ceil_mode", p.ceil_mode as i64),
        ];
        if avg {
            a.push(attr_int("count_include_pad", p.count_include_pad as i64));
        }
        a
    }

    /// Per output position of an average pooling: its divisor (in-bounds positions, or the window clipped to
    /// the padded input with `count_include_pad`), as relprop-ndarray's pooling kernels count; 1 for windows
    /// lying wholly in the padding (their transpose lands in cropped positions only).
    fn avg_divisors(p: &Pool, in_sp: &[usize], out_sp: &[usize]) -> Vec<f32> {
        let per_axis: Vec<Vec<usize>> = (0..in_sp.len())
            .map(|a| {
                let (len, k, s, pb, pe) = (in_sp[a], p.kernel[a], p.strides[a], p.pads_begin[a], p.pads_end[a]);
                (0..out_sp[a])
                    .map(|i| {
                        let start = i * s;
                        let lo = start.max(pb).min(len + pb) - pb;
                        let hi = ((start + k).min(len + pb).max(pb) - pb).max(lo);
                        let padded = (start + k).min(len + pb + pe).saturating_sub(start);
                        if p.count_include_pad { padded } else { hi - lo }
                    })
                    .collect()
            })
            .collect();
        let total: usize = out_sp.iter().product();
        let mut out = Vec::with_capacity(total);
        let mut pos = vec![0usize; out_sp.len()];
        for _ in 0..total {
            let d: usize = pos.iter().enumerate().map(|(a, &i)| per_axis[a][i]).product();
            out.push(if d == 0 { 1.0 } else { d as f32 });
            for a in (0..pos.len()).rev() {
                pos[a] += 1;
                if pos[a] < out_sp[a] {
                    break;
                }
                pos[a] = 0;
            }
        }
        out
    }

    /// Along `axis` of `x`: each maximum's share `1/ties` (0 elsewhere) and the maxima (kept as a size-1 axis),
    /// as TensorFlow's `reduce_max` gradient shares a selection.
    fn max_shares(&self, x: &str, axis: i64) -> (String, String) {
        let m = self.node("ReduceMax", &[x], vec![attr_ints("axes", &[axis]), attr_int("keepdims", 1)]);
        let ind = self.node("Cast", &[&self.node("Equal", &[x, &m], vec![])], vec![attr_int("to", DataType::Float as i64)]);
        let ties = self.node("ReduceSum", &[&ind, &self.i64_vec(&[axis])], vec![attr_int("keepdims", 1)]);
        (self.node("Div", &[&ind, &ties], vec![]), m)
    }

    /// The MaxPool of `node` on `x` with its flat (N·C·H·W) argmax indices; emitted once.
    fn maxpool(&self, node: usize, p: &Pool, x: &str) -> (String, String) {
        let outs = self.node_n("MaxPool", &[x], Self::pool_attrs(p, false), 2);
        self.st.borrow_mut().pool_indices.insert(node, outs[1].clone());
        (outs[0].clone(), outs[1].clone())
    }
}

impl Numerics for OnnxBuilder<'_> {
    type T = Sym;

    fn input(&self, x: &Tensor) -> Result<Sym> {
        Ok(self.sym(self.input_name.clone(), x.shape[1..].to_vec()))
    }

    /// A graph has no values yet: this records which value the caller wants (the forward-only graph).
    fn output(&self, t: &Sym) -> Result<Tensor> {
        self.st.borrow_mut().last_output = Some(t.clone());
        Ok(Tensor::zeros(vec![0]))
    }

    fn linear(&self, node: usize, w: WeightMod, x: &Sym) -> Result<Sym> {
        let shape = self.g.nodes[node].shape.clone();
        match &self.g.nodes[node].op {
            Op::Dense(_) => {
                let wn = self.weight(node, w)?;
                Ok(self.sym(self.node("MatMul", &[&x.name, &wn], vec![]), shape))
            }
            // A ConvTranspose: ONNX's own op, its pads and output padding recomputed onto this node's extent.
            Op::Conv(c) if c.transposed.is_some() => {
                let wn = self.weight(node, w)?;
                // (the convolution it transposes maps this node's extent back onto the input's)
                let attrs = self.transpose_attrs(&shape[1..], &x.shape[1..], c);
                Ok(self.sym(self.node("ConvTranspose", &[&x.name, &wn], attrs), shape))
            }
            Op::Conv(c) => {
                // Stage by stage (a SeparableConv has two), each with its own substituted weight.
                let shapes = self.stage_shapes(node, c);
                let mut y = x.clone();
                for (k, st) in c.stages().iter().enumerate() {
                    let wn = self.stage_weight(node, k, st, w)?;
                    y = self.sym(self.node("Conv", &[&y.name, &wn], Self::conv_attrs(st)), shapes[k + 1].clone());
                }
                debug_assert_eq!(y.shape, shape);
                Ok(y)
            }
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    fn linear_t(&self, node: usize, w: WeightMod, s: &Sym) -> Result<Sym> {
        let in_shape = self.in_shape(node).to_vec();
        match &self.g.nodes[node].op {
            Op::Dense(_) => {
                // s · Wᵀ as Gemm(transB) on the (in, out) weight itself: no transposed copy of big kernels.
                let wn = self.weight(node, w)?;
                let gemm = |a: &str| self.node("Gemm", &[a, &wn], vec![attr_int("transB", 1)]);
                let y = if s.shape.len() == 1 {
                    gemm(&s.name)
                } else {
                    let out = *s.shape.last().expect("rank >= 2") as i64;
                    let s2 = self.node("Reshape", &[&s.name, &self.i64_vec(&[-1, out])], vec![]);
                    let dims: Vec<i64> = std::iter::once(-1).chain(in_shape.iter().map(|&d| d as i64)).collect();
                    self.node("Reshape", &[&gemm(&s2), &self.i64_vec(&dims)], vec![])
                };
                Ok(self.sym(y, in_shape))
            }
            Op::Conv(c) if c.transposed.is_some() => {
                let wn = self.weight(node, w)?;
                Ok(self.sym(self.node("Conv", &[&s.name, &wn], Self::conv_attrs(&c.untransposed())), in_shape))
            }
            Op::Conv(c) => {
                // Stage by stage in reverse order.
                let shapes = self.stage_shapes(node, c);
                let mut r = s.clone();
                for (k, st) in c.stages().iter().enumerate().rev() {
                    let wn = self.stage_weight(node, k, st, w)?;
                    let attrs = self.transpose_attrs(&shapes[k][1..], &shapes[k + 1][1..], st);
                    r = self.sym(self.node("ConvTranspose", &[&r.name, &wn], attrs), shapes[k].clone());
                }
                Ok(r)
            }
            op => Err(err(format!("{} has no kernel", op.kind()))),
        }
    }

    fn add_bias(&self, node: usize, b: BiasMod, z: &Sym) -> Result<Sym> {
        let (bias, dense) = match &self.g.nodes[node].op {
            Op::Dense(d) => (d.bias.as_deref(), true),
            Op::Conv(c) => (c.bias.as_deref(), false),
            op => return Err(err(format!("{} has no bias", op.kind()))),
        };
        let Some(bias) = bias else { return Ok(z.clone()) };
        let v: Vec<f32> = bias
            .data
            .iter()
            .map(|&v| b.apply(v))
            .collect();
        let name = if dense {
            self.const_f32(&[v.len()], &v)
        } else {
            let mut dims = vec![1; z.shape.len()];
            dims[0] = v.len();
            self.const_f32(&dims, &v)
        };
        Ok(self.sym(self.node("Add", &[&z.name, &name], vec![]), z.shape.clone()))
    }

    fn activation(&self, a: &Activation, z: &Sym) -> Result<Sym> {
        let x = z.name.as_str();
        let y = match *a {
            Activation::Relu => self.node("Relu", &[x], vec![]),
            Activation::LeakyRelu(al) => self.node("LeakyRelu", &[x], vec![attr_float("alpha", al)]),
            Activation::Elu(al) => self.node("Elu", &[x], vec![attr_float("alpha", al)]),
            Activation::Sigmoid => self.node("Sigmoid", &[x], vec![]),
            Activation::Tanh => self.node("Tanh", &[x], vec![]),
            Activation::Softplus => self.node("Softplus", &[x], vec![]),
            Activation::Selu => {
                self.node("Selu", &[x], vec![attr_float("alpha", 1.673_263_2), attr_float("gamma", 1.050_701)])
            }
            Activation::Gelu => {
                // 0.5·x·(1 + erf(x/√2)) with TensorFlow's erf spelled out operation for operation as
                // `relprop_core::graph::erf` (ONNX Runtime's Erf is another approximation).
                use relprop_core::graph::{ERF_DEN, ERF_NUM};
                let r2 = self.scalar(std::f32::consts::SQRT_2);
                let z = self.node("Div", &[x, &r2], vec![]);
                let z = self.node("Clip", &[&z, &self.scalar(-4.0), &self.scalar(4.0)], vec![]);
                let z2 = self.node("Mul", &[&z, &z], vec![]);
                let horner = |cs: &[f32]| {
                    let first = self.node("Mul", &[&z2, &self.scalar(cs[0])], vec![]);
                    let mut acc = self.node("Add", &[&first, &self.scalar(cs[1])], vec![]);
                    for &c in &cs[2..] {
                        acc = self.node("Add", &[&self.node("Mul", &[&z2, &acc], vec![]), &self.scalar(c)], vec![]);
                    }
                    acc
                };
                let p = self.node("Mul", &[&z, &horner(&ERF_NUM)], vec![]);
                let e = self.node("Div", &[&p, &horner(&ERF_DEN)], vec![]);
                let one = self.node("Add", &[&e, &self.scalar(1.0)], vec![]);
                let hx = self.node("Mul", &[x, &self.scalar(0.5)], vec![]);
                self.node("Mul", &[&hx, &one], vec![])
            }
            Activation::HardSigmoid { alpha, beta } => {
                self.node("HardSigmoid", &[x], vec![attr_float("alpha", alpha), attr_float("beta", beta)])
            }
            Activation::Clip { min, max } => self.node("Clip", &[x, &self.scalar(min), &self.scalar(max)], vec![]),
            Activation::Swish => self.node("Mul", &[x, &self.node("Sigmoid", &[x], vec![])], vec![]),
            Activation::HardSwish => self.node("HardSwish", &[x], vec![]),
            Activation::Softsign => self.node("Softsign", &[x], vec![]),
            Activation::Celu(alpha) => self.node("Celu", &[x], vec![attr_float("alpha", alpha)]),
            Activation::Exp => self.node("Exp", &[x], vec![]),
            Activation::ThresholdedRelu(t) => self.node("ThresholdedRelu", &[x], vec![attr_float("alpha", t)]),
            Activation::LogSigmoid => {
                let soft = self.node("Softplus", &[&self.node("Neg", &[x], vec![])], vec![]);
                self.node("Neg", &[&soft], vec![])
            }
        };
        Ok(self.sym(y, z.shape.clone()))
    }

    fn forward(&self, node: usize, inputs: &[&Sym]) -> Result<Sym> {
        let nd = &self.g.nodes[node];
        let x = inputs.first().ok_or_else(|| err("node without input"))?;
        let shape = nd.shape.clone();
        let y = match &nd.op {
            Op::MaxPool(p) => self.maxpool(node, p, &x.name).0,
            Op::AvgPool(p) => self.node("AveragePool", &[&x.name], Self::pool_attrs(p, true)),
            Op::GlobalAvgPool => {
                let y = self.node("GlobalAveragePool", &[&x.name], vec![]);
                self.node("Flatten", &[&y], vec![attr_int("axis", 1)])
            }
            Op::GlobalMaxPool => {
                let y = self.node("GlobalMaxPool", &[&x.name], vec![]);
                self.node("Flatten", &[&y], vec![attr_int("axis", 1)])
            }
            Op::BatchNorm(bn) | Op::Affine(bn) => {
                let (scale, shift) = bn.scale_shift();
                let mut dims = vec![1; x.shape.len()];
                dims[0] = scale.len();
                let m = self.node("Mul", &[&x.name, &self.const_f32(&dims, &scale)], vec![]);
                self.node("Add", &[&m, &self.const_f32(&dims, &shift)], vec![])
            }
            Op::PRelu { slope } => self.node("PRelu", &[&x.name, &self.const_f32(&slope.shape, &slope.data)], vec![]),
            Op::LayerNorm(l) => {
                // Spelled out (LayerNormalization needs opset 17): mean, centred, biased variance, scale and shift.
                let axes: Vec<i64> = (x.shape.len() - l.axes..x.shape.len()).map(|a| a as i64 + 1).collect();
                let mean = self.node("ReduceMean", &[&x.name], vec![attr_ints("axes", &axes), attr_int("keepdims", 1)]);
                let d = self.node("Sub", &[&x.name, &mean], vec![]);
                let sq = self.node("Mul", &[&d, &d], vec![]);
                let var = self.node("ReduceMean", &[&sq], vec![attr_ints("axes", &axes), attr_int("keepdims", 1)]);
                let ve = self.node("Add", &[&var, &self.const_f32(&[], &[l.epsilon])], vec![]);
                let sd = self.node("Sqrt", &[&ve], vec![]);
                let normed = self.node("Div", &[&d, &sd], vec![]);
                let g = self.node("Mul", &[&normed, &self.const_f32(&l.gamma.shape, &l.gamma.data)], vec![]);
                self.node("Add", &[&g, &self.const_f32(&l.beta.shape, &l.beta.data)], vec![])
            }
            Op::Add | Op::Mean => {
                let mut acc = x.name.clone();
                for other in &inputs[1..] {
                    self.same_shape(x, other, nd.op.kind())?;
                    acc = self.node("Add", &[&acc, &other.name], vec![]);
                }
                if nd.op == Op::Mean {
                    let count = self.scalar(inputs.len() as f32);
                    acc = self.node("Div", &[&acc, &count], vec![]);
                }
                acc
            }
            Op::Upsample { factors, mode: mode @ Interpolation::Linear(_) } => {
                let mut y = x.name.clone();
                for (a, &f) in factors.iter().enumerate() {
                    let len = x.shape[a + 1];
                    let mt: Vec<f32> = transpose_matrix(&mode.matrix(len, f), len * f, len);
                    y = self.along_axis(&y, a + 2, x.shape.len() + 1, &self.const_f32(&[len, len * f], &mt));
                }
                y
            }
            Op::Upsample { factors, .. } => {
                // (N, C, s1, 1, s2, 1, ..) times ones of (1, 1, 1, f1, 1, f2, ..) repeats each value into its block
                // exactly; then the blocks are merged into the axes.
                let (with_ones, _) = Self::block_shapes(&x.shape, factors);
                let ones: Vec<usize> = [1, 1].into_iter().chain(factors.iter().flat_map(|&f| [1, f])).collect();
                let v = self.reshape_batched(&x.name, &with_ones);
                let rep = self.node("Mul", &[&v, &self.const_f32(&ones, &vec![1.0; ones.iter().product()])], vec![]);
                self.reshape_batched(&rep, &shape)
            }
            Op::Merge(m) => {
                // Pairwise from the first input, as the other backends (broadcasting size-1 axes).
                let op = match m {
                    Merge::Multiply => "Mul",
                    Merge::Subtract => "Sub",
                    Merge::Maximum => "Max",
                    Merge::Minimum => "Min",
                };
                let mut acc = x.name.clone();
                for other in &inputs[1..] {
                    acc = self.node(op, &[&acc, &other.name], vec![]);
                }
                acc
            }
            Op::Reshape => self.reshape_batched(&x.name, &shape),
            Op::Transpose { perm } => {
                let p = i64s_of(perm);
                self.node("Transpose", &[&x.name], vec![attr_ints("perm", &p)])
            }
            Op::Pad { begin, end, mode } => {
                let pads: Vec<i64> =
                    std::iter::once(0).chain(begin.iter().map(|&d| d as i64)).chain(std::iter::once(0)).chain(end.iter().map(|&d| d as i64)).collect();
                let mut ins = vec![x.name.clone(), self.i64_vec(&pads)];
                if let PadMode::Constant(value) = mode {
                    ins.push(self.scalar(*value));
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                self.node("Pad", &ins, vec![ob::attr_string("mode", mode.onnx_name())])
            }
            Op::Slice { begin, end } => {
                let axes: Vec<i64> = (1..=begin.len() as i64).collect();
                let (s, e, a) = (self.i64_vec(&i64s_of(begin)), self.i64_vec(&i64s_of(end)), self.i64_vec(&axes));
                self.node("Slice", &[&x.name, &s, &e, &a], vec![])
            }
            Op::Concat { axis } => {
                let names: Vec<&str> = inputs.iter().map(|t| t.name.as_str()).collect();
                self.node("Concat", &names, vec![attr_int("axis", *axis as i64 + 1)])
            }
            Op::Identity | Op::Activation(_) => x.name.clone(),
            op => return Err(err(format!("forward of {} is not a plain op", op.kind()))),
        };
        Ok(self.sym(y, shape))
    }

    fn pool_t(&self, node: usize, s: &Sym) -> Result<Sym> {
        let nd = &self.g.nodes[node];
        let in_shape = self.in_shape(node).to_vec();
        let c = in_shape[0];
        match &nd.op {
            Op::AvgPool(p) => {
                let out_sp = &nd.shape[1..];
                let div = Self::avg_divisors(p, &in_shape[1..], out_sp);
                let dims: Vec<usize> = std::iter::once(1).chain(out_sp.iter().copied()).collect();
                let q = self.node("Div", &[&s.name, &self.const_f32(&dims, &div)], vec![]);
                let ones_dims: Vec<usize> = [c, 1].into_iter().chain(p.kernel.iter().copied()).collect();
                let ones = self.const_f32(&ones_dims, &vec![1.0; ones_dims.iter().product()]);
                let dils = vec![1; p.kernel.len()];
                let (pads, outpad) = Self::transpose_geometry(&in_shape[1..], out_sp, &p.kernel, &p.strides, &dils, &p.pads_begin);
                let i = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<i64>>();
                let attrs = vec![
                    attr_ints("kernel_shape", &i(&p.kernel)),
                    attr_ints("strides", &i(&p.strides)),
                    attr_ints("pads", &pads),
                    attr_ints("output_padding", &outpad),
                    attr_int("group", c as i64),
                ];
                Ok(self.sym(self.node("ConvTranspose", &[&q, &ones], attrs), in_shape))
            }
            Op::GlobalAvgPool => {
                let plane: usize = in_shape[1..].iter().product();
                let q = self.node("Div", &[&s.name, &self.scalar(plane as f32)], vec![]);
                let q = self.reshape_batched(&q, &std::iter::once(c).chain(std::iter::repeat_n(1, in_shape.len() - 1)).collect::<Vec<_>>());
                let target: Vec<i64> = std::iter::once(1).chain(in_shape.iter().map(|&d| d as i64)).collect();
                let t = self.i64_vec(&target);
                Ok(self.sym(self.node("Expand", &[&q, &t], vec![]), in_shape))
            }
            op => Err(err(format!("{} is not an average pooling", op.kind()))),
        }
    }

    fn route(&self, node: usize, inputs: &[&Sym], r: &Sym) -> Result<Vec<Sym>> {
        let nd = &self.g.nodes[node];
        let x = inputs[0];
        let in_shape = self.in_shape(node).to_vec();
        Ok(match &nd.op {
            // TensorFlow's MaxPool3D gradient gives every tied maximum the whole relevance (docs/divergences.md).
            Op::MaxPool(p) if p.kernel.len() == 3 => vec![self.sym(self.maxpool_ties_vjp(node, p, &x.name, &r.name, &in_shape), in_shape)],
            Op::MaxPool(p) => {
                let cached = self.st.borrow().pool_indices.get(&node).cloned();
                let idx = match cached {
                    Some(i) => i,
                    None => self.maxpool(node, p, &x.name).1,
                };
                // ONNX indices are flat over the whole batch (N·C·H·W): scatter-add into the flat input.
                let flat = self.i64_vec(&[-1]);
                let zeros = self.node("Reshape", &[&self.zeros_like(&x.name), &flat], vec![]);
                let idx = self.node("Reshape", &[&idx, &flat], vec![]);
                let upd = self.node("Reshape", &[&r.name, &flat], vec![]);
                let sc = self.node(
                    "ScatterElements",
                    &[&zeros, &idx, &upd],
                    vec![attr_int("axis", 0), ob::attr_string("reduction", "add")],
                );
                let shape = self.node("Shape", &[&x.name], vec![]);
                vec![self.sym(self.node("Reshape", &[&sc, &shape], vec![]), in_shape)]
            }
            Op::GlobalMaxPool => {
                // Every maximum of a plane gets an equal share, (1/ties)·r (TensorFlow's reduce_max gradient).
                let c = in_shape[0];
                let x3 = self.node("Reshape", &[&x.name, &self.i64_vec(&[0, c as i64, -1])], vec![]);
                let (share, _) = self.max_shares(&x3, 2);
                let routed = self.node("Mul", &[&share, &self.reshape_batched(&r.name, &[c, 1])], vec![]);
                let shape = self.node("Shape", &[&x.name], vec![]);
                vec![self.sym(self.node("Reshape", &[&routed, &shape], vec![]), in_shape)]
            }
            Op::Reshape => vec![self.sym(self.reshape_batched(&r.name, &in_shape), in_shape)],
            Op::Transpose { perm } => {
                let mut inv = vec![0i64; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i as i64;
                }
                vec![self.sym(self.node("Transpose", &[&r.name], vec![attr_ints("perm", &inv)]), in_shape)]
            }
            Op::Pad { begin, end, mode: mode @ (PadMode::Reflect | PadMode::Edge) } => {
                vec![self.sym(self.mirror_pad_vjp(&r.name, begin, end, &in_shape, *mode == PadMode::Reflect), in_shape)]
            }
            Op::Pad { begin, .. } => {
                let starts = i64s_of(begin);
                let ends: Vec<i64> = begin.iter().zip(&in_shape).map(|(&b, &l)| (b + l) as i64).collect();
                let axes: Vec<i64> = (1..=begin.len() as i64).collect();
                let (s, e, a) = (self.i64_vec(&starts), self.i64_vec(&ends), self.i64_vec(&axes));
                vec![self.sym(self.node("Slice", &[&r.name, &s, &e, &a], vec![]), in_shape)]
            }
            Op::Slice { begin, end } => {
                // The gradient: zeros around the window.
                let after: Vec<i64> = end.iter().zip(&in_shape).map(|(&e, &l)| (l - e) as i64).collect();
                let pads: Vec<i64> = std::iter::once(0).chain(i64s_of(begin)).chain(std::iter::once(0)).chain(after).collect();
                let (p, v) = (self.i64_vec(&pads), self.scalar(0.0));
                vec![self.sym(self.node("Pad", &[&r.name, &p, &v], vec![ob::attr_string("mode", "constant")]), in_shape)]
            }
            Op::Mean => {
                let count = self.scalar(inputs.len() as f32);
                let share = self.sym(self.node("Div", &[&r.name, &count], vec![]), in_shape);
                vec![share; inputs.len()]
            }
            Op::Concat { axis } => {
                let mut start = 0;
                let ax = self.i64_vec(&[*axis as i64 + 1]);
                inputs
                    .iter()
                    .map(|t| {
                        let len = t.shape[*axis];
                        let (s, e) = (self.i64_vec(&[start as i64]), self.i64_vec(&[(start + len) as i64]));
                        start += len;
                        self.sym(self.node("Slice", &[&r.name, &s, &e, &ax], vec![]), t.shape.clone())
                    })
                    .collect()
            }
            Op::Upsample { factors, mode: mode @ Interpolation::Linear(_) } => {
                // The gradient: the transposed interpolation along each axis.
                let mut g = r.name.clone();
                for (a, &f) in factors.iter().enumerate() {
                    let len = in_shape[a + 1];
                    g = self.along_axis(&g, a + 2, in_shape.len() + 1, &self.const_f32(&[len * f, len], &mode.matrix(len, f)));
                }
                vec![self.sym(g, in_shape)]
            }
            Op::Upsample { factors, .. } => {
                // The gradient: r viewed as (N, C, s1, f1, s2, f2, ..) summed over the block axes.
                let (_, blocked) = Self::block_shapes(&in_shape, factors);
                let v = self.reshape_batched(&r.name, &blocked);
                let axes: Vec<i64> = (0..factors.len() as i64).map(|a| 3 + 2 * a).collect();
                let summed = self.node("ReduceSum", &[&v, &self.i64_vec(&axes)], vec![attr_int("keepdims", 0)]);
                vec![self.sym(summed, in_shape)]
            }
            Op::Merge(m) => {
                let grads: Vec<String> = match m {
                    // ∂(Π x_j)/∂x_i = Π_{j≠i} x_j, multiplied in the order the other backends use
                    Merge::Multiply => (0..inputs.len())
                        .map(|i| {
                            let others = inputs.iter().enumerate().filter(|&(j, _)| j != i);
                            others.fold(r.name.clone(), |g, (_, xj)| self.node("Mul", &[&g, &xj.name], vec![]))
                        })
                        .collect(),
                    Merge::Subtract => vec![r.name.clone(), self.node("Neg", &[&r.name], vec![])],
                    // All of R to the first input holding the extreme value (a tie keeps the running value).
                    Merge::Maximum | Merge::Minimum => {
                        let shape = self.node("Shape", &[&r.name], vec![]);
                        let mut best = self.node("Expand", &[&x.name, &shape], vec![]);
                        let mut winner = self.zeros_like(&r.name);
                        for (i, xi) in inputs.iter().enumerate().skip(1) {
                            let v = self.node("Expand", &[&xi.name, &shape], vec![]);
                            let take = self.node(if *m == Merge::Maximum { "Greater" } else { "Less" }, &[&v, &best], vec![]);
                            best = self.node("Where", &[&take, &v, &best], vec![]);
                            winner = self.node("Where", &[&take, &self.scalar(i as f32), &winner], vec![]);
                        }
                        let zeros = self.zeros_like(&r.name);
                        (0..inputs.len())
                            .map(|i| {
                                let mine = self.node("Equal", &[&winner, &self.scalar(i as f32)], vec![]);
                                self.node("Where", &[&mine, &r.name, &zeros], vec![])
                            })
                            .collect()
                    }
                };
                // A broadcast input gets the sum over the axes it was repeated along.
                grads
                    .into_iter()
                    .zip(inputs)
                    .map(|(g, t)| {
                        let axes: Vec<i64> = t.shape.iter().zip(&nd.shape).enumerate().filter(|(_, (&a, &o))| a == 1 && o != 1).map(|(k, _)| k as i64 + 1).collect();
                        let g = if axes.is_empty() { g } else { self.node("ReduceSum", &[&g, &self.i64_vec(&axes)], vec![attr_int("keepdims", 1)]) };
                        self.sym(g, t.shape.clone())
                    })
                    .collect()
            }
            op => return Err(err(format!("{} has no gradient routing", op.kind()))),
        })
    }

    fn add_channel(&self, t: &Sym, v: &[f32]) -> Result<Sym> {
        if t.shape.first() != Some(&v.len()) {
            return Err(err(format!("{} values along the channel axis of {:?}", v.len(), t.shape)));
        }
        let mut dims = vec![1; t.shape.len()];
        dims[0] = v.len();
        let c = self.const_f32(&dims, v);
        Ok(self.sym(self.node("Add", &[&t.name, &c], vec![]), t.shape.clone()))
    }

    fn xmod(&self, x: &Sym, m: XMod) -> Result<Sym> {
        let n = x.name.as_str();
        let y = match m {
            XMod::X => return Ok(x.clone()),
            XMod::Pos => self.node("Relu", &[n], vec![]),
            XMod::Neg => self.node("Min", &[n, &self.scalar(0.0)], vec![]),
            XMod::Sign => self.sign_ge(n, 0.0),
            XMod::SignMu(mu) => self.sign_ge(n, mu),
            XMod::Const(c) => {
                let shape = self.node("Shape", &[n], vec![]);
                let v = ob::make_tensor_f32("value", &[1], &[c]);
                self.node("ConstantOfShape", &[&shape], vec![ob::attr_tensor("value", v)])
            }
        };
        Ok(self.sym(y, x.shape.clone()))
    }

    fn add(&self, a: &Sym, b: &Sym) -> Result<Sym> {
        self.same_shape(a, b, "add")?;
        Ok(self.sym(self.node("Add", &[&a.name, &b.name], vec![]), a.shape.clone()))
    }
    fn sub(&self, a: &Sym, b: &Sym) -> Result<Sym> {
        self.same_shape(a, b, "sub")?;
        Ok(self.sym(self.node("Sub", &[&a.name, &b.name], vec![]), a.shape.clone()))
    }
    fn mul(&self, a: &Sym, b: &Sym) -> Result<Sym> {
        self.same_shape(a, b, "mul")?;
        Ok(self.sym(self.node("Mul", &[&a.name, &b.name], vec![]), a.shape.clone()))
    }
    fn scale(&self, a: &Sym, c: f32) -> Result<Sym> {
        Ok(self.sym(self.node("Mul", &[&a.name, &self.scalar(c)], vec![]), a.shape.clone()))
    }
    fn safe_div(&self, a: &Sym, b: &Sym) -> Result<Sym> {
        self.same_shape(a, b, "safe_div")?;
        let zero = self.scalar(0.0);
        let is0 = self.node("Equal", &[&b.name, &zero], vec![]);
        let den = self.node("Where", &[&is0, &self.scalar(KERAS_EPSILON), &b.name], vec![]);
        Ok(self.sym(self.node("Div", &[&a.name, &den], vec![]), a.shape.clone()))
    }
    fn stabilize(&self, z: &Sym, eps: f32) -> Result<Sym> {
        let zero = self.scalar(0.0);
        let cond = self.node("GreaterOrEqual", &[&z.name, &zero], vec![]);
        let e = self.node("Where", &[&cond, &self.scalar(eps), &self.scalar(-eps)], vec![]);
        Ok(self.sym(self.node("Add", &[&z.name, &e], vec![]), z.shape.clone()))
    }
    fn stabilize_rows(&self, z: &Sym, eps: &Sym) -> Result<Sym> {
        let e = self.rows_to(eps, z.shape.len())?;
        let sg = self.sign_ge(&z.name, 0.0);
        let es = self.node("Mul", &[&e, &sg], vec![]);
        Ok(self.sym(self.node("Add", &[&z.name, &es], vec![]), z.shape.clone()))
    }
    fn std_rows(&self, x: &Sym, over_batch: bool) -> Result<Sym> {
        // In f64 like relprop-ndarray: sqrt(max(E[x²] − E[x]², 0)).
        let xd = self.node("Cast", &[&x.name], vec![attr_int("to", DataType::Double as i64)]);
        let dims = self.i64_vec(if over_batch { &[1, -1] } else { &[0, -1] });
        let x2 = self.node("Reshape", &[&xd, &dims], vec![]);
        let red = vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)];
        let m = self.node("ReduceMean", &[&x2], red.clone());
        let sq = self.node("Mul", &[&x2, &x2], vec![]);
        let m2 = self.node("ReduceMean", &[&sq], red);
        let var = self.node("Sub", &[&m2, &self.node("Mul", &[&m, &m], vec![])], vec![]);
        let zero = self.const_keyed("d0".into(), || TensorProto {
            dims: vec![],
            data_type: Some(DataType::Double as i32),
            raw_data: Some(0f64.to_le_bytes().to_vec()),
            ..Default::default()
        });
        let sd = self.node("Sqrt", &[&self.node("Max", &[&var, &zero], vec![])], vec![]);
        let mut v = self.node("Cast", &[&sd], vec![attr_int("to", DataType::Float as i64)]);
        if over_batch {
            let shape = self.node("Shape", &[&x.name], vec![attr_int("start", 0), attr_int("end", 1)]);
            v = self.node("Expand", &[&v, &shape], vec![]);
        }
        Ok(self.sym(v, vec![]))
    }
    fn scale_rows(&self, a: &Sym, v: &Sym) -> Result<Sym> {
        let vr = self.rows_to(v, a.shape.len())?;
        Ok(self.sym(self.node("Mul", &[&a.name, &vr], vec![]), a.shape.clone()))
    }
    fn row_max(&self, t: &Sym) -> Result<(Sym, Sym)> {
        let k = match t.shape[..] {
            [k] => k,
            _ => return Err(err(format!("neuron selection needs a (batch, outputs) tensor, got per-sample {:?}", t.shape))),
        };
        // Every maximum, each with an equal share (`Numerics::row_max`).
        let (hot, m) = self.max_shares(&t.name, 1);
        let v = self.node("Reshape", &[&m, &self.i64_vec(&[-1])], vec![]);
        Ok((self.sym(hot, vec![k]), self.sym(v, vec![])))
    }
    fn row_pick(&self, t: &Sym, k: usize) -> Result<(Sym, Sym)> {
        let kk = match t.shape[..] {
            [kk] => kk,
            _ => return Err(err(format!("neuron selection needs a (batch, outputs) tensor, got per-sample {:?}", t.shape))),
        };
        if k >= kk {
            return Err(Error::Target(format!("index {k} out of range for {kk} outputs")));
        }
        let mut one = vec![0f32; kk];
        one[k] = 1.0;
        let shape = self.node("Shape", &[&t.name], vec![]);
        let hot = self.node("Expand", &[&self.const_f32(&[1, kk], &one), &shape], vec![]);
        let idx = self.const_i64(&[], &[k as i64]);
        let v = self.node("Gather", &[&t.name, &idx], vec![attr_int("axis", 1)]);
        Ok((self.sym(hot, vec![kk]), self.sym(v, vec![])))
    }
}

/// What an explanation graph computes, and the names of its outputs.
pub struct Built {
    pub model: ModelProto,
    /// Per node index with relevance (`keep_layers`): the graph output holding it.
    pub layer_outputs: Vec<(usize, String)>,
}

fn finish(b: OnnxBuilder<'_>, outputs: Vec<(String, &Sym)>) -> Result<ModelProto> {
    let g = b.g;
    let input = b.input_name.clone();
    if outputs.iter().any(|(n, _)| *n == input) {
        return Err(err(format!("the model input is named '{input}', which clashes with an output of the explanation graph")));
    }
    let mut out_infos = Vec::new();
    for (name, sym) in &outputs {
        // Identity nodes give each output its own name (a value may be several outputs, or the input itself).
        let node = ob::make_node("Identity", &format!("{name}_out"), &[&sym.name], &[name], vec![]);
        b.st.borrow_mut().nodes.push(node);
        out_infos.push(ob::value_info(name, &sym.shape));
    }
    let st = b.st.into_inner();
    let graph = ob::make_graph(
        "relprop_explanation",
        st.nodes,
        vec![ob::value_info(&input, g.input_shape())],
        out_infos,
        st.inits,
    );
    Ok(ob::make_model(graph, OPSET))
}

/// The explanation of `plan` for `target` on `g` as one ONNX graph: input named like the model's, outputs
/// [`LOGITS`], [`RELEVANCE`] and, with `keep_layers`, one [`layer_output_name`] per node reached by relevance.
pub fn build_explanation(g: &Graph, plan: &RulePlan, target: &Target, keep_layers: bool) -> Result<Built> {
    g.validate()?;
    let b = OnnxBuilder::new(g);
    let dummy = Tensor::zeros(std::iter::once(1).chain(g.input_shape().iter().copied()).collect());
    let e = engine::explain(&b, g, plan, &dummy, target, &ExplainOptions { keep_layers })?;
    let mut outputs = vec![(LOGITS.to_string(), &e.output), (RELEVANCE.to_string(), &e.relevance)];
    let mut layer_outputs = Vec::new();
    if let Some(layers) = &e.layers {
        for (i, l) in layers.iter().enumerate() {
            if let Some(l) = l {
                let name = layer_output_name(i);
                layer_outputs.push((i, name.clone()));
                outputs.push((name, l));
            }
        }
    }
    Ok(Built { model: finish(b, outputs)?, layer_outputs })
}

/// The plain forward pass of `g` as an ONNX graph with the single output [`LOGITS`].
pub fn build_forward(g: &Graph) -> Result<ModelProto> {
    g.validate()?;
    let b = OnnxBuilder::new(g);
    let dummy = Tensor::zeros(std::iter::once(1).chain(g.input_shape().iter().copied()).collect());
    engine::forward(&b, g, &dummy)?;
    let out = b.st.borrow_mut().last_output.take().ok_or_else(|| err("forward pass produced no output"))?;
    finish(b, vec![(LOGITS.to_string(), &out)])
}

/// The transpose of a row-major `rows × cols` matrix.
fn transpose_matrix(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_geometry_restores_input_extent() {
        // len 7, k 3, stride 2, pads 1/1: out 4; full 9 → crop 1 at the end.
        let (p, o) = OnnxBuilder::transpose_geometry(&[7], &[4], &[3], &[2], &[1], &[1]);
        assert_eq!((p, o), (vec![1, 1], vec![0]));
        // len 8, k 3, stride 2, no pads: out 3; full 7 → output_padding 1.
        let (p, o) = OnnxBuilder::transpose_geometry(&[8], &[3], &[3], &[2], &[1], &[0]);
        assert_eq!((p, o), (vec![0, 0], vec![1]));
    }
}
