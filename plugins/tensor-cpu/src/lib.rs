//! `tensorlet:ml/tensor` implemented inside WebAssembly.
//!
//! The host's CPU reference backend ([`tensorlet_gpu::Device::cpu`]) compiled for
//! `wasm32-wasip2` and exported as the `tensor` resource, so a model's plugins can
//! be composed with it into one component that needs no tensorlet host
//! (`tensorlet export --wasi-http`). Validation and kernels are the host's own
//! code, so results and error messages match `tensorlet serve` on the CPU. The
//! forward ops only: an exported model predicts, so `watch` and `grad` fail.

use std::sync::OnceLock;

use tensorlet_gpu::{BinaryOp, Device, Distribution, ReduceOp, ScalarOp, Tensor, TensorError};

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

/// An op the interface declares infallible: every tensor of this interface
/// is f32, which the element-wise maps take, so an error is a bug (a trap).
fn total(r: Result<Tensor, TensorError>) -> Handle {
    Handle::new(CpuTensor(r.expect("every tensor of this interface is f32")))
}

fn inner<'a>(b: &'a TensorBorrow<'_>) -> &'a Tensor {
    &b.get::<CpuTensor>().0
}

impl CpuTensor {
    fn binary(&self, op: BinaryOp, rhs: TensorBorrow<'_>) -> Result<Handle, String> {
        wrap(device().binary(op, &self.0, inner(&rhs)))
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
        device().to_vec(&self.0)
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
        total(device().scalar(ScalarOp::Add, &self.0, value))
    }

    fn mul_scalar(&self, value: f32) -> Handle {
        total(device().scalar(ScalarOp::Mul, &self.0, value))
    }

    fn map(&self, op: wit::UnaryOp) -> Handle {
        total(device().unary(op.into(), &self.0))
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
}

/// An exported model only predicts: its tensors record no tape.
const NO_GRADIENTS: &str = "gradients are not available in an exported model, which only predicts; \
                            train with tensorlet";

export!(Provider);
