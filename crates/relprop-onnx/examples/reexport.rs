//! Import an ONNX file into the IR and write it back out as plain ONNX, printing the IR on the way:
//! `cargo run -p relprop-onnx --example reexport -- in.onnx out.onnx [--strip-softmax]`.
//! Handy for checking the writer with ONNX's own tools (onnx.checker, onnxruntime).

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: reexport IN.onnx OUT.onnx [--strip-softmax]".into());
    };
    let opts = relprop_onnx::ImportOptions { strip_softmax: rest.iter().any(|a| a == "--strip-softmax"), ..Default::default() };
    let graph = relprop_onnx::load_with(Path::new(input), &opts)?;
    println!("layout {:?}, output node {}", graph.layout, graph.output);
    for (i, n) in graph.nodes.iter().enumerate() {
        println!("{i:3} {:<14} {:<24} {:?} <- {:?}", n.op.kind(), n.layer, n.shape, n.inputs);
    }
    std::fs::write(output, relprop_onnx::encode_model(&relprop_onnx::graph_to_onnx(&graph)))?;
    println!("wrote {output}");
    Ok(())
}
