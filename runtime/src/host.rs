//! The host side of `tensorlet:ml/tensor`, and the per-call store state.

use std::sync::Arc;

use tensorlet_gpu::{
    BinaryOp, Device, Distribution, ReduceOp, ScalarOp, Tensor, TensorError, UnaryOp,
};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_nn::Graph;
use wasmtime_wasi_nn::wit::{WasiNnCtx, WasiNnView};

use crate::Limits;
use crate::bindings::tensor::{self as wit, HostTensor};

/// How much of a plugin's stderr is kept for error messages.
const STDERR_CAPACITY: usize = 16 << 10;

/// A host limit that a call went over; carried inside a trap.
#[derive(Debug)]
pub(crate) struct HostTensorLimit(pub usize);

impl std::fmt::Display for HostTensorLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host tensor memory limit of {} bytes exceeded", self.0)
    }
}

impl std::error::Error for HostTensorLimit {}

/// Store state of one plugin call: its resource table, a WASI context that
/// grants nothing, its limits, and the device its tensors live on.
///
/// The WASI and `wasi:nn` contexts are built on a plugin's first call into
/// them: a plugin that imports neither (the bundled ones) pays nothing for
/// them on its per-request instance.
pub(crate) struct Ctx {
    table: ResourceTable,
    wasi: Option<Wasi>,
    nn: Option<WasiNnCtx>,
    graphs: Arc<[(String, Graph)]>,
    limiter: MemoryLimiter,
    device: Device,
    tensor_bytes: usize,
    max_tensor_bytes: usize,
}

/// The WASI side of a [`Ctx`]: grants nothing, discards stdout and keeps
/// stderr for error reports.
struct Wasi {
    ctx: WasiCtx,
    stderr: MemoryOutputPipe,
}

impl Wasi {
    fn new() -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let ctx = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        Wasi { ctx, stderr }
    }
}

/// StoreLimits that also remembers whether it refused a memory growth, so a
/// trap that follows can be reported as "hit the memory limit".
pub(crate) struct MemoryLimiter {
    inner: StoreLimits,
    pub(crate) refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        self.refused |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

impl Ctx {
    /// A context with no filesystem, network, environment or arguments; the
    /// plugin's stdout is discarded and its stderr kept for error reports.
    /// `graphs` are the models the plugin may open with `wasi:nn` by name.
    pub(crate) fn new(device: Device, limits: &Limits, graphs: Arc<[(String, Graph)]>) -> Self {
        let inner = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .instances(64)
            .build();
        Ctx {
            table: ResourceTable::new(),
            wasi: None,
            nn: None,
            graphs,
            limiter: MemoryLimiter {
                inner,
                refused: false,
            },
            device,
            tensor_bytes: 0,
            max_tensor_bytes: limits.max_host_tensor_bytes,
        }
    }

    /// Makes `graphs` the ones `wasi:nn` offers from now on (a store shared
    /// by the calls of one request serves plugins with different graphs).
    pub(crate) fn offer_graphs(&mut self, graphs: &Arc<[(String, Graph)]>) {
        if !Arc::ptr_eq(&self.graphs, graphs) {
            self.graphs = graphs.clone();
            self.nn = None;
        }
    }

    /// The `wasi:nn` view of this context, for the linker.
    pub(crate) fn nn_view(&mut self) -> WasiNnView<'_> {
        let graphs = &self.graphs;
        let nn = self.nn.get_or_insert_with(|| crate::nn::context(graphs));
        WasiNnView::new(&mut self.table, nn)
    }

    pub(crate) fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// What the plugin wrote to stderr, lossily decoded.
    pub(crate) fn stderr(&self) -> String {
        self.wasi.as_ref().map_or_else(String::new, |w| {
            String::from_utf8_lossy(&w.stderr.contents()).into_owned()
        })
    }

    /// Puts a tensor in the table, charging it to the call's tensor budget.
    pub(crate) fn push(&mut self, t: Tensor) -> wasmtime::Result<Resource<Tensor>> {
        self.tensor_bytes += t.byte_len();
        if self.tensor_bytes > self.max_tensor_bytes {
            return Err(wasmtime::Error::new(HostTensorLimit(self.max_tensor_bytes)));
        }
        Ok(self.table.push(t)?)
    }

    /// The tensor behind a handle (a cheap clone sharing storage).
    pub(crate) fn get(&self, r: &Resource<Tensor>) -> wasmtime::Result<Tensor> {
        Ok(self.table.get(r)?.clone())
    }

    /// Removes an owned handle returned by the plugin, giving back its tensor.
    pub(crate) fn take(&mut self, r: Resource<Tensor>) -> wasmtime::Result<Tensor> {
        let t = self.table.delete(r)?;
        self.tensor_bytes = self.tensor_bytes.saturating_sub(t.byte_len());
        Ok(t)
    }

