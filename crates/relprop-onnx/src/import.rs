//! ONNX → IR: graph-level work (decoding, constants, the input, node order, liveness, the output).
//! The per-op lowering lives in `convert.rs`.
//!
//! Everything read from the file is untrusted: sizes are checked before allocation, every lookup is fallible,
//! and each failure names the file or node at fault.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use prost::Message;
use relprop_core::{Error, Graph, Layout, Limits, Op, Result};

use crate::attrs::NodeCtx;
use crate::external;
use crate::shapes::ShapeValue;
use crate::proto::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::type_proto::Value as TypeValue;
use crate::proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::tensors::{declared_bytes, decode_tensor, Const, ConstData};

/// Per-sample element counts above this are rejected (2^40 floats = 4 TiB): it keeps every shape product in
/// range, so no later arithmetic can overflow.
pub(crate) const MAX_ELEMENTS: usize = 1 << 40;

/// How to import a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Drop a final Softmax/LogSoftmax instead of failing on it (LRP explains the pre-softmax logits).
    pub strip_softmax: bool,
    /// Upper bound on the decoded size of all initializers and constants together, checked before any of
    /// them is converted (default: `limits.max_bytes`, 4 GiB unless configured).
    pub max_initializer_bytes: u64,
    /// Node count and activation bounds (default [`Limits::global`]): a file with more ONNX nodes than
    /// `max_nodes` is refused before conversion, and the converted graph must satisfy
    /// [`Graph::check_limits`].
    pub limits: Limits,
}

impl Default for ImportOptions {
    fn default() -> Self {
        let limits = Limits::global();
        ImportOptions { strip_softmax: false, max_initializer_bytes: limits.max_bytes, limits }
    }
}

/// Load an ONNX file with default options.
pub fn load(path: &Path) -> Result<Graph> {
    load_with(path, &ImportOptions::default())
}

