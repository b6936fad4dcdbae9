//! Ops that move elements without arithmetic, on tensors of either element
//! type: permute, slice, concatenation, padding, broadcasting, the reshapes
//! (flatten, squeeze, unsqueeze), and the index-driven gathers with their
//! reverses (index-add, scatter-add), which are the gathers' gradients.
//!
//! All of the first group are one backend primitive, [`crate::Backend::copy_nd`]: an
//! N-D strided copy of parts into an output that may first be filled.

use std::sync::Arc;

use crate::device::{axis_of, dims_of};
use crate::dtype::{need_f32, need_i64};
use crate::shape::broadcast;
use crate::{DType, Device, Shape, Storage, Tensor, TensorError};

/// One block of a [`crate::Backend::copy_nd`]: for every coordinate `c` of `dims`,
/// `out[dst_offset + Σ c·dst_strides] = src[src_offset + Σ c·src_strides]`.
/// Offsets and strides count elements (not bytes); a stride may be 0.
#[derive(Clone, Debug)]
pub struct CopyPart<'a> {
    /// Where the elements come from.
    pub src: &'a Storage,
    /// Elements `src` holds.
    pub src_len: usize,
    /// The shape of the block.
    pub dims: Vec<usize>,
    /// Source stride of each dimension of the block.
    pub src_strides: Vec<usize>,
    /// Source element of the block's first coordinate.
    pub src_offset: usize,
    /// Output stride of each dimension of the block.
    pub dst_strides: Vec<usize>,
    /// Output element of the block's first coordinate.
    pub dst_offset: usize,
}

impl CopyPart<'_> {
    /// Elements the block copies.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The same copy with size-1 dimensions dropped and neighbours merged
    /// where both sides step across them as one dimension (a slice of whole
    /// rows becomes one contiguous run).
    pub fn collapsed(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let (mut dims, mut src, mut dst): (Vec<usize>, Vec<usize>, Vec<usize>) =
            (vec![], vec![], vec![]);
        for i in 0..self.dims.len() {
            let d = self.dims[i];
            if d == 1 {
                continue;
            }
            let (s, t) = (self.src_strides[i], self.dst_strides[i]);
            if let (Some(last_d), Some(&ls), Some(&lt)) = (dims.last_mut(), src.last(), dst.last())
                && ls == s * d
                && lt == t * d
            {
                *last_d *= d;
                *src.last_mut().expect("same length") = s;
                *dst.last_mut().expect("same length") = t;
                continue;
            }
            dims.push(d);
            src.push(s);
            dst.push(t);
        }
        (dims, src, dst)
    }
}

/// Row-major strides of `dims`, in elements.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut st = vec![0; dims.len()];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        st[i] = acc;
        acc *= dims[i];
    }
    st
}

fn storage_len(t: &Tensor) -> usize {
    t.numel()
}

/// Every element of `t` in `0..bound`: the values, or an error naming the
/// first that is not (`place` says where the bound comes from).
pub(crate) fn checked_indices(
    dev: &Device,
    op: &'static str,
    t: &Tensor,
    bound: usize,
    place: impl Fn() -> String,
) -> Result<Arc<[i64]>, TensorError> {
    let values = dev.i64_values(t);
    if let Some((p, &v)) = values
        .iter()
        .enumerate()
        .find(|&(_, &v)| v < 0 || v as u64 >= bound as u64)
    {
        return Err(TensorError::argument(
            op,
            format!(
                "index {v} (element {p} of the indices) is out of range for {}",
                place()
            ),
        ));
    }
    Ok(values)
}

impl Device {
    /// A copy of `a` with its dimensions reordered: dimension `i` of the
    /// result is dimension `axes[i]` of `a`. `axes` must name each axis once.
    pub fn permute(&self, a: &Tensor, axes: &[u32]) -> Result<Tensor, TensorError> {
        const OP: &str = "permute";
        let dims = a.shape().dims();
        let mut seen = vec![false; dims.len()];
        let valid = axes.len() == dims.len()
            && axes.iter().all(|&x| {
                let x = x as usize;
                x < dims.len() && !std::mem::replace(&mut seen[x], true)
            });
        if !valid {
            return Err(TensorError::argument(
                OP,
                format!(
                    "axes {axes:?} are not a permutation of the {} axes of shape {}",
                    dims.len(),
                    a.shape()
                ),
            ));
        }
        if axes.iter().enumerate().all(|(i, &x)| i == x as usize) {
            return Ok(a.clone());
        }
        let st = strides(dims);
        let out: Vec<usize> = axes.iter().map(|&x| dims[x as usize]).collect();
        let part = CopyPart {
            src: a.storage(),
            src_len: storage_len(a),
            dims: out.clone(),
            src_strides: axes.iter().map(|&x| st[x as usize]).collect(),
            src_offset: 0,
            dst_strides: strides(&out),
            dst_offset: 0,
        };
        self.copy(OP, a.dtype(), out, None, &[part])
    }

