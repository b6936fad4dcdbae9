//! The wgpu backend: every op is a WGSL compute shader, tensors stay on the GPU.
//!
//! One [`Context`] per process holds the instance, the device, the queue, the
//! compiled pipelines (each compiled once, on first use) and the buffer pool.
//! Tensor data crosses to the CPU only in `download`, through a pooled staging
//! buffer and `map_async`. Ops whose tensors exceed the device's largest
//! storage binding run on the CPU backend instead, so every size works.
//!
//! A failed device (lost, out of memory, work rejected) is recorded in the
//! context's health from wgpu's device-lost callback, its uncaptured-error
//! handler and the results of `poll` and `map_async`. From then on ops skip
//! the GPU and give [`crate::Storage::Failed`], and every wait and read
//! returns the [`DeviceError`]; [`WgpuBackend`] opens a fresh context on
//! [`crate::Backend::recover`].

/// The value of a `Result<_, Arc<DeviceError>>`, or else return the failure
/// as the op's output: f32 storage, or storage of the element type given
/// second.
macro_rules! ok_or_failed {
    ($r:expr) => {
        ok_or_failed!($r, $crate::DType::F32)
    };
    ($r:expr, $out:expr) => {
        match $r {
            Ok(v) => v,
            Err(e) => return $crate::Storage::failed($out, e),
        }
    };
}

mod kernels;
mod nd;
mod pool;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use kernels::ContextBackend;
pub use nd::{GpuI64Storage, MIRROR_MAX};
pub use pool::PoolStats;
use pool::{Allocator, Kind, Pool, PooledBuffer};

use crate::{Backend, DeviceError, Distribution, OpenError, Storage};
use crate::{
    BinaryOp, ConvGeometry, CopyPart, DType, DeviceInfo, MatmulGeometry, PoolGeometry, ReduceOp,
    ScalarOp, UnaryOp,
};

/// Free buffers the pool keeps, at most (it also stays under a quarter of the
/// device's largest buffer times eight).
const DEFAULT_POOL_CAP: u64 = 512 << 20;

/// Why no GPU device could be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No adapter of the kind asked for.
    #[error(
        "no GPU adapter found{}; install a Vulkan driver for your GPU (Debian/Ubuntu: \
         `apt-get install mesa-vulkan-drivers libvulkan1`, which also provides the lavapipe \
         software device; NVIDIA: the proprietary driver), or use --device cpu",
        found_suffix(.software)
    )]
    NoAdapter {
        /// Software adapters that were found but not acceptable.
        software: Vec<String>,
    },
    /// The adapter refused to open a device.
    #[error("cannot open GPU device `{adapter}`: {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
}

fn found_suffix(software: &[String]) -> String {
    if software.is_empty() {
        String::new()
    } else {
        format!(
            " (only the software device {} , which --device auto never picks; ask for it with --device gpu)",
            software.join(", ")
        )
    }
}

/// Which adapters [`open`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// A hardware GPU only (what `--device auto` uses).
    HardwareOnly,
    /// A hardware GPU if there is one, else a software one such as lavapipe.
    Any,
}

pub use crate::listing::AdapterSummary;

fn instance() -> &'static wgpu::Instance {
    static INSTANCE: OnceLock<wgpu::Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        // Compute needs Vulkan, Metal or DX12; GL's compute support is too thin.
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        wgpu::Instance::new(desc.with_env())
    })
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let name = info.name.to_ascii_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || ["llvmpipe", "lavapipe", "swiftshader", "basic render driver"]
            .iter()
            .any(|s| name.contains(s))
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    let device_type = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    };
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    AdapterSummary {
        name: info.name.clone(),
        backend: info.backend.to_str().to_string(),
        device_type: device_type.to_string(),
        driver,
        software: is_software(info),
    }
}

/// Preference order: discrete, integrated, virtual, other hardware, software.
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    if is_software(info) {
        return 4;
    }
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    }
}

fn enumerate() -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    all.sort_by_key(|a| rank(&a.get_info()));
    all
}

