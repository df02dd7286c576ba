//! signxai's order of a merge layer's inputs (docs/divergences.md).
//!
//! signxai's reverse model (iNNvestigate's `ReverseModel`) does not apply a layer with several inputs to them in
//! the order the model declares. It walks the model forward from its input, depth first: each layer hands its
//! output to its consumers in `model.layers` order, and a layer runs once all its inputs have arrived, on the list
//! in arrival order. Where that order differs from the declared one, signxai's forward pass is not the model's:
//! every DenseNet block's `Concatenate([x, f(x)])` runs as `[f(x), x]`, which scrambles the channels all later
//! layers read, and `Subtract([a, b])` can run as `b − a`. signxai's relevance maps are those of that function.
//!
//! relprop reproduces this by default, so that users get signxai's numbers: [`signxai_order`] gives such nodes
//! their inputs in arrival order. `--merge-order declared` explains the model as declared, and PyTorch exports
//! keep their declared order (signxai explains Keras models only).
//!
//! `model.layers` order is Keras' (`Functional._map_graph_network`): layers by decreasing depth (the longest path
//! to the output), ties in the order a depth-first walk from the output, inputs in declared order, first meets
//! them. A Keras layer is a run of connected nodes with the same (or a nested) layer name, as in [`crate::plan`].

use crate::graph::{Graph, Op};
use crate::plan::same_layer;

/// Which order a merge layer takes its inputs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeOrder {
    /// signxai's arrival order on Keras models ([`signxai_order`]), the declared order on PyTorch exports.
    #[default]
    Signxai,
    /// The order the model declares (the model's own function).
    Declared,
}

impl std::str::FromStr for MergeOrder {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<MergeOrder> {
        match s {
            "signxai" => Ok(MergeOrder::Signxai),
            "declared" => Ok(MergeOrder::Declared),
            _ => Err(crate::Error::param("merge-order", s, "expected signxai or declared")),
        }
    }
}

impl MergeOrder {
    /// `g` with its merge inputs in this order. signxai's walk does not apply to PyTorch exports.
    pub fn apply(self, g: Graph) -> Graph {
        match self {
            MergeOrder::Signxai if g.producer != "pytorch" => signxai_order(g),
            _ => g,
        }
    }
}

/// `g` with every multi-input node's inputs in the order signxai's forward walk delivers them.
pub fn signxai_order(mut g: Graph) -> Graph {
    for (node, inputs) in reordered_inputs(&g) {
        g.nodes[node].inputs = inputs;
    }
    g
}

/// The nodes whose inputs signxai's walk delivers in another order than declared, with that order.
pub fn reordered_inputs(g: &Graph) -> Vec<(usize, Vec<usize>)> {
    let Some(layers) = Layers::of(g) else { return Vec::new() };
    let order = keras_layer_order(&layers);
    let arrivals = walk(&layers, &order);
    let mut out = Vec::new();
    for (l, arrived) in arrivals.iter().enumerate() {
        let edges = &layers.inputs[l];
        if edges.len() < 2 || arrived.len() != edges.len() {
            continue;
        }
        // The inputs must enter one merge node, one slot each (the layer's Concat, Sub, ...); otherwise leave it.
        let node = edges[0].1;
        if edges.iter().any(|&(_, t)| t != node) || g.nodes[node].inputs.len() != edges.len() {
            continue;
        }
        let declared: Vec<usize> = edges.iter().map(|&(p, _)| p).collect();
        if declared == *arrived {
            continue;
        }
        // Each arrival takes the next unused slot of its producer (linear even for a Concat of thousands).
        let mut slots: std::collections::HashMap<usize, std::collections::VecDeque<usize>> = std::collections::HashMap::new();
        for (j, p) in declared.iter().enumerate() {
            slots.entry(*p).or_default().push_back(j);
        }
        let mut inputs = Vec::with_capacity(edges.len());
        for p in arrived {
            if let Some(j) = slots.get_mut(p).and_then(|q| q.pop_front()) {
                inputs.push(g.nodes[node].inputs[j]);
            }
        }
        if inputs.len() == edges.len() {
            out.push((node, inputs));
        }
    }
    out
}

/// The Keras layers of a graph. `inputs[l]` lists the layer's input edges in declared order: the producing layer
/// and the node of layer `l` the edge enters. Layer 0 is the model input; `topo` lists the layers producers first.
struct Layers {
    inputs: Vec<Vec<(usize, usize)>>,
    output: usize,
    topo: Vec<usize>,
}