    /// Elements `start, start + step, …` (below `end`) along `axis`.
    /// `start <= end <= size of the axis`, and `step >= 1`.
    pub fn slice(
        &self,
        a: &Tensor,
        axis: u32,
        start: u32,
        end: u32,
        step: u32,
    ) -> Result<Tensor, TensorError> {
        const OP: &str = "slice";
        let axis = axis_of(OP, a.shape(), axis)?;
        let dims = a.shape().dims();
        let (start, end, step) = (start as usize, end as usize, step as usize);
        if step == 0 {
            return Err(TensorError::argument(OP, "step must be at least 1, got 0"));
        }
        if start > end || end > dims[axis] {
            return Err(TensorError::argument(
                OP,
                format!(
                    "range {start}..{end} is out of range for axis {axis} of shape {} (size {})",
                    a.shape(),
                    dims[axis]
                ),
            ));
        }
        if start == 0 && end == dims[axis] && step == 1 {
            return Ok(a.clone());
        }
        let st = strides(dims);
        let mut out = dims.to_vec();
        out[axis] = (end - start).div_ceil(step);
        let mut src_strides = st.clone();
        src_strides[axis] *= step;
        let part = CopyPart {
            src: a.storage(),
            src_len: storage_len(a),
            dims: out.clone(),
            src_strides,
            src_offset: start * st[axis],
            dst_strides: strides(&out),
            dst_offset: 0,
        };
        self.copy(OP, a.dtype(), out, None, &[part])
    }

    /// Concatenation of `parts` (at least one, all of one element type and
    /// rank) along `axis`; all other dimensions must match.
    pub fn concat_many(&self, parts: &[&Tensor], axis: u32) -> Result<Tensor, TensorError> {
        const OP: &str = "concat";
        let Some(first) = parts.first() else {
            return Err(TensorError::argument(OP, "needs at least one tensor"));
        };
        let axis = axis_of(OP, first.shape(), axis)?;
        let d0 = first.shape().dims();
        for (i, p) in parts.iter().enumerate().skip(1) {
            if p.dtype() != first.dtype() {
                return Err(TensorError::dtype(
                    OP,
                    format!(
                        "tensor {i} is {} but tensor 0 is {}; all must have one element type",
                        p.dtype(),
                        first.dtype()
                    ),
                ));
            }
            let d = p.shape().dims();
            let fits = d.len() == d0.len()
                && d.iter()
                    .zip(d0)
                    .enumerate()
                    .all(|(k, (x, y))| k == axis || x == y);
            if !fits {
                return Err(TensorError::shape(
                    OP,
                    format!(
                        "shapes {} (tensor 0) and {} (tensor {i}) differ outside axis {axis}",
                        first.shape(),
                        p.shape()
                    ),
                ));
            }
        }
        if parts.len() == 1 {
            return Ok((*first).clone());
        }
        let mut out = d0.to_vec();
        out[axis] = parts
            .iter()
            .map(|p| p.shape().dims()[axis])
            .fold(0usize, usize::saturating_add);
        let shape = Shape::new(OP, out.clone())?;
        let dst = strides(&out);
        let mut at = 0;
        let mut copies = Vec::with_capacity(parts.len());
        for p in parts {
            let d = p.shape().dims();
            copies.push(CopyPart {
                src: p.storage(),
                src_len: storage_len(p),
                dims: d.to_vec(),
                src_strides: strides(d),
                src_offset: 0,
                dst_strides: dst.clone(),
                dst_offset: at * dst[axis],
            });
            at += d[axis];
        }
        let s = self
            .backend
            .copy_nd(first.dtype(), shape.numel(), None, &copies);
        Ok(self.make(shape, s))
    }

