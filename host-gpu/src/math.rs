//! Arithmetic beyond the element-wise maps: batched matrix products, clamp,
//! select (`where`), masked fill, running sums and dropout masks.

use crate::device::{axis_of, dims_of};
use crate::dtype::need_f32;
use crate::nd::dims_str;
use crate::shape::broadcast;
use crate::{BinaryOp, Device, Shape, Tensor, TensorError};

/// How [`crate::Backend::batched_matmul`] multiplies: `batches()` products of
/// `[m, k] x [k, n]` matrices, each stored row-major at the offsets the batch
/// strides give (the transpose of a stored `[k, m]` or `[n, k]` matrix when
/// `transpose_a` or `transpose_b` is set). The output is contiguous,
/// `[batch..., m, n]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulGeometry {
    /// The output's batch dimensions (empty for one product).
    pub batch: Vec<usize>,
    /// Element stride of `a`'s matrices along each batch dimension (0 where
    /// `a` is broadcast).
    pub a_strides: Vec<usize>,
    /// The same for `b`.
    pub b_strides: Vec<usize>,
    /// Rows of each product.
    pub m: usize,
    /// Depth of each product.
    pub k: usize,
    /// Columns of each product.
    pub n: usize,
    /// `a` holds each matrix as `[k, m]`.
    pub transpose_a: bool,
    /// `b` holds each matrix as `[n, k]`.
    pub transpose_b: bool,
}

impl MatmulGeometry {
    /// Number of products.
    pub fn batches(&self) -> usize {
        self.batch.iter().product()
    }

    /// Element offsets of the `i`-th product's `a` and `b` matrices.
    pub fn offsets(&self, i: usize) -> (usize, usize) {
        let (mut rest, mut oa, mut ob) = (i, 0, 0);
        for d in (0..self.batch.len()).rev() {
            let c = rest % self.batch[d];
            rest /= self.batch[d];
            oa += c * self.a_strides[d];
            ob += c * self.b_strides[d];
        }
        (oa, ob)
    }

    /// Elements of `a`, `b` and the output (the extent each batch of
    /// products reaches; nothing when there are no products).
    pub fn lens(&self) -> (usize, usize, usize) {
        if self.batches() == 0 {
            return (0, 0, 0);
        }
        let span = |strides: &[usize], per: usize| {
            self.batch
                .iter()
                .zip(strides)
                .map(|(&d, &s)| (d.saturating_sub(1)) * s)
                .sum::<usize>()
                + per
        };
        (
            span(&self.a_strides, self.m * self.k),
            span(&self.b_strides, self.k * self.n),
            self.batches() * self.m * self.n,
        )
    }
}

