//! relprop-bench: relprop's benchmarks.
//!
//! * [`zoo`]: VGG16, ResNet50 and the golden models with seeded random weights, written as ONNX
//!   (`relprop zoo`, and built on demand into the git-ignored `zoo/` folder).
//! * `benches/lrp.rs`: criterion benchmarks (forward and five analyzers, batch 1 and 8, every requested
//!   backend, plus ONNX Runtime's own forward of the same file as the reference).
//! * the `relprop-bench` binary: `rss` (peak memory of one configuration in its own process), `gemm` (the
//!   machine's single-precision GEMM rate through the ndarray backend's GEMM) and `report` (reads criterion's
//!   estimates, writes `reports/bench/index.html` and `summary.json`).
//!
//! `cargo xtask bench` runs all of it; the environment variables of [`Config`] steer the criterion bench.

pub mod flops;
#[cfg(feature = "ort-forward")]
pub mod ortref;
pub mod report;
pub mod rng;
pub mod sys;
pub mod zoo;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use relprop_core::{analyzer_from, CompiledModel, ExplainOptions, Graph, Params, Result, RulePlan, Target, Tensor};

/// One benchmarked computation: a forward pass or an analyzer.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Name in reports and benchmark ids.
    pub label: &'static str,
    /// signxai method name, or
    pub method: Option<&'static str>,
    /// analyzer class with parameters.
    pub class: Option<&'static str>,
    pub params: &'static [&'static str],
}

/// What is benchmarked, in report order. `forward` first: every ratio is taken against it.
pub const SPECS: &[Spec] = &[
    Spec { label: "forward", method: None, class: None, params: &[] },
    Spec { label: "LRPEpsilon", method: None, class: Some("LRPEpsilon"), params: &["epsilon=0.1"] },
    Spec { label: "LRPAlpha1Beta0", method: None, class: Some("LRPAlpha1Beta0"), params: &[] },
    Spec { label: "LRPSequentialCompositeB", method: None, class: Some("LRPSequentialCompositeB"), params: &[] },
    Spec { label: "lrpsign_epsilon_0_1", method: Some("lrpsign_epsilon_0_1"), class: None, params: &[] },
    Spec { label: "LRPStdxEpsilon", method: None, class: Some("LRPStdxEpsilon"), params: &[] },
];

/// Batch sizes.
pub const BATCHES: &[usize] = &[1, 8];

/// The reference column: ONNX Runtime's own forward pass of the zoo file (2 intra-op threads).
pub const ORT_REFERENCE: &str = "ortref";

/// Threads of ONNX Runtime's reference forward pass.
pub const ORT_REFERENCE_THREADS: usize = 2;

/// The analyzers measured for `batch`: all of them, except in quick mode at batch > 1 (forward and LRPEpsilon).
pub fn specs_for(batch: usize, quick: bool) -> Vec<Spec> {
    SPECS.iter().copied().filter(|s| !quick || batch == 1 || matches!(s.label, "forward" | "LRPEpsilon")).collect()
}

impl Spec {
    pub fn by_label(label: &str) -> Option<Spec> {
        SPECS.iter().copied().find(|s| s.label == label)
    }
    /// The rule plan on `g` (None for the forward pass).
    pub fn plan(&self, g: &Graph) -> Result<Option<RulePlan>> {
        if self.method.is_none() && self.class.is_none() {
            return Ok(None);
        }
        let a = analyzer_from(self.method, self.class, &Params::parse(self.params)?)?;
        Ok(Some(RulePlan::resolve(g, &a)?))
    }
}

/// The criterion group of a model and batch size.
pub fn group_id(model: &str, batch: usize) -> String {
    format!("{model}-b{batch}")
}

/// The criterion function id of a backend and analyzer.
pub fn function_id(backend: &str, label: &str) -> String {
    format!("{backend}-{label}")
}

/// Settings of a bench run, from the environment (set by `cargo xtask bench`).
#[derive(Debug, Clone)]
pub struct Config {
    /// `RELPROP_BENCH_MODELS`, comma-separated (default vgg16,resnet50).
    pub models: Vec<String>,
    /// `RELPROP_BENCH_BACKENDS`, comma-separated (default ndarray; `ortref` = ONNX Runtime's own forward).
    pub backends: Vec<String>,
    /// `RELPROP_BENCH_QUICK=1`.
    pub quick: bool,
    /// `RELPROP_BENCH_ZOO` (default `<workspace>/zoo`).
    pub zoo: PathBuf,
}

/// The workspace root (this crate lives in `crates/relprop-bench`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

impl Config {
    pub fn from_env() -> Config {
        Config {
            models: list("RELPROP_BENCH_MODELS", "vgg16,resnet50"),
            backends: list("RELPROP_BENCH_BACKENDS", "ndarray"),
            quick: std::env::var("RELPROP_BENCH_QUICK").is_ok_and(|v| v == "1" || v == "true"),
            zoo: std::env::var_os("RELPROP_BENCH_ZOO").map(PathBuf::from).unwrap_or_else(|| workspace().join("zoo")),
        }
    }
}

/// The zoo file of `model` in `zoo_dir`, built (and written) first when missing.
pub fn zoo_file(zoo_dir: &Path, model: &str) -> Result<PathBuf> {
    let path = zoo_dir.join(format!("{model}.onnx"));
    if !path.is_file() {
        eprintln!("zoo: building {} ...", path.display());
        zoo::write(model, zoo::SEED, &workspace().join("golden/onnx"), &path)?;
    }
    Ok(path)
}

/// Load a zoo model (built on demand).
pub fn load_model(zoo_dir: &Path, model: &str) -> Result<Graph> {
    relprop_onnx::load(&zoo_file(zoo_dir, model)?)
}

/// A prepared computation: compiled model, plan and input.
pub struct Job {
    pub compiled: Arc<dyn CompiledModel>,
    pub plan: Option<RulePlan>,
    pub x: Tensor,
}

impl Job {
    pub fn new(compiled: Arc<dyn CompiledModel>, g: &Graph, spec: &Spec, batch: usize) -> Result<Job> {
        Ok(Job { compiled, plan: spec.plan(g)?, x: zoo::input(g, batch, zoo::SEED) })
    }
    /// Run once; returns the relevance (or the logits of a forward pass).
    pub fn run(&self) -> Result<Tensor> {
        match &self.plan {
            None => self.compiled.forward(&self.x),
            Some(p) => Ok(self.compiled.explain(p, &self.x, &Target::Max, &ExplainOptions::default())?.relevance),
        }
    }
}

/// Compile `g` on the backend named `name` on `device` (`relprop_conform::backends::by_name`).
pub fn compile(name: &str, device: &str, g: &Graph) -> Result<Arc<dyn CompiledModel>> {
    let be = relprop_conform::backends::by_name(name, device)?;
    Ok(Arc::from(be.compile(Arc::new(g.clone()))?))
}
