//! The N-dimensional ops of ABI 0.2's `tensor`: i64 tensors, batched matmul,
//! any-axis shape ops, gathers, convolutions, pooling, normalizations,
//! dropout and losses, each differentiable on the host (see `wit/tensorlet.wit`).

use crate::raw;
use crate::{Error, Result, Tensor};

pub use raw::{Activation, BinaryOp, Dtype, Reduction, ScalarOp};

/// The options of [`Tensor::conv2d`]; the default is PyTorch's: stride 1, no
/// padding, dilation 1, one group. Pairs are (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Step between windows.
    pub stride: [u32; 2],
    /// Zeros added on each side.
    pub padding: [u32; 2],
    /// Spacing between kernel taps.
    pub dilation: [u32; 2],
    /// Channel groups: input and output channels must both divide by it.
    pub groups: u32,
}

impl Default for Conv2d {
    fn default() -> Self {
        Conv2d {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2d {
    /// The same padding on every side (`padding = 1` keeps a 3×3 conv's size).
    pub fn padding(self, p: u32) -> Self {
        Conv2d {
            padding: [p, p],
            ..self
        }
    }

    /// The same stride along both axes.
    pub fn stride(self, s: u32) -> Self {
        Conv2d {
            stride: [s, s],
            ..self
        }
    }
}

/// The options of [`Tensor::conv1d`]; the default is stride 1, no padding,
/// dilation 1, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1d {
    /// Step between windows.
    pub stride: u32,
    /// Zeros added on each side.
    pub padding: u32,
    /// Spacing between kernel taps.
    pub dilation: u32,
    /// Channel groups.
    pub groups: u32,
}

impl Default for Conv1d {
    fn default() -> Self {
        Conv1d {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// A pooling window of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window size.
    pub kernel: [u32; 2],
    /// Step between windows.
    pub stride: [u32; 2],
    /// Padding on each side.
    pub padding: [u32; 2],
}

impl Pool2d {
    /// A `k`×`k` window with stride `k` and no padding (PyTorch's default).
    pub fn new(k: u32) -> Self {
        Pool2d {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
        }
    }
}

/// The options of [`Tensor::cross_entropy`]; the default is PyTorch's: class
/// axis 1, no class weights, no smoothing, no ignored class, the mean.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropy<'a> {
    /// The axis of the logits that holds the classes.
    pub axis: u32,
    /// A weight per class, `[classes]`.
    pub weights: Option<&'a Tensor>,
    /// ε in `0..=1`.
    pub label_smoothing: f32,
    /// Targets equal to this count for nothing (padding).
    pub ignore_index: Option<i64>,
    /// How per-sample losses combine.
    pub reduction: Reduction,
}

impl Default for CrossEntropy<'_> {
    fn default() -> Self {
        CrossEntropy {
            axis: 1,
            weights: None,
            label_smoothing: 0.0,
            ignore_index: None,
            reduction: Reduction::Mean,
        }
    }
}

/// Running statistics and options of [`Tensor::batch_norm`].
#[derive(Clone, Copy, Debug)]
pub struct BatchNorm<'a> {
    /// Scale per channel, `[channels]`.
    pub weight: Option<&'a Tensor>,
    /// Shift per channel, `[channels]`.
    pub bias: Option<&'a Tensor>,
    /// The running mean: a `state.…` param as `forward` received it.
    pub running_mean: &'a Tensor,
    /// The running variance: a `state.…` param as `forward` received it.
    pub running_var: &'a Tensor,
    /// Weight of a batch in the running statistics (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance (PyTorch's 1e-5).
    pub eps: f32,
}

fn wrap(r: std::result::Result<raw::Tensor, String>) -> Result<Tensor> {
    r.map(Tensor::from_raw).map_err(Error::from)
}

fn pair(p: [u32; 2]) -> (u32, u32) {
    (p[0], p[1])
}

/// N-dimensional ops (ABI 0.2). Every op differentiates on the host; shape,
/// dtype and index errors name the op and the offending values.
impl Tensor {
    // ---- dtypes -----------------------------------------------------------------------

