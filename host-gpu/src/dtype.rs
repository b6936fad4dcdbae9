//! Element types, and the conversions between them.

use std::fmt;
use std::sync::Arc;

use crate::device::dims_of;
use crate::{Device, Tensor, TensorError};

/// The element type of a tensor.
///
/// `F32` is what arithmetic runs on. `I64` holds class indices, token ids and
/// gather indices: data-movement ops (reshape, permute, slice, concat, pad,
/// gather, squeeze, …) take either type; arithmetic takes f32 only, and an
/// i64 operand is a [`TensorError::DType`] naming the op. Convert with
/// [`Device::to_f32`] and [`Device::to_i64`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit signed integer.
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }

    /// "f32" or "i64".
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Err unless `t` is an f32 tensor; for ops that compute on their operands.
pub(crate) fn need_f32(op: &'static str, t: &Tensor) -> Result<(), TensorError> {
    match t.dtype() {
        DType::F32 => Ok(()),
        other => Err(TensorError::dtype(
            op,
            format!(
                "needs f32 tensors, got an {other} tensor of shape {}; convert it with to-f32",
                t.shape()
            ),
        )),
    }
}

/// Err unless `t` is an i64 tensor; `what` names the operand ("indices").
pub(crate) fn need_i64(op: &'static str, what: &str, t: &Tensor) -> Result<(), TensorError> {
    match t.dtype() {
        DType::I64 => Ok(()),
        other => Err(TensorError::dtype(
            op,
            format!(
                "{what} must be an i64 tensor, got an {other} tensor of shape {}; convert it \
                 with to-i64",
                t.shape()
            ),
        )),
    }
}

impl Device {
    /// An i64 tensor of `shape` holding `data` (row-major).
    pub fn from_i64(&self, shape: &[u32], data: Vec<i64>) -> Result<Tensor, TensorError> {
        let shape = dims_of("from-i64", shape)?;
        if data.len() != shape.numel() {
            return Err(TensorError::shape(
                "from-i64",
                format!(
                    "shape {shape} needs {} elements but {} were given",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(self.make(shape, self.backend.upload_i64(&data)))
    }

    /// The elements as i64, row-major. An f32 tensor's elements must be
    /// integers in the range of i64 (see [`Device::to_i64`]).
    pub fn to_i64_vec(&self, t: &Tensor) -> Result<Vec<i64>, TensorError> {
        let t = self.to_i64(t)?;
        Ok(self.i64_values(&t).to_vec())
    }

    /// The i64 elements of `t`, shared (the backend may keep them).
    pub(crate) fn i64_values(&self, t: &Tensor) -> Arc<[i64]> {
        debug_assert_eq!(t.dtype(), DType::I64);
        self.backend.download_i64(t.storage(), t.numel())
    }

    /// `t` as f32: i64 elements rounded to the nearest f32 (exact up to 2^24
    /// in magnitude). An f32 tensor is returned as it is.
    pub fn to_f32(&self, t: &Tensor) -> Tensor {
        match t.dtype() {
            DType::F32 => t.clone(),
            DType::I64 => {
                let s = self.backend.i64_to_f32(t.storage(), t.numel());
                self.make(t.shape().clone(), s)
            }
        }
    }

    /// `t` as i64. Every f32 element must be an integer in the range of i64;
    /// the first that is not is an error naming its position and value. An
    /// i64 tensor is returned as it is. On a GPU this waits for the check.
    pub fn to_i64(&self, t: &Tensor) -> Result<Tensor, TensorError> {
        match t.dtype() {
            DType::I64 => Ok(t.clone()),
            DType::F32 => match self.backend.f32_to_i64(t.storage(), t.numel()) {
                Ok(s) => Ok(self.make(t.shape().clone(), s)),
                Err(i) => {
                    let value = self.backend.download(t.storage(), t.numel())[i];
                    Err(TensorError::argument(
                        "to-i64",
                        format!(
                            "element {i} of shape {} is {value}, which is not an integer in \
                             the range of i64",
                            t.shape()
                        ),
                    ))
                }
            },
        }
    }

    /// `t` converted to `dtype` (see [`Device::to_f32`], [`Device::to_i64`]).
    pub fn cast(&self, t: &Tensor, dtype: DType) -> Result<Tensor, TensorError> {
        match dtype {
            DType::F32 => Ok(self.to_f32(t)),
            DType::I64 => self.to_i64(t),
        }
    }
}
