//! tensorlet's tensors and the kernels that compute on them.
//!
//! A [`Device`] is the one entry point: it validates shapes and arguments for
//! every op (so every backend reports errors the same way) and then hands the
//! work to a [`Backend`]. The CPU backend in [`cpu`] is the reference; other
//! backends (the wgpu backend) implement the same trait and are tested against
//! it. [`Tensor`]s are immutable and cheap to clone: an op returns a new tensor,
//! and `reshape` shares the storage of its input.
//!
//! With the `wgpu` feature (on by default), [`wgpu_backend`] runs every op as a
//! WGSL compute shader and keeps tensors on the GPU between ops;
//! [`Device::open`] picks a backend the way `--device auto|cpu|gpu` asks.
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
//! ```
//! use tensorlet_gpu::{Device, UnaryOp};
//! let dev = Device::cpu();
//! let a = dev.from_vec(&[2, 2], vec![1.0, -2.0, 3.0, -4.0]).unwrap();
//! let b = dev.unary(UnaryOp::Relu, &a);
//! assert_eq!(dev.to_vec(&b).unwrap(), vec![1.0, 0.0, 3.0, 0.0]);
//! ```
//!
//! A GPU can fail after it was opened (the driver resets it, it runs out of
//! memory). Ops then still return tensors, which carry the failure; reads
//! ([`Device::to_vec`], [`Device::synchronize`]) return it as a
//! [`DeviceError`] that names the adapter, and [`Device::recover`] opens the
//! device again. See `docs/gpu.md`.

pub mod autodiff;
pub mod bench;
pub mod cpu;

mod device;
mod error;
pub mod optim;
pub mod rng;
mod shape;
#[cfg(feature = "wgpu")]
pub mod wgpu_backend;

use std::sync::Arc;

pub use device::{Device, DeviceInfo, DeviceKind, OpenError, Preference};
pub use error::{DeviceError, TensorError};
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
}

/// Element-wise arithmetic of a tensor and a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarOp {
    /// x + v
    Add,
    /// x * v
    Mul,
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
/// uploads host storage).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Storage {
    /// Host memory, row-major.
    Host(Arc<[f32]>),
    /// A buffer on the GPU, row-major.
    #[cfg(feature = "wgpu")]
    Gpu(wgpu_backend::GpuStorage),
    /// No elements: the device failed before or while this tensor was
    /// computed. Reading it returns the error; ops on it give it again.
    Failed(Arc<DeviceError>),
}

/// An immutable f32 tensor: a shape and the storage of its elements.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Shape,
    storage: Storage,
}

impl Tensor {
    /// Wraps storage that holds exactly `shape.numel()` elements.
    pub fn from_storage(shape: Shape, storage: Storage) -> Self {
        Tensor { shape, storage }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// Bytes of element data this tensor holds (4 per element).
    pub fn byte_len(&self) -> usize {
        self.numel() * std::mem::size_of::<f32>()
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

/// The work a backend does once a [`Device`] has validated the arguments.
///
/// Every method receives storages that hold exactly the number of elements the
/// dimensions describe, or [`Storage::Failed`], which an op passes on as its
/// output; shapes are already checked. Implementations must give the same
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
    /// [n] class indices -> [n, classes] one-hot rows; an index that is not an
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
}
