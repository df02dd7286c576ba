//! `relprop`: explain ONNX models with signxai's LRP analyzers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use relprop_core::analyzers::ANALYZER_CLASSES;
use relprop_core::methods::method_names;
use relprop_core::rules::RULE_NAMES;
use relprop_conform::{backends, heatmap};
use relprop_core::{analyzer_from, npy, Error, ExplainOptions, Graph, MergeOrder, Params, Result, RulePlan, Target};

#[derive(Parser)]
#[command(name = "relprop", version, about = "Layer-wise Relevance Propagation with signxai's numbers, from ONNX models")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// How the analyzer is chosen: a signxai method name, or a class with parameters.
#[derive(clap::Args)]
struct Choice {
    /// A signxai method name, e.g. lrp_epsilon_0_1, lrpsign_z (see `relprop methods`).
    #[arg(long, conflicts_with = "analyzer")]
    method: Option<String>,
    /// An analyzer class of signxai's API, e.g. LRPEpsilon, LRPSequentialCompositeA, LRP.
    #[arg(long)]
    analyzer: Option<String>,
    /// A parameter of the analyzer class, KEY=VALUE (repeatable): epsilon=0.1, rule=Z, input_layer_rule=SIGN, ...
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
}

#[derive(clap::Args)]
struct ModelArg {
    /// The model, an ONNX file (Keras via tf2onnx, PyTorch via torch.onnx), without a final softmax.
    #[arg(long)]
    model: PathBuf,
    /// Drop a Softmax/LogSoftmax at the output instead of refusing the model.
    #[arg(long)]
    strip_softmax: bool,
    /// The order merge layers (Concatenate, Subtract, ...) take their inputs in: signxai (the order signxai's
    /// forward walk delivers them, not always the declared one; docs/divergences.md) or declared (the model's own
    /// function). PyTorch exports keep the declared order.
    #[arg(long, default_value = "signxai")]
    merge_order: MergeOrder,
}

#[derive(Subcommand)]
enum Cmd {
    /// Explain a batch of inputs: writes relevance with the input's shape and layout.
    Explain {
        #[command(flatten)]
        model: ModelArg,
        /// Input batch, float32 .npy in the model's input layout.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        choice: Choice,
        /// Neuron to explain: max (signxai's max_activation), an output index, or all.
        #[arg(long, default_value = "max")]
        target: String,
        /// Numeric backend: ndarray (built in), ort or tch (when built with that feature).
        #[arg(long, default_value = "ndarray")]
        backend: String,
        /// Device for the tch backend: cpu or cuda (cuda:N).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Where to write the relevance (.npy).
        #[arg(long)]
        output: PathBuf,
        /// Also write a heatmap PNG (image inputs).
        #[arg(long)]
        heatmap: Option<PathBuf>,
        /// Also write the model's output for the batch (.npy, the logits the explanation starts from).
        #[arg(long)]
        logits: Option<PathBuf>,
    },
    /// List the method names, analyzer classes and rules.
    Methods,
    /// Build a benchmark model with seeded random weights and write it as ONNX: vgg16 (NCHW 3x224x224,
    /// torchvision layout, 138 M parameters), resnet50 (v1.5, BN after every conv), model_a / model_b (the
    /// golden models' architectures).
    Zoo {
        /// vgg16, resnet50, model_a or model_b.
        model: String,
        /// Where to write the ONNX file (e.g. zoo/vgg16.onnx; zoo/ is git-ignored).
        #[arg(long)]
        output: PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = relprop_bench::zoo::SEED)]
        seed: u64,
        /// Folder of the golden ONNX files (architectures of model_a / model_b).
        #[arg(long, default_value = "golden/onnx")]
        golden: PathBuf,
    },
    /// Show the rule each layer of a model gets.
    Plan {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        choice: Choice,
    },
    /// Write the explanation as one standard ONNX graph (outputs `logits`, `relevance`) for plain ONNX Runtime
    /// (needs a relprop built with `--features ort`; the export itself needs no runtime library).
    Export {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        choice: Choice,
        /// Neuron to explain: max (signxai's max_activation), an output index, or all.
        #[arg(long, default_value = "max")]
        target: String,
        /// Also output the relevance reaching every layer (`relevance_node<i>`).
        #[arg(long)]
        all_layers: bool,
        /// Where to write the explanation graph (.onnx).
        #[arg(long)]
        output: PathBuf,
    },
}

