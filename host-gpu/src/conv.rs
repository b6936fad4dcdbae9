//! Convolutions and pooling over NCHW tensors: options, the geometry they
//! resolve to, and their validation.

use crate::dtype::need_f32;
use crate::{BinaryOp, Device, ReduceOp, Shape, Tensor, TensorError};

/// Options of [`Device::conv2d`]; `Conv2d::default()` is stride 1, no
/// padding, no dilation, one group. Each pair is (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Step between windows (at least 1).
    pub stride: [u32; 2],
    /// Zeros added on both sides.
    pub padding: [u32; 2],
    /// Step between the kernel's taps (at least 1; 1 is a plain kernel).
    pub dilation: [u32; 2],
    /// Channel groups: input and output channels split into this many
    /// groups, each convolved with its own filters (channels = groups is
    /// depthwise).
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

/// Options of [`Device::conv1d`]; the default is stride 1, no padding, no
/// dilation, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1d {
    /// Step between windows (at least 1).
    pub stride: u32,
    /// Zeros added on both sides.
    pub padding: u32,
    /// Step between the kernel's taps (at least 1).
    pub dilation: u32,
    /// Channel groups (see [`Conv2d::groups`]).
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

impl Conv1d {
    fn as_2d(self) -> Conv2d {
        Conv2d {
            stride: [1, self.stride],
            padding: [0, self.padding],
            dilation: [1, self.dilation],
            groups: self.groups,
        }
    }
}

/// Options of [`Device::max_pool2d`] and [`Device::avg_pool2d`]; each pair
/// is (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window size (at least 1).
    pub kernel: [u32; 2],
    /// Step between windows (at least 1).
    pub stride: [u32; 2],
    /// Padding on both sides, at most half the window.
    pub padding: [u32; 2],
}

impl Pool2d {
    /// Windows of `kernel`, side by side (stride = kernel), no padding.
    pub fn new(kernel: [u32; 2]) -> Self {
        Pool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
        }
    }
}

/// A validated 2-D convolution: input `[n, c, h, w]`, weights
/// `[o, c / groups, kh, kw]`, output `[n, o, ho, wo]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs, reason = "the fields are the dimensions named above")]
pub struct ConvGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeometry {
    /// Rows of one group's unfolded input (im2col): `c / groups · kh · kw`.
    pub fn patch(&self) -> usize {
        self.c / self.groups * self.kh * self.kw
    }

    /// Output positions per image and channel: `ho · wo`.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of the input, the weights and the output.
    pub fn lens(&self) -> (usize, usize, usize) {
        (
            self.n * self.c * self.h * self.w,
            self.o * self.patch(),
            self.n * self.o * self.positions(),
        )
    }
}

/// A validated 2-D pooling: input `[n, c, h, w]`, output `[n, c, ho, wo]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs, reason = "the fields are the dimensions named above")]
pub struct PoolGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub ho: usize,
    pub wo: usize,
}

impl PoolGeometry {
    /// Elements of the input and the output.
    pub fn lens(&self) -> (usize, usize) {
        (
            self.n * self.c * self.h * self.w,
            self.n * self.c * self.ho * self.wo,
        )
    }
}

const AXES_2D: [&str; 2] = ["height", "width"];

