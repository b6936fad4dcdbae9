//! [`Tensor`]: an owned handle to an immutable f32 tensor that lives on the host.

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::raw;
use crate::{Error, Result};

pub use raw::{ReduceOp, UnaryOp};

/// An immutable f32 tensor held by the host (CPU memory or a GPU buffer).
///
/// The plugin holds only a handle: every op runs on the host and returns a new tensor,
/// and data crosses the component boundary only in [`Tensor::from_list`] and
/// [`Tensor::to_vec`]. Dropping a `Tensor` frees it on the host.
///
/// Element-wise arithmetic broadcasts like NumPy: `[batch, classes] + [classes]` adds
/// the row to every row. Operators work on references; tensor-with-tensor operators
/// return [`Result`] (shapes may not broadcast), scalar operators cannot fail:
///
/// ```no_run
/// # fn demo(a: &tensorlet_sdk::Tensor, b: &tensorlet_sdk::Tensor) -> tensorlet_sdk::Result<()> {
/// let c = (a + b)?; // element-wise, broadcasting
/// let d = &(&c * 2.0) - 1.0; // scalars never fail
/// let e = (&d / a)?;
/// # let _ = e; Ok(()) }
/// ```
pub struct Tensor {
    raw: raw::Tensor,
}

impl Tensor {
    /// Wraps a handle from the raw bindings.
    pub fn from_raw(raw: raw::Tensor) -> Tensor {
        Tensor { raw }
    }

    /// The handle, for the raw bindings (passing it to the host as an owned `tensor`).
    pub fn into_raw(self) -> raw::Tensor {
        self.raw
    }

    /// The handle, borrowed.
    pub fn as_raw(&self) -> &raw::Tensor {
        &self.raw
    }

    fn wrap(result: std::result::Result<raw::Tensor, String>) -> Result<Tensor> {
        result.map(Tensor::from_raw).map_err(Error::from)
    }

    // ---- Constructors -----------------------------------------------------------------

    /// A tensor of `shape` holding `data` in row-major order; fails unless `data` has
    /// exactly `product(shape)` elements.
    pub fn from_list(shape: &[u32], data: &[f32]) -> Result<Tensor> {
        Tensor::wrap(raw::Tensor::from_list(shape, data))
    }

    /// A one-element tensor of shape `[1]`, which broadcasts against any shape.
    pub fn scalar(value: f32) -> Result<Tensor> {
        Tensor::from_list(&[1], &[value])
    }

    /// All zeros.
    pub fn zeros(shape: &[u32]) -> Result<Tensor> {
        Tensor::wrap(raw::Tensor::zeros(shape))
    }

    /// All ones.
    pub fn ones(shape: &[u32]) -> Result<Tensor> {
        Tensor::fill(shape, 1.0)
    }

    /// Every element set to `value`.
    pub fn fill(shape: &[u32], value: f32) -> Result<Tensor> {
        Tensor::wrap(raw::Tensor::fill(shape, value))
    }

    /// Normal(`mean`, `std`) samples. The same `seed` gives the same tensor on every
    /// backend and machine; see [`derive_seed`](crate::derive_seed) for many streams.
    pub fn randn(shape: &[u32], mean: f32, std: f32, seed: u64) -> Result<Tensor> {
        Tensor::wrap(raw::Tensor::random_normal(shape, mean, std, seed))
    }

    /// Uniform samples in `[low, high)`, reproducible from `seed` like [`Tensor::randn`].
    pub fn rand(shape: &[u32], low: f32, high: f32, seed: u64) -> Result<Tensor> {
        Tensor::wrap(raw::Tensor::random_uniform(shape, low, high, seed))
    }

