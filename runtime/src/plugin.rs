//! A loaded plugin and the typed calls into it. Every call runs in a fresh
//! instance from the plugin's `InstancePre`, with its own memory, deadline and
//! memory cap, so nothing a call does outlives it. A call has its own store,
//! except that a served request's transform and predict share one (two fresh
//! instances in one store, which costs less to set up than two stores).
//!
//! A component exports the plugin interfaces of ABI 0.2 or of ABI 0.1
//! (`wit/v0.1.0/`). Their functions have the same shapes in both versions
//! (only `data-spec` differs), so each call looks its function up by name in
//! the version the component was built for and calls it through one typed
//! signature; the `tensor` resource of both versions is the host's [`Var`].
//!
//! A `model` plugin (ABI 0.2, `forward`) is trained by the host:
//! [`Plugin::learn`] runs `forward` in training mode with the parameters
//! watched, computes the loss on the call's tape, differentiates it and
//! applies the optimizer, all before the call's store (and tape) is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tensorlet_gpu::autodiff::Var;
use tensorlet_gpu::{Device, DeviceError, Tensor};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, Instance, InstancePre, Lift, Lower, Resource,
};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_nn::Graph;

use crate::Limits;
use crate::budget::{MemoryBudget, OverBudget};
use crate::error::{PluginFailure, Result, RuntimeError};
use crate::host::{Ctx, Handle, HostTensorLimit};
pub use tensorlet_formats::task::{HostTraining, Task};

/// State shared by a runtime and the plugins it loaded.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) device: Device,
    /// The shared budgets of host tensor memory its calls charge: the
    /// process's first, then (when served) the model's share.
    pub(crate) budgets: Arc<[Arc<MemoryBudget>]>,
}

/// What a served model's calls get instead of the runtime's: its own
/// deadline, its own share of the process's host-tensor budget.
#[derive(Clone, Debug, Default)]
pub struct CallLimits {
    /// The deadline of each call.
    pub deadline: Option<std::time::Duration>,
    /// A budget charged besides the process's.
    pub budget: Option<Arc<MemoryBudget>>,
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

/// The name prefix of a model's non-trained state (`batch-norm`'s running
/// statistics): passed to `forward` and `predict` like parameters, never
/// watched or optimized; a training step keeps what `batch-norm` updated.
pub(crate) const STATE_PREFIX: &str = "state.";

/// Replaces the entries of `params` named in `kept` (state a call updated).
fn apply_kept(params: &mut NamedTensors, kept: Vec<(String, Tensor)>) {
    for (name, value) in kept {
        if let Some(entry) = params.iter_mut().find(|(n, _)| *n == name) {
            entry.1 = value;
        }
    }
}

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
    /// Classification: the number of classes; regression: of targets.
    pub outputs: u32,
    /// What the labels are.
    pub task: Task,
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
    /// The global L2 norm of the gradients (before clipping), when the host
    /// computed them (a `model` plugin).
    pub grad_norm: Option<f32>,
}

/// The plugin ABI a component was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// `tensorlet:ml@0.1.0`: preprocessor, trainer, predictor, learner.
    V0_1,
    /// `tensorlet:ml@0.2.0`: adds gradients and the `model` world.
    V0_2,
}

impl Abi {
    /// The WIT package version.
    pub fn version(self) -> &'static str {
        match self {
            Abi::V0_1 => "0.1.0",
            Abi::V0_2 => "0.2.0",
        }
    }
}

/// Whether `forward` runs for training or for prediction (WIT `forward.mode`).
#[derive(ComponentType, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum Mode {
    /// Training: parameters watched, the loss differentiated.
    #[component(name = "train")]
    Train,
    /// Prediction.
    #[component(name = "eval")]
    Eval,
}

/// WIT `named-tensor` (both ABI versions).
#[derive(ComponentType, Lift, Lower)]
#[component(record)]
struct NamedTensor {
    name: String,
    value: Resource<Var>,
}

/// WIT `types.data-spec` of ABI 0.1.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct DataSpecV01 {
    features: u32,
    classes: u32,
    seed: u64,
}