impl Device {
    /// [`Device::matmul`] of `a` (or its transpose in the last two
    /// dimensions, when `transpose_a`) and `b` (likewise), without copying the
    /// transposes: `[..., k, m]ᵀ x [..., n, k]ᵀ`, and so on. Two plain 2-D
    /// operands take the same path as [`Device::matmul`].
    pub fn matmul_transposed(
        &self,
        a: &Tensor,
        transpose_a: bool,
        b: &Tensor,
        transpose_b: bool,
    ) -> Result<Tensor, TensorError> {
        const OP: &str = "matmul";
        need_f32(OP, a)?;
        need_f32(OP, b)?;
        let (da, db) = (a.shape().dims(), b.shape().dims());
        if da.len() < 2 || db.len() < 2 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "needs tensors of at least 2 dimensions ([..., m, k] and [..., k, n]), got \
                     shapes {} and {}",
                    a.shape(),
                    b.shape()
                ),
            ));
        }
        let (ra, rb) = (da.len() - 2, db.len() - 2);
        let (m, k) = if transpose_a {
            (da[ra + 1], da[ra])
        } else {
            (da[ra], da[ra + 1])
        };
        let (k2, n) = if transpose_b {
            (db[rb + 1], db[rb])
        } else {
            (db[rb], db[rb + 1])
        };
        if k != k2 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "shapes {} and {} are incompatible: inner dimensions {k} and {k2} differ",
                    a.shape(),
                    b.shape()
                ),
            ));
        }
        if da.len() == 2 && db.len() == 2 && !transpose_a && !transpose_b {
            // The 2-D product training digests depend on: the backend's own.
            let shape = Shape::new(OP, vec![m, n])?;
            let s = self.backend.matmul(a.storage(), b.storage(), m, k, n);
            return Ok(self.make(shape, s));
        }
        let Some((batch, pa, pb)) = broadcast(&da[..ra], &db[..rb]) else {
            return Err(TensorError::shape(
                OP,
                format!(
                    "batch dimensions {} and {} of shapes {} and {} do not broadcast",
                    dims_str(&da[..ra]),
                    dims_str(&db[..rb]),
                    a.shape(),
                    b.shape()
                ),
            ));
        };
        let mut out = batch.clone();
        out.extend([m, n]);
        let shape = Shape::new(OP, out)?;
        let batch_strides = |padded: &[usize], per: usize| {
            let mut st = vec![0; padded.len()];
            let mut acc = per;
            for i in (0..padded.len()).rev() {
                st[i] = if padded[i] == 1 { 0 } else { acc };
                acc *= padded[i];
            }
            st
        };
        let g = MatmulGeometry {
            a_strides: batch_strides(&pa, m * k),
            b_strides: batch_strides(&pb, k * n),
            batch,
            m,
            k,
            n,
            transpose_a,
            transpose_b,
        };
        let s = self.backend.batched_matmul(a.storage(), b.storage(), &g);
        Ok(self.make(shape, s))
    }

    /// Every element limited to `lo..=hi` (`lo <= hi`).
    pub fn clamp(&self, a: &Tensor, lo: f32, hi: f32) -> Result<Tensor, TensorError> {
        const OP: &str = "clamp";
        need_f32(OP, a)?;
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(TensorError::argument(
                OP,
                format!("bounds {lo} and {hi} need lo <= hi"),
            ));
        }
        let s = self.backend.clamp(a.storage(), a.numel(), lo, hi);
        Ok(self.make(a.shape().clone(), s))
    }

    /// `a` where `cond` is non-zero, else `b`; all three broadcast together.
    pub fn where_(&self, cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, TensorError> {
        const OP: &str = "where";
        for t in [cond, a, b] {
            need_f32(OP, t)?;
        }
        let fail = || {
            TensorError::shape(
                OP,
                format!(
                    "shapes {} (condition), {} and {} do not broadcast",
                    cond.shape(),
                    a.shape(),
                    b.shape()
                ),
            )
        };
        let (ab, _, _) = broadcast(a.shape().dims(), b.shape().dims()).ok_or_else(fail)?;
        let (out, _, _) = broadcast(cond.shape().dims(), &ab).ok_or_else(fail)?;
        let pad = |s: &[usize]| {
            let mut v = vec![1; out.len() - s.len()];
            v.extend_from_slice(s);
            v
        };
        let shape = Shape::new(OP, out.clone())?;
        let s = self.backend.where_select(
            cond.storage(),
            &pad(cond.shape().dims()),
            a.storage(),
            &pad(a.shape().dims()),
            b.storage(),
            &pad(b.shape().dims()),
            &out,
        );
        Ok(self.make(shape, s))
    }

    /// `a` with `value` wherever `mask` (broadcast to `a`'s shape) is non-zero
    /// (a causal mask before a softmax, say).
    pub fn masked_fill(
        &self,
        a: &Tensor,
        mask: &Tensor,
        value: f32,
    ) -> Result<Tensor, TensorError> {
        const OP: &str = "masked-fill";
        need_f32(OP, a)?;
        need_f32(OP, mask)?;
        check_mask(OP, a, mask)?;
        let v = self.fill(&[], value)?;
        self.where_(mask, &v, a)
    }

    /// Running sums along `axis`: element `j` is the sum of elements `0..=j`
    /// (or `j..` when `reverse`), added in that order.
    pub fn cumsum(&self, a: &Tensor, axis: u32, reverse: bool) -> Result<Tensor, TensorError> {
        const OP: &str = "cumsum";
        need_f32(OP, a)?;
        let axis = axis_of(OP, a.shape(), axis)?;
        let (outer, len, inner) = a.shape().split_at_axis(axis);
        let s = self.backend.cumsum(a.storage(), outer, len, inner, reverse);
        Ok(self.make(a.shape().clone(), s))
    }

    /// The multipliers of dropout with probability `p` (in `0..=1`): element
    /// `i` is `1 / (1 - p)` where [`crate::rng::unit`]`(seed, 2i) >= p` (the
    /// uniform sample [`Device::random`] draws for element `i`), else 0; all
    /// zeros when `p` is 1. The same seed gives the same mask on every backend.
    pub fn dropout_mask(&self, shape: &[u32], p: f32, seed: u64) -> Result<Tensor, TensorError> {
        const OP: &str = "dropout";
        check_probability(OP, p)?;
        let shape = dims_of(OP, shape)?;
        let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        let s = self.backend.dropout_mask(shape.numel(), p, scale, seed);
        Ok(self.make(shape, s))
    }

    /// `x` times its dropout mask (see [`Device::dropout_mask`]). Training
    /// only: in evaluation, dropout is the identity.
    pub fn dropout(&self, x: &Tensor, p: f32, seed: u64) -> Result<Tensor, TensorError> {
        need_f32("dropout", x)?;
        let mask = self.dropout_mask(&x.shape().to_u32(), p, seed)?;
        self.binary(BinaryOp::Mul, x, &mask)
    }
}

/// Err unless `p` is a probability.
pub(crate) fn check_probability(op: &'static str, p: f32) -> Result<(), TensorError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(TensorError::argument(
            op,
            format!("probability {p} is not in 0..=1"),
        ))
    }
}

/// Err unless `mask` broadcasts to exactly `a`'s shape.
pub(crate) fn check_mask(op: &'static str, a: &Tensor, mask: &Tensor) -> Result<(), TensorError> {
    match broadcast(mask.shape().dims(), a.shape().dims()) {
        Some((out, _, _)) if out == a.shape().dims() => Ok(()),
        _ => Err(TensorError::shape(
            op,
            format!(
                "mask of shape {} does not broadcast to the tensor's shape {}",
                mask.shape(),
                a.shape()
            ),
        )),
    }
}
