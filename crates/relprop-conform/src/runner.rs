//! Running cases on backends: golden comparison, property checks, cross-backend agreement.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use relprop_core::graph::Graph;
use relprop_core::rules::Rule;
use relprop_core::{npy, CompiledModel, Error, ExplainOptions, Result, RulePlan, Target, Tensor};

use crate::spec::{params_from, Case, Check, InputTransform, Reference};

/// Agreement required between any two backends (max relative difference).
pub const AGREEMENT: f32 = 1e-5;
/// How many times its one-ulp input sensitivity an ill-conditioned map may differ between backends. The
/// sensitivity is the largest change under deterministic one-ulp steps of half the inputs and three random
/// `1 ± 1e-7` nudges of all of them, so it underestimates the rounding
/// of whole convolutions summed in other orders; 10 as in the backend test suites (`relprop_core::rng::agreement`).
/// (It was 2 until a GammaTextbook map of the keras_stem model differed by 1.2e-5 at a sensitivity of 4.3e-6.)
pub const CONDITIONING_ALLOWANCE: f32 = 10.0;

/// The result of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// One case on one backend.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub case: usize,
    pub backend: String,
    pub ok: bool,
    /// Error against the reference: relative (or absolute for near-zero references).
    pub error: Option<f32>,
    pub checks: Vec<CheckResult>,
    /// Relevance of the first sample (for heatmaps and agreement).
    pub relevance: Option<Tensor>,
    /// Relevance sum per cut layer, top first (for the conservation chart).
    pub layer_sums: Vec<(String, f64)>,
    pub seconds: f64,
}

/// Two backends compared on one case.
#[derive(Debug, Clone)]
pub struct Agreement {
    pub case: usize,
    pub a: String,
    pub b: String,
    /// Max relative difference (absolute for near-zero maps).
    pub diff: f32,
    /// Measured only when `diff` exceeds [`AGREEMENT`]: how much the map moves when the input moves by one
    /// float32 ulp. Two float32 implementations cannot be expected to agree better than that.
    pub conditioning: Option<f32>,
}

impl Agreement {
    /// Within 1e-5, or within [`CONDITIONING_ALLOWANCE`] times the measured input-rounding sensitivity of an
    /// ill-conditioned case.
    pub fn ok(&self) -> bool {
        self.diff <= AGREEMENT || self.conditioning.is_some_and(|k| self.diff <= CONDITIONING_ALLOWANCE * k)
    }
}

/// A conformance run.
pub struct Run {
    pub cases: Vec<Case>,
    pub outcomes: Vec<Outcome>,
    pub agreement: Vec<Agreement>,
    pub backends: Vec<String>,
    /// Backends asked for but not available, with the reason.
    pub unavailable: Vec<(String, String)>,
}

impl Run {
    /// Number of failed outcomes plus disagreeing backend pairs.
    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.ok).count() + self.agreement.iter().filter(|a| !a.ok()).count()
    }
}

/// Compiled models, one per (backend, model file).
struct Models {
    backend: Box<dyn relprop_core::Backend>,
    cache: HashMap<PathBuf, (Arc<Graph>, Box<dyn CompiledModel>)>,
}

impl Models {
    fn get(&mut self, path: &PathBuf) -> Result<&(Arc<Graph>, Box<dyn CompiledModel>)> {
        if !self.cache.contains_key(path) {
            // The goldens are signxai's: its order of merge inputs (relprop_core::arrival).
            let g = Arc::new(relprop_core::MergeOrder::Signxai.apply(relprop_onnx::load(path)?));
            let m = self.backend.compile(g.clone())?;
            self.cache.insert(path.clone(), (g, m));
        }
        Ok(&self.cache[path])
    }
}