/// Every adapter wgpu finds, best first, and the index of the one `auto` picks.
pub fn adapters() -> (Vec<AdapterSummary>, Option<usize>) {
    let list: Vec<AdapterSummary> = enumerate().iter().map(|a| summary(&a.get_info())).collect();
    let auto = list.iter().position(|a| !a.software);
    (list, auto)
}

fn choose(policy: AdapterPolicy) -> Result<wgpu::Adapter, GpuError> {
    let all = enumerate();
    let software: Vec<String> = all
        .iter()
        .map(|a| a.get_info())
        .filter(is_software)
        .map(|i| i.name)
        .collect();
    // Sorted best first, so the first acceptable adapter is the best one.
    all.into_iter()
        .find(|a| policy == AdapterPolicy::Any || !is_software(&a.get_info()))
        .ok_or(GpuError::NoAdapter { software })
}

/// How a device has failed, if it has. Shared with wgpu's callbacks, which
/// the device owns (so they must not hold the [`Context`]).
struct Health {
    adapter: String,
    failed: AtomicBool,
    error: Mutex<Option<DeviceError>>,
}

impl Health {
    fn new(adapter: &str) -> Self {
        Health {
            adapter: adapter.to_string(),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    /// The recorded failure, if any: one atomic load while there is none.
    fn check(&self) -> Result<(), DeviceError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let recorded = self
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Err(recorded.unwrap_or_else(|| self.lost("no reason given")))
    }

    /// Records `e` and returns what is recorded: the first failure, except
    /// that a loss replaces an earlier error (the loss explains both).
    fn fail(&self, e: DeviceError) -> DeviceError {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        let keep_old = slot
            .as_ref()
            .is_some_and(|old| old.is_lost() || !e.is_lost());
        if !keep_old {
            *slot = Some(e.clone());
        }
        self.failed.store(true, Ordering::Release);
        slot.clone().unwrap_or(e)
    }

    fn lost(&self, reason: &str) -> DeviceError {
        DeviceError::Lost {
            adapter: self.adapter.clone(),
            reason: reason.to_string(),
        }
    }

    fn uncaptured(&self, e: &wgpu::Error) -> DeviceError {
        let message = one_line(&e.to_string());
        match e {
            wgpu::Error::OutOfMemory { .. } => DeviceError::OutOfMemory {
                adapter: self.adapter.clone(),
                message,
            },
            _ => DeviceError::Rejected {
                adapter: self.adapter.clone(),
                message,
            },
        }
    }
}

/// A multi-line wgpu message on one line, for error messages.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a caught panic said.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .map_or_else(|| "wgpu panicked".to_string(), |s| one_line(&s))
}

/// The process-wide GPU state: device, queue, pipelines, buffer pool.
pub struct Context {
    info: wgpu::AdapterInfo,
    queue: wgpu::Queue,
    alloc: Arc<Allocator>,
    kernels: kernels::Kernels,
    /// The N-D kernels (nd.rs).
    nd: nd::NdKernels,
    /// Largest storage binding, in bytes.
    max_binding: u64,
    max_groups: u32,
    /// Commands recorded and not yet submitted.
    batch: Mutex<Batch>,
    health: Arc<Health>,
    /// Test hook: waits left until the device is destroyed (0: never).
    lose_at_wait: AtomicU64,
}

/// Ops recorded into one command encoder; submitted when it is full, when
/// data is read back, or when the device is synchronized.
struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    ops: u32,
    /// Submissions since the last non-blocking poll.
    since_poll: u32,
}

/// Ops per submission, at most.
const BATCH_OPS: u32 = 64;
/// Bytes of buffers held back by an open batch before it is submitted early.
const BATCH_HELD_BYTES: u64 = 64 << 20;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.info.name)
            .finish_non_exhaustive()
    }
}

