//! The CPU backend's convolutions (im2col and sgemm over several images at
//! a time) and pooling (direct loops).
//!
//! A convolution unfolds a chunk of images side by side into one `cols`
//! matrix `[patch, images · positions]`, so one product covers the whole
//! chunk: a small image (8×8 digits) makes a product wide enough for the
//! sgemm kernel to run at speed, where one product per image would be a
//! thin one dominated by packing. Chunks keep `cols` under
//! [`COLS_BUDGET`] floats. Everything runs on one thread in a fixed order,
//! so a result is the same bits every run.

use super::{host, host_i64, store, store_i64};
use crate::{ConvGeometry, PoolGeometry, Storage};

/// Most floats of unfolded input held at once (16 MiB); an image larger
/// than this is unfolded alone.
const COLS_BUDGET: usize = 1 << 22;

/// Images unfolded together when `cols` may hold `budget` floats, and the
/// columns of their `cols`.
fn chunking(g: &ConvGeometry, budget: usize) -> (usize, usize) {
    let per_image = (g.patch() * g.positions()).max(1);
    let images = (budget / per_image).clamp(1, g.n.max(1));
    (images, images * g.positions())
}

/// Output widths from which im2col copies whole output rows; narrower rows
/// (small images) are gathered an element at a time.
const ROW_COPY_MIN: usize = 16;

/// How one plane of input (one channel of one image) unfolds: the plane
/// inside its zero padding, and where in that padded plane each kernel tap
/// meets the output positions.
struct Unfold {
    /// A zeroed plane of the padded size, whose interior each plane is
    /// copied into (empty without padding: the plane is read as it is).
    padded: Vec<f32>,
    /// Row length of the padded plane.
    wp: usize,
    /// Whether whole output rows are copied (stride 1 across, rows of at
    /// least [`ROW_COPY_MIN`]).
    rows: bool,
    /// Offsets in the padded plane: with `rows`, of the first tap of output
    /// row `ho` for kernel element `t = i·kw + j`, at `t·ho + ho`; otherwise
    /// of each tap, at `t·positions + pos`.
    taps: Vec<usize>,
}

impl Unfold {
    fn new(g: &ConvGeometry) -> Unfold {
        let [p0, p1] = g.padding;
        let (hp, wp) = (g.h + 2 * p0, g.w + 2 * p1);
        let padded = if p0 + p1 > 0 {
            vec![0.0; hp * wp]
        } else {
            Vec::new()
        };
        let rows = g.stride[1] == 1 && g.wo >= ROW_COPY_MIN;
        let mut taps = Vec::new();
        for i in 0..g.kh {
            for j in 0..g.kw {
                for ho in 0..g.ho {
                    let at = (ho * g.stride[0] + i * g.dilation[0]) * wp + j * g.dilation[1];
                    if rows {
                        taps.push(at);
                    } else {
                        taps.extend((0..g.wo).map(|wo| at + wo * g.stride[1]));
                    }
                }
            }
        }
        Unfold {
            padded,
            wp,
            rows,
            taps,
        }
    }
}

/// `plane` (`h` rows of `w`) inside its padding in `padded`, or `plane`
/// itself when there is none.
fn pad<'a>(plane: &'a [f32], padded: &'a mut [f32], wp: usize, g: &ConvGeometry) -> &'a [f32] {
    if padded.is_empty() {
        return plane;
    }
    let [p0, p1] = g.padding;
    for (h, row) in plane.chunks_exact(g.w.max(1)).enumerate() {
        padded[(h + p0) * wp + p1..][..g.w].copy_from_slice(row);
    }
    padded
}

/// Unfolds one group of one image into `cols` (row stride `ld`, starting
/// at column `col0`): row `(ci, i, j)`, column `col0 + (ho, wo)` holds the
/// input tap that kernel element `(i, j)` of channel `ci` meets at that
/// output position (zero in padding).
fn im2col(
    x: &[f32],
    g: &ConvGeometry,
    (image, group): (usize, usize),
    cols: &mut [f32],
    (ld, col0): (usize, usize),
    unfold: &mut Unfold,
) {
    let Unfold {
        padded,
        wp,
        rows,
        taps,
    } = unfold;
    let cg = g.c / g.groups;
    let (p, kernel) = (g.positions(), g.kh * g.kw);
    for ci in 0..cg {
        let plane = &x[((image * g.c) + group * cg + ci) * g.h * g.w..][..g.h * g.w];
        let src = pad(plane, padded, *wp, g);
        for t in 0..kernel {
            let dst = &mut cols[(ci * kernel + t) * ld + col0..][..p];
            if *rows {
                let starts = &taps[t * g.ho..][..g.ho];
                for (out, &at) in dst.chunks_exact_mut(g.wo).zip(starts) {
                    out.copy_from_slice(&src[at..at + g.wo]);
                }
            } else {
                for (d, &at) in dst.iter_mut().zip(&taps[t * p..][..p]) {
                    *d = src[at];
                }
            }
        }
    }
}