    /// An i64 tensor of `shape` holding `data` (class indices, token ids).
    pub fn from_i64(shape: &[u32], data: &[i64]) -> Result<Tensor> {
        wrap(raw::Tensor::from_i64_list(shape, data))
    }

    /// `0, 1, …, n - 1` as an i64 tensor `[n]` (positions).
    pub fn arange(n: u32) -> Result<Tensor> {
        let data: Vec<i64> = (0..i64::from(n)).collect();
        Tensor::from_i64(&[n], &data)
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.as_raw().dtype()
    }

    /// The elements as i64 (an f32 element must be an integer).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        self.as_raw().to_i64_list().map_err(Error::from)
    }

    /// This tensor as `dtype`.
    pub fn cast(&self, dtype: Dtype) -> Result<Tensor> {
        wrap(self.as_raw().cast(dtype))
    }

    // ---- Linear algebra and element-wise ------------------------------------------------

    /// Batched matrix product over the last two axes, transposing either
    /// operand's last two axes first: `q.matmul_t(&k, false, true)` is `q·kᵀ`.
    pub fn matmul_t(
        &self,
        rhs: &Tensor,
        transpose_self: bool,
        transpose_rhs: bool,
    ) -> Result<Tensor> {
        wrap(
            self.as_raw()
                .matmul_transposed(rhs.as_raw(), transpose_self, transpose_rhs),
        )
    }