/// Load an ONNX file.
pub fn load_with(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    let label = path.display().to_string();
    let merr = |msg: String| Error::Model { file: label.clone(), msg };
    let meta = std::fs::metadata(path).map_err(|e| merr(format!("cannot read: {e}")))?;
    // Weights dominate a model file; one far larger than the weight limit is refused before reading it.
    let max_file = opts.max_initializer_bytes.saturating_mul(2).saturating_add(256 << 20);
    if meta.len() > max_file {
        return Err(merr(format!("file is {} bytes, more than the {max_file} allowed by max_initializer_bytes", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| merr(format!("cannot read: {e}")))?;
    let mut model = parse(&bytes, &merr)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    external::inline_external(&mut model, dir, opts.max_initializer_bytes).map_err(merr)?;
    import_model(&model, &label, opts)
}

fn parse(bytes: &[u8], merr: &dyn Fn(String) -> Error) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(merr("file is empty".into()));
    }
    ModelProto::decode(bytes).map_err(|e| merr(format!("not a valid ONNX protobuf (truncated or not ONNX?): {e}")))
}

/// Decode ONNX bytes with default options; `file_label` names the source in errors.
pub fn decode(bytes: &[u8], file_label: &str) -> Result<Graph> {
    decode_with(bytes, file_label, &ImportOptions::default())
}

/// Decode ONNX bytes; `file_label` names the source in errors.
pub fn decode_with(bytes: &[u8], file_label: &str, opts: &ImportOptions) -> Result<Graph> {
    let merr = |msg: String| Error::Model { file: file_label.into(), msg };
    import_model(&parse(bytes, &merr)?, file_label, opts)
}

/// Convert a decoded ONNX model into a validated IR graph.
pub fn import_model(model: &ModelProto, file_label: &str, opts: &ImportOptions) -> Result<Graph> {
    let merr = |msg: String| Error::Model { file: file_label.into(), msg };
    let g = model.graph.as_ref().ok_or_else(|| merr("holds no graph (is this an ONNX model?)".into()))?;
    if g.node.is_empty() {
        return Err(merr("graph has no nodes".into()));
    }
    if g.node.len() > opts.limits.max_nodes {
        return Err(merr(format!("graph has {} nodes, more than the limit of {} (RELPROP_MAX_NODES)", g.node.len(), opts.limits.max_nodes)));
    }
    let consts = collect_constants(g, opts, &merr)?;
    let (input_name, input_shape, batch) = parse_input(g, &consts, &merr)?;
    let [output] = g.output.as_slice() else {
        return Err(merr(format!("models must have exactly one output, this one has {}", g.output.len())));
    };
    let output_name = output.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| merr("the graph output has no name".into()))?;

    let names = unique_names(&g.node, &input_name);
    let mut imp = Importer {
        nodes: &g.node,
        names,
        consts,
        values: HashMap::from([(input_name.clone(), 0)]),
        consumers: HashMap::new(),
        output_name: output_name.clone(),
        done: vec![false; g.node.len()],
        graph: Graph::new(&input_name, input_shape),
        used_names: HashSet::new(),
        chainable: HashMap::new(),
        batch,
        shape_values: HashMap::new(),
        merged: HashMap::new(),
        spelled: HashMap::new(),
    };
    imp.used_names = imp.names.iter().cloned().chain([input_name.clone()]).collect();

    // Constant nodes were folded into `consts`; everything else is a computation.
    let mut active: Vec<bool> = g.node.iter().map(|n| !is_op(n, "Constant")).collect();
    let producers = producer_map(&imp, &active, &input_name, &merr)?;
    imp.output_name = imp.final_output(&producers, &mut active, opts)?;
    let order = imp.topo_order(&producers, &active)?;
    let live = imp.live_nodes(&producers, &active);
    for (k, n) in g.node.iter().enumerate() {
        if active[k] {
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                imp.consumers.entry(i.clone()).or_default().push(k);
            }
        }
    }

    imp.spelled = imp.find_spelled();
    for k in order {
        if live[k] && !imp.done[k] {
            imp.convert(k)?;
        }
    }

    if let Some((m, by)) = imp.merged.get(&imp.output_name) {
        return Err(merr(format!(
            "output '{}' still has the batch merged with {m} rows per sample: node '{by}' reshapes it to [-1, ...] \
             and nothing restores it",
            imp.output_name
        )));
    }
    let out = match imp.values.get(&imp.output_name) {
        Some(&id) => id,
        None if imp.consts.contains_key(&imp.output_name) => {
            return Err(merr(format!("output '{}' is a constant", imp.output_name)))
        }
        None => return Err(merr(format!("output '{}' is not produced by any node", imp.output_name))),
    };
    let mut graph = imp.graph;
    graph.output = out;
    let mut graph = drop_dead(graph);
    graph.layout = detect_layout(&graph);
    graph.producer = model.producer_name.clone().unwrap_or_default();
    check_output_shape(output, &graph, &merr)?;
    graph.check_limits(&opts.limits).map_err(|e| merr(e.to_string()))?;
    graph.validate()?;
    Ok(graph)
}

/// Conversion state shared with `convert.rs`.
pub(crate) struct Importer<'a> {
    pub nodes: &'a [NodeProto],
    /// Unique node names, index-aligned with `nodes`.
    pub names: Vec<String>,
    pub consts: HashMap<String, Rc<Const>>,
    /// ONNX value name → IR node computing it.
    pub values: HashMap<String, usize>,
    /// ONNX value name → indices of the nodes reading it (once per use).
    pub consumers: HashMap<String, Vec<usize>>,
    /// The value the IR graph outputs (the graph output, or the input of a stripped softmax).
    pub output_name: String,
    /// Nodes already absorbed into an earlier IR node (bias Adds, fused activations).
    pub done: Vec<bool>,
    pub graph: Graph,
    /// IR node names in use (generated helper nodes must not collide).
    pub used_names: HashSet<String>,
    /// IR nodes of an associative n-ary op (Add from an ONNX Add/Sum, Multiply, Maximum, Minimum) with their
    /// layer: a chain of the same op in one layer (Keras `Add([a, b, c])` → two ONNX Adds) merges into one node.
    pub chainable: HashMap<usize, String>,
    /// The file's batch size when it is a fixed number rather than symbolic.
    pub batch: Option<usize>,
    /// Integer values computed from shapes that involve the batch size (see `shapes.rs`).
    pub shape_values: HashMap<String, ShapeValue>,
    /// Values whose ONNX tensor has the batch merged with their first per-sample axis (`[N·m, ...]`, held in the
    /// IR as per-sample `[m, ...]`), with `m`: tf2onnx's Keras Dense on a rank-3 input (`convert.rs`,
    /// `reshape_op`), and the Reshape that merged it.
    pub merged: HashMap<String, (usize, String)>,
    /// Layers spelled out as several ONNX nodes (`patterns.rs`), by each of their nodes.
    pub spelled: HashMap<usize, crate::patterns::Spelled>,
}