    // ---- Inspection -------------------------------------------------------------------

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> Vec<u32> {
        self.raw.shape()
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// Size of dimension `axis`; fails when the tensor has no such axis.
    pub fn dim(&self, axis: usize) -> Result<u32> {
        let shape = self.shape();
        shape.get(axis).copied().ok_or_else(|| {
            Error::msg(format!(
                "axis {axis} is out of range for a tensor of shape {shape:?}"
            ))
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> u32 {
        self.raw.numel()
    }

    /// Copies the data out, row-major. This is the one op that moves a whole tensor into
    /// the plugin: keep it for small results such as a loss.
    pub fn to_vec(&self) -> Vec<f32> {
        self.raw.to_list()
    }

    /// The value of a one-element tensor (any shape, e.g. `[]`, `[1]` or `[1, 1]`).
    pub fn item(&self) -> Result<f32> {
        // Checks the size first so a wrong call does not copy a large tensor out.
        let data = if self.numel() == 1 {
            self.to_vec()
        } else {
            Vec::new()
        };
        match data[..] {
            [value] => Ok(value),
            _ => Err(Error::msg(format!(
                "item() needs a one-element tensor, got shape {:?}",
                self.shape()
            ))),
        }
    }

    // ---- Linear algebra and shape -----------------------------------------------------

    /// Matrix product of two 2-D tensors: `[m, k] x [k, n] -> [m, n]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        Tensor::wrap(self.raw.matmul(&rhs.raw))
    }

    /// Transpose of a 2-D tensor.
    pub fn transpose(&self) -> Result<Tensor> {
        Tensor::wrap(self.raw.transpose())
    }

    /// Transpose of a 2-D tensor; short for [`Tensor::transpose`].
    pub fn t(&self) -> Result<Tensor> {
        self.transpose()
    }

    /// The same data with a new shape of the same number of elements.
    pub fn reshape(&self, shape: &[u32]) -> Result<Tensor> {
        Tensor::wrap(self.raw.reshape(shape))
    }

    // ---- Element-wise -----------------------------------------------------------------

    /// `self + rhs`, broadcasting (also `&a + &b`).
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        Tensor::wrap(self.raw.add(&rhs.raw))
    }

    /// `self - rhs`, broadcasting (also `&a - &b`).
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        Tensor::wrap(self.raw.sub(&rhs.raw))
    }

    /// `self * rhs` element-wise, broadcasting (also `&a * &b`).
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        Tensor::wrap(self.raw.mul(&rhs.raw))
    }

    /// `self / rhs` element-wise, broadcasting (also `&a / &b`).
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        Tensor::wrap(self.raw.div(&rhs.raw))
    }

    /// Adds `value` to every element (also `&a + value`).
    pub fn add_scalar(&self, value: f32) -> Tensor {
        Tensor::from_raw(self.raw.add_scalar(value))
    }

    /// Multiplies every element by `value` (also `&a * value`).
    pub fn mul_scalar(&self, value: f32) -> Tensor {
        Tensor::from_raw(self.raw.mul_scalar(value))
    }

    /// Applies a unary map to every element.
    pub fn map(&self, op: UnaryOp) -> Tensor {
        Tensor::from_raw(self.raw.map(op))
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Tensor {
        self.map(UnaryOp::Relu)
    }

    /// `1 / (1 + exp(-x))`.
    pub fn sigmoid(&self) -> Tensor {
        self.map(UnaryOp::Sigmoid)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.map(UnaryOp::Tanh)
    }

    /// `e^x`.
    pub fn exp(&self) -> Tensor {
        self.map(UnaryOp::Exp)
    }

    /// Natural logarithm.
    pub fn ln(&self) -> Tensor {
        self.map(UnaryOp::Log)
    }

    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.map(UnaryOp::Sqrt)
    }

    /// `-x` (also `-&a`).
    pub fn neg(&self) -> Tensor {
        self.map(UnaryOp::Neg)
    }

    /// `|x|`.
    pub fn abs(&self) -> Tensor {
        self.map(UnaryOp::Abs)
    }

    /// `x * x`.
    pub fn square(&self) -> Tensor {
        self.map(UnaryOp::Square)
    }

    /// 1 where `x > 0`, else 0: the derivative of [`Tensor::relu`] (0 at 0).
    pub fn relu_mask(&self) -> Tensor {
        self.map(UnaryOp::ReluMask)
    }

    // ---- Reductions -------------------------------------------------------------------

    /// Reduces along `axis`; `keepdims` keeps that axis with size 1.
    pub fn reduce(&self, op: ReduceOp, axis: u32, keepdims: bool) -> Result<Tensor> {
        Tensor::wrap(self.raw.reduce(op, axis, keepdims))
    }

    /// Sum along `axis`.
    pub fn sum(&self, axis: u32, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, axis, keepdims)
    }

    /// Mean along `axis`.
    pub fn mean(&self, axis: u32, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, axis, keepdims)
    }

    /// Maximum along `axis`.
    pub fn max(&self, axis: u32, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, axis, keepdims)
    }

    /// Minimum along `axis`.
    pub fn min(&self, axis: u32, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, axis, keepdims)
    }

    /// Index of the largest element along `axis`, as f32 (the first one on ties).
    pub fn argmax(&self, axis: u32, keepdims: bool) -> Result<Tensor> {
        Tensor::wrap(self.raw.argmax(axis, keepdims))
    }

    // ---- Classification helpers -------------------------------------------------------

    /// Softmax along `axis` (numerically stable).
    pub fn softmax(&self, axis: u32) -> Result<Tensor> {
        Tensor::wrap(self.raw.softmax(axis))
    }

    /// Log of the softmax along `axis` (numerically stable: use it for cross-entropy).
    pub fn log_softmax(&self, axis: u32) -> Result<Tensor> {
        Tensor::wrap(self.raw.log_softmax(axis))
    }

    /// One-hot rows from a 1-D tensor of class indices: `[n] -> [n, classes]`.
    pub fn one_hot(&self, classes: u32) -> Result<Tensor> {
        Tensor::wrap(self.raw.one_hot(classes))
    }

    // ---- Rows and concatenation -------------------------------------------------------

    /// Rows `start..end` of the outermost dimension (a mini-batch).
    pub fn slice_rows(&self, start: u32, end: u32) -> Result<Tensor> {
        Tensor::wrap(self.raw.slice_rows(start, end))
    }

    /// The rows at `indices`, in that order.
    pub fn gather_rows(&self, indices: &[u32]) -> Result<Tensor> {
        Tensor::wrap(self.raw.gather_rows(indices))
    }

    /// Concatenation with `rhs` along `axis`.
    pub fn concat(&self, rhs: &Tensor, axis: u32) -> Result<Tensor> {
        Tensor::wrap(self.raw.concat(&rhs.raw, axis))
    }
}

