//! Serving models over HTTP in the Open Inference Protocol (KServe V2).
//!
//! [`Server`] holds the deployed model versions in an atomically swapped map:
//! a deploy loads and warms the new version first, then swaps it in; requests
//! already running keep their `Arc` to the old one and finish on it. Each
//! request runs the model's preprocessor and predictor in fresh instances,
//! under the runtime's deadline and memory cap, so a plugin that traps or
//! loops fails only that request: on the CPU inline on the async worker
//! ([`Model::predict_async`], fibers that yield at every epoch tick), on a GPU
//! on the blocking pool ([`Model::predict`]). [`batch`] sends the responses.
//! [`app`] is the public router, [`admin_app`] the deploy endpoint meant for
//! loopback, [`run`] serves both with graceful shutdown; [`plan`] chooses
//! what `tensorlet serve` serves.
//!
//! A GPU that fails (lost, out of memory, work rejected; see
//! [`tensorlet_gpu::DeviceError`]) fails the requests that were using it with
//! 503 and a message naming the device, and turns readiness off. After
//! [`ServeConfig::reopen_delay`] the server recreates the device context on
//! the same adapter ([`Device::recover`]), uploads every deployed model's
//! tensors to it again ([`Model::rebind`]), warms each model with one row,
//! and turns readiness back on; until then requests get 503 with
//! `Retry-After`, and an attempt that fails (the adapter is gone) is retried
//! with backoff up to every 30 s.
//! It does not fall back to the CPU: an operator who asked for the GPU sized
//! the deployment for its speed, and a replica that is not ready is taken out
//! of rotation by its load balancer, where one silently many times slower
//! would take its full share of traffic and time it out (restart it with
//! `--device cpu` to serve on the CPU on purpose).
//!
//! Routes: `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`,
//! `GET /v2/models`, `GET /v2/models/{m}[/versions/{v}]`,
//! `GET /v2/models/{m}[/versions/{v}]/ready`,
//! `POST /v2/models/{m}[/versions/{v}]/infer`, `GET /metrics`.

pub mod batch;
pub mod breaker;
mod coalesce;
pub mod grpc;
pub mod metrics;
pub mod plan;
pub mod registry;
mod repository;

pub use coalesce::parse_batch_delay;
pub use repository::IndexEntry;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, body};
use serde_json::{Value, json};
use tensorlet_gpu::{Device, DeviceError, DeviceKind};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::budget::MemoryBudget;
use crate::model::Model;
use metrics::Metrics;
use oip::{BadRequest, InputSpec};
use tensorlet_oip as oip;

/// Server settings, with their defaults.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Largest request body (default 4 MiB); larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest batch in one request (default 1024 rows); larger gets 400.
    /// With `batch_delay`, also the most rows a coalesced call carries.
    pub max_batch: usize,
    /// Adaptive batching: concurrent requests of one model version are
    /// coalesced into one call, after this delay (zero: one round of the
    /// worker; see `coalesce`). `None` (the default) computes each request
    /// on its own.
    pub batch_delay: Option<Duration>,
    /// Requests computed at once (default 64); more get 503 with `Retry-After`.
    pub max_concurrency: usize,
    /// Requests of one model version computed at once; more get 503 with
    /// `Retry-After` for that model only. Default (`None`): a fair share,
    /// `max_concurrency` divided by the number of models served (at least 1).
    pub model_concurrency: Option<usize>,
    /// When a model whose requests keep failing by its own doing is shed.
    pub breaker: breaker::BreakerConfig,
    /// How long readiness reports 503 before the listener closes on shutdown
    /// (default 0; give load balancers time to notice in production).
    pub drain: Duration,
    /// How often invocation counts are handed to [`ServeEvents::invocations`]
    /// (default 60 s).
    pub events_interval: Duration,
    /// Whether a finished response waits for the other ready requests of
    /// its worker, to be sent back to back with theirs (default on; see
    /// [`batch`]).
    pub batch_writes: bool,
    /// How long after a device failure the server first tries to reopen the
    /// device (default 1 s; doubled after each failed try, up to 30 s): a
    /// GPU that the driver is still resetting refuses to open.
    pub reopen_delay: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: 4 << 20,
            max_batch: 1024,
            batch_delay: None,
            max_concurrency: 64,
            model_concurrency: None,
            breaker: breaker::BreakerConfig::default(),
            drain: Duration::ZERO,
            events_interval: Duration::from_secs(60),
            batch_writes: true,
            reopen_delay: Duration::from_secs(1),
        }
    }
}