/// Whether `n` is the standard-domain op `op`.
/// Whether `name` is one tf2onnx made up (`Slice__163`: an op name, two underscores, a number), not a Keras
/// layer's.
pub(crate) fn generated_name(name: &str) -> bool {
    name.split_once("__").is_some_and(|(op, n)| {
        !op.is_empty() && op.chars().all(|c| c.is_ascii_alphanumeric()) && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
    })
}

pub(crate) fn is_op(n: &NodeProto, op: &str) -> bool {
    n.op_type.as_deref() == Some(op) && matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx"))
}

impl<'a> Importer<'a> {
    pub fn ctx(&self, k: usize) -> NodeCtx<'a> {
        let nodes = self.nodes;
        let proto = &nodes[k];
        let name = self.names.get(k).cloned().unwrap_or_default();
        let layer = self.generated_node_layer(&name, proto).unwrap_or_else(|| crate::layer_of(&name).to_string());
        NodeCtx { proto, index: k, name, op: proto.op_type.as_deref().unwrap_or(""), layer }
    }

    /// tf2onnx names the nodes its rewriters create `<Op>__<n>` (a DepthwiseConv2D becomes `Conv__195`), which
    /// loses the Keras layer. A kernel op that reads its layer's variable takes that layer; any other such node
    /// the layer of its only reader (Shape nodes aside) when that one has a layer name (`model/dw/Relu`): so the
    /// conv and its activation stay one layer, as in Keras, for fused activations and for `until_layer_idx`. A
    /// Resize (`Resize__14`, Keras UpSampling) and a ThresholdedRelu (`ThresholdedRelu__266`, Keras
    /// ThresholdedReLU, whose `x · (x > θ)` tf2onnx's rewriter turns into one op without the layer's name) are
    /// the exceptions.
    fn generated_node_layer(&self, name: &str, proto: &NodeProto) -> Option<String> {
        // Always a Keras layer of its own: it keeps its name as its layer.
        if is_op(proto, "Resize") || is_op(proto, "ThresholdedRelu") {
            return None;
        }
        if !generated_name(name) {
            return None;
        }
        // A kernel op reading its layer's variable (`<layer>/<Op>/ReadVariableOp:0`): that layer; or, when the
        // file folded the variable into a constant, fed by the layout Transpose tf2onnx made for its TF op
        // (`<layer>/<Op>__<n>`, read by nothing else): that layer. A convolution without bias and activation
        // (tf2onnx writes Conv3D, or a DepthwiseConv2D with a multiplier before a BatchNormalization, so) has the
        // next layer as its only reader.
        if ["Conv", "ConvTranspose", "MatMul", "Gemm"].iter().any(|op| is_op(proto, op)) {
            let var = proto.input.get(1).and_then(|w| w.strip_suffix("/ReadVariableOp:0")).filter(|w| w.contains('/'));
            if let Some(var) = var {
                return Some(crate::layer_of(var).to_string());
            }
            let x = proto.input.first()?;
            let transpose = self.nodes.iter().position(|m| m.output.first() == Some(x)).filter(|&k| is_op(&self.nodes[k], "Transpose"));
            let tf_op = transpose.filter(|_| self.sole_consumer(x).is_some()).and_then(|k| self.names.get(k)?.rsplit_once("__"));
            if let Some((tf_op, _)) = tf_op.filter(|(op, n)| op.contains('/') && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())) {
                return Some(crate::layer_of(tf_op).to_string());
            }
        }
        let out = proto.output.first()?;
        if *out == self.output_name {
            return None;
        }
        // A Shape node only reads the size (tf2onnx's Tensordot computes its reshape target so).
        let readers: Vec<usize> = self.consumers.get(out)?.iter().copied().filter(|&k| !is_op(&self.nodes[k], "Shape")).collect();
        let [reader] = readers[..] else { return None };
        let reader_name = self.names.get(reader)?;
        let layer = crate::layer_of(reader_name);
        (layer != reader_name.as_str()).then(|| layer.to_string())
    }

    /// The one node reading `value`, if exactly one does and `value` is not the graph output.
    pub fn sole_consumer(&self, value: &str) -> Option<usize> {
        if value == self.output_name {
            return None;
        }
        match self.consumers.get(value).map(Vec::as_slice) {
            Some(&[k]) => Some(k),
            _ => None,
        }
    }

    /// Whether anything reads `value` (a node, or the graph output).
    pub fn is_used(&self, value: &str) -> bool {
        value == self.output_name || self.consumers.get(value).is_some_and(|c| !c.is_empty())
    }

    /// A fresh IR node name based on `base`.
    pub fn unique_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while self.used_names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    /// The value the IR graph ends in: the graph output, or, with `strip_softmax`, the input of a final
    /// Softmax/LogSoftmax (which is deactivated). Without the option a final softmax is an error.
    fn final_output(&self, producers: &HashMap<&str, usize>, active: &mut [bool], opts: &ImportOptions) -> Result<String> {
        let Some(&k) = producers.get(self.output_name.as_str()) else {
            return Ok(self.output_name.clone());
        };
        let ctx = self.ctx(k);
        if !(is_op(ctx.proto, "Softmax") || is_op(ctx.proto, "LogSoftmax")) {
            return Ok(self.output_name.clone());
        }
        let read_elsewhere = self.nodes.iter().enumerate().any(|(j, n)| active[j] && n.input.contains(&self.output_name));
        if !opts.strip_softmax || read_elsewhere {
            return Err(ctx.err(
                "the model ends in a softmax, but LRP explains the pre-softmax logits: remove the softmax before \
                 export (e.g. in Keras set model.layers[-1].activation = None / use signxai's remove_softmax), \
                 or pass strip_softmax to drop it",
            ));
        }
        active[k] = false;
        Ok(ctx.required_input(0)?.to_string())
    }

    /// Active nodes in an order where producers come first (ties keep file order). A cycle is an error
    /// naming a node on it.
    fn topo_order(&self, producers: &HashMap<&str, usize>, active: &[bool]) -> Result<Vec<usize>> {
        let n = self.nodes.len();
        let mut indeg = vec![0usize; n];
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (k, node) in self.nodes.iter().enumerate().filter(|(k, _)| active[*k]) {
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                match producers.get(i.as_str()) {
                    Some(&p) if active[p] => {
                        indeg[k] += 1;
                        succ[p].push(k);
                    }
                    Some(_) => {} // a stripped softmax: only reachable when nothing active reads it
                    None if self.values.contains_key(i) || self.consts.contains_key(i) => {}
                    None => {
                        return Err(self.ctx(k).err(format!("input '{i}' is not produced by any node, initializer or graph input")))
                    }
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&k| active[k] && indeg[k] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(k)) = ready.pop() {
            order.push(k);
            for &s in &succ[k] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if let Some(start) = (0..n).find(|&k| active[k] && indeg[k] > 0) {
            // Every unsorted node has an unsorted producer; walking back n steps must end inside a cycle.
            let mut k = start;
            for _ in 0..n {
                let back = self.nodes[k].input.iter().filter_map(|i| producers.get(i.as_str())).find(|&&p| active[p] && indeg[p] > 0);
                match back {
                    Some(&p) => k = p,
                    None => break,
                }
            }
            return Err(self.ctx(k).err("node is part of a cycle: the graph must be acyclic"));
        }
        Ok(order)
    }

    /// Active nodes the output depends on; the others are not converted.
    fn live_nodes(&self, producers: &HashMap<&str, usize>, active: &[bool]) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        let mut stack = vec![self.output_name.as_str()];
        while let Some(v) = stack.pop() {
            if let Some(&p) = producers.get(v) {
                if active[p] && !live[p] {
                    live[p] = true;
                    stack.extend(self.nodes[p].input.iter().map(String::as_str).filter(|i| !i.is_empty()));
                }
            }
        }
        live
    }
}

