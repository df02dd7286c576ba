//! The YAML case format (documented in `specs/README.md`): parsing, defaults, validation. A malformed file is
//! rejected with its path, line and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use relprop_core::{analyzer_from, Analyzer, Error, Params, Result, Target};
use serde::Deserialize;

/// A file of cases as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    /// Title of the group of cases.
    suite: Option<String>,
    /// Fields every case takes unless it sets them itself.
    #[serde(default)]
    defaults: RawCase,
    cases: Vec<RawCase>,
}

/// One case as written; every field may come from `defaults`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Option<String>,
    model: Option<String>,
    input: Option<String>,
    method: Option<String>,
    analyzer: Option<String>,
    params: Option<BTreeMap<String, serde_yaml::Value>>,
    target: Option<serde_yaml::Value>,
    golden: Option<String>,
    expect: Option<Vec<f32>>,
    tolerance: Option<f32>,
    abs_tolerance: Option<f32>,
    checks: Option<Vec<Check>>,
    backends: Option<Vec<String>>,
    expect_error: Option<String>,
    /// Free-form tags for the report's summary (e.g. the analyzer family).
    tags: Option<Vec<String>>,
}

/// A named property check with its tolerance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Every value finite.
    Finite,
    /// Relevance has the input's shape.
    Shape,
    /// At every layer every path from input to output crosses, the relevance sum equals the top layer's
    /// (rules that conserve: Z without bias, epsilon -> 0).
    Conservation { tol: f32 },
    /// The input relevance sums to the selected logit.
    TotalVsLogit { tol: f32 },
    /// Same map as another configuration, optionally on a transformed input.
    SameAs {
        method: Option<String>,
        analyzer: Option<String>,
        #[serde(default)]
        params: BTreeMap<String, serde_yaml::Value>,
        #[serde(default)]
        input_transform: Option<InputTransform>,
        tol: f32,
    },
    /// SIGNmu's threshold: `R_mu = R_sign · s_mu(x) · sgn(x)` elementwise (the case must use SIGNmu with `mu`
    /// on the first layer; the SIGN map is computed with the same configuration).
    SignmuThreshold { mu: f32, tol: f32 },
    /// A batch of 4 variations of the input explained at once equals each explained alone.
    BatchPerSample { tol: f32 },
}

/// Input transformations for [`Check::SameAs`].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputTransform {
    /// Exact zeros become +1e-30: a rule with sign(0) = +1 cannot tell the difference.
    ZerosToTinyPositive,
}

/// What a case compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    None,
    /// A golden file made by the reference implementation.
    File(PathBuf),
    /// Values computed by hand (written in the case).
    Values(Vec<f32>),
}

/// A validated case.
#[derive(Debug, Clone)]
pub struct Case {
    /// `file:line` where the case starts.
    pub origin: String,
    pub suite: String,
    pub name: String,
    pub model: PathBuf,
    pub input: PathBuf,
    pub method: Option<String>,
    pub analyzer_class: Option<String>,
    pub params: Params,
    pub target: Target,
    pub reference: Reference,
    pub tolerance: f32,
    pub abs_tolerance: f32,
    pub checks: Vec<Check>,
    pub backends: Vec<String>,
    pub expect_error: Option<String>,
    pub tags: Vec<String>,
}

impl Case {
    /// The analyzer the case asks for.
    pub fn analyzer(&self) -> Result<Analyzer> {
        analyzer_from(self.method.as_deref(), self.analyzer_class.as_deref(), &self.params)
    }
    /// Short label of the analyzer for the summary matrix.
    pub fn family(&self) -> String {
        self.tags.first().cloned().or_else(|| self.analyzer_class.clone()).or_else(|| self.method.clone()).unwrap_or_default()
    }
}

fn spec_err(file: &Path, line: usize, field: &str, msg: impl Into<String>) -> Error {
    Error::Io { path: format!("{}:{line}", file.display()), msg: format!("{field}: {}", msg.into()) }
}

/// YAML scalars and pairs as `--param` strings.
pub fn param_string(v: &serde_yaml::Value) -> Option<String> {
    Some(match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Null => "None".into(),
        serde_yaml::Value::Sequence(s) if s.len() == 2 => format!("({}, {})", param_string(&s[0])?, param_string(&s[1])?),
        _ => return None,
    })
}

/// Convert a YAML parameter map.
pub fn params_from(map: &BTreeMap<String, serde_yaml::Value>) -> std::result::Result<Params, String> {
    let mut p = Params::default();
    for (k, v) in map {
        let s = param_string(v).ok_or_else(|| format!("params.{k}: expected a number, string, boolean or [low, high] pair"))?;
        p.set(k, &s);
    }
    Ok(p)
}