/// What a server reports to the outside world (the audit log, the log).
/// Every method has a do-nothing default.
pub trait ServeEvents: Send + Sync {
    /// A model version was deployed.
    fn loaded(&self, _name: &str, _version: &str, _reference: &str) {}
    /// A model version stopped being served.
    fn unloaded(&self, _name: &str, _version: &str, _reference: &str) {}
    /// A deploy failed; the previous version (if any) keeps serving.
    fn deploy_failed(&self, _name: &str, _reference: &str, _error: &str) {}
    /// Invocations since the last report, per (model, version).
    fn invocations(&self, _counts: &[(String, String, u64)]) {}
    /// A model version is shed (its circuit breaker opened), for `reason`.
    fn shed(&self, _name: &str, _version: &str, _reference: &str, _reason: &str) {}
    /// A shed model version serves again (a probe request succeeded).
    fn restored(&self, _name: &str, _version: &str, _reference: &str) {}
}

/// Events that go nowhere.
pub struct NoEvents;

impl ServeEvents for NoEvents {}

/// Loads a model version for the admin deploy endpoint (verification included).
pub trait ModelSource: Send + Sync {
    /// Loads `reference` (a registry reference or a path) as a deployment named `name`.
    fn load(&self, name: &str, reference: &str) -> Result<Deployment, String>;
}

/// Running per-feature mean of served inputs (for drift).
#[derive(Default)]
struct Running {
    /// Values seen per feature (a missing value is not counted).
    n: Vec<u64>,
    sum: Vec<f64>,
}

/// A model version being served.
pub struct Deployment {
    /// The name clients use in URLs.
    pub name: String,
    /// The version clients see.
    pub version: String,
    /// Where it was loaded from (a registry reference or a path).
    pub reference: String,
    /// The model.
    pub model: Model,
    /// Its inputs and outputs in the protocol.
    spec: oip::ModelSpec,
    train_stats: Option<Vec<(f64, f64)>>,
    served: Mutex<Running>,
    /// Per categorical feature column (its index), the served values that
    /// were a category the training data did not have.
    unknown: Vec<(usize, AtomicU64)>,
    invocations: AtomicU64,
    reported: AtomicU64,
    /// Its requests being computed.
    in_flight: AtomicUsize,
    /// Sheds it while its requests keep failing by its doing.
    breaker: breaker::Breaker,
    /// Its share of the process's host-tensor budget.
    budget: Arc<MemoryBudget>,
    /// Its requests waiting for a batch (adaptive batching).
    queue: coalesce::Queue,
}

/// A call's share of the server's capacity, given back when dropped.
struct Capacity<'a> {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _slot: ModelSlot<'a>,
}

/// How a request's prediction went.
enum Outcome {
    Predicted(crate::model::Predictions),
    /// The call failed; `counts` is false for the requests of a batch whose
    /// shared failure counts against the model once.
    Failed {
        error: Arc<crate::RuntimeError>,
        counts: bool,
    },
    /// Refused for lack of capacity or because the model is shed: 503 with
    /// `Retry-After` (seconds), saying why.
    Refused(String, u64),
    /// The task computing it stopped.
    Stopped,
}

/// Predicts `rows` rows of `x` with `d`'s model. On the CPU the plugins run
/// right here, on the async worker: each runs on a wasmtime fiber that yields
/// at every epoch tick, so a slow or looping plugin shares the worker with
/// other requests until its deadline instead of stalling them, and a request
/// pays no thread hand-off (on one pinned core the hand-off to the blocking
/// pool cost more than the two instances). On a GPU the host tensor ops wait
/// for the device, which must not block a worker: the blocking pool runs them.
async fn predict(s: &Arc<Server>, d: &Arc<Deployment>, x: Vec<f32>, rows: usize) -> Outcome {
    let predicted = if s.inline {
        Ok(d.model.predict_async(&s.device, x, rows).await)
    } else {
        let (device, dep) = (s.device.clone(), d.clone());
        tokio::task::spawn_blocking(move || dep.model.predict(&device, x, rows)).await
    };
    match predicted {
        Ok(Ok(p)) => Outcome::Predicted(p),
        Ok(Err(e)) => Outcome::Failed {
            error: Arc::new(e),
            counts: true,
        },
        Err(_) => Outcome::Stopped,
    }
}

/// Decrements a deployment's in-flight count when dropped.
struct ModelSlot<'a>(&'a AtomicUsize);

impl Drop for ModelSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Deployment {
    /// A deployment of `model`, whose plugin calls get the model's own
    /// deadline when it declares one (`[limits] serve_deadline`) and charge
    /// their host tensors to the model's share of the process's budget as
    /// well as to the process's (the server sets the share).
    pub fn new(name: &str, version: &str, reference: &str, model: Model) -> Self {
        let budget = MemoryBudget::new(format!("model `{name}`"), usize::MAX);
        let call = crate::CallLimits {
            deadline: model.serve_deadline(),
            budget: Some(budget.clone()),
        };
        let model = model.with_call_limits(&call);
        let train_stats = model.meta.feature_stats.as_ref().map(|s| {
            s.iter()
                .map(|f| (f64::from(f.mean), f64::from(f.std)))
                .collect()
        });
        let categorical = |name: &String| {
            model.meta.schema.iter().flatten().any(|c| {
                &c.name == name && matches!(c.kind, crate::data::ColumnType::Categorical { .. })
            })
        };
        let unknown = (model.meta.feature_names.iter().enumerate())
            .filter(|(_, n)| categorical(n))
            .map(|(i, _)| (i, AtomicU64::new(0)))
            .collect();
        Deployment {
            name: name.to_string(),
            version: version.to_string(),
            reference: reference.to_string(),
            unknown,
            spec: oip::ModelSpec::from_model_json(
                &serde_json::to_value(&model.meta).unwrap_or_default(),
            ),
            model,
            train_stats,
            served: Mutex::new(Running::default()),
            invocations: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            breaker: breaker::Breaker::new(breaker::BreakerConfig::default()),
            budget,
            queue: coalesce::Queue::default(),
        }
    }