/// Value name → index of the active node producing it. A value defined twice is an error.
fn producer_map<'a>(imp: &Importer<'a>, active: &[bool], input: &str, merr: &dyn Fn(String) -> Error) -> Result<HashMap<&'a str, usize>> {
    let nodes: &'a [NodeProto] = imp.nodes;
    let mut producers = HashMap::new();
    for (k, n) in nodes.iter().enumerate().filter(|(k, _)| active[*k]) {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if o == input || imp.consts.contains_key(o) || producers.insert(o.as_str(), k).is_some() {
                return Err(merr(format!("value '{o}' is defined more than once (node '{}')", imp.names[k])));
            }
        }
    }
    Ok(producers)
}

/// Node names made unique and non-empty; the graph input's name is taken too.
fn unique_names(nodes: &[NodeProto], input: &str) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::from([input.to_string()]);
    // Next suffix worth trying per base name: suffixes below it are taken for good (`used` only grows), so
    // starting here gives the same names as counting from 1, without quadratic time on many equal names.
    let mut next: HashMap<String, usize> = HashMap::new();
    nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let base = match n.name.as_deref() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => format!("{}_{k}", n.op_type.as_deref().unwrap_or("node")),
            };
            let mut name = base.clone();
            let i = next.entry(base.clone()).or_insert(1);
            while !used.insert(name.clone()) {
                name = format!("{base}__{i}");
                *i += 1;
            }
            name
        })
        .collect()
}

