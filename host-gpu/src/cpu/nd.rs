//! The CPU backend's N-D ops: strided copies, the index-driven gathers and
//! their reverses, select, running sums, dropout masks and batched products.

use super::{advance, broadcast_strides, host, host_i64, store, store_i64};
use crate::{CopyPart, DType, MatmulGeometry, Storage, rng};

/// Copies one part into `out` (see [`CopyPart`]).
fn copy_part<T: Copy>(out: &mut [T], src: &[T], p: &CopyPart<'_>) {
    if p.numel() == 0 {
        return;
    }
    let (dims, ss, ds) = p.collapsed();
    let Some(last) = dims.len().checked_sub(1) else {
        out[p.dst_offset] = src[p.src_offset];
        return;
    };
    let (len, s_in, d_in) = (dims[last], ss[last], ds[last]);
    let outer: usize = dims[..last].iter().product();
    let mut idx = vec![0usize; last];
    let (mut so, mut dof) = (p.src_offset, p.dst_offset);
    for _ in 0..outer {
        if s_in == 1 && d_in == 1 {
            out[dof..dof + len].copy_from_slice(&src[so..so + len]);
        } else {
            for j in 0..len {
                out[dof + j * d_in] = src[so + j * s_in];
            }
        }
        advance(&mut idx, &dims[..last], (&mut so, &ss), (&mut dof, &ds));
    }
}

pub(super) fn copy_nd(
    dtype: DType,
    out_len: usize,
    fill: Option<f64>,
    parts: &[CopyPart<'_>],
) -> Storage {
    match dtype {
        DType::F32 => {
            let mut out = vec![fill.map_or(0.0, |v| v as f32); out_len];
            for p in parts {
                copy_part(&mut out, &host!(p.src), p);
            }
            store(out)
        }
        DType::I64 => {
            let mut out = vec![fill.map_or(0, |v| v as i64); out_len];
            for p in parts {
                copy_part(&mut out, &host_i64!(p.src, DType::I64), p);
            }
            store_i64(out)
        }
    }
}

fn take<T: Copy>(a: &[T], outer: usize, n: usize, inner: usize, idx: &[i64]) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in idx {
            let at = (o * n + j as usize) * inner;
            out.extend_from_slice(&a[at..at + inner]);
        }
    }
    out
}

pub(super) fn index_select(
    dtype: DType,
    a: &Storage,
    outer: usize,
    n: usize,
    inner: usize,
    idx: &Storage,
) -> Storage {
    let idx = host_i64!(idx, dtype);
    match dtype {
        DType::F32 => store(take(&host!(a), outer, n, inner, &idx)),
        DType::I64 => store_i64(take(&host_i64!(a, dtype), outer, n, inner, &idx)),
    }
}

/// Calls `f(position, offset)` for every position of `dims` in row-major
/// order, where `offset` is the position's offset with `strides`, except
/// along `axis`, whose coordinate is left out.
fn walk_without_axis(
    dims: &[usize],
    strides: &[usize],
    axis: usize,
    mut f: impl FnMut(usize, usize),
) {
    let n: usize = dims.iter().product();
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    for p in 0..n {
        f(p, off);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if d != axis {
                off += strides[d];
            }
            if idx[d] < dims[d] {
                break;
            }
            if d != axis {
                off -= strides[d] * dims[d];
            }
            idx[d] = 0;
        }
    }
}

fn gather_typed<T: Copy>(
    a: &[T],
    a_dims: &[usize],
    axis: usize,
    idx: &[i64],
    idx_dims: &[usize],
) -> Vec<T> {
    let st = crate::nd::strides(a_dims);
    let mut out = Vec::with_capacity(idx.len());
    walk_without_axis(idx_dims, &st, axis, |p, off| {
        out.push(a[off + idx[p] as usize * st[axis]]);
    });
    out
}

pub(super) fn gather(
    dtype: DType,
    a: &Storage,
    a_dims: &[usize],
    axis: usize,
    idx: &Storage,
    idx_dims: &[usize],
) -> Storage {
    let idx = host_i64!(idx, dtype);
    match dtype {
        DType::F32 => store(gather_typed(&host!(a), a_dims, axis, &idx, idx_dims)),
        DType::I64 => store_i64(gather_typed(
            &host_i64!(a, dtype),
            a_dims,
            axis,
            &idx,
            idx_dims,
        )),
    }
}

