//! GFLOP/s of the conv kernels on VGG16's 13 layer shapes (batch 1), forward and transpose, for each GEMM
//! engine: `cargo run --release -p relprop-ndarray --example convbench` (`resnet` as the argument: ResNet50's
//! shapes; `CONVBENCH_BATCH=8`: that many samples per call; `CONVBENCH_GEMM_ONLY=1`: the default engine only). A tuning aid for `kernels/conv.rs`
//! (tile sizes, engines); the whole-model figures come from `cargo xtask bench`.

use std::sync::Arc;
use std::time::Instant;
use ndarray::{ArrayD, IxDyn};
use relprop_core::graph::Conv;
use relprop_core::tensor::Tensor;
use relprop_ndarray::kernels::{conv_forward, conv_transpose, set_gemm_engine, GemmEngine};

fn main() {
    // (cin, cout, kernel, stride, input plane); `resnet` as the argument: ResNet50's bottleneck shapes.
    let vgg = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14), (512, 512, 14)];
    let resnet = [(64, 256, 1, 1, 56), (256, 64, 1, 1, 56), (64, 64, 3, 1, 56), (128, 512, 1, 1, 28), (512, 128, 1, 1, 28), (128, 128, 3, 1, 28), (256, 1024, 1, 1, 14), (1024, 256, 1, 1, 14), (256, 256, 3, 1, 14), (512, 2048, 1, 1, 7), (2048, 512, 1, 1, 7), (512, 512, 3, 1, 7), (1024, 2048, 1, 2, 14)];
    let layers: Vec<(usize, usize, usize, usize, usize)> = if std::env::args().nth(1).as_deref() == Some("resnet") {
        resnet.to_vec()
    } else {
        vgg.iter().map(|&(ci, co, hw)| (ci, co, 3, 1, hw)).collect()
    };
    // Times are per call; GFLOP/s count every sample of the call.
    let n: usize = std::env::var("CONVBENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let engines = if std::env::var("CONVBENCH_GEMM_ONLY").is_ok() { vec![GemmEngine::GemmCrate] } else { vec![GemmEngine::GemmCrate, GemmEngine::Avx512] };
    for eng in engines {
        set_gemm_engine(eng);
        let (mut tf, mut tt, mut fl) = (0.0, 0.0, 0.0);
        for &(ci, co, k, st, hw) in &layers {
            let w: Vec<f32> = (0..co * ci * k * k).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05).collect();
            let pad = k / 2;
            let ho = (hw + 2 * pad - k) / st + 1;
            let c = Conv { weight: Arc::new(Tensor { shape: vec![co, ci, k, k], data: w.clone() }), bias: None, strides: vec![st, st], dilations: vec![1, 1], pads_begin: vec![pad, pad], pads_end: vec![pad, pad], groups: 1, activation: None, pointwise: None, transposed: None };
            let x = ArrayD::from_shape_fn(IxDyn(&[n, ci, hw, hw]), |i| ((i[1] * 31 + i[2] * 7 + i[3]) % 13) as f32 / 13.0);
            let s = ArrayD::from_shape_fn(IxDyn(&[n, co, ho, ho]), |i| ((i[1] * 17 + i[2] * 5 + i[3]) % 11) as f32 / 11.0 - 0.5);
            let _ = conv_forward(&c, &w, x.view());
            // The fastest of 10 runs: this shared machine's timings drift by tens of percent.
            let best = |run: &dyn Fn()| {
                (0..10).map(|_| { let t = Instant::now(); run(); t.elapsed().as_secs_f64() }).fold(f64::MAX, f64::min)
            };
            let f = best(&|| { std::hint::black_box(conv_forward(&c, &w, x.view())); });
            let _ = conv_transpose(&c, &w, s.view(), &[ci, hw, hw]);
            let tr = best(&|| { std::hint::black_box(conv_transpose(&c, &w, s.view(), &[ci, hw, hw])); });
            let flops = 2.0 * (n * co * ci * k * k * ho * ho) as f64;
            println!("{eng:?} {ci}->{co} k{k} s{st} {hw}: fwd {:.2} ms {:.0} GF/s, tr {:.2} ms {:.0} GF/s", f * 1e3, flops / f / 1e9, tr * 1e3, flops / tr / 1e9);
            tf += f; tt += tr; fl += flops;
        }
        println!("{eng:?} total fwd {:.1} ms ({:.0} GF/s) tr {:.1} ms ({:.0} GF/s)", tf * 1e3, fl / tf / 1e9, tt * 1e3, fl / tt / 1e9);
    }
}