    /// Why it is shed, while its circuit breaker is open.
    pub fn shed_reason(&self) -> Option<String> {
        self.breaker.shed_reason()
    }

    fn features(&self) -> usize {
        self.model.meta.feature_names.len()
    }

    fn observe(&self, x: &[f32]) {
        let f = self.features();
        let mut r = self.served.lock().expect("drift lock");
        if r.sum.len() != f {
            r.sum = vec![0.0; f];
            r.n = vec![0; f];
        }
        let Running { n, sum } = &mut *r;
        for (c, count) in &self.unknown {
            // The request encodes an unknown category as -1.
            let k = x.iter().skip(*c).step_by(f).filter(|v| **v == -1.0).count();
            if k > 0 {
                count.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
        for row in x.chunks(f) {
            for ((s, n), v) in sum.iter_mut().zip(n.iter_mut()).zip(row) {
                if !v.is_nan() {
                    *s += f64::from(*v);
                    *n += 1;
                }
            }
        }
    }

    /// Mean over features of |served mean − training mean| / training std;
    /// `None` before any input or without training statistics.
    pub fn drift(&self) -> Option<f64> {
        let stats = self.train_stats.as_ref()?;
        let r = self.served.lock().expect("drift lock");
        // Features with values served and finite training statistics.
        let shifts: Vec<f64> = stats
            .iter()
            .zip(r.sum.iter().zip(&r.n))
            .filter(|((mean, std), (_, n))| **n > 0 && mean.is_finite() && std.is_finite())
            .map(|((mean, std), (sum, &n))| (sum / n as f64 - mean).abs() / std.max(1e-12))
            .collect();
        if shifts.is_empty() {
            return None;
        }
        Some(shifts.iter().sum::<f64>() / shifts.len() as f64)
    }

    /// Requests this deployment has answered.
    pub fn invocations(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }
}

/// The serving state: deployed models, metrics, capacity.
pub struct Server {
    models: ArcSwap<BTreeMap<String, Arc<Deployment>>>,
    deploy_errors: Mutex<BTreeMap<String, String>>,
    /// Every model name this server has served or tried to, with the
    /// reference it last came from (the repository extension's index, and
    /// what a load by name deploys).
    known: Mutex<BTreeMap<String, String>>,
    deploy_lock: Mutex<()>,
    metrics: Metrics,
    config: ServeConfig,
    permits: Arc<Semaphore>,
    stopping: AtomicBool,
    /// Set from a device failure until the device is recovered and the
    /// models are on it again.
    recovering: AtomicBool,
    /// The failure being recovered from.
    device_failure: Mutex<Option<DeviceError>>,
    device: Device,
    /// Whether predictions run inline on the async workers (the CPU device)
    /// rather than on the blocking pool (a GPU, whose host ops wait on it).
    inline: bool,
    events: Arc<dyn ServeEvents>,
    source: Option<Arc<dyn ModelSource>>,
}

impl Server {
    /// An empty server.
    pub fn new(device: Device, config: ServeConfig, events: Arc<dyn ServeEvents>) -> Self {
        Server {
            models: ArcSwap::from_pointee(BTreeMap::new()),
            deploy_errors: Mutex::new(BTreeMap::new()),
            known: Mutex::new(BTreeMap::new()),
            deploy_lock: Mutex::new(()),
            metrics: Metrics::default(),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config,
            stopping: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            device_failure: Mutex::new(None),
            inline: device.info().kind == DeviceKind::Cpu,
            device,
            events,
            source: None,
        }
    }

    /// Lets the admin endpoint load models from `source`.
    pub fn with_source(mut self, source: Arc<dyn ModelSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Served (name, version) pairs.
    pub fn deployed(&self) -> Vec<(String, String)> {
        self.models
            .load()
            .values()
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect()
    }

    /// The deployment serving `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Deployment>> {
        self.models.load().get(name).cloned()
    }

    /// Warms `d` with a one-row prediction, then swaps it in atomically. On
    /// failure the previous version keeps serving and the error is kept for
    /// the model's ready endpoint. Blocking: call off the async runtime.
    pub fn deploy(&self, mut d: Deployment) -> Result<(), String> {
        let _one_at_a_time = self.deploy_lock.lock().expect("deploy lock");
        d.breaker = breaker::Breaker::new(self.config.breaker);
        let warm = vec![0.0f32; d.features()];
        if let Err(e) = d.model.predict(&self.device, warm, 1) {
            let msg = format!("warm-up of {} failed: {e}", d.reference);
            self.record_failure(&d.name, &d.reference, &msg);
            return Err(msg);
        }
        let d = Arc::new(d);
        let mut next = (**self.models.load()).clone();
        let old = next.insert(d.name.clone(), d.clone());
        share_memory(&next);
        self.models.store(Arc::new(next));
        self.deploy_errors
            .lock()
            .expect("errors lock")
            .remove(&d.name);
        self.know(&d.name, &d.reference);
        if let Some(old) = old {
            self.report_invocations(&old);
            self.events
                .unloaded(&old.name, &old.version, &old.reference);
        }
        tracing::info!(model = %d.name, version = %d.version, reference = %d.reference, "deployed");
        self.events.loaded(&d.name, &d.version, &d.reference);
        Ok(())
    }

    /// Records a failed deploy (verification or load) of `name`.
    pub fn record_failure(&self, name: &str, reference: &str, error: &str) {
        tracing::error!(model = %name, reference = %reference, "deploy failed: {error}");
        self.deploy_errors
            .lock()
            .expect("errors lock")
            .insert(name.to_string(), error.to_string());
        self.know(name, reference);
        self.events.deploy_failed(name, reference, error);
    }

    fn know(&self, name: &str, reference: &str) {
        self.known
            .lock()
            .expect("known lock")
            .insert(name.to_string(), reference.to_string());
    }

    /// Stops serving `name`; `false` if it was not served.
    pub fn undeploy(&self, name: &str) -> bool {
        let _one_at_a_time = self.deploy_lock.lock().expect("deploy lock");
        let mut next = (**self.models.load()).clone();
        let Some(old) = next.remove(name) else {
            return false;
        };
        share_memory(&next);
        self.models.store(Arc::new(next));
        self.report_invocations(&old);
        self.events
            .unloaded(&old.name, &old.version, &old.reference);
        true
    }

    /// Turns readiness off: the first step of a graceful shutdown.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the server is recovering from a device failure (readiness is
    /// off and requests get 503 meanwhile).
    pub fn recovering(&self) -> bool {
        self.recovering.load(Ordering::SeqCst)
    }

    /// The device failure being recovered from, if any.
    /// Why the server is not ready (shutting down, or a failed device being
    /// reopened); `None` when it is.
    fn unready_reason(self: &Arc<Self>) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        // A probe notices a failure that no request has run into yet.
        if let Err(e) = self.device.check() {
            self.device_failed(&e);
        }
        if self.recovering() {
            return Some(self.device_failure().map_or_else(
                || "the device failed; reopening it".to_string(),
                |e| format!("{e} (reopening the device)"),
            ));
        }
        None
    }

    fn device_failure(&self) -> Option<DeviceError> {
        self.device_failure
            .lock()
            .expect("device failure lock")
            .clone()
    }

    /// Notes that the device failed: turns readiness off and starts the
    /// recovery, once. A failure of a context that was already replaced
    /// (a request that began before the last recovery) starts nothing.
    fn device_failed(self: &Arc<Self>, e: &DeviceError) {
        if self.device.check().is_ok() {
            return;
        }
        if self
            .recovering
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        *self.device_failure.lock().expect("device failure lock") = Some(e.clone());
        self.metrics.device_failed();
        tracing::error!(device = %e.adapter(), "the device failed, reopening it: {e}");
        tokio::spawn(self.clone().recover());
    }

    /// Recovers from a device failure: reopens the device and redeploys the
    /// models on it, retrying with backoff until that works or the server
    /// stops; then turns readiness back on.
    async fn recover(self: Arc<Self>) {
        let mut delay = self.config.reopen_delay;
        loop {
            tokio::time::sleep(delay).await;
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let s = self.clone();
            let next = (delay * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
            match tokio::task::spawn_blocking(move || s.reopen_device()).await {
                Ok(Ok(())) => {
                    *self.device_failure.lock().expect("device failure lock") = None;
                    self.recovering.store(false, Ordering::SeqCst);
                    self.metrics.device_recovered();
                    tracing::info!(device = %self.device.info(), "the device is back, serving again");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!("cannot reopen the device yet, retrying in {next:?}: {e}");
                }
                Err(_) => {
                    tracing::warn!(
                        "the device recovery stopped unexpectedly, retrying in {next:?}"
                    );
                }
            }
            delay = next;
        }
    }

    /// One recovery attempt: a fresh device context, then every deployed
    /// model's tensors uploaded to it and a one-row prediction to warm it.
    /// Blocking; deploys wait for it.
    fn reopen_device(&self) -> Result<(), String> {
        self.device.recover().map_err(|e| e.to_string())?;
        let _one_at_a_time = self.deploy_lock.lock().expect("deploy lock");
        for d in self.models.load().values() {
            d.model
                .rebind(&self.device)
                .map_err(|e| format!("model `{}`: {e}", d.name))?;
            d.model
                .predict(&self.device, vec![0.0; d.features()], 1)
                .map_err(|e| format!("warm-up of model `{}`: {e}", d.name))?;
        }
        self.device.check().map_err(|e| e.to_string())
    }

    /// The 503 for a request while the device is being recovered.
    fn recovering_refusal(&self) -> Option<Response> {
        if !self.recovering() {
            return None;
        }
        let device = self
            .device_failure()
            .map_or_else(|| self.device.info().name, |e| e.adapter().to_string());
        Some(device_unavailable(format!(
            "the GPU device `{device}` failed and the server is reopening it; retry shortly"
        )))
    }

    fn report_invocations(&self, d: &Deployment) {
        let now = d.invocations.load(Ordering::Relaxed);
        let before = d.reported.swap(now, Ordering::Relaxed);
        if now > before {
            self.events
                .invocations(&[(d.name.clone(), d.version.clone(), now - before)]);
        }
    }

    /// Hands invocation counts since the last report to the events sink.
    pub fn flush_invocations(&self) {
        let mut counts = Vec::new();
        for d in self.models.load().values() {
            let now = d.invocations.load(Ordering::Relaxed);
            let before = d.reported.swap(now, Ordering::Relaxed);
            if now > before {
                counts.push((d.name.clone(), d.version.clone(), now - before));
            }
        }
        if !counts.is_empty() {
            self.events.invocations(&counts);
        }
    }

    /// Requests of one model version computed at once.
    fn model_share(&self) -> usize {
        let share = || self.config.max_concurrency / self.models.load().len().max(1);
        self.config.model_concurrency.unwrap_or_else(share).max(1)
    }

    /// A slot among `d`'s share of the capacity, or the share when it is full.
    fn model_slot<'d>(&self, d: &'d Deployment) -> Result<ModelSlot<'d>, usize> {
        let share = self.model_share();
        if d.in_flight.fetch_add(1, Ordering::AcqRel) < share {
            return Ok(ModelSlot(&d.in_flight));
        }
        d.in_flight.fetch_sub(1, Ordering::AcqRel);
        Err(share)
    }