impl Context {
    fn new(adapter: wgpu::Adapter) -> Result<Context, GpuError> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tensorlet"),
            required_features: wgpu::Features::empty(),
            // Everything the adapter offers: large buffers matter for tensors.
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let cap = DEFAULT_POOL_CAP.min(limits.max_buffer_size.saturating_mul(2));
        let health = Arc::new(Health::new(&info.name));
        // wgpu's defaults panic on an uncaptured error; record it instead.
        let h = health.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            h.fail(h.uncaptured(&e));
        }));
        let h = health.clone();
        device.set_device_lost_callback(move |reason, message| {
            let reason = match (reason, message.trim()) {
                (wgpu::DeviceLostReason::Destroyed, "") => "the device was destroyed".to_string(),
                (wgpu::DeviceLostReason::Destroyed, m) => format!("the device was destroyed: {m}"),
                (_, "") => "the driver gave no reason".to_string(),
                (_, m) => one_line(m),
            };
            h.fail(h.lost(&reason));
        });
        let kernels = kernels::Kernels::new(&device);
        Ok(Context {
            info,
            queue,
            alloc: Arc::new(Allocator {
                device,
                pool: Mutex::new(Pool::new(cap)),
            }),
            kernels,
            nd: nd::NdKernels::default(),
            max_binding,
            max_groups: limits.max_compute_workgroups_per_dimension,
            batch: Mutex::new(Batch {
                encoder: None,
                ops: 0,
                since_poll: 0,
            }),
            health,
            lose_at_wait: AtomicU64::new(0),
        })
    }

    fn device(&self) -> &wgpu::Device {
        &self.alloc.device
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> AdapterSummary {
        summary(&self.info)
    }

    /// Counters of the buffer pool.
    pub fn pool_stats(&self) -> PoolStats {
        self.alloc.stats()
    }

    /// Gives every free pooled buffer back to the driver.
    pub fn trim_pool(&self) {
        self.alloc.trim();
    }

    /// How the device has failed, if it has.
    pub fn check(&self) -> Result<(), DeviceError> {
        self.health.check()
    }

    /// Test hook: destroys the device (wgpu's `Device::destroy`, which loses
    /// it as a driver reset would) at the `at_wait`-th wait from now, or at
    /// once when 0.
    #[doc(hidden)]
    pub fn lose_device(&self, at_wait: u64) {
        if at_wait == 0 {
            self.device().destroy();
            // wgpu reports the loss at the next poll; say it now, so that the
            // ops in between fail fast instead of reaching a destroyed device.
            self.health
                .fail(self.health.lost("the device was destroyed"));
        } else {
            self.lose_at_wait.store(at_wait, Ordering::Release);
        }
    }

    fn buffer(&self, kind: Kind, bytes: u64) -> PooledBuffer {
        PooledBuffer::new(&self.alloc, kind, bytes)
    }

    /// Records commands into the open batch (opening one if needed), then
    /// submits the batch if it is full or holds back too many buffers.
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        let encoder = batch.encoder.get_or_insert_with(|| {
            self.alloc.lock().recording = true;
            self.device().create_command_encoder(&Default::default())
        });
        f(encoder);
        batch.ops += 1;
        if batch.ops >= BATCH_OPS || self.alloc.lock().deferred_bytes() >= BATCH_HELD_BYTES {
            self.submit_locked(&mut batch);
        }
    }

    /// Submits the open batch, if any.
    fn flush(&self) {
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        self.submit_locked(&mut batch);
    }

    fn submit_locked(&self, batch: &mut Batch) {
        let Some(encoder) = batch.encoder.take() else {
            return;
        };
        batch.ops = 0;
        self.queue.submit(Some(encoder.finish()));
        self.alloc.lock().submitted();
        // Let wgpu retire finished submissions now and then, so its bookkeeping
        // stays small when nothing is read back for a long time.
        batch.since_poll += 1;
        if batch.since_poll >= 16 {
            batch.since_poll = 0;
            // A failure is recorded in `health`; the next wait reports it.
            let _ = self.poll(wgpu::PollType::Poll);
        }
    }

    /// `Device::poll`, with a failure recorded and returned. wgpu 30 panics
    /// when the driver reports a lost device during a poll (after calling
    /// the device-lost callback): that panic is caught here and becomes
    /// [`DeviceError::Lost`].
    fn poll(&self, how: wgpu::PollType) -> Result<(), DeviceError> {
        match catch_unwind(AssertUnwindSafe(|| self.device().poll(how))) {
            Ok(Ok(_)) => self.health.check(),
            Ok(Err(e)) => {
                self.health.check()?;
                Err(self.health.fail(DeviceError::Rejected {
                    adapter: self.info.name.clone(),
                    message: format!("waiting for the GPU failed: {e}"),
                }))
            }
            Err(panic) => {
                let reason = panic_message(&*panic);
                Err(self.health.fail(self.health.lost(&reason)))
            }
        }
    }

    /// Submits what is recorded and waits until the GPU has finished it all.
    fn wait(&self) -> Result<(), DeviceError> {
        self.health.check()?;
        self.flush();
        if self
            .lose_at_wait
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            == Ok(1)
        {
            self.device().destroy();
        }
        self.poll(wgpu::PollType::wait_indefinitely())
    }
}