    fn result(
        &mut self,
        r: Result<Tensor, TensorError>,
    ) -> wasmtime::Result<Result<Resource<Tensor>, String>> {
        match r {
            Ok(t) => Ok(Ok(self.push(t)?)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        a: Resource<Tensor>,
        b: Resource<Tensor>,
    ) -> wasmtime::Result<Result<Resource<Tensor>, String>> {
        let (a, b) = (self.get(&a)?, self.get(&b)?);
        let r = self.device.binary(op, &a, &b);
        self.result(r)
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi.get_or_insert_with(Wasi::new);
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut self.table,
        }
    }
}

impl From<wit::UnaryOp> for UnaryOp {
    fn from(op: wit::UnaryOp) -> Self {
        match op {
            wit::UnaryOp::Relu => UnaryOp::Relu,
            wit::UnaryOp::Sigmoid => UnaryOp::Sigmoid,
            wit::UnaryOp::Tanh => UnaryOp::Tanh,
            wit::UnaryOp::Exp => UnaryOp::Exp,
            wit::UnaryOp::Log => UnaryOp::Log,
            wit::UnaryOp::Sqrt => UnaryOp::Sqrt,
            wit::UnaryOp::Neg => UnaryOp::Neg,
            wit::UnaryOp::Abs => UnaryOp::Abs,
            wit::UnaryOp::Square => UnaryOp::Square,
            wit::UnaryOp::ReluMask => UnaryOp::ReluMask,
        }
    }
}

impl From<wit::ReduceOp> for ReduceOp {
    fn from(op: wit::ReduceOp) -> Self {
        match op {
            wit::ReduceOp::Sum => ReduceOp::Sum,
            wit::ReduceOp::Mean => ReduceOp::Mean,
            wit::ReduceOp::Max => ReduceOp::Max,
            wit::ReduceOp::Min => ReduceOp::Min,
        }
    }
}

type Handle = Resource<Tensor>;
type OpResult = wasmtime::Result<Result<Handle, String>>;

impl wit::Host for Ctx {}

impl HostTensor for Ctx {
    fn from_list(&mut self, shape: Vec<u32>, data: Vec<f32>) -> OpResult {
        let r = self.device.from_vec(&shape, data);
        self.result(r)
    }

    fn zeros(&mut self, shape: Vec<u32>) -> OpResult {
        let r = self.device.fill(&shape, 0.0);
        self.result(r)
    }

    fn fill(&mut self, shape: Vec<u32>, value: f32) -> OpResult {
        let r = self.device.fill(&shape, value);
        self.result(r)
    }

    fn random_normal(&mut self, shape: Vec<u32>, mean: f32, std: f32, seed: u64) -> OpResult {
        let r = self
            .device
            .random(&shape, Distribution::Normal { mean, std }, seed);
        self.result(r)
    }

    fn random_uniform(&mut self, shape: Vec<u32>, low: f32, high: f32, seed: u64) -> OpResult {
        let r = self
            .device
            .random(&shape, Distribution::Uniform { low, high }, seed);
        self.result(r)
    }

    fn shape(&mut self, this: Handle) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&this)?.shape().to_u32())
    }

    fn numel(&mut self, this: Handle) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.numel() as u32)
    }

    fn to_list(&mut self, this: Handle) -> wasmtime::Result<Vec<f32>> {
        let t = self.get(&this)?;
        Ok(self.device.to_vec(&t))
    }

    fn matmul(&mut self, this: Handle, rhs: Handle) -> OpResult {
        let (a, b) = (self.get(&this)?, self.get(&rhs)?);
        let r = self.device.matmul(&a, &b);
        self.result(r)
    }

    fn transpose(&mut self, this: Handle) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.transpose(&a);
        self.result(r)
    }

    fn reshape(&mut self, this: Handle, shape: Vec<u32>) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.reshape(&a, &shape);
        self.result(r)
    }

    fn add(&mut self, this: Handle, rhs: Handle) -> OpResult {
        self.binary(BinaryOp::Add, this, rhs)
    }

    fn sub(&mut self, this: Handle, rhs: Handle) -> OpResult {
        self.binary(BinaryOp::Sub, this, rhs)
    }

    fn mul(&mut self, this: Handle, rhs: Handle) -> OpResult {
        self.binary(BinaryOp::Mul, this, rhs)
    }

    fn div(&mut self, this: Handle, rhs: Handle) -> OpResult {
        self.binary(BinaryOp::Div, this, rhs)
    }

    fn add_scalar(&mut self, this: Handle, value: f32) -> wasmtime::Result<Handle> {
        let a = self.get(&this)?;
        let t = self.device.scalar(ScalarOp::Add, &a, value);
        self.push(t)
    }

    fn mul_scalar(&mut self, this: Handle, value: f32) -> wasmtime::Result<Handle> {
        let a = self.get(&this)?;
        let t = self.device.scalar(ScalarOp::Mul, &a, value);
        self.push(t)
    }

    fn map(&mut self, this: Handle, op: wit::UnaryOp) -> wasmtime::Result<Handle> {
        let a = self.get(&this)?;
        let t = self.device.unary(op.into(), &a);
        self.push(t)
    }

    fn reduce(&mut self, this: Handle, op: wit::ReduceOp, axis: u32, keepdims: bool) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.reduce(op.into(), &a, axis, keepdims);
        self.result(r)
    }

    fn argmax(&mut self, this: Handle, axis: u32, keepdims: bool) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.reduce(ReduceOp::ArgMax, &a, axis, keepdims);
        self.result(r)
    }

    fn softmax(&mut self, this: Handle, axis: u32) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.softmax(&a, axis, false);
        self.result(r)
    }

    fn log_softmax(&mut self, this: Handle, axis: u32) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.softmax(&a, axis, true);
        self.result(r)
    }

    fn one_hot(&mut self, this: Handle, classes: u32) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.one_hot(&a, classes);
        self.result(r)
    }

    fn slice_rows(&mut self, this: Handle, start: u32, end: u32) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.slice_rows(&a, start, end);
        self.result(r)
    }

    fn gather_rows(&mut self, this: Handle, indices: Vec<u32>) -> OpResult {
        let a = self.get(&this)?;
        let r = self.device.gather_rows(&a, &indices);
        self.result(r)
    }

    fn concat(&mut self, this: Handle, rhs: Handle, axis: u32) -> OpResult {
        let (a, b) = (self.get(&this)?, self.get(&rhs)?);
        let r = self.device.concat(&a, &b, axis);
        self.result(r)
    }

    fn drop(&mut self, rep: Handle) -> wasmtime::Result<()> {
        self.take(rep)?;
        Ok(())
    }
}
