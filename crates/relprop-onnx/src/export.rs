//! IR → ONNX: write a relprop graph as a plain channels-first ONNX model (opset 17, or 20 when it needs Gelu).
//!
//! Each IR node becomes one or a few ONNX nodes named `<layer>/<OnnxOp>`, so the importer's layer rule
//! ([`crate::layer_of`]) recovers the grouping: Dense is MatMul + Add, a fused activation is a separate node of
//! the same layer (re-fused on import), GlobalAvgPool is GlobalAveragePool + Reshape to `(C,)`.

use std::collections::HashSet;

use prost::Message;
use relprop_core::{Activation, Conv, Coordinates, Graph, Interpolation, Merge, Node, Op, PadMode, Pool, Tensor};

use crate::builder::{
    attr_float, attr_int, attr_ints, attr_string, make_graph, make_model, make_node, make_tensor, make_tensor_f32, make_tensor_i64,
    value_info,
};
use crate::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// Serialize a model to ONNX protobuf bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Write an IR graph as an ONNX model. The graph should be valid ([`Graph::validate`]); an invalid one still
/// produces a model (never a panic) that ONNX tools or [`crate::decode`] will then reject.
pub fn graph_to_onnx(graph: &Graph) -> ModelProto {
    let mut w = Writer::default();
    let mut values: Vec<String> = Vec::with_capacity(graph.nodes.len());
    for (i, n) in graph.nodes.iter().enumerate() {
        if i == 0 {
            w.used.insert(n.name.clone());
            values.push(n.name.clone());
            continue;
        }
        let ins: Vec<String> = n.inputs.iter().map(|&j| values.get(j).cloned().unwrap_or_default()).collect();
        let out = w.node(n, &ins);
        values.push(out);
    }
    let (input_name, input_shape) = graph.nodes.first().map(|n| (n.name.as_str(), n.shape.as_slice())).unwrap_or(("input", &[]));
    let out_node = graph.nodes.get(graph.output);
    let output = value_info(
        values.get(graph.output).map(String::as_str).unwrap_or(""),
        out_node.map(|n| n.shape.as_slice()).unwrap_or(&[]),
    );
    let opset = if w.needs_opset_20 { 20 } else { 17 };
    let g = make_graph("relprop", w.nodes, vec![value_info(input_name, input_shape)], vec![output], w.inits);
    make_model(g, opset)
}

#[derive(Default)]
struct Writer {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Node and value names taken so far.
    used: HashSet<String>,
    /// Gelu only exists from opset 20 on.
    needs_opset_20: bool,
}

