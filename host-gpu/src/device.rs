use std::fmt;
use std::sync::Arc;

use crate::dtype::need_f32;
use crate::shape::broadcast;
use crate::{
    Backend, BinaryOp, DType, Distribution, ReduceOp, ScalarOp, Shape, Tensor, TensorError, UnaryOp,
};

/// The kind of hardware a device computes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The host CPU (the reference backend).
    Cpu,
    /// A GPU through wgpu.
    Gpu,
}

/// A description of a device for people and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// CPU or GPU.
    pub kind: DeviceKind,
    /// Adapter or backend name.
    pub name: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DeviceKind::Cpu => write!(f, "cpu ({})", self.name),
            DeviceKind::Gpu => write!(f, "gpu ({})", self.name),
        }
    }
}

/// Which backend [`Device::open`] picks: what `--device` and `TENSORLET_DEVICE` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// A hardware GPU when there is one, else the CPU. Never a software GPU
    /// (lavapipe, llvmpipe, SwiftShader): the CPU backend is faster than those.
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// The GPU: a hardware adapter if there is one, else a software one.
    Gpu,
}

/// Why [`Device::open`] could not give the device asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// This build has no GPU backend.
    #[error(
        "this build of tensorlet has no GPU backend (it was built without the `wgpu` \
         feature); use --device cpu"
    )]
    NoGpuBackend,
    /// No usable adapter, or the adapter refused to open a device.
    #[cfg(feature = "wgpu")]
    #[error(transparent)]
    Gpu(#[from] crate::wgpu_backend::GpuError),
}

/// A backend plus the validation every op goes through. Cheap to clone.
#[derive(Clone)]
pub struct Device {
    pub(crate) backend: Arc<dyn Backend>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Device").field(&self.backend.info()).finish()
    }
}

pub(crate) fn axis_of(op: &'static str, shape: &Shape, axis: u32) -> Result<usize, TensorError> {
    let axis = axis as usize;
    if axis >= shape.rank() {
        return Err(TensorError::argument(
            op,
            format!(
                "axis {axis} is out of range for shape {shape} ({} dimensions)",
                shape.rank()
            ),
        ));
    }
    Ok(axis)
}

fn rows_of(op: &'static str, t: &Tensor) -> Result<(usize, usize), TensorError> {
    match t.shape.dims() {
        [] => Err(TensorError::shape(
            op,
            format!("needs at least one dimension, got shape {}", t.shape),
        )),
        [rows, rest @ ..] => Ok((*rows, rest.iter().product())),
    }
}

pub(crate) fn dims_of(op: &'static str, dims: &[u32]) -> Result<Shape, TensorError> {
    Shape::new(op, dims.iter().map(|&d| d as usize).collect())
}

impl Device {
    /// The CPU reference backend.
    pub fn cpu() -> Self {
        Device::new(Arc::new(crate::cpu::CpuBackend))
    }

