//! The conformance report: one self-contained HTML file (inline PNG heatmaps and SVG charts, no scripts, no
//! external references), written as well-formed XHTML so a plain XML parser can check it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use plotters::prelude::*;
use relprop_core::{npy, Layout};

use crate::heatmap;
use crate::runner::{Outcome, Run, AGREEMENT};
use crate::spec::Reference;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn png_img(bytes: &[u8], title: &str) -> String {
    format!(
        "<img alt=\"{0}\" title=\"{0}\" src=\"data:image/png;base64,{1}\"/>",
        esc(title),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Line chart of relevance sums per layer (top layer first).
fn conservation_chart(sums: &[(String, f64)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420, 180)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (lo, hi) = sums.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, v)| (a.min(*v), b.max(*v)));
        let pad = ((hi - lo).abs() * 0.1).max(hi.abs() * 0.01).max(1e-12);
        let chart = ChartBuilder::on(&root)
            .caption("relevance sum per layer (top → input)", ("sans-serif", 13))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..(sums.len().max(2) - 1) as f64, (lo - pad)..(hi + pad));
        if let Ok(mut chart) = chart {
            let _ = chart.configure_mesh().x_desc("layer").disable_x_mesh().draw();
            let _ = chart.draw_series(LineSeries::new(sums.iter().enumerate().map(|(i, (_, v))| (i as f64, *v)), &BLUE));
            let _ = chart.draw_series(sums.iter().enumerate().map(|(i, (_, v))| Circle::new((i as f64, *v), 3, BLUE.filled())));
        }
        let _ = root.present();
    }
    // plotters writes a standalone SVG document; inline it without its XML declaration.
    svg.trim_start_matches(|c| c != '<').replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
}

fn image_layout(shape: &[usize]) -> Option<Layout> {
    match shape.len() {
        4 if shape[3] <= 4 => Some(Layout::ChannelsLast),
        4 if shape[1] <= 4 => Some(Layout::ChannelsFirst),
        _ => None,
    }
}

/// Reference versions from the golden manifest.
fn reference_versions(run: &Run) -> String {
    // The manifest sits beside the golden files the cases use.
    let manifest = run.cases.iter().filter_map(|c| c.input.parent()).map(|d| d.join("manifest.json")).find(|p| p.is_file());
    let Some(text) = manifest.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return "<p>golden manifest not found</p>".into();
    };
    let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else { return String::new() };
    let mut s = String::from("<table><tr><th>reference component</th><th>version</th></tr>");
    for k in ["signxai", "tensorflow", "numpy", "python", "layout"] {
        if let Some(v) = m.get(k) {
            let _ = write!(s, "<tr><td>{k}</td><td>{}</td></tr>", esc(v.as_str().unwrap_or(&v.to_string())));
        }
    }
    s + "</table>"
}