/// All initializers and Constant node outputs, decoded once the total size has been checked.
fn collect_constants(g: &GraphProto, opts: &ImportOptions, merr: &dyn Fn(String) -> Error) -> Result<HashMap<String, Rc<Const>>> {
    let mut protos: Vec<(String, &TensorProto)> = Vec::new();
    let mut inline: Vec<(String, Const)> = Vec::new();
    for t in &g.initializer {
        let name = t.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| merr("an initializer has no name".into()))?;
        protos.push((name, t));
    }
    for n in g.node.iter().filter(|n| is_op(n, "Constant")) {
        let node_name = n.name.clone().unwrap_or_default();
        let nerr = |msg: &str| Error::node(&node_name, "Constant", msg);
        let out = n.output.first().filter(|o| !o.is_empty()).ok_or_else(|| nerr("has no output"))?.clone();
        let [a] = n.attribute.as_slice() else { return Err(nerr("must have exactly one value attribute")) };
        match a.name.as_deref().unwrap_or("") {
            "value" => protos.push((out, a.t.as_ref().ok_or_else(|| nerr("attribute 'value' holds no tensor"))?)),
            "value_float" => inline.push((out, Const { dims: vec![], data: ConstData::F32(vec![a.f.unwrap_or(0.0)]) })),
            "value_floats" => inline.push((out, Const { dims: vec![a.floats.len()], data: ConstData::F32(a.floats.clone()) })),
            "value_int" => inline.push((out, Const { dims: vec![], data: ConstData::I64(vec![a.i.unwrap_or(0)]) })),
            "value_ints" => inline.push((out, Const { dims: vec![a.ints.len()], data: ConstData::I64(a.ints.clone()) })),
            other => return Err(nerr(&format!("constant attribute '{other}' is not supported"))),
        }
    }
    let mut total: u64 = 0;
    for (name, t) in &protos {
        let b = declared_bytes(t).map_err(|m| merr(format!("initializer '{name}': {m}")))?;
        total = total.saturating_add(b);
    }
    if total > opts.max_initializer_bytes {
        return Err(merr(format!("initializers take {total} bytes, more than the limit of {} (ImportOptions::max_initializer_bytes)", opts.max_initializer_bytes)));
    }
    let mut consts = HashMap::new();
    let decoded = protos.into_iter().map(|(name, t)| decode_tensor(t).map(|c| (name.clone(), c)).map_err(|m| merr(format!("initializer '{name}': {m}"))));
    for item in decoded.chain(inline.into_iter().map(Ok)) {
        let (name, c) = item?;
        if consts.insert(name.clone(), Rc::new(c)).is_some() {
            return Err(merr(format!("constant '{name}' is defined more than once")));
        }
    }
    Ok(consts)
}