    /// A device over any backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Device { backend }
    }

    /// The device `pref` asks for. `Auto` falls back to the CPU when no
    /// hardware GPU can be opened (none present, a driver refusing, or no GPU
    /// backend in this build); `Gpu` fails instead, with a message that says
    /// what to install.
    pub fn open(pref: Preference) -> Result<Self, OpenError> {
        match pref {
            Preference::Cpu => Ok(Device::cpu()),
            #[cfg(feature = "wgpu")]
            Preference::Auto => {
                use crate::wgpu_backend::{AdapterPolicy, WgpuBackend};
                Ok(match WgpuBackend::open(AdapterPolicy::HardwareOnly) {
                    Ok(b) => Device::new(Arc::new(b)),
                    Err(_) => Device::cpu(),
                })
            }
            #[cfg(feature = "wgpu")]
            Preference::Gpu => {
                use crate::wgpu_backend::{AdapterPolicy, WgpuBackend};
                Ok(Device::new(Arc::new(WgpuBackend::open(
                    AdapterPolicy::Any,
                )?)))
            }
            #[cfg(not(feature = "wgpu"))]
            Preference::Auto => Ok(Device::cpu()),
            #[cfg(not(feature = "wgpu"))]
            Preference::Gpu => Err(OpenError::NoGpuBackend),
        }
    }

    /// Whether the backend is a software emulation of a GPU (lavapipe and the
    /// like): correct, but slower than the CPU backend.
    pub fn is_software(&self) -> bool {
        self.backend.is_software()
    }

    /// Waits until every op issued so far has finished (GPU work is queued;
    /// results are otherwise awaited only when read). For timing.
    pub fn synchronize(&self) {
        self.backend.synchronize();
    }

    /// What this device computes on.
    pub fn info(&self) -> DeviceInfo {
        self.backend.info()
    }

    pub(crate) fn make(&self, shape: Shape, storage: crate::Storage) -> Tensor {
        Tensor::from_storage(shape, storage)
    }

    /// A tensor of `shape` holding `data` (row-major).
    pub fn from_vec(&self, shape: &[u32], data: Vec<f32>) -> Result<Tensor, TensorError> {
        let shape = dims_of("from-list", shape)?;
        if data.len() != shape.numel() {
            return Err(TensorError::shape(
                "from-list",
                format!(
                    "shape {shape} needs {} elements but {} were given",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(self.make(shape, self.backend.upload(&data)))
    }

    /// The elements, row-major; an i64 tensor's converted to f32 (exact up
    /// to 2^24 in magnitude).
    pub fn to_vec(&self, t: &Tensor) -> Vec<f32> {
        match t.dtype() {
            crate::DType::F32 => self.backend.download(&t.storage, t.numel()),
            crate::DType::I64 => self
                .backend
                .download_i64(&t.storage, t.numel())
                .iter()
                .map(|&x| x as f32)
                .collect(),
        }
    }

    /// Every element set to `value`.
    pub fn fill(&self, shape: &[u32], value: f32) -> Result<Tensor, TensorError> {
        let shape = dims_of("fill", shape)?;
        let s = self.backend.fill(shape.numel(), value);
        Ok(self.make(shape, s))
    }

    /// Samples of `dist` from the counter-based generator (see [`crate::rng`]).
    pub fn random(
        &self,
        shape: &[u32],
        dist: Distribution,
        seed: u64,
    ) -> Result<Tensor, TensorError> {
        let op = match dist {
            Distribution::Normal { mean, std } => {
                if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
                    return Err(TensorError::argument(
                        "random-normal",
                        format!("mean {mean} and std {std} must be finite, std >= 0"),
                    ));
                }
                "random-normal"
            }
            Distribution::Uniform { low, high } => {
                if !(low.is_finite() && high.is_finite() && low <= high) {
                    return Err(TensorError::argument(
                        "random-uniform",
                        format!("bounds [{low}, {high}) must be finite with low <= high"),
                    ));
                }
                "random-uniform"
            }
        };
        let shape = dims_of(op, shape)?;
        let s = self.backend.random(shape.numel(), dist, seed);
        Ok(self.make(shape, s))
    }

    /// Matrix product. Two 2-D tensors `[m, k] x [k, n]` give `[m, n]`;
    /// higher ranks are batches of matrices, `[..., m, k] x [..., k, n]`,
    /// whose leading (batch) dimensions broadcast as NumPy's `matmul` does.
    pub fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, TensorError> {
        self.matmul_transposed(a, false, b, false)
    }

    /// Transpose of a 2-D tensor.
    pub fn transpose(&self, a: &Tensor) -> Result<Tensor, TensorError> {
        let &[rows, cols] = a.shape.dims() else {
            return Err(TensorError::shape(
                "transpose",
                format!("needs a 2-D tensor, got shape {}", a.shape),
            ));
        };
        if a.dtype() == DType::I64 {
            return self.permute(a, &[1, 0]);
        }
        let s = self.backend.transpose(&a.storage, rows, cols);
        Ok(self.make(Shape::new("transpose", vec![cols, rows])?, s))
    }

    /// Same elements, another shape with the same element count. Shares storage.
    pub fn reshape(&self, a: &Tensor, shape: &[u32]) -> Result<Tensor, TensorError> {
        let shape = dims_of("reshape", shape)?;
        if shape.numel() != a.numel() {
            return Err(TensorError::shape(
                "reshape",
                format!(
                    "cannot reshape {} ({} elements) to {shape} ({} elements)",
                    a.shape,
                    a.numel(),
                    shape.numel()
                ),
            ));
        }
        Ok(self.make(shape, a.storage.clone()))
    }

    /// Broadcasting element-wise arithmetic.
    pub fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, TensorError> {
        let name = op.name();
        need_f32(name, a)?;
        need_f32(name, b)?;
        let Some((out, pa, pb)) = broadcast(a.shape.dims(), b.shape.dims()) else {
            return Err(TensorError::shape(
                name,
                format!("shapes {} and {} do not broadcast", a.shape, b.shape),
            ));
        };
        let shape = Shape::new(name, out)?;
        let s = self
            .backend
            .binary(op, &a.storage, &pa, &b.storage, &pb, shape.dims());
        Ok(self.make(shape, s))
    }

    /// Scalar arithmetic.
    pub fn scalar(&self, op: ScalarOp, a: &Tensor, value: f32) -> Result<Tensor, TensorError> {
        need_f32(op.name(), a)?;
        let s = self.backend.scalar(op, &a.storage, a.numel(), value);
        Ok(self.make(a.shape.clone(), s))
    }

    /// A unary map.
    pub fn unary(&self, op: UnaryOp, a: &Tensor) -> Result<Tensor, TensorError> {
        need_f32(op.name(), a)?;
        let s = self.backend.unary(op, &a.storage, a.numel());
        Ok(self.make(a.shape.clone(), s))
    }

    /// A reduction along `axis`.
    pub fn reduce(
        &self,
        op: ReduceOp,
        a: &Tensor,
        axis: u32,
        keepdims: bool,
    ) -> Result<Tensor, TensorError> {
        let name = match op {
            ReduceOp::Sum => "reduce-sum",
            ReduceOp::Mean => "reduce-mean",
            ReduceOp::Max => "reduce-max",
            ReduceOp::Min => "reduce-min",
            ReduceOp::ArgMax => "argmax",
        };
        need_f32(name, a)?;
        let axis = axis_of(name, &a.shape, axis)?;
        let (outer, len, inner) = a.shape.split_at_axis(axis);
        if len == 0 && op != ReduceOp::Sum {
            return Err(TensorError::shape(
                name,
                format!("axis {axis} of shape {} is empty", a.shape),
            ));
        }
        let mut dims = a.shape.dims().to_vec();
        if keepdims {
            dims[axis] = 1;
        } else {
            dims.remove(axis);
        }
        let s = self.backend.reduce(op, &a.storage, outer, len, inner);
        Ok(self.make(Shape::new(name, dims)?, s))
    }

    /// Softmax (or log-softmax) along `axis`.
    pub fn softmax(&self, a: &Tensor, axis: u32, log: bool) -> Result<Tensor, TensorError> {
        let name = if log { "log-softmax" } else { "softmax" };
        need_f32(name, a)?;
        let axis = axis_of(name, &a.shape, axis)?;
        let (outer, len, inner) = a.shape.split_at_axis(axis);
        let s = self.backend.softmax(&a.storage, outer, len, inner, log);
        Ok(self.make(a.shape.clone(), s))
    }

    /// `[n]` class indices -> `[n, classes]`.
    pub fn one_hot(&self, a: &Tensor, classes: u32) -> Result<Tensor, TensorError> {
        need_f32("one-hot", a)?;
        let &[n] = a.shape.dims() else {
            return Err(TensorError::shape(
                "one-hot",
                format!("needs a 1-D tensor of class indices, got shape {}", a.shape),
            ));
        };
        if classes == 0 {
            return Err(TensorError::argument(
                "one-hot",
                "classes must be at least 1",
            ));
        }
        let shape = Shape::new("one-hot", vec![n, classes as usize])?;
        let s = self.backend.one_hot(&a.storage, n, classes as usize);
        Ok(self.make(shape, s))
    }

    /// Rows `start..end` of the outermost dimension.
    pub fn slice_rows(&self, a: &Tensor, start: u32, end: u32) -> Result<Tensor, TensorError> {
        let (rows, row_len) = rows_of("slice-rows", a)?;
        let (start, end) = (start as usize, end as usize);
        if start > end || end > rows {
            return Err(TensorError::argument(
                "slice-rows",
                format!("rows {start}..{end} are out of range for shape {}", a.shape),
            ));
        }
        if a.dtype() == DType::I64 {
            return self.slice(a, 0, start as u32, end as u32, 1);
        }
        let mut dims = a.shape.dims().to_vec();
        dims[0] = end - start;
        let s = self.backend.slice_rows(&a.storage, row_len, start, end);
        Ok(self.make(Shape::new("slice-rows", dims)?, s))
    }

    /// The rows at `indices`, in that order.
    pub fn gather_rows(&self, a: &Tensor, indices: &[u32]) -> Result<Tensor, TensorError> {
        let (rows, row_len) = rows_of("gather-rows", a)?;
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= rows) {
            return Err(TensorError::argument(
                "gather-rows",
                format!("row index {bad} is out of range for shape {}", a.shape),
            ));
        }
        if a.dtype() == DType::I64 {
            let idx = self.from_i64(
                &[indices.len() as u32],
                indices.iter().map(|&i| i64::from(i)).collect(),
            )?;
            return self.index_select(a, 0, &idx);
        }
        let mut dims = a.shape.dims().to_vec();
        dims[0] = indices.len();
        let shape = Shape::new("gather-rows", dims)?;
        let s = self.backend.gather_rows(&a.storage, row_len, indices);
        Ok(self.make(shape, s))
    }

    /// The reverse of [`Device::gather_rows`] (its gradient): `g` holds one row
    /// per index; the result has `rows` rows, row `r` being the sum of the rows
    /// of `g` whose index is `r`, added in index order (zero where none is).
    pub fn scatter_add_rows(
        &self,
        g: &Tensor,
        indices: &[u32],
        rows: u32,
    ) -> Result<Tensor, TensorError> {
        need_f32("scatter-add-rows", g)?;
        let (n, row_len) = rows_of("scatter-add-rows", g)?;
        if n != indices.len() {
            return Err(TensorError::shape(
                "scatter-add-rows",
                format!(
                    "shape {} has {n} rows but {} indices were given",
                    g.shape,
                    indices.len()
                ),
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= rows) {
            return Err(TensorError::argument(
                "scatter-add-rows",
                format!("row index {bad} is out of range for {rows} rows"),
            ));
        }
        let mut dims = g.shape.dims().to_vec();
        dims[0] = rows as usize;
        let shape = Shape::new("scatter-add-rows", dims)?;
        let s = self
            .backend
            .scatter_add_rows(&g.storage, row_len, indices, rows as usize);
        Ok(self.make(shape, s))
    }

    /// Concatenation along `axis`; all other dimensions must match.
    pub fn concat(&self, a: &Tensor, b: &Tensor, axis: u32) -> Result<Tensor, TensorError> {
        if a.dtype() != DType::F32 || b.dtype() != DType::F32 {
            return self.concat_many(&[a, b], axis);
        }
        let axis = axis_of("concat", &a.shape, axis)?;
        let (da, db) = (a.shape.dims(), b.shape.dims());
        let compatible = da.len() == db.len()
            && da
                .iter()
                .zip(db)
                .enumerate()
                .all(|(i, (x, y))| i == axis || x == y);
        if !compatible {
            return Err(TensorError::shape(
                "concat",
                format!(
                    "shapes {} and {} differ outside axis {axis}",
                    a.shape, b.shape
                ),
            ));
        }
        let mut dims = da.to_vec();
        dims[axis] += db[axis];
        let shape = Shape::new("concat", dims)?;
        let outer: usize = da[..axis].iter().product();
        let tail: usize = da[axis + 1..].iter().product();
        let s = self.backend.concat(
            &a.storage,
            &b.storage,
            outer,
            da[axis] * tail,
            db[axis] * tail,
        );
        Ok(self.make(shape, s))
    }
}