/// The process-wide context on the adapter `policy` picks; created on first use.
pub fn context(policy: AdapterPolicy) -> Result<Arc<Context>, GpuError> {
    static CONTEXT: Mutex<Option<Arc<Context>>> = Mutex::new(None);
    let adapter = choose(policy)?;
    let mut slot = CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = slot.as_ref()
        && ctx.info == adapter.get_info()
        && ctx.health.check().is_ok()
    {
        return Ok(ctx.clone());
    }
    // None yet, another adapter, or a failed one: open a fresh context.
    let ctx = Arc::new(Context::new(adapter)?);
    *slot = Some(ctx.clone());
    Ok(ctx)
}

/// Tensor storage in a GPU buffer of the process's context.
#[derive(Clone)]
pub struct GpuStorage {
    buf: Arc<PooledBuffer>,
    len: usize,
    ctx: Arc<Context>,
}

impl std::fmt::Debug for GpuStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuStorage({} elements on {})",
            self.len, self.ctx.info.name
        )
    }
}

impl GpuStorage {
    /// Number of f32 elements (32-bit words: an i64 tensor's words are two
    /// per element, see [`GpuI64Storage`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the elements to host memory (waits for the GPU); fails when
    /// the device has failed since they were computed.
    pub fn to_vec(&self) -> Result<Vec<f32>, DeviceError> {
        self.ctx.read(self.buf.buffer(), self.len)
    }
}

/// The wgpu backend over the process's [`Context`] on the adapter its
/// [`AdapterPolicy`] picks. After the device fails, [`Backend::recover`]
/// replaces the context with a fresh one; every [`crate::Device`] sharing
/// this backend computes on the new context from then on.
#[derive(Debug)]
pub struct WgpuBackend {
    policy: AdapterPolicy,
    /// Tensors larger than this many bytes (or than the device allows) are
    /// computed on the CPU.
    max_tensor_bytes: u64,
    ctx: RwLock<Arc<Context>>,
}

impl WgpuBackend {
    /// A backend on the adapter `policy` picks.
    pub fn open(policy: AdapterPolicy) -> Result<Self, GpuError> {
        Ok(WgpuBackend {
            policy,
            max_tensor_bytes: u64::MAX,
            ctx: RwLock::new(context(policy)?),
        })
    }

    /// The same backend, computing on the CPU any op with a tensor larger than
    /// `bytes` (never more than the device allows). For testing that path.
    pub fn with_max_tensor_bytes(mut self, bytes: u64) -> Self {
        self.max_tensor_bytes = bytes;
        self
    }

    /// The context it computes on now.
    pub fn context(&self) -> Arc<Context> {
        self.ctx
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The ops on the current context.
    fn ops(&self) -> ContextBackend {
        let ctx = self.context();
        ContextBackend {
            max_tensor_bytes: self.max_tensor_bytes.min(ctx.max_binding),
            ctx,
        }
    }

    /// Runs `op` (whose output is f32) on the current context, or gives its
    /// failure without touching the GPU when the device has failed.
    fn run(&self, op: impl FnOnce(&ContextBackend) -> Storage) -> Storage {
        self.run_typed(DType::F32, op)
    }

    /// [`WgpuBackend::run`] for an op whose output is of `dtype`.
    fn run_typed(&self, dtype: DType, op: impl FnOnce(&ContextBackend) -> Storage) -> Storage {
        let b = self.ops();
        match b.ctx.health.check() {
            Ok(()) => op(&b),
            Err(e) => Storage::failed(dtype, Arc::new(e)),
        }
    }
}

/// Every op goes to the current context's [`ContextBackend`].
impl Backend for WgpuBackend {
    fn info(&self) -> DeviceInfo {
        self.ops().info()
    }

