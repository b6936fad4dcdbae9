//! The CPU backend's convolutions (im2col and sgemm, one image and group at a
//! time) and pooling (direct loops).

use super::{host, host_i64, store, store_i64};
use crate::{ConvGeometry, PoolGeometry, Storage};

/// Unfolds one group of one image into `cols` `[patch, positions]`: row
/// `(ci, i, j)`, column `(ho, wo)` holds the input tap that kernel element
/// `(i, j)` of channel `ci` meets at that output position (zero in padding).
fn im2col(x: &[f32], g: &ConvGeometry, image: usize, group: usize, cols: &mut [f32]) {
    let cg = g.c / g.groups;
    let p = g.positions();
    let mut row = 0;
    for ci in 0..cg {
        let plane = &x[((image * g.c) + group * cg + ci) * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let dst = &mut cols[row * p..][..p];
                for ho in 0..g.ho {
                    let h = (ho * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
                    for wo in 0..g.wo {
                        let w =
                            (wo * g.stride[1] + j * g.dilation[1]) as isize - g.padding[1] as isize;
                        dst[ho * g.wo + wo] =
                            if h >= 0 && (h as usize) < g.h && w >= 0 && (w as usize) < g.w {
                                plane[h as usize * g.w + w as usize]
                            } else {
                                0.0
                            };
                    }
                }
                row += 1;
            }
        }
    }
}

