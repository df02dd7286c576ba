//! Property tests of the backend-free half (issue 7): parsers never panic, every preset resolves, the `.npy`
//! codec round-trips, shape inference is total, the linear-time plan helpers agree with the per-node
//! definitions, and the resource limits refuse before allocating. Case counts are modest so `cargo test`
//! stays fast.

use std::sync::Arc;

use proptest::prelude::*;
use relprop_core::analyzers::ANALYZER_CLASSES;
use relprop_core::engine::check_input_with;
use relprop_core::graph::{infer_shape, window_out, Activation, Conv, Dense, Graph, Op, PadMode, Pool};
use relprop_core::methods::{method_names, parse_method};
use relprop_core::plan::{input_layers, is_input_layer, layer_indices};
use relprop_core::rules::RULE_NAMES;
use relprop_core::{npy, Analyzer, Limits, Params, RulePlan, Tensor};

/// 64 cases, or `PROPTEST_CASES` for a longer search.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const KEYS: &[&str] = &[
    "rule", "input_layer_rule", "until_layer_idx", "until_index_rule", "default_rule_configuration", "bn_layer_rule",
    "bn_layer_fuse_mode", "epsilon", "stdfactor", "bias", "alpha", "beta", "gamma", "mu", "low", "high",
    "std_over_batch", "alpha0", "alpha1", "beta0", "beta1", "copy_weights", "unknown_key",
];

/// Parameter values of every kind a user (or a YAML file) can write.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(RULE_NAMES).prop_map(str::to_string),
        prop::sample::select(ANALYZER_CLASSES).prop_map(str::to_string),
        any::<f32>().prop_map(|v| v.to_string()),
        (-3.0f32..3.0).prop_map(|v| v.to_string()),
        (0usize..12).prop_map(|v| v.to_string()),
        prop::sample::select(&["true", "false", "None", "nan", "inf", "-inf", "", "(-1, 1)", "[0,2]", "(1,", "one_linear", "two_linear", "1e39", "-0"][..])
            .prop_map(str::to_string),
        "[ -~]{0,12}",
    ]
}

fn params() -> impl Strategy<Value = Params> {
    prop::collection::vec((prop::sample::select(KEYS), value()), 0..6).prop_map(|kv| {
        let mut p = Params::default();
        for (k, v) in kv {
            p.set(k, &v);
        }
        p
    })
}

/// signxai's `is_layer_at_idx` and `is_input_layer` (innvestigate `checks.py`) transcribed step by step onto
/// the IR. A Keras layer is the run of nodes reached walking back from a node through inputs whose layer name is
/// related (equal or path-nested) to the node they feed; it is a Flatten/Permute/Reshape layer when all its nodes
/// are reshapes or transposes, a ZeroPadding layer when pads and those are all it has.
fn signxai_is_layer_at_idx(g: &Graph, node: usize, index: usize) -> bool {
    use std::collections::BTreeSet;
    let related = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"));
    // (layers below, all reshaping, all reshaping-or-pad) of the layer at node t; None = the input layer.
    let layer = |t: usize| -> (BTreeSet<Option<usize>>, bool, bool) {
        let (mut below, mut reshaping, mut padding) = (BTreeSet::new(), true, true);
        let (mut stack, mut seen) = (vec![(t, t)], BTreeSet::new());
        while let Some((i, from)) = stack.pop() {
            if !seen.insert((i, from)) {
                continue;
            }
            let m = &g.nodes[i];
            if m.op == Op::Input {
                below.insert(None);
            } else if i == t || related(&m.layer, &g.nodes[from].layer) {
                let skip = m.op.skipped_by_layer_index();
                reshaping &= skip;
                padding &= skip || matches!(m.op, Op::Pad { .. });
                stack.extend(m.inputs.iter().map(|&j| (j, i)));
            } else {
                below.insert(Some(i));
            }
        }
        (below, reshaping, padding)
    };
    let is_input_layer = |l: Option<usize>| -> bool {
        let Some(t) = l else { return true }; // an InputLayer has no inputs: all([]) is true
        let mut ins = layer(t).0;
        while ins.iter().any(|x| x.is_some_and(|i| layer(i).2)) {
            ins = ins.iter().flat_map(|x| match x {
                Some(i) if layer(*i).2 => layer(*i).0.into_iter().collect::<Vec<_>>(),
                x => vec![*x],
            }).collect();
        }
        ins.iter().all(Option::is_none)
    };
    let mut set: BTreeSet<Option<usize>> = [Some(node)].into();
    for _ in 0..index {
        while set.iter().any(|x| x.is_some_and(|i| layer(i).1)) {
            set = set.iter().flat_map(|x| match x {
                Some(i) if layer(*i).1 => layer(*i).0.into_iter().collect::<Vec<_>>(),
                x => vec![*x],
            }).collect();
        }
        set = set.iter().flat_map(|x| x.map(|i| layer(i).0).unwrap_or_default()).collect();
        if set.contains(&None) {
            return false;
        }
    }
    set.iter().all(|&l| is_input_layer(l))
}