/// Output size along one axis, or an error when the (dilated) kernel is
/// larger than the padded input. Computed in u64: `usize` may be 32 bits.
fn out_size(
    op: &'static str,
    axis: &str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize, TensorError> {
    let [input, kernel, stride, padding, dilation] =
        [input, kernel, stride, padding, dilation].map(|v| v as u64);
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    // Kernels index the padded input with 32-bit signed integers.
    let limit = i32::MAX as u64;
    if padded > limit || span > limit {
        return Err(TensorError::too_large(
            op,
            format!(
                "the padded input ({input} + 2·{padding}) or the kernel's span ({span}) along \
                 {axis} is more than {limit}"
            ),
        ));
    }
    if span > padded {
        let dilated = if dilation > 1 {
            format!(" (dilated: {span})")
        } else {
            String::new()
        };
        return Err(TensorError::shape(
            op,
            format!(
                "kernel size {kernel}{dilated} along {axis} is larger than the padded input \
                 ({input} + 2·{padding} = {padded})"
            ),
        ));
    }
    Ok(((padded - span) / stride + 1) as usize)
}

fn at_least_one(op: &'static str, what: &str, v: &[u32]) -> Result<(), TensorError> {
    if v.contains(&0) {
        return Err(TensorError::argument(
            op,
            format!("{what} must be at least 1, got {v:?}"),
        ));
    }
    Ok(())
}

fn conv_geometry(
    op: &'static str,
    x: &Shape,
    w: &Shape,
    p: &Conv2d,
    axes: [&str; 2],
) -> Result<ConvGeometry, TensorError> {
    let &[n, c, h, wd] = x.dims() else {
        return Err(TensorError::shape(
            op,
            format!("needs input [batch, channels, height, width], got shape {x}"),
        ));
    };
    let &[o, cg, kh, kw] = w.dims() else {
        return Err(TensorError::shape(
            op,
            format!(
                "needs weights [out channels, in channels / groups, kernel height, kernel \
                 width], got shape {w}"
            ),
        ));
    };
    at_least_one(op, "stride", &p.stride)?;
    at_least_one(op, "dilation", &p.dilation)?;
    let g = p.groups as usize;
    if g == 0 {
        return Err(TensorError::argument(
            op,
            "groups must be at least 1, got 0",
        ));
    }
    if c % g != 0 || o % g != 0 {
        return Err(TensorError::shape(
            op,
            format!(
                "{g} groups must divide the input channels ({c}) and the output channels ({o})"
            ),
        ));
    }
    if cg != c / g {
        return Err(TensorError::shape(
            op,
            format!(
                "weights of shape {w} take {cg} channels per group, but input of shape {x} in \
                 {g} group(s) has {} per group",
                c / g
            ),
        ));
    }
    if kh == 0 || kw == 0 {
        return Err(TensorError::shape(
            op,
            format!("weights of shape {w} have an empty kernel"),
        ));
    }
    let s = p.stride.map(|v| v as usize);
    let pd = p.padding.map(|v| v as usize);
    let d = p.dilation.map(|v| v as usize);
    let ho = out_size(op, axes[0], h, kh, s[0], pd[0], d[0])?;
    let wo = out_size(op, axes[1], wd, kw, s[1], pd[1], d[1])?;
    Shape::new(op, vec![n, o, ho, wo])?;
    // One image's unfolded input (im2col), even when there are no images.
    Shape::new(op, vec![c / g * kh * kw, ho, wo])?;
    Ok(ConvGeometry {
        n,
        c,
        h,
        w: wd,
        o,
        kh,
        kw,
        stride: s,
        padding: pd,
        dilation: d,
        groups: g,
        ho,
        wo,
    })
}

fn pool_geometry(op: &'static str, x: &Shape, p: &Pool2d) -> Result<PoolGeometry, TensorError> {
    let &[n, c, h, w] = x.dims() else {
        return Err(TensorError::shape(
            op,
            format!("needs input [batch, channels, height, width], got shape {x}"),
        ));
    };
    at_least_one(op, "kernel", &p.kernel)?;
    at_least_one(op, "stride", &p.stride)?;
    if h == 0 || w == 0 {
        return Err(TensorError::shape(
            op,
            format!("input of shape {x} has no positions to pool"),
        ));
    }
    if (0..2).any(|i| 2 * p.padding[i] > p.kernel[i]) {
        return Err(TensorError::argument(
            op,
            format!(
                "padding {:?} is more than half the kernel {:?}",
                p.padding, p.kernel
            ),
        ));
    }
    let k = p.kernel.map(|v| v as usize);
    let s = p.stride.map(|v| v as usize);
    let pd = p.padding.map(|v| v as usize);
    let ho = out_size(op, AXES_2D[0], h, k[0], s[0], pd[0], 1)?;
    let wo = out_size(op, AXES_2D[1], w, k[1], s[1], pd[1], 1)?;
    Shape::new(op, vec![n, c, ho, wo])?;
    Shape::new(op, vec![ho, wo])?;
    Ok(PoolGeometry {
        n,
        c,
        h,
        w,
        kernel: k,
        stride: s,
        padding: pd,
        ho,
        wo,
    })
}

pub(crate) fn check_bias(
    op: &'static str,
    bias: Option<&Tensor>,
    o: usize,
) -> Result<(), TensorError> {
    if let Some(b) = bias {
        need_f32(op, b)?;
        if b.shape().dims() != [o] {
            return Err(TensorError::shape(
                op,
                format!(
                    "bias of shape {} does not fit {o} output channels",
                    b.shape()
                ),
            ));
        }
    }
    Ok(())
}

impl Device {
    /// The geometry of `conv2d(x, w, p)`, or why it is invalid.
    pub fn conv2d_geometry(
        &self,
        x: &Tensor,
        w: &Tensor,
        p: &Conv2d,
    ) -> Result<ConvGeometry, TensorError> {
        need_f32("conv2d", x)?;
        need_f32("conv2d", w)?;
        conv_geometry("conv2d", x.shape(), w.shape(), p, AXES_2D)
    }

    /// 2-D convolution (cross-correlation, as in PyTorch) of `x`
    /// `[batch, in, height, width]` with `w` `[out, in / groups, kh, kw]`,
    /// plus `bias` `[out]` when given: `[batch, out, ho, wo]`, where
    /// `ho = (height + 2·padding - dilation·(kh - 1) - 1) / stride + 1`.
    pub fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2d,
    ) -> Result<Tensor, TensorError> {
        let g = self.conv2d_geometry(x, w, p)?;
        check_bias("conv2d", bias, g.o)?;
        self.conv_with(&g, x, w, bias)
    }

    /// 1-D convolution of `x` `[batch, in, length]` with `w`
    /// `[out, in / groups, k]`, plus `bias` `[out]`: `[batch, out, lo]`.
    pub fn conv1d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv1d,
    ) -> Result<Tensor, TensorError> {
        let (g, x2, w2) = self.conv1d_geometry(x, w, p)?;
        check_bias("conv1d", bias, g.o)?;
        let y = self.conv_with(&g, &x2, &w2, bias)?;
        self.reshape(&y, &[g.n as u32, g.o as u32, g.wo as u32])
    }

    /// The geometry of `conv1d` as a 2-D convolution of height 1, with the
    /// input and weights reshaped to match.
    pub(crate) fn conv1d_geometry(
        &self,
        x: &Tensor,
        w: &Tensor,
        p: &Conv1d,
    ) -> Result<(ConvGeometry, Tensor, Tensor), TensorError> {
        const OP: &str = "conv1d";
        need_f32(OP, x)?;
        need_f32(OP, w)?;
        let &[n, c, l] = x.shape().dims() else {
            return Err(TensorError::shape(
                OP,
                format!(
                    "needs input [batch, channels, length], got shape {}",
                    x.shape()
                ),
            ));
        };
        let &[o, cg, k] = w.shape().dims() else {
            return Err(TensorError::shape(
                OP,
                format!(
                    "needs weights [out channels, in channels / groups, kernel], got shape {}",
                    w.shape()
                ),
            ));
        };
        let x2 = self.reshape(x, &[n as u32, c as u32, 1, l as u32])?;
        let w2 = self.reshape(w, &[o as u32, cg as u32, 1, k as u32])?;
        let g = conv_geometry(OP, x2.shape(), w2.shape(), &p.as_2d(), ["height", "length"])
            .map_err(|e| match e {
                // Messages name the 1-D shapes the caller gave.
                TensorError::Shape { op, message } => TensorError::Shape {
                    op,
                    message: message
                        .replace(&x2.shape().to_string(), &x.shape().to_string())
                        .replace(&w2.shape().to_string(), &w.shape().to_string()),
                },
                other => other,
            })?;
        Ok((g, x2, w2))
    }

    /// The convolution of validated operands, plus the bias.
    pub(crate) fn conv_with(
        &self,
        g: &ConvGeometry,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor, TensorError> {
        let shape = Shape::new("conv2d", vec![g.n, g.o, g.ho, g.wo])?;
        let y = self.make(shape, self.backend.conv2d(x.storage(), w.storage(), g));
        match bias {
            None => Ok(y),
            Some(b) => {
                let b = self.reshape(b, &[g.o as u32, 1, 1])?;
                self.binary(BinaryOp::Add, &y, &b)
            }
        }
    }

    /// The gradient of a convolution with respect to its input `[n, c, h, w]`.
    pub(crate) fn conv2d_grad_input(
        &self,
        dy: &Tensor,
        w: &Tensor,
        g: &ConvGeometry,
    ) -> Result<Tensor, TensorError> {
        let shape = Shape::new("conv2d", vec![g.n, g.c, g.h, g.w])?;
        let s = self.backend.conv2d_grad_input(dy.storage(), w.storage(), g);
        Ok(self.make(shape, s))
    }

    /// The gradient of a convolution with respect to its weights.
    pub(crate) fn conv2d_grad_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        g: &ConvGeometry,
    ) -> Result<Tensor, TensorError> {
        let shape = Shape::new("conv2d", vec![g.o, g.c / g.groups, g.kh, g.kw])?;
        let s = self
            .backend
            .conv2d_grad_weight(x.storage(), dy.storage(), g);
        Ok(self.make(shape, s))
    }

    /// The geometry of a 2-D pooling of `x`, or why it is invalid.
    pub fn pool2d_geometry(
        &self,
        op: &'static str,
        x: &Tensor,
        p: &Pool2d,
    ) -> Result<PoolGeometry, TensorError> {
        need_f32(op, x)?;
        pool_geometry(op, x.shape(), p)
    }

    /// Max pooling of `x` `[batch, channels, height, width]`: the largest
    /// element of each window (padding never wins).
    pub fn max_pool2d(&self, x: &Tensor, p: &Pool2d) -> Result<Tensor, TensorError> {
        Ok(self.max_pool2d_with_indices(x, p)?.0)
    }

    /// [`Device::max_pool2d`], and where each maximum is: an i64 tensor of
    /// the output's shape holding positions `row · width + column` within
    /// the input's plane (the first maximum in window order).
    pub fn max_pool2d_with_indices(
        &self,
        x: &Tensor,
        p: &Pool2d,
    ) -> Result<(Tensor, Tensor), TensorError> {
        let g = self.pool2d_geometry("max-pool2d", x, p)?;
        let shape = Shape::new("max-pool2d", vec![g.n, g.c, g.ho, g.wo])?;
        let (v, i) = self.backend.max_pool2d(x.storage(), &g);
        Ok((self.make(shape.clone(), v), self.make(shape, i)))
    }

    /// Average pooling of `x` `[batch, channels, height, width]`; padding
    /// counts as zeros, so every window divides by kh·kw (PyTorch's
    /// `count_include_pad=True`).
    pub fn avg_pool2d(&self, x: &Tensor, p: &Pool2d) -> Result<Tensor, TensorError> {
        let g = self.pool2d_geometry("avg-pool2d", x, p)?;
        let shape = Shape::new("avg-pool2d", vec![g.n, g.c, g.ho, g.wo])?;
        Ok(self.make(shape, self.backend.avg_pool2d(x.storage(), &g)))
    }

    /// The gradient of max pooling, given the positions of the maxima.
    pub(crate) fn max_pool2d_grad(
        &self,
        dy: &Tensor,
        idx: &Tensor,
        g: &PoolGeometry,
    ) -> Result<Tensor, TensorError> {
        let shape = Shape::new("max-pool2d", vec![g.n, g.c, g.h, g.w])?;
        let s = self.backend.max_pool2d_grad(dy.storage(), idx.storage(), g);
        Ok(self.make(shape, s))
    }

    /// The gradient of average pooling.
    pub(crate) fn avg_pool2d_grad(
        &self,
        dy: &Tensor,
        g: &PoolGeometry,
    ) -> Result<Tensor, TensorError> {
        let shape = Shape::new("avg-pool2d", vec![g.n, g.c, g.h, g.w])?;
        Ok(self.make(shape, self.backend.avg_pool2d_grad(dy.storage(), g)))
    }

    /// Global average pooling: the mean over all positions of
    /// `[batch, channels, ...]` (rank 3 or more), giving `[batch, channels]`.
    pub fn global_avg_pool(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        let (n, c, s) = global_pool_dims(x)?;
        let flat = self.reshape(x, &[n, c, s])?;
        self.reduce(ReduceOp::Mean, &flat, 2, false)
    }
}

/// `[batch, channels, positions]` of a global pooling's input.
pub(crate) fn global_pool_dims(x: &Tensor) -> Result<(u32, u32, u32), TensorError> {
    const OP: &str = "global-avg-pool";
    need_f32(OP, x)?;
    let d = x.shape().dims();
    if d.len() < 3 {
        return Err(TensorError::shape(
            OP,
            format!(
                "needs input [batch, channels, positions...] of rank 3 or more, got shape {}",
                x.shape()
            ),
        ));
    }
    let s: usize = d[2..].iter().product();
    if s == 0 {
        return Err(TensorError::shape(
            OP,
            format!("input of shape {} has no positions to average", x.shape()),
        ));
    }
    Ok((d[0] as u32, d[1] as u32, s as u32))
}