pub(super) fn index_add(
    g: &Storage,
    outer: usize,
    m: usize,
    inner: usize,
    idx: &[i64],
    n: usize,
) -> Storage {
    let g = host!(g);
    let mut out = vec![0.0f32; outer * n * inner];
    for o in 0..outer {
        for (j, &r) in idx.iter().enumerate() {
            let src = &g[(o * m + j) * inner..][..inner];
            let dst = &mut out[(o * n + r as usize) * inner..][..inner];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
    store(out)
}

pub(super) fn scatter_add(
    src: &Storage,
    idx: &Storage,
    idx_dims: &[usize],
    axis: usize,
    out_dims: &[usize],
) -> Storage {
    let (src, idx) = (host!(src), host_i64!(idx));
    let st = crate::nd::strides(out_dims);
    let mut out = vec![0.0f32; out_dims.iter().product()];
    // Row-major order visits each output element's contributions in
    // increasing position along the axis.
    walk_without_axis(idx_dims, &st, axis, |p, off| {
        out[off + idx[p] as usize * st[axis]] += src[p];
    });
    store(out)
}

pub(super) fn where_select(
    cond: &Storage,
    cs: &[usize],
    a: &Storage,
    as_: &[usize],
    b: &Storage,
    bs: &[usize],
    out: &[usize],
) -> Storage {
    let (c, a, b) = (host!(cond), host!(a), host!(b));
    let n: usize = out.iter().product();
    let st = [cs, as_, bs].map(broadcast_strides);
    let rank = out.len();
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let mut off = [0usize; 3];
    for _ in 0..n {
        res.push(if c[off[0]] != 0.0 {
            a[off[1]]
        } else {
            b[off[2]]
        });
        for d in (0..rank).rev() {
            idx[d] += 1;
            for k in 0..3 {
                off[k] += st[k][d];
            }
            if idx[d] < out[d] {
                break;
            }
            for k in 0..3 {
                off[k] -= st[k][d] * idx[d];
            }
            idx[d] = 0;
        }
    }
    store(res)
}

pub(super) fn cumsum(
    a: &Storage,
    outer: usize,
    len: usize,
    inner: usize,
    reverse: bool,
) -> Storage {
    let a = host!(a);
    let mut out = vec![0.0f32; a.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let mut acc = 0.0f32;
            for step in 0..len {
                let j = if reverse { len - 1 - step } else { step };
                acc += a[at(j)];
                out[at(j)] = acc;
            }
        }
    }
    store(out)
}

pub(super) fn dropout_mask(len: usize, p: f32, scale: f32, seed: u64) -> Storage {
    store(
        (0..len)
            .map(|i| {
                if rng::unit(seed, (i as u32).wrapping_mul(2)) >= p {
                    scale
                } else {
                    0.0
                }
            })
            .collect(),
    )
}

pub(super) fn batched_matmul(a: &Storage, b: &Storage, g: &MatmulGeometry) -> Storage {
    let (m, k, n) = (g.m, g.k, g.n);
    let mut c = vec![0.0f32; g.batches() * m * n];
    if m == 0 || n == 0 || k == 0 {
        return store(c);
    }
    let (a, b) = (host!(a), host!(b));
    let (la, lb, _) = g.lens();
    assert!(
        a.len() >= la && b.len() >= lb,
        "batched matmul storage sizes"
    );
    let (rsa, csa) = if g.transpose_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if g.transpose_b { (1, k) } else { (n, 1) };
    for (i, out) in c.chunks_exact_mut(m * n).enumerate() {
        let (oa, ob) = g.offsets(i);
        // SAFETY: each matrix lies within its storage (checked above through
        // `lens`, the last batch's offset plus one matrix), the strides
        // describe an m×k, k×n and m×n matrix inside those spans, and `out`
        // holds exactly m×n elements.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr().add(oa),
                rsa as isize,
                csa as isize,
                b.as_ptr().add(ob),
                rsb as isize,
                csb as isize,
                0.0,
                out.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    store(c)
}
