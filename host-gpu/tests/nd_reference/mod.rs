//! Float64 reference implementations of the N-D ops, written for clarity
//! (coordinates in, coordinates out) rather than speed, for the gradient
//! checks in `gradcheck.rs`.

use super::T;

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

pub fn ravel(c: &[usize], shape: &[usize]) -> usize {
    c.iter().zip(strides(shape)).map(|(a, b)| a * b).sum()
}

/// The element of `t` that output coordinates `c` (of a broadcast shape of
/// rank `c.len()`) read.
fn broadcast_at(t: &T, c: &[usize]) -> f64 {
    let pad = c.len() - t.shape.len();
    let own: Vec<usize> = t
        .shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if n == 1 { 0 } else { c[pad + d] })
        .collect();
    t.data[ravel(&own, &t.shape)]
}

fn broadcast_shape(shapes: &[&[usize]]) -> Vec<usize> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|d| {
            shapes
                .iter()
                .map(|s| {
                    let pad = rank - s.len();
                    if d < pad { 1 } else { s[d - pad] }
                })
                .max()
                .unwrap_or(1)
        })
        .collect()
}

pub fn map(a: &T, f: impl Fn(f64) -> f64) -> T {
    T::new(&a.shape, a.data.iter().map(|&x| f(x)).collect())
}

pub fn zip(a: &T, b: &T, f: impl Fn(f64, f64) -> f64) -> T {
    let out = broadcast_shape(&[&a.shape, &b.shape]);
    let n = out.iter().product();
    T::new(
        &out,
        (0..n)
            .map(|i| {
                let c = unravel(i, &out);
                f(broadcast_at(a, &c), broadcast_at(b, &c))
            })
            .collect(),
    )
}

pub fn permute(a: &T, axes: &[usize]) -> T {
    let out: Vec<usize> = axes.iter().map(|&x| a.shape[x]).collect();
    let n = a.data.len();
    let data = (0..n)
        .map(|i| {
            let c = unravel(i, &out);
            let mut src = vec![0; c.len()];
            for (d, &x) in axes.iter().enumerate() {
                src[x] = c[d];
            }
            a.data[ravel(&src, &a.shape)]
        })
        .collect();
    T::new(&out, data)
}

pub fn slice(a: &T, axis: usize, start: usize, end: usize, step: usize) -> T {
    let mut out = a.shape.clone();
    out[axis] = (end - start).div_ceil(step);
    let n = out.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut c = unravel(i, &out);
            c[axis] = start + c[axis] * step;
            a.data[ravel(&c, &a.shape)]
        })
        .collect();
    T::new(&out, data)
}

pub fn concat(parts: &[&T], axis: usize) -> T {
    let mut out = parts[0].shape.clone();
    out[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    let n = out.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut c = unravel(i, &out);
            let mut k = 0;
            while c[axis] >= parts[k].shape[axis] {
                c[axis] -= parts[k].shape[axis];
                k += 1;
            }
            parts[k].data[ravel(&c, &parts[k].shape)]
        })
        .collect();
    T::new(&out, data)
}

pub fn pad(a: &T, pads: &[[usize; 2]], value: f64) -> T {
    let out: Vec<usize> = a
        .shape
        .iter()
        .zip(pads)
        .map(|(&d, p)| d + p[0] + p[1])
        .collect();
    let n = out.iter().product();
    let data = (0..n)
        .map(|i| {
            let c = unravel(i, &out);
            let inside: Option<Vec<usize>> = c
                .iter()
                .zip(pads)
                .zip(&a.shape)
                .map(|((&x, p), &d)| (x >= p[0] && x - p[0] < d).then(|| x - p[0]))
                .collect();
            inside.map_or(value, |s| a.data[ravel(&s, &a.shape)])
        })
        .collect();
    T::new(&out, data)
}

pub fn broadcast_to(a: &T, shape: &[usize]) -> T {
    zip(
        a,
        &T::new(shape, vec![0.0; shape.iter().product()]),
        |x, _| x,
    )
}

pub fn index_select(a: &T, axis: usize, idx: &[i64], idx_shape: &[usize]) -> T {
    let mut out = a.shape[..axis].to_vec();
    out.extend_from_slice(idx_shape);
    out.extend_from_slice(&a.shape[axis + 1..]);
    let n = out.iter().product();
    let k = idx_shape.len();
    let data = (0..n)
        .map(|i| {
            let c = unravel(i, &out);
            let j = ravel(&c[axis..axis + k], idx_shape);
            let mut src = c[..axis].to_vec();
            src.push(idx[j] as usize);
            src.extend_from_slice(&c[axis + k..]);
            a.data[ravel(&src, &a.shape)]
        })
        .collect();
    T::new(&out, data)
}

