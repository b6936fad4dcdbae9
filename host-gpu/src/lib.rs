//! tensorlet's tensors and the kernels that compute on them.
//!
//! A [`Device`] is the one entry point: it validates shapes, element types
//! and arguments for every op (so every backend reports errors the same way,
//! as a [`TensorError`] naming the op and the offending shapes or values) and
//! then hands the work to a [`Backend`]. The CPU backend in [`cpu`] is the
//! reference; other backends (the wgpu backend) implement the same trait and
//! are tested against it. [`Tensor`]s are immutable and cheap to clone: an op
//! returns a new tensor, and the reshapes share the storage of their input.
//!
//! With the `wgpu` feature (on by default), [`wgpu_backend`] runs every op as a
//! WGSL compute shader and keeps tensors on the GPU between ops;
//! [`Device::open`] picks a backend the way `--device auto|cpu|gpu` asks. A
//! tensor too large for one storage binding is computed on the CPU instead.
//!
//! Training on the host: an [`autodiff::Tape`] (one per plugin call) records
//! the ops that depend on its watched leaves (the parameters), and
//! [`autodiff::Tape::grad`] computes their gradients of a one-element loss by
//! reverse-mode differentiation. [`optim::Optimizer`] then applies SGD, Adam
//! or AdamW (with weight decay and gradient clipping) at the learning rate an
//! [`optim::LrSchedule`] gives. Both are made of `Device` ops, so they run on
//! whichever backend the device is, GPU-resident on wgpu, and give the same
//! bits run to run on the CPU.
//!
//! ## Element types
//!
//! A tensor is [`DType::F32`] or [`DType::I64`] (class indices, token ids,
//! gather indices). Ops that move elements take either; ops that compute take
//! f32, and an i64 operand is a [`TensorError::DType`]. [`Device::from_i64`]
//! and [`Device::to_i64_vec`] cross to the host; [`Device::to_f32`] rounds to
//! nearest and [`Device::to_i64`] refuses (naming the element) any value that
//! is not an integer in range. On the GPU an i64 element is two 32-bit words,
//! low word first, so every value round-trips bit for bit; kernels read only
//! the low word of an index, after `Device` has checked every index against
//! its bound on the host (see [`wgpu_backend::GpuI64Storage`] for how the
//! values are kept there without waiting for the GPU). Integer tensors have no
//! gradient: the tape refuses to watch one.
//!
//! ## Ops
//!
//! All of them broadcast as NumPy does where two or more operands meet.
//!
//! | family | `Device` methods |
//! |---|---|
//! | data movement (f32 and i64) | `reshape`, `permute`, `transpose`, `slice`, `slice_rows`, `concat`, `concat_many`, `pad`, `flatten`, `squeeze`, `unsqueeze`, `broadcast_to`, `index_select`, `embedding`, `gather`, `gather_rows` |
//! | the gathers' reverses (their gradients) | `index_add`, `scatter_add`, `scatter_add_rows` |
//! | element-wise | `unary` ([`UnaryOp`]: relu, sigmoid, tanh, exp, log, sqrt, gelu in erf and tanh forms, silu, softplus, …), `scalar` ([`ScalarOp`]: add, mul, pow, max, min, leaky relu), `binary` ([`BinaryOp`]: arithmetic, maximum, minimum, pow, and comparisons giving 0/1 masks), `clamp`, `where_`, `masked_fill` |
//! | reductions and scans | `reduce`, `softmax`, `cumsum`, `one_hot` |
//! | products | `matmul` (2-D, or batched over broadcast leading dimensions), `matmul_transposed` |
//! | convolution and pooling (NCHW) | `conv1d`, `conv2d` (stride, padding, dilation, groups), `max_pool2d`, `max_pool2d_with_indices`, `avg_pool2d`, `global_avg_pool` |
//! | normalization | `layer_norm`, `batch_norm` (training returns the updated running statistics) |
//! | randomness | `random`, `dropout`, `dropout_mask` (from [`rng`]: a seed gives the same mask on every backend) |
//!
//! The tape has each of these, plus the losses
//! ([`autodiff::Tape::cross_entropy_with`] with class weights, label smoothing,
//! an ignored class and any class axis, against class indices or
//! probabilities; `bce_with_logits`, `mse_loss`, `l1_loss`, `huber_loss`).
//!
//! Most ops are one kernel on each backend. On the GPU, one strided-copy
//! kernel serves permute, slice, pad, concat and broadcast (contiguous runs
//! are plain buffer copies); the broadcasting binary kernel does the
//! comparisons, maximum, minimum and pow; `where` is a ternary kernel;
//! convolution is im2col, a batched-matmul kernel and, for its input
//! gradient, col2im. Composed of other ops (on every backend): the bias of a
//! convolution, masked fill (a `where`), global pooling (a mean), dropout (a
//! mask times the input), layer and batch norm, and the losses, whose
//! gradients are then their parts'. Sums happen in a fixed order everywhere
//! (scatters gather through index lists rather than atomics), and the CPU
//! backend is single-threaded: the same inputs give the same bits.
//!
//! ```
//! use tensorlet_gpu::{Device, UnaryOp};
//! let dev = Device::cpu();
//! let a = dev.from_vec(&[2, 2], vec![1.0, -2.0, 3.0, -4.0]).unwrap();
//! let b = dev.unary(UnaryOp::Relu, &a).unwrap();
//! assert_eq!(dev.to_vec(&b).unwrap(), vec![1.0, 0.0, 3.0, 0.0]);
//! ```
//!
//! A convolution, pooled, scored with cross-entropy against i64 labels, and
//! its gradient:
//!
//! ```
//! use tensorlet_gpu::autodiff::{CrossEntropy, Tape, Var};
//! use tensorlet_gpu::{Conv2d, Device, Distribution};
//! let dev = Device::cpu();
//! let normal = Distribution::Normal { mean: 0.0, std: 1.0 };
//! let images = Var::constant(dev.random(&[2, 1, 8, 8], normal, 1).unwrap());
//! let labels = Var::constant(dev.from_i64(&[2], vec![3, 0]).unwrap());
//! let mut tape = Tape::new(dev.clone());
//! let w = tape.leaf("w", dev.random(&[4, 1, 3, 3], normal, 2).unwrap()).unwrap();
//! let y = tape.conv2d(&images, &w, None, &Conv2d::default()).unwrap(); // [2, 4, 6, 6]
//! let logits = tape.global_avg_pool(&y).unwrap(); // [2, 4]
//! let loss = tape.cross_entropy_with(&logits, &labels, &CrossEntropy::default()).unwrap();
//! let grads = tape.grad(&loss, &["w"]).unwrap();
//! assert_eq!(grads[0].shape().dims(), [4, 1, 3, 3]);
//! ```
//!
//! A GPU can fail after it was opened (the driver resets it, it runs out of
//! memory). Ops then still return tensors, which carry the failure; reads
//! ([`Device::to_vec`], [`Device::to_i64_vec`], [`Device::synchronize`])
//! return it as a [`DeviceError`] that names the adapter (ops that must read
//! an operand to check it, such as the bounds of `gather`'s indices, return
//! it as [`TensorError::Device`]), and [`Device::recover`] opens the device
//! again. See `docs/gpu.md`.