/// `glob` with `*` and `?` against `text`.
pub fn glob_match(glob: &str, text: &str) -> bool {
    fn rec(g: &[char], t: &[char]) -> bool {
        match (g.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => rec(&g[1..], t) || (!t.is_empty() && rec(g, &t[1..])),
            (Some('?'), Some(_)) => rec(&g[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => rec(&g[1..], &t[1..]),
            _ => false,
        }
    }
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    rec(&g, &t)
}

/// Run `cases` (filtered by `filter` on `suite/name`) on `backends` (tch on `device`: cpu, cuda, cuda:N);
/// `progress` is called after each case.
pub fn run(cases: Vec<Case>, backends: &[String], device: &str, filter: Option<&str>, mut progress: impl FnMut(usize, usize, &str)) -> Run {
    let cases: Vec<Case> = cases.into_iter().filter(|c| filter.is_none_or(|f| glob_match(f, &format!("{}/{}", c.suite, c.name)))).collect();
    let mut models: Vec<Models> = Vec::new();
    let mut unavailable = Vec::new();
    for b in backends {
        let device = if b == "tch" { device } else { "cpu" };
        match crate::backends::by_name(b, device) {
            Ok(backend) => models.push(Models { backend, cache: HashMap::new() }),
            Err(e) => unavailable.push((b.clone(), e.to_string())),
        }
    }
    let ran: Vec<String> = models.iter().map(|m| m.backend.name().to_string()).collect();
    let mut outcomes = Vec::new();
    let mut agreement = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let mut maps: Vec<(String, Tensor)> = Vec::new();
        for m in models.iter_mut() {
            let name = m.backend.name().to_string();
            if !case.backends.contains(&name) {
                continue;
            }
            let t0 = Instant::now();
            let mut o = run_case(case, m).unwrap_or_else(|e| Outcome {
                case: ci,
                backend: name.clone(),
                ok: false,
                error: None,
                checks: vec![CheckResult { name: "run".into(), ok: false, detail: e.to_string() }],
                relevance: None,
                layer_sums: vec![],
                seconds: 0.0,
            });
            o.case = ci;
            o.backend = name.clone();
            o.seconds = t0.elapsed().as_secs_f64();
            if let Some(r) = &o.relevance {
                maps.push((name.clone(), r.clone()));
            }
            outcomes.push(o);
        }
        for i in 0..maps.len() {
            for j in i + 1..maps.len() {
                let diff = difference(&maps[j].1, &maps[i].1);
                let conditioning = if diff > AGREEMENT { models.first_mut().and_then(|m| conditioning(case, m).ok()) } else { None };
                agreement.push(Agreement { case: ci, a: maps[i].0.clone(), b: maps[j].0.clone(), diff, conditioning });
            }
        }
        progress(ci + 1, cases.len(), &case.name);
    }
    Run { cases, outcomes, agreement, backends: ran, unavailable }
}

/// Relative difference, or absolute for a near-zero reference.
fn difference(a: &Tensor, reference: &Tensor) -> f32 {
    if reference.max_abs() < 1e-6 { a.max_abs_diff(reference) } else { a.max_rel_diff(reference) }
}

/// `v` moved by one unit in the last place, up or down (exact zeros stay zero: they carry meaning for SIGN).
fn ulp_step(v: f32, up: bool) -> f32 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let away = up == (v > 0.0);
    f32::from_bits(if away { v.to_bits() + 1 } else { v.to_bits() - 1 })
}

/// How far the case's map moves when every non-zero input value moves by one ulp (the largest change over two
/// deterministic sign patterns): the agreement two float32 implementations can be expected to reach.
fn conditioning(case: &Case, models: &mut Models) -> Result<f32> {
    let x = npy::read(&case.input)?.slice_batch(0, 1);
    let analyzer = case.analyzer()?;
    let (g, m) = models.get(&case.model)?;
    let (g, m) = (g.clone(), m.as_ref());
    let r = explain(m, &g, case, &analyzer, &x, false)?.relevance;
    let mut worst = 0f32;
    let mut nudged: Vec<Tensor> = [|i: usize| i.is_multiple_of(2), |i: usize| (i.wrapping_mul(2654435761) >> 7).is_multiple_of(2)]
        .into_iter()
        .map(|pattern| Tensor { shape: x.shape.clone(), data: x.data.iter().enumerate().map(|(i, &v)| ulp_step(v, pattern(i))).collect() })
        .collect();
    // And every input times 1 ± 1e-7 (three sign patterns): a first layer that adds a constant (Keras Rescaling
    // with an offset) rounds most one-ulp steps away, and the few that survive decide what the map shows.
    nudged.extend((1..=3).map(|seed| relprop_core::rng::sign_nudge(&x, seed)));
    for xn in &nudged {
        let rp = explain(m, &g, case, &analyzer, xn, false)?.relevance;
        worst = worst.max(difference(&rp, &r));
    }
    Ok(worst)
}

fn check(name: &str, ok: bool, detail: String) -> CheckResult {
    CheckResult { name: name.into(), ok, detail }
}

fn explain(m: &dyn CompiledModel, g: &Graph, case: &Case, analyzer: &relprop_core::Analyzer, x: &Tensor, keep: bool) -> Result<relprop_core::Explanation<Tensor>> {
    let _ = case;
    let plan = RulePlan::resolve(g, analyzer)?;
    m.explain(&plan, x, &case.target, &ExplainOptions { keep_layers: keep })
}