/// Gradients, computed by the host in reverse mode (ABI 0.2).
///
/// Each plugin call has its own tape on the host, freed when the call returns.
/// The host watches the parameters it passes to [`Trainer::step`](crate::Trainer::step)
/// (not the `opt.…` state) and, in training, to [`Model::forward`](crate::Model::forward);
/// [`Tensor::watch`] watches any other tensor.
#[cfg(not(feature = "abi-v0-1"))]
impl Tensor {
    /// A watched copy of this tensor, named `name`: [`Tensor::grad_of`] can
    /// differentiate with respect to it. Fails when `name` is already watched.
    pub fn watch(&self, name: &str) -> Result<Tensor> {
        Tensor::wrap(self.raw.watch(name))
    }

    /// The gradients of this one-element tensor (a loss) with respect to each
    /// entry of `params` that the host watches (the parameters it passed in), as
    /// params with the same names and shapes. Entries named `opt.…` (optimizer
    /// state) are skipped. Fails, naming the entries, when the loss does not
    /// depend on one of them or only through an op without a gradient
    /// (`argmax`, `one_hot`, `relu_mask`).
    ///
    /// ```no_run
    /// # fn demo(loss: &tensorlet_sdk::Tensor, params: &tensorlet_sdk::Params) -> tensorlet_sdk::Result<()> {
    /// let grads = loss.grad(params)?;
    /// let dw = grads.get("w")?; // same shape as params.get("w")?
    /// # let _ = dw; Ok(()) }
    /// ```
    pub fn grad(&self, params: &crate::Params) -> Result<crate::Params> {
        let names: Vec<&str> = params.names().filter(|n| !n.starts_with("opt.")).collect();
        if names.is_empty() {
            return Err(Error::msg(
                "grad: no parameters to differentiate with respect to (every entry is `opt.…` \
                 state, or there are none)",
            ));
        }
        self.grad_of(&names)
    }

    /// The gradients of this one-element tensor with respect to the watched
    /// tensors named `names` (every watched tensor when empty), in that order.
    pub fn grad_of(&self, names: &[&str]) -> Result<crate::Params> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.raw
            .grad(&names)
            .map(crate::Params::from)
            .map_err(Error::from)
    }
}

/// Shows the shape (asking the host), never the data.
impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape())
            .finish()
    }
}

/// Tensor-with-tensor operators for every mix of owned and borrowed operands.
macro_rules! tensor_ops {
    ($($trait:ident $method:ident),*) => {$(
        impl $trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(self, rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$method(self, &rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(&self, rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$method(&self, &rhs)
            }
        }
    )*};
}
tensor_ops!(Add add, Sub sub, Mul mul, Div div);

/// Tensor-with-scalar operators, owned or borrowed; `$body` maps (`t`, `v`) to a tensor.
macro_rules! scalar_ops {
    ($($trait:ident $method:ident |$t:ident, $v:ident| $body:expr;)*) => {$(
        impl $trait<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, $v: f32) -> Tensor {
                let $t = self;
                $body
            }
        }
        impl $trait<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, $v: f32) -> Tensor {
                let $t = &self;
                $body
            }
        }
    )*};
}
scalar_ops! {
    Add add |t, v| t.add_scalar(v);
    Sub sub |t, v| t.add_scalar(-v);
    Mul mul |t, v| t.mul_scalar(v);
    // Multiplies by the reciprocal, as the WIT has no divide-by-scalar.
    Div div |t, v| t.mul_scalar(1.0 / v);
}

/// `value + tensor`.
impl Add<&Tensor> for f32 {
    type Output = Tensor;
    fn add(self, rhs: &Tensor) -> Tensor {
        rhs.add_scalar(self)
    }
}

/// `value - tensor`.
impl Sub<&Tensor> for f32 {
    type Output = Tensor;
    fn sub(self, rhs: &Tensor) -> Tensor {
        rhs.neg().add_scalar(self)
    }
}

/// `value * tensor`.
impl Mul<&Tensor> for f32 {
    type Output = Tensor;
    fn mul(self, rhs: &Tensor) -> Tensor {
        rhs.mul_scalar(self)
    }
}

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
