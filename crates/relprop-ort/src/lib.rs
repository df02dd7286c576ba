//! relprop-ort: the ONNX Runtime backend.
//!
//! relprop computes no relevance here. A (graph, rule plan, target, options) is compiled into ONE standard
//! ONNX graph — the shared engine of `relprop-core` run once on a symbolic [`builder::OnnxBuilder`] — whose outputs
//! are the logits and the input relevance (optionally every layer's relevance); ONNX Runtime runs it. Sessions
//! are cached per (plan, target, options) inside the compiled model, least recently used first out beyond a
//! memory budget.
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
    /// Size of its encoded graph (weights and substituted weights are initializers of the graph).
    bytes: usize,
}

/// Total encoded size of the cached explanation graphs above which the least recently used sessions are
/// dropped (`RELPROP_ORT_SESSION_BYTES` overrides it). A session holds its graph's initializers (the weights and
/// every substituted copy) and an arena sized by its largest run: VGG16's sessions are 0.5–1.6 GB each before
/// the arena, and caching one per analyzer ran a 24 GB machine out of memory at batch 8. Small models keep
/// every session.
const SESSION_BYTES: usize = 1 << 31;

fn session_budget() -> usize {
    std::env::var("RELPROP_ORT_SESSION_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(SESSION_BYTES)
}

/// Sessions by key, with the tick of their last use.
#[derive(Default)]
struct Sessions {
    map: HashMap<String, (Arc<Cached>, u64)>,
    tick: u64,
}

impl Sessions {
    fn get(&mut self, key: &str) -> Option<Arc<Cached>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(c, t)| {
            *t = tick;
            c.clone()
        })
    }

    /// Insert, first dropping least recently used sessions until the new one fits the budget (the new one is
    /// kept even when it alone exceeds it).
    fn insert(&mut self, key: String, c: Arc<Cached>, budget: usize) {
        while !self.map.is_empty() && self.map.values().map(|(c, _)| c.bytes).sum::<usize>() + c.bytes > budget {
            let oldest = self.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()).expect("non-empty");
            self.map.remove(&oldest);
        }
        self.tick += 1;
        self.map.insert(key, (c, self.tick));
    }
}

/// A model compiled for ONNX Runtime: explanation graphs are built and sessions created on first use of each
/// (plan, target, options), then reused (least recently used ones are dropped beyond [`SESSION_BYTES`]).
pub struct OrtModel {
    graph: Arc<Graph>,
    env: ort::environment::Environment,
    sessions: Mutex<Sessions>,
    session_budget: std::sync::atomic::AtomicUsize,
}

impl OrtModel {
    /// Prepare `graph`.
    pub fn new(backend: &OrtBackend, graph: Arc<Graph>) -> Result<OrtModel> {
        graph.validate()?;
        Ok(OrtModel { graph, env: backend.env.clone(), sessions: Mutex::new(Sessions::default()), session_budget: session_budget().into() })
    }

    /// Set the session cache's budget in encoded graph bytes (default [`SESSION_BYTES`] or
    /// `RELPROP_ORT_SESSION_BYTES`).
    pub fn set_session_budget(&self, bytes: usize) {
        self.session_budget.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Number of sessions held (one per distinct plan/target/options, within the memory budget).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|m| m.map.len()).unwrap_or(0)
    }

    fn session(&self, key: String, build: impl FnOnce() -> Result<Built>) -> Result<Arc<Cached>> {
        let mut map = self.sessions.lock().map_err(|_| err("session cache poisoned"))?;
        if let Some(c) = map.get(&key) {
            return Ok(c);
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
        let c = Arc::new(Cached { session: Mutex::new(session), layer_outputs: built.layer_outputs, bytes: bytes.len() });
        map.insert(key, c.clone(), self.session_budget.load(std::sync::atomic::Ordering::Relaxed));
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
