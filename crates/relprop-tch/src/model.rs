//! The compiled model: the graph, the device, and caches of device tensors built once: plain kernels and biases
//! (uploaded at compile time), substituted kernels and biases per (node, modifier), BatchNorm scale/shift, and
//! average-pooling divisor maps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use relprop_core::engine::{self, ExplainOptions, Explanation, Numerics};
use relprop_core::graph::{Conv, Graph, Op};
use relprop_core::program::{BiasMod, WeightMod};
use relprop_core::{CompiledModel, Result, RulePlan, Target, Tensor};
use tch::{Device, Kind};

use crate::err;
use crate::numerics::{Ck, T};

/// Cache key: node and the modifier's `Debug` text (modifiers carry f32 parameters, so they are not `Hash`).
type Key = (usize, String);

/// A device-tensor cache (tensors are `Send`; the mutex makes the model `Sync`).
#[derive(Default)]
pub(crate) struct Cache {
    map: Mutex<HashMap<Key, tch::Tensor>>,
}

impl Cache {
    /// The cached tensor for `key`, built by `make` on first use. Returns a shallow clone (shared storage).
    pub(crate) fn get(&self, key: Key, make: impl FnOnce() -> Result<tch::Tensor>) -> Result<tch::Tensor> {
        let mut map = self.map.lock().map_err(|_| err("tensor cache poisoned"))?;
        if let Some(t) = map.get(&key) {
            return Ok(t.shallow_clone());
        }
        let t = make()?;
        let out = t.shallow_clone();
        map.insert(key, t);
        Ok(out)
    }
}

/// A graph prepared for libtorch on one device.
pub struct TchModel {
    pub(crate) graph: Arc<Graph>,
    pub(crate) device: Device,
    pub(crate) weights: Cache,
    pub(crate) biases: Cache,
    /// BatchNorm (scale, shift) under keys "scale"/"shift"; pooling divisor maps under "div".
    pub(crate) misc: Cache,
}

impl TchModel {
    /// Prepare `graph` on `device`: plain kernels and biases are uploaded now.
    pub fn new(graph: Arc<Graph>, device: Device) -> Result<TchModel> {
        graph.validate()?;
        let m = TchModel { graph, device, weights: Cache::default(), biases: Cache::default(), misc: Cache::default() };
        let _guard = tch::no_grad_guard();
        for (i, n) in m.graph.nodes.iter().enumerate() {
            if n.op.has_kernel() {
                let _ = m.weight(i, WeightMod::Plain)?;
                let _ = m.bias(i, BiasMod::Plain)?;
            }
        }
        Ok(m)
    }

    /// The device the model lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A host tensor on the device, with `shape`.
    pub(crate) fn upload(&self, data: &[f32], shape: &[usize]) -> Result<tch::Tensor> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        tch::Tensor::f_from_slice(data).ck()?.f_reshape(dims.as_slice()).ck()?.f_to_device(self.device).ck()
    }

    /// The kernel of `node` with `w` applied, on the device (same shape and layout as the IR's).
    pub(crate) fn weight(&self, node: usize, w: WeightMod) -> Result<tch::Tensor> {
        let orig = match &self.graph.nodes[node].op {
            Op::Dense(d) => &d.weight,
            Op::Conv(c) => &c.weight,
            op => return Err(err(format!("{} has no kernel", op.kind()))),
        };
        self.substituted(orig, (node, format!("{w:?}")), w)
    }

    /// The pointwise stage's weight of a SeparableConv `node` with `w` applied, on the device.
    pub(crate) fn pointwise(&self, node: usize, w: WeightMod) -> Result<tch::Tensor> {
        match &self.graph.nodes[node].op {
            Op::Conv(Conv { pointwise: Some(p), .. }) => self.substituted(p, (node, format!("pointwise {w:?}")), w),
            op => Err(err(format!("{} has no pointwise stage", op.kind()))),
        }
    }

    fn substituted(&self, orig: &Tensor, key: (usize, String), w: WeightMod) -> Result<tch::Tensor> {
        if w == WeightMod::Plain {
            return self.weights.get(key, || self.upload(&orig.data, &orig.shape));
        }
        // Substituted on the host with the same function as every backend (bit-identical weights), uploaded once.
        self.weights.get(key, || {
            let data: Vec<f32> = orig.data.iter().map(|&v| w.apply(v)).collect();
            self.upload(&data, &orig.shape)
        })
    }

    /// The bias of `node` substituted per `b`, shaped to broadcast against the layer output (channel axis 1
    /// for Conv, last axis for Dense); `None` when the layer has no bias or `b` is `None`.
    pub(crate) fn bias(&self, node: usize, b: BiasMod) -> Result<Option<tch::Tensor>> {
        let (bias, conv_rank) = match &self.graph.nodes[node].op {
            Op::Dense(d) => (d.bias.as_deref(), None),
            Op::Conv(c) => (c.bias.as_deref(), Some(c.rank())),
            op => return Err(err(format!("{} has no bias", op.kind()))),
        };
        let Some(bias) = bias else { return Ok(None) };
        if b == BiasMod::None {
            return Ok(None);
        }
        self.biases
            .get((node, format!("{b:?}")), || {
                let v: Vec<f32> = bias
                    .data
                    .iter()
                    .map(|&v| b.apply(v))
                    .collect();
                let shape: Vec<usize> = match conv_rank {
                    Some(r) => std::iter::once(v.len()).chain(std::iter::repeat_n(1, r)).collect(),
                    None => vec![v.len()],
                };
                self.upload(&v, &shape)
            })
            .map(Some)
    }

    /// A per-channel vector shaped `(1, C, 1, ..)` for a tensor of `ndim` axes.
    pub(crate) fn channel_vec(&self, v: &[f32], ndim: usize) -> Result<tch::Tensor> {
        if ndim < 2 {
            return Err(err(format!("a per-channel vector needs a channel axis, tensor has {ndim} axes")));
        }
        let shape: Vec<usize> = [1, v.len()].into_iter().chain(std::iter::repeat_n(1, ndim - 2)).collect();
        self.upload(v, &shape)
    }

    /// Explain and keep the device tensors (no conversion).
    pub fn explain_tch(&self, plan: &RulePlan, x: &Tensor, target: &Target, opts: &ExplainOptions) -> Result<Explanation<T>> {
        let _guard = tch::no_grad_guard();
        engine::explain(self, &self.graph, plan, x, target, opts)
    }

    pub(crate) fn f32_options(&self) -> (Kind, Device) {
        (Kind::Float, self.device)
    }
}

impl CompiledModel for TchModel {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        engine::forward(self, &self.graph, x)
    }

    fn explain(&self, plan: &RulePlan, x: &Tensor, target: &Target, opts: &ExplainOptions) -> Result<Explanation<Tensor>> {
        let e = self.explain_tch(plan, x, target, opts)?;
        Ok(Explanation {
            relevance: self.output(&e.relevance)?,
            output: self.output(&e.output)?,
            layers: e.layers.map(|ls| ls.iter().map(|l| l.as_ref().map(|t| self.output(t)).transpose()).collect::<Result<Vec<_>>>()).transpose()?,
        })
    }
}
