//! Resolving an analyzer preset on a concrete graph: one rule per layer (SPEC 2 and 7).

use std::fmt::Write as _;

use crate::analyzers::{Analyzer, KernelChoice};
use crate::error::Result;
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

/// signxai's layer index as used by `until_layer_idx` (SPEC 7): the number of Keras layers between the input
/// and this node along first inputs, skipping layout ops; the first layer after the input has depth 0. Nodes
/// sharing a layer name (tf2onnx splits one Keras layer into several nodes) count once.
pub fn layer_depth(g: &Graph, node: usize) -> usize {
    let mut names: Vec<&str> = Vec::new();
    let mut j = node;
    while g.nodes[j].op != Op::Input {
        let n = &g.nodes[j];
        if !n.op.is_layout() && names.last() != Some(&n.layer.as_str()) {
            names.push(&n.layer);
        }
        j = n.inputs[0];
    }
    names.len().saturating_sub(1)
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

/// [`layer_depth`] for every node at once, in linear time.
pub fn layer_depths(g: &Graph) -> Vec<usize> {
    let n = g.nodes.len();
    // top[j]: the nearest non-layout node at or below j along first inputs (None: the walk reaches the input);
    // runs[j]: the number of distinct consecutive layer names from top[j] down to the input.
    let mut top: Vec<Option<usize>> = vec![None; n];
    let mut runs = vec![0usize; n];
    for (j, m) in g.nodes.iter().enumerate() {
        let below = m.inputs.first().copied().filter(|&p| p < j);
        if m.op == Op::Input {
            continue;
        }
        let (t, r) = below.map(|p| (top[p], runs[p])).unwrap_or((None, 0));
        if m.op.is_layout() {
            (top[j], runs[j]) = (t, r);
        } else {
            let same = t.is_some_and(|q| g.nodes[q].layer == m.layer);
            (top[j], runs[j]) = (Some(j), r + usize::from(!same));
        }
    }
    runs.into_iter().map(|r| r.saturating_sub(1)).collect()
}

impl RulePlan {
    /// Resolve `a` on `g`. Priority as in signxai: input_layer_rule, then the until-index rules, then the
    /// preset's rule (dense/conv split for the composites).
    pub fn resolve(g: &Graph, a: &Analyzer) -> Result<RulePlan> {
        let (inputs, depths) = (input_layers(g), if a.until.is_some() { layer_depths(g) } else { Vec::new() });
        let layers = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.op {
                Op::Input => LayerRule::Input,
                Op::Dense(_) | Op::Conv(_) => {
                    let rule = if let (Some(r), true) = (&a.input_layer_rule, inputs[i]) {
                        r.clone()
                    } else if let Some((idx, r)) = a.until.as_ref().filter(|(idx, _)| depths[i] <= *idx) {
                        let _ = idx;
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
                Op::Activation(_) | Op::Identity => LayerRule::Identity,
                Op::MaxPool(_) | Op::GlobalMaxPool | Op::Reshape | Op::Transpose { .. } | Op::Pad { .. } | Op::Concat { .. } => {
                    LayerRule::Gradient
                }
            })
            .collect();
        Ok(RulePlan { analyzer: a.name.clone(), layers })
    }

    /// A table of the graph's layers with the rule each gets, for `relprop plan`.
    pub fn describe(&self, g: &Graph) -> String {
        let mut s = format!("plan for {} ({} nodes)\n", self.analyzer, g.nodes.len());
        let (live, depths) = (g.live(), layer_depths(g));
        for (i, n) in g.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let depth = if n.op.has_kernel() { format!("   [layer index {}]", depths[i]) } else { String::new() };
            let _ = writeln!(s, "{i:>4}  {:<14} {:<32} {:<14} {}{depth}", n.op.kind(), trunc(&n.name, 32), format!("{:?}", n.shape), self.layers[i]);
        }
        s
    }
}

fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("…{}", s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect::<String>()) }
}