pub mod autodiff;
pub mod bench;
pub mod cpu;

mod conv;
mod device;
mod dtype;
mod error;
pub mod listing;
mod math;
pub mod named;
mod nd;
pub mod optim;
pub mod rng;
mod shape;
#[cfg(feature = "wgpu")]
pub mod wgpu_backend;

use std::sync::Arc;

pub use conv::{Conv1d, Conv2d, ConvGeometry, Pool2d, PoolGeometry};
pub use device::{Device, DeviceInfo, DeviceKind, OpenError, Preference};
pub use dtype::DType;
pub use error::{DeviceError, TensorError};
pub use math::MatmulGeometry;
pub use nd::CopyPart;
pub use shape::Shape;

/// Largest number of dimensions a tensor may have.
pub const MAX_DIMS: usize = 8;

/// Largest number of elements in one tensor (indices stay within `u32`).
pub const MAX_ELEMENTS: usize = u32::MAX as usize;

/// Element-wise maps of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// max(x, 0)
    Relu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// e^x
    Exp,
    /// Natural logarithm.
    Log,
    /// Square root.
    Sqrt,
    /// -x
    Neg,
    /// |x|
    Abs,
    /// x²
    Square,
    /// 1 where x > 0, else 0 (the gradient mask of `Relu`).
    ReluMask,
    /// GELU in its exact form, x·Φ(x) = x/2 · (1 + erf(x/√2)) (PyTorch's
    /// default `nn.GELU()`); erf is a rational approximation accurate to
    /// about 1e-7, computed the same way on every backend.
    Gelu,
    /// GELU in the tanh form, x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))
    /// (`nn.GELU(approximate="tanh")`, GPT-2's).
    GeluTanh,
    /// SiLU (swish): x·sigmoid(x).
    Silu,
    /// ln(1 + eˣ), computed without overflow.
    Softplus,
    /// The derivative of `Gelu` (the gradient of the tape's `Gelu`).
    GeluGrad,
    /// The derivative of `GeluTanh`.
    GeluTanhGrad,
    /// The derivative of `Silu`.
    SiluGrad,
}