    /// Capacity for one call of `d` (a request, or a batch of them): one of
    /// `--max-concurrency` and one of the model's share; when there is none,
    /// why (to answer 503 with).
    fn admit_call<'d>(&self, d: &'d Deployment) -> Result<Capacity<'d>, String> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err("the server is at capacity; retry shortly".into());
        };
        match self.model_slot(d) {
            Ok(slot) => Ok(Capacity {
                _permit: permit,
                _slot: slot,
            }),
            Err(share) => Err(format!(
                "model `{}` is at its share of the server's capacity ({share} requests at \
                 once); retry shortly",
                d.name
            )),
        }
    }

    /// Reports a change of `d`'s circuit breaker.
    fn breaker_changed(&self, d: &Deployment, change: Option<breaker::Change>) {
        match change {
            Some(breaker::Change::Shed(reason)) => {
                tracing::warn!(model = %d.name, version = %d.version, "model shed: {reason}");
                self.events.shed(&d.name, &d.version, &d.reference, &reason);
            }
            Some(breaker::Change::Restored) => {
                tracing::info!(model = %d.name, version = %d.version, "model serves again");
                self.events.restored(&d.name, &d.version, &d.reference);
            }
            None => {}
        }
    }

    fn find(&self, name: &str, version: Option<&str>) -> Result<Arc<Deployment>, Refusal> {
        let Some(d) = self.get(name) else {
            let served: Vec<String> = self.models.load().keys().cloned().collect();
            return Err(Refusal(
                StatusCode::NOT_FOUND,
                format!(
                    "no model `{name}` is served here; served models: {}",
                    if served.is_empty() {
                        "none".into()
                    } else {
                        served.join(", ")
                    }
                ),
            ));
        };
        match version {
            Some(v) if v != d.version => Err(Refusal(
                StatusCode::NOT_FOUND,
                format!(
                    "model `{name}` has no version `{v}` here; it serves version {}",
                    d.version
                ),
            )),
            _ => Ok(d),
        }
    }
}