/// WIT `types.task` of ABI 0.2.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum WitTask {
    #[component(name = "classification")]
    Classification,
    #[component(name = "regression")]
    Regression,
}

/// WIT `types.data-spec` of ABI 0.2.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct DataSpecV02 {
    features: u32,
    outputs: u32,
    task: WitTask,
    seed: u64,
}

/// WIT `types.step-output` (both ABI versions).
#[derive(ComponentType, Lift)]
#[component(record)]
struct WitStepOutput {
    params: Vec<NamedTensor>,
    loss: f32,
}

type TensorOut = (std::result::Result<Handle, String>,);
type NamedOut = (std::result::Result<Vec<NamedTensor>, String>,);

/// The plugin functions a component exports, found once at load.
#[derive(Clone, Debug)]
struct Exports {
    abi: Abi,
    fit: Option<ComponentExportIndex>,
    transform: Option<ComponentExportIndex>,
    accumulate: Option<ComponentExportIndex>,
    finish: Option<ComponentExportIndex>,
    init: Option<ComponentExportIndex>,
    step: Option<ComponentExportIndex>,
    predict: Option<ComponentExportIndex>,
    model_init: Option<ComponentExportIndex>,
    forward: Option<ComponentExportIndex>,
}

impl Exports {
    /// The functions of the newest ABI version the component exports anything of.
    fn find(component: &Component) -> Exports {
        let of = |abi: Abi| {
            let func = |iface: &str, name: &str| {
                let i = component
                    .get_export_index(None, format!("tensorlet:ml/{iface}@{}", abi.version()))?;
                component.get_export_index(Some(&i), name)
            };
            Exports {
                abi,
                fit: func("preprocess", "fit"),
                transform: func("preprocess", "transform"),
                accumulate: func("preprocess-stream", "accumulate"),
                finish: func("preprocess-stream", "finish"),
                init: func("train", "init"),
                step: func("train", "step"),
                predict: func("predict", "predict"),
                model_init: func("forward", "init"),
                forward: func("forward", "forward"),
            }
        };
        let v2 = of(Abi::V0_2);
        if v2.any() { v2 } else { of(Abi::V0_1) }
    }

    fn any(&self) -> bool {
        [
            &self.fit,
            &self.transform,
            &self.init,
            &self.step,
            &self.predict,
            &self.model_init,
            &self.forward,
        ]
        .iter()
        .any(|f| f.is_some())
    }
}

/// A compiled, linked plugin. Cheap to share; calls take `&self`.
pub struct Plugin {
    shared: Arc<Shared>,
    name: String,
    digest: String,
    pre: InstancePre<Ctx>,
    exports: Exports,
    /// The same component linked with async WASI, for the `*_in` calls.
    pre_async: InstancePre<Ctx>,
    graphs: Arc<[(String, Graph)]>,
}

/// The interfaces a plugin may export, for messages.
const INTERFACES: &str = "tensorlet:ml/preprocess, train, predict or forward (ABI 0.2.0), or \
                          tensorlet:ml/preprocess, train or predict (ABI 0.1.0)";