    /// `a` with `pads[d] = [before, after]` elements of `value` added around
    /// each axis `d` (`pads` has one entry per axis). For an i64 tensor the
    /// value must be an integer (exact in f64).
    pub fn pad(&self, a: &Tensor, pads: &[[u32; 2]], value: f64) -> Result<Tensor, TensorError> {
        const OP: &str = "pad";
        let dims = a.shape().dims();
        if pads.len() != dims.len() {
            return Err(TensorError::argument(
                OP,
                format!(
                    "needs one [before, after] pair per axis: shape {} has {} axes, {} pairs \
                     were given",
                    a.shape(),
                    dims.len(),
                    pads.len()
                ),
            ));
        }
        check_fill(OP, a.dtype(), value)?;
        let out: Vec<usize> = dims
            .iter()
            .zip(pads)
            .map(|(&d, p)| {
                d.saturating_add(p[0] as usize)
                    .saturating_add(p[1] as usize)
            })
            .collect();
        let shape = Shape::new(OP, out.clone())?;
        if pads.iter().all(|p| p == &[0, 0]) {
            return Ok(a.clone());
        }
        let dst = strides(&out);
        let part = CopyPart {
            src: a.storage(),
            src_len: storage_len(a),
            dims: dims.to_vec(),
            src_strides: strides(dims),
            src_offset: 0,
            dst_offset: pads.iter().zip(&dst).map(|(p, s)| p[0] as usize * s).sum(),
            dst_strides: dst,
        };
        let s = self
            .backend
            .copy_nd(a.dtype(), shape.numel(), Some(value), &[part]);
        Ok(self.make(shape, s))
    }

    /// The block of `a` of shape `dims` starting at `starts` (the reverse of
    /// [`Device::pad`]). Bounds are the caller's to check.
    pub(crate) fn crop(
        &self,
        a: &Tensor,
        starts: &[usize],
        dims: &[usize],
    ) -> Result<Tensor, TensorError> {
        let st = strides(a.shape().dims());
        let part = CopyPart {
            src: a.storage(),
            src_len: storage_len(a),
            dims: dims.to_vec(),
            src_strides: st.clone(),
            src_offset: starts.iter().zip(&st).map(|(a, b)| a * b).sum(),
            dst_strides: strides(dims),
            dst_offset: 0,
        };
        self.copy("crop", a.dtype(), dims.to_vec(), None, &[part])
    }

    /// The reverse of [`Device::slice`] (its gradient): zeros of `shape`, with
    /// `g` at positions `start, start + step, …` along `axis`.
    pub(crate) fn unslice(
        &self,
        g: &Tensor,
        shape: &Shape,
        axis: usize,
        start: usize,
        step: usize,
    ) -> Result<Tensor, TensorError> {
        let out = shape.dims().to_vec();
        let dst = strides(&out);
        let mut dst_strides = dst.clone();
        dst_strides[axis] *= step;
        let part = CopyPart {
            src: g.storage(),
            src_len: storage_len(g),
            dims: g.shape().dims().to_vec(),
            src_strides: strides(g.shape().dims()),
            src_offset: 0,
            dst_strides,
            dst_offset: start * dst[axis],
        };
        self.copy("slice", g.dtype(), out, Some(0.0), &[part])
    }

    /// Dimensions `start..=end` merged into one (a reshape).
    pub fn flatten(&self, a: &Tensor, start: u32, end: u32) -> Result<Tensor, TensorError> {
        const OP: &str = "flatten";
        let rank = a.shape().rank();
        let (s, e) = (start as usize, end as usize);
        if s > e || e >= rank {
            return Err(TensorError::argument(
                OP,
                format!(
                    "axes {start}..={end} are not a range of the axes of shape {}",
                    a.shape()
                ),
            ));
        }
        let d = a.shape().dims();
        let mut out: Vec<u32> = d[..s].iter().map(|&x| x as u32).collect();
        out.push(d[s..=e].iter().product::<usize>() as u32);
        out.extend(d[e + 1..].iter().map(|&x| x as u32));
        self.reshape(a, &out)
    }