/// Gives each served model an equal share of the process's host-tensor
/// budget.
fn share_memory(models: &BTreeMap<String, Arc<Deployment>>) {
    let Some(first) = models.values().next() else {
        return;
    };
    let share = first.model.process_budget().limit() / models.len();
    for d in models.values() {
        d.budget.set_limit(share);
    }
}

/// A refusal to answer, turned into an error response at the edge.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Marks a response refused because the device failed (gRPC answers those
/// `UNAVAILABLE`, other 503s `RESOURCE_EXHAUSTED`).
#[derive(Clone, Copy)]
struct DeviceUnavailable;

/// 503 with `Retry-After`: the device is failed or being reopened.
fn device_unavailable(message: String) -> Response {
    let mut r = retry_after(error(StatusCode::SERVICE_UNAVAILABLE, message), 1);
    r.extensions_mut().insert(DeviceUnavailable);
    r
}

/// `r` with a `Retry-After` of `seconds`.
fn retry_after(mut r: Response, seconds: u64) -> Response {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    r
}

/// What happened to a device, for a sentence: "was lost", ...
fn what_happened(e: &DeviceError) -> &'static str {
    match e {
        DeviceError::Lost { .. } => "was lost",
        DeviceError::OutOfMemory { .. } => "ran out of memory",
        _ => "failed",
    }
}

