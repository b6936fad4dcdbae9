//! A loaded plugin and the typed calls into it. Every call runs in a fresh
//! instance from the plugin's `InstancePre`, with its own memory, deadline and
//! memory cap, so nothing a call does outlives it. A call has its own store,
//! except that a served request's transform and predict share one (two fresh
//! instances in one store, which costs less to set up than two stores).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tensorlet_gpu::{Device, Tensor};
use wasmtime::component::{Instance, InstancePre, Resource};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_nn::Graph;

use crate::Limits;
use crate::bindings::exports::tensorlet::ml::{predict, preprocess, train};
use crate::bindings::tensor::NamedTensor;
use crate::bindings::types;
use crate::bindings_async::exports::tensorlet::ml::{
    predict as predict_async, preprocess as preprocess_async,
};
use crate::error::{PluginFailure, Result, RuntimeError};
use crate::host::{Ctx, HostTensorLimit};

/// State shared by a runtime and the plugins it loaded.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) device: Device,
}

/// Instances created by all plugin calls of this process.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// How many wasm instances plugin calls have created in this process.
pub fn instances_created() -> u64 {
    INSTANCES.load(Ordering::Relaxed)
}

/// Named tensors in order: fitted state, or parameters.
pub type NamedTensors = Vec<(String, Tensor)>;

/// The name prefix of optimizer state among a trainer's params (Adam's
/// moments, SGD's velocity): `train.step` receives and returns those entries,
/// `predict.predict` does not (see `wit/tensorlet.wit`).
pub(crate) const OPTIMIZER_PREFIX: &str = "opt.";

/// The entries of a trainer's `params` that a predictor receives: all but the
/// optimizer state, in order.
pub(crate) fn model_params(params: &NamedTensors) -> impl Iterator<Item = &(String, Tensor)> {
    params
        .iter()
        .filter(|(name, _)| !name.starts_with(OPTIMIZER_PREFIX))
}

/// What a trainer learns about the data before training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSpec {
    /// Input features per row (after preprocessing).
    pub features: u32,
    /// Number of classes.
    pub classes: u32,
    /// Initialisation seed.
    pub seed: u64,
}

/// The result of one training step.
#[derive(Debug)]
pub struct StepOutput {
    /// The new parameters and optimizer state.
    pub params: NamedTensors,
    /// The batch loss before the update.
    pub loss: f32,
}

/// A compiled, linked plugin. Cheap to share; calls take `&self`.
pub struct Plugin {
    shared: Arc<Shared>,
    name: String,
    digest: String,
    pre: InstancePre<Ctx>,
    preprocess: Option<preprocess::GuestIndices>,
    train: Option<train::GuestIndices>,
    predict: Option<predict::GuestIndices>,
    /// The same component linked with async WASI, for the `*_async` calls.
    pre_async: InstancePre<Ctx>,
    preprocess_async: Option<preprocess_async::GuestIndices>,
    predict_async: Option<predict_async::GuestIndices>,
    graphs: Arc<[(String, Graph)]>,
}

const PREPROCESS: &str = "tensorlet:ml/preprocess@0.1.0";
const TRAIN: &str = "tensorlet:ml/train@0.1.0";
const PREDICT: &str = "tensorlet:ml/predict@0.1.0";

impl Plugin {
    pub(crate) fn new(
        shared: Arc<Shared>,
        name: &str,
        digest: String,
        pre: InstancePre<Ctx>,
        pre_async: InstancePre<Ctx>,
    ) -> Result<Self> {
        let plugin = Plugin {
            preprocess: preprocess::GuestIndices::new(&pre).ok(),
            train: train::GuestIndices::new(&pre).ok(),
            predict: predict::GuestIndices::new(&pre).ok(),
            preprocess_async: preprocess_async::GuestIndices::new(&pre_async).ok(),
            predict_async: predict_async::GuestIndices::new(&pre_async).ok(),
            graphs: Arc::new([]),
            shared,
            name: name.to_string(),
            digest,
            pre,
            pre_async,
        };
        if plugin.preprocess.is_none() && plugin.train.is_none() && plugin.predict.is_none() {
            return Err(RuntimeError::Load {
                plugin: name.to_string(),
                message: format!(
                    "it exports none of {PREPROCESS}, {TRAIN}, {PREDICT}; build it for one of \
                     the worlds preprocessor, trainer, predictor or learner"
                ),
            });
        }
        Ok(plugin)
    }

