//! The compiled model: the graph plus a cache of substituted dense weights (W⁺, W⁻, W², ones, ...), each built
//! once on first use, for batches large enough to take the GEMM path (smaller ones stream the modifier; conv
//! kernels are substituted per call). Plain weights are never copied.

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

/// A graph prepared for the ndarray backend.
pub struct NdModel {
    pub(crate) graph: Arc<Graph>,
    pub(crate) weights: WeightCache,
}

impl NdModel {
    /// Prepare `graph`.
    pub fn new(graph: Arc<Graph>) -> Result<NdModel> {
        graph.validate()?;
        crate::tune_allocator();
        Ok(NdModel { graph, weights: WeightCache::default() })
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
