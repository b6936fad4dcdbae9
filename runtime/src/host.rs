//! The host side of `tensorlet:ml/tensor` (versions 0.2 and 0.1), and the
//! per-call store state.
//!
//! Every op of a call goes through the call's [`Tape`], which records it only
//! when an input depends on a watched tensor (a parameter the host passed in,
//! or one the plugin watched); otherwise it is the plain device op. The tape
//! lives in the call's store and is dropped with it, so no gradient state
//! outlives a call or is shared between calls.

use std::collections::HashMap;
use std::sync::Arc;

use tensorlet_gpu::autodiff::{CrossEntropy, GradError, NormStats, Reduction, Tape, Var};
use tensorlet_gpu::{
    BinaryOp, Conv1d, Conv2d, DType, Device, Distribution, Pool2d, ReduceOp, ScalarOp, Tensor,
    TensorError, UnaryOp,
};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_nn::Graph;
use wasmtime_wasi_nn::wit::{WasiNnCtx, WasiNnView};

use crate::Limits;
use crate::bindings::tensor as wit;
use crate::bindings_v01::tensor as wit_v01;
use crate::budget::{Charge, MemoryBudget};

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
    tape: Tape,
    tensor_bytes: usize,
    max_tensor_bytes: usize,
    /// What the call holds against the shared budgets.
    charge: Charge,
    /// The model's `state.…` params passed to this call, by handle (the
    /// running statistics `batch-norm` updates).
    state: HashMap<u32, String>,
    /// New values of `state.…` params, for the host to keep after the call.
    kept: Vec<(String, Tensor)>,
    /// The training step of a training call (mixed into dropout seeds).
    step: Option<u64>,
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
    /// What its tensors hold is charged to `budgets` ([`crate::budget`]).
    pub(crate) fn new(
        device: Device,
        limits: &Limits,
        budgets: Arc<[Arc<MemoryBudget>]>,
        graphs: Arc<[(String, Graph)]>,
    ) -> Self {
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
            tape: Tape::new(device),
            tensor_bytes: 0,
            max_tensor_bytes: limits.max_host_tensor_bytes,
            charge: Charge::new(budgets),
            state: HashMap::new(),
            kept: Vec::new(),
            step: None,
        }
    }

    /// Marks this call as the training step `step`: dropout masks are drawn
    /// for it, and `batch-norm` in train mode keeps running statistics.
    pub(crate) fn training_step(&mut self, step: u64) {
        self.step = Some(step);
    }

    /// Puts the model's `state.…` param `name` in the table, remembering
    /// which handle it is (see [`Ctx::take_kept`]).
    pub(crate) fn push_state(&mut self, name: &str, t: Tensor) -> wasmtime::Result<Handle> {
        let h = self.push(t)?;
        self.state.insert(h.rep(), name.to_string());
        Ok(h)
    }

    /// The `state.…` params the call updated, by name.
    pub(crate) fn take_kept(&mut self) -> Vec<(String, Tensor)> {
        std::mem::take(&mut self.kept)
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

    /// The call's tape: the host records and differentiates through it.
    pub(crate) fn tape(&mut self) -> &mut Tape {
        &mut self.tape
    }

    /// The device the call's tensors live on.
    pub(crate) fn device(&self) -> &Device {
        self.tape.device()
    }

    /// Puts a tensor that depends on nothing watched in the table.
    pub(crate) fn push(&mut self, t: Tensor) -> wasmtime::Result<Handle> {
        self.push_var(Var::constant(t))
    }

    /// Puts a tensor in the table, charging it (and what the tape keeps for
    /// the backward pass) to the call's tensor budget.
    pub(crate) fn push_var(&mut self, v: Var) -> wasmtime::Result<Handle> {
        self.tensor_bytes += v.value().byte_len();
        let held = self.tensor_bytes + self.tape.saved_bytes();
        if held > self.max_tensor_bytes {
            return Err(wasmtime::Error::new(HostTensorLimit(self.max_tensor_bytes)));
        }
        self.charge.hold(held).map_err(wasmtime::Error::new)?;
        Ok(self.table.push(v)?)
    }

    /// The tensor behind a handle (a cheap clone sharing storage).
    pub(crate) fn get(&self, r: &Handle) -> wasmtime::Result<Var> {
        Ok(self.table.get(r)?.clone())
    }

    /// Removes an owned handle returned by the plugin, giving back its tensor
    /// (with its tape node: the host may differentiate through it).
    pub(crate) fn take(&mut self, r: Handle) -> wasmtime::Result<Var> {
        let v = self.table.delete(r)?;
        self.tensor_bytes = self.tensor_bytes.saturating_sub(v.value().byte_len());
        Ok(v)
    }

    /// An op's tensor for the plugin, or its error: the plugin's mistake as
    /// a value it sees, a failed device as a trap (the host's problem, which
    /// the plugin cannot handle).
    fn result(&mut self, r: Result<Var, TensorError>) -> OpResult {
        match r {
            Ok(v) => Ok(Ok(self.push_var(v)?)),
            Err(e) => match e.device_error() {
                Some(d) => Err(wasmtime::Error::new(d.clone())),
                None => Ok(Err(e.to_string())),
            },
        }
    }

    fn made(&mut self, r: Result<Tensor, TensorError>) -> OpResult {
        self.result(r.map(Var::constant))
    }

    fn binary(&mut self, op: BinaryOp, a: Handle, b: Handle) -> OpResult {
        let (a, b) = (self.get(&a)?, self.get(&b)?);
        let r = self.tape.binary(op, &a, &b);
        self.result(r)
    }

    fn unary1(
        &mut self,
        this: Handle,
        f: impl FnOnce(&mut Tape, &Var) -> Result<Var, TensorError>,
    ) -> OpResult {
        let a = self.get(&this)?;
        let r = f(&mut self.tape, &a);
        self.result(r)
    }

    /// An op the interface declares infallible, on the tensor as f32 (an i64
    /// one is converted, as the interface says): an error is a host bug and traps
    /// (a failed device traps as in [`Ctx::result`]).
    fn total(
        &mut self,
        this: Handle,
        f: impl FnOnce(&mut Tape, &Var) -> Result<Var, TensorError>,
    ) -> wasmtime::Result<Handle> {
        let a = self.get(&this)?;
        let a = self.tape.to_f32(&a);
        let v = f(&mut self.tape, &a).map_err(|e| match e.device_error() {
            Some(d) => wasmtime::Error::new(d.clone()),
            None => wasmtime::format_err!("{e}"),
        })?;
        self.push_var(v)
    }

    /// `watch`: a watched copy of the tensor under `name`.
    fn watch_tensor(&mut self, this: Handle, name: String) -> OpResult {
        let a = self.get(&this)?;
        match self.tape.leaf(&name, a.into_value()) {
            Ok(v) => Ok(Ok(self.push_var(v)?)),
            Err(GradError::DuplicateLeaf { name }) => Ok(Err(format!(
                "watch: a tensor named `{name}` is already watched in this call"
            ))),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// `grad`: the gradients of a one-element tensor with respect to the
    /// watched tensors `names` (all of them when empty), as (name, handle).
    fn grad_of(
        &mut self,
        this: Handle,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Handle)>, String>> {
        let loss = self.get(&this)?;
        let names: Vec<String> = if names.is_empty() {
            self.tape.leaf_names().map(str::to_string).collect()
        } else {
            names
        };
        let wrt: Vec<&str> = names.iter().map(String::as_str).collect();
        let grads = match self.tape.grad(&loss, &wrt) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut out = Vec::with_capacity(grads.len());
        for (name, g) in names.into_iter().zip(grads) {
            out.push((name, self.push(g)?));
        }
        Ok(Ok(out))
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

/// A tensor handle: the table holds a [`Var`], a tensor and its tape node.
pub(crate) type Handle = Resource<Var>;
type OpResult = wasmtime::Result<Result<Handle, String>>;

/// The WIT enums of both ABI versions map onto the device's.
macro_rules! wit_enums {
    ($wit:ident) => {
        impl From<$wit::UnaryOp> for UnaryOp {
            fn from(op: $wit::UnaryOp) -> Self {
                match op {
                    $wit::UnaryOp::Relu => UnaryOp::Relu,
                    $wit::UnaryOp::Sigmoid => UnaryOp::Sigmoid,
                    $wit::UnaryOp::Tanh => UnaryOp::Tanh,
                    $wit::UnaryOp::Exp => UnaryOp::Exp,
                    $wit::UnaryOp::Log => UnaryOp::Log,
                    $wit::UnaryOp::Sqrt => UnaryOp::Sqrt,
                    $wit::UnaryOp::Neg => UnaryOp::Neg,
                    $wit::UnaryOp::Abs => UnaryOp::Abs,
                    $wit::UnaryOp::Square => UnaryOp::Square,
                    $wit::UnaryOp::ReluMask => UnaryOp::ReluMask,
                }
            }
        }

        impl From<$wit::ReduceOp> for ReduceOp {
            fn from(op: $wit::ReduceOp) -> Self {
                match op {
                    $wit::ReduceOp::Sum => ReduceOp::Sum,
                    $wit::ReduceOp::Mean => ReduceOp::Mean,
                    $wit::ReduceOp::Max => ReduceOp::Max,
                    $wit::ReduceOp::Min => ReduceOp::Min,
                }
            }
        }

        impl $wit::Host for Ctx {}
    };
}

wit_enums!(wit);
wit_enums!(wit_v01);

/// The methods `tensor` has in every ABI version, each one line over the
/// [`Ctx`] helpers, for the `HostTensor` trait of the version `$wit`.
macro_rules! tensor_methods {
    ($wit:ident) => {
        fn from_list(&mut self, shape: Vec<u32>, data: Vec<f32>) -> OpResult {
            let r = self.device().from_vec(&shape, data);
            self.made(r)
        }

        fn zeros(&mut self, shape: Vec<u32>) -> OpResult {
            let r = self.device().fill(&shape, 0.0);
            self.made(r)
        }

        fn fill(&mut self, shape: Vec<u32>, value: f32) -> OpResult {
            let r = self.device().fill(&shape, value);
            self.made(r)
        }

        fn random_normal(&mut self, shape: Vec<u32>, mean: f32, std: f32, seed: u64) -> OpResult {
            let r = self
                .device()
                .random(&shape, Distribution::Normal { mean, std }, seed);
            self.made(r)
        }

        fn random_uniform(&mut self, shape: Vec<u32>, low: f32, high: f32, seed: u64) -> OpResult {
            let r = self
                .device()
                .random(&shape, Distribution::Uniform { low, high }, seed);
            self.made(r)
        }

        fn shape(&mut self, this: Handle) -> wasmtime::Result<Vec<u32>> {
            Ok(self.table.get(&this)?.value().shape().to_u32())
        }

        fn numel(&mut self, this: Handle) -> wasmtime::Result<u32> {
            Ok(self.table.get(&this)?.value().numel() as u32)
        }

        fn to_list(&mut self, this: Handle) -> wasmtime::Result<Vec<f32>> {
            let v = self.get(&this)?;
            // A failed device traps the call; `Plugin` reports the failure.
            Ok(self.device().to_vec(v.value())?)
        }

        fn matmul(&mut self, this: Handle, rhs: Handle) -> OpResult {
            let b = self.get(&rhs)?;
            self.unary1(this, |t, a| t.matmul(a, &b))
        }

        fn transpose(&mut self, this: Handle) -> OpResult {
            self.unary1(this, |t, a| t.transpose(a))
        }

        fn reshape(&mut self, this: Handle, shape: Vec<u32>) -> OpResult {
            self.unary1(this, |t, a| t.reshape(a, &shape))
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
            self.total(this, |t, a| t.scalar(ScalarOp::Add, a, value))
        }

        fn mul_scalar(&mut self, this: Handle, value: f32) -> wasmtime::Result<Handle> {
            self.total(this, |t, a| t.scalar(ScalarOp::Mul, a, value))
        }

        fn map(&mut self, this: Handle, op: $wit::UnaryOp) -> wasmtime::Result<Handle> {
            self.total(this, |t, a| t.unary(op.into(), a))
        }

        fn reduce(
            &mut self,
            this: Handle,
            op: $wit::ReduceOp,
            axis: u32,
            keepdims: bool,
        ) -> OpResult {
            self.unary1(this, |t, a| t.reduce(op.into(), a, axis, keepdims))
        }

        fn argmax(&mut self, this: Handle, axis: u32, keepdims: bool) -> OpResult {
            self.unary1(this, |t, a| t.reduce(ReduceOp::ArgMax, a, axis, keepdims))
        }

        fn softmax(&mut self, this: Handle, axis: u32) -> OpResult {
            self.unary1(this, |t, a| t.softmax(a, axis, false))
        }

        fn log_softmax(&mut self, this: Handle, axis: u32) -> OpResult {
            self.unary1(this, |t, a| t.softmax(a, axis, true))
        }

        fn one_hot(&mut self, this: Handle, classes: u32) -> OpResult {
            self.unary1(this, |t, a| t.one_hot(a, classes))
        }

        fn slice_rows(&mut self, this: Handle, start: u32, end: u32) -> OpResult {
            self.unary1(this, |t, a| t.slice_rows(a, start, end))
        }

        fn gather_rows(&mut self, this: Handle, indices: Vec<u32>) -> OpResult {
            self.unary1(this, |t, a| t.gather_rows(a, &indices))
        }

        fn concat(&mut self, this: Handle, rhs: Handle, axis: u32) -> OpResult {
            let b = self.get(&rhs)?;
            self.unary1(this, |t, a| t.concat(a, &b, axis))
        }

        fn drop(&mut self, rep: Handle) -> wasmtime::Result<()> {
            self.take(rep)?;
            Ok(())
        }
    };
}

impl From<wit::Dtype> for DType {
    fn from(d: wit::Dtype) -> Self {
        match d {
            wit::Dtype::F32 => DType::F32,
            wit::Dtype::I64 => DType::I64,
        }
    }
}

impl From<wit::BinaryOp> for BinaryOp {
    fn from(op: wit::BinaryOp) -> Self {
        use wit::BinaryOp as W;
        match op {
            W::Add => BinaryOp::Add,
            W::Sub => BinaryOp::Sub,
            W::Mul => BinaryOp::Mul,
            W::Div => BinaryOp::Div,
            W::Maximum => BinaryOp::Maximum,
            W::Minimum => BinaryOp::Minimum,
            W::Pow => BinaryOp::Pow,
            W::Eq => BinaryOp::Eq,
            W::Ne => BinaryOp::Ne,
            W::Lt => BinaryOp::Lt,
            W::Le => BinaryOp::Le,
            W::Gt => BinaryOp::Gt,
            W::Ge => BinaryOp::Ge,
        }
    }
}

impl From<wit::ScalarOp> for ScalarOp {
    fn from(op: wit::ScalarOp) -> Self {
        use wit::ScalarOp as W;
        match op {
            W::Add => ScalarOp::Add,
            W::Mul => ScalarOp::Mul,
            W::Pow => ScalarOp::Pow,
            W::Max => ScalarOp::Max,
            W::Min => ScalarOp::Min,
            W::LeakyRelu => ScalarOp::LeakyRelu,
        }
    }
}

impl From<wit::Activation> for UnaryOp {
    fn from(op: wit::Activation) -> Self {
        match op {
            wit::Activation::Gelu => UnaryOp::Gelu,
            wit::Activation::GeluTanh => UnaryOp::GeluTanh,
            wit::Activation::Silu => UnaryOp::Silu,
            wit::Activation::Softplus => UnaryOp::Softplus,
        }
    }
}

impl From<wit::Reduction> for Reduction {
    fn from(r: wit::Reduction) -> Self {
        match r {
            wit::Reduction::Mean => Reduction::Mean,
            wit::Reduction::Sum => Reduction::Sum,
            wit::Reduction::None => Reduction::None,
        }
    }
}

impl From<wit::Conv2dOptions> for Conv2d {
    fn from(o: wit::Conv2dOptions) -> Self {
        Conv2d {
            stride: [o.stride.0, o.stride.1],
            padding: [o.padding.0, o.padding.1],
            dilation: [o.dilation.0, o.dilation.1],
            groups: o.groups,
        }
    }
}

impl From<wit::Conv1dOptions> for Conv1d {
    fn from(o: wit::Conv1dOptions) -> Self {
        Conv1d {
            stride: o.stride,
            padding: o.padding,
            dilation: o.dilation,
            groups: o.groups,
        }
    }
}

impl From<wit::Pool2dOptions> for Pool2d {
    fn from(o: wit::Pool2dOptions) -> Self {
        Pool2d {
            kernel: [o.kernel.0, o.kernel.1],
            stride: [o.stride.0, o.stride.1],
            padding: [o.padding.0, o.padding.1],
        }
    }
}

impl Ctx {
    /// The tensors behind optional borrowed handles.
    fn get_opt(&self, r: &Option<Handle>) -> wasmtime::Result<Option<Var>> {
        r.as_ref().map(|h| self.get(h)).transpose()
    }

    /// An op of this tensor and another.
    fn with(
        &mut self,
        this: Handle,
        other: Handle,
        f: impl FnOnce(&mut Tape, &Var, &Var) -> Result<Var, TensorError>,
    ) -> OpResult {
        let b = self.get(&other)?;
        self.unary1(this, |t, a| f(t, a, &b))
    }

    /// `scatter-add` and `index-add`: this tensor plus `src` added at
    /// `indices` into zeros of this shape.
    fn add_at(
        &mut self,
        this: Handle,
        indices: Handle,
        src: Handle,
        f: impl FnOnce(&mut Tape, &[u32], &Var, &Var) -> Result<Var, TensorError>,
    ) -> OpResult {
        let (i, s) = (self.get(&indices)?, self.get(&src)?);
        self.unary1(this, |t, a| {
            let added = f(t, &a.shape().to_u32(), &i, &s)?;
            t.binary(BinaryOp::Add, a, &added)
        })
    }
}

impl wit::HostTensor for Ctx {
    tensor_methods!(wit);

    fn from_i64_list(&mut self, shape: Vec<u32>, data: Vec<i64>) -> OpResult {
        let r = self.device().from_i64(&shape, data);
        self.made(r)
    }

    fn dtype(&mut self, this: Handle) -> wasmtime::Result<wit::Dtype> {
        Ok(match self.table.get(&this)?.value().dtype() {
            DType::F32 => wit::Dtype::F32,
            DType::I64 => wit::Dtype::I64,
        })
    }

    fn to_i64_list(&mut self, this: Handle) -> wasmtime::Result<Result<Vec<i64>, String>> {
        let v = self.get(&this)?;
        match self.device().to_i64_vec(v.value()) {
            Ok(data) => Ok(Ok(data)),
            Err(e) => match e.device_error() {
                Some(d) => Err(wasmtime::Error::new(d.clone())),
                None => Ok(Err(e.to_string())),
            },
        }
    }

    fn cast(&mut self, this: Handle, dtype: wit::Dtype) -> OpResult {
        self.unary1(this, |t, a| match DType::from(dtype) {
            DType::F32 => Ok(t.to_f32(a)),
            DType::I64 => t.to_i64(a),
        })
    }

    fn matmul_transposed(
        &mut self,
        this: Handle,
        rhs: Handle,
        transpose_self: bool,
        transpose_rhs: bool,
    ) -> OpResult {
        self.with(this, rhs, |t, a, b| {
            t.matmul_transposed(a, transpose_self, b, transpose_rhs)
        })
    }

    fn binary(&mut self, this: Handle, op: wit::BinaryOp, rhs: Handle) -> OpResult {
        Ctx::binary(self, op.into(), this, rhs)
    }

    fn scalar(&mut self, this: Handle, op: wit::ScalarOp, value: f32) -> OpResult {
        self.unary1(this, |t, a| t.scalar(op.into(), a, value))
    }

    fn activate(&mut self, this: Handle, op: wit::Activation) -> OpResult {
        self.unary1(this, |t, a| t.unary(op.into(), a))
    }

    fn clamp(&mut self, this: Handle, low: f32, high: f32) -> OpResult {
        self.unary1(this, |t, a| t.clamp(a, low, high))
    }

    fn select(&mut self, this: Handle, mask: Handle, otherwise: Handle) -> OpResult {
        let (m, o) = (self.get(&mask)?, self.get(&otherwise)?);
        self.unary1(this, |t, a| t.where_(&m, a, &o))
    }

    fn masked_fill(&mut self, this: Handle, mask: Handle, value: f32) -> OpResult {
        self.with(this, mask, |t, a, m| t.masked_fill(a, m, value))
    }

    fn cumsum(&mut self, this: Handle, axis: u32, reverse: bool) -> OpResult {
        self.unary1(this, |t, a| t.cumsum(a, axis, reverse))
    }

    fn permute(&mut self, this: Handle, axes: Vec<u32>) -> OpResult {
        self.unary1(this, |t, a| t.permute(a, &axes))
    }

    fn slice(&mut self, this: Handle, axis: u32, start: u32, end: u32, step: u32) -> OpResult {
        self.unary1(this, |t, a| t.slice(a, axis, start, end, step))
    }

    fn concat_all(&mut self, parts: Vec<Handle>, axis: u32) -> OpResult {
        let vars = parts
            .iter()
            .map(|p| self.get(p))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        let refs: Vec<&Var> = vars.iter().collect();
        let r = self.tape.concat_many(&refs, axis);
        self.result(r)
    }

    fn pad(&mut self, this: Handle, pads: Vec<(u32, u32)>, value: f32) -> OpResult {
        let pads: Vec<[u32; 2]> = pads.into_iter().map(|(a, b)| [a, b]).collect();
        self.unary1(this, |t, a| t.pad(a, &pads, f64::from(value)))
    }

    fn flatten(&mut self, this: Handle, start: u32, end: u32) -> OpResult {
        self.unary1(this, |t, a| t.flatten(a, start, end))
    }

    fn squeeze(&mut self, this: Handle, axis: u32) -> OpResult {
        self.unary1(this, |t, a| t.squeeze(a, axis))
    }

    fn unsqueeze(&mut self, this: Handle, axis: u32) -> OpResult {
        self.unary1(this, |t, a| t.unsqueeze(a, axis))
    }

    fn broadcast_to(&mut self, this: Handle, shape: Vec<u32>) -> OpResult {
        self.unary1(this, |t, a| t.broadcast_to(a, &shape))
    }

    fn index_select(&mut self, this: Handle, axis: u32, indices: Handle) -> OpResult {
        self.with(this, indices, |t, a, i| t.index_select(a, axis, i))
    }

    fn embedding(&mut self, this: Handle, ids: Handle) -> OpResult {
        self.with(this, ids, |t, a, i| t.embedding(a, i))
    }

    fn gather(&mut self, this: Handle, axis: u32, indices: Handle) -> OpResult {
        self.with(this, indices, |t, a, i| t.gather(a, axis, i))
    }

    fn scatter_add(&mut self, this: Handle, axis: u32, indices: Handle, src: Handle) -> OpResult {
        self.add_at(this, indices, src, |t, shape, i, s| {
            t.scatter_add(shape, axis, i, s)
        })
    }

    fn index_add(&mut self, this: Handle, axis: u32, indices: Handle, src: Handle) -> OpResult {
        self.add_at(this, indices, src, |t, shape, i, s| {
            t.index_add(shape, axis, i, s)
        })
    }

    fn conv2d(
        &mut self,
        this: Handle,
        weight: Handle,
        bias: Option<Handle>,
        options: wit::Conv2dOptions,
    ) -> OpResult {
        let b = self.get_opt(&bias)?;
        let p = Conv2d::from(options);
        self.with(this, weight, |t, x, w| t.conv2d(x, w, b.as_ref(), &p))
    }

    fn conv1d(
        &mut self,
        this: Handle,
        weight: Handle,
        bias: Option<Handle>,
        options: wit::Conv1dOptions,
    ) -> OpResult {
        let b = self.get_opt(&bias)?;
        let p = Conv1d::from(options);
        self.with(this, weight, |t, x, w| t.conv1d(x, w, b.as_ref(), &p))
    }

    fn max_pool2d(&mut self, this: Handle, options: wit::Pool2dOptions) -> OpResult {
        let p = Pool2d::from(options);
        self.unary1(this, |t, a| t.max_pool2d(a, &p))
    }

    fn avg_pool2d(&mut self, this: Handle, options: wit::Pool2dOptions) -> OpResult {
        let p = Pool2d::from(options);
        self.unary1(this, |t, a| t.avg_pool2d(a, &p))
    }

    fn global_avg_pool(&mut self, this: Handle) -> OpResult {
        self.unary1(this, |t, a| t.global_avg_pool(a))
    }

    fn layer_norm(
        &mut self,
        this: Handle,
        axes: u32,
        weight: Option<Handle>,
        bias: Option<Handle>,
        eps: f32,
    ) -> OpResult {
        let (w, b) = (self.get_opt(&weight)?, self.get_opt(&bias)?);
        self.unary1(this, |t, a| {
            t.layer_norm(a, axes, w.as_ref(), b.as_ref(), eps)
        })
    }

    fn batch_norm(
        &mut self,
        this: Handle,
        weight: Option<Handle>,
        bias: Option<Handle>,
        running_mean: Handle,
        running_var: Handle,
        train: bool,
        momentum: f32,
        eps: f32,
    ) -> OpResult {
        let x = self.get(&this)?;
        let (w, b) = (self.get_opt(&weight)?, self.get_opt(&bias)?);
        let running = NormStats {
            mean: self.get(&running_mean)?.into_value(),
            var: self.get(&running_var)?.into_value(),
        };
        let names = (
            self.state.get(&running_mean.rep()).cloned(),
            self.state.get(&running_var.rep()).cloned(),
        );
        let (mean_name, var_name) = match names {
            (Some(m), Some(v)) => (m, v),
            _ if train => {
                return Ok(Err(
                    "batch-norm: in train mode the running mean and variance must be the \
                     model's own `state.…` params as forward received them (the host keeps \
                     them updated), and only a model's training step can update them"
                        .to_string(),
                ));
            }
            _ => (String::new(), String::new()),
        };
        if train && self.step.is_none() {
            return Ok(Err(
                "batch-norm: train mode is only for a model's training step".to_string(),
            ));
        }
        let r = self
            .tape
            .batch_norm(&x, w.as_ref(), b.as_ref(), &running, train, momentum, eps);
        match r {
            Ok((y, stats)) => {
                if train {
                    self.kept.retain(|(n, _)| n != &mean_name && n != &var_name);
                    self.kept.push((mean_name, stats.mean));
                    self.kept.push((var_name, stats.var));
                }
                self.result(Ok(y))
            }
            Err(e) => self.result(Err(e)),
        }
    }

    fn dropout(&mut self, this: Handle, p: f32, seed: u64) -> OpResult {
        let seed = match self.step {
            Some(step) => tensorlet_gpu::rng::mix(seed, step),
            None => seed,
        };
        self.unary1(this, |t, a| t.dropout(a, p, seed))
    }

    fn cross_entropy(
        &mut self,
        this: Handle,
        target: Handle,
        axis: u32,
        weights: Option<Handle>,
        label_smoothing: f32,
        ignore_index: Option<i64>,
        reduction: wit::Reduction,
    ) -> OpResult {
        let w = self.get_opt(&weights)?;
        self.with(this, target, |t, logits, y| {
            let opts = CrossEntropy {
                axis,
                weights: w.as_ref().map(Var::value),
                label_smoothing,
                ignore_index,
                reduction: reduction.into(),
            };
            t.cross_entropy_with(logits, y, &opts)
        })
    }

    fn bce_with_logits(
        &mut self,
        this: Handle,
        target: Handle,
        reduction: wit::Reduction,
    ) -> OpResult {
        self.with(this, target, |t, a, y| {
            t.bce_with_logits(a, y, reduction.into())
        })
    }

    fn mse_loss(&mut self, this: Handle, target: Handle, reduction: wit::Reduction) -> OpResult {
        self.with(this, target, |t, a, y| t.mse_loss(a, y, reduction.into()))
    }

    fn l1_loss(&mut self, this: Handle, target: Handle, reduction: wit::Reduction) -> OpResult {
        self.with(this, target, |t, a, y| t.l1_loss(a, y, reduction.into()))
    }

    fn huber_loss(
        &mut self,
        this: Handle,
        target: Handle,
        delta: f32,
        reduction: wit::Reduction,
    ) -> OpResult {
        self.with(this, target, |t, a, y| {
            t.huber_loss(a, y, delta, reduction.into())
        })
    }

    fn watch(&mut self, this: Handle, name: String) -> OpResult {
        self.watch_tensor(this, name)
    }

    fn grad(
        &mut self,
        this: Handle,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<wit::NamedTensor>, String>> {
        Ok(self.grad_of(this, names)?.map(|grads| {
            grads
                .into_iter()
                .map(|(name, value)| wit::NamedTensor { name, value })
                .collect()
        }))
    }
}

impl wit_v01::HostTensor for Ctx {
    tensor_methods!(wit_v01);
}
