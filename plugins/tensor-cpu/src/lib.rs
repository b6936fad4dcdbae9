//! `tensorlet:ml/tensor` implemented inside WebAssembly.
//!
//! The host's CPU reference backend ([`tensorlet_gpu::Device::cpu`]) compiled for
//! `wasm32-wasip2` and exported as the `tensor` resource, so a model's plugins can
//! be composed with it into one component that needs no tensorlet host
//! (`tensorlet export --wasi-http`). Validation and kernels are the host's own
//! code, so results and error messages match `tensorlet serve` on the CPU. The
//! forward ops only: an exported model predicts, so `watch` and `grad` fail.

use std::sync::OnceLock;

use tensorlet_gpu::autodiff::{CrossEntropy, NormStats, Reduction, Tape, Var};
use tensorlet_gpu::{
    BinaryOp, Conv1d, Conv2d, DType, Device, Distribution, Pool2d, ReduceOp, ScalarOp, Tensor,
    TensorError,
};

wit_bindgen::generate!({
    path: ["../../wit", "../../wit/export"],
    world: "tensorlet:exported/tensor-provider@0.1.0",
});

use exports::tensorlet::ml::tensor::{
    self as wit, Guest, GuestTensor, Shape, Tensor as Handle, TensorBorrow,
};

/// The one CPU device of this instance.
fn device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(Device::cpu)
}

/// The representation behind a `tensor` handle.
struct CpuTensor(Tensor);

fn wrap(r: Result<Tensor, TensorError>) -> Result<Handle, String> {
    r.map(|t| Handle::new(CpuTensor(t)))
        .map_err(|e| e.to_string())
}

/// An op the interface declares infallible, on `t` as f32 (the interface
/// converts an i64 tensor): an error is a bug (a trap).
fn total(t: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor, TensorError>) -> Handle {
    let r = f(&device().to_f32(t));
    Handle::new(CpuTensor(
        r.expect("the element-wise maps take every f32 tensor"),
    ))
}

/// An op composed of tape ops (layers, losses, the N-D ops' shared
/// validation), on a tape that records nothing: every tensor here is a
/// constant, as an exported model only predicts.
fn taped(f: impl FnOnce(&mut Tape) -> Result<Var, TensorError>) -> Result<Handle, String> {
    let mut tape = Tape::new(device().clone());
    wrap(f(&mut tape).map(Var::into_value))
}

fn var(t: &Tensor) -> Var {
    Var::constant(t.clone())
}

fn opt_var(b: &Option<TensorBorrow<'_>>) -> Option<Var> {
    b.as_ref().map(|b| var(inner(b)))
}

fn inner<'a>(b: &'a TensorBorrow<'_>) -> &'a Tensor {
    &b.get::<CpuTensor>().0
}

impl CpuTensor {
    fn binary(&self, op: BinaryOp, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        wrap(device().binary(op, &self.0, inner(&rhs)))
    }

    /// `scatter-add` and `index-add`: this tensor plus `src` added at
    /// `indices` into zeros of this shape.
    fn add_at(
        &self,
        indices: &TensorBorrow<'_>,
        src: &TensorBorrow<'_>,
        f: impl FnOnce(&mut Tape, &[u32], &Var, &Var) -> Result<Var, TensorError>,
    ) -> Result<Handle, String> {
        taped(|t| {
            let shape = self.0.shape().to_u32();
            let added = f(t, &shape, &var(inner(indices)), &var(inner(src)))?;
            t.binary(BinaryOp::Add, &var(&self.0), &added)
        })
    }
}

struct Provider;

impl Guest for Provider {
    type Tensor = CpuTensor;
}