/// Folds `cols` (row stride `ld`, from column `col0`) back into one group of
/// one image of `dx`, adding each tap to the input element it came from (in
/// the order of the kernel's elements, then of the output positions).
fn col2im(
    cols: &[f32],
    g: &ConvGeometry,
    (image, group): (usize, usize),
    dx: &mut [f32],
    (ld, col0): (usize, usize),
    unfold: &mut Unfold,
) {
    let Unfold {
        padded,
        wp,
        rows,
        taps,
    } = unfold;
    let cg = g.c / g.groups;
    let (p, kernel) = (g.positions(), g.kh * g.kw);
    for ci in 0..cg {
        let plane = &mut dx[((image * g.c) + group * cg + ci) * g.h * g.w..][..g.h * g.w];
        // Sums land in the padded plane (or, without padding, the plane
        // itself, which starts at zero); its interior is then added in.
        let sums: &mut [f32] = if padded.is_empty() {
            plane
        } else {
            padded.fill(0.0);
            padded
        };
        for t in 0..kernel {
            let src = &cols[(ci * kernel + t) * ld + col0..][..p];
            if *rows {
                let starts = &taps[t * g.ho..][..g.ho];
                for (row, &at) in src.chunks_exact(g.wo).zip(starts) {
                    for (s, &v) in sums[at..at + g.wo].iter_mut().zip(row) {
                        *s += v;
                    }
                }
            } else {
                for (&v, &at) in src.iter().zip(&taps[t * p..][..p]) {
                    sums[at] += v;
                }
            }
        }
        if !padded.is_empty() {
            let [p0, p1] = g.padding;
            let plane = &mut dx[((image * g.c) + group * cg + ci) * g.h * g.w..][..g.h * g.w];
            for (h, row) in plane.chunks_exact_mut(g.w.max(1)).enumerate() {
                for (d, &v) in row.iter_mut().zip(&padded[(h + p0) * *wp + p1..][..g.w]) {
                    *d += v;
                }
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

/// Where one group's output channels of image `image` start in `[n, o,
/// positions]`.
fn group_at(g: &ConvGeometry, image: usize, group: usize) -> usize {
    (image * g.o + group * (g.o / g.groups)) * g.positions()
}

/// One group's channels of `images` images from image `first`, as `[og,
/// images · positions]`: of one image, a slice of `nchw` (`[n, o,
/// positions]`) itself; of several, gathered into `rows`.
fn group_rows<'a>(
    nchw: &'a [f32],
    rows: &'a mut [f32],
    g: &ConvGeometry,
    (first, images, group): (usize, usize, usize),
) -> &'a [f32] {
    let (p, og) = (g.positions(), g.o / g.groups);
    if images == 1 {
        return &nchw[group_at(g, first, group)..][..og * p];
    }
    let ld = images * p;
    for k in 0..images {
        let at = group_at(g, first + k, group);
        for oc in 0..og {
            rows[oc * ld + k * p..][..p].copy_from_slice(&nchw[at + oc * p..][..p]);
        }
    }
    &rows[..og * ld]
}

/// The inverse of [`group_rows`] for several images: `rows` `[og, images ·
/// positions]` written to their places in `nchw`.
fn scatter_rows(
    rows: &[f32],
    nchw: &mut [f32],
    g: &ConvGeometry,
    (first, images, group): (usize, usize, usize),
) {
    let (p, og) = (g.positions(), g.o / g.groups);
    let ld = images * p;
    for k in 0..images {
        let at = group_at(g, first + k, group);
        for oc in 0..og {
            nchw[at + oc * p..][..p].copy_from_slice(&rows[oc * ld + k * p..][..p]);
        }
    }
}

pub(super) fn conv2d(x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
    let (x, w) = (host!(x), host!(w));
    store(forward(&x, &w, g, COLS_BUDGET))
}

pub(super) fn conv2d_grad_input(dy: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
    let (dy, w) = (host!(dy), host!(w));
    store(grad_input(&dy, &w, g, COLS_BUDGET))
}

pub(super) fn conv2d_grad_weight(x: &Storage, dy: &Storage, g: &ConvGeometry) -> Storage {
    let (x, dy) = (host!(x), host!(dy));
    store(grad_weight(&x, &dy, g, COLS_BUDGET))
}

/// The convolution of `x` with `w`, unfolding at most `budget` floats at once.
fn forward(x: &[f32], w: &[f32], g: &ConvGeometry, budget: usize) -> Vec<f32> {
    let (_, _, out_len) = g.lens();
    let mut out = vec![0.0f32; out_len];
    let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
    let (chunk, ld) = chunking(g, budget);
    let mut cols = vec![0.0f32; kk * ld];
    let mut unfold = Unfold::new(g);
    let mut rows = vec![0.0f32; if chunk > 1 { og * ld } else { 0 }];
    for first in (0..g.n).step_by(chunk) {
        let images = chunk.min(g.n - first);
        let ld = images * p;
        for group in 0..g.groups {
            for k in 0..images {
                im2col(
                    x,
                    g,
                    (first + k, group),
                    &mut cols,
                    (ld, k * p),
                    &mut unfold,
                );
            }
            let wg = &w[group * og * kk..][..og * kk];
            if images == 1 {
                // One image: the product lands in the output as it is.
                let y = &mut out[group_at(g, first, group)..][..og * p];
                gemm(og, kk, p, wg, (kk, 1), &cols, (ld, 1), y, false);
            } else {
                gemm(og, kk, ld, wg, (kk, 1), &cols, (ld, 1), &mut rows, false);
                scatter_rows(&rows, &mut out, g, (first, images, group));
            }
        }
    }
    out
}

/// The gradient with respect to the input, `budget` as in [`forward`].
fn grad_input(dy: &[f32], w: &[f32], g: &ConvGeometry, budget: usize) -> Vec<f32> {
    let (x_len, _, _) = g.lens();
    let mut dx = vec![0.0f32; x_len];
    let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
    let (chunk, ld) = chunking(g, budget);
    let mut cols = vec![0.0f32; kk * ld];
    let mut unfold = Unfold::new(g);
    let mut rows = vec![0.0f32; if chunk > 1 { og * ld } else { 0 }];
    for first in (0..g.n).step_by(chunk) {
        let images = chunk.min(g.n - first);
        let ld = images * p;
        for group in 0..g.groups {
            // cols = w_gᵀ · dy_g: [patch, og] x [og, images · positions].
            let dyg = group_rows(dy, &mut rows, g, (first, images, group));
            let wg = &w[group * og * kk..][..og * kk];
            gemm(kk, og, ld, wg, (1, kk), dyg, (ld, 1), &mut cols, false);
            for k in 0..images {
                col2im(
                    &cols,
                    g,
                    (first + k, group),
                    &mut dx,
                    (ld, k * p),
                    &mut unfold,
                );
            }
        }
    }
    dx
}

/// The gradient with respect to the weights, `budget` as in [`forward`].
fn grad_weight(x: &[f32], dy: &[f32], g: &ConvGeometry, budget: usize) -> Vec<f32> {
    let (_, w_len, _) = g.lens();
    let mut dw = vec![0.0f32; w_len];
    let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
    let (chunk, ld) = chunking(g, budget);
    let mut cols = vec![0.0f32; kk * ld];
    let mut unfold = Unfold::new(g);
    let mut rows = vec![0.0f32; if chunk > 1 { og * ld } else { 0 }];
    for first in (0..g.n).step_by(chunk) {
        let images = chunk.min(g.n - first);
        let ld = images * p;
        for group in 0..g.groups {
            // dw_g += dy_g · colsᵀ: [og, images · positions] x [images · positions, patch].
            for k in 0..images {
                im2col(
                    x,
                    g,
                    (first + k, group),
                    &mut cols,
                    (ld, k * p),
                    &mut unfold,
                );
            }
            let dyg = group_rows(dy, &mut rows, g, (first, images, group));
            let dwg = &mut dw[group * og * kk..][..og * kk];
            gemm(og, ld, kk, dyg, (ld, 1), &cols, (1, ld), dwg, true);
        }
    }
    dw
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

/// The input rows (or columns) `lo..hi` that window `o` of a pooling
/// covers, clipped to the input's `len`.
fn window(o: usize, kernel: usize, stride: usize, padding: usize, len: usize) -> (usize, usize) {
    let start = o * stride;
    let lo = start.saturating_sub(padding);
    let hi = (start + kernel).saturating_sub(padding).min(len);
    (lo, hi.max(lo))
}

pub(super) fn max_pool2d(x: &Storage, g: &PoolGeometry) -> (Storage, Storage) {
    let x = match host(x) {
        Ok(x) => x,
        Err(e) => return (Storage::Failed(e.clone()), Storage::FailedI64(e)),
    };
    let (_, out_len) = g.lens();
    let (mut vals, mut idx) = (Vec::with_capacity(out_len), Vec::with_capacity(out_len));
    let cols: Vec<(usize, usize)> = (0..g.wo)
        .map(|wo| window(wo, g.kernel[1], g.stride[1], g.padding[1], g.w))
        .collect();
    let pairs = g.kernel == [2, 2] && g.stride == [2, 2] && g.padding == [0, 0];
    for plane in x.chunks_exact(g.h * g.w).take(g.n * g.c) {
        for ho in 0..g.ho {
            if pairs {
                // The common 2×2 window, side by side: two input rows at a time.
                let (top, bottom) = (
                    &plane[2 * ho * g.w..][..g.w],
                    &plane[(2 * ho + 1) * g.w..][..g.w],
                );
                for wo in 0..g.wo {
                    let w = 2 * wo;
                    let (mut best, mut at) = (top[w], 2 * ho * g.w + w);
                    for (v, a) in [
                        (top[w + 1], 2 * ho * g.w + w + 1),
                        (bottom[w], (2 * ho + 1) * g.w + w),
                        (bottom[w + 1], (2 * ho + 1) * g.w + w + 1),
                    ] {
                        if v > best {
                            (best, at) = (v, a);
                        }
                    }
                    vals.push(best);
                    idx.push(at as i64);
                }
                continue;
            }
            let (h0, h1) = window(ho, g.kernel[0], g.stride[0], g.padding[0], g.h);
            for &(w0, w1) in &cols {
                // Every window holds an input element (padding <= kernel / 2);
                // the first maximum in row-major order wins.
                let first = h0 * g.w + w0;
                let (mut best, mut at) = (plane[first], first);
                for h in h0..h1 {
                    let row = &plane[h * g.w..][..g.w];
                    for (w, &v) in row[w0..w1].iter().enumerate() {
                        if v > best {
                            (best, at) = (v, h * g.w + w0 + w);
                        }
                    }
                }
                vals.push(best);
                idx.push(at as i64);
            }
        }
    }
    (store(vals), store_i64(idx))
}

pub(super) fn max_pool2d_grad(dy: &Storage, idx: &Storage, g: &PoolGeometry) -> Storage {
    let (dy, idx) = (host!(dy), host_i64!(idx));
    let (x_len, _) = g.lens();
    let mut dx = vec![0.0f32; x_len];
    let per = g.ho * g.wo;
    if per == 0 || g.h * g.w == 0 {
        return store(dx);
    }
    let planes = dx.chunks_exact_mut(g.h * g.w);
    for ((plane, dy), idx) in planes.zip(dy.chunks_exact(per)).zip(idx.chunks_exact(per)) {
        for (&d, &at) in dy.iter().zip(idx) {
            plane[at as usize] += d;
        }
    }
    store(dx)
}

pub(super) fn avg_pool2d(x: &Storage, g: &PoolGeometry) -> Storage {
    let x = host!(x);
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
    let dy = host!(dy);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A geometry with two groups and a 3×2 kernel: `wide` has output
    /// rows long enough to copy whole, with padding; the other (stride 2
    /// down, dilation 2 across) is gathered a tap at a time, with padding
    /// or without.
    fn geometry(n: usize, wide: bool, padding: [usize; 2]) -> ConvGeometry {
        let (h, w, kh, kw) = (7, if wide { 20 } else { 9 }, 3, 2);
        let (stride, dilation) = if wide {
            ([1, 1], [2, 1])
        } else {
            ([2, 1], [1, 2])
        };
        let out = |len: usize, k: usize, a: usize| {
            (len + 2 * padding[a] - dilation[a] * (k - 1) - 1) / stride[a] + 1
        };
        ConvGeometry {
            n,
            c: 4,
            h,
            w,
            o: 6,
            kh,
            kw,
            stride,
            padding,
            dilation,
            groups: 2,
            ho: out(h, kh, 0),
            wo: out(w, kw, 1),
        }
    }

    /// Where kernel tap `(i, j)` of output position `(ho, wo)` reads the
    /// input plane, if inside it.
    fn tap(g: &ConvGeometry, ho: usize, wo: usize, i: usize, j: usize) -> Option<usize> {
        let h = (ho * g.stride[0] + i * g.dilation[0]).checked_sub(g.padding[0])?;
        let w = (wo * g.stride[1] + j * g.dilation[1]).checked_sub(g.padding[1])?;
        (h < g.h && w < g.w).then_some(h * g.w + w)
    }

    /// The convolution and both gradients (for the upstream gradient `dy`)
    /// as direct loops, in f64.
    fn direct(x: &[f32], w: &[f32], dy: &[f32], g: &ConvGeometry) -> [Vec<f64>; 3] {
        let (x_len, w_len, y_len) = g.lens();
        let (mut y, mut dx, mut dw) = (vec![0.0; y_len], vec![0.0; x_len], vec![0.0; w_len]);
        let (cg, og, p) = (g.c / g.groups, g.o / g.groups, g.positions());
        for n in 0..g.n {
            for o in 0..g.o {
                let group = o / og;
                for pos in 0..p {
                    let at = (n * g.o + o) * p + pos;
                    for ci in 0..cg {
                        let plane = (n * g.c + group * cg + ci) * g.h * g.w;
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let Some(t) = tap(g, pos / g.wo, pos % g.wo, i, j) else {
                                    continue;
                                };
                                let wi = ((o * cg + ci) * g.kh + i) * g.kw + j;
                                y[at] += f64::from(x[plane + t]) * f64::from(w[wi]);
                                dx[plane + t] += f64::from(dy[at]) * f64::from(w[wi]);
                                dw[wi] += f64::from(dy[at]) * f64::from(x[plane + t]);
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dw]
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 201) as f32 / 100.0 - 1.0)
            .collect()
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{k}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn an_empty_input_inside_padding_unfolds_to_zeros() {
        for (h, w) in [(0, 3), (3, 0)] {
            let mut g = geometry(2, false, [1, 1]);
            (g.h, g.w, g.kh, g.kw, g.stride, g.dilation) = (h, w, 1, 1, [1, 1], [1, 1]);
            (g.ho, g.wo) = (h + 2, w + 2);
            let (x_len, w_len, y_len) = g.lens();
            assert_eq!(x_len, 0);
            let y = forward(&[], &values(w_len, 2), &g, COLS_BUDGET);
            assert_eq!(y, vec![0.0; y_len]);
            let dy = values(y_len, 3);
            assert!(grad_input(&dy, &values(w_len, 2), &g, COLS_BUDGET).is_empty());
            assert_eq!(grad_weight(&[], &dy, &g, COLS_BUDGET), vec![0.0; w_len]);
        }
    }

    #[test]
    fn chunks_of_several_images_match_direct_loops() {
        for (wide, padding) in [(false, [1, 2]), (false, [0, 0]), (true, [2, 1])] {
            let g = geometry(5, wide, padding);
            assert_eq!(Unfold::new(&g).rows, wide && g.wo >= ROW_COPY_MIN);
            let (x_len, w_len, y_len) = g.lens();
            let (x, w, dy) = (values(x_len, 1), values(w_len, 2), values(y_len, 3));
            let [y, dx, dw] = direct(&x, &w, &dy, &g);
            let per_image = g.patch() * g.positions();
            // One image at a time; two (the last chunk holds one); all five.
            for budget in [1, 2 * per_image + 1, COLS_BUDGET] {
                let got = forward(&x, &w, &g, budget);
                close(&got, &y);
                assert_eq!(got, forward(&x, &w, &g, budget), "the same bits again");
                close(&grad_input(&dy, &w, &g, budget), &dx);
                close(&grad_weight(&x, &dy, &g, budget), &dw);
            }
        }
    }
}
