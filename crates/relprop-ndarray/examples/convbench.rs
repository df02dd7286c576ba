//! GFLOP/s of the conv kernels on VGG16's 13 layer shapes (batch 1), forward and transpose, for each GEMM
//! engine: `cargo run --release -p relprop-ndarray --example convbench`. A tuning aid for `kernels/conv.rs`
//! (tile sizes, engines); the whole-model figures come from `cargo xtask bench`.

use std::sync::Arc;
use std::time::Instant;
use ndarray::{ArrayD, IxDyn};
use relprop_core::graph::Conv;
use relprop_core::tensor::Tensor;
use relprop_ndarray::kernels::{conv_forward, conv_transpose, set_gemm_engine, GemmEngine};

fn main() {
    let layers = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14), (512, 512, 14)];
    for eng in [GemmEngine::GemmCrate, GemmEngine::Avx512] {
        set_gemm_engine(eng);
        let (mut tf, mut tt, mut fl) = (0.0, 0.0, 0.0);
        for &(ci, co, hw) in &layers {
            let w: Vec<f32> = (0..co * ci * 9).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05).collect();
            let c = Conv { weight: Arc::new(Tensor { shape: vec![co, ci, 3, 3], data: w.clone() }), bias: None, strides: vec![1, 1], dilations: vec![1, 1], pads_begin: vec![1, 1], pads_end: vec![1, 1], groups: 1, activation: None };
            let x = ArrayD::from_shape_fn(IxDyn(&[1, ci, hw, hw]), |i| ((i[1] * 31 + i[2] * 7 + i[3]) % 13) as f32 / 13.0);
            let s = ArrayD::from_shape_fn(IxDyn(&[1, co, hw, hw]), |i| ((i[1] * 17 + i[2] * 5 + i[3]) % 11) as f32 / 11.0 - 0.5);
            let _ = conv_forward(&c, &w, x.view());
            let reps = 3;
            let t = Instant::now();
            for _ in 0..reps { std::hint::black_box(conv_forward(&c, &w, x.view())); }
            let f = t.elapsed().as_secs_f64() / reps as f64;
            let _ = conv_transpose(&c, &w, s.view(), &[ci, hw, hw]);
            let t = Instant::now();
            for _ in 0..reps { std::hint::black_box(conv_transpose(&c, &w, s.view(), &[ci, hw, hw])); }
            let tr = t.elapsed().as_secs_f64() / reps as f64;
            let flops = 2.0 * (co * ci * 9 * hw * hw) as f64;
            println!("{eng:?} {ci}->{co} {hw}: fwd {:.1} ms {:.0} GF/s, tr {:.1} ms {:.0} GF/s", f * 1e3, flops / f / 1e9, tr * 1e3, flops / tr / 1e9);
            tf += f; tt += tr; fl += flops;
        }
        println!("{eng:?} total fwd {:.1} ms ({:.0} GF/s) tr {:.1} ms ({:.0} GF/s)", tf * 1e3, fl / tf / 1e9, tt * 1e3, fl / tt / 1e9);
    }
}