    /// `a` without `axis`, which must have size 1 (a reshape).
    pub fn squeeze(&self, a: &Tensor, axis: u32) -> Result<Tensor, TensorError> {
        const OP: &str = "squeeze";
        let axis = axis_of(OP, a.shape(), axis)?;
        let d = a.shape().dims();
        if d[axis] != 1 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "axis {axis} of shape {} has size {}, not 1",
                    a.shape(),
                    d[axis]
                ),
            ));
        }
        let mut out: Vec<u32> = a.shape().to_u32();
        out.remove(axis);
        self.reshape(a, &out)
    }

    /// `a` with a new axis of size 1 at `axis` (`0..=rank`; a reshape).
    pub fn unsqueeze(&self, a: &Tensor, axis: u32) -> Result<Tensor, TensorError> {
        const OP: &str = "unsqueeze";
        let rank = a.shape().rank();
        if axis as usize > rank {
            return Err(TensorError::argument(
                OP,
                format!(
                    "axis {axis} is out of range for shape {} (a new axis goes at 0..={rank})",
                    a.shape()
                ),
            ));
        }
        let mut out = a.shape().to_u32();
        out.insert(axis as usize, 1);
        let shape = dims_of(OP, &out)?;
        Ok(self.make(shape, a.storage().clone()))
    }

    /// `a` repeated along its size-1 (and missing leading) dimensions to `shape`.
    pub fn broadcast_to(&self, a: &Tensor, shape: &[u32]) -> Result<Tensor, TensorError> {
        const OP: &str = "broadcast-to";
        let target = dims_of(OP, shape)?;
        let fits = matches!(broadcast(a.shape().dims(), target.dims()),
            Some((out, _, _)) if out == target.dims());
        if !fits {
            return Err(TensorError::shape(
                OP,
                format!("shape {} does not broadcast to {target}", a.shape()),
            ));
        }
        if a.shape() == &target {
            return Ok(a.clone());
        }
        let out = target.dims().to_vec();
        let pad = out.len() - a.shape().rank();
        let st = strides(a.shape().dims());
        let src_strides = (0..out.len())
            .map(|i| {
                if i < pad || a.shape().dims()[i - pad] == 1 {
                    0
                } else {
                    st[i - pad]
                }
            })
            .collect();
        let part = CopyPart {
            src: a.storage(),
            src_len: storage_len(a),
            dims: out.clone(),
            src_strides,
            src_offset: 0,
            dst_strides: strides(&out),
            dst_offset: 0,
        };
        self.copy(OP, a.dtype(), out, None, &[part])
    }

    /// Elements of `a` along `axis` picked by `indices` (i64, any shape, each
    /// in `0..size of the axis`): the result has `a`'s shape with that axis
    /// replaced by the indices' shape (NumPy's `take`; with 1-D indices,
    /// PyTorch's `index_select`).
    pub fn index_select(
        &self,
        a: &Tensor,
        axis: u32,
        indices: &Tensor,
    ) -> Result<Tensor, TensorError> {
        self.take("index-select", a, axis, indices)
    }

    /// Rows of `table` (`[rows, dim]`) at `ids` (i64, any shape): shape
    /// `ids.shape + [dim]`.
    pub fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor, TensorError> {
        if table.shape().rank() != 2 {
            return Err(TensorError::shape(
                "embedding",
                format!("needs a 2-D table [rows, dim], got shape {}", table.shape()),
            ));
        }
        self.take("embedding", table, 0, ids)
    }

    fn take(
        &self,
        op: &'static str,
        a: &Tensor,
        axis: u32,
        indices: &Tensor,
    ) -> Result<Tensor, TensorError> {
        need_i64(op, "indices", indices)?;
        let axis = axis_of(op, a.shape(), axis)?;
        let d = a.shape().dims();
        let mut out = d[..axis].to_vec();
        out.extend_from_slice(indices.shape().dims());
        out.extend_from_slice(&d[axis + 1..]);
        let shape = Shape::new(op, out)?;
        checked_indices(self, op, indices, d[axis], || {
            format!("axis {axis} of shape {} (size {})", a.shape(), d[axis])
        })?;
        let (outer, n, inner) = a.shape().split_at_axis(axis);
        let s = self.backend.index_select(
            a.dtype(),
            a.storage(),
            outer,
            n,
            inner,
            indices.storage(),
            indices.numel(),
        );
        Ok(self.make(shape, s))
    }

    /// The reverse of [`Device::index_select`] (its gradient): zeros of
    /// `shape`, and each slice of `src` added at its index along `axis`, in
    /// index order. `src` must have the shape `index_select` would give.
    pub fn index_add(
        &self,
        shape: &[u32],
        axis: u32,
        indices: &Tensor,
        src: &Tensor,
    ) -> Result<Tensor, TensorError> {
        const OP: &str = "index-add";
        need_f32(OP, src)?;
        need_i64(OP, "indices", indices)?;
        let shape = dims_of(OP, shape)?;
        let axis = axis_of(OP, &shape, axis)?;
        let d = shape.dims();
        let mut want = d[..axis].to_vec();
        want.extend_from_slice(indices.shape().dims());
        want.extend_from_slice(&d[axis + 1..]);
        if src.shape().dims() != want {
            return Err(TensorError::shape(
                OP,
                format!(
                    "values of shape {} do not fit: indices {} along axis {axis} of {shape} \
                     need values of shape {}",
                    src.shape(),
                    indices.shape(),
                    dims_str(&want)
                ),
            ));
        }
        let idx = checked_indices(self, OP, indices, d[axis], || {
            format!("axis {axis} of shape {shape} (size {})", d[axis])
        })?;
        let (outer, n, inner) = shape.split_at_axis(axis);
        let s = self
            .backend
            .index_add(src.storage(), outer, idx.len(), inner, &idx, n);
        Ok(self.make(shape, s))
    }

    /// PyTorch's `gather`: `out[c] = a[c with c[axis] = indices[c]]`. The
    /// indices (i64) have `a`'s rank, sizes at most `a`'s outside `axis`, and
    /// values in `0..size of the axis`; the result has their shape.
    pub fn gather(&self, a: &Tensor, axis: u32, indices: &Tensor) -> Result<Tensor, TensorError> {
        const OP: &str = "gather";
        need_i64(OP, "indices", indices)?;
        let axis = axis_of(OP, a.shape(), axis)?;
        check_index_shape(OP, a.shape(), axis, indices.shape(), "the tensor")?;
        let bound = a.shape().dims()[axis];
        checked_indices(self, OP, indices, bound, || {
            format!("axis {axis} of shape {} (size {bound})", a.shape())
        })?;
        let s = self.backend.gather(
            a.dtype(),
            a.storage(),
            a.shape().dims(),
            axis,
            indices.storage(),
            indices.shape().dims(),
        );
        Ok(self.make(indices.shape().clone(), s))
    }

    /// The reverse of [`Device::gather`] (its gradient; PyTorch's
    /// `scatter_add` into zeros): zeros of `shape`, and each element of `src`
    /// (f32, shaped like `indices`) added at `c with c[axis] = indices[c]`.
    pub fn scatter_add(
        &self,
        shape: &[u32],
        axis: u32,
        indices: &Tensor,
        src: &Tensor,
    ) -> Result<Tensor, TensorError> {
        const OP: &str = "scatter-add";
        need_f32(OP, src)?;
        need_i64(OP, "indices", indices)?;
        let shape = dims_of(OP, shape)?;
        let axis = axis_of(OP, &shape, axis)?;
        if src.shape() != indices.shape() {
            return Err(TensorError::shape(
                OP,
                format!(
                    "values of shape {} and indices of shape {} differ",
                    src.shape(),
                    indices.shape()
                ),
            ));
        }
        check_index_shape(OP, &shape, axis, indices.shape(), "the result")?;
        let bound = shape.dims()[axis];
        checked_indices(self, OP, indices, bound, || {
            format!("axis {axis} of shape {shape} (size {bound})")
        })?;
        let s = self.backend.scatter_add(
            src.storage(),
            indices.storage(),
            indices.shape().dims(),
            axis,
            shape.dims(),
        );
        Ok(self.make(shape, s))
    }

    /// One `copy_nd` into a new tensor of `out` dims.
    pub(crate) fn copy(
        &self,
        op: &'static str,
        dtype: DType,
        out: Vec<usize>,
        fill: Option<f64>,
        parts: &[CopyPart<'_>],
    ) -> Result<Tensor, TensorError> {
        let shape = Shape::new(op, out)?;
        let s = self.backend.copy_nd(dtype, shape.numel(), fill, parts);
        Ok(self.make(shape, s))
    }
}