/// Folds `cols` back into one group of one image of `dx`, adding each tap
/// to the input element it came from.
fn col2im(cols: &[f32], g: &ConvGeometry, image: usize, group: usize, dx: &mut [f32]) {
    let cg = g.c / g.groups;
    let p = g.positions();
    let mut row = 0;
    for ci in 0..cg {
        let plane = &mut dx[((image * g.c) + group * cg + ci) * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let src = &cols[row * p..][..p];
                for ho in 0..g.ho {
                    let h = (ho * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
                    if h < 0 || h as usize >= g.h {
                        continue;
                    }
                    for wo in 0..g.wo {
                        let w =
                            (wo * g.stride[1] + j * g.dilation[1]) as isize - g.padding[1] as isize;
                        if w >= 0 && (w as usize) < g.w {
                            plane[h as usize * g.w + w as usize] += src[ho * g.wo + wo];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// `c = a·b` (or `c += a·b` with `accumulate`) for row-major matrices given
/// by pointer and strides.
#[allow(clippy::too_many_arguments, reason = "sgemm's own arguments")]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "gemm output");
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        (m - 1) * rsa + (k - 1) * csa < a.len() && (k - 1) * rsb + (n - 1) * csb < b.len(),
        "gemm operands"
    );
    // SAFETY: the assertion above keeps every element the strides reach
    // inside `a`, `b` and `c`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

pub(super) fn conv2d(x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
    let (x, w) = (host(x), host(w));
    let (_, _, out_len) = g.lens();
    let mut out = vec![0.0f32; out_len];
    let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
    let mut cols = vec![0.0f32; kk * p];
    for image in 0..g.n {
        for group in 0..g.groups {
            im2col(&x, g, image, group, &mut cols);
            let wg = &w[group * og * kk..][..og * kk];
            let y = &mut out[(image * g.o + group * og) * p..][..og * p];
            gemm(og, kk, p, wg, (kk, 1), &cols, (p, 1), y, false);
        }
    }
    store(out)
}

pub(super) fn conv2d_grad_input(dy: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
    let (dy, w) = (host(dy), host(w));
    let (x_len, _, _) = g.lens();
    let mut dx = vec![0.0f32; x_len];
    let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
    let mut cols = vec![0.0f32; kk * p];
    for image in 0..g.n {
        for group in 0..g.groups {
            // cols = w_gᵀ · dy_g: [patch, og] x [og, positions].
            let wg = &w[group * og * kk..][..og * kk];
            let dyg = &dy[(image * g.o + group * og) * p..][..og * p];
            gemm(kk, og, p, wg, (1, kk), dyg, (p, 1), &mut cols, false);
            col2im(&cols, g, image, group, &mut dx);
        }
    }
    store(dx)
}

pub(super) fn conv2d_grad_weight(x: &Storage, dy: &Storage, g: &ConvGeometry) -> Storage {
    let (x, dy) = (host(x), host(dy));
    let (_, w_len, _) = g.lens();
    let mut dw = vec![0.0f32; w_len];
    let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
    let mut cols = vec![0.0f32; kk * p];
    for image in 0..g.n {
        for group in 0..g.groups {
            // dw_g += dy_g · colsᵀ: [og, positions] x [positions, patch].
            im2col(&x, g, image, group, &mut cols);
            let dyg = &dy[(image * g.o + group * og) * p..][..og * p];
            let dwg = &mut dw[group * og * kk..][..og * kk];
            gemm(og, p, kk, dyg, (p, 1), &cols, (1, p), dwg, true);
        }
    }
    store(dw)
}

/// Output positions `lo..hi` along one axis whose window (of `kernel` taps,
/// `stride` apart, shifted by `padding`) contains input position `at`.
pub(crate) fn windows_containing(
    at: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    outputs: usize,
) -> (usize, usize) {
    // Window o covers o·stride - padding ..= o·stride - padding + kernel - 1.
    let top = at + padding;
    let lo = (top + 1).saturating_sub(kernel).div_ceil(stride);
    let hi = (top / stride + 1).min(outputs);
    (lo, hi.max(lo))
}

pub(super) fn max_pool2d(x: &Storage, g: &PoolGeometry) -> (Storage, Storage) {
    let x = host(x);
    let (_, out_len) = g.lens();
    let (mut vals, mut idx) = (Vec::with_capacity(out_len), Vec::with_capacity(out_len));
    for plane in x.chunks_exact(g.h * g.w).take(g.n * g.c) {
        for ho in 0..g.ho {
            for wo in 0..g.wo {
                let mut best: Option<(f32, usize)> = None;
                for i in 0..g.kernel[0] {
                    let h = (ho * g.stride[0] + i) as isize - g.padding[0] as isize;
                    if h < 0 || h as usize >= g.h {
                        continue;
                    }
                    for j in 0..g.kernel[1] {
                        let w = (wo * g.stride[1] + j) as isize - g.padding[1] as isize;
                        if w < 0 || w as usize >= g.w {
                            continue;
                        }
                        let at = h as usize * g.w + w as usize;
                        let v = plane[at];
                        if best.is_none_or(|(b, _)| v > b) {
                            best = Some((v, at));
                        }
                    }
                }
                // Every window holds an input element (padding <= kernel / 2).
                let (v, at) = best.expect("a window inside the input");
                vals.push(v);
                idx.push(at as i64);
            }
        }
    }
    (store(vals), store_i64(idx))
}

pub(super) fn max_pool2d_grad(dy: &Storage, idx: &Storage, g: &PoolGeometry) -> Storage {
    let (dy, idx) = (host(dy), host_i64(idx));
    let (x_len, _) = g.lens();
    let mut dx = vec![0.0f32; x_len];
    let per = g.ho * g.wo;
    for (k, (&d, &at)) in dy.iter().zip(idx.iter()).enumerate() {
        dx[(k / per) * g.h * g.w + at as usize] += d;
    }
    store(dx)
}

pub(super) fn avg_pool2d(x: &Storage, g: &PoolGeometry) -> Storage {
    let x = host(x);
    let (_, out_len) = g.lens();
    let div = (g.kernel[0] * g.kernel[1]) as f32;
    let mut out = Vec::with_capacity(out_len);
    for plane in x.chunks_exact(g.h * g.w).take(g.n * g.c) {
        for ho in 0..g.ho {
            for wo in 0..g.wo {
                let mut acc = 0.0f32;
                for i in 0..g.kernel[0] {
                    let h = (ho * g.stride[0] + i) as isize - g.padding[0] as isize;
                    if h < 0 || h as usize >= g.h {
                        continue;
                    }
                    for j in 0..g.kernel[1] {
                        let w = (wo * g.stride[1] + j) as isize - g.padding[1] as isize;
                        if w >= 0 && (w as usize) < g.w {
                            acc += plane[h as usize * g.w + w as usize];
                        }
                    }
                }
                out.push(acc / div);
            }
        }
    }
    store(out)
}

pub(super) fn avg_pool2d_grad(dy: &Storage, g: &PoolGeometry) -> Storage {
    let dy = host(dy);
    let (x_len, _) = g.lens();
    let div = (g.kernel[0] * g.kernel[1]) as f32;
    let mut dx = Vec::with_capacity(x_len);
    for plane in dy.chunks_exact(g.ho * g.wo).take(g.n * g.c) {
        for h in 0..g.h {
            let (h0, h1) = windows_containing(h, g.kernel[0], g.stride[0], g.padding[0], g.ho);
            for w in 0..g.w {
                let (w0, w1) = windows_containing(w, g.kernel[1], g.stride[1], g.padding[1], g.wo);
                let mut acc = 0.0f32;
                for ho in h0..h1 {
                    for wo in w0..w1 {
                        acc += plane[ho * g.wo + wo];
                    }
                }
                dx.push(acc / div);
            }
        }
    }
    store(dx)
}