impl Layers {
    /// None when the layers do not form a DAG (then signxai's walk cannot be replayed).
    fn of(g: &Graph) -> Option<Layers> {
        let n = g.nodes.len();
        if g.nodes.iter().enumerate().any(|(t, m)| m.inputs.iter().any(|&i| i >= t)) {
            return None;
        }
        // tf2onnx names a layout node it adds after a layer that reads it, and merges identical ones: a Reshape or
        // Transpose named after one of several layers reading it belongs to none of them. Such nodes are looked
        // through (`source`), so the other readers do not seem to come after that layer.
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (t, m) in g.nodes.iter().enumerate() {
            for &i in &m.inputs {
                readers[i].push(t);
            }
        }
        let mut source: Vec<usize> = (0..n).collect();
        for t in 0..n {
            let m = &g.nodes[t];
            let named_after = |r: &usize| same_layer(&m.layer, &g.nodes[*r].layer);
            if matches!(m.op, Op::Reshape | Op::Transpose { .. })
                && m.inputs.len() == 1
                && readers[t].iter().any(named_after)
                && !readers[t].iter().all(named_after)
            {
                source[t] = source[m.inputs[0]];
            }
        }
        let input_of = |t: usize| g.nodes[t].inputs.iter().map(|&i| source[i]);
        // Connected nodes with the same layer name form one layer (union-find; tf2onnx adds nodes such as layout
        // Transposes in front of a layer's inputs, named after the layer).
        let mut root: Vec<usize> = (0..n).collect();
        fn find(root: &mut [usize], mut a: usize) -> usize {
            while root[a] != a {
                root[a] = root[root[a]];
                a = root[a];
            }
            a
        }
        for t in (1..n).filter(|&t| source[t] == t) {
            for i in input_of(t) {
                if g.nodes[i].op != Op::Input && same_layer(&g.nodes[i].layer, &g.nodes[t].layer) {
                    let (a, b) = (find(&mut root, i), find(&mut root, t));
                    root[a.max(b)] = a.min(b);
                }
            }
        }
        // Layers numbered in the order of their first node.
        let mut id = vec![usize::MAX; n];
        let mut count = 0;
        let layer_of: Vec<usize> = (0..n)
            .map(|t| {
                let r = find(&mut root, t);
                if id[r] == usize::MAX {
                    id[r] = count;
                    count += 1;
                }
                id[r]
            })
            .collect();
        // Where an input passes through single-input nodes of the consuming layer, the producer beyond them.
        let external = |mut i: usize, l: usize| -> Option<usize> {
            while layer_of[i] == l {
                match g.nodes[i].inputs.as_slice() {
                    [j] => i = source[*j],
                    _ => return None,
                }
            }
            Some(i)
        };
        let mut inputs = vec![Vec::new(); count];
        let mut merge_seen = vec![false; count];
        for t in (0..n).filter(|&t| source[t] == t) {
            let l = layer_of[t];
            let ins: Vec<usize> = input_of(t).collect();
            // (Traced for merge nodes only: tracing every node of a long one-layer chain would be quadratic.)
            let traced: Option<Vec<usize>> =
                if ins.len() >= 2 && !merge_seen[l] { ins.iter().map(|&i| external(i, l)).collect() } else { None };
            match traced {
                // A merge node: the layer's inputs are its inputs, each traced to the producing layer.
                Some(ext) => {
                    merge_seen[l] = true;
                    inputs[l] = ext.iter().map(|&e| (layer_of[e], t)).collect();
                }
                None if merge_seen[l] => {}
                None => inputs[l].extend(ins.iter().filter(|&&i| layer_of[i] != l).map(|&i| (layer_of[i], t))),
            }
        }
        // A topological order of the layers (Kahn's algorithm; any order will do for the depths).
        let mut pending: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let mut consumers = vec![Vec::new(); count];
        for (l, e) in inputs.iter().enumerate() {
            for &(p, _) in e {
                consumers[p].push(l);
            }
        }
        let mut ready: Vec<usize> = (0..count).filter(|&l| pending[l] == 0).rev().collect();
        let mut topo = Vec::with_capacity(count);
        while let Some(l) = ready.pop() {
            topo.push(l);
            for &c in &consumers[l] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.push(c);
                }
            }
        }
        (topo.len() == count).then_some(Layers { output: layer_of[g.output], inputs, topo })
    }
}