impl From<wit::UnaryOp> for tensorlet_gpu::UnaryOp {
    fn from(op: wit::UnaryOp) -> Self {
        use tensorlet_gpu::UnaryOp as U;
        match op {
            wit::UnaryOp::Relu => U::Relu,
            wit::UnaryOp::Sigmoid => U::Sigmoid,
            wit::UnaryOp::Tanh => U::Tanh,
            wit::UnaryOp::Exp => U::Exp,
            wit::UnaryOp::Log => U::Log,
            wit::UnaryOp::Sqrt => U::Sqrt,
            wit::UnaryOp::Neg => U::Neg,
            wit::UnaryOp::Abs => U::Abs,
            wit::UnaryOp::Square => U::Square,
            wit::UnaryOp::ReluMask => U::ReluMask,
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

impl GuestTensor for CpuTensor {
    fn from_list(shape: Shape, data: Vec<f32>) -> Result<Handle, String> {
        wrap(device().from_vec(&shape, data))
    }

    fn zeros(shape: Shape) -> Result<Handle, String> {
        wrap(device().fill(&shape, 0.0))
    }

    fn fill(shape: Shape, value: f32) -> Result<Handle, String> {
        wrap(device().fill(&shape, value))
    }

    fn random_normal(shape: Shape, mean: f32, std: f32, seed: u64) -> Result<Handle, String> {
        wrap(device().random(&shape, Distribution::Normal { mean, std }, seed))
    }

    fn random_uniform(shape: Shape, low: f32, high: f32, seed: u64) -> Result<Handle, String> {
        wrap(device().random(&shape, Distribution::Uniform { low, high }, seed))
    }

    fn shape(&self) -> Shape {
        self.0.shape().to_u32()
    }

    fn numel(&self) -> u32 {
        self.0.numel() as u32
    }

    fn to_list(&self) -> Vec<f32> {
        // Only a failed GPU makes a read fail; this device is the CPU's.
        device()
            .to_vec(&self.0)
            .expect("the CPU backend reads its own tensors")
    }

    fn matmul(&self, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        wrap(device().matmul(&self.0, inner(&rhs)))
    }

    fn transpose(&self) -> Result<Handle, String> {
        wrap(device().transpose(&self.0))
    }

    fn reshape(&self, shape: Shape) -> Result<Handle, String> {
        wrap(device().reshape(&self.0, &shape))
    }

    fn add(&self, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        self.binary(BinaryOp::Add, rhs)
    }

    fn sub(&self, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        self.binary(BinaryOp::Sub, rhs)
    }

    fn mul(&self, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        self.binary(BinaryOp::Mul, rhs)
    }

    fn div(&self, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        self.binary(BinaryOp::Div, rhs)
    }

    fn add_scalar(&self, value: f32) -> Handle {
        total(&self.0, |t| device().scalar(ScalarOp::Add, t, value))
    }

    fn mul_scalar(&self, value: f32) -> Handle {
        total(&self.0, |t| device().scalar(ScalarOp::Mul, t, value))
    }

    fn map(&self, op: wit::UnaryOp) -> Handle {
        total(&self.0, |t| device().unary(op.into(), t))
    }

    fn reduce(&self, op: wit::ReduceOp, axis: u32, keepdims: bool) -> Result<Handle, String> {
        wrap(device().reduce(op.into(), &self.0, axis, keepdims))
    }

    fn argmax(&self, axis: u32, keepdims: bool) -> Result<Handle, String> {
        wrap(device().reduce(ReduceOp::ArgMax, &self.0, axis, keepdims))
    }

    fn softmax(&self, axis: u32) -> Result<Handle, String> {
        wrap(device().softmax(&self.0, axis, false))
    }

    fn log_softmax(&self, axis: u32) -> Result<Handle, String> {
        wrap(device().softmax(&self.0, axis, true))
    }

    fn one_hot(&self, classes: u32) -> Result<Handle, String> {
        wrap(device().one_hot(&self.0, classes))
    }

    fn slice_rows(&self, start: u32, end: u32) -> Result<Handle, String> {
        wrap(device().slice_rows(&self.0, start, end))
    }

    fn gather_rows(&self, indices: Vec<u32>) -> Result<Handle, String> {
        wrap(device().gather_rows(&self.0, &indices))
    }

    fn concat(&self, rhs: TensorBorrow<'_>, axis: u32) -> Result<Handle, String> {
        wrap(device().concat(&self.0, inner(&rhs), axis))
    }

    fn watch(&self, _name: String) -> Result<Handle, String> {
        Err(NO_GRADIENTS.to_string())
    }

    fn grad(&self, _names: Vec<String>) -> Result<Vec<wit::NamedTensor>, String> {
        Err(NO_GRADIENTS.to_string())
    }

    fn from_i64_list(shape: Shape, data: Vec<i64>) -> Result<Handle, String> {
        wrap(device().from_i64(&shape, data))
    }

    fn dtype(&self) -> wit::Dtype {
        match self.0.dtype() {
            DType::F32 => wit::Dtype::F32,
            DType::I64 => wit::Dtype::I64,
        }
    }

    fn to_i64_list(&self) -> Result<Vec<i64>, String> {
        device().to_i64_vec(&self.0).map_err(|e| e.to_string())
    }

    fn cast(&self, dtype: wit::Dtype) -> Result<Handle, String> {
        let dtype = match dtype {
            wit::Dtype::F32 => DType::F32,
            wit::Dtype::I64 => DType::I64,
        };
        wrap(device().cast(&self.0, dtype))
    }

    fn matmul_transposed(
        &self,
        rhs: TensorBorrow<'_>,
        transpose_self: bool,
        transpose_rhs: bool,
    ) -> Result<Handle, String> {
        wrap(device().matmul_transposed(&self.0, transpose_self, inner(&rhs), transpose_rhs))
    }

    fn binary(&self, op: wit::BinaryOp, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        CpuTensor::binary(self, binary_op(op), rhs)
    }

    fn scalar(&self, op: wit::ScalarOp, value: f32) -> Result<Handle, String> {
        wrap(device().scalar(scalar_op(op), &self.0, value))
    }

    fn activate(&self, op: wit::Activation) -> Result<Handle, String> {
        use tensorlet_gpu::UnaryOp as U;
        let op = match op {
            wit::Activation::Gelu => U::Gelu,
            wit::Activation::GeluTanh => U::GeluTanh,
            wit::Activation::Silu => U::Silu,
            wit::Activation::Softplus => U::Softplus,
        };
        wrap(device().unary(op, &self.0))
    }

    fn clamp(&self, low: f32, high: f32) -> Result<Handle, String> {
        wrap(device().clamp(&self.0, low, high))
    }

    fn select(
        &self,
        mask: TensorBorrow<'_>,
        otherwise: TensorBorrow<'_>,
    ) -> Result<Handle, String> {
        wrap(device().where_(inner(&mask), &self.0, inner(&otherwise)))
    }

    fn masked_fill(&self, mask: TensorBorrow<'_>, value: f32) -> Result<Handle, String> {
        taped(|t| t.masked_fill(&var(&self.0), &var(inner(&mask)), value))
    }

    fn cumsum(&self, axis: u32, reverse: bool) -> Result<Handle, String> {
        wrap(device().cumsum(&self.0, axis, reverse))
    }

    fn permute(&self, axes: Vec<u32>) -> Result<Handle, String> {
        wrap(device().permute(&self.0, &axes))
    }

    fn slice(&self, axis: u32, start: u32, end: u32, step: u32) -> Result<Handle, String> {
        wrap(device().slice(&self.0, axis, start, end, step))
    }

    fn concat_all(parts: Vec<TensorBorrow<'_>>, axis: u32) -> Result<Handle, String> {
        let parts: Vec<&Tensor> = parts.iter().map(inner).collect();
        wrap(device().concat_many(&parts, axis))
    }

    fn pad(&self, pads: Vec<(u32, u32)>, value: f32) -> Result<Handle, String> {
        let pads: Vec<[u32; 2]> = pads.into_iter().map(|(a, b)| [a, b]).collect();
        wrap(device().pad(&self.0, &pads, f64::from(value)))
    }

    fn flatten(&self, start: u32, end: u32) -> Result<Handle, String> {
        wrap(device().flatten(&self.0, start, end))
    }

    fn squeeze(&self, axis: u32) -> Result<Handle, String> {
        wrap(device().squeeze(&self.0, axis))
    }

    fn unsqueeze(&self, axis: u32) -> Result<Handle, String> {
        wrap(device().unsqueeze(&self.0, axis))
    }

    fn broadcast_to(&self, shape: Shape) -> Result<Handle, String> {
        wrap(device().broadcast_to(&self.0, &shape))
    }

    fn index_select(&self, axis: u32, indices: TensorBorrow<'_>) -> Result<Handle, String> {
        wrap(device().index_select(&self.0, axis, inner(&indices)))
    }

    fn embedding(&self, ids: TensorBorrow<'_>) -> Result<Handle, String> {
        wrap(device().embedding(&self.0, inner(&ids)))
    }

    fn gather(&self, axis: u32, indices: TensorBorrow<'_>) -> Result<Handle, String> {
        wrap(device().gather(&self.0, axis, inner(&indices)))
    }

    fn scatter_add(
        &self,
        axis: u32,
        indices: TensorBorrow<'_>,
        src: TensorBorrow<'_>,
    ) -> Result<Handle, String> {
        self.add_at(&indices, &src, |t, shape, i, s| {
            t.scatter_add(shape, axis, i, s)
        })
    }

    fn index_add(
        &self,
        axis: u32,
        indices: TensorBorrow<'_>,
        src: TensorBorrow<'_>,
    ) -> Result<Handle, String> {
        self.add_at(&indices, &src, |t, shape, i, s| {
            t.index_add(shape, axis, i, s)
        })
    }

    fn conv2d(
        &self,
        weight: TensorBorrow<'_>,
        bias: Option<TensorBorrow<'_>>,
        o: wit::Conv2dOptions,
    ) -> Result<Handle, String> {
        let p = Conv2d {
            stride: [o.stride.0, o.stride.1],
            padding: [o.padding.0, o.padding.1],
            dilation: [o.dilation.0, o.dilation.1],
            groups: o.groups,
        };
        let b = opt_var(&bias);
        taped(|t| t.conv2d(&var(&self.0), &var(inner(&weight)), b.as_ref(), &p))
    }

    fn conv1d(
        &self,
        weight: TensorBorrow<'_>,
        bias: Option<TensorBorrow<'_>>,
        o: wit::Conv1dOptions,
    ) -> Result<Handle, String> {
        let p = Conv1d {
            stride: o.stride,
            padding: o.padding,
            dilation: o.dilation,
            groups: o.groups,
        };
        let b = opt_var(&bias);
        taped(|t| t.conv1d(&var(&self.0), &var(inner(&weight)), b.as_ref(), &p))
    }

    fn max_pool2d(&self, o: wit::Pool2dOptions) -> Result<Handle, String> {
        wrap(device().max_pool2d(&self.0, &pool(o)))
    }

    fn avg_pool2d(&self, o: wit::Pool2dOptions) -> Result<Handle, String> {
        wrap(device().avg_pool2d(&self.0, &pool(o)))
    }

    fn global_avg_pool(&self) -> Result<Handle, String> {
        wrap(device().global_avg_pool(&self.0))
    }

    fn layer_norm(
        &self,
        axes: u32,
        weight: Option<TensorBorrow<'_>>,
        bias: Option<TensorBorrow<'_>>,
        eps: f32,
    ) -> Result<Handle, String> {
        let (w, b) = (weight.as_ref().map(inner), bias.as_ref().map(inner));
        wrap(device().layer_norm(&self.0, axes, w, b, eps))
    }

    fn batch_norm(
        &self,
        weight: Option<TensorBorrow<'_>>,
        bias: Option<TensorBorrow<'_>>,
        running_mean: TensorBorrow<'_>,
        running_var: TensorBorrow<'_>,
        train: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Handle, String> {
        if train {
            return Err(format!("batch-norm: train mode: {NO_GRADIENTS}"));
        }
        let running = NormStats {
            mean: inner(&running_mean).clone(),
            var: inner(&running_var).clone(),
        };
        let (w, b) = (weight.as_ref().map(inner), bias.as_ref().map(inner));
        wrap(
            device()
                .batch_norm(&self.0, w, b, &running, false, momentum, eps)
                .map(|(y, _)| y),
        )
    }

    fn dropout(&self, p: f32, seed: u64) -> Result<Handle, String> {
        taped(|t| t.dropout(&var(&self.0), p, seed))
    }

    fn cross_entropy(
        &self,
        target: TensorBorrow<'_>,
        axis: u32,
        weights: Option<TensorBorrow<'_>>,
        label_smoothing: f32,
        ignore_index: Option<i64>,
        reduction: wit::Reduction,
    ) -> Result<Handle, String> {
        let opts = CrossEntropy {
            axis,
            weights: weights.as_ref().map(inner),
            label_smoothing,
            ignore_index,
            reduction: reduction_of(reduction),
        };
        taped(|t| t.cross_entropy_with(&var(&self.0), &var(inner(&target)), &opts))
    }

    fn bce_with_logits(
        &self,
        target: TensorBorrow<'_>,
        reduction: wit::Reduction,
    ) -> Result<Handle, String> {
        taped(|t| t.bce_with_logits(&var(&self.0), &var(inner(&target)), reduction_of(reduction)))
    }

    fn mse_loss(
        &self,
        target: TensorBorrow<'_>,
        reduction: wit::Reduction,
    ) -> Result<Handle, String> {
        taped(|t| t.mse_loss(&var(&self.0), &var(inner(&target)), reduction_of(reduction)))
    }

    fn l1_loss(
        &self,
        target: TensorBorrow<'_>,
        reduction: wit::Reduction,
    ) -> Result<Handle, String> {
        taped(|t| t.l1_loss(&var(&self.0), &var(inner(&target)), reduction_of(reduction)))
    }

    fn huber_loss(
        &self,
        target: TensorBorrow<'_>,
        delta: f32,
        reduction: wit::Reduction,
    ) -> Result<Handle, String> {
        taped(|t| {
            t.huber_loss(
                &var(&self.0),
                &var(inner(&target)),
                delta,
                reduction_of(reduction),
            )
        })
    }
}

fn binary_op(op: wit::BinaryOp) -> BinaryOp {
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

fn scalar_op(op: wit::ScalarOp) -> ScalarOp {
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

fn reduction_of(r: wit::Reduction) -> Reduction {
    match r {
        wit::Reduction::Mean => Reduction::Mean,
        wit::Reduction::Sum => Reduction::Sum,
        wit::Reduction::None => Reduction::None,
    }
}

fn pool(o: wit::Pool2dOptions) -> Pool2d {
    Pool2d {
        kernel: [o.kernel.0, o.kernel.1],
        stride: [o.stride.0, o.stride.1],
        padding: [o.padding.0, o.padding.1],
    }
}

/// An exported model only predicts: its tensors record no tape.
const NO_GRADIENTS: &str = "gradients are not available in an exported model, which only predicts; \
                            train with tensorlet";

export!(Provider);