pub fn gather(a: &T, axis: usize, idx: &[i64], idx_shape: &[usize]) -> T {
    let n = idx.len();
    let data = (0..n)
        .map(|i| {
            let mut c = unravel(i, idx_shape);
            c[axis] = idx[i] as usize;
            a.data[ravel(&c, &a.shape)]
        })
        .collect();
    T::new(idx_shape, data)
}

pub fn scatter_add(shape: &[usize], axis: usize, idx: &[i64], src: &T) -> T {
    let mut out = vec![0.0; shape.iter().product()];
    for (i, &v) in src.data.iter().enumerate() {
        let mut c = unravel(i, &src.shape);
        c[axis] = idx[i] as usize;
        out[ravel(&c, shape)] += v;
    }
    T::new(shape, out)
}

pub fn index_add(shape: &[usize], axis: usize, idx: &[i64], src: &T) -> T {
    let k = src.shape.len() + 1 - shape.len();
    let idx_shape = &src.shape[axis..axis + k];
    let mut out = vec![0.0; shape.iter().product()];
    for (i, &v) in src.data.iter().enumerate() {
        let c = unravel(i, &src.shape);
        let j = ravel(&c[axis..axis + k], idx_shape);
        let mut dst = c[..axis].to_vec();
        dst.push(idx[j] as usize);
        dst.extend_from_slice(&c[axis + k..]);
        out[ravel(&dst, shape)] += v;
    }
    T::new(shape, out)
}

/// `op(a) · op(b)` over broadcast batch dimensions.
pub fn matmul(a: &T, ta: bool, b: &T, tb: bool) -> T {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if ta {
        (a.shape[ra - 1], a.shape[ra - 2])
    } else {
        (a.shape[ra - 2], a.shape[ra - 1])
    };
    let n = if tb { b.shape[rb - 2] } else { b.shape[rb - 1] };
    let batch = broadcast_shape(&[&a.shape[..ra - 2], &b.shape[..rb - 2]]);
    let mut out = batch.clone();
    out.extend([m, n]);
    let total = out.iter().product();
    let at = |t: &T, bc: &[usize], r: usize, c: usize| {
        let rank = t.shape.len();
        let pad = bc.len() - (rank - 2);
        let mut coords: Vec<usize> = (0..rank - 2)
            .map(|d| if t.shape[d] == 1 { 0 } else { bc[pad + d] })
            .collect();
        coords.extend([r, c]);
        t.data[ravel(&coords, &t.shape)]
    };
    let data = (0..total)
        .map(|i| {
            let c = unravel(i, &out);
            let (bc, r, col) = (&c[..batch.len()], c[batch.len()], c[batch.len() + 1]);
            (0..k)
                .map(|p| {
                    let x = if ta { at(a, bc, p, r) } else { at(a, bc, r, p) };
                    let y = if tb {
                        at(b, bc, col, p)
                    } else {
                        at(b, bc, p, col)
                    };
                    x * y
                })
                .sum()
        })
        .collect();
    T::new(&out, data)
}

pub fn select(cond: &T, a: &T, b: &T) -> T {
    let out = broadcast_shape(&[&cond.shape, &a.shape, &b.shape]);
    let n = out.iter().product();
    let data = (0..n)
        .map(|i| {
            let c = unravel(i, &out);
            if broadcast_at(cond, &c) != 0.0 {
                broadcast_at(a, &c)
            } else {
                broadcast_at(b, &c)
            }
        })
        .collect();
    T::new(&out, data)
}

pub fn cumsum(a: &T, axis: usize, reverse: bool) -> T {
    let mut out = a.clone();
    let len = a.shape[axis];
    for i in 0..a.data.len() {
        let c = unravel(i, &a.shape);
        let range: Vec<usize> = if reverse {
            (c[axis]..len).collect()
        } else {
            (0..=c[axis]).collect()
        };
        out.data[i] = range
            .into_iter()
            .map(|j| {
                let mut s = c.clone();
                s[axis] = j;
                a.data[ravel(&s, &a.shape)]
            })
            .sum();
    }
    out
}

/// Convolution options: stride, padding, dilation (height, width), groups.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