/// Keras' `model.layers` order: each layer's position.
fn keras_layer_order(layers: &Layers) -> Vec<usize> {
    let count = layers.inputs.len();
    // Depth: the longest path to the output, in one sweep from the output back.
    let mut depth: Vec<Option<usize>> = vec![None; count];
    depth[layers.output] = Some(0);
    for &l in layers.topo.iter().rev() {
        if let Some(d) = depth[l] {
            for &(p, _) in &layers.inputs[l] {
                depth[p] = Some(depth[p].map_or(d + 1, |e| e.max(d + 1)));
            }
        }
    }
    // First visit in a depth-first walk from the output through the inputs in declared order.
    let mut first = vec![usize::MAX; count];
    let mut visits = 0;
    let mut stack = vec![(layers.output, 0usize)];
    first[layers.output] = 0;
    visits += 1;
    while let Some((l, k)) = stack.pop() {
        if let Some(&(p, _)) = layers.inputs[l].get(k) {
            stack.push((l, k + 1));
            if first[p] == usize::MAX {
                first[p] = visits;
                visits += 1;
                stack.push((p, 0));
            }
        }
    }
    let mut sorted: Vec<usize> = (0..count).filter(|&l| depth[l].is_some()).collect();
    sorted.sort_by_key(|&l| (std::cmp::Reverse(depth[l]), first[l]));
    let mut position = vec![usize::MAX; count];
    for (i, &l) in sorted.iter().enumerate() {
        position[l] = i;
    }
    position
}

