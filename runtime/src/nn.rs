//! `wasi:nn` for plugins: a pure-Rust ONNX backend (tract) and the graphs a
//! plugin was loaded with.
//!
//! A predictor can bring a standard model: the model file is a blob of the
//! plugin's artifact (pinned by digest), parsed once when the plugin is loaded
//! ([`Plugin::with_graphs`](crate::Plugin::with_graphs)) and offered to every
//! call under its name, so the guest calls `wasi:nn/graph.load-by-name`. Guests
//! may also `load` ONNX bytes of their own. Nothing native is linked or
//! downloaded: tract is Rust.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType, WasiNnCtx};
use wasmtime_wasi_nn::{Backend, ExecutionContext, Graph, GraphRegistry, Registry, Tensor};

/// A plan compiled for one set of input shapes.
type Plan = Arc<TypedRunnableModel>;

fn backend_err(message: impl std::fmt::Display) -> BackendError {
    BackendError::BackendAccess(wasmtime::format_err!("{message}"))
}

/// A parsed ONNX model; plans are compiled lazily per input shape and cached.
struct OnnxGraph {
    model: Mutex<InferenceModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Plan>>,
}

/// Most distinct input shapes whose plans are kept per graph.
const MAX_PLANS: usize = 32;

impl OnnxGraph {
    fn parse(bytes: &[u8]) -> TractResult<Self> {
        let model = tract_onnx::onnx().model_for_read(&mut &*bytes)?;
        let names = |outlets: &[OutletId]| -> Vec<String> {
            outlets
                .iter()
                .map(|o| model.node(o.node).name.clone())
                .collect()
        };
        let inputs = names(model.input_outlets()?);
        let outputs = names(model.output_outlets()?);
        Ok(OnnxGraph {
            model: Mutex::new(model),
            inputs,
            outputs,
            plans: Mutex::new(HashMap::new()),
        })
    }

    fn plan(&self, shapes: &[Vec<usize>]) -> TractResult<Plan> {
        if let Some(p) = self.plans.lock().expect("plans lock").get(shapes) {
            return Ok(p.clone());
        }
        let mut model = self.model.lock().expect("model lock").clone();
        for (i, shape) in shapes.iter().enumerate() {
            model = model.with_input_fact(i, f32::fact(shape).into())?;
        }
        let plan = model.into_optimized()?.into_runnable()?;
        let mut plans = self.plans.lock().expect("plans lock");
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(shapes.to_vec(), plan.clone());
        Ok(plan)
    }
}

/// The graph handed to wasi-nn: an `Arc`, so that execution contexts share it.
struct OnnxGraphHandle(Arc<OnnxGraph>);

impl BackendGraph for OnnxGraphHandle {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(OnnxContext {
            graph: self.0.clone(),
            inputs: HashMap::new(),
            outputs: Vec::new(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct OnnxContext {
    graph: Arc<OnnxGraph>,
    inputs: HashMap<usize, Tensor>,
    outputs: Vec<Tensor>,
}

fn to_f32(t: &Tensor) -> Result<tract_onnx::prelude::Tensor, BackendError> {
    if t.ty != TensorType::Fp32 {
        return Err(BackendError::UnsupportedTensorType(format!(
            "{:?} (the ONNX backend takes FP32 inputs)",
            t.ty
        )));
    }
    let shape: Vec<usize> = t.dimensions.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    if t.data.len() != n * 4 {
        return Err(backend_err(format!(
            "tensor of dimensions {:?} needs {} bytes of FP32 data, got {}",
            t.dimensions,
            n * 4,
            t.data.len()
        )));
    }
    let values: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    tract_ndarray::ArrayD::from_shape_vec(shape, values)
        .map(Into::into)
        .map_err(backend_err)
}

fn from_tract(v: &TValue) -> Result<Tensor, BackendError> {
    let t = v.cast_to::<f32>().map_err(backend_err)?;
    let data = t
        .to_plain_array_view::<f32>()
        .map_err(backend_err)?
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    Ok(Tensor {
        dimensions: t.shape().iter().map(|&d| d as u32).collect(),
        ty: TensorType::Fp32,
        data,
    })
}

impl OnnxContext {
    fn index_of(&self, id: &Id, names: &[String]) -> Result<usize, BackendError> {
        match id {
            Id::Index(i) if (*i as usize) < names.len() => Ok(*i as usize),
            Id::Name(n) => names.iter().position(|x| x == n).ok_or_else(|| {
                backend_err(format!(
                    "the model has no tensor `{n}`; it has: {}",
                    names.join(", ")
                ))
            }),
            Id::Index(i) => Err(backend_err(format!(
                "tensor index {i} is out of range ({} available)",
                names.len()
            ))),
        }
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let n = self.graph.inputs.len();
        let mut values = TVec::new();
        let mut shapes = Vec::with_capacity(n);
        for i in 0..n {
            let t = self.inputs.get(&i).ok_or_else(|| {
                backend_err(format!("input `{}` was not set", self.graph.inputs[i]))
            })?;
            let t = to_f32(t)?;
            shapes.push(t.shape().to_vec());
            values.push(t.into_tvalue());
        }
        let plan = self.graph.plan(&shapes).map_err(backend_err)?;
        let out = plan.run(values).map_err(backend_err)?;
        self.outputs = out.iter().map(from_tract).collect::<Result<_, _>>()?;
        Ok(())
    }
}

impl BackendExecutionContext for OnnxContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let i = self.index_of(&id, &self.graph.inputs.clone())?;
        self.inputs.insert(i, tensor.clone());
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        let i = self.index_of(&id, &self.graph.outputs.clone())?;
        self.outputs
            .get(i)
            .cloned()
            .ok_or_else(|| backend_err("compute has not run"))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let Some(inputs) = inputs else {
            self.run()?;
            return Ok(None);
        };
        for nt in inputs {
            let i = self.index_of(&Id::Name(nt.name), &self.graph.inputs.clone())?;
            self.inputs.insert(i, nt.tensor);
        }
        self.run()?;
        Ok(Some(
            self.graph
                .outputs
                .iter()
                .cloned()
                .zip(self.outputs.iter().cloned())
                .map(|(name, tensor)| NamedTensor { name, tensor })
                .collect(),
        ))
    }
}

/// Parses an ONNX model for `load-by-name`.
pub(crate) fn load_onnx(bytes: &[u8]) -> Result<Graph, String> {
    let graph = OnnxGraph::parse(bytes).map_err(|e| format!("{e:#}"))?;
    Ok(Graph::from(
        Box::new(OnnxGraphHandle(Arc::new(graph))) as Box<dyn BackendGraph>
    ))
}

/// The graphs a plugin offers by name.
struct Named(HashMap<String, Graph>);

impl GraphRegistry for Named {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}

/// A fresh wasi-nn context for one call, offering `graphs` by name.
pub(crate) fn context(graphs: &[(String, Graph)]) -> WasiNnCtx {
    let backend = Backend::from(OnnxBackend);
    let named = Named(graphs.iter().cloned().collect());
    WasiNnCtx::new([backend], Registry::from(named))
}

/// The ONNX backend, for graphs a guest loads from its own bytes.
#[derive(Default)]
struct OnnxBackend;

impl BackendInner for OnnxBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(
        &mut self,
        builders: &[&[u8]],
        _target: ExecutionTarget,
    ) -> Result<Graph, BackendError> {
        let [bytes] = builders else {
            return Err(BackendError::InvalidNumberOfBuilders(1, builders.len()));
        };
        load_onnx(bytes).map_err(backend_err)
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}
