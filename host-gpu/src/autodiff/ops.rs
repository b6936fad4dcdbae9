//! The tape's N-D ops: conversions, data movement, the gathers, batched
//! products, select and running sums, convolution and pooling. Each computes
//! exactly the [`Device`] op of the same name and records what its gradient
//! needs; integer operands (indices) are inputs without a gradient.

use super::{Rule, Tape, Var};
use crate::conv::check_bias;
use crate::{BinaryOp, Conv1d, Conv2d, DType, Device, Pool2d, ReduceOp, Tensor, TensorError};

impl Tape {
    /// `a` as f32 (see [`Device::to_f32`]). An integer has no gradient, so
    /// the result is a constant unless `a` came from a watched value through
    /// `to-i64` (which [`Tape::grad`] reports).
    pub fn to_f32(&mut self, a: &Var) -> Var {
        if a.value.dtype() == DType::F32 {
            return a.clone();
        }
        let value = self.device.to_f32(&a.value);
        let na = self.node_of(a);
        self.op(value, vec![na], || Rule::Blocked("to-f32"))
    }

    /// `a` as i64 (see [`Device::to_i64`]). Has no gradient: a watched
    /// tensor that reaches the loss only through it is an error in
    /// [`Tape::grad`].
    pub fn to_i64(&mut self, a: &Var) -> Result<Var, TensorError> {
        if a.value.dtype() == DType::I64 {
            return Ok(a.clone());
        }
        let value = self.device.to_i64(&a.value)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Blocked("to-i64")))
    }

    /// See [`Device::permute`].
    pub fn permute(&mut self, a: &Var, axes: &[u32]) -> Result<Var, TensorError> {
        let value = self.device.permute(&a.value, axes)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Permute {
            axes: axes.to_vec(),
        }))
    }

    /// See [`Device::slice`].
    pub fn slice(
        &mut self,
        a: &Var,
        axis: u32,
        start: u32,
        end: u32,
        step: u32,
    ) -> Result<Var, TensorError> {
        let value = self.device.slice(&a.value, axis, start, end, step)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Slice {
            axis: axis as usize,
            start: start as usize,
            step: step as usize,
        }))
    }

    /// See [`Device::concat_many`].
    pub fn concat_many(&mut self, parts: &[&Var], axis: u32) -> Result<Var, TensorError> {
        let values: Vec<&Tensor> = parts.iter().map(|p| &p.value).collect();
        let value = self.device.concat_many(&values, axis)?;
        let nodes = parts.iter().map(|p| self.node_of(p)).collect();
        Ok(self.op(value, nodes, || Rule::ConcatMany {
            axis: axis as usize,
            sizes: parts
                .iter()
                .map(|p| p.shape().dims()[axis as usize])
                .collect(),
        }))
    }

    /// See [`Device::pad`].
    pub fn pad(&mut self, a: &Var, pads: &[[u32; 2]], value: f64) -> Result<Var, TensorError> {
        let out = self.device.pad(&a.value, pads, value)?;
        let na = self.node_of(a);
        Ok(self.op(out, vec![na], || Rule::Pad {
            starts: pads.iter().map(|p| p[0] as usize).collect(),
        }))
    }

    /// See [`Device::flatten`].
    pub fn flatten(&mut self, a: &Var, start: u32, end: u32) -> Result<Var, TensorError> {
        let value = self.device.flatten(&a.value, start, end)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Reshape))
    }

    /// See [`Device::squeeze`].
    pub fn squeeze(&mut self, a: &Var, axis: u32) -> Result<Var, TensorError> {
        let value = self.device.squeeze(&a.value, axis)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Reshape))
    }

    /// See [`Device::unsqueeze`].
    pub fn unsqueeze(&mut self, a: &Var, axis: u32) -> Result<Var, TensorError> {
        let value = self.device.unsqueeze(&a.value, axis)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Reshape))
    }

    /// See [`Device::broadcast_to`].
    pub fn broadcast_to(&mut self, a: &Var, shape: &[u32]) -> Result<Var, TensorError> {
        let value = self.device.broadcast_to(&a.value, shape)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::BroadcastTo))
    }

    /// See [`Device::index_select`]; the gradient is [`Device::index_add`].
    pub fn index_select(&mut self, a: &Var, axis: u32, indices: &Var) -> Result<Var, TensorError> {
        let value = self.device.index_select(&a.value, axis, &indices.value)?;
        self.record_take(value, a, axis, indices)
    }

    /// See [`Device::embedding`]; the table's gradient sums the rows' gradients.
    pub fn embedding(&mut self, table: &Var, ids: &Var) -> Result<Var, TensorError> {
        let value = self.device.embedding(&table.value, &ids.value)?;
        self.record_take(value, table, 0, ids)
    }

    fn record_take(
        &mut self,
        value: Tensor,
        a: &Var,
        axis: u32,
        indices: &Var,
    ) -> Result<Var, TensorError> {
        let (na, ni) = (self.node_of(a), self.node_of(indices));
        Ok(self.op(value, vec![na, ni], || Rule::Take {
            axis: axis as usize,
            idx: indices.value.clone(),
        }))
    }

    /// See [`Device::gather`]; the gradient is [`Device::scatter_add`].
    pub fn gather(&mut self, a: &Var, axis: u32, indices: &Var) -> Result<Var, TensorError> {
        let value = self.device.gather(&a.value, axis, &indices.value)?;
        let (na, ni) = (self.node_of(a), self.node_of(indices));
        Ok(self.op(value, vec![na, ni], || Rule::Gather {
            axis: axis as usize,
            idx: indices.value.clone(),
        }))
    }

    /// See [`Device::scatter_add`]; the values' gradient is [`Device::gather`].
    pub fn scatter_add(
        &mut self,
        shape: &[u32],
        axis: u32,
        indices: &Var,
        src: &Var,
    ) -> Result<Var, TensorError> {
        let value = self
            .device
            .scatter_add(shape, axis, &indices.value, &src.value)?;
        let (ns, ni) = (self.node_of(src), self.node_of(indices));
        Ok(self.op(value, vec![ns, ni], || Rule::ScatterAdd {
            axis: axis as usize,
            idx: indices.value.clone(),
        }))
    }

    /// See [`Device::index_add`]; the values' gradient is [`Device::index_select`].
    pub fn index_add(
        &mut self,
        shape: &[u32],
        axis: u32,
        indices: &Var,
        src: &Var,
    ) -> Result<Var, TensorError> {
        let value = self
            .device
            .index_add(shape, axis, &indices.value, &src.value)?;
        let (ns, ni) = (self.node_of(src), self.node_of(indices));
        Ok(self.op(value, vec![ns, ni], || Rule::IndexAdd {
            axis: axis as usize,
            idx: indices.value.clone(),
        }))
    }

    /// See [`Device::matmul_transposed`].
    pub fn matmul_transposed(
        &mut self,
        a: &Var,
        transpose_a: bool,
        b: &Var,
        transpose_b: bool,
    ) -> Result<Var, TensorError> {
        let value = self
            .device
            .matmul_transposed(&a.value, transpose_a, &b.value, transpose_b)?;
        let (na, nb) = (self.node_of(a), self.node_of(b));
        Ok(self.op(value, vec![na, nb], || Rule::BatchedMatmul {
            a: nb.map(|_| a.value.clone()),
            b: na.map(|_| b.value.clone()),
            transpose_a,
            transpose_b,
        }))
    }

    /// See [`Device::clamp`]; the gradient passes where `lo <= x <= hi`.
    pub fn clamp(&mut self, a: &Var, lo: f32, hi: f32) -> Result<Var, TensorError> {
        let value = self.device.clamp(&a.value, lo, hi)?;
        let na = self.node_of(a);
        let y = value.clone();
        Ok(self.op(value, vec![na], || Rule::Clamp {
            x: a.value.clone(),
            y,
        }))
    }

    /// See [`Device::where_`]; the condition has no gradient.
    pub fn where_(&mut self, cond: &Var, a: &Var, b: &Var) -> Result<Var, TensorError> {
        let value = self.device.where_(&cond.value, &a.value, &b.value)?;
        let nodes = vec![self.node_of(cond), self.node_of(a), self.node_of(b)];
        Ok(self.op(value, nodes, || Rule::Where {
            cond: cond.value.clone(),
        }))
    }

    /// See [`Device::masked_fill`]; the gradient passes where the mask is 0.
    pub fn masked_fill(&mut self, a: &Var, mask: &Var, value: f32) -> Result<Var, TensorError> {
        crate::dtype::need_f32("masked-fill", &a.value)?;
        crate::dtype::need_f32("masked-fill", &mask.value)?;
        crate::math::check_mask("masked-fill", &a.value, &mask.value)?;
        let v = Var::constant(self.device.fill(&[], value)?);
        self.where_(mask, &v, a)
    }

    /// See [`Device::cumsum`]; the gradient is the running sum the other way.
    pub fn cumsum(&mut self, a: &Var, axis: u32, reverse: bool) -> Result<Var, TensorError> {
        let value = self.device.cumsum(&a.value, axis, reverse)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Cumsum { axis, reverse }))
    }

    /// `x` times its dropout mask (see [`Device::dropout_mask`]; a new seed
    /// each step). Training only: in evaluation dropout is the identity.
    pub fn dropout(&mut self, x: &Var, p: f32, seed: u64) -> Result<Var, TensorError> {
        crate::dtype::need_f32("dropout", &x.value)?;
        let mask = self
            .device
            .dropout_mask(&x.value.shape().to_u32(), p, seed)?;
        self.binary(BinaryOp::Mul, x, &Var::constant(mask))
    }

    /// See [`Device::conv2d`].
    pub fn conv2d(
        &mut self,
        x: &Var,
        w: &Var,
        bias: Option<&Var>,
        p: &Conv2d,
    ) -> Result<Var, TensorError> {
        let g = self.device.conv2d_geometry(&x.value, &w.value, p)?;
        check_bias("conv2d", bias.map(Var::value), g.o)?;
        self.conv_recorded(g, x, w, bias)
    }

    /// See [`Device::conv1d`].
    pub fn conv1d(
        &mut self,
        x: &Var,
        w: &Var,
        bias: Option<&Var>,
        p: &Conv1d,
    ) -> Result<Var, TensorError> {
        let (g, x2, w2) = self.device.conv1d_geometry(&x.value, &w.value, p)?;
        check_bias("conv1d", bias.map(Var::value), g.o)?;
        let x2 = self.reshape(x, &x2.shape().to_u32())?;
        let w2 = self.reshape(w, &w2.shape().to_u32())?;
        let y = self.conv_recorded(g, &x2, &w2, bias)?;
        self.reshape(&y, &[g.n as u32, g.o as u32, g.wo as u32])
    }

    fn conv_recorded(
        &mut self,
        g: crate::ConvGeometry,
        x: &Var,
        w: &Var,
        bias: Option<&Var>,
    ) -> Result<Var, TensorError> {
        let value = self.device.conv_with(&g, &x.value, &w.value, None)?;
        let (nx, nw) = (self.node_of(x), self.node_of(w));
        let y = self.op(value, vec![nx, nw], || Rule::Conv2d {
            x: nw.map(|_| x.value.clone()),
            w: nx.map(|_| w.value.clone()),
            geometry: g,
        });
        match bias {
            None => Ok(y),
            Some(b) => {
                let b = self.reshape(b, &[g.o as u32, 1, 1])?;
                self.binary(BinaryOp::Add, &y, &b)
            }
        }
    }

    /// See [`Device::max_pool2d`]; the gradient goes to each window's maximum.
    pub fn max_pool2d(&mut self, x: &Var, p: &Pool2d) -> Result<Var, TensorError> {
        let geometry = self.device.pool2d_geometry("max-pool2d", &x.value, p)?;
        let (value, idx) = self.device.max_pool2d_with_indices(&x.value, p)?;
        let nx = self.node_of(x);
        Ok(self.op(value, vec![nx], || Rule::MaxPool2d { idx, geometry }))
    }

    /// See [`Device::avg_pool2d`].
    pub fn avg_pool2d(&mut self, x: &Var, p: &Pool2d) -> Result<Var, TensorError> {
        let geometry = self.device.pool2d_geometry("avg-pool2d", &x.value, p)?;
        let value = self.device.avg_pool2d(&x.value, p)?;
        let nx = self.node_of(x);
        Ok(self.op(value, vec![nx], || Rule::AvgPool2d { geometry }))
    }

    /// See [`Device::global_avg_pool`].
    pub fn global_avg_pool(&mut self, x: &Var) -> Result<Var, TensorError> {
        let (n, c, s) = crate::conv::global_pool_dims(&x.value)?;
        let flat = self.reshape(x, &[n, c, s])?;
        self.reduce(ReduceOp::Mean, &flat, 2, false)
    }
}

/// Runs `f` on a tape that records nothing (every input is a constant): the
/// forward value of a composed op, for the `Device` entry points.
pub(crate) fn untaped<T>(
    dev: &Device,
    f: impl FnOnce(&mut Tape) -> Result<T, TensorError>,
) -> Result<T, TensorError> {
    let mut tape = Tape::new(dev.clone());
    f(&mut tape)
}
