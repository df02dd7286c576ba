//! Resolving an analyzer preset on a concrete graph: one rule per layer (SPEC 2 and 7).

use std::fmt::Write as _;

use crate::analyzers::{Analyzer, KernelChoice};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::rules::Rule;

/// What a layer does in the backward pass.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerRule {
    /// The model input: relevance ends here.
    Input,
    /// A Dense or Conv layer with its configured rule.
    Kernel(Rule),
    /// signxai's BatchNormalizationReverseRule (always; `bn_layer_rule` has no effect, SPEC 2).
    BatchNorm,
    /// Z rule on average pooling (AvgPool, GlobalAvgPool).
    AvgPoolZ,
    /// Z rule on a residual sum.
    AddZ,
    /// Relevance passes unchanged (activations, dropout, identity).
    Identity,
    /// The plain vector-Jacobian product (max pooling routing, reshape, transpose, pad, concat).
    Gradient,
}

impl std::fmt::Display for LayerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerRule::Input => write!(f, "-"),
            LayerRule::Kernel(r) => write!(f, "{r}"),
            LayerRule::BatchNorm => write!(f, "BatchNorm rule (Z, absorbed shift, sign-aware 1e-7)"),
            LayerRule::AvgPoolZ => write!(f, "AvgPool Z rule"),
            LayerRule::AddZ => write!(f, "Add Z rule"),
            LayerRule::Identity => write!(f, "identity"),
            LayerRule::Gradient => write!(f, "gradient"),
        }
    }
}

/// One rule per node of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePlan {
    /// The analyzer or method the plan was made from.
    pub analyzer: String,
    /// Indexed like `Graph::nodes`.
    pub layers: Vec<LayerRule>,
}

/// signxai's `is_input_layer`: every path back to the input passes only through layout ops
/// (Flatten, Reshape, Permute/Transpose, ZeroPadding).
pub fn is_input_layer(g: &Graph, node: usize) -> bool {
    let n = &g.nodes[node];
    !n.inputs.is_empty()
        && n.inputs.iter().all(|&i| {
            let mut j = i;
            loop {
                let m = &g.nodes[j];
                match &m.op {
                    Op::Input => return true,
                    op if op.is_layout() && m.inputs.len() == 1 => j = m.inputs[0],
                    _ => return false,
                }
            }
        })
}

/// Whether two nodes' layer names belong to one Keras layer: equal, or one a path prefix of the other
/// (tf2onnx names the nodes it adds inside a layer `model/conv/Conv1D/Squeeze` next to `model/conv/BiasAdd`).
pub(crate) fn same_layer(a: &str, b: &str) -> bool {
    let nested = |long: &str, short: &str| long.len() > short.len() && long.starts_with(short) && long.as_bytes()[short.len()] == b'/';
    a == b || nested(a, b) || nested(b, a)
}

/// What signxai's layer walks see a Keras layer as (SPEC 7); a layer of several nodes takes the largest kind
/// among them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LayerKind {
    /// Flatten, Permute, Reshape: `is_layer_at_idx` and `is_input_layer` look through them.
    Reshaping,
    /// ZeroPadding: only `is_input_layer` looks through it.
    Padding,
    Other,
}

/// For every node `t`, the Keras layers right below its layer and the kind of its layer. A Keras layer is a run of
/// connected nodes whose successive layer names are equal or nested (tf2onnx splits one layer into several
/// nodes); "below" lists the first node of each other layer reached walking back (`Some`) or the model input
/// (`None`), sorted, no repeats. Computed in topological order from the inputs' own results, so a long run of
/// nodes in one layer stays linear.
fn layers_below(g: &Graph) -> (Vec<Vec<Option<usize>>>, Vec<LayerKind>) {
    let n = g.nodes.len();
    let (mut below, mut kinds): (Vec<Vec<Option<usize>>>, Vec<LayerKind>) = (vec![Vec::new(); n], vec![LayerKind::Other; n]);
    for t in 0..n {
        let m = &g.nodes[t];
        if m.op == Op::Input {
            continue;
        }
        let mut kind = match &m.op {
            op if op.skipped_by_layer_index() => LayerKind::Reshaping,
            Op::Pad { .. } => LayerKind::Padding,
            _ => LayerKind::Other,
        };
        let mut b = Vec::new();
        for &i in m.inputs.iter().filter(|&&i| i < t) {
            let inner = &g.nodes[i];
            if inner.op == Op::Input {
                b.push(None);
            } else if same_layer(&inner.layer, &m.layer) {
                b.extend(below[i].iter().copied());
                kind = kind.max(kinds[i]);
            } else {
                b.push(Some(i));
            }
        }
        b.sort_unstable();
        b.dedup();
        (below[t], kinds[t]) = (b, kind);
    }
    (below, kinds)
}