fn run_case(case: &Case, models: &mut Models) -> Result<Outcome> {
    let mut o = Outcome { case: 0, backend: String::new(), ok: true, error: None, checks: vec![], relevance: None, layer_sums: vec![], seconds: 0.0 };
    if let Some(expected) = &case.expect_error {
        let msg = case.analyzer().err().map(|e| e.to_string()).unwrap_or_default();
        let ok = msg.contains(expected.as_str());
        o.checks.push(check("expect_error", ok, msg));
        o.ok = ok;
        return Ok(o);
    }
    let analyzer = case.analyzer()?;
    let x = npy::read(&case.input)?;
    let (g, m) = models.get(&case.model)?;
    let (g, m) = (g.clone(), m.as_ref());
    let keep = case.checks.iter().any(|c| matches!(c, Check::Conservation { .. }));
    let e = explain(m, &g, case, &analyzer, &x, keep)?;
    let r = &e.relevance;
    // reference
    let reference = match &case.reference {
        Reference::None => None,
        Reference::File(p) => Some(npy::read(p)?),
        Reference::Values(v) => Some(Tensor::new(vec![v.len()], v.clone())?),
    };
    if let Some(reference) = reference {
        if reference.len() != r.len() {
            o.checks.push(check("reference", false, format!("reference has shape {:?}, relevance {:?}", reference.shape, r.shape)));
        } else {
            let flat = Tensor { shape: reference.shape.clone(), data: r.data.clone() };
            let scale = reference.max_abs();
            let diff = flat.max_abs_diff(&reference);
            let (err, ok) = if scale < 1e-6 { (diff, diff <= case.abs_tolerance) } else { (diff / scale, diff <= case.tolerance * scale) };
            o.error = Some(err);
            o.checks.push(check("reference", ok, format!("max|diff| {diff:.3e}, max|ref| {scale:.3e}")));
        }
    }
    for c in &case.checks {
        o.checks.push(run_check(c, case, m, &g, &analyzer, &x, &e)?);
    }
    if let Some(layers) = &e.layers {
        let cuts = cut_nodes(&g);
        o.layer_sums = (0..g.nodes.len())
            .rev()
            .filter(|&i| cuts[i])
            .filter_map(|i| layers[i].as_ref().map(|t| (g.nodes[i].name.clone(), t.data.iter().map(|&v| v as f64).sum())))
            .collect();
    }
    o.relevance = Some(r.slice_batch(0, 1));
    o.ok = o.checks.iter().all(|c| c.ok);
    Ok(o)
}

/// Nodes that every path from the input to the output crosses (where conservation can be checked).
pub fn cut_nodes(g: &Graph) -> Vec<bool> {
    let live = g.live();
    let n = g.nodes.len();
    (0..n)
        .map(|skip| {
            if !live[skip] {
                return false;
            }
            if skip == 0 || skip == g.output {
                return true;
            }
            let mut reach = vec![false; n];
            reach[0] = true;
            for i in 1..n {
                reach[i] = i != skip && g.nodes[i].inputs.iter().any(|&j| reach[j]);
            }
            !reach[g.output]
        })
        .collect()
}

fn selected_logit(out: &Tensor, t: &Target) -> f64 {
    let k = out.shape[1];
    (0..out.shape[0])
        .map(|n| {
            let row = &out.data[n * k..(n + 1) * k];
            match t {
                Target::Index(i) => row[*i] as f64,
                Target::Max => row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64,
                Target::All => row.iter().map(|&v| v as f64).sum(),
            }
        })
        .sum()
}

fn sum(t: &Tensor) -> f64 {
    t.data.iter().map(|&v| v as f64).sum()
}

fn rel_ok(a: f64, b: f64, tol: f32) -> bool {
    (a - b).abs() <= tol as f64 * b.abs().max(1e-12)
}

