//! The bench report: criterion's medians plus derived figures (ratios, throughput, GFLOP/s, peak memory),
//! written as `summary.json` and a self-contained `index.html` with inline SVG charts (plotters).

use std::path::Path;
use std::time::SystemTime;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Value};

use crate::{function_id, group_id, ORT_REFERENCE, SPECS};

/// One timed configuration (criterion's estimates).
#[derive(Debug, Clone)]
pub struct Timing {
    pub model: String,
    pub batch: usize,
    pub backend: String,
    pub analyzer: String,
    /// Median time per run, seconds, and its 95 % confidence interval.
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    /// GEMM FLOPs (2 × multiply-adds) and elementwise operations of one run.
    pub gemm_flops: f64,
    pub elem_ops: f64,
}

/// Peak memory of one configuration, measured in a process of its own.
#[derive(Debug, Clone)]
pub struct Memory {
    pub model: String,
    pub batch: usize,
    pub backend: String,
    pub analyzer: String,
    /// VmHWM while loading and compiling (MiB).
    pub load_peak_mb: f64,
    /// VmHWM during the run, measured after resetting the peak once the model was loaded (MiB).
    pub run_peak_mb: f64,
    pub weights_mb: f64,
    /// One batch's activations: every node's output once (MiB).
    pub activations_mb: f64,
    pub relevance_sum: f64,
    pub finite: bool,
    pub seconds: f64,
}

/// Everything a report shows.
pub struct Report {
    pub info: Vec<(String, String)>,
    pub gemm: Vec<(String, f64)>,
    pub timings: Vec<Timing>,
    pub memory: Vec<Memory>,
    pub notes: Vec<String>,
    pub quick: bool,
    pub models: Vec<String>,
    pub backends: Vec<String>,
    /// The peers' figures of this run (`reports/bench/peers.json`: `{"signxai"|"torch": {"rows": [...],
    /// "versions": {...}}}`), when `--vs-signxai` / `--vs-zennit` ran.
    pub peers: Option<Value>,
}

