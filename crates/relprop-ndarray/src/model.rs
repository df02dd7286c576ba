//! The compiled model: the graph plus a cache of substituted dense weights (W⁺, W⁻, W², ones, ...), each built
//! once on first use, for batches large enough to take the GEMM path (smaller ones stream the modifier), and
//! the substituted conv kernels of the layer being explained ([`RecentKernels`]). Plain weights are never copied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use relprop_core::engine::{self, ExplainOptions, Explanation};
use relprop_core::graph::{Graph, Op};
use relprop_core::program::WeightMod;
use relprop_core::{CompiledModel, Error, Result, RulePlan, Target, Tensor};

/// Substituted weights per (node, modifier).
#[derive(Default)]
pub struct WeightCache {
    map: Mutex<HashMap<(usize, String), Arc<Tensor>>>,
}

impl WeightCache {
    /// The kernel of `node` with `w` applied (same shape and layout as the original).
    pub fn get(&self, g: &Graph, node: usize, w: WeightMod) -> Result<Arc<Tensor>> {
        let orig = match &g.nodes[node].op {
            Op::Dense(d) => &d.weight,
            Op::Conv(c) => &c.weight,
            op => return Err(Error::Backend { backend: "ndarray".into(), msg: format!("{} has no kernel", op.kind()) }),
        };
        if w == WeightMod::Plain {
            return Ok(orig.clone());
        }
        let key = (node, format!("{w:?}"));
        let mut map = self.map.lock().map_err(|_| Error::Backend { backend: "ndarray".into(), msg: "weight cache poisoned".into() })?;
        Ok(map
            .entry(key)
            .or_insert_with(|| Arc::new(Tensor { shape: orig.shape.clone(), data: orig.data.iter().map(|&v| w.apply(v)).collect() }))
            .clone())
    }
}

/// Substituted conv kernels, keyed by (node, stage, modifier), of one layer at a time: at most two (W⁺ and W⁻),
/// dropped as soon as another layer asks, before its kernel is built, so the peak holds at most one kernel more
/// than building per call did.
#[derive(Default)]
pub(crate) struct RecentKernels(Mutex<Vec<(Key, Arc<Vec<f32>>)>>);

type Key = (usize, usize, WeightMod);

impl RecentKernels {
    /// The kernel under `key`, built by `build` unless it is held.
    pub(crate) fn get(&self, key: Key, build: impl FnOnce() -> Vec<f32>) -> Arc<Vec<f32>> {
        // A poisoned lock only means another explanation panicked mid-build: the entries stay valid.
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k)) = held.iter().find(|(k, _)| *k == key) {
            return k.clone();
        }
        held.retain(|((node, _, _), _)| *node == key.0);
        if held.len() >= 2 {
            held.remove(0);
        }
        let k = Arc::new(build());
        held.push((key, k.clone()));
        k
    }
}

/// A graph prepared for the ndarray backend.
pub struct NdModel {
    pub(crate) graph: Arc<Graph>,
    pub(crate) weights: WeightCache,
    pub(crate) recent: RecentKernels,
}

impl NdModel {
    /// Prepare `graph`.
    pub fn new(graph: Arc<Graph>) -> Result<NdModel> {
        graph.validate()?;
        crate::tune_allocator();
        Ok(NdModel { graph, weights: WeightCache::default(), recent: RecentKernels::default() })
    }

    /// The graph this model was compiled from.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Explain and keep the ndarray tensors (no conversion).
    pub fn explain_nd(&self, plan: &RulePlan, x: &Tensor, target: &Target, opts: &ExplainOptions) -> Result<Explanation<crate::numerics::T>> {
        engine::explain(self, &self.graph, plan, x, target, opts)
    }
}

impl CompiledModel for NdModel {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        engine::forward(self, &self.graph, x)
    }

    fn explain(&self, plan: &RulePlan, x: &Tensor, target: &Target, opts: &ExplainOptions) -> Result<Explanation<Tensor>> {
        use relprop_core::engine::Numerics;
        let e = self.explain_nd(plan, x, target, opts)?;
        Ok(Explanation {
            relevance: self.output(&e.relevance)?,
            output: self.output(&e.output)?,
            layers: e.layers.map(|ls| ls.iter().map(|l| l.as_ref().map(|t| self.output(t)).transpose()).collect::<Result<Vec<_>>>()).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_kernels_serve_one_layer_and_forget_it() {
        let recent = RecentKernels::default();
        let builds = std::cell::Cell::new(0);
        let get = |node, w| {
            recent.get((node, 0, w), || {
                builds.set(builds.get() + 1);
                vec![node as f32]
            })
        };
        // W⁺ and W⁻ of layer 3, each asked twice (forward, then transposed): built once each.
        for w in [WeightMod::Pos, WeightMod::Neg, WeightMod::Pos, WeightMod::Neg] {
            assert_eq!(*get(3, w), [3.0]);
        }
        assert_eq!(builds.get(), 2);
        // Another layer drops layer 3's kernels before building its own: never more than two are held.
        assert_eq!(*get(7, WeightMod::Pos), [7.0]);
        assert_eq!(recent.0.lock().unwrap().len(), 1);
        assert_eq!(*get(3, WeightMod::Pos), [3.0]);
        assert_eq!(builds.get(), 4);
        // A third modifier of one layer evicts the oldest.
        get(3, WeightMod::Neg);
        get(3, WeightMod::Square);
        assert_eq!(recent.0.lock().unwrap().iter().map(|(k, _)| k.2).collect::<Vec<_>>(), [WeightMod::Neg, WeightMod::Square]);
    }
}