type Shared = State<Arc<Server>>;

/// The public OIP router.
pub fn app(server: Arc<Server>) -> Router {
    Router::new()
        .route(
            "/v2/health/live",
            get(|| async { ok(json!({ "live": true })) }),
        )
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models", get(list_models))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route("/metrics", get(render_metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /v2, /v2/models, /v2/models/{model}/infer, /metrics",
            )
        })
        .with_state(server)
}

async fn ready(State(s): Shared) -> Response {
    match s.unready_reason() {
        None => ok(json!({ "ready": true })),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// The extensions of the protocol this server speaks.
const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "model_repository_list"];

async fn server_metadata() -> Response {
    ok(json!({
        "name": "tensorlet",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

async fn list_models(State(s): Shared) -> Response {
    let errors = s.deploy_errors.lock().expect("errors lock").clone();
    let models: Vec<Value> = s
        .models
        .load()
        .values()
        .map(|d| {
            json!({
                "name": d.name,
                "versions": [d.version],
                "platform": "tensorlet",
                "reference": d.reference,
                "ready": !s.recovering() && d.shed_reason().is_none(),
                "deploy_error": errors.get(&d.name),
            })
        })
        .collect();
    ok(json!({ "models": models }))
}

fn metadata(d: &Deployment) -> Value {
    oip::model_metadata(&d.name, &d.version, &d.model.meta.feature_names, &d.spec)
}

async fn model_metadata(State(s): Shared, Path(model): Path<String>) -> Response {
    match s.find(&model, None) {
        Ok(d) => ok(metadata(&d)),
        Err(r) => r.into_response(),
    }
}

async fn model_metadata_v(
    State(s): Shared,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match s.find(&model, Some(&version)) {
        Ok(d) => ok(metadata(&d)),
        Err(r) => r.into_response(),
    }
}

fn ready_body(s: &Server, d: &Deployment) -> Response {
    let err = s
        .deploy_errors
        .lock()
        .expect("errors lock")
        .get(&d.name)
        .cloned();
    let shed = d.shed_reason();
    let ready = !s.recovering() && shed.is_none();
    let mut body =
        json!({ "name": d.name, "version": d.version, "ready": ready, "deploy_error": err });
    if let Some(reason) = shed {
        body["reason"] = json!(format!("model `{}` is {reason}", d.name));
    }
    ok(body)
}

async fn model_ready(State(s): Shared, Path(model): Path<String>) -> Response {
    match s.find(&model, None) {
        Ok(d) => ready_body(&s, &d),
        Err(r) => r.into_response(),
    }
}

async fn model_ready_v(
    State(s): Shared,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match s.find(&model, Some(&version)) {
        Ok(d) => ready_body(&s, &d),
        Err(r) => r.into_response(),
    }
}

async fn render_metrics(State(s): Shared) -> Response {
    if let Some(d) = s.models.load().values().next() {
        let budget = d.model.process_budget();
        let rss = crate::bench::rss_of(std::process::id());
        s.metrics.set_memory(budget.used(), budget.limit(), rss);
    }
    for d in s.models.load().values() {
        if let Some(score) = d.drift() {
            s.metrics.set_drift(&d.name, &d.version, score);
        }
        s.metrics.set_breaker(
            &d.name,
            &d.version,
            d.shed_reason().is_some(),
            d.breaker.trips(),
        );
        for (c, count) in &d.unknown {
            let column = &d.model.meta.feature_names[*c];
            let n = count.load(Ordering::Relaxed);
            s.metrics
                .set_unknown_categories(&d.name, &d.version, column, n);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(crate::plugin::instances_created()),
    )
        .into_response()
}

// The request is taken whole (not as `HeaderMap` and `Body`, whose
// extractor copies the headers): the handler reads one header and the body.
async fn infer(State(s): Shared, Path(model): Path<String>, req: Request) -> Response {
    infer_inner(s, model, None, req).await
}

async fn infer_v(
    State(s): Shared,
    Path((model, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    infer_inner(s, model, Some(version), req).await
}

async fn infer_inner(
    s: Arc<Server>,
    model: String,
    version: Option<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let _in_flight = s.metrics.in_flight();
    let d = match s.find(&model, version.as_deref()) {
        Ok(d) => d,
        Err(r) => {
            s.metrics.record("", "", 404, started.elapsed());
            return r.into_response();
        }
    };
    let response = infer_model(&s, &d, req).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    s.metrics.record(&d.name, &d.version, status, elapsed);
    tracing::debug!(
        model = %d.name,
        version = %d.version,
        status,
        micros = elapsed.as_micros() as u64,
        "infer"
    );
    if status == 200 {
        d.invocations.fetch_add(1, Ordering::Relaxed);
    }
    response
}

/// The binary tensor extension's header: how many bytes of the body are JSON.
/// A constant, so that looking it up does not parse the name on every request.
const INFERENCE_HEADER_CONTENT_LENGTH: header::HeaderName =
    header::HeaderName::from_static("inference-header-content-length");

async fn infer_model(s: &Arc<Server>, d: &Arc<Deployment>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // A shed model's requests are refused first, before their body is
    // read: the refusal costs next to nothing. A probe dropped before it runs
    // (no capacity, a bad body) lets the next request probe.
    let ticket = match d.breaker.admit(Instant::now()) {
        Ok(t) => t,
        Err(shed) => {
            let message = format!("model `{}` is {}; retry later", d.name, shed.reason);
            return retry_after(
                error(StatusCode::SERVICE_UNAVAILABLE, message),
                shed.retry_after,
            );
        }
    };
    // A request computed on its own takes its capacity now, before its body
    // is read; batched, its batch's call takes it (see `coalesce`).
    let _capacity = match s.config.batch_delay {
        Some(_) => None,
        None => match s.admit_call(d) {
            Ok(c) => Some(c),
            Err(message) => {
                s.metrics.shed();
                return retry_after(error(StatusCode::SERVICE_UNAVAILABLE, message), 1);
            }
        },
    };
    if !s.inline {
        if let Err(e) = s.device.check() {
            s.device_failed(&e);
        }
        if let Some(r) = s.recovering_refusal() {
            return r;
        }
    }
    let limit = s.config.max_body_bytes;
    let bytes: Bytes = match body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over this server's limit of {limit} bytes"),
            );
        }
    };
    let header_len = parts
        .headers
        .get(&INFERENCE_HEADER_CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    let spec = InputSpec {
        features: d.features(),
        max_batch: s.config.max_batch,
    };
    let mut req = match oip::split_body(&bytes, header_len)
        .and_then(|(json, bin)| oip::parse_request_for(json, bin, spec, &d.spec))
    {
        Ok(r) => r,
        Err(BadRequest(m)) => return error(StatusCode::BAD_REQUEST, m),
    };
    d.observe(&req.x);
    // The rows move to the plugins; the response needs only the rest of `req`.
    let (x, rows) = (std::mem::take(&mut req.x), req.rows);
    // A missing value (one input per column may carry them).
    let missing = x.iter().any(|v| v.is_nan());
    let outcome = match s.config.batch_delay {
        Some(delay) => coalesce::submit(s, d, x, rows, delay).await,
        None => predict(s, d, x, rows).await,
    };
    let change = match &outcome {
        Outcome::Failed {
            error,
            counts: true,
        } => match breaker::fault(error) {
            Some(f) => ticket.failed(&f.to_string(), Instant::now()),
            None => ticket.succeeded(),
        },
        Outcome::Predicted(_) => ticket.succeeded(),
        _ => None,
    };
    s.breaker_changed(d, change);
    let p = match outcome {
        Outcome::Predicted(p) => p,
        Outcome::Refused(message, seconds) => {
            s.metrics.shed();
            return retry_after(error(StatusCode::SERVICE_UNAVAILABLE, message), seconds);
        }
        Outcome::Failed { error: e, .. } if e.over_budget() => {
            s.metrics.shed();
            return retry_after(
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "not enough host tensor memory for this request now: {e}; retry shortly"
                    ),
                ),
                1,
            );
        }
        Outcome::Failed { error: e, .. } if missing && e.may_come_from_missing_values() => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{}: {e}", oip::MISSING_NOT_FILLED),
            );
        }
        Outcome::Failed { error: e, .. } => {
            tracing::warn!(model = %d.name, version = %d.version, "inference failed: {e}");
            if let Some(dev) = e.device_error() {
                s.device_failed(dev);
                return device_unavailable(format!(
                    "inference failed: the GPU device `{}` {}; the server is reopening it, \
                     retry shortly",
                    dev.adapter(),
                    what_happened(dev)
                ));
            }
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("inference failed: {e}"),
            );
        }
        Outcome::Stopped => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference failed: the worker stopped unexpectedly",
            );
        }
    };
    let prediction = match d.model.meta.task {
        crate::plugin::Task::Classification => oip::Prediction::Classes {
            labels: &p.labels,
            probabilities: &p.probabilities,
            names: d.model.meta.class_names.as_deref(),
        },
        crate::plugin::Task::Regression => oip::Prediction::Targets(&p.values),
    };
    let enc = oip::encode_prediction(&d.name, &d.version, &req, prediction);
    if enc.binary.is_empty() {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            enc.json,
        )
            .into_response();
    }
    let header_len = enc.json.len().to_string();
    let mut body = enc.json;
    body.extend_from_slice(&enc.binary);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (INFERENCE_HEADER_CONTENT_LENGTH, header_len),
        ],
        body,
    )
        .into_response()
}