/// For every node, the layer indices `i <= max` at which signxai's `is_layer_at_idx(layer, i)` holds for its
/// Keras layer (SPEC 7; `until_layer_idx = k` gives `until_index_rule` to the kernel layers with an index
/// `<= k`). signxai keeps a set of layers, starting with the layer itself. Each of the `i` steps first replaces
/// the Flatten/Permute/Reshape layers in the set by their inputs, then every layer by its inputs, and fails
/// once the set holds the model input; at the end every layer in the set must be an input layer
/// ([`is_input_layer`], which also looks through ZeroPadding). On a chain that counts the layers below,
/// ZeroPadding included and reshapes in between not; a conv right after a ZeroPadding has two indices (input
/// layer: 0; one step to the pad: 1). On branches every path must reach an input layer in the same number of
/// steps. Linear on chains (a layer with one layer below takes that layer's indices plus one); branches
/// follow the set.
pub fn layer_indices(g: &Graph, max: usize) -> Result<Vec<LayerIndices>> {
    let n = g.nodes.len();
    let (below, kind) = layers_below(g);
    // signxai's is_input_layer: the layers below, through reshaping and padding layers, are all the input.
    let mut input_layer = vec![false; n];
    for t in 0..n {
        input_layer[t] = g.nodes[t].op != Op::Input
            && below[t].iter().all(|b| b.is_none_or(|i| i < t && kind[i] != LayerKind::Other && input_layer[i]));
    }
    let step = |set: &[Option<usize>]| -> Vec<Option<usize>> {
        // Replace reshaping layers by what is below them (repeatedly), then every layer by its inputs.
        let mut set = set.to_vec();
        while set.iter().any(|s| s.is_some_and(|i| kind[i] == LayerKind::Reshaping)) {
            set = set
                .iter()
                .flat_map(|s| match s {
                    Some(i) if kind[*i] == LayerKind::Reshaping => below[*i].clone(),
                    s => vec![*s],
                })
                .collect();
        }
        let mut next: Vec<Option<usize>> = set.iter().flatten().flat_map(|&i| below[i].iter().copied()).collect();
        next.sort_unstable();
        next.dedup();
        next
    };
    let mut idx: Vec<LayerIndices> = vec![LayerIndices::default(); n];
    let mut work = 0usize;
    for t in (0..n).filter(|&t| g.nodes[t].op != Op::Input) {
        let mut a = LayerIndices::default();
        if input_layer[t] {
            a.at.push(0);
        }
        let first = step(&[Some(t)]);
        match first.as_slice() {
            // One layer below (a chain): its indices, one step further.
            [Some(p)] if *p < t => {
                a.at.extend(idx[*p].at.iter().map(|i| i + 1).filter(|&i| i <= max));
                a.from = idx[*p].from.map(|f| f + 1).filter(|&f| f <= max);
            }
            f if f.contains(&None) => {}
            _ => {
                let mut set = first;
                for i in 1..=max {
                    // Wide, deep branching (hostile graphs) could make this cubic: bounded work, then an error.
                    work += set.len();
                    if work > WALK_BUDGET {
                        return Err(Error::node(&g.nodes[t].name, g.nodes[t].op.kind(), format!(
                            "following signxai's layer walk (until_layer_idx) through this graph's branches takes more \
                             than {WALK_BUDGET} steps"
                        )));
                    }
                    if set.is_empty() {
                        // signxai's all([]) is true: every further index holds.
                        a.from = Some(i);
                        break;
                    }
                    if set.iter().all(|s| s.is_none_or(|j| input_layer[j])) {
                        a.at.push(i);
                    }
                    set = step(&set);
                    if set.contains(&None) {
                        break;
                    }
                }
            }
        }
        idx[t] = a;
    }
    Ok(idx)
}

/// Set elements [`layer_indices`] may visit on branches before it gives up (real models need thousands).
const WALK_BUDGET: usize = 50_000_000;

/// The layer indices of one layer ([`layer_indices`]): `at`, and every index from `from` on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerIndices {
    pub at: Vec<usize>,
    pub from: Option<usize>,
}