/// The single non-initializer graph input: its name, per-sample shape and fixed batch size (if any).
fn parse_input(g: &GraphProto, consts: &HashMap<String, Rc<Const>>, merr: &dyn Fn(String) -> Error) -> Result<(String, Vec<usize>, Option<usize>)> {
    let inputs: Vec<&ValueInfoProto> = g.input.iter().filter(|vi| !vi.name.as_ref().is_some_and(|n| consts.contains_key(n))).collect();
    let [vi] = inputs.as_slice() else {
        return Err(merr(format!("only single-input models are supported, this one has {} inputs", inputs.len())));
    };
    let name = vi.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| merr("the graph input has no name".into()))?;
    let ierr = |msg: String| merr(format!("input '{name}': {msg}"));
    let Some(TypeValue::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(ierr("is not a tensor".into()));
    };
    if let Some(e) = tt.elem_type.filter(|&e| e != crate::proto::tensor_proto::DataType::Float as i32) {
        return Err(ierr(format!("element type {e} is not supported, only float32 is")));
    }
    let dims = tt.shape.as_ref().map(|s| s.dim.as_slice()).ok_or_else(|| ierr("has no shape".into()))?;
    let Some((first, rest)) = dims.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Err(ierr(format!("needs a batch axis and at least one more axis, has rank {}", dims.len())));
    };
    let batch = match first.value {
        Some(DimValue::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
        _ => None,
    };
    let mut shape = Vec::with_capacity(rest.len());
    let mut count: usize = 1;
    for (a, d) in rest.iter().enumerate() {
        let v = match d.value {
            Some(DimValue::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
            _ => None,
        };
        let v = v.ok_or_else(|| ierr(format!("axis {} must be a fixed positive size (only the batch axis may be symbolic), got {:?}", a + 1, d.value)))?;
        count = count.checked_mul(v).filter(|&c| c <= MAX_ELEMENTS).ok_or_else(|| ierr("shape is too large".into()))?;
        shape.push(v);
    }
    Ok((name, shape, batch))
}

/// Remove nodes the output does not depend on (merged Add chains, collapsed reshapes), keeping the input.
fn drop_dead(graph: Graph) -> Graph {
    let live = graph.live();
    let mut map = vec![0usize; graph.nodes.len()];
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for (i, mut n) in graph.nodes.into_iter().enumerate() {
        if i == 0 || live.get(i).copied().unwrap_or(false) {
            map[i] = nodes.len();
            // Live nodes only read live nodes, which come earlier and are already mapped.
            n.inputs = n.inputs.iter().map(|&j| map.get(j).copied().unwrap_or(0)).collect();
            nodes.push(n);
        }
    }
    let output = map.get(graph.output).copied().unwrap_or(0);
    Graph { nodes, output, ..graph }
}

/// tf2onnx models start with a Transpose NHWC→NCHW; channels-first models feed a conv or pool directly.
fn detect_layout(graph: &Graph) -> Layout {
    let consumers = graph.consumers();
    let rank = graph.input_shape().len() + 1;
    let mut to_channels_first: Vec<usize> = vec![0, rank - 1];
    to_channels_first.extend(1..rank - 1);
    let mut frontier = vec![0usize];
    let mut layout = Layout::Unknown;
    while let Some(i) = frontier.pop() {
        for &c in consumers.get(i).map(Vec::as_slice).unwrap_or(&[]) {
            match &graph.nodes[c].op {
                Op::Identity => frontier.push(c),
                Op::Transpose { perm } if rank >= 3 && *perm == to_channels_first => return Layout::ChannelsLast,
                Op::Conv(_) | Op::MaxPool(_) | Op::AvgPool(_) | Op::GlobalAvgPool | Op::GlobalMaxPool => layout = Layout::ChannelsFirst,
                _ => {}
            }
        }
    }
    layout
}

/// When the file states the output's per-sample shape, it must agree with what the IR computed.
fn check_output_shape(vi: &ValueInfoProto, graph: &Graph, merr: &dyn Fn(String) -> Error) -> Result<()> {
    let Some(TypeValue::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else { return Ok(()) };
    let Some(shape) = tt.shape.as_ref() else { return Ok(()) };
    let declared: Option<Vec<usize>> = shape
        .dim
        .iter()
        .skip(1)
        .map(|d| match d.value {
            Some(DimValue::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
            _ => None,
        })
        .collect();
    match declared {
        Some(d) if !shape.dim.is_empty() && d != graph.output_shape() => Err(merr(format!(
            "the file declares output per-sample shape {d:?}, but the graph computes {:?}",
            graph.output_shape()
        ))),
        _ => Ok(()),
    }
}
