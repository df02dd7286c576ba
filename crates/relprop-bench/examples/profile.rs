//! Where an explanation's time goes, per backend primitive:
//! `cargo run --release -p relprop-bench --example profile -- MODEL ANALYZER [BATCH] [REPEAT]`.
//! Wraps the backend's [`Numerics`] in a decorator that times every call (kernel calls per WeightMod; with
//! `PROFILE_NODES=1` per layer geometry). The ndarray backend by default; built with `--features tch`,
//! `PROFILE_BACKEND=tch` times the tch backend on the CPU (run with `LD_LIBRARY_PATH=.deps/libtorch/lib`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use relprop_bench::{load_model, workspace, zoo, Spec};
use relprop_core::engine::{self, ExplainOptions, Numerics};
use relprop_core::graph::Activation;
use relprop_core::program::{BiasMod, WeightMod, XMod};
use relprop_core::{Result, Target, Tensor};
use relprop_ndarray::NdModel;

struct Timed<'a, N> {
    inner: &'a N,
    graph: &'a relprop_core::graph::Graph,
    times: RefCell<BTreeMap<String, (f64, usize)>>,
}

impl<N> Timed<'_, N> {
    /// With `PROFILE_NODES=1`: kernel calls are told apart by the node's geometry.
    fn detail(&self, node: usize) -> String {
        if std::env::var("PROFILE_NODES").is_err() {
            return String::new();
        }
        let g = self.graph;
        let n = &g.nodes[node];
        match &n.op {
            relprop_core::graph::Op::Conv(c) => format!(" k{:?} s{:?} in{:?} out{:?}", c.kernel(), c.strides, g.nodes[n.inputs[0]].shape, n.shape),
            _ => format!(" {}", n.name),
        }
    }

    fn t<R>(&self, what: impl Into<String>, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        let mut m = self.times.borrow_mut();
        let e = m.entry(what.into()).or_default();
        e.0 += t.elapsed().as_secs_f64();
        e.1 += 1;
        r
    }
}