/// signxai's forward walk from the input layer: for every layer, its producers in the order they arrived.
fn walk(layers: &Layers, position: &[usize]) -> Vec<Vec<usize>> {
    let count = layers.inputs.len();
    // Consumers in model.layers order, once per input edge (signxai's `layer_next`).
    let mut by_position: Vec<usize> = (0..count).filter(|&l| position[l] != usize::MAX).collect();
    by_position.sort_by_key(|&l| position[l]);
    let mut next = vec![Vec::new(); count];
    for &c in &by_position {
        for &(p, _) in &layers.inputs[c] {
            next[p].push(c);
        }
    }
    let mut arrived: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((l, k)) = stack.pop() {
        if let Some(&c) = next[l].get(k) {
            stack.push((l, k + 1));
            arrived[c].push(l);
            if arrived[c].len() == layers.inputs[c].len() {
                stack.push((c, 0));
            }
        }
    }
    arrived
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Activation, Merge};

    /// A chain of `len` ReLU layers named `{name}{i}` from node `from`; returns the last node.
    fn chain(g: &mut Graph, name: &str, from: usize, len: usize) -> usize {
        (0..len).fold(from, |x, i| {
            let layer = format!("{name}{i}");
            g.push_in_layer(&format!("{layer}/Relu"), &layer, Op::Activation(Activation::Relu), &[x]).unwrap()
        })
    }

    /// DenseNet's block: x feeds a 3-layer branch and a Concat of the two; returns (graph, x, branch, concat).
    fn dense_block(declared_branch_first: bool) -> (Graph, usize, usize, usize) {
        let mut g = Graph::new("in", vec![4]);
        let x = chain(&mut g, "x", 0, 1);
        let b = chain(&mut g, "branch", x, 3);
        let ins = if declared_branch_first { [b, x] } else { [x, b] };
        let cat = g.push_in_layer("cat/concat", "cat", Op::Concat { axis: 0 }, &ins).unwrap();
        (g, x, b, cat)
    }

    fn names(g: &Graph, ins: &[usize]) -> Vec<String> {
        ins.iter().map(|&i| g.nodes[i].layer.clone()).collect()
    }

    #[test]
    fn dense_block_concat_takes_the_branch_first() {
        // DenseNet: x feeds a branch and the Concatenate([x, branch(x)]); the branch is deeper, so it comes first
        // in model.layers and signxai's walk delivers its output first.
        let (mut g, _, _, cat) = dense_block(false);
        chain(&mut g, "out", cat, 1);
        let r = reordered_inputs(&g);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, names(&g, &r[0].1)), (cat, vec!["branch2".to_string(), "x0".into()]));
        // Declared in arrival order: nothing changes.
        assert!(reordered_inputs(&dense_block(true).0).is_empty());
    }

    #[test]
    fn inception_branches_arrive_deepest_first() {
        // Branches of 1, 3 and 2 layers from one tensor: model.layers lists their first layers by depth, and each
        // branch is walked to its end before the next starts.
        let mut g = Graph::new("in", vec![2]);
        let x = chain(&mut g, "x", 0, 1);
        let a = chain(&mut g, "a", x, 1);
        let b = chain(&mut g, "b", x, 3);
        let p = chain(&mut g, "p", x, 2);
        let cat = g.push_in_layer("mixed/concat", "mixed", Op::Concat { axis: 0 }, &[a, b, p]).unwrap();
        let r = signxai_order(g.clone());
        assert_eq!(names(&r, &r.nodes[cat].inputs), ["b2", "p1", "a0"]);
        // A Subtract of two such branches is applied to them in arrival order too (b − a, not a − b).
        let mut s = Graph::new("in", vec![2]);
        let x = chain(&mut s, "x", 0, 1);
        let a = chain(&mut s, "a", x, 1);
        let b = chain(&mut s, "b", x, 2);
        let sub = s.push_in_layer("sub/Sub", "sub", Op::Merge(Merge::Subtract), &[a, b]).unwrap();
        assert_eq!(names(&s, &signxai_order(s.clone()).nodes[sub].inputs), ["b1", "a0"]);
    }

    #[test]
    fn nodes_tf2onnx_adds_in_front_of_a_merge_belong_to_its_layer() {
        // tf2onnx's layout Transposes before a Concat are named after it; the walk looks through them.
        let mut g = Graph::new("in", vec![2, 3]);
        let x = chain(&mut g, "x", 0, 1);
        let b = chain(&mut g, "branch", x, 2);
        let t1 = g.push_in_layer("Transpose__1", "cat", Op::Transpose { perm: vec![0, 2, 1] }, &[x]).unwrap();
        let t2 = g.push_in_layer("Transpose__2", "cat", Op::Transpose { perm: vec![0, 2, 1] }, &[b]).unwrap();
        let cat = g.push_in_layer("cat/concat", "cat", Op::Concat { axis: 0 }, &[t1, t2]).unwrap();
        assert_eq!(reordered_inputs(&g), vec![(cat, vec![t2, t1])]);
    }

    #[test]
    fn a_layout_node_shared_by_two_layers_belongs_to_neither() {
        // tf2onnx merges the identical layout Reshapes two convs put on one input and names the survivor after the
        // first conv; the second conv must not seem to come after the first (InceptionV3's mixed9_0).
        let mut g = Graph::new("in", vec![2]);
        let x = chain(&mut g, "x", 0, 1);
        let shared = g.push_reshape("c1/Conv2D__7", "c1", x, vec![2]).unwrap();
        let a = g.push_in_layer("c1/Relu", "c1", Op::Activation(Activation::Relu), &[shared]).unwrap();
        let b = g.push_in_layer("c2/Relu", "c2", Op::Activation(Activation::Relu), &[shared]).unwrap();
        g.push_in_layer("cat/concat", "cat", Op::Concat { axis: 0 }, &[a, b]).unwrap();
        assert!(reordered_inputs(&g).is_empty());
    }

    #[test]
    fn the_walk_stays_linear_on_wide_and_long_graphs() {
        // A Concat of 50000 branches of two lengths, after a chain of 50000 nodes of one layer (hostile files).
        let start = std::time::Instant::now();
        let mut g = Graph::new("in", vec![1]);
        let mut x = 0;
        for i in 0..50_000 {
            x = g.push_in_layer(&format!("long/n{i}"), "long", Op::Activation(Activation::Relu), &[x]).unwrap();
        }
        let ends: Vec<usize> = (0..50_000).map(|i| chain(&mut g, &format!("b{i}_"), x, 1 + i % 2)).collect();
        let cat = g.push_in_layer("cat/concat", "cat", Op::Concat { axis: 0 }, &ends).unwrap();
        let r = reordered_inputs(&g);
        // The two-layer branches arrive first, each group in declared order.
        assert_eq!(r.len(), 1);
        let got = &r[0].1;
        assert_eq!((r[0].0, got[0], got[25_000]), (cat, ends[1], ends[0]));
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }

    #[test]
    fn pytorch_exports_and_declared_order_keep_the_declared_inputs() {
        let (mut g, x, b, cat) = dense_block(false);
        assert_eq!(MergeOrder::Declared.apply(g.clone()).nodes[cat].inputs, [x, b]);
        assert_eq!(MergeOrder::Signxai.apply(g.clone()).nodes[cat].inputs, [b, x]);
        g.producer = "pytorch".into();
        assert_eq!(MergeOrder::Signxai.apply(g).nodes[cat].inputs, [x, b]);
        assert!("sideways".parse::<MergeOrder>().unwrap_err().to_string().contains("signxai or declared"));
    }
}