    fn upload(&self, data: &[f32]) -> Storage {
        self.run(|b| b.upload(data))
    }

    fn download(&self, s: &Storage, len: usize) -> Result<Vec<f32>, DeviceError> {
        self.ops().download(s, len)
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        self.context().wait()
    }

    fn check(&self) -> Result<(), DeviceError> {
        self.context().check()
    }

    fn recover(&self) -> Result<(), OpenError> {
        if self.check().is_ok() {
            return Ok(());
        }
        // Opened outside the lock: ops meanwhile see the failed context and
        // fail fast instead of waiting for a driver.
        let fresh = context(self.policy)?;
        let mut slot = self.ctx.write().unwrap_or_else(PoisonError::into_inner);
        if slot.check().is_err() {
            *slot = fresh;
        }
        Ok(())
    }

    fn lose_device(&self, at_wait: u64) -> bool {
        self.context().lose_device(at_wait);
        true
    }

    fn is_software(&self) -> bool {
        self.context().adapter().software
    }

    fn fill(&self, len: usize, value: f32) -> Storage {
        self.run(|b| b.fill(len, value))
    }

    fn random(&self, len: usize, dist: Distribution, seed: u64) -> Storage {
        self.run(|b| b.random(len, dist, seed))
    }

    fn matmul(&self, a: &Storage, b: &Storage, m: usize, k: usize, n: usize) -> Storage {
        self.run(|g| g.matmul(a, b, m, k, n))
    }