impl<N: Numerics> Numerics for Timed<'_, N> {
    type T = N::T;
    fn input(&self, x: &Tensor) -> Result<Self::T> { self.t("input", || self.inner.input(x)) }
    fn output(&self, t: &Self::T) -> Result<Tensor> { self.t("output", || self.inner.output(t)) }
    fn linear(&self, node: usize, w: WeightMod, x: &Self::T) -> Result<Self::T> {
        let k = format!("linear {} {w:?}{}", self.graph.nodes[node].op.kind(), self.detail(node));
        self.t(k, || self.inner.linear(node, w, x))
    }
    fn linear_t(&self, node: usize, w: WeightMod, s: &Self::T) -> Result<Self::T> {
        let k = format!("linear_t {} {w:?}{}", self.graph.nodes[node].op.kind(), self.detail(node));
        self.t(k, || self.inner.linear_t(node, w, s))
    }
    fn linear_bias(&self, node: usize, w: WeightMod, b: BiasMod, x: &Self::T) -> Result<Self::T> {
        let k = format!("linear {} {w:?}{}", self.graph.nodes[node].op.kind(), self.detail(node));
        self.t(k, || self.inner.linear_bias(node, w, b, x))
    }
    fn add_bias(&self, node: usize, b: BiasMod, z: &Self::T) -> Result<Self::T> { self.t("add_bias", || self.inner.add_bias(node, b, z)) }
    fn activation(&self, a: &Activation, z: &Self::T) -> Result<Self::T> { self.t("activation", || self.inner.activation(a, z)) }
    fn forward(&self, node: usize, inputs: &[&Self::T]) -> Result<Self::T> {
        let k = format!("forward {}", self.graph.nodes[node].op.kind());
        self.t(k, || self.inner.forward(node, inputs))
    }
    fn pool_t(&self, node: usize, s: &Self::T) -> Result<Self::T> { self.t("pool_t", || self.inner.pool_t(node, s)) }
    fn route(&self, node: usize, inputs: &[&Self::T], r: &Self::T) -> Result<Vec<Self::T>> {
        let k = format!("route {}", self.graph.nodes[node].op.kind());
        self.t(k, || self.inner.route(node, inputs, r))
    }
    fn add_channel(&self, t: &Self::T, v: &[f32]) -> Result<Self::T> { self.t("add_channel", || self.inner.add_channel(t, v)) }
    fn xmod(&self, x: &Self::T, m: XMod) -> Result<Self::T> { self.t(format!("xmod {m:?}"), || self.inner.xmod(x, m)) }
    fn add(&self, a: &Self::T, b: &Self::T) -> Result<Self::T> { self.t("add", || self.inner.add(a, b)) }
    fn sub(&self, a: &Self::T, b: &Self::T) -> Result<Self::T> { self.t("sub", || self.inner.sub(a, b)) }
    fn mul(&self, a: &Self::T, b: &Self::T) -> Result<Self::T> { self.t("mul", || self.inner.mul(a, b)) }
    fn mul_owned(&self, a: &Self::T, b: Self::T) -> Result<Self::T> { self.t("mul_owned", || self.inner.mul_owned(a, b)) }
    fn scale(&self, a: &Self::T, c: f32) -> Result<Self::T> { self.t("scale", || self.inner.scale(a, c)) }
    fn safe_div(&self, a: &Self::T, b: &Self::T) -> Result<Self::T> { self.t("safe_div", || self.inner.safe_div(a, b)) }
    fn stabilize(&self, z: &Self::T, eps: f32) -> Result<Self::T> { self.t("stabilize", || self.inner.stabilize(z, eps)) }
    fn div_stabilized(&self, r: &Self::T, z: &Self::T, eps: f32) -> Result<Self::T> { self.t("div_stabilized", || self.inner.div_stabilized(r, z, eps)) }
    fn stabilize_rows(&self, z: &Self::T, eps: &Self::T) -> Result<Self::T> { self.t("stabilize_rows", || self.inner.stabilize_rows(z, eps)) }
    fn std_rows(&self, x: &Self::T, over_batch: bool) -> Result<Self::T> { self.t("std_rows", || self.inner.std_rows(x, over_batch)) }
    fn scale_rows(&self, a: &Self::T, v: &Self::T) -> Result<Self::T> { self.t("scale_rows", || self.inner.scale_rows(a, v)) }
    fn row_max(&self, t: &Self::T) -> Result<(Self::T, Self::T)> { self.t("row_max", || self.inner.row_max(t)) }
    fn row_pick(&self, t: &Self::T, k: usize) -> Result<(Self::T, Self::T)> { self.t("row_pick", || self.inner.row_pick(t, k)) }
    fn is_zero(&self, t: &Self::T) -> bool { self.t("is_zero", || self.inner.is_zero(t)) }
    fn nonnegative(&self, t: &Self::T) -> bool { self.t("nonnegative", || self.inner.nonnegative(t)) }
    fn bias_activation(&self, node: usize, b: BiasMod, z: &Self::T, act: Option<&Activation>) -> Result<Self::T> {
        self.t("bias_activation", || self.inner.bias_activation(node, b, z, act))
    }
    fn batch_norm_rule(&self, x: &Self::T, y: &Self::T, r: &Self::T, beta: &[f32], mean: &[f32]) -> Result<Self::T> {
        self.t("batch_norm_rule", || self.inner.batch_norm_rule(x, y, r, beta, mean))
    }
    fn batch_norm_rule_then_divide(&self, x: &Self::T, y: &Self::T, r: &Self::T, beta: &[f32], mean: &[f32], z: &Self::T, eps: Option<f32>) -> Result<Self::T> {
        self.t("batch_norm_rule_then_divide", || self.inner.batch_norm_rule_then_divide(x, y, r, beta, mean, z, eps))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, label) = (args.first().map(String::as_str).unwrap_or("vgg16"), args.get(1).map(String::as_str).unwrap_or("LRPEpsilon"));
    let batch: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1);
    let repeat: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(3);
    let g = Arc::new(load_model(&workspace().join("zoo"), model).expect("model"));
    let run = Run { model, g: &g, label, batch, repeat };
    match std::env::var("PROFILE_BACKEND").as_deref() {
        #[cfg(feature = "tch")]
        Ok("tch") => run.on(&relprop_tch::TchBackend::new("cpu").expect("tch").compile_tch(g.clone()).expect("compile")),
        Ok("ndarray") | Err(_) => run.on(&NdModel::new(g.clone()).expect("compile")),
        Ok(other) => panic!("PROFILE_BACKEND={other}: ndarray, or tch in a --features tch build"),
    }
}

struct Run<'a> {
    model: &'a str,
    g: &'a relprop_core::graph::Graph,
    label: &'a str,
    batch: usize,
    repeat: usize,
}

impl Run<'_> {
    fn on<N: Numerics>(&self, nx: &N) {
        let (g, batch, repeat) = (self.g, self.batch, self.repeat);
        let spec = Spec::by_label(self.label).expect("analyzer label");
        let x = zoo::input(g, batch, zoo::SEED);
        let timed = Timed { inner: nx, graph: g, times: RefCell::new(BTreeMap::new()) };
        let mut total = 0.0;
        for i in 0..=repeat {
            if i == 1 {
                timed.times.borrow_mut().clear(); // the first run warms caches and thread-local buffers
                total = 0.0;
            }
            let t = Instant::now();
            match spec.plan(g).expect("plan") {
                None => drop(engine::forward(&timed, g, &x).expect("forward")),
                Some(p) => drop(engine::explain(&timed, g, &p, &x, &Target::Max, &ExplainOptions::default()).expect("explain")),
            }
            total += t.elapsed().as_secs_f64();
        }
        let r = repeat as f64;
        let mut rows: Vec<_> = timed.times.borrow().iter().map(|(k, &(s, c))| (k.clone(), s / r, c / repeat)).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("{} {} batch {batch}: {:.1} ms per run", self.model, self.label, total / r * 1e3);
        for (k, s, c) in rows {
            println!("{:>8.1} ms {:>5.1}%  {c:>4}×  {k}", s * 1e3, 100.0 * s / (total / r));
        }
    }
}
