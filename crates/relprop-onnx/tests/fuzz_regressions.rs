//! Regression corpus of the `onnx_decode` fuzz target (fuzz/, docs/hardening.md), run in the normal test suite:
//! every saved input decodes to a valid graph or fails with an error, never a panic. Also the resource limits
//! and the hostile shapes found by reading the importer while hardening it (issue 7).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use relprop_core::{Analyzer, Limits, Params, RulePlan};
use relprop_onnx::builder::*;
use relprop_onnx::proto::NodeProto;
use relprop_onnx::{decode, decode_with, encode_model, ImportOptions};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

/// What the fuzz target checks, minus the explanation (tested in relprop-ndarray's fuzz_regressions).
fn harness(name: &str, bytes: &[u8]) -> bool {
    match decode(bytes, name) {
        Ok(g) => {
            g.validate().unwrap_or_else(|e| panic!("{name}: imported graph does not validate: {e}"));
            g.check_limits(&Limits::default()).unwrap();
            RulePlan::resolve(&g, &Analyzer::from_class("LRPZ", &Params::default()).unwrap()).unwrap().describe(&g);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn onnx_decode_corpus() {
    let files = corpus("onnx_decode");
    assert!(!files.is_empty());
    for (name, bytes) in &files {
        let t = Instant::now();
        harness(name, bytes);
        assert!(t.elapsed() < Duration::from_secs(5), "{name} took {:?}", t.elapsed());
    }
}

fn model(nodes: Vec<NodeProto>, input: &[usize], out: &str) -> Vec<u8> {
    let g = make_graph("g", nodes, vec![value_info("x", input)], vec![value_info_dims(out, vec![])], vec![]);
    encode_model(&make_model(g, 17))
}

#[test]
fn many_nodes_with_one_name_import_in_linear_time() {
    // Unique-naming used to retry suffixes 1, 2, ... for every duplicate: quadratic in the node count.
    let n = 30_000;
    let nodes: Vec<NodeProto> = (0..n)
        .map(|k| {
            let (i, o) = (if k == 0 { "x".to_string() } else { format!("v{}", k - 1) }, format!("v{k}"));
            make_node("Identity", "same", &[&i], &[&o], vec![])
        })
        .collect();
    let bytes = model(nodes, &[3], &format!("v{}", n - 1));
    let t = Instant::now();
    let g = decode(&bytes, "names.onnx").unwrap();
    assert_eq!(g.nodes.len(), n + 1);
    assert_eq!(g.nodes[n].name, format!("same__{}", n - 1));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn a_long_chain_of_adds_in_one_layer_stays_linear() {
    // Chained binary Adds of one layer merge into one n-ary Add; unbounded merging copied a growing input list
    // at every step (quadratic time and memory: 100k Adds asked for ~40 GB).
    let n = 20_000;
    let mut nodes = vec![make_node("Relu", "m/r/Relu", &["x"], &["a0"], vec![])];
    for k in 1..=n {
        nodes.push(make_node("Add", &format!("m/add/Add_{k}"), &[&format!("a{}", k - 1), "a0"], &[&format!("a{k}")], vec![]));
    }
    let bytes = model(nodes, &[2], &format!("a{n}"));
    let t = Instant::now();
    let g = decode(&bytes, "adds.onnx").unwrap();
    assert!(g.nodes.iter().all(|n| n.inputs.len() <= 65), "merged Adds are bounded");
    // signxai's layer walk for until_layer_idx (every node of the long layer, every index): linear too.
    let a = relprop_core::Analyzer::from_class("LRPRuleUntilIndex", &relprop_core::Params::parse(&["until_layer_idx=100000"]).unwrap()).unwrap();
    relprop_core::RulePlan::resolve(&g, &a).unwrap();
    assert!(relprop_core::plan::layer_indices(&g, g.nodes.len()).unwrap().iter().all(|i| i.from.is_none()));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn node_count_limit() {
    let nodes: Vec<NodeProto> = (0..12).map(|k| make_node("Relu", &format!("r{k}"), &[&if k == 0 { "x".into() } else { format!("v{}", k - 1) }], &[&format!("v{k}")], vec![])).collect();
    let bytes = model(nodes, &[3], "v11");
    assert!(decode(&bytes, "ok.onnx").is_ok());
    let opts = ImportOptions { limits: Limits { max_nodes: 10, ..Limits::default() }, ..Default::default() };
    let e = decode_with(&bytes, "deep.onnx", &opts).unwrap_err().to_string();
    assert!(e.contains("12 nodes") && e.contains("limit of 10"), "{e}");
}

#[test]
fn declared_input_times_activations_limit() {
    // 2^28 floats (1 GiB) per tensor, three tensors per sample (input, Relu, Identity): no weights at all, but
    // 3 GiB of activations per sample.
    let nodes = vec![make_node("Relu", "r", &["x"], &["h"], vec![]), make_node("Identity", "i", &["h"], &["y"], vec![])];
    let bytes = model(nodes, &[1 << 14, 1 << 14], "y");
    let small = ImportOptions { limits: Limits { max_bytes: 1 << 30, ..Limits::default() }, ..Default::default() };
    let e = decode_with(&bytes, "wide.onnx", &small).unwrap_err().to_string();
    assert!(e.contains("activations of one sample") && e.contains("limit"), "{e}");
    // Within the default 4 GiB the same model imports (nothing is allocated), and explaining a batch of 64
    // is then refused by the engine's estimate (relprop-ndarray's fuzz_regressions).
    assert!(decode(&bytes, "wide.onnx").is_ok());
}

/// Found by the structured fuzzer (session 10): shape arithmetic between an empty integer list and a one-entry
/// shape value indexed the empty list. Now an error naming the node.
#[test]
fn shape_arithmetic_on_an_empty_list() {
    let empty = make_tensor_i64("e", &[0], &[]);
    let nodes = vec![
        make_node("Shape", "s", &["x"], &["shp"], vec![]),
        make_node("Slice", "sl", &["shp", "one", "two"], &["last"], vec![]),
        make_node("Add", "add", &["e", "last"], &["t"], vec![]),
        make_node("Reshape", "r", &["x", "t"], &["y"], vec![]),
    ];
    let g = make_graph("g", nodes, vec![value_info("x", &[2, 3])], vec![value_info_dims("y", vec![])], vec![empty, make_tensor_i64("one", &[1], &[1]), make_tensor_i64("two", &[1], &[2])]);
    let e = decode(&encode_model(&make_model(g, 17)), "empty").unwrap_err().to_string();
    assert!(e.contains("'add'") && e.contains("lists of different lengths"), "{e}");
}