impl UnaryOp {
    /// The op's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Square => "square",
            UnaryOp::ReluMask => "relu-mask",
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu-tanh",
            UnaryOp::Silu => "silu",
            UnaryOp::Softplus => "softplus",
            UnaryOp::GeluGrad => "gelu-grad",
            UnaryOp::GeluTanhGrad => "gelu-tanh-grad",
            UnaryOp::SiluGrad => "silu-grad",
        }
    }
}

/// Element-wise arithmetic of two tensors, with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// max(a, b); NaN if either is NaN.
    Maximum,
    /// min(a, b); NaN if either is NaN.
    Minimum,
    /// aᵇ (a negative base needs an integral exponent, else NaN; 0⁰ = 1).
    Pow,
    /// 1 where a == b, else 0.
    Eq,
    /// 1 where a != b, else 0.
    Ne,
    /// 1 where a < b, else 0.
    Lt,
    /// 1 where a <= b, else 0.
    Le,
    /// 1 where a > b, else 0.
    Gt,
    /// 1 where a >= b, else 0.
    Ge,
}

impl BinaryOp {
    /// The op's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Pow => "pow",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
        }
    }

    /// Whether the op compares (its result is a 0/1 mask with no gradient).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// Element-wise arithmetic of a tensor and a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarOp {
    /// x + v
    Add,
    /// x * v
    Mul,
    /// xᵛ (a negative x needs an integral v, else NaN; 0⁰ = 1).
    Pow,
    /// max(x, v)
    Max,
    /// min(x, v)
    Min,
    /// x where x > 0, else v·x (leaky ReLU with slope v).
    LeakyRelu,
}

impl ScalarOp {
    /// The op's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            ScalarOp::Add => "add-scalar",
            ScalarOp::Mul => "mul-scalar",
            ScalarOp::Pow => "pow-scalar",
            ScalarOp::Max => "max-scalar",
            ScalarOp::Min => "min-scalar",
            ScalarOp::LeakyRelu => "leaky-relu",
        }
    }
}

/// Reductions along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Index of the first maximum, as f32.
    ArgMax,
}

/// The distributions of [`Device::random`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Normal with this mean and standard deviation.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// Uniform in `[low, high)`.
    Uniform {
        /// Inclusive lower bound.
        low: f32,
        /// Exclusive upper bound.
        high: f32,
    },
}

/// Where a tensor's elements live. Each backend reads the variants it owns and
/// converts the others (the CPU backend downloads GPU storage; the GPU backend
/// uploads host storage). The variant also fixes the element type.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Storage {
    /// f32 elements in host memory, row-major.
    Host(Arc<[f32]>),
    /// i64 elements in host memory, row-major.
    HostI64(Arc<[i64]>),
    /// f32 elements in a buffer on the GPU, row-major.
    #[cfg(feature = "wgpu")]
    Gpu(wgpu_backend::GpuStorage),
    /// i64 elements on the GPU, two 32-bit words each (see [`wgpu_backend::GpuI64Storage`]).
    #[cfg(feature = "wgpu")]
    GpuI64(wgpu_backend::GpuI64Storage),
    /// No f32 elements: the device failed before or while this tensor was
    /// computed. Reading it returns the error; ops on it give it again.
    Failed(Arc<DeviceError>),
    /// No i64 elements, as [`Storage::Failed`] for f32.
    FailedI64(Arc<DeviceError>),
}