/// A small random graph: chains and branches of Dense, layout ops, activations and Adds, with layer names drawn
/// from a small set so that consecutive nodes share layers (as tf2onnx splits Keras layers).
fn graph() -> impl Strategy<Value = Graph> {
    let step = (0u8..6, any::<prop::sample::Index>(), 0usize..3, 1usize..4);
    (1usize..5, prop::collection::vec(step, 1..24)).prop_map(|(width, steps)| {
        let mut g = Graph::new("x", vec![width]);
        let w = |i: usize, o: usize| Arc::new(Tensor::new(vec![i, o], (0..i * o).map(|k| (k as f32 * 0.7).sin()).collect()).unwrap());
        for (k, (kind, pick, layer, out)) in steps.into_iter().enumerate() {
            let src = pick.index(g.nodes.len());
            let shape = g.nodes[src].shape.clone();
            let name = format!("n{k}");
            let layer = format!("l{layer}");
            let n = shape.iter().product::<usize>();
            let _ = match kind {
                0 => g.push_in_layer(&name, &layer, Op::Dense(Dense { weight: w(*shape.last().unwrap(), out), bias: None, activation: None }), &[src]),
                1 => g.push_reshape(&name, &layer, src, vec![1, n]),
                2 => g.push_in_layer(&name, &layer, Op::Activation(Activation::Relu), &[src]),
                3 if shape.len() == 2 => g.push_in_layer(&name, &layer, Op::Transpose { perm: vec![0, 2, 1] }, &[src]),
                4 => {
                    let other = (0..g.nodes.len()).rev().find(|&j| j != src && g.nodes[j].shape == shape).unwrap_or(src);
                    g.push_in_layer(&name, &layer, Op::Add, &[src, other])
                }
                _ => g.push_in_layer(&name, &layer, Op::Pad { begin: vec![0; shape.len()], end: vec![1; shape.len()], mode: PadMode::Constant(0.0) }, &[src]),
            };
        }
        g
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn method_parser_never_panics(s in "[a-z0-9_]{0,40}", pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let _ = parse_method(&s);
        // every real name, and every prefix of one
        let names = method_names();
        let name = &names[pick.index(names.len())];
        let a = parse_method(name).unwrap();
        prop_assert_eq!(&a.name, name);
        let _ = parse_method(&name[..cut.index(name.len() + 1)]);
    }

    #[test]
    fn analyzer_classes_with_any_params_build_or_fail_cleanly(class in prop::sample::select(ANALYZER_CLASSES), p in params(), g in graph()) {
        if let Ok(a) = Analyzer::from_class(class, &p) {
            let plan = RulePlan::resolve(&g, &a).unwrap();
            prop_assert_eq!(plan.layers.len(), g.nodes.len());
            let _ = plan.describe(&g);
        }
        let _ = Analyzer::from_class(&format!("{class}x"), &p);
        let _ = relprop_core::analyzer_from(Some(class), None, &p);
    }

    #[test]
    fn plan_helpers_agree_with_per_node_definitions(g in graph()) {
        let (inputs, indices) = (input_layers(&g), layer_indices(&g, 30).unwrap());
        for i in 0..g.nodes.len() {
            prop_assert_eq!(inputs[i], is_input_layer(&g, i), "is_input_layer of node {}", i);
            if i > 0 {
                for k in 0..=30 {
                    prop_assert_eq!(indices[i].contains(k), signxai_is_layer_at_idx(&g, i, k), "is_layer_at_idx of node {} at {}", i, k);
                }
            }
        }
        g.validate().unwrap();
    }

    #[test]
    fn npy_round_trips_any_tensor(shape in prop::collection::vec(0usize..5, 0..4), bits in prop::collection::vec(any::<u32>(), 0..200)) {
        let n: usize = shape.iter().product();
        prop_assume!(n <= bits.len());
        let t = Tensor::new(shape, bits[..n].iter().map(|&b| f32::from_bits(b)).collect()).unwrap();
        let back = npy::decode(&npy::encode(&t), "t").unwrap();
        prop_assert_eq!(&back.shape, &t.shape);
        prop_assert!(back.data.iter().zip(&t.data).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn npy_decoder_survives_corruption(shape in prop::collection::vec(0usize..4, 0..3), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let n: usize = shape.iter().product();
        let mut b = npy::encode(&Tensor::new(shape, vec![1.5; n]).unwrap());
        for (at, v) in edits {
            let i = at.index(b.len());
            b[i] = v;
        }
        let _ = npy::decode(&b, "x");
        let _ = npy::decode(&b[..cut.index(b.len() + 1)], "x");
    }

    #[test]
    fn shape_inference_is_total(
        x in prop::collection::vec(0usize..9, 0..4),
        k in prop::collection::vec(0usize..5, 0..4),
        s in prop::collection::vec(0usize..3, 0..4),
        p in prop::collection::vec(0usize..3, 0..4),
        groups in 0usize..3, out in 1usize..4, ceil in any::<bool>(),
    ) {
        let r = k.len();
        let geom = |v: &[usize], d: usize| (0..r).map(|i| v.get(i).copied().unwrap_or(d)).collect::<Vec<_>>();
        let mut wshape = vec![out, x.first().copied().unwrap_or(1).max(1)];
        wshape.extend(&k);
        let wn: usize = wshape.iter().product();
        let conv = Op::Conv(Conv {
            weight: Arc::new(Tensor::new(wshape, vec![0.5; wn]).unwrap()),
            bias: None, strides: geom(&s, 1), dilations: geom(&s, 1), pads_begin: geom(&p, 0), pads_end: p.clone(), groups, activation: None,
            pointwise: None,
            transposed: None,
        });
        let pool = Pool { kernel: k.clone(), strides: geom(&s, 1), pads_begin: geom(&p, 0), pads_end: geom(&p, 0), count_include_pad: false, ceil_mode: ceil };
        let ops = [
            conv, Op::MaxPool(pool.clone()), Op::AvgPool(pool), Op::GlobalAvgPool, Op::GlobalMaxPool, Op::Add, Op::Identity,
            Op::Transpose { perm: k.clone() }, Op::Pad { begin: p.clone(), end: s.clone(), mode: PadMode::Constant(0.0) }, Op::Concat { axis: groups },
            Op::Activation(Activation::Clip { min: 1.0, max: 0.0 }), Op::Reshape, Op::Input,
        ];
        for op in &ops {
            for ins in [vec![], vec![x.as_slice()], vec![x.as_slice(), x.as_slice()]] {
                if let (Ok(shape), [one]) = (infer_shape(op, &ins), ins.as_slice()) {
                    if let Op::MaxPool(pl) = op {
                        for a in 0..r {
                            let w = window_out(one[a + 1], pl.kernel[a], pl.strides[a], 1, pl.pads_begin[a], pl.pads_end[a], pl.ceil_mode).unwrap();
                            prop_assert_eq!(shape[a + 1], w);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn limits_refuse_before_allocating(dims in prop::collection::vec(1usize..2000, 1..4), max in 1u64..100_000, batch in 1usize..64) {
        let n: usize = dims.iter().product();
        let limits = Limits { max_bytes: max, max_activation_bytes: max, max_nodes: 8 };
        // npy: the declared shape decides, the data does not need to be there
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims.iter().map(|d| format!("{d},")).collect::<String>());
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        let r = npy::decode_with(&b, "x", &limits);
        if n as u64 * 4 > max {
            prop_assert!(r.unwrap_err().to_string().contains("too large"));
        } else {
            prop_assert!(r.unwrap_err().to_string().contains("data bytes"));
        }
        // explanation estimate: N x elements x 4 x factor
        let g = Graph::new("x", vec![dims[0]]);
        let x = Tensor::new(vec![batch, dims[0]], vec![0.0; batch * dims[0]]).unwrap();
        let need = (batch * dims[0]) as u64 * 4 * Limits::ACTIVATION_FACTOR;
        prop_assert_eq!(check_input_with(&g, &x, &limits).is_ok(), need <= max);
        // node count
        let mut big = Graph::new("x", vec![1]);
        for i in 0..9 {
            big.push(&format!("i{i}"), Op::Identity, &[i]).unwrap();
        }
        prop_assert!(big.check_limits(&limits).is_err());
    }
}