fn load_model(m: &ModelArg) -> Result<Graph> {
    let g = relprop_onnx::load_with(&m.model, &relprop_onnx::ImportOptions { strip_softmax: m.strip_softmax, ..Default::default() })?;
    let reordered = m.merge_order.apply(g.clone());
    // Say where signxai's order changes the model's function, so a user comparing with other tools knows why.
    for (a, b) in g.nodes.iter().zip(&reordered.nodes).filter(|(a, b)| a.inputs != b.inputs) {
        let names = |ins: &[usize]| ins.iter().map(|&i| g.nodes[i].name.as_str()).collect::<Vec<_>>().join(", ");
        eprintln!(
            "note: signxai applies '{}' to its inputs in the order [{}], not as declared [{}]; relprop follows signxai \
             (--merge-order declared explains the model as declared)",
            a.name,
            names(&b.inputs),
            names(&a.inputs)
        );
    }
    Ok(reordered)
}

fn plan_for(g: &Graph, c: &Choice) -> Result<RulePlan> {
    let params = Params::parse(&c.params)?;
    let a = analyzer_from(c.method.as_deref(), c.analyzer.as_deref(), &params)?;
    RulePlan::resolve(g, &a)
}

/// `relprop export`: the explanation graph of the ort backend, written as an ONNX file.
#[cfg(feature = "ort")]
fn export(model: &ModelArg, choice: &Choice, target: &str, all_layers: bool, output: &Path) -> Result<()> {
    let target: Target = target.parse()?;
    let g = load_model(model)?;
    let plan = plan_for(&g, choice)?;
    let m = relprop_ort::export_explanation(&g, &plan, &target, all_layers)?;
    write_file(output, &relprop_ort::encode(&m))?;
    eprintln!(
        "{}: explanation graph written to {} (input '{}', outputs logits, relevance{}; opset {})",
        plan.analyzer,
        output.display(),
        g.nodes[0].name,
        if all_layers { ", relevance_node<i>" } else { "" },
        relprop_ort::OPSET
    );
    Ok(())
}

#[cfg(not(feature = "ort"))]
fn export(_model: &ModelArg, _choice: &Choice, _target: &str, _all_layers: bool, _output: &Path) -> Result<()> {
    Err(Error::Backend {
        backend: "ort".into(),
        msg: "this relprop was built without the ort backend, which writes explanation graphs: build with `--features ort`".into(),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::Io { path: path.display().to_string(), msg: e.to_string() })
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Methods => {
            println!("# method names (signxai.methods.wrappers), {}:", method_names().len());
            for m in method_names() {
                println!("{m}");
            }
            println!("\n# analyzer classes (--analyzer), {}:", ANALYZER_CLASSES.len());
            for c in ANALYZER_CLASSES {
                println!("{c}");
            }
            println!("\n# rules (rule=, input_layer_rule=, until_index_rule=; class names like ZRule work too):");
            for r in RULE_NAMES {
                println!("{r}");
            }
            Ok(())
        }
        Cmd::Zoo { model, output, seed, golden } => {
            let g = relprop_bench::zoo::write(&model, seed, &golden, &output)?;
            eprintln!("{model}: {} parameters, {} nodes, written to {}", relprop_bench::zoo::parameters(&g), g.nodes.len(), output.display());
            Ok(())
        }
        Cmd::Plan { model, choice } => {
            let g = load_model(&model)?;
            print!("{}", plan_for(&g, &choice)?.describe(&g));
            Ok(())
        }
        Cmd::Export { model, choice, target, all_layers, output } => export(&model, &choice, &target, all_layers, &output),
        Cmd::Explain { model, input, choice, target, backend: be, device, output, heatmap, logits } => {
            let target: Target = target.parse()?;
            let be = backends::by_name(&be, &device)?;
            let g = load_model(&model)?;
            let plan = plan_for(&g, &choice)?;
            let x = npy::read(&input)?;
            let layout = g.layout;
            let compiled = be.compile(Arc::new(g))?;
            let e = compiled.explain(&plan, &x, &target, &ExplainOptions::default())?;
            npy::write(&output, &e.relevance)?;
            if let Some(h) = heatmap {
                write_file(&h, &heatmap::encode(&e.relevance, layout)?)?;
            }
            if let Some(l) = logits {
                npy::write(&l, &e.output)?;
            }
            let total: f64 = e.relevance.data.iter().map(|&v| v as f64).sum();
            eprintln!("{}: relevance {:?} written to {} (sum {total:.6e})", plan.analyzer, e.relevance.shape, output.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
