//! `relprop-conform [--backend ndarray|ort|tch|all|a,b] [--device cpu|cuda|cuda:N] [--filter GLOB] [--specs DIR] [--report FILE]`:
//! runs the YAML cases, prints a compact table, writes the HTML report, exits non-zero on any failure.
//! Usually started through `cargo xtask conform`, which builds it with the backends that are set up.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use relprop_conform::{backends, report, runner, spec};

fn main() -> ExitCode {
    match real_main() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<usize, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let (mut which, mut filter, mut specs, mut out) = ("ndarray".to_string(), None, root.join("specs"), root.join("reports/conformance/index.html"));
    let mut device = "cpu".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--backend" => which = val()?,
            "--device" => device = val()?,
            "--filter" => filter = Some(val()?),
            "--specs" => specs = PathBuf::from(val()?),
            "--report" => out = PathBuf::from(val()?),
            _ => return Err(format!("unknown argument {a}; usage: relprop-conform [--backend ndarray|ort|tch|all] [--device cpu|cuda|cuda:N] [--filter GLOB] [--specs DIR] [--report FILE]")),
        }
    }
    let wanted: Vec<String> = if which == "all" { backends::ALL.iter().map(|s| s.to_string()).collect() } else { which.split(',').map(str::to_string).collect() };
    backends::check_device(&device).map_err(|e| e.to_string())?;
    if device != "cpu" && !wanted.iter().any(|b| b == "tch") {
        return Err(format!("--device {device}: only the tch backend runs on other devices (add tch to --backend)"));
    }
    let cases = spec::load_dir(&specs, &root).map_err(|e| e.to_string())?;
    let run = runner::run(cases, &wanted, &device, filter.as_deref(), |done, total, name| {
        let width = 30;
        let filled = done * width / total.max(1);
        eprint!("\r[{}{}] {done}/{total} {:<40.40}", "#".repeat(filled), ".".repeat(width - filled), name);
        let _ = std::io::stderr().flush();
    });
    eprintln!();
    for (b, why) in &run.unavailable {
        println!("{b}: not available ({why})");
    }
    println!("{:<64} {}", "case", run.backends.iter().map(|b| format!("{b:>18}")).collect::<String>());
    for (ci, c) in run.cases.iter().enumerate() {
        let mut line = format!("{:<64.64}", format!("{}/{}", c.suite, c.name));
        for b in &run.backends {
            let cell = match run.outcomes.iter().find(|o| o.case == ci && &o.backend == b) {
                None => "-".to_string(),
                Some(o) => format!("{} {}", if o.ok { "pass" } else { "FAIL" }, o.error.map(|e| format!("{e:.1e}")).unwrap_or_default()),
            };
            line += &format!(" {cell:>18}");
        }
        println!("{line}");
    }
    for o in run.outcomes.iter().filter(|o| !o.ok) {
        let c = &run.cases[o.case];
        for ch in o.checks.iter().filter(|ch| !ch.ok) {
            println!("FAIL {}/{} [{}] {}: {} ({})", c.suite, c.name, o.backend, ch.name, ch.detail, c.origin);
        }
    }
    for a in run.agreement.iter().filter(|a| a.diff > runner::AGREEMENT) {
        let c = &run.cases[a.case];
        let k = a.conditioning.map(|k| format!("{k:.2e}")).unwrap_or_else(|| "-".into());
        let verdict = if a.ok() { "ill-conditioned (passes)" } else { "DISAGREE" };
        println!("{verdict} {}/{}: {} vs {} differ by {:.2e}; input-rounding sensitivity {k}", c.suite, c.name, a.a, a.b, a.diff);
    }
    let worst_agreement = run.agreement.iter().map(|a| a.diff).fold(0f32, f32::max);
    println!(
        "{} cases, {} runs on {}: {} failures; worst cross-backend difference {worst_agreement:.2e}",
        run.cases.len(),
        run.outcomes.len(),
        run.backends.join(", "),
        run.failures()
    );
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&out, report::html(&run)).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("report: {}", out.display());
    Ok(run.failures())
}