/// The admin router: `GET /admin/models`, `POST /admin/deploy`
/// (`{"model": name, "reference": ref}`), `DELETE /admin/models/{model}`,
/// and the OIP model repository extension (`/v2/repository/…`, see
/// `repository`). Bind it to loopback.
pub fn admin_app(server: Arc<Server>) -> Router {
    Router::new()
        .route("/admin/models", get(list_models))
        .route("/admin/deploy", post(admin_deploy))
        .route(
            "/admin/models/{model}",
            axum::routing::delete(admin_undeploy),
        )
        .merge(repository::routes())
        .with_state(server)
}

async fn admin_deploy(State(s): Shared, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {\"model\": name, \"reference\": ref}",
        );
    };
    let (Some(name), Some(reference)) = (
        req.get("model").and_then(Value::as_str).map(str::to_string),
        req.get("reference")
            .and_then(Value::as_str)
            .map(str::to_string),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {\"model\": name, \"reference\": ref}",
        );
    };
    match deploy_from_source(s, name.clone(), reference).await {
        Ok(version) => ok(json!({ "model": name, "version": version, "deployed": true })),
        Err((status, message)) => error(status, message),
    }
}

/// Loads `reference` from the server's model source as `name` and deploys
/// it (verified, warmed, swapped in; a failure is recorded for the ready
/// endpoint and the index). Returns the version now served.
async fn deploy_from_source(
    s: Arc<Server>,
    name: String,
    reference: String,
) -> Result<String, (StatusCode, String)> {
    let Some(source) = s.source.clone() else {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            "this server has no model source to deploy from".into(),
        ));
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let d = source.load(&name, &reference).inspect_err(|e| {
            s.record_failure(&name, &reference, e);
        })?;
        let version = d.version.clone();
        s.deploy(d).map(|()| version)
    })
    .await;
    match outcome {
        Ok(Ok(version)) => Ok(version),
        Ok(Err(e)) => Err((StatusCode::UNPROCESSABLE_ENTITY, e)),
        Err(_) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the deploy worker stopped unexpectedly".into(),
        )),
    }
}