/// `[2, 3]`, for dims that may not make a valid [`Shape`].
pub(crate) fn dims_str(d: &[usize]) -> String {
    let parts: Vec<String> = d.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Err unless `value` can fill a tensor of `dtype`.
pub(crate) fn check_fill(op: &'static str, dtype: DType, value: f64) -> Result<(), TensorError> {
    if dtype == DType::I64 && !(value.fract() == 0.0 && value.abs() <= 9.007_199_254_740_992e15) {
        return Err(TensorError::argument(
            op,
            format!("an i64 tensor needs an integer value (|v| <= 2^53), got {value}"),
        ));
    }
    Ok(())
}

/// Indices of `gather` (and `scatter-add`) must have the rank of `of` and at
/// most its sizes outside `axis`.
fn check_index_shape(
    op: &'static str,
    of: &Shape,
    axis: usize,
    idx: &Shape,
    what: &str,
) -> Result<(), TensorError> {
    if idx.rank() != of.rank() {
        return Err(TensorError::shape(
            op,
            format!(
                "indices of shape {idx} have rank {} but {what} (shape {of}) has rank {}",
                idx.rank(),
                of.rank()
            ),
        ));
    }
    if let Some(d) = (0..of.rank()).find(|&d| d != axis && idx.dims()[d] > of.dims()[d]) {
        return Err(TensorError::shape(
            op,
            format!(
                "indices of shape {idx} are larger than {what} (shape {of}) along axis {d}, \
                 which is not the gathered axis {axis}"
            ),
        ));
    }
    Ok(())
}
