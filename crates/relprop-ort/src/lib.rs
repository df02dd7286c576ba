//! relprop-ort: the ONNX Runtime backend.
//!
//! relprop computes no relevance here. A (graph, rule plan, target, options) is compiled into ONE standard
//! ONNX graph — the shared engine of `relprop-core` run once on a symbolic [`builder::OnnxBuilder`] — whose outputs
//! are the logits and the input relevance (optionally every layer's relevance); ONNX Runtime runs it. Sessions
//! are cached per (plan, target, options) inside the compiled model.
//!
//! Building the graph needs no runtime: [`export_explanation`] writes it for any ONNX consumer. Running it needs
//! `libonnxruntime.so.1.31.1` (`cargo xtask setup ort`, found through `ORT_DYLIB_PATH`).

pub mod builder;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{ArrayViewD, IxDyn};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use prost::Message;
use relprop_core::engine::{check_input, check_target, ExplainOptions, Explanation};
use relprop_core::{Backend, CompiledModel, Graph, Result, RulePlan, Target, Tensor};
use relprop_onnx::proto::ModelProto;

pub use builder::{build_explanation, build_forward, layer_output_name, Built, OnnxBuilder, Sym, LOGITS, OPSET, RELEVANCE};

use builder::err;

/// The explanation graph of `plan` for `target` on `graph` (see [`build_explanation`]) as an ONNX model. Needs no
/// ONNX Runtime. Encode with [`encode`] (or `prost::Message::encode_to_vec`).
pub fn export_explanation(graph: &Graph, plan: &RulePlan, target: &Target, keep_layers: bool) -> Result<ModelProto> {
    check_target(graph, target)?;
    Ok(build_explanation(graph, plan, target, keep_layers)?.model)
}

/// Serialized bytes of a model.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Where the ONNX Runtime library is looked for: `ORT_DYLIB_PATH` at run time, else the path set at build time
/// (`.cargo/config.toml`), else the default install location of `cargo xtask setup ort`.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    match option_env!("ORT_DYLIB_PATH") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.deps/onnxruntime/libonnxruntime.so.1.31.1")),
    }
}

/// The process-wide ONNX Runtime environment (the library can be loaded once per process).
fn environment() -> Result<ort::environment::Environment> {
    static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = library_path();
        if !path.is_file() {
            return Err(format!("ONNX Runtime library not found at {}: run `cargo xtask setup ort`", path.display()));
        }
        let b = ort::init_from(&path).map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?;
        b.with_name("relprop").build().map_err(|e| format!("ONNX Runtime environment: {e}"))
    })
    .clone()
    .map_err(err)
}

/// The ONNX Runtime backend.
#[derive(Clone)]
pub struct OrtBackend {
    env: ort::environment::Environment,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrtBackend")
    }
}

impl OrtBackend {
    /// Load ONNX Runtime (errors with the fix when the library is missing).
    pub fn new() -> Result<OrtBackend> {
        Ok(OrtBackend { env: environment()? })
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "ort"
    }
    fn compile(&self, graph: Arc<Graph>) -> Result<Box<dyn CompiledModel>> {
        Ok(Box::new(OrtModel::new(self, graph)?))
    }
}

/// One ONNX Runtime session and the node index behind each per-layer output.
struct Cached {
    session: Mutex<Session>,
    layer_outputs: Vec<(usize, String)>,
}

/// A model compiled for ONNX Runtime: explanation graphs are built and sessions created on first use of each
/// (plan, target, options), then reused.
pub struct OrtModel {
    graph: Arc<Graph>,
    env: ort::environment::Environment,
    sessions: Mutex<HashMap<String, Arc<Cached>>>,
}

impl OrtModel {
    /// Prepare `graph`.
    pub fn new(backend: &OrtBackend, graph: Arc<Graph>) -> Result<OrtModel> {
        graph.validate()?;
        Ok(OrtModel { graph, env: backend.env.clone(), sessions: Mutex::new(HashMap::new()) })
    }

    /// Number of sessions created so far (one per distinct plan/target/options).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn session(&self, key: String, build: impl FnOnce() -> Result<Built>) -> Result<Arc<Cached>> {
        let mut map = self.sessions.lock().map_err(|_| err("session cache poisoned"))?;
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let built = build()?;
        let len = built.model.encoded_len();
        if len > i32::MAX as usize {
            return Err(err(format!(
                "the explanation graph takes {len} bytes, more than ONNX's 2 GiB protobuf limit (substituted weights are \
                 stored in the graph); use the ndarray or tch backend for this model and rule"
            )));
        }
        let bytes = built.model.encode_to_vec();
        let session = Session::builder(&self.env)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level1)?))
            .and_then(|b| Ok(b.with_intra_threads(1)?))
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .map_err(|e| err(format!("creating the session: {e}")))?;
        let c = Arc::new(Cached { session: Mutex::new(session), layer_outputs: built.layer_outputs });
        map.insert(key, c.clone());
        Ok(c)
    }

    /// Run a cached session on `x`; returns the named outputs.
    fn run(&self, c: &Cached, x: &Tensor, names: &[&str]) -> Result<Vec<Tensor>> {
        let view = ArrayViewD::from_shape(IxDyn(&x.shape), &x.data).map_err(|e| err(e.to_string()))?;
        let input = TensorRef::from_array_view(view).map_err(|e| err(format!("input tensor: {e}")))?;
        let mut session = c.session.lock().map_err(|_| err("session poisoned"))?;
        let outputs = session
            .run(ort::inputs![self.graph.nodes[0].name.as_str() => input])
            .map_err(|e| err(format!("running the explanation graph: {e}")))?;
        names
            .iter()
            .map(|n| {
                let v = outputs.get(*n).ok_or_else(|| err(format!("output {n} missing")))?;
                let (shape, data) = v.try_extract_tensor::<f32>().map_err(|e| err(format!("output {n}: {e}")))?;
                Tensor::new(shape.iter().map(|&d| d as usize).collect(), data.to_vec())
            })
            .collect()
    }
}

impl CompiledModel for OrtModel {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_input(&self.graph, x)?;
        let c = self.session("forward".into(), || {
            Ok(Built { model: build_forward(&self.graph)?, layer_outputs: vec![] })
        })?;
        Ok(self.run(&c, x, &[LOGITS])?.remove(0))
    }

    fn explain(&self, plan: &RulePlan, x: &Tensor, target: &Target, opts: &ExplainOptions) -> Result<Explanation<Tensor>> {
        check_input(&self.graph, x)?;
        check_target(&self.graph, target)?;
        let key = format!("{plan:?}|{target}|{}", opts.keep_layers);
        let c = self.session(key, || build_explanation(&self.graph, plan, target, opts.keep_layers))?;
        let mut names: Vec<&str> = vec![LOGITS, RELEVANCE];
        names.extend(c.layer_outputs.iter().map(|(_, n)| n.as_str()));
        let mut outs = self.run(&c, x, &names)?.into_iter();
        let output = outs.next().expect("logits");
        let relevance = outs.next().expect("relevance");
        let layers = opts.keep_layers.then(|| {
            let mut v: Vec<Option<Tensor>> = vec![None; self.graph.nodes.len()];
            for ((i, _), t) in c.layer_outputs.iter().zip(outs) {
                v[*i] = Some(t);
            }
            v
        });
        Ok(Explanation { relevance, output, layers })
    }
}