fn ints(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

impl Writer {
    /// A fresh node name `<layer>/<op>` (suffixed `_1`, `_2`, ... when taken).
    fn fresh(&mut self, layer: &str, op: &str) -> String {
        let base = format!("{layer}/{op}");
        let mut name = base.clone();
        let mut k = 1;
        while self.used.contains(&name) || self.used.contains(&format!("{name}:0")) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    /// Add an initializer named after its node; returns its name.
    fn init(&mut self, node: &str, what: &str, t: TensorProto) -> String {
        let name = format!("{node}/{what}");
        self.inits.push(TensorProto { name: Some(name.clone()), ..t });
        name
    }

    fn weight(&mut self, node: &str, what: &str, t: &Tensor) -> String {
        self.init(node, what, make_tensor(what, t))
    }

    /// Emit one node named `name` reading `inputs`; returns its output value name.
    fn emit(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = format!("{name}:0");
        self.used.insert(out.clone());
        self.nodes.push(make_node(op, name, inputs, &[&out], attrs));
        out
    }

    /// Fresh name + emit, for nodes without initializers.
    fn simple(&mut self, op: &str, layer: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let name = self.fresh(layer, op);
        self.emit(op, &name, inputs, attrs)
    }

    /// Emit the ONNX nodes of one IR node; returns the value holding its output.
    fn node(&mut self, n: &Node, ins: &[String]) -> String {
        let layer = n.layer.as_str();
        let x = ins.first().map(String::as_str).unwrap_or("");
        let in_refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        match &n.op {
            Op::Dense(d) => {
                let name = self.fresh(layer, "MatMul");
                let wname = self.weight(&name, "W", &d.weight);
                let mut out = self.emit("MatMul", &name, &[x, &wname], vec![]);
                if let Some(b) = &d.bias {
                    let name = self.fresh(layer, "Add");
                    let bname = self.weight(&name, "B", b);
                    out = self.emit("Add", &name, &[&out, &bname], vec![]);
                }
                match &d.activation {
                    Some(a) => self.activation(layer, a, &out),
                    None => out,
                }
            }
            Op::Conv(c @ Conv { transposed: Some(op), .. }) => {
                let name = self.fresh(layer, "ConvTranspose");
                let mut inputs = vec![x.to_string(), self.weight(&name, "W", &c.weight)];
                if let Some(b) = &c.bias {
                    inputs.push(self.weight(&name, "B", b));
                }
                let pads: Vec<usize> = c.pads_begin.iter().chain(&c.pads_end).copied().collect();
                let attrs = vec![
                    attr_ints("kernel_shape", &ints(c.kernel())),
                    attr_ints("strides", &ints(&c.strides)),
                    attr_ints("dilations", &ints(&c.dilations)),
                    attr_ints("pads", &ints(&pads)),
                    attr_ints("output_padding", &ints(op)),
                    attr_int("group", c.groups as i64),
                ];
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let out = self.emit("ConvTranspose", &name, &refs, attrs);
                match &c.activation {
                    Some(a) => self.activation(layer, a, &out),
                    None => out,
                }
            }
            Op::Conv(c) => {
                // A SeparableConv is written as tf2onnx writes Keras': its first stage in a nested name scope
                // (`<layer>/separable_conv/depthwise`), the pointwise stage with the bias in the layer itself, which
                // is how the importer recognises the pair as one layer.
                let stages = c.stages();
                let mut out = x.to_string();
                for (k, st) in stages.iter().enumerate() {
                    let name = if k + 1 < stages.len() {
                        self.fresh(&format!("{layer}/separable_conv"), "depthwise")
                    } else {
                        self.fresh(layer, "Conv")
                    };
                    let wname = self.weight(&name, "W", &st.weight);
                    let mut inputs = vec![out.clone(), wname];
                    if let (Some(b), true) = (&c.bias, k + 1 == stages.len()) {
                        inputs.push(self.weight(&name, "B", b));
                    }
                    let pads: Vec<usize> = st.pads_begin.iter().chain(&st.pads_end).copied().collect();
                    let attrs = vec![
                        attr_ints("kernel_shape", &ints(st.weight.shape.get(2..).unwrap_or(&[]))),
                        attr_ints("strides", &ints(&st.strides)),
                        attr_ints("dilations", &ints(&st.dilations)),
                        attr_ints("pads", &ints(&pads)),
                        attr_int("group", st.groups as i64),
                    ];
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    out = self.emit("Conv", &name, &refs, attrs);
                }
                match &c.activation {
                    Some(a) => self.activation(layer, a, &out),
                    None => out,
                }
            }
            Op::MaxPool(p) => self.simple("MaxPool", layer, &[x], pool_attrs(p, false)),
            Op::AvgPool(p) => self.simple("AveragePool", layer, &[x], pool_attrs(p, true)),
            Op::GlobalAvgPool | Op::GlobalMaxPool => {
                let op = if n.op == Op::GlobalAvgPool { "GlobalAveragePool" } else { "GlobalMaxPool" };
                let pooled = self.simple(op, layer, &[x], vec![]);
                // ONNX keeps the spatial axes as 1s; the IR's output is (C,).
                self.reshape(layer, &pooled, &n.shape)
            }
            Op::Affine(b) => {
                // A Mul and an Add by per-channel constants, which read back as an Affine (a BatchNormalization
                // node would read back as a BN layer, with the BN rule).
                let (scale, shift) = b.scale_shift();
                let shape: Vec<usize> = std::iter::once(scale.len()).chain(n.shape.iter().skip(1).map(|_| 1)).collect();
                let mul = self.fresh(layer, "Mul");
                let a = self.weight(&mul, "scale", &Tensor { shape: shape.clone(), data: scale });
                let scaled = self.emit("Mul", &mul, &[x, &a], vec![]);
                let add = self.fresh(layer, "Add");
                let c = self.weight(&add, "shift", &Tensor { shape, data: shift });
                self.emit("Add", &add, &[&scaled, &c], vec![])
            }
            Op::BatchNorm(b) => {
                let name = self.fresh(layer, "BatchNormalization");
                let params = [("scale", &b.gamma), ("B", &b.beta), ("mean", &b.mean), ("var", &b.var)];
                let mut inputs = vec![x.to_string()];
                for (what, t) in params {
                    inputs.push(self.weight(&name, what, t));
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.emit("BatchNormalization", &name, &refs, vec![attr_float("epsilon", b.epsilon)])
            }
            Op::PRelu { slope } => {
                let name = self.fresh(layer, "PRelu");
                let a = self.weight(&name, "slope", slope);
                self.emit("PRelu", &name, &[x, &a], vec![])
            }
            Op::LayerNorm(l) => {
                let name = self.fresh(layer, "LayerNormalization");
                let (scale, bias) = (self.weight(&name, "scale", &l.gamma), self.weight(&name, "B", &l.beta));
                let attrs = vec![attr_int("axis", -(l.axes as i64)), attr_float("epsilon", l.epsilon)];
                self.emit("LayerNormalization", &name, &[x, &scale, &bias], attrs)
            }
            Op::Add => self.simple(if ins.len() == 2 { "Add" } else { "Sum" }, layer, &in_refs, vec![]),
            Op::Mean => self.simple("Mean", layer, &in_refs, vec![]),
            Op::Merge(m) => match m {
                // ONNX Mul and Sub are binary: a Multiply of more inputs is a chain in the layer (read back as one).
                Merge::Multiply => {
                    let mut out = in_refs[0].to_string();
                    for other in &in_refs[1..] {
                        out = self.simple("Mul", layer, &[&out, other], vec![]);
                    }
                    out
                }
                Merge::Subtract => self.simple("Sub", layer, &in_refs, vec![]),
                Merge::Maximum => self.simple("Max", layer, &in_refs, vec![]),
                Merge::Minimum => self.simple("Min", layer, &in_refs, vec![]),
            },
            Op::Reshape => self.reshape(layer, x, &n.shape),
            Op::Transpose { perm } => self.simple("Transpose", layer, &[x], vec![attr_ints("perm", &ints(perm))]),
            Op::Slice { begin, end } => {
                let name = self.fresh(layer, "Slice");
                let axes: Vec<i64> = (1..=begin.len() as i64).collect();
                let t = |v: Vec<i64>| make_tensor_i64("", &[v.len()], &v);
                let s = self.init(&name, "starts", t(ints(begin)));
                let e = self.init(&name, "ends", t(ints(end)));
                let a = self.init(&name, "axes", t(axes));
                self.emit("Slice", &name, &[x, &s, &e, &a], vec![])
            }
            Op::Pad { begin, end, mode } => {
                let name = self.fresh(layer, "Pad");
                // Full-rank pads: the batch axis gets none.
                let pads: Vec<i64> = std::iter::once(0).chain(ints(begin)).chain([0]).chain(ints(end)).collect();
                let pname = self.init(&name, "pads", make_tensor_i64("", &[pads.len()], &pads));
                let mut ins = vec![x.to_string(), pname];
                if let PadMode::Constant(value) = mode {
                    ins.push(self.init(&name, "value", make_tensor_f32("", &[], &[*value])));
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                self.emit("Pad", &name, &ins, vec![attr_string("mode", mode.onnx_name())])
            }
            Op::Concat { axis } => self.simple("Concat", layer, &in_refs, vec![attr_int("axis", *axis as i64 + 1)]),
            Op::Upsample { factors, mode } => {
                // Nearest mode with the `asymmetric` / `floor` index mapping: output i reads input ⌊i / f⌋.
                let name = self.fresh(layer, "Resize");
                let scales: Vec<f32> = [1.0, 1.0].into_iter().chain(factors.iter().map(|&f| f as f32)).collect();
                let s = self.init(&name, "scales", make_tensor_f32("", &[scales.len()], &scales));
                let attrs = match mode {
                    Interpolation::Nearest => vec![
                        attr_string("mode", "nearest"),
                        attr_string("coordinate_transformation_mode", "asymmetric"),
                        attr_string("nearest_mode", "floor"),
                    ],
                    Interpolation::Linear(c) => vec![
                        attr_string("mode", "linear"),
                        attr_string("coordinate_transformation_mode", match c {
                            Coordinates::HalfPixel => "half_pixel",
                            Coordinates::AlignCorners => "align_corners",
                            Coordinates::Asymmetric => "asymmetric",
                        }),
                    ],
                };
                self.emit("Resize", &name, &[x, "", &s], attrs)
            }
            Op::Activation(a) => self.activation(layer, a, x),
            Op::Identity | Op::Input => self.simple("Identity", layer, &in_refs, vec![]),
        }
    }

    /// Reshape to the per-sample `shape`, keeping the batch axis (target entry 0 = copy).
    fn reshape(&mut self, layer: &str, x: &str, shape: &[usize]) -> String {
        let name = self.fresh(layer, "Reshape");
        let target: Vec<i64> = std::iter::once(0).chain(ints(shape)).collect();
        let sname = self.init(&name, "shape", make_tensor_i64("", &[target.len()], &target));
        self.emit("Reshape", &name, &[x, &sname], vec![])
    }

    fn activation(&mut self, layer: &str, a: &Activation, x: &str) -> String {
        match *a {
            Activation::Relu => self.simple("Relu", layer, &[x], vec![]),
            Activation::LeakyRelu(alpha) => self.simple("LeakyRelu", layer, &[x], vec![attr_float("alpha", alpha)]),
            Activation::Elu(alpha) => self.simple("Elu", layer, &[x], vec![attr_float("alpha", alpha)]),
            Activation::Sigmoid => self.simple("Sigmoid", layer, &[x], vec![]),
            Activation::Tanh => self.simple("Tanh", layer, &[x], vec![]),
            Activation::HardSwish => self.simple("HardSwish", layer, &[x], vec![]),
            Activation::Softsign => self.simple("Softsign", layer, &[x], vec![]),
            Activation::Celu(alpha) => self.simple("Celu", layer, &[x], vec![attr_float("alpha", alpha)]),
            Activation::Exp => self.simple("Exp", layer, &[x], vec![]),
            Activation::ThresholdedRelu(t) => self.simple("ThresholdedRelu", layer, &[x], vec![attr_float("alpha", t)]),
            Activation::LogSigmoid => {
                let sig = self.simple("Sigmoid", layer, &[x], vec![]);
                self.simple("Log", layer, &[&sig], vec![])
            }
            Activation::Swish => {
                let sig = self.simple("Sigmoid", layer, &[x], vec![]);
                self.simple("Mul", layer, &[x, &sig], vec![])
            }
            Activation::Softplus => self.simple("Softplus", layer, &[x], vec![]),
            Activation::Selu => self.simple("Selu", layer, &[x], vec![]),
            Activation::Gelu => {
                self.needs_opset_20 = true;
                self.simple("Gelu", layer, &[x], vec![])
            }
            Activation::HardSigmoid { alpha, beta } => {
                self.simple("HardSigmoid", layer, &[x], vec![attr_float("alpha", alpha), attr_float("beta", beta)])
            }
            Activation::Clip { min, max } => {
                // Opset >= 11 takes the bounds as optional scalar inputs; an infinite bound is left out.
                let name = self.fresh(layer, "Clip");
                let mut inputs = vec![x.to_string()];
                for (what, v) in [("min", min), ("max", max)] {
                    let input = if v.is_finite() { self.init(&name, what, make_tensor_f32("", &[], &[v])) } else { String::new() };
                    inputs.push(input);
                }
                while inputs.last().is_some_and(String::is_empty) {
                    inputs.pop();
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.emit("Clip", &name, &refs, vec![])
            }
        }
    }
}

fn pool_attrs(p: &Pool, avg: bool) -> Vec<AttributeProto> {
    let pads: Vec<usize> = p.pads_begin.iter().chain(&p.pads_end).copied().collect();
    let mut attrs = vec![
        attr_ints("kernel_shape", &ints(&p.kernel)),
        attr_ints("strides", &ints(&p.strides)),
        attr_ints("pads", &ints(&pads)),
        attr_int("ceil_mode", p.ceil_mode as i64),
    ];
    if avg {
        attrs.push(attr_int("count_include_pad", p.count_include_pad as i64));
    }
    attrs
}