/// Criterion's median estimate and interval (seconds) of one benchmark, when written after `since`.
pub fn read_estimate(criterion: &Path, model: &str, batch: usize, backend: &str, analyzer: &str, since: Option<SystemTime>) -> Option<(f64, f64, f64)> {
    let p = criterion.join(group_id(model, batch)).join(function_id(backend, analyzer)).join("new/estimates.json");
    if let Some(t) = since {
        if std::fs::metadata(&p).and_then(|m| m.modified()).ok()? < t {
            return None;
        }
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
    let m = &v["median"];
    let ns = |x: &Value| x.as_f64().map(|n| n / 1e9);
    Some((ns(&m["point_estimate"])?, ns(&m["confidence_interval"]["lower_bound"])?, ns(&m["confidence_interval"]["upper_bound"])?))
}

impl Report {
    pub fn gemm_rate(&self) -> f64 {
        self.gemm.iter().map(|g| g.1).fold(0.0, f64::max)
    }
    pub fn find(&self, model: &str, batch: usize, backend: &str, analyzer: &str) -> Option<&Timing> {
        self.timings.iter().find(|t| t.model == model && t.batch == batch && t.backend == backend && t.analyzer == analyzer)
    }
    /// Same backend's forward pass.
    pub fn own_forward(&self, t: &Timing) -> Option<f64> {
        self.find(&t.model, t.batch, &t.backend, "forward").map(|f| f.median)
    }
    /// ONNX Runtime's forward pass of the same model and batch.
    pub fn ort_forward(&self, model: &str, batch: usize) -> Option<f64> {
        self.find(model, batch, ORT_REFERENCE, "forward").map(|f| f.median)
    }
    fn mem(&self, model: &str, batch: usize, backend: &str, analyzer: &str) -> Option<&Memory> {
        self.memory.iter().find(|m| m.model == model && m.batch == batch && m.backend == backend && m.analyzer == analyzer)
    }

    /// The target rows: (name, measured, target, stretch, how measured), `measured` None when missing.
    pub fn targets(&self) -> Vec<(String, Option<f64>, String, String)> {
        let mut rows = Vec::new();
        for model in ["vgg16", "resnet50"] {
            for (an, tgt, stretch) in [("LRPEpsilon", 3.0, 2.2), ("LRPAlpha1Beta0", 4.5, 3.2), ("LRPSequentialCompositeB", 4.5, 3.2)] {
                let t = self.find(model, 1, "ndarray", an);
                let r = t.and_then(|t| self.ort_forward(model, 1).map(|f| t.median / f));
                rows.push((format!("{model} b1 ndarray {an} / ONNX Runtime forward (2 threads)"), r, format!("<= {tgt}"), format!("{stretch}")));
                let r2 = t.and_then(|t| self.own_forward(t).map(|f| t.median / f));
                rows.push((format!("{model} b1 ndarray {an} / ndarray forward"), r2, "(info)".into(), String::new()));
            }
            for an in ["forward", "LRPEpsilon", "LRPAlpha1Beta0", "LRPSequentialCompositeB"] {
                if let (Some(a), Some(b)) = (self.find(model, 1, "ndarray", an), self.find(model, 8, "ndarray", an)) {
                    rows.push((format!("{model} ndarray {an}: batch 8 / batch 1 throughput per image"), Some(8.0 * a.median / b.median), ">= 1.3".into(), String::new()));
                }
            }
        }
        // The "ort and tch backends, each against its own forward pass" (LRPEpsilon; the other analyzers
        // for information), where this run measured them.
        for backend in ["ort", "tch"] {
            for model in ["vgg16", "resnet50"] {
                for an in ["LRPEpsilon", "LRPAlpha1Beta0", "LRPSequentialCompositeB"] {
                    let Some(t) = self.find(model, 1, backend, an) else { continue };
                    let (goal, stretch) = if an == "LRPEpsilon" { ("<= 3", "2.2") } else { ("(info)", "") };
                    let r = self.own_forward(t).map(|f| t.median / f);
                    rows.push((format!("{model} b1 {backend} {an} / {backend} forward"), r, goal.into(), stretch.into()));
                }
            }
        }
        for model in ["vgg16", "resnet50"] {
            for (an, goal, stretch) in [("LRPEpsilon", 2.0, 3.0), ("LRPAlpha1Beta0", 3.0, 4.0), ("LRPSequentialCompositeB", 3.0, 4.0)] {
                let Some(t) = self.find(model, 1, "ndarray", an) else { continue };
                if let Some(p) = self.peer_seconds(&["signxai"], model, an) {
                    rows.push((format!("{model} b1 ndarray {an}: speed-up over signxai analyze() ({:.3} s)", p), Some(p / t.median), format!(">= {goal}"), format!("{stretch}")));
                }
                let (goal, stretch) = if an == "LRPEpsilon" { (">= 1.5", "2") } else { ("(info)", "") };
                if let Some(p) = self.peer_seconds(&["captum", "zennit"], model, an) {
                    rows.push((format!("{model} b1 ndarray {an}: speed-up over the fastest PyTorch peer ({:.3} s)", p), Some(p / t.median), goal.into(), stretch.into()));
                }
            }
        }
        for an in ["LRPEpsilon", "LRPAlpha1Beta0", "LRPSequentialCompositeB"] {
            if let Some(m) = self.mem("vgg16", 1, "ndarray", an) {
                let bound = m.weights_mb + 3.0 * m.activations_mb;
                rows.push((format!("vgg16 b1 ndarray {an}: peak RSS {:.0} MiB / (weights + 3 × activations = {:.0} MiB)", m.run_peak_mb, bound), Some(m.run_peak_mb / bound), "<= 1.0".into(), String::new()));
            }
        }
        rows
    }

    /// Every peer row: (peer, model, analyzer, seconds).
    pub fn peer_rows(&self) -> Vec<(String, String, String, f64)> {
        let Some(Value::Object(all)) = &self.peers else { return Vec::new() };
        all.values()
            .filter_map(|v| v["rows"].as_array())
            .flatten()
            .filter_map(|r| Some((r["peer"].as_str()?.to_string(), r["model"].as_str()?.to_string(), r["analyzer"].as_str()?.to_string(), r["seconds"].as_f64()?)))
            .collect()
    }

    /// The fastest of `peers`' times for `model` and `analyzer`.
    fn peer_seconds(&self, peers: &[&str], model: &str, analyzer: &str) -> Option<f64> {
        self.peer_rows().into_iter().filter(|(p, m, a, _)| peers.contains(&p.as_str()) && m == model && a == analyzer).map(|r| r.3).min_by(f64::total_cmp)
    }

    pub fn json(&self) -> Value {
        let rate = self.gemm_rate();
        let timings: Vec<Value> = self
            .timings
            .iter()
            .map(|t| {
                let gf = t.gemm_flops / t.median / 1e9;
                json!({
                    "model": t.model, "batch": t.batch, "backend": t.backend, "analyzer": t.analyzer,
                    "median_s": t.median, "ci95_s": [t.lo, t.hi],
                    "throughput_per_s": t.batch as f64 / t.median,
                    "ratio_to_own_forward": self.own_forward(t).map(|f| t.median / f),
                    "ratio_to_ort_forward": self.ort_forward(&t.model, t.batch).map(|f| t.median / f),
                    "ratio_to_ort_forward_b1_per_image": self.ort_forward(&t.model, 1).map(|f| t.median / t.batch as f64 / f),
                    "gemm_gflop": t.gemm_flops / 1e9, "elementwise_gop": t.elem_ops / 1e9,
                    "achieved_gflops": gf, "fraction_of_gemm_rate": if rate > 0.0 { Some(gf / rate) } else { None },
                })
            })
            .collect();
        let memory: Vec<Value> = self
            .memory
            .iter()
            .map(|m| {
                json!({
                    "model": m.model, "batch": m.batch, "backend": m.backend, "analyzer": m.analyzer,
                    "load_peak_mib": m.load_peak_mb, "run_peak_mib": m.run_peak_mb, "weights_mib": m.weights_mb,
                    "activations_mib": m.activations_mb, "bound_weights_plus_3x_activations_mib": m.weights_mb + 3.0 * m.activations_mb,
                    "relevance_sum": m.relevance_sum, "relevance_finite": m.finite, "run_s": m.seconds,
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|(n, v, t, s)| json!({"target": n, "measured": v, "goal": t, "stretch": s}))
            .collect();
        json!({
            "quick": self.quick,
            "models": self.models, "backends": self.backends,
            "machine": self.info.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "gemm_rate_gflops": rate,
            "gemm_shapes": self.gemm.iter().map(|(s, r)| json!({"m_k_n": s, "gflops": r})).collect::<Vec<_>>(),
            "timings": timings, "memory": memory, "targets": targets, "notes": self.notes,
            "peers": self.peers,
        })
    }

    pub fn html(&self) -> String {
        let mut h = String::new();
        h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>relprop benchmarks</title><style>\
            body{font-family:sans-serif;margin:24px;max-width:1100px} table{border-collapse:collapse;margin:8px 0}\
            td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px} th{background:#f3f3f3}\
            td:first-child,th:first-child{text-align:left} .ok{color:#080} .miss{color:#b00} svg{display:block;margin:8px 0}\
            </style></head><body>\n");
        h.push_str(&format!("<h1>relprop benchmarks{}</h1>\n", if self.quick { " (quick)" } else { "" }));
        h.push_str("<p>Medians of criterion runs (<a href=\"../../target/criterion/report/index.html\">criterion's own report</a>). \
            Zoo models with seeded random weights (<code>relprop zoo</code>), input N(0,1), neuron selection <code>max</code>. \
            Timings on a shared machine are noisy: see the load average below. \
            GEMM GFLOP are nominal: every Conv/Dense product the rule defines (counted by running the engine on shapes); \
            the ndarray backend skips products with an all-zero operand (the x⁻ terms of alpha-beta rules on post-ReLU \
            inputs), so its alpha-beta GFLOP/s overstate the work done.</p>\n");
        for n in &self.notes {
            h.push_str(&format!("<p><b>Note:</b> {}</p>\n", esc(n)));
        }
        // Targets.
        h.push_str("<h2>Targets</h2><table><tr><th>target</th><th>measured</th><th>goal</th><th>stretch</th></tr>\n");
        for (name, v, goal, stretch) in self.targets() {
            let cls = match (v, goal.split_whitespace().collect::<Vec<_>>().as_slice()) {
                (Some(v), ["<=", g]) => if v <= g.parse::<f64>().unwrap_or(0.0) { "ok" } else { "miss" },
                (Some(v), [">=", g]) => if v >= g.parse::<f64>().unwrap_or(f64::MAX) { "ok" } else { "miss" },
                _ => "",
            };
            let m = v.map(|v| format!("{v:.2}")).unwrap_or("not measured".into());
            h.push_str(&format!("<tr><td>{}</td><td class=\"{cls}\">{m}</td><td>{}</td><td>{}</td></tr>\n", esc(&name), esc(&goal), esc(&stretch)));
        }
        h.push_str("</table>\n");
        // Peers.
        let peers = self.peer_rows();
        if !peers.is_empty() {
            h.push_str("<h2>Peers (same machine, same run, batch 1)</h2><p>Architectures as in the zoo, built by each peer's \
                own library with random weights (crates/relprop-bench/peers/). relprop's column: the ndarray backend.</p>\
                <table><tr><th>peer</th><th>model</th><th>analyzer</th><th>peer time</th><th>relprop ndarray</th><th>speed-up</th></tr>\n");
            for (p, m, a, sec) in &peers {
                let ours = self.find(m, 1, "ndarray", a).map(|t| t.median);
                h.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", esc(p), esc(m), esc(a), secs(*sec),
                    ours.map(secs).unwrap_or("–".into()), ours.map(|o| format!("{:.2}×", sec / o)).unwrap_or("–".into())));
            }
            h.push_str("</table>\n");
            if let Some(Value::Object(all)) = &self.peers {
                for (k, v) in all {
                    h.push_str(&format!("<p>{} versions: <code>{}</code></p>\n", esc(k), esc(&v["versions"].to_string())));
                }
            }
        }
        // Per model.
        let rate = self.gemm_rate();
        for model in &self.models {
            let ts: Vec<&Timing> = self.timings.iter().filter(|t| &t.model == model).collect();
            if ts.is_empty() {
                continue;
            }
            h.push_str(&format!("<h2>{}</h2>\n", esc(model)));
            h.push_str("<table><tr><th>backend</th><th>batch</th><th>analyzer</th><th>median</th><th>95% CI</th><th>/ own forward</th><th>/ ORT forward</th><th>images/s</th><th>GEMM GFLOP</th><th>GFLOP/s</th><th>of GEMM rate</th></tr>\n");
            for t in &ts {
                let gf = t.gemm_flops / t.median / 1e9;
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>\n",
                    esc(&t.backend), t.batch, esc(&t.analyzer), secs(t.median), secs(t.lo), secs(t.hi),
                    opt(self.own_forward(t).map(|f| t.median / f)), opt(self.ort_forward(&t.model, t.batch).map(|f| t.median / f)),
                    t.batch as f64 / t.median, t.gemm_flops / 1e9, gf, if rate > 0.0 { format!("{:.0} %", 100.0 * gf / rate) } else { "–".into() }
                ));
            }
            h.push_str("</table>\n");
            let backends: Vec<String> = self.backends.iter().filter(|b| ts.iter().any(|t| &&t.backend == b)).cloned().collect();
            for &batch in crate::BATCHES {
                let cats: Vec<String> = SPECS.iter().map(|s| s.label.to_string()).filter(|a| ts.iter().any(|t| t.batch == batch && &t.analyzer == a)).collect();
                if cats.is_empty() {
                    continue;
                }
                let series: Vec<(String, Vec<Option<f64>>)> = backends
                    .iter()
                    .map(|b| (b.clone(), cats.iter().map(|a| self.find(model, batch, b, a).map(|t| t.median * 1e3)).collect()))
                    .collect();
                h.push_str(&bar_chart(&format!("{model}, batch {batch}: time per run (ms)"), &cats, &series, None));
                let mut ratio: Vec<(String, Vec<Option<f64>>)> = backends
                    .iter()
                    .filter(|b| b.as_str() != ORT_REFERENCE)
                    .map(|b| (format!("{b} / {b} forward"), cats.iter().map(|a| self.find(model, batch, b, a).and_then(|t| self.own_forward(t).map(|f| t.median / f))).collect()))
                    .collect();
                if let Some(of) = self.ort_forward(model, batch) {
                    for b in backends.iter().filter(|b| b.as_str() != ORT_REFERENCE) {
                        ratio.push((format!("{b} / ORT forward"), cats.iter().map(|a| self.find(model, batch, b, a).map(|t| t.median / of)).collect()));
                    }
                }
                h.push_str(&bar_chart(&format!("{model}, batch {batch}: ratio to the forward pass"), &cats, &ratio, Some((1.0, "forward".into()))));
                let gflops: Vec<(String, Vec<Option<f64>>)> = backends
                    .iter()
                    .map(|b| (b.clone(), cats.iter().map(|a| self.find(model, batch, b, a).map(|t| t.gemm_flops / t.median / 1e9)).collect()))
                    .collect();
                h.push_str(&bar_chart(&format!("{model}, batch {batch}: achieved GEMM GFLOP/s"), &cats, &gflops, (rate > 0.0).then(|| (rate, format!("GEMM rate {rate:.0}")))));
            }
            // Throughput against batch size.
            let mut lines = Vec::new();
            for b in &backends {
                for s in SPECS {
                    let pts: Vec<(f64, f64)> = crate::BATCHES.iter().filter_map(|&n| self.find(model, n, b, s.label).map(|t| (n as f64, n as f64 / t.median))).collect();
                    if pts.len() > 1 {
                        lines.push((format!("{b} {}", s.label), pts));
                    }
                }
            }
            if !lines.is_empty() {
                h.push_str(&line_chart(&format!("{model}: throughput (images/s) against batch size"), "batch size", &lines));
            }
        }
        // Memory.
        if !self.memory.is_empty() {
            h.push_str("<h2>Peak memory</h2><p>Each configuration in a process of its own: peak RSS (VmHWM) while loading, then reset \
                (<code>/proc/self/clear_refs</code>) and the peak of one run. Bound: weights + 3 × one batch's activations \
                (every node's output once).</p><table><tr><th>model</th><th>batch</th><th>backend</th><th>analyzer</th>\
                <th>load peak MiB</th><th>run peak MiB</th><th>weights MiB</th><th>activations MiB</th><th>bound MiB</th><th>run / bound</th><th>relevance sum</th></tr>\n");
            for m in &self.memory {
                let bound = m.weights_mb + 3.0 * m.activations_mb;
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td class=\"{}\">{:.2}</td><td>{:.4e}{}</td></tr>\n",
                    esc(&m.model), m.batch, esc(&m.backend), esc(&m.analyzer), m.load_peak_mb, m.run_peak_mb, m.weights_mb, m.activations_mb, bound,
                    if m.run_peak_mb <= bound { "ok" } else { "miss" }, m.run_peak_mb / bound, m.relevance_sum, if m.finite { "" } else { " (NOT FINITE)" }
                ));
            }
            h.push_str("</table>\n");
            let cats: Vec<String> = self.memory.iter().map(|m| format!("{} b{} {} {}", m.model, m.batch, m.backend, short(&m.analyzer))).collect();
            let series = vec![
                ("run peak".to_string(), self.memory.iter().map(|m| Some(m.run_peak_mb)).collect()),
                ("weights + 3 × activations".to_string(), self.memory.iter().map(|m| Some(m.weights_mb + 3.0 * m.activations_mb)).collect()),
            ];
            h.push_str(&bar_chart("peak RSS (MiB)", &cats, &series, None));
        }
        // Machine.
        h.push_str("<h2>Machine and versions</h2><table>\n");
        for (k, v) in &self.info {
            h.push_str(&format!("<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>\n", esc(k), esc(v)));
        }
        for (s, r) in &self.gemm {
            h.push_str(&format!("<tr><td>GEMM rate {}</td><td style=\"text-align:left\">{r:.1} GFLOP/s</td></tr>\n", esc(s)));
        }
        h.push_str("</table><p>GEMM rate: single precision, through the ndarray backend's own GEMM (a pointwise convolution, \
            which runs as one product on the input, tiled over all threads); the best of the shapes m×k×n above.</p>\n</body></html>\n");
        h
    }
}