/// Render the whole report.
pub fn html(run: &Run) -> String {
    let mut s = String::new();
    let total = run.outcomes.len();
    let passed = run.outcomes.iter().filter(|o| o.ok).count();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head><meta charset=\"utf-8\"/><title>relprop conformance</title>\
         <style>body{{font-family:sans-serif;margin:1.5em;}}table{{border-collapse:collapse;margin:.5em 0;}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top;}}\
         .ok{{background:#e6f6e6;}}.bad{{background:#fbe3e3;}}img{{image-rendering:pixelated;margin-right:4px;}}h2{{margin-top:1.5em;}}</style></head><body>\
         <h1>relprop conformance report</h1><p>relprop {} · {} cases · backends run: {} · {passed} of {total} case×backend runs pass · {} failures in total (including cross-backend disagreements)</p>",
        env!("CARGO_PKG_VERSION"),
        run.cases.len(),
        esc(&run.backends.join(", ")),
        run.failures()
    );
    for (b, why) in &run.unavailable {
        let _ = write!(s, "<p>backend <b>{}</b> not available: {}</p>", esc(b), esc(why));
    }
    s += "<h2>Reference</h2>";
    s += &reference_versions(run);

    // summary matrix: family x backend
    let mut matrix: BTreeMap<String, BTreeMap<String, (usize, usize)>> = BTreeMap::new();
    for o in &run.outcomes {
        let e = matrix.entry(run.cases[o.case].family()).or_default().entry(o.backend.clone()).or_default();
        e.0 += o.ok as usize;
        e.1 += 1;
    }
    s += "<h2>Summary (analyzer × backend: passed / run)</h2><table><tr><th>analyzer</th>";
    for b in &run.backends {
        let _ = write!(s, "<th>{}</th>", esc(b));
    }
    s += "</tr>";
    for (fam, row) in &matrix {
        let _ = write!(s, "<tr><td>{}</td>", esc(fam));
        for b in &run.backends {
            match row.get(b) {
                Some((p, n)) => {
                    let _ = write!(s, "<td class=\"{}\">{p}/{n}</td>", if p == n { "ok" } else { "bad" });
                }
                None => s += "<td>-</td>",
            }
        }
        s += "</tr>";
    }
    s += "</table>";

    // cross-backend agreement
    let _ = write!(s, "<h2>Cross-backend agreement (max relative difference, limit {AGREEMENT:e})</h2>");
    let mut pairs: BTreeMap<(String, String), (usize, f32, usize)> = BTreeMap::new();
    for a in &run.agreement {
        let e = pairs.entry((a.a.clone(), a.b.clone())).or_default();
        e.0 += 1;
        e.1 = e.1.max(a.diff);
        e.2 += !a.ok() as usize;
    }
    if pairs.is_empty() {
        s += "<p>Only one backend ran.</p>";
    } else {
        s += "<table><tr><th>backends</th><th>cases</th><th>worst difference</th><th>failing</th></tr>";
        for ((a, b), (n, w, bad)) in &pairs {
            let _ = write!(s, "<tr class=\"{}\"><td>{} vs {}</td><td>{n}</td><td>{w:.2e}</td><td>{bad}</td></tr>", if *bad == 0 { "ok" } else { "bad" }, esc(a), esc(b));
        }
        s += "</table>";
        let over: Vec<_> = run.agreement.iter().filter(|a| a.diff > AGREEMENT).collect();
        if !over.is_empty() {
            s += "<p>Cases over the limit, with the measured conditioning (how much moving every input value by one float32 ulp moves the map; \
                  float32 implementations cannot agree better, so within ten times that passes as ill-conditioned):</p>\
                  <table><tr><th>case</th><th>backends</th><th>difference</th><th>conditioning</th><th>verdict</th></tr>";
            for a in over {
                let c = &run.cases[a.case];
                let _ = write!(
                    s,
                    "<tr class=\"{}\"><td>{}</td><td>{} vs {}</td><td>{:.2e}</td><td>{}</td><td>{}</td></tr>",
                    if a.ok() { "ok" } else { "bad" },
                    esc(&format!("{}/{}", c.suite, c.name)),
                    esc(&a.a),
                    esc(&a.b),
                    a.diff,
                    a.conditioning.map(|k| format!("{k:.2e}")).unwrap_or_else(|| "-".into()),
                    if a.ok() { "ill-conditioned" } else { "DISAGREE" }
                );
            }
            s += "</table>";
        }
    }

    // cases
    s += "<h2>Cases</h2><table><tr><th>suite / case</th><th>analyzer</th><th>target</th><th>backend results</th><th>reference · relprop</th><th>conservation</th></tr>";
    let by_case = |ci: usize| run.outcomes.iter().filter(move |o| o.case == ci);
    for (ci, c) in run.cases.iter().enumerate() {
        let outs: Vec<&Outcome> = by_case(ci).collect();
        let ok = outs.iter().all(|o| o.ok);
        let what = match (&c.method, &c.analyzer_class) {
            (Some(m), _) => m.clone(),
            (_, Some(a)) => format!("{a} {}", c.params.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")),
            _ => String::new(),
        };
        let _ = write!(s, "<tr class=\"{}\"><td>{}<br/><small>{}</small></td><td>{}</td><td>{}</td><td>", if ok { "ok" } else { "bad" }, esc(&format!("{}/{}", c.suite, c.name)), esc(&c.origin), esc(&what), c.target);
        for o in &outs {
            let err = o.error.map(|e| format!(" err {e:.2e}")).unwrap_or_default();
            let _ = write!(s, "<b>{}</b>: {}{} ({:.0} ms)", esc(&o.backend), if o.ok { "pass" } else { "FAIL" }, err, o.seconds * 1e3);
            for ch in o.checks.iter().filter(|ch| !ch.ok || ch.name != "reference") {
                let _ = write!(s, "<br/>&#160;&#160;{} {}: {}", if ch.ok { "✓" } else { "✗" }, esc(&ch.name), esc(&ch.detail));
            }
            s += "<br/>";
        }
        s += "</td><td>";
        if let (Reference::File(p), Some(o)) = (&c.reference, outs.first()) {
            if let (Ok(reference), Some(r)) = (npy::read(p), &o.relevance) {
                let with_batch = |t: &relprop_core::Tensor| {
                    if t.shape.len() + 1 == r.shape.len() {
                        relprop_core::Tensor { shape: r.shape.clone(), data: t.data.clone() }
                    } else {
                        t.clone()
                    }
                };
                let reference = with_batch(&reference);
                if let Some(layout) = image_layout(&r.shape) {
                    if let (Ok(a), Ok(b)) = (heatmap::encode_sized(&reference, layout, 48), heatmap::encode_sized(r, layout, 48)) {
                        s += &png_img(&a, "reference");
                        s += &png_img(&b, &format!("relprop ({})", o.backend));
                    }
                }
            }
        }
        s += "</td><td>";
        if let Some(o) = outs.iter().find(|o| !o.layer_sums.is_empty()) {
            s += &conservation_chart(&o.layer_sums);
        }
        s += "</td></tr>";
    }
    s += "</table></body></html>\n";
    s
}