    /// Offers ONNX models to the plugin's `wasi:nn/graph.load-by-name`, each
    /// under its name. Models are parsed here, once, not on every call.
    pub fn with_graphs(mut self, graphs: &[(String, Vec<u8>)]) -> Result<Self> {
        let mut loaded = self.graphs.to_vec();
        for (name, bytes) in graphs {
            let graph = crate::nn::load_onnx(bytes).map_err(|e| RuntimeError::Load {
                plugin: self.name.clone(),
                message: format!("graph `{name}` is not a usable ONNX model: {e}"),
            })?;
            loaded.push((name.clone(), graph));
        }
        self.graphs = loaded.into();
        Ok(self)
    }

    /// Names of the graphs offered through `wasi:nn`.
    pub fn graph_names(&self) -> Vec<&str> {
        self.graphs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:<hex>` of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the plugin exports `tensorlet:ml/preprocess`.
    pub fn is_preprocessor(&self) -> bool {
        self.preprocess.is_some()
    }

    /// Whether the plugin exports `tensorlet:ml/train`.
    pub fn is_trainer(&self) -> bool {
        self.train.is_some()
    }

    /// Whether the plugin exports `tensorlet:ml/predict`.
    pub fn is_predictor(&self) -> bool {
        self.predict.is_some()
    }

    fn fail(&self, call: &'static str, failure: PluginFailure) -> RuntimeError {
        RuntimeError::Plugin {
            plugin: self.name.clone(),
            call,
            failure,
        }
    }

    /// A fresh store with the sandbox's memory cap (the caller sets the
    /// deadline).
    pub(crate) fn store(&self) -> Store<Ctx> {
        let limits = &self.shared.limits;
        let mut store = Store::new(
            &self.shared.engine,
            Ctx::new(self.shared.device.clone(), limits, self.graphs.clone()),
        );
        store.limiter(|c| c.limiter());
        store
    }

    /// Runs `f` in a fresh instance with the sandbox limits, turning traps and
    /// limits into [`PluginFailure`]s.
    fn run<R>(
        &self,
        call: &'static str,
        f: impl FnOnce(&mut Store<Ctx>, &Instance) -> wasmtime::Result<Result<R, PluginFailure>>,
    ) -> Result<R> {
        let mut store = self.store();
        INSTANCES.fetch_add(1, Ordering::Relaxed);
        store.set_epoch_deadline(self.shared.limits.deadline_ticks());
        let outcome = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&mut store, &instance));
        self.finish(call, outcome, &mut store)
    }

    /// Arms `store` for an async call of this plugin: instead of trapping at
    /// the first epoch tick past a fixed count, the guest yields to the
    /// executor at every tick (so a looping plugin shares its thread with
    /// other requests instead of holding it) and is interrupted once the
    /// wall-clock deadline, counted from now, has passed. The plugin's
    /// `wasi:nn` graphs become the store's.
    fn arm_async(&self, store: &mut Store<Ctx>) {
        let deadline = Instant::now() + self.shared.limits.deadline;
        store.data_mut().offer_graphs(&self.graphs);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
    }

    /// A fresh instance of this plugin in `store`, for an async call.
    async fn instantiate_async(&self, store: &mut Store<Ctx>) -> wasmtime::Result<Instance> {
        INSTANCES.fetch_add(1, Ordering::Relaxed);
        self.pre_async.instantiate_async(store).await
    }

    /// The result of a call, with traps and limits named.
    fn finish<R>(
        &self,
        call: &'static str,
        outcome: wasmtime::Result<Result<R, PluginFailure>>,
        store: &mut Store<Ctx>,
    ) -> Result<R> {
        match outcome {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(failure)) => Err(self.fail(call, failure)),
            Err(e) => Err(self.fail(call, classify(&e, store, &self.shared.limits))),
        }
    }

    /// Creates a fresh store and instance exactly as every call does, and
    /// drops them: what a request pays for isolation (benchmarks measure it).
    pub fn instantiate_once(&self) -> Result<()> {
        self.run("instantiate", |_, _| Ok(Ok(())))
    }

    /// `preprocess.fit`.
    pub fn fit(&self, config: &str, x: &Tensor) -> Result<NamedTensors> {
        let idx = self
            .preprocess
            .as_ref()
            .ok_or_else(|| self.fail("fit", PluginFailure::MissingExport(PREPROCESS)))?;
        self.run("fit", |store, instance| {
            let guest = idx.load(&mut *store, instance)?;
            let x = store.data_mut().push(x.clone())?;
            match guest.call_fit(&mut *store, config, x)? {
                Ok(state) => Ok(Ok(take_named(store, state)?)),
                Err(e) => Ok(Err(PluginFailure::Error(e))),
            }
        })
    }

    /// `preprocess.transform`.
    pub fn transform(&self, config: &str, state: &NamedTensors, x: &Tensor) -> Result<Tensor> {
        let idx = self
            .preprocess
            .as_ref()
            .ok_or_else(|| self.fail("transform", PluginFailure::MissingExport(PREPROCESS)))?;
        self.run("transform", |store, instance| {
            let guest = idx.load(&mut *store, instance)?;
            let state = push_named(store, state)?;
            let x = store.data_mut().push(x.clone())?;
            let out = guest.call_transform(&mut *store, config, &state, x)?;
            take_output(store, out)
        })
    }

    /// `train.init`.
    pub fn init(&self, config: &str, spec: DataSpec) -> Result<NamedTensors> {
        let idx = self
            .train
            .as_ref()
            .ok_or_else(|| self.fail("init", PluginFailure::MissingExport(TRAIN)))?;
        self.run("init", |store, instance| {
            let guest = idx.load(&mut *store, instance)?;
            let spec = types::DataSpec {
                features: spec.features,
                classes: spec.classes,
                seed: spec.seed,
            };
            match guest.call_init(&mut *store, config, spec)? {
                Ok(params) => Ok(Ok(take_named(store, params)?)),
                Err(e) => Ok(Err(PluginFailure::Error(e))),
            }
        })
    }

    /// `train.step`.
    pub fn step(
        &self,
        config: &str,
        params: &NamedTensors,
        x: &Tensor,
        y: &Tensor,
        step: u64,
    ) -> Result<StepOutput> {
        let idx = self
            .train
            .as_ref()
            .ok_or_else(|| self.fail("step", PluginFailure::MissingExport(TRAIN)))?;
        self.run("step", |store, instance| {
            let guest = idx.load(&mut *store, instance)?;
            let params = push_named(store, params)?;
            let x = store.data_mut().push(x.clone())?;
            let y = store.data_mut().push(y.clone())?;
            match guest.call_step(&mut *store, config, &params, x, y, step)? {
                Ok(out) => {
                    let params = take_named(store, out.params)?;
                    Ok(Ok(StepOutput {
                        params,
                        loss: out.loss,
                    }))
                }
                Err(e) => Ok(Err(PluginFailure::Error(e))),
            }
        })
    }

    /// `predict.predict`.
    pub fn predict(&self, config: &str, params: &NamedTensors, x: &Tensor) -> Result<Tensor> {
        let idx = self
            .predict
            .as_ref()
            .ok_or_else(|| self.fail("predict", PluginFailure::MissingExport(PREDICT)))?;
        self.run("predict", |store, instance| {
            let guest = idx.load(&mut *store, instance)?;
            let params = push_named(store, model_params(params))?;
            let x = store.data_mut().push(x.clone())?;
            let out = guest.call_predict(&mut *store, config, &params, x)?;
            take_output(store, out)
        })
    }
}

/// Calls driven by an async executor. Each runs in a fresh instance with the
/// same limits as its synchronous twin, but the guest runs on a fiber and
/// yields at every epoch tick, so an async worker thread can run it inline
/// without a slow or looping plugin stalling the worker's other tasks. WASI
/// is bound asynchronously here, so these must be polled inside a tokio
/// runtime.
impl Plugin {
    /// `preprocess.transform` in a fresh instance in `store`, which may hold
    /// the finished instances of the same request's earlier calls (one store
    /// per request instead of one per call; each call still gets its own
    /// instance, memory and deadline).
    pub(crate) async fn transform_in(
        &self,
        store: &mut Store<Ctx>,
        config: &str,
        state: &NamedTensors,
        x: &Tensor,
    ) -> Result<Tensor> {
        let idx = self
            .preprocess_async
            .as_ref()
            .ok_or_else(|| self.fail("transform", PluginFailure::MissingExport(PREPROCESS)))?;
        self.call_in(
            store,
            "transform",
            state,
            x,
            async |store, instance, state, x| {
                let guest = idx.load(&mut *store, instance)?;
                guest.call_transform(store, config, &state, x).await
            },
        )
        .await
    }

    /// `predict.predict` in a fresh instance in `store` (see
    /// [`Plugin::transform_in`]).
    pub(crate) async fn predict_in(
        &self,
        store: &mut Store<Ctx>,
        config: &str,
        params: &NamedTensors,
        x: &Tensor,
    ) -> Result<Tensor> {
        let idx = self
            .predict_async
            .as_ref()
            .ok_or_else(|| self.fail("predict", PluginFailure::MissingExport(PREDICT)))?;
        self.call_in(
            store,
            "predict",
            model_params(params),
            x,
            async |store, instance, params, x| {
                let guest = idx.load(&mut *store, instance)?;
                guest.call_predict(store, config, &params, x).await
            },
        )
        .await
    }

    /// One async call in a fresh instance in `store`: arms the deadline, hands
    /// `named` and `x` to the instance's table, lets `guest` make the call,
    /// and takes out the tensor it returned.
    async fn call_in<'a>(
        &self,
        store: &mut Store<Ctx>,
        call: &'static str,
        named: impl IntoIterator<Item = &'a (String, Tensor)>,
        x: &Tensor,
        guest: impl AsyncFnOnce(
            &mut Store<Ctx>,
            &Instance,
            Vec<NamedTensor>,
            Resource<Tensor>,
        )
            -> wasmtime::Result<std::result::Result<Resource<Tensor>, String>>,
    ) -> Result<Tensor> {
        self.arm_async(store);
        let outcome = async {
            let instance = self.instantiate_async(store).await?;
            let named = push_named(store, named)?;
            let x = store.data_mut().push(x.clone())?;
            let out = guest(store, &instance, named, x).await?;
            take_output(store, out)
        }
        .await;
        self.finish(call, outcome, store)
    }
}

/// A tensor a plugin returned, taken out of its table, or its error.
fn take_output(
    store: &mut Store<Ctx>,
    out: Result<Resource<Tensor>, String>,
) -> wasmtime::Result<Result<Tensor, PluginFailure>> {
    Ok(match out {
        Ok(t) => Ok(store.data_mut().take(t)?),
        Err(e) => Err(PluginFailure::Error(e)),
    })
}

fn push_named<'a>(
    store: &mut Store<Ctx>,
    named: impl IntoIterator<Item = &'a (String, Tensor)>,
) -> wasmtime::Result<Vec<NamedTensor>> {
    named
        .into_iter()
        .map(|(name, t)| {
            Ok(NamedTensor {
                name: name.clone(),
                value: store.data_mut().push(t.clone())?,
            })
        })
        .collect()
}

fn take_named(store: &mut Store<Ctx>, named: Vec<NamedTensor>) -> wasmtime::Result<NamedTensors> {
    named
        .into_iter()
        .map(|n| Ok((n.name, store.data_mut().take(n.value)?)))
        .collect()
}

/// Names what stopped a call.
fn classify(e: &wasmtime::Error, store: &mut Store<Ctx>, limits: &Limits) -> PluginFailure {
    if let Some(HostTensorLimit(n)) = e.downcast_ref::<HostTensorLimit>() {
        return PluginFailure::HostTensorMemory(*n);
    }
    let trap = e.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::Interrupt) => return PluginFailure::Deadline(limits.deadline),
        Some(Trap::StackOverflow) => return PluginFailure::Stack(limits.max_wasm_stack_bytes),
        _ => {}
    }
    if store.data_mut().limiter().refused {
        return PluginFailure::Memory(limits.max_memory_bytes);
    }
    let message = match trap {
        Some(t) => t.to_string(),
        None => format!("{e:#}"),
    };
    PluginFailure::Trap {
        message,
        stderr: store.data().stderr(),
    }
}