fn short(a: &str) -> String {
    a.replace("LRPSequentialComposite", "SeqComp").replace("LRPAlpha1Beta0", "A1B0").replace("LRPEpsilon", "Eps").replace("LRPStdxEpsilon", "StdxEps")
}

fn secs(s: f64) -> String {
    if s >= 1.0 { format!("{s:.3} s") } else { format!("{:.1} ms", s * 1e3) }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or("–".into())
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40),
    RGBColor(148, 103, 189), RGBColor(140, 86, 75), RGBColor(227, 119, 194), RGBColor(127, 127, 127),
];

fn strip_decl(svg: String) -> String {
    match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    }
}

/// Grouped bars: one group per category, one bar per series; an optional horizontal reference line.
fn bar_chart(title: &str, cats: &[String], series: &[(String, Vec<Option<f64>>)], hline: Option<(f64, String)>) -> String {
    let ymax = series.iter().flat_map(|s| s.1.iter().flatten()).copied().chain(hline.as_ref().map(|h| h.0)).fold(0.0, f64::max).max(1e-9) * 1.18;
    let mut svg = String::new();
    {
        let width = (140 + cats.len() * (40 + 22 * series.len())).clamp(520, 1060) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 330)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut chart = match ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..cats.len() as f64, 0f64..ymax)
        {
            Ok(c) => c,
            Err(_) => return String::new(),
        };
        let _ = chart.configure_mesh().disable_x_mesh().x_labels(0).x_label_formatter(&|_| String::new()).y_label_formatter(&|v| fmt_num(*v)).draw();
        let k = series.len().max(1) as f64;
        let bw = 0.8 / k;
        for (si, (name, vals)) in series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let bars = vals.iter().enumerate().filter_map(|(ci, v)| v.map(|v| (ci, v))).map(|(ci, v)| {
                let x0 = ci as f64 + 0.1 + si as f64 * bw;
                Rectangle::new([(x0, 0.0), (x0 + bw * 0.92, v)], color.filled())
            });
            if let Ok(a) = chart.draw_series(bars) {
                a.label(name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
            }
            let labels = vals.iter().enumerate().filter_map(|(ci, v)| v.map(|v| (ci, v))).map(|(ci, v)| {
                let x = ci as f64 + 0.1 + (si as f64 + 0.46) * bw;
                Text::new(fmt_num(v), (x, v), ("sans-serif", 9).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)))
            });
            let _ = chart.draw_series(labels);
        }
        if let Some((y, label)) = &hline {
            let _ = chart.draw_series(LineSeries::new([(0.0, *y), (cats.len() as f64, *y)], BLACK.stroke_width(1)));
            let _ = chart.draw_series([Text::new(label.clone(), (0.02, *y), ("sans-serif", 10).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Bottom)))]);
        }
        for (ci, c) in cats.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(ci as f64 + 0.5, 0.0));
            let _ = root.draw(&Text::new(c.clone(), (px, py + 6), ("sans-serif", 10).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top))));
        }
        let _ = chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 10)).draw();
        let _ = root.present();
    }
    strip_decl(svg)
}

/// Lines through points (x, y), one per series.
fn line_chart(title: &str, xdesc: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let xmax = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).fold(1.0, f64::max) + 1.0;
    let ymax = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 330)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut chart = match ChartBuilder::on(&root).caption(title, ("sans-serif", 15)).margin(8).x_label_area_size(36).y_label_area_size(60).build_cartesian_2d(0f64..xmax, 0f64..ymax) {
            Ok(c) => c,
            Err(_) => return String::new(),
        };
        let _ = chart.configure_mesh().x_desc(xdesc).y_label_formatter(&|v| fmt_num(*v)).draw();
        for (si, (name, pts)) in series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            if let Ok(a) = chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))) {
                a.label(name.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
            }
            let _ = chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())));
        }
        let _ = chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 10)).draw();
        let _ = root.present();
    }
    strip_decl(svg)
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