async fn admin_undeploy(State(s): Shared, Path(model): Path<String>) -> Response {
    if s.undeploy(&model) {
        ok(json!({ "model": model, "deployed": false }))
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no model `{model}` is served here"),
        )
    }
}

/// Serves `app` on `listener` (and on `admin`, if given, [`admin_app`]
/// merged with the given pages; on `grpc`, if given, the OIP gRPC service,
/// [`grpc`]) until `shutdown` completes; then readiness
/// turns 503, the server waits `config.drain`, stops accepting (the admin
/// address too), and lets requests in flight finish.
pub async fn run(
    server: Arc<Server>,
    listener: TcpListener,
    admin: Option<(TcpListener, Router)>,
    grpc: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flusher = {
        let server = server.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(server.config.events_interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => server.flush_invocations(),
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let admin_task = admin.map(|(l, pages)| {
        let app = admin_app(server.clone()).merge(pages);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    });
    let grpc_task = grpc.map(|l| {
        let service = grpc::service(server.clone());
        // gRPC responses go out in rounds too (see `batch`).
        let batch = server.config.batch_writes;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::StreamExt::map(
                        tokio_stream::wrappers::TcpListenerStream::new(l),
                        move |accepted| accepted.map(|io| batch::BatchedStream::new(io, batch)),
                    ),
                    async move {
                        let _ = stop.changed().await;
                    },
                )
                .await
        })
    });
    let s = server.clone();
    let drain = server.config.drain;
    let listener = batch::BatchedListener::new(listener, server.config.batch_writes);
    axum::serve(listener, app(server.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: readiness off, finishing requests in flight");
            s.begin_shutdown();
            tokio::time::sleep(drain).await;
            let _ = stop_tx.send(true);
        })
        .await?;
    let _ = flusher.await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    if let Some(t) = grpc_task
        && let Ok(Err(e)) = t.await
    {
        tracing::error!("the gRPC endpoint failed: {e}");
    }
    server.flush_invocations();
    Ok(())
}

/// The multi-threaded async runtime a server runs on.
pub fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::alloc::release_idle_memory)
        .build()
        .context("cannot start the async runtime")
}

/// A listener on `addr`, bound on `runtime`; `what` names it in the error
/// (` (admin)`, ` (console)`).
pub fn listen(
    runtime: &tokio::runtime::Runtime,
    addr: &str,
    what: &str,
) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    runtime
        .block_on(TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}{what}"))
}

/// [`listen`], or `None` for `off`.
pub fn listen_unless_off(
    runtime: &tokio::runtime::Runtime,
    addr: &str,
    what: &str,
) -> anyhow::Result<Option<TcpListener>> {
    (addr != "off")
        .then(|| listen(runtime, addr, what))
        .transpose()
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