    fn transpose(&self, a: &Storage, rows: usize, cols: usize) -> Storage {
        self.run(|b| b.transpose(a, rows, cols))
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Storage {
        self.run(|g| g.binary(op, a, a_shape, b, b_shape, out_shape))
    }

    fn scalar(&self, op: ScalarOp, a: &Storage, len: usize, value: f32) -> Storage {
        self.run(|b| b.scalar(op, a, len, value))
    }

    fn unary(&self, op: UnaryOp, a: &Storage, len: usize) -> Storage {
        self.run(|b| b.unary(op, a, len))
    }

    fn reduce(
        &self,
        op: ReduceOp,
        a: &Storage,
        outer: usize,
        axis: usize,
        inner: usize,
    ) -> Storage {
        self.run(|b| b.reduce(op, a, outer, axis, inner))
    }

    fn softmax(&self, a: &Storage, outer: usize, axis: usize, inner: usize, log: bool) -> Storage {
        self.run(|b| b.softmax(a, outer, axis, inner, log))
    }

    fn one_hot(&self, a: &Storage, n: usize, classes: usize) -> Storage {
        self.run(|b| b.one_hot(a, n, classes))
    }

    fn gather_rows(&self, a: &Storage, row_len: usize, indices: &[u32]) -> Storage {
        self.run(|b| b.gather_rows(a, row_len, indices))
    }

    fn scatter_add_rows(
        &self,
        g: &Storage,
        row_len: usize,
        indices: &[u32],
        rows: usize,
    ) -> Storage {
        self.run(|b| b.scatter_add_rows(g, row_len, indices, rows))
    }

    fn slice_rows(&self, a: &Storage, row_len: usize, start: usize, end: usize) -> Storage {
        self.run(|b| b.slice_rows(a, row_len, start, end))
    }

    fn concat(
        &self,
        a: &Storage,
        b: &Storage,
        outer: usize,
        a_inner: usize,
        b_inner: usize,
    ) -> Storage {
        self.run(|g| g.concat(a, b, outer, a_inner, b_inner))
    }

    fn upload_i64(&self, data: &[i64]) -> Storage {
        self.run_typed(DType::I64, |b| b.upload_i64(data))
    }

    fn download_i64(&self, s: &Storage, len: usize) -> Result<Arc<[i64]>, DeviceError> {
        self.ops().download_i64(s, len)
    }

    fn i64_to_f32(&self, a: &Storage, len: usize) -> Storage {
        self.run(|b| b.i64_to_f32(a, len))
    }

    fn f32_to_i64(&self, a: &Storage, len: usize) -> Result<Storage, usize> {
        let b = self.ops();
        match b.ctx.health.check() {
            Ok(()) => b.f32_to_i64(a, len),
            Err(e) => Ok(Storage::FailedI64(Arc::new(e))),
        }
    }

    fn copy_nd(
        &self,
        dtype: DType,
        out_len: usize,
        fill: Option<f64>,
        parts: &[CopyPart<'_>],
    ) -> Storage {
        self.run_typed(dtype, |b| b.copy_nd(dtype, out_len, fill, parts))
    }

    fn index_select(
        &self,
        dtype: DType,
        a: &Storage,
        outer: usize,
        n: usize,
        inner: usize,
        idx: &Storage,
        m: usize,
    ) -> Storage {
        self.run_typed(dtype, |b| b.index_select(dtype, a, outer, n, inner, idx, m))
    }

    fn gather(
        &self,
        dtype: DType,
        a: &Storage,
        a_dims: &[usize],
        axis: usize,
        idx: &Storage,
        idx_dims: &[usize],
    ) -> Storage {
        self.run_typed(dtype, |b| b.gather(dtype, a, a_dims, axis, idx, idx_dims))
    }

    fn index_add(
        &self,
        g: &Storage,
        outer: usize,
        m: usize,
        inner: usize,
        idx: &[i64],
        n: usize,
    ) -> Storage {
        self.run(|b| b.index_add(g, outer, m, inner, idx, n))
    }

    fn scatter_add(
        &self,
        src: &Storage,
        idx: &Storage,
        idx_dims: &[usize],
        axis: usize,
        out_dims: &[usize],
    ) -> Storage {
        self.run(|b| b.scatter_add(src, idx, idx_dims, axis, out_dims))
    }

    fn clamp(&self, a: &Storage, len: usize, lo: f32, hi: f32) -> Storage {
        self.run(|b| b.clamp(a, len, lo, hi))
    }

    fn where_select(
        &self,
        cond: &Storage,
        cond_shape: &[usize],
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out: &[usize],
    ) -> Storage {
        self.run(|g| g.where_select(cond, cond_shape, a, a_shape, b, b_shape, out))
    }

    fn cumsum(
        &self,
        a: &Storage,
        outer: usize,
        len: usize,
        inner: usize,
        reverse: bool,
    ) -> Storage {
        self.run(|b| b.cumsum(a, outer, len, inner, reverse))
    }

    fn dropout_mask(&self, len: usize, p: f32, scale: f32, seed: u64) -> Storage {
        self.run(|b| b.dropout_mask(len, p, scale, seed))
    }

    fn batched_matmul(&self, a: &Storage, b: &Storage, g: &MatmulGeometry) -> Storage {
        self.run(|ops| ops.batched_matmul(a, b, g))
    }

    fn conv2d(&self, x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        self.run(|b| b.conv2d(x, w, g))
    }

    fn conv2d_grad_input(&self, dy: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        self.run(|b| b.conv2d_grad_input(dy, w, g))
    }

    fn conv2d_grad_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeometry) -> Storage {
        self.run(|b| b.conv2d_grad_weight(x, dy, g))
    }

    fn max_pool2d(&self, x: &Storage, g: &PoolGeometry) -> (Storage, Storage) {
        let b = self.ops();
        match b.ctx.health.check() {
            Ok(()) => b.max_pool2d(x, g),
            Err(e) => {
                let e = Arc::new(e);
                (Storage::Failed(e.clone()), Storage::FailedI64(e))
            }
        }
    }

    fn max_pool2d_grad(&self, dy: &Storage, idx: &Storage, g: &PoolGeometry) -> Storage {
        self.run(|b| b.max_pool2d_grad(dy, idx, g))
    }

    fn avg_pool2d(&self, x: &Storage, g: &PoolGeometry) -> Storage {
        self.run(|b| b.avg_pool2d(x, g))
    }

    fn avg_pool2d_grad(&self, dy: &Storage, g: &PoolGeometry) -> Storage {
        self.run(|b| b.avg_pool2d_grad(dy, g))
    }
}