impl Storage {
    /// The element type this storage holds.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Host(_) => DType::F32,
            Storage::HostI64(_) => DType::I64,
            #[cfg(feature = "wgpu")]
            Storage::Gpu(_) => DType::F32,
            #[cfg(feature = "wgpu")]
            Storage::GpuI64(_) => DType::I64,
            Storage::Failed(_) => DType::F32,
            Storage::FailedI64(_) => DType::I64,
        }
    }

    /// Storage of `dtype` that holds the failure `e` (see [`Storage::Failed`]).
    pub fn failed(dtype: DType, e: Arc<DeviceError>) -> Self {
        match dtype {
            DType::F32 => Storage::Failed(e),
            DType::I64 => Storage::FailedI64(e),
        }
    }
}

/// An immutable tensor: a shape, an element type ([`DType`]) and the storage
/// of its elements.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Shape,
    storage: Storage,
}

impl Tensor {
    /// Wraps storage that holds exactly `shape.numel()` elements; the element
    /// type is the storage's.
    pub fn from_storage(shape: Shape, storage: Storage) -> Self {
        Tensor { shape, storage }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// Bytes of element data this tensor holds (4 per f32, 8 per i64).
    pub fn byte_len(&self) -> usize {
        self.numel() * self.dtype().size()
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

/// The work a backend does once a [`Device`] has validated the arguments.
///
/// Every method receives storages that hold exactly the number of elements the
/// dimensions describe, or [`Storage::Failed`] (or [`Storage::FailedI64`]),
/// which an op passes on as its output (of the output's element type);
/// shapes are already checked. Implementations must give the same
/// results as the CPU backend within f32 rounding. Ops never fail: a device
/// that fails records it, and its reads ([`Backend::download`],
/// [`Backend::synchronize`]) return the [`DeviceError`].
pub trait Backend: Send + Sync + 'static {
    /// What this backend runs on.
    fn info(&self) -> DeviceInfo;
    /// Storage holding a copy of `data`.
    fn upload(&self, data: &[f32]) -> Storage;
    /// The elements of `s`, row-major, or how the device that computed them
    /// failed.
    fn download(&self, s: &Storage, len: usize) -> Result<Vec<f32>, DeviceError>;
    /// Waits until all work submitted so far has finished (for timing).
    fn synchronize(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    /// How the device has failed, if it has (a cheap check, no waiting).
    fn check(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    /// Opens the device again after a failure, so that new ops work; tensors
    /// computed before stay failed. Does nothing on a device that has not failed.
    fn recover(&self) -> Result<(), OpenError> {
        Ok(())
    }
    /// Test hook: loses the device (as a driver reset would) at the
    /// `at_wait`-th wait for the GPU from now, or at once when 0. Returns
    /// whether the backend has a device to lose.
    #[doc(hidden)]
    fn lose_device(&self, _at_wait: u64) -> bool {
        false
    }
    /// Whether this is a software emulation of a GPU (lavapipe and the like).
    fn is_software(&self) -> bool {
        false
    }
    /// `len` copies of `value`.
    fn fill(&self, len: usize, value: f32) -> Storage;
    /// `len` samples of `dist`; element `i` is [`rng::sample`]`(dist, seed, i)`.
    fn random(&self, len: usize, dist: Distribution, seed: u64) -> Storage;
    /// [m, k] x [k, n].
    fn matmul(&self, a: &Storage, b: &Storage, m: usize, k: usize, n: usize) -> Storage;
    /// [rows, cols] -> [cols, rows].
    fn transpose(&self, a: &Storage, rows: usize, cols: usize) -> Storage;
    /// Broadcasting arithmetic; `a_shape` and `b_shape` are already padded with
    /// leading 1s to the rank of `out_shape`.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Storage;
    /// Scalar arithmetic on `len` elements.
    fn scalar(&self, op: ScalarOp, a: &Storage, len: usize, value: f32) -> Storage;
    /// A unary map on `len` elements.
    fn unary(&self, op: UnaryOp, a: &Storage, len: usize) -> Storage;
    /// Reduction of a tensor viewed as [outer, axis, inner] to [outer, inner].
    /// `axis` is never 0 for `Mean`, `Max`, `Min` and `ArgMax`.
    fn reduce(&self, op: ReduceOp, a: &Storage, outer: usize, axis: usize, inner: usize)
    -> Storage;
    /// Softmax (or log-softmax) of a tensor viewed as [outer, axis, inner], along axis.
    fn softmax(&self, a: &Storage, outer: usize, axis: usize, inner: usize, log: bool) -> Storage;
    /// `[n]` class indices -> `[n, classes]` one-hot rows; an index that is not an
    /// integer in 0..classes gives a row of zeros.
    fn one_hot(&self, a: &Storage, n: usize, classes: usize) -> Storage;
    /// Rows `indices` (each < rows) of a [rows, row_len] tensor.
    fn gather_rows(&self, a: &Storage, row_len: usize, indices: &[u32]) -> Storage;
    /// The reverse of `gather_rows`: a [rows, row_len] tensor whose row `r` is
    /// the sum of the rows `k` of `g` ([indices.len(), row_len]) with
    /// `indices[k] == r`, added in `k` order starting from 0 (zero where no
    /// index points). Each index is < rows.
    fn scatter_add_rows(
        &self,
        g: &Storage,
        row_len: usize,
        indices: &[u32],
        rows: usize,
    ) -> Storage;
    /// Rows `start..end` of a [rows, row_len] tensor.
    fn slice_rows(&self, a: &Storage, row_len: usize, start: usize, end: usize) -> Storage;
    /// Concatenation of [outer, a_inner] and [outer, b_inner] to [outer, a_inner + b_inner].
    fn concat(
        &self,
        a: &Storage,
        b: &Storage,
        outer: usize,
        a_inner: usize,
        b_inner: usize,
    ) -> Storage;

    // --- i64 tensors ---------------------------------------------------------

    /// Storage holding a copy of the i64 `data`.
    fn upload_i64(&self, data: &[i64]) -> Storage;
    /// The elements of an i64 storage `s` (`len` of them), row-major, or how
    /// the device that computed them failed. Backends that keep a host copy
    /// of i64 tensors return it without waiting.
    fn download_i64(&self, s: &Storage, len: usize) -> Result<Arc<[i64]>, DeviceError>;
    /// The i64 elements of `a` converted to f32 (rounded to nearest, ties to even).
    fn i64_to_f32(&self, a: &Storage, len: usize) -> Storage;
    /// The f32 elements of `a` as i64, or `Err(i)` with the first element that
    /// is not an integer in the range of i64 (NaN and infinities included).
    /// A device that fails meanwhile gives `Ok` of [`Storage::FailedI64`].
    fn f32_to_i64(&self, a: &Storage, len: usize) -> Result<Storage, usize>;

    // --- data movement (both element types) ----------------------------------

    /// A tensor of `out_len` elements of `dtype`: every element `fill` (when
    /// given), then each part copied in. With no fill the parts cover the output.
    fn copy_nd(
        &self,
        dtype: DType,
        out_len: usize,
        fill: Option<f64>,
        parts: &[CopyPart<'_>],
    ) -> Storage;
    /// `a` viewed as [outer, n, inner]; `[outer, m, inner]` with
    /// `out[o, j, i] = a[o, idx[j], i]`. The `m` i64 indices are in `0..n`.
    #[allow(clippy::too_many_arguments, reason = "one plain value per dimension")]
    fn index_select(
        &self,
        dtype: DType,
        a: &Storage,
        outer: usize,
        n: usize,
        inner: usize,
        idx: &Storage,
        m: usize,
    ) -> Storage;
    /// `torch.gather`: `out[c] = a[c with c[axis] = idx[c]]` over the index's
    /// shape `idx_dims` (same rank as `a_dims`, each other dimension at most
    /// `a`'s). Indices are in `0..a_dims[axis]`.
    fn gather(
        &self,
        dtype: DType,
        a: &Storage,
        a_dims: &[usize],
        axis: usize,
        idx: &Storage,
        idx_dims: &[usize],
    ) -> Storage;

    // --- gradients of the gathers (f32) --------------------------------------

    /// The reverse of `index_select`: `[outer, n, inner]` with
    /// `out[o, r, i] = Σ g[o, j, i]` over the `j` with `idx[j] == r`, added in
    /// increasing `j` from 0 (zero where no index points).
    fn index_add(
        &self,
        g: &Storage,
        outer: usize,
        m: usize,
        inner: usize,
        idx: &[i64],
        n: usize,
    ) -> Storage;
    /// The reverse of `gather`: zeros of `out_dims`, and each element of `src`
    /// (shaped `idx_dims`) added at its index along `axis`; each output element
    /// sums its contributions in increasing position along `axis`.
    fn scatter_add(
        &self,
        src: &Storage,
        idx: &Storage,
        idx_dims: &[usize],
        axis: usize,
        out_dims: &[usize],
    ) -> Storage;

    // --- arithmetic (f32) ----------------------------------------------------

    /// min(max(x, lo), hi) on `len` elements.
    fn clamp(&self, a: &Storage, len: usize, lo: f32, hi: f32) -> Storage;
    /// `cond != 0 ? a : b`, broadcasting; the three shapes are padded with
    /// leading 1s to the rank of `out`.
    #[allow(
        clippy::too_many_arguments,
        reason = "three operands with their shapes"
    )]
    fn where_select(
        &self,
        cond: &Storage,
        cond_shape: &[usize],
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out: &[usize],
    ) -> Storage;
    /// Running sums of a tensor viewed as [outer, len, inner] along len, from
    /// the start (or from the end when `reverse`), added in that order.
    fn cumsum(&self, a: &Storage, outer: usize, len: usize, inner: usize, reverse: bool)
    -> Storage;
    /// `len` dropout multipliers: element `i` is `scale` where
    /// [`rng::unit`]`(seed, 2i) >= p`, else 0.
    fn dropout_mask(&self, len: usize, p: f32, scale: f32, seed: u64) -> Storage;
    /// Batched products, `g` says how (see [`MatmulGeometry`]).
    fn batched_matmul(&self, a: &Storage, b: &Storage, g: &MatmulGeometry) -> Storage;

    // --- convolution and pooling (f32, NCHW) ---------------------------------

    /// Convolution of `x` `[n, c, h, w]` with `w` `[o, c / groups, kh, kw]`,
    /// without bias: `[n, o, ho, wo]`.
    fn conv2d(&self, x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage;
    /// The gradient of `conv2d` with respect to its input, given `dy`.
    fn conv2d_grad_input(&self, dy: &Storage, w: &Storage, g: &ConvGeometry) -> Storage;
    /// The gradient of `conv2d` with respect to its weights, given `dy`.
    fn conv2d_grad_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeometry) -> Storage;
    /// Max pooling: the maxima and, as i64, the position of each within its
    /// `h · w` plane (the first maximum in window order; padding never wins).
    fn max_pool2d(&self, x: &Storage, g: &PoolGeometry) -> (Storage, Storage);
    /// The gradient of `max_pool2d`: each `dy` element added at its maximum's
    /// position, contributions summed in output order.
    fn max_pool2d_grad(&self, dy: &Storage, idx: &Storage, g: &PoolGeometry) -> Storage;
    /// Average pooling; padding counts as zeros (every window divides by kh·kw).
    fn avg_pool2d(&self, x: &Storage, g: &PoolGeometry) -> Storage;
    /// The gradient of `avg_pool2d`.
    fn avg_pool2d_grad(&self, dy: &Storage, g: &PoolGeometry) -> Storage;
}
