//! Exact operation counts of a forward pass or an explanation: the shared engine run on a symbolic
//! [`Numerics`] whose tensors are shapes. Every `linear`/`linear_t` call (Conv and Dense, with any weight
//! modifier) counts its multiply-adds; everything else counts one operation per output element.

use std::cell::Cell;

use relprop_core::engine::{self, ExplainOptions, Numerics};
use relprop_core::graph::{Activation, Graph, Op};
use relprop_core::program::{BiasMod, WeightMod, XMod};
use relprop_core::{Result, RulePlan, Target, Tensor};

/// Operation counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flops {
    /// 2 × multiply-adds of the Conv/Dense products (GEMM-shaped work).
    pub gemm: f64,
    /// Elementwise operations (one per output element of every other primitive).
    pub elementwise: f64,
    /// Calls of `linear` + `linear_t`.
    pub products: usize,
}

struct Counter<'g> {
    g: &'g Graph,
    gemm: Cell<f64>,
    elem: Cell<f64>,
    products: Cell<usize>,
}

type S = Vec<usize>;

fn numel(s: &[usize]) -> f64 {
    s.iter().product::<usize>() as f64
}

impl Counter<'_> {
    fn batched(&self, n: usize, node: usize) -> S {
        std::iter::once(n).chain(self.g.nodes[node].shape.iter().copied()).collect()
    }
    /// Multiply-adds of node `node`'s product for a batch of `n`.
    fn macs(&self, node: usize, n: usize) -> f64 {
        let nd = &self.g.nodes[node];
        let out = numel(&nd.shape) * n as f64;
        match &nd.op {
            Op::Dense(d) => out * d.weight.shape[0] as f64,
            // Per output plane position: the first stage's taps for each of its channels, then (SeparableConv)
            // the pointwise mix.
            // A ConvTranspose: per input position, every tap of every output channel.
            Op::Conv(c) if c.transposed.is_some() => {
                let input: usize = self.g.nodes[nd.inputs[0]].shape.iter().product();
                (input * n) as f64 * c.weight.shape[1..].iter().product::<usize>() as f64
            }
            Op::Conv(c) => {
                let plane = out / c.out_channels() as f64;
                let first = plane * (c.weight.shape[0] * c.weight.shape[1..].iter().product::<usize>()) as f64;
                first + c.pointwise.as_ref().map_or(0.0, |p| plane * (p.shape[0] * p.shape[1]) as f64)
            }
            _ => 0.0,
        }
    }
    fn elem(&self, s: &S) -> S {
        self.elem.set(self.elem.get() + numel(s));
        s.clone()
    }
}

impl Numerics for Counter<'_> {
    type T = S;
    fn input(&self, x: &Tensor) -> Result<S> {
        Ok(x.shape.clone())
    }
    fn output(&self, t: &S) -> Result<Tensor> {
        Ok(Tensor { shape: t.clone(), data: vec![] })
    }
    fn linear(&self, node: usize, _w: WeightMod, x: &S) -> Result<S> {
        self.gemm.set(self.gemm.get() + 2.0 * self.macs(node, x[0]));
        self.products.set(self.products.get() + 1);
        Ok(self.batched(x[0], node))
    }
    fn linear_t(&self, node: usize, _w: WeightMod, s: &S) -> Result<S> {
        self.gemm.set(self.gemm.get() + 2.0 * self.macs(node, s[0]));
        self.products.set(self.products.get() + 1);
        Ok(self.batched(s[0], self.g.nodes[node].inputs[0]))
    }
    fn add_bias(&self, _node: usize, _b: BiasMod, z: &S) -> Result<S> {
        Ok(self.elem(z))
    }
    fn activation(&self, _a: &Activation, z: &S) -> Result<S> {
        Ok(self.elem(z))
    }
    fn forward(&self, node: usize, inputs: &[&S]) -> Result<S> {
        let s = self.batched(inputs[0][0], node);
        Ok(self.elem(&s))
    }
    fn pool_t(&self, node: usize, s: &S) -> Result<S> {
        let x = self.batched(s[0], self.g.nodes[node].inputs[0]);
        Ok(self.elem(&x))
    }
    fn route(&self, node: usize, inputs: &[&S], r: &S) -> Result<Vec<S>> {
        let _ = node;
        Ok(inputs.iter().map(|x| {
            let mut s = (*x).clone();
            s[0] = r[0];
            self.elem(&s)
        }).collect())
    }
    fn add_channel(&self, t: &S, _v: &[f32]) -> Result<S> {
        Ok(self.elem(t))
    }
    fn xmod(&self, x: &S, m: XMod) -> Result<S> {
        Ok(if m == XMod::X { x.clone() } else { self.elem(x) })
    }
    fn add(&self, a: &S, _b: &S) -> Result<S> {
        Ok(self.elem(a))
    }
    fn sub(&self, a: &S, _b: &S) -> Result<S> {
        Ok(self.elem(a))
    }
    fn mul(&self, a: &S, _b: &S) -> Result<S> {
        Ok(self.elem(a))
    }
    fn scale(&self, a: &S, _c: f32) -> Result<S> {
        Ok(self.elem(a))
    }
    fn safe_div(&self, a: &S, _b: &S) -> Result<S> {
        Ok(self.elem(a))
    }
    fn stabilize(&self, z: &S, _eps: f32) -> Result<S> {
        Ok(self.elem(z))
    }
    fn stabilize_rows(&self, z: &S, _eps: &S) -> Result<S> {
        Ok(self.elem(z))
    }
    fn std_rows(&self, x: &S, _over_batch: bool) -> Result<S> {
        self.elem(x);
        Ok(vec![x[0]])
    }
    fn scale_rows(&self, a: &S, _v: &S) -> Result<S> {
        Ok(self.elem(a))
    }
    fn row_max(&self, t: &S) -> Result<(S, S)> {
        Ok((self.elem(t), vec![t[0]]))
    }
    fn row_pick(&self, t: &S, _k: usize) -> Result<(S, S)> {
        Ok((self.elem(t), vec![t[0]]))
    }
}

fn counts(c: Counter) -> Flops {
    Flops { gemm: c.gemm.get(), elementwise: c.elem.get(), products: c.products.get() }
}

/// Operation counts of a forward pass of batch `n`.
pub fn forward(g: &Graph, n: usize) -> Result<Flops> {
    let c = Counter { g, gemm: Cell::new(0.0), elem: Cell::new(0.0), products: Cell::new(0) };
    let x = dummy(g, n);
    engine::forward(&c, g, &x)?;
    Ok(counts(c))
}

/// Operation counts of an explanation of batch `n` under `plan` (forward pass included).
pub fn explain(g: &Graph, plan: &RulePlan, n: usize, target: &Target) -> Result<Flops> {
    let c = Counter { g, gemm: Cell::new(0.0), elem: Cell::new(0.0), products: Cell::new(0) };
    let x = dummy(g, n);
    engine::explain(&c, g, plan, &x, target, &ExplainOptions::default())?;
    Ok(counts(c))
}

/// The engine checks its input's shape and values, so it gets a real (zero) tensor; only its shape is read.
fn dummy(g: &Graph, n: usize) -> Tensor {
    let shape: Vec<usize> = std::iter::once(n).chain(g.input_shape().iter().copied()).collect();
    let len = shape.iter().product();
    Tensor { shape, data: vec![0.0; len] }
}
