//! The wgpu backend: every op is a WGSL compute shader, tensors stay on the GPU.
//!
//! One [`Context`] per process holds the instance, the device, the queue, the
//! compiled pipelines (each compiled once, on first use) and the buffer pool.
//! Tensor data crosses to the CPU only in `download`, through a pooled staging
//! buffer and `map_async`. Ops whose tensors exceed the device's largest
//! storage binding run on the CPU backend instead, so every size works.

mod kernels;
mod nd;
mod pool;

use std::sync::{Arc, Mutex, OnceLock};

pub use nd::{GpuI64Storage, MIRROR_MAX};
pub use pool::PoolStats;
use pool::{Allocator, Kind, Pool, PooledBuffer};

use crate::{DeviceInfo, DeviceKind};

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

/// One adapter as `tensorlet devices` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// The graphics API: "vulkan", "metal", "dx12".
    pub backend: String,
    /// "discrete", "integrated", "virtual", "cpu" or "other".
    pub device_type: String,
    /// The driver and its version, when the adapter says.
    pub driver: String,
    /// A software rasteriser (lavapipe, llvmpipe, SwiftShader, WARP).
    pub software: bool,
}

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

    fn buffer(&self, kind: Kind, bytes: u64) -> PooledBuffer {
        PooledBuffer::new(&self.alloc, kind, bytes)
    }

    /// Records commands into the open batch (opening one if needed), then
    /// submits the batch if it is full or holds back too many buffers.
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        if batch.encoder.is_none() {
            self.alloc.lock().recording = true;
            batch.encoder = Some(self.device().create_command_encoder(&Default::default()));
        }
        f(batch.encoder.as_mut().expect("opened above"));
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
            let _ = self.device().poll(wgpu::PollType::Poll);
        }
    }

    /// Submits what is recorded and waits until the GPU has finished it all.
    fn wait(&self) {
        self.flush();
        self.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("the GPU device was lost");
    }
}

/// The process-wide context on the adapter `policy` picks; created on first use.
pub fn context(policy: AdapterPolicy) -> Result<Arc<Context>, GpuError> {
    static CONTEXT: Mutex<Option<Arc<Context>>> = Mutex::new(None);
    let adapter = choose(policy)?;
    let mut slot = CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = slot.as_ref()
        && ctx.info == adapter.get_info()
    {
        return Ok(ctx.clone());
    }
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

    /// Copies the elements to host memory (waits for the GPU).
    pub fn to_vec(&self) -> Vec<f32> {
        self.ctx.read(self.buf.buffer(), self.len)
    }
}

/// The wgpu backend over the process's [`Context`].
#[derive(Clone, Debug)]
pub struct WgpuBackend {
    ctx: Arc<Context>,
    /// Tensors larger than this many bytes are computed on the CPU.
    max_tensor_bytes: u64,
}

impl WgpuBackend {
    /// A backend on the adapter `policy` picks.
    pub fn open(policy: AdapterPolicy) -> Result<Self, GpuError> {
        let ctx = context(policy)?;
        Ok(WgpuBackend {
            max_tensor_bytes: ctx.max_binding,
            ctx,
        })
    }

    /// The same backend, computing on the CPU any op with a tensor larger than
    /// `bytes` (never more than the device allows). For testing that path.
    pub fn with_max_tensor_bytes(mut self, bytes: u64) -> Self {
        self.max_tensor_bytes = bytes.min(self.ctx.max_binding);
        self
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn info(&self) -> DeviceInfo {
        let a = self.ctx.adapter();
        DeviceInfo {
            kind: DeviceKind::Gpu,
            name: format!(
                "{} via {}{}",
                a.name,
                a.backend,
                if a.software { ", software" } else { "" }
            ),
        }
    }
}