impl LayerIndices {
    /// Whether `is_layer_at_idx(layer, i)` holds for some `i <= k` (what `until_layer_idx = k` asks).
    pub fn any_up_to(&self, k: usize) -> bool {
        self.at.iter().any(|&i| i <= k) || self.from.is_some_and(|f| f <= k)
    }

    /// Whether `is_layer_at_idx(layer, i)` holds.
    pub fn contains(&self, i: usize) -> bool {
        self.at.contains(&i) || self.from.is_some_and(|f| f <= i)
    }
}

impl std::fmt::Display for LayerIndices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.at.iter().map(usize::to_string).collect();
        parts.extend(self.from.map(|k| format!("{k}…")));
        write!(f, "{}", parts.join("/"))
    }
}

/// [`is_input_layer`] for every node at once, in linear time (deep graphs would make per-node walks quadratic).
pub fn input_layers(g: &Graph) -> Vec<bool> {
    // reach[j]: node j is the input or reaches it through single-input layout ops only
    let mut reach = vec![false; g.nodes.len()];
    for (j, m) in g.nodes.iter().enumerate() {
        reach[j] = match &m.op {
            Op::Input => true,
            op if op.is_layout() && m.inputs.len() == 1 => m.inputs[0] < j && reach[m.inputs[0]],
            _ => false,
        };
    }
    g.nodes.iter().enumerate().map(|(j, n)| !n.inputs.is_empty() && n.inputs.iter().all(|&i| i < j && reach[i])).collect()
}

impl RulePlan {
    /// Resolve `a` on `g`. Priority as in signxai: input_layer_rule, then the until-index rules, then the
    /// preset's rule (dense/conv split for the composites).
    pub fn resolve(g: &Graph, a: &Analyzer) -> Result<RulePlan> {
        let inputs = input_layers(g);
        let until_at = a.until.as_ref().map(|(idx, _)| layer_indices(g, (*idx).min(g.nodes.len()))).transpose()?;
        let layers = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.op {
                Op::Input => LayerRule::Input,
                Op::Dense(_) | Op::Conv(_) => {
                    let rule = if let (Some(r), true) = (&a.input_layer_rule, inputs[i]) {
                        r.clone()
                    } else if let Some((_, r)) = a.until.as_ref().filter(|(k, _)| until_at.as_ref().is_some_and(|at| at[i].any_up_to(*k))) {
                        r.clone()
                    } else {
                        match &a.kernel {
                            KernelChoice::All(r) => r.clone(),
                            KernelChoice::Composite { dense, conv } => {
                                if matches!(n.op, Op::Dense(_)) { dense.clone() } else { conv.clone() }
                            }
                        }
                    };
                    LayerRule::Kernel(rule)
                }
                Op::BatchNorm(_) => LayerRule::BatchNorm,
                Op::AvgPool(_) | Op::GlobalAvgPool => LayerRule::AvgPoolZ,
                Op::Add => LayerRule::AddZ,
                Op::Activation(_) | Op::Identity | Op::Affine(_) | Op::LayerNorm(_) | Op::PRelu { .. } => LayerRule::Identity,
                Op::MaxPool(_)
                | Op::GlobalMaxPool
                | Op::Reshape
                | Op::Transpose { .. }
                | Op::Pad { .. }
                | Op::Slice { .. }
                | Op::Concat { .. }
                | Op::Merge(_)
                | Op::Upsample { .. }
                | Op::Mean => {
                    LayerRule::Gradient
                }
            })
            .collect();
        Ok(RulePlan { analyzer: a.name.clone(), layers })
    }

    /// A table of the graph's layers with the rule each gets, for `relprop plan`.
    pub fn describe(&self, g: &Graph) -> String {
        let mut s = format!("plan for {} ({} nodes)\n", self.analyzer, g.nodes.len());
        // (the indices are informational here: a graph too branched to follow shows none)
        let (live, indices) = (g.live(), layer_indices(g, g.nodes.len()).unwrap_or_else(|_| vec![LayerIndices::default(); g.nodes.len()]));
        for (i, n) in g.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let at = &indices[i];
            let depth = if n.op.has_kernel() && at != &LayerIndices::default() { format!("   [layer index {at}]") } else { String::new() };
            let _ = writeln!(s, "{i:>4}  {:<14} {:<32} {:<14} {}{depth}", n.op.kind(), trunc(&n.name, 32), format!("{:?}", n.shape), self.layers[i]);
        }
        s
    }
}

fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("…{}", s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect::<String>()) }
}