#[allow(clippy::too_many_arguments)]
fn run_check(c: &Check, case: &Case, m: &dyn CompiledModel, g: &Graph, analyzer: &relprop_core::Analyzer, x: &Tensor, e: &relprop_core::Explanation<Tensor>) -> Result<CheckResult> {
    let r = &e.relevance;
    Ok(match c {
        Check::Finite => {
            let bad = r.data.iter().filter(|v| !v.is_finite()).count();
            check("finite", bad == 0, format!("{bad} non-finite values"))
        }
        Check::Shape => check("shape", r.shape == x.shape, format!("relevance {:?}, input {:?}", r.shape, x.shape)),
        Check::Conservation { tol } => {
            let layers = e.layers.as_ref().ok_or_else(|| Error::Input("layers not kept".into()))?;
            let cuts = cut_nodes(g);
            let total = layers[g.output].as_ref().map(sum).unwrap_or(0.0);
            let mut worst = (0.0f64, String::new());
            for (i, l) in layers.iter().enumerate() {
                if let (true, Some(l)) = (cuts[i], l) {
                    let d = (sum(l) - total).abs() / total.abs().max(1e-12);
                    if d >= worst.0 {
                        worst = (d, g.nodes[i].name.clone());
                    }
                }
            }
            check("conservation", worst.0 <= *tol as f64 && total.abs() > 1e-9, format!("top {total:.6e}; worst relative drift {:.2e} at {}", worst.0, worst.1))
        }
        Check::TotalVsLogit { tol } => {
            let logit = selected_logit(&e.output, &case.target);
            let s = sum(r);
            check("total_vs_logit", rel_ok(s, logit, *tol), format!("sum R {s:.6e}, selected logit {logit:.6e}"))
        }
        Check::SameAs { method, analyzer: class, params, input_transform, tol } => {
            let p = params_from(params).map_err(Error::Input)?;
            let other = relprop_core::analyzer_from(method.as_deref(), class.as_deref(), &p)?;
            let x2 = match input_transform {
                None => x.clone(),
                Some(InputTransform::ZerosToTinyPositive) => {
                    Tensor { shape: x.shape.clone(), data: x.data.iter().map(|&v| if v == 0.0 { 1e-30 } else { v }).collect() }
                }
            };
            let r2 = explain(m, g, case, &other, &x2, false)?.relevance;
            let d = r.max_rel_diff(&r2);
            check("same_as", d <= *tol, format!("max relative difference {d:.2e} to {}", other.name))
        }
        Check::SignmuThreshold { mu, tol } => {
            let mut sign = analyzer.clone();
            sign.input_layer_rule = Some(Rule::Sign);
            let rs = explain(m, g, case, &sign, x, false)?.relevance;
            let expect: Vec<f32> = rs
                .data
                .iter()
                .zip(&x.data)
                .map(|(&v, &xi)| v * (if xi >= *mu { 1.0 } else { -1.0 }) * (if xi >= 0.0 { 1.0 } else { -1.0 }))
                .collect();
            let d = r.max_rel_diff(&Tensor { shape: r.shape.clone(), data: expect });
            check("signmu_threshold", d <= *tol, format!("max relative difference {d:.2e} to sign map · s_mu(x) · sgn(x)"))
        }
        Check::BatchPerSample { tol } => {
            let x0 = x.slice_batch(0, 1);
            let variants: Vec<Tensor> = vec![
                x0.clone(),
                Tensor { shape: x0.shape.clone(), data: x0.data.iter().map(|v| -v).collect() },
                Tensor { shape: x0.shape.clone(), data: x0.data.iter().enumerate().map(|(i, &v)| if i % 3 == 0 { 0.0 } else { v }).collect() },
                Tensor { shape: x0.shape.clone(), data: x0.data.iter().map(|v| 0.5 * v).collect() },
            ];
            let batch = Tensor::concat_batch(&variants);
            let rb = explain(m, g, case, analyzer, &batch, false)?.relevance;
            let (mut worst, mut worst_at) = (0f32, 0);
            let mut singles = Vec::with_capacity(variants.len());
            for (n, v) in variants.iter().enumerate() {
                let r1 = explain(m, g, case, analyzer, v, false)?.relevance;
                let d = difference(&rb.slice_batch(n, 1), &r1);
                if d > worst {
                    (worst, worst_at) = (d, n);
                }
                singles.push(r1);
            }
            if worst <= *tol {
                return Ok(check("batch_per_sample", true, format!("worst difference {worst:.2e} over 4 samples")));
            }
            // A batch sums in another order (other GEMM shapes): where the map amplifies rounding, allow what
            // the sample's own map moves under rounding-sized input nudges, as between backends.
            let mut sensitivity = 0f32;
            for xn in relprop_core::rng::rounding_nudges(&variants[worst_at]) {
                let rn = explain(m, g, case, analyzer, &xn, false)?.relevance;
                sensitivity = sensitivity.max(difference(&rn, &singles[worst_at]));
            }
            let ok = worst <= CONDITIONING_ALLOWANCE * sensitivity;
            check(
                "batch_per_sample",
                ok,
                format!("worst difference {worst:.2e} over 4 samples (sample {worst_at}); its input-rounding sensitivity {sensitivity:.2e}"),
            )
        }
    })
}