pub fn conv2d(x: &T, w: &T, bias: Option<&T>, p: Conv) -> T {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let og = o / p.groups;
    let size = |input: usize, k: usize, d: usize| {
        (input + 2 * p.padding[d] - p.dilation[d] * (k - 1) - 1) / p.stride[d] + 1
    };
    let (ho, wo) = (size(h, kh, 0), size(wd, kw, 1));
    let out = [n, o, ho, wo];
    let mut data = Vec::with_capacity(n * o * ho * wo);
    for i in 0..n * o * ho * wo {
        let q = unravel(i, &out);
        let (img, oc, y, xo) = (q[0], q[1], q[2], q[3]);
        let g = oc / og;
        let mut acc = bias.map_or(0.0, |b| b.data[oc]);
        for ci in 0..cg {
            for ki in 0..kh {
                for kj in 0..kw {
                    let hh =
                        (y * p.stride[0] + ki * p.dilation[0]) as isize - p.padding[0] as isize;
                    let ww =
                        (xo * p.stride[1] + kj * p.dilation[1]) as isize - p.padding[1] as isize;
                    if hh < 0 || ww < 0 || hh as usize >= h || ww as usize >= wd {
                        continue;
                    }
                    let xv = x.data[ravel(&[img, g * cg + ci, hh as usize, ww as usize], &x.shape)];
                    acc += xv * w.data[ravel(&[oc, ci, ki, kj], &w.shape)];
                }
            }
        }
        data.push(acc);
    }
    let _ = c;
    T::new(&out, data)
}