    /// An element-wise binary op with broadcasting.
    pub fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        wrap(self.as_raw().binary(op, rhs.as_raw()))
    }

    /// Element-wise maximum.
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Maximum, rhs)
    }

    /// Element-wise minimum.
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Minimum, rhs)
    }

    /// `selfʳʰˢ` element-wise.
    pub fn pow(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Pow, rhs)
    }

    /// 1 where `self < rhs`, else 0 (the other comparisons: [`Tensor::binary`]).
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Lt, rhs)
    }

    /// 1 where `self == rhs`, else 0.
    pub fn eq_mask(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Eq, rhs)
    }

    /// An op with a scalar on every element.
    pub fn scalar_op(&self, op: ScalarOp, value: f32) -> Result<Tensor> {
        wrap(self.as_raw().scalar(op, value))
    }

    /// `selfᵉ` for a scalar exponent.
    pub fn powf(&self, exponent: f32) -> Result<Tensor> {
        self.scalar_op(ScalarOp::Pow, exponent)
    }

    /// Leaky ReLU with `slope` below zero.
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        self.scalar_op(ScalarOp::LeakyRelu, slope)
    }

    /// An activation on every element.
    pub fn activate(&self, op: Activation) -> Result<Tensor> {
        wrap(self.as_raw().activate(op))
    }

    /// GELU, `x·Φ(x)` (PyTorch's default).
    pub fn gelu(&self) -> Result<Tensor> {
        self.activate(Activation::Gelu)
    }

    /// SiLU, `x·sigmoid(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        self.activate(Activation::Silu)
    }

    /// `ln(1 + eˣ)`.
    pub fn softplus(&self) -> Result<Tensor> {
        self.activate(Activation::Softplus)
    }

    /// Every element limited to `low..=high`.
    pub fn clamp(&self, low: f32, high: f32) -> Result<Tensor> {
        wrap(self.as_raw().clamp(low, high))
    }

    /// `self` where `mask` is nonzero, `otherwise` elsewhere (broadcasting).
    pub fn select(&self, mask: &Tensor, otherwise: &Tensor) -> Result<Tensor> {
        wrap(self.as_raw().select(mask.as_raw(), otherwise.as_raw()))
    }

    /// `value` where `mask` is nonzero (a causal mask before a softmax).
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        wrap(self.as_raw().masked_fill(mask.as_raw(), value))
    }

    /// Running sums along `axis` (from the end when `reverse`).
    pub fn cumsum(&self, axis: u32, reverse: bool) -> Result<Tensor> {
        wrap(self.as_raw().cumsum(axis, reverse))
    }

    // ---- Shape ------------------------------------------------------------------------

    /// The axes reordered: output axis i is input axis `axes[i]`.
    pub fn permute(&self, axes: &[u32]) -> Result<Tensor> {
        wrap(self.as_raw().permute(axes))
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis: u32, start: u32, end: u32) -> Result<Tensor> {
        self.slice_step(axis, start, end, 1)
    }

    /// Every `step`-th element of `start..end` along `axis`.
    pub fn slice_step(&self, axis: u32, start: u32, end: u32, step: u32) -> Result<Tensor> {
        wrap(self.as_raw().slice(axis, start, end, step))
    }

    /// `parts` joined along `axis`.
    pub fn concat_all(parts: &[&Tensor], axis: u32) -> Result<Tensor> {
        let raw: Vec<&raw::Tensor> = parts.iter().map(|t| t.as_raw()).collect();
        wrap(raw::Tensor::concat_all(&raw, axis))
    }

    /// Padded with `value`; `pads[i]` is (before, after) for axis i, one pair
    /// per axis.
    pub fn pad(&self, pads: &[(u32, u32)], value: f32) -> Result<Tensor> {
        wrap(self.as_raw().pad(pads, value))
    }

    /// Axes `start..=end` merged into one.
    pub fn flatten(&self, start: u32, end: u32) -> Result<Tensor> {
        wrap(self.as_raw().flatten(start, end))
    }

    /// Axis `axis` (of size 1) removed.
    pub fn squeeze(&self, axis: u32) -> Result<Tensor> {
        wrap(self.as_raw().squeeze(axis))
    }

    /// A new axis of size 1 at `axis`.
    pub fn unsqueeze(&self, axis: u32) -> Result<Tensor> {
        wrap(self.as_raw().unsqueeze(axis))
    }

    /// Broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[u32]) -> Result<Tensor> {
        wrap(self.as_raw().broadcast_to(shape))
    }

    // ---- Indexing ---------------------------------------------------------------------

    /// The entries at the 1-D i64 `indices` along `axis`.
    pub fn index_select(&self, axis: u32, indices: &Tensor) -> Result<Tensor> {
        wrap(self.as_raw().index_select(axis, indices.as_raw()))
    }

    /// Rows of this table `[vocab, dim]` at the i64 `ids`: `ids.shape + [dim]`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        wrap(self.as_raw().embedding(ids.as_raw()))
    }

    /// PyTorch's `gather` along `axis` with i64 `indices` of the same rank.
    pub fn gather(&self, axis: u32, indices: &Tensor) -> Result<Tensor> {
        wrap(self.as_raw().gather(axis, indices.as_raw()))
    }

    /// This tensor plus `src` added at `indices` along `axis` (`scatter_add`).
    pub fn scatter_add(&self, axis: u32, indices: &Tensor, src: &Tensor) -> Result<Tensor> {
        wrap(
            self.as_raw()
                .scatter_add(axis, indices.as_raw(), src.as_raw()),
        )
    }

    /// This tensor plus the slices of `src` added at 1-D `indices` (`index_add`).
    pub fn index_add(&self, axis: u32, indices: &Tensor, src: &Tensor) -> Result<Tensor> {
        wrap(
            self.as_raw()
                .index_add(axis, indices.as_raw(), src.as_raw()),
        )
    }

    // ---- Layers -----------------------------------------------------------------------

    /// 2-D convolution of NCHW input with weight `[out, in / groups, kh, kw]`.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, o: Conv2d) -> Result<Tensor> {
        let options = raw::Conv2dOptions {
            stride: pair(o.stride),
            padding: pair(o.padding),
            dilation: pair(o.dilation),
            groups: o.groups,
        };
        wrap(
            self.as_raw()
                .conv2d(weight.as_raw(), bias.map(Tensor::as_raw), options),
        )
    }

    /// 1-D convolution of `[batch, channels, length]` with weight `[out, in / groups, k]`.
    pub fn conv1d(&self, weight: &Tensor, bias: Option<&Tensor>, o: Conv1d) -> Result<Tensor> {
        let options = raw::Conv1dOptions {
            stride: o.stride,
            padding: o.padding,
            dilation: o.dilation,
            groups: o.groups,
        };
        wrap(
            self.as_raw()
                .conv1d(weight.as_raw(), bias.map(Tensor::as_raw), options),
        )
    }

    fn pool_options(p: Pool2d) -> raw::Pool2dOptions {
        raw::Pool2dOptions {
            kernel: pair(p.kernel),
            stride: pair(p.stride),
            padding: pair(p.padding),
        }
    }

    /// Maximum over each window of an NCHW tensor.
    pub fn max_pool2d(&self, p: Pool2d) -> Result<Tensor> {
        wrap(self.as_raw().max_pool2d(Tensor::pool_options(p)))
    }

    /// Mean over each window of an NCHW tensor.
    pub fn avg_pool2d(&self, p: Pool2d) -> Result<Tensor> {
        wrap(self.as_raw().avg_pool2d(Tensor::pool_options(p)))
    }

    /// `[batch, channels, ...] -> [batch, channels]`.
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        wrap(self.as_raw().global_avg_pool())
    }

    /// Normalized over the last `axes` axes, then scaled and shifted.
    pub fn layer_norm(
        &self,
        axes: u32,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        wrap(self.as_raw().layer_norm(
            axes,
            weight.map(Tensor::as_raw),
            bias.map(Tensor::as_raw),
            eps,
        ))
    }

    /// Batch normalization per channel of `[batch, channels, ...]`: with the
    /// batch's statistics when `train` (the host keeps the running ones,
    /// `state.…` params, updated), else with the running ones.
    pub fn batch_norm(&self, bn: &BatchNorm<'_>, train: bool) -> Result<Tensor> {
        wrap(self.as_raw().batch_norm(
            bn.weight.map(Tensor::as_raw),
            bn.bias.map(Tensor::as_raw),
            bn.running_mean.as_raw(),
            bn.running_var.as_raw(),
            train,
            bn.momentum,
            bn.eps,
        ))
    }

    /// Each element zeroed with probability `p`, the rest scaled by
    /// `1/(1 - p)`; the host mixes `seed` with the training step.
    pub fn dropout(&self, p: f32, seed: u64) -> Result<Tensor> {
        wrap(self.as_raw().dropout(p, seed))
    }

    // ---- Losses -----------------------------------------------------------------------

    /// Cross-entropy of these logits against class indices or probabilities.
    pub fn cross_entropy(&self, target: &Tensor, o: &CrossEntropy<'_>) -> Result<Tensor> {
        wrap(self.as_raw().cross_entropy(
            target.as_raw(),
            o.axis,
            o.weights.map(Tensor::as_raw),
            o.label_smoothing,
            o.ignore_index,
            o.reduction,
        ))
    }

    /// Binary cross-entropy of these logits against probabilities.
    pub fn bce_with_logits(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        wrap(self.as_raw().bce_with_logits(target.as_raw(), reduction))
    }

    /// Squared error against `target`.
    pub fn mse_loss(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        wrap(self.as_raw().mse_loss(target.as_raw(), reduction))
    }

    /// Absolute error against `target`.
    pub fn l1_loss(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        wrap(self.as_raw().l1_loss(target.as_raw(), reduction))
    }

    /// Huber loss against `target` with threshold `delta`.
    pub fn huber_loss(&self, target: &Tensor, delta: f32, reduction: Reduction) -> Result<Tensor> {
        wrap(self.as_raw().huber_loss(target.as_raw(), delta, reduction))
    }
}