impl Plugin {
    pub(crate) fn new(
        shared: Arc<Shared>,
        name: &str,
        digest: String,
        pre: InstancePre<Ctx>,
        pre_async: InstancePre<Ctx>,
    ) -> Result<Self> {
        let exports = Exports::find(pre.component());
        if !exports.any() {
            return Err(RuntimeError::Load {
                plugin: name.to_string(),
                message: format!(
                    "it exports none of {INTERFACES}; build it for one of the worlds \
                     preprocessor, trainer, predictor, learner or model"
                ),
            });
        }
        if exports.model_init.is_some() != exports.forward.is_some() {
            return Err(RuntimeError::Load {
                plugin: name.to_string(),
                message: "it exports tensorlet:ml/forward without both `init` and `forward`"
                    .to_string(),
            });
        }
        Ok(Plugin {
            exports,
            graphs: Arc::new([]),
            shared,
            name: name.to_string(),
            digest,
            pre,
            pre_async,
        })
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

    /// The ABI version the component was built for.
    pub fn abi(&self) -> Abi {
        self.exports.abi
    }

    /// Whether the plugin exports `tensorlet:ml/preprocess`.
    pub fn is_preprocessor(&self) -> bool {
        self.exports.fit.is_some() && self.exports.transform.is_some()
    }

    /// Whether the preprocessor can fit in chunks: it exports
    /// `tensorlet:ml/preprocess-stream`.
    pub fn fits_in_chunks(&self) -> bool {
        self.exports.accumulate.is_some() && self.exports.finish.is_some()
    }

    /// Whether the plugin can train: it exports `tensorlet:ml/train`, or it
    /// is a `model` (the host trains it).
    pub fn is_trainer(&self) -> bool {
        (self.exports.init.is_some() && self.exports.step.is_some()) || self.is_model()
    }

    /// Whether the plugin can predict: it exports `tensorlet:ml/predict`, or
    /// it is a `model` (softmax of its `eval` outputs).
    pub fn is_predictor(&self) -> bool {
        self.exports.predict.is_some() || self.is_model()
    }

    /// Whether the plugin is a `model` (ABI 0.2 `forward`): only its forward
    /// pass, trained by the host.
    pub fn is_model(&self) -> bool {
        self.exports.forward.is_some()
    }

    fn fail(&self, call: &'static str, failure: PluginFailure) -> RuntimeError {
        RuntimeError::Plugin {
            plugin: self.name.clone(),
            call,
            failure,
        }
    }

    fn export(
        &self,
        call: &'static str,
        f: Option<&ComponentExportIndex>,
        iface: &str,
    ) -> Result<ComponentExportIndex> {
        f.cloned().ok_or_else(|| {
            self.fail(
                call,
                PluginFailure::MissingExport(format!(
                    "tensorlet:ml/{iface}@{}",
                    self.exports.abi.version()
                )),
            )
        })
    }

    /// The process's budget of host tensor memory its calls charge.
    pub fn process_budget(&self) -> Arc<MemoryBudget> {
        self.shared.budgets[0].clone()
    }

    /// This plugin with the limits of `call` instead of the runtime's (the
    /// others stay the runtime's).
    pub fn with_call_limits(&self, call: &CallLimits) -> Plugin {
        let mut budgets = self.shared.budgets.to_vec();
        budgets.extend(call.budget.clone());
        let shared = Arc::new(Shared {
            engine: self.shared.engine.clone(),
            limits: Limits {
                deadline: call.deadline.unwrap_or(self.shared.limits.deadline),
                ..self.shared.limits.clone()
            },
            device: self.shared.device.clone(),
            budgets: budgets.into(),
        });
        Plugin {
            shared,
            name: self.name.clone(),
            digest: self.digest.clone(),
            pre: self.pre.clone(),
            exports: self.exports.clone(),
            pre_async: self.pre_async.clone(),
            graphs: self.graphs.clone(),
        }
    }

    /// A fresh store with the sandbox's memory cap (the caller sets the
    /// deadline).
    pub(crate) fn store(&self) -> Store<Ctx> {
        let limits = &self.shared.limits;
        let mut store = Store::new(
            &self.shared.engine,
            Ctx::new(
                self.shared.device.clone(),
                limits,
                self.shared.budgets.clone(),
                self.graphs.clone(),
            ),
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
            Err(e) => match e.downcast_ref::<DeviceError>() {
                // The device failed under the call: not the plugin's doing.
                Some(d) => Err(RuntimeError::Device(d.clone())),
                None => Err(self.fail(call, classify(&e, store, &self.shared.limits))),
            },
        }
    }

    /// Creates a fresh store and instance exactly as every call does, and
    /// drops them: what a request pays for isolation (benchmarks measure it).
    pub fn instantiate_once(&self) -> Result<()> {
        self.run("instantiate", |_, _| Ok(Ok(())))
    }

    /// `preprocess.fit`.
    pub fn fit(&self, config: &str, x: &Tensor) -> Result<NamedTensors> {
        let idx = self.export("fit", self.exports.fit.as_ref(), "preprocess")?;
        self.run("fit", |store, instance| {
            let f = instance.get_typed_func::<(&str, Handle), NamedOut>(&mut *store, &idx)?;
            let x = store.data_mut().push(x.clone())?;
            let (out,) = f.call(&mut *store, (config, x))?;
            take_named_output(store, out)
        })
    }

    /// `preprocess-stream.accumulate`: folds chunk `x` into `partial`.
    pub fn accumulate(
        &self,
        config: &str,
        partial: &NamedTensors,
        x: &Tensor,
    ) -> Result<NamedTensors> {
        let idx = self.export(
            "accumulate",
            self.exports.accumulate.as_ref(),
            "preprocess-stream",
        )?;
        self.run("accumulate", |store, instance| {
            let f = instance
                .get_typed_func::<(&str, Vec<NamedTensor>, Handle), NamedOut>(&mut *store, &idx)?;
            let partial = push_named(store, partial)?;
            let x = store.data_mut().push(x.clone())?;
            let (out,) = f.call(&mut *store, (config, partial, x))?;
            take_named_output(store, out)
        })
    }

    /// `preprocess-stream.finish`: the fitted state from a partial one.
    pub fn finish_fit(&self, config: &str, partial: &NamedTensors) -> Result<NamedTensors> {
        let idx = self.export("finish", self.exports.finish.as_ref(), "preprocess-stream")?;
        self.run("finish", |store, instance| {
            let f =
                instance.get_typed_func::<(&str, Vec<NamedTensor>), NamedOut>(&mut *store, &idx)?;
            let partial = push_named(store, partial)?;
            let (out,) = f.call(&mut *store, (config, partial))?;
            take_named_output(store, out)
        })
    }

    /// `preprocess.transform`.
    pub fn transform(&self, config: &str, state: &NamedTensors, x: &Tensor) -> Result<Tensor> {
        let idx = self.export("transform", self.exports.transform.as_ref(), "preprocess")?;
        self.run("transform", |store, instance| {
            let f = instance
                .get_typed_func::<(&str, Vec<NamedTensor>, Handle), TensorOut>(&mut *store, &idx)?;
            let state = push_named(store, state)?;
            let x = store.data_mut().push(x.clone())?;
            let (out,) = f.call(&mut *store, (config, state, x))?;
            take_output(store, out)
        })
    }

    /// Initial parameters: `train.init`, or for a `model`, `forward.init`
    /// (the host adds the optimizer's state; see [`Plugin::learn`]).
    pub fn init(&self, config: &str, spec: DataSpec) -> Result<NamedTensors> {
        let (idx, iface) = match &self.exports.model_init {
            Some(i) => (*i, "forward"),
            None => (
                self.export("init", self.exports.init.as_ref(), "train")?,
                "train",
            ),
        };
        let abi = self.exports.abi;
        let params = self.run("init", |store, instance| {
            let (out,) = match abi {
                Abi::V0_1 => {
                    let f = instance
                        .get_typed_func::<(&str, DataSpecV01), NamedOut>(&mut *store, &idx)?;
                    let spec = DataSpecV01 {
                        features: spec.features,
                        classes: spec.outputs,
                        seed: spec.seed,
                    };
                    f.call(&mut *store, (config, spec))?
                }
                Abi::V0_2 => {
                    let f = instance
                        .get_typed_func::<(&str, DataSpecV02), NamedOut>(&mut *store, &idx)?;
                    let spec = DataSpecV02 {
                        features: spec.features,
                        outputs: spec.outputs,
                        task: match spec.task {
                            Task::Classification => WitTask::Classification,
                            Task::Regression => WitTask::Regression,
                        },
                        seed: spec.seed,
                    };
                    f.call(&mut *store, (config, spec))?
                }
            };
            take_named_output(store, out)
        })?;
        if iface == "forward"
            && let Some((name, _)) = params.iter().find(|(n, _)| n.starts_with(OPTIMIZER_PREFIX))
        {
            return Err(self.fail(
                "init",
                PluginFailure::BadOutput(format!(
                    "returned a parameter named `{name}`; names starting with \
                     `{OPTIMIZER_PREFIX}` belong to the host's optimizer state"
                )),
            ));
        }
        Ok(params)
    }

    /// `train.step`: the plugin's own update. The parameters (not the
    /// optimizer state) are watched, so the plugin may ask for their
    /// gradients.
    pub fn step(
        &self,
        config: &str,
        params: &NamedTensors,
        x: &Tensor,
        y: &Tensor,
        step: u64,
    ) -> Result<StepOutput> {
        let idx = self.export("step", self.exports.step.as_ref(), "train")?;
        let watch = self.exports.abi == Abi::V0_2;
        self.run("step", |store, instance| {
            let f = instance.get_typed_func::<
                (&str, Vec<NamedTensor>, Handle, Handle, u64),
                (std::result::Result<WitStepOutput, String>,),
            >(&mut *store, &idx)?;
            let params = if watch {
                match push_watched(store, params)? {
                    Ok(p) => p,
                    Err(failure) => return Ok(Err(failure)),
                }
            } else {
                push_named(store, params)?
            };
            let x = store.data_mut().push(x.clone())?;
            let y = store.data_mut().push(y.clone())?;
            store.data_mut().training_step(step);
            match f.call(&mut *store, (config, params, x, y, step))?.0 {
                Ok(out) => {
                    let mut params = take_named(store, out.params)?;
                    let kept = store.data_mut().take_kept();
                    apply_kept(&mut params, kept);
                    Ok(Ok(StepOutput {
                        params,
                        loss: out.loss,
                        grad_norm: None,
                    }))
                }
                Err(e) => Ok(Err(PluginFailure::Error(e))),
            }
        })
    }

    /// One host-driven training step of a `model` plugin: `forward` in
    /// training mode with the model's parameters watched, the mean
    /// cross-entropy of its outputs against the class indices `y`, its
    /// gradients, and the optimizer's update at `step` (0-based, across the
    /// run). `params` holds the model's parameters and the optimizer's
    /// `opt.*` state; the result holds both, updated, in the same order.
    pub fn learn(
        &self,
        config: &str,
        params: &NamedTensors,
        x: &Tensor,
        y: &Tensor,
        step: u64,
        training: &HostTraining,
    ) -> Result<StepOutput> {
        let idx = self.export("forward", self.exports.forward.as_ref(), "forward")?;
        let (model, state): (NamedTensors, NamedTensors) = params
            .iter()
            .cloned()
            .partition(|(n, _)| !n.starts_with(OPTIMIZER_PREFIX));
        let (mut buffers, trained): (NamedTensors, NamedTensors) = model
            .iter()
            .cloned()
            .partition(|(n, _)| n.starts_with(STATE_PREFIX));
        self.run("forward", |store, instance| {
            let f = instance.get_typed_func::<(&str, Vec<NamedTensor>, Handle, Mode), TensorOut>(
                &mut *store,
                &idx,
            )?;
            let named = match push_watched(store, &model)? {
                Ok(n) => n,
                Err(failure) => return Ok(Err(failure)),
            };
            let xh = store.data_mut().push(x.clone())?;
            store.data_mut().training_step(step);
            let (out,) = f.call(&mut *store, (config, named, xh, Mode::Train))?;
            let logits = match out {
                Ok(h) => store.data_mut().take(h)?,
                Err(e) => return Ok(Err(PluginFailure::Error(e))),
            };
            let rows = x.shape().dims()[0];
            let (want, loss_of) = match training.task {
                Task::Classification => ("classes", "cross-entropy"),
                Task::Regression => ("targets", "mean squared error"),
            };
            let shape_ok = match training.task {
                Task::Classification => logits.value().shape().rank() == 2,
                Task::Regression => logits.value().shape() == y.shape(),
            };
            if !shape_ok || logits.value().shape().dims()[0] != rows {
                return Ok(Err(PluginFailure::BadOutput(format!(
                    "forward returned shape {} for {rows} rows; expected [{rows}, {want}] for \
                     the {loss_of} the host computes",
                    logits.value().shape()
                ))));
            }
            let ctx = store.data_mut();
            let ctx_kept = ctx.take_kept();
            let tape = ctx.tape();
            let loss = match training.task {
                Task::Classification => tape.cross_entropy(&logits, y),
                Task::Regression => tape.mse_loss(
                    &logits,
                    &Var::constant(y.clone()),
                    tensorlet_gpu::autodiff::Reduction::Mean,
                ),
            };
            let loss = match loss {
                Ok(l) => l,
                Err(e) => {
                    // Reading the labels can find the device failed.
                    if let Some(d) = e.device_error() {
                        return Err(wasmtime::Error::new(d.clone()));
                    }
                    return Ok(Err(PluginFailure::BadOutput(format!(
                        "forward's outputs: {e}"
                    ))));
                }
            };
            let names: Vec<&str> = trained.iter().map(|(n, _)| n.as_str()).collect();
            let grads = match tape.grad(&loss, &names) {
                Ok(g) => g,
                // The host differentiates here, not the plugin: what it cannot
                // differentiate is wrong with the model's outputs or params
                // (unless the device failed while reading indices).
                Err(e) => {
                    if let Some(d) = e.device_error() {
                        return Err(wasmtime::Error::new(d.clone()));
                    }
                    return Ok(Err(PluginFailure::BadOutput(format!(
                        "{e} (the host differentiates the loss of forward's outputs with \
                         respect to every parameter init returned)"
                    ))));
                }
            };
            let device = tape.device().clone();
            let lr = training.schedule.lr(step);
            let update = match training
                .optimizer
                .step(&device, lr, step, &trained, &grads, &state)
            {
                Ok(u) => u,
                Err(e) => {
                    if let Some(d) = e.device_error() {
                        return Err(wasmtime::Error::new(d.clone()));
                    }
                    return Ok(Err(PluginFailure::Error(format!("optimizer: {e}"))));
                }
            };
            let loss = device.to_vec(loss.value())?[0];
            let grad_norm = device.to_vec(&update.grad_norm)?[0];
            let mut params = update.params;
            apply_kept(&mut buffers, ctx_kept);
            params.extend(buffers);
            params.extend(update.state);
            Ok(Ok(StepOutput {
                params,
                loss,
                grad_norm: Some(grad_norm),
            }))
        })
    }

    /// Class probabilities: `predict.predict`, or for a `model`, the softmax
    /// of `forward` in `eval` mode.
    pub fn predict(&self, config: &str, params: &NamedTensors, x: &Tensor) -> Result<Tensor> {
        self.predict_as(config, params, x, Task::Classification)
    }

    /// [`Plugin::predict`] for `task`: for regression, a `model`'s
    /// predictions are `forward`'s outputs as they are.
    pub fn predict_as(
        &self,
        config: &str,
        params: &NamedTensors,
        x: &Tensor,
        task: Task,
    ) -> Result<Tensor> {
        if let Some(idx) = &self.exports.forward {
            let out = self.run("forward", |store, instance| {
                let f = instance
                    .get_typed_func::<(&str, Vec<NamedTensor>, Handle, Mode), TensorOut>(
                        &mut *store,
                        idx,
                    )?;
                let params = push_named(store, model_params(params))?;
                let x = store.data_mut().push(x.clone())?;
                let (out,) = f.call(&mut *store, (config, params, x, Mode::Eval))?;
                take_output(store, out)
            })?;
            return self.probabilities(out, task);
        }
        let idx = self.export("predict", self.exports.predict.as_ref(), "predict")?;
        self.run("predict", |store, instance| {
            let f = instance
                .get_typed_func::<(&str, Vec<NamedTensor>, Handle), TensorOut>(&mut *store, &idx)?;
            let params = push_named(store, model_params(params))?;
            let x = store.data_mut().push(x.clone())?;
            let (out,) = f.call(&mut *store, (config, params, x))?;
            take_output(store, out)
        })
    }

    /// The softmax over classes of a `model`'s `eval` outputs (regression:
    /// the outputs).
    fn probabilities(&self, logits: Tensor, task: Task) -> Result<Tensor> {
        if logits.shape().rank() != 2 {
            return Err(self.fail(
                "forward",
                PluginFailure::BadOutput(format!(
                    "forward returned shape {}; expected [rows, classes]",
                    logits.shape()
                )),
            ));
        }
        match task {
            Task::Classification => Ok(self.shared.device.softmax(&logits, 1, false)?),
            Task::Regression => Ok(logits),
        }
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
        let idx = self.export("transform", self.exports.transform.as_ref(), "preprocess")?;
        self.call_in(
            store,
            "transform",
            state,
            x,
            async |store, instance, state, x| {
                let f = instance.get_typed_func::<(&str, Vec<NamedTensor>, Handle), TensorOut>(
                    &mut *store,
                    &idx,
                )?;
                Ok(f.call_async(store, (config, state, x)).await?.0)
            },
        )
        .await
    }

    /// Class probabilities in a fresh instance in `store` (see
    /// [`Plugin::transform_in`]): `predict.predict`, or a `model`'s softmax.
    pub(crate) async fn predict_in(
        &self,
        store: &mut Store<Ctx>,
        config: &str,
        params: &NamedTensors,
        x: &Tensor,
        task: Task,
    ) -> Result<Tensor> {
        if let Some(idx) = &self.exports.forward {
            let out = self
                .call_in(
                    store,
                    "forward",
                    model_params(params),
                    x,
                    async |store, instance, params, x| {
                        let f = instance
                            .get_typed_func::<(&str, Vec<NamedTensor>, Handle, Mode), TensorOut>(
                                &mut *store,
                                idx,
                            )?;
                        Ok(f.call_async(store, (config, params, x, Mode::Eval))
                            .await?
                            .0)
                    },
                )
                .await?;
            return self.probabilities(out, task);
        }
        let idx = self.export("predict", self.exports.predict.as_ref(), "predict")?;
        self.call_in(
            store,
            "predict",
            model_params(params),
            x,
            async |store, instance, params, x| {
                let f = instance.get_typed_func::<(&str, Vec<NamedTensor>, Handle), TensorOut>(
                    &mut *store,
                    &idx,
                )?;
                Ok(f.call_async(store, (config, params, x)).await?.0)
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
            Handle,
        ) -> wasmtime::Result<std::result::Result<Handle, String>>,
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
    out: std::result::Result<Handle, String>,
) -> wasmtime::Result<Result<Tensor, PluginFailure>> {
    Ok(match out {
        Ok(t) => Ok(store.data_mut().take(t)?.into_value()),
        Err(e) => Err(PluginFailure::Error(e)),
    })
}

/// Named tensors a plugin returned, taken out of its table, or its error.
fn take_named_output(
    store: &mut Store<Ctx>,
    out: std::result::Result<Vec<NamedTensor>, String>,
) -> wasmtime::Result<Result<NamedTensors, PluginFailure>> {
    Ok(match out {
        Ok(named) => Ok(take_named(store, named)?),
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

/// Like [`push_named`], with each model parameter (not the `opt.*` or
/// `state.*` entries) watched on the call's tape under its name.
fn push_watched(
    store: &mut Store<Ctx>,
    named: &NamedTensors,
) -> wasmtime::Result<Result<Vec<NamedTensor>, PluginFailure>> {
    let mut out = Vec::with_capacity(named.len());
    for (name, t) in named {
        let ctx = store.data_mut();
        let value = if name.starts_with(OPTIMIZER_PREFIX) {
            ctx.push(t.clone())?
        } else if name.starts_with(STATE_PREFIX) {
            ctx.push_state(name, t.clone())?
        } else {
            match ctx.tape().leaf(name, t.clone()) {
                Ok(v) => ctx.push_var(v)?,
                Err(_) => {
                    return Ok(Err(PluginFailure::BadOutput(format!(
                        "has two parameters named `{name}`"
                    ))));
                }
            }
        };
        out.push(NamedTensor {
            name: name.clone(),
            value,
        });
    }
    Ok(Ok(out))
}

fn take_named(store: &mut Store<Ctx>, named: Vec<NamedTensor>) -> wasmtime::Result<NamedTensors> {
    named
        .into_iter()
        .map(|n| Ok((n.name, store.data_mut().take(n.value)?.into_value())))
        .collect()
}

/// Names what stopped a call.
fn classify(e: &wasmtime::Error, store: &mut Store<Ctx>, limits: &Limits) -> PluginFailure {
    if let Some(HostTensorLimit(n)) = e.downcast_ref::<HostTensorLimit>() {
        return PluginFailure::HostTensorMemory(*n);
    }
    if let Some(over) = e.downcast_ref::<OverBudget>() {
        return PluginFailure::OverBudget(over.clone());
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