/// The elements of each pooling window of `x` `[n, c, h, w]` that lie inside
/// it, window by window (`None` for padding).
fn windows(
    x: &T,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> (Vec<usize>, Vec<Vec<Option<f64>>>) {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let ho = (h + 2 * padding[0] - kernel[0]) / stride[0] + 1;
    let wo = (w + 2 * padding[1] - kernel[1]) / stride[1] + 1;
    let out = vec![n, c, ho, wo];
    let mut all = Vec::new();
    for i in 0..n * c * ho * wo {
        let q = unravel(i, &out);
        let mut win = Vec::new();
        for ki in 0..kernel[0] {
            for kj in 0..kernel[1] {
                let hh = (q[2] * stride[0] + ki) as isize - padding[0] as isize;
                let ww = (q[3] * stride[1] + kj) as isize - padding[1] as isize;
                win.push(
                    (hh >= 0 && ww >= 0 && (hh as usize) < h && (ww as usize) < w)
                        .then(|| x.data[ravel(&[q[0], q[1], hh as usize, ww as usize], &x.shape)]),
                );
            }
        }
        all.push(win);
    }
    (out, all)
}

/// Max pooling; panics when a window's two largest elements are within `gap`
/// (central differences would not see a single maximum), unless both are
/// exact zeros (relu's output for inputs kept away from its kink).
pub fn max_pool2d(
    x: &T,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    gap: f64,
) -> T {
    let (out, wins) = windows(x, kernel, stride, padding);
    let data = wins
        .iter()
        .map(|w| {
            let mut v: Vec<f64> = w.iter().flatten().copied().collect();
            v.sort_by(|a, b| b.total_cmp(a));
            assert!(
                v.len() < 2 || v[0] - v[1] > gap || v[0] == 0.0,
                "a pooling window's maximum is within {gap} of the next; pick other data"
            );
            v[0]
        })
        .collect();
    T::new(&out, data)
}

pub fn avg_pool2d(x: &T, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> T {
    let (out, wins) = windows(x, kernel, stride, padding);
    let size = (kernel[0] * kernel[1]) as f64;
    let data = wins
        .iter()
        .map(|w| w.iter().flatten().sum::<f64>() / size)
        .collect();
    T::new(&out, data)
}

/// Mean over the positions of `[n, c, ...]`: `[n, c]`.
pub fn global_avg_pool(x: &T) -> T {
    let (n, c) = (x.shape[0], x.shape[1]);
    let s: usize = x.shape[2..].iter().product();
    let data = (0..n * c)
        .map(|i| x.data[i * s..(i + 1) * s].iter().sum::<f64>() / s as f64)
        .collect();
    T::new(&[n, c], data)
}

/// Normalizes each group of `inner` consecutive elements (biased variance).
fn normalize_groups(x: &T, inner: usize, eps: f64) -> Vec<f64> {
    x.data
        .chunks(inner)
        .flat_map(|g| {
            let mean = g.iter().sum::<f64>() / inner as f64;
            let var = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / inner as f64;
            g.iter()
                .map(move |v| (v - mean) / (var + eps).sqrt())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn layer_norm(x: &T, k: usize, w: Option<&T>, b: Option<&T>, eps: f64) -> T {
    let inner: usize = x.shape[x.shape.len() - k..].iter().product();
    let mut y = T::new(&x.shape, normalize_groups(x, inner, eps));
    if let Some(w) = w {
        y = zip(&y, w, |a, b| a * b);
    }
    if let Some(b) = b {
        y = zip(&y, b, |a, b| a + b);
    }
    y
}

/// Batch norm in training: per channel of `[n, c, ...]`, over batch and positions.
pub fn batch_norm_train(x: &T, w: Option<&T>, b: Option<&T>, eps: f64) -> T {
    let (n, c) = (x.shape[0], x.shape[1]);
    let s: usize = x.shape[2..].iter().product();
    let mut y = x.clone();
    for ch in 0..c {
        let at = |img: usize, p: usize| (img * c + ch) * s + p;
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| (0..s).map(move |p| (i, p)))
            .map(|(i, p)| x.data[at(i, p)])
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / vals.len() as f64;
        for i in 0..n {
            for p in 0..s {
                let mut v = (x.data[at(i, p)] - mean) / (var + eps).sqrt();
                if let Some(w) = w {
                    v *= w.data[ch];
                }
                if let Some(b) = b {
                    v += b.data[ch];
                }
                y.data[at(i, p)] = v;
            }
        }
    }
    y
}

/// Log-softmax along `axis`.
pub fn log_softmax(a: &T, axis: usize) -> T {
    let mut out = a.clone();
    for i in 0..a.data.len() {
        let c = unravel(i, &a.shape);
        let vals: Vec<f64> = (0..a.shape[axis])
            .map(|j| {
                let mut s = c.clone();
                s[axis] = j;
                a.data[ravel(&s, &a.shape)]
            })
            .collect();
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + vals.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        out.data[i] = a.data[i] - lse;
    }
    out
}

/// How a reference loss reduces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Mean,
    Sum,
    None,
}

/// Cross-entropy with class indices (PyTorch's definition; see the tape's).
pub fn cross_entropy(
    logits: &T,
    axis: usize,
    labels: &[i64],
    weights: Option<&[f64]>,
    smoothing: f64,
    ignore: Option<i64>,
    reduce: Reduce,
) -> T {
    let lp = log_softmax(logits, axis);
    let classes = logits.shape[axis];
    let mut sample_shape = logits.shape.clone();
    sample_shape.remove(axis);
    let w = |c: usize| weights.map_or(1.0, |w| w[c]);
    let (mut per, mut denominator) = (Vec::new(), 0.0);
    for (i, &label) in labels.iter().enumerate() {
        if ignore == Some(label) {
            per.push(0.0);
            continue;
        }
        let mut c = unravel(i, &sample_shape);
        c.insert(axis, 0);
        let at = |class: usize| {
            let mut s = c.clone();
            s[axis] = class;
            lp.data[ravel(&s, &lp.shape)]
        };
        let y = label as usize;
        let smooth: f64 = (0..classes).map(|k| w(k) * at(k)).sum();
        per.push(-(1.0 - smoothing) * w(y) * at(y) - smoothing / classes as f64 * smooth);
        denominator += w(y);
    }
    match reduce {
        Reduce::None => T::new(&sample_shape, per),
        Reduce::Sum => T::new(&[1], vec![per.iter().sum()]),
        Reduce::Mean => T::new(&[1], vec![per.iter().sum::<f64>() / denominator]),
    }
}

/// Cross-entropy against class probabilities `t` (shaped like the logits).
pub fn cross_entropy_soft(logits: &T, axis: usize, t: &T, smoothing: f64) -> T {
    let lp = log_softmax(logits, axis);
    let classes = logits.shape[axis] as f64;
    let samples = logits.data.len() as f64 / classes;
    let total: f64 = lp
        .data
        .iter()
        .zip(&t.data)
        .map(|(l, p)| -l * ((1.0 - smoothing) * p + smoothing / classes))
        .sum();
    T::new(&[1], vec![total / samples])
}

pub fn reduce_loss(per: T, reduce: Reduce) -> T {
    let n = per.data.len() as f64;
    let s: f64 = per.data.iter().sum();
    match reduce {
        Reduce::None => per,
        Reduce::Sum => T::new(&[1], vec![s]),
        Reduce::Mean => T::new(&[1], vec![s / n]),
    }
}