/// Line numbers (1-based) where the items of the top-level `cases:` list start.
fn case_lines(text: &str) -> Vec<usize> {
    let mut lines = text.lines().enumerate();
    let mut out = Vec::new();
    let Some((start, _)) = lines.by_ref().find(|(_, l)| l.trim_end() == "cases:") else { return out };
    let mut indent: Option<usize> = None;
    for (i, l) in text.lines().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with("- ") || t == "-" {
            let ind = l.len() - t.len();
            if indent.is_none() {
                indent = Some(ind);
            }
            if indent == Some(ind) {
                out.push(i + 1);
            }
        } else if !t.is_empty() && !t.starts_with('#') && l.len() - t.len() == 0 {
            break; // next top-level key
        }
    }
    out
}

/// Load and validate one spec file; paths inside are relative to `root` (the repository).
pub fn load_file(path: &Path, root: &Path) -> Result<Vec<Case>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })?;
    parse_str(&text, path, root)
}

/// Parse and validate the text of a spec file; `path` names it in errors (and gives the default suite name),
/// paths inside are relative to `root`.
pub fn parse_str(text: &str, path: &Path, root: &Path) -> Result<Vec<Case>> {
    let spec: SpecFile = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        spec_err(path, line, "yaml", e.to_string())
    })?;
    let lines = case_lines(text);
    let suite = spec.suite.clone().unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    spec.cases.iter().enumerate().map(|(i, raw)| resolve(path, root, *lines.get(i).unwrap_or(&0), &suite, &spec.defaults, raw, i)).collect()
}

fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
    a.clone().or_else(|| b.clone())
}

fn resolve(file: &Path, root: &Path, line: usize, suite: &str, d: &RawCase, c: &RawCase, index: usize) -> Result<Case> {
    let err = |field: &str, msg: String| spec_err(file, line, &format!("cases[{index}].{field}"), msg);
    let name = c.name.clone().ok_or_else(|| err("name", "missing".into()))?;
    let path_field = |field: &str, v: Option<String>| -> Result<PathBuf> {
        let v = v.ok_or_else(|| err(field, "missing (set it in the case or in defaults)".into()))?;
        let p = root.join(&v);
        if !p.is_file() {
            return Err(err(field, format!("file {v} does not exist")));
        }
        Ok(p)
    };
    let model = path_field("model", pick(&c.model, &d.model))?;
    let input = path_field("input", pick(&c.input, &d.input))?;
    let method = pick(&c.method, &d.method);
    let analyzer_class = pick(&c.analyzer, &d.analyzer);
    if method.is_some() == analyzer_class.is_some() {
        return Err(err("method", "give exactly one of method and analyzer".into()));
    }
    let mut params_map = d.params.clone().unwrap_or_default();
    params_map.extend(c.params.clone().unwrap_or_default());
    let params = params_from(&params_map).map_err(|m| err("params", m))?;
    let target = match pick(&c.target, &d.target) {
        None => Target::Max,
        Some(v) => param_string(&v).unwrap_or_default().parse::<Target>().map_err(|e| err("target", e.to_string()))?,
    };
    let reference = match (pick(&c.golden, &d.golden), c.expect.clone()) {
        (Some(_), Some(_)) => return Err(err("golden", "give golden or expect, not both".into())),
        (Some(g), None) => Reference::File(path_field("golden", Some(g))?),
        (None, Some(v)) => Reference::Values(v),
        (None, None) => Reference::None,
    };
    let tolerance = pick(&c.tolerance, &d.tolerance).unwrap_or(1e-4);
    let abs_tolerance = pick(&c.abs_tolerance, &d.abs_tolerance).unwrap_or(1e-6);
    if !(tolerance > 0.0 && abs_tolerance >= 0.0) {
        return Err(err("tolerance", format!("must be positive, got {tolerance} / {abs_tolerance}")));
    }
    let backends = pick(&c.backends, &d.backends).unwrap_or_else(|| crate::backends::ALL.iter().map(|s| s.to_string()).collect());
    if let Some(b) = backends.iter().find(|b| !crate::backends::ALL.contains(&b.as_str())) {
        return Err(err("backends", format!("unknown backend '{b}' (known: {})", crate::backends::ALL.join(", "))));
    }
    let mut checks = d.checks.clone().unwrap_or_default();
    checks.extend(c.checks.clone().unwrap_or_default());
    let case = Case {
        origin: format!("{}:{line}", file.display()),
        suite: suite.to_string(),
        name,
        model,
        input,
        method,
        analyzer_class,
        params,
        target,
        reference,
        tolerance,
        abs_tolerance,
        checks,
        backends,
        expect_error: pick(&c.expect_error, &d.expect_error),
        tags: c.tags.clone().or_else(|| d.tags.clone()).unwrap_or_default(),
    };
    // The analyzer must build (or fail as the case expects) before anything runs.
    match (case.analyzer(), &case.expect_error) {
        (Ok(_), Some(e)) => return Err(err("expect_error", format!("expected an error containing '{e}' but the analyzer builds"))),
        (Err(e), None) => return Err(err("analyzer", e.to_string())),
        _ => {}
    }
    Ok(case)
}

/// Load every `*.yaml` file of `dir`, sorted by name.
pub fn load_dir(dir: &Path, root: &Path) -> Result<Vec<Case>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io { path: dir.display().to_string(), msg: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        all.extend(load_file(&f, root)?);
    }
    Ok(all)
}
