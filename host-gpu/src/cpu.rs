//! The CPU reference backend: plain loops, and sgemm from `matrixmultiply`
//! (for products with a few rows, the same sums without its packing).
//!
//! Single-threaded on purpose: results are bit-for-bit reproducible, which is
//! what makes a training run's params digest depend only on its inputs.

use std::borrow::Cow;
use std::sync::Arc;

use crate::{
    Backend, BinaryOp, ConvGeometry, CopyPart, DType, DeviceError, DeviceInfo, DeviceKind,
    Distribution, MatmulGeometry, PoolGeometry, ReduceOp, ScalarOp, Storage, UnaryOp, rng,
};

/// The CPU backend. Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// How a storage's device failed.
type Failure = Arc<DeviceError>;

/// The f32 elements of `s` in host memory; GPU storage is downloaded. (An
/// i64 storage, which `Device` never passes here, is converted.) Fails when
/// `s` is (or lives on) a failed device.
fn host(s: &Storage) -> Result<Cow<'_, [f32]>, Failure> {
    match s {
        Storage::Host(v) => Ok(Cow::Borrowed(v)),
        Storage::HostI64(v) => Ok(Cow::Owned(v.iter().map(|&x| x as f32).collect())),
        #[cfg(feature = "wgpu")]
        Storage::Gpu(g) => g.to_vec().map(Cow::Owned).map_err(Arc::new),
        #[cfg(feature = "wgpu")]
        Storage::GpuI64(g) => Ok(Cow::Owned(
            g.to_i64()
                .map_err(Arc::new)?
                .iter()
                .map(|&x| x as f32)
                .collect(),
        )),
        Storage::Failed(e) | Storage::FailedI64(e) => Err(e.clone()),
    }
}

/// The i64 elements of `s` in host memory; GPU storage is downloaded (or
/// its host copy shared). (An f32 storage, which `Device` never passes
/// here, is truncated.) Fails as [`host`] does.
fn host_i64(s: &Storage) -> Result<Arc<[i64]>, Failure> {
    match s {
        Storage::HostI64(v) => Ok(v.clone()),
        Storage::Host(v) => Ok(v.iter().map(|&x| x as i64).collect()),
        #[cfg(feature = "wgpu")]
        Storage::Gpu(g) => Ok(g
            .to_vec()
            .map_err(Arc::new)?
            .iter()
            .map(|&x| x as i64)
            .collect()),
        #[cfg(feature = "wgpu")]
        Storage::GpuI64(g) => g.to_i64().map_err(Arc::new),
        Storage::Failed(e) | Storage::FailedI64(e) => Err(e.clone()),
    }
}

/// `host(s)`, or else return the failure as the op's output: f32 storage,
/// or storage of the element type given second.
macro_rules! host {
    ($s:expr) => {
        host!($s, $crate::DType::F32)
    };
    ($s:expr, $out:expr) => {
        match host($s) {
            Ok(v) => v,
            Err(e) => return Storage::failed($out, e),
        }
    };
}

/// `host_i64(s)`, or else return the failure as the op's output, as
/// [`host!`] does.
macro_rules! host_i64 {
    ($s:expr) => {
        host_i64!($s, $crate::DType::F32)
    };
    ($s:expr, $out:expr) => {
        match host_i64($s) {
            Ok(v) => v,
            Err(e) => return Storage::failed($out, e),
        }
    };
}

// After the macros, which they use.
mod conv;
mod nd;

fn store_i64(v: Vec<i64>) -> Storage {
    Storage::HostI64(Arc::from(v))
}

fn store(v: Vec<f32>) -> Storage {
    Storage::Host(Arc::from(v))
}

/// `n` elements computed in place by `fill` from zeros, in the storage's
/// own allocation (`store` of a `Vec` copies it once more).
fn build(n: usize, fill: impl FnOnce(&mut [f32])) -> Storage {
    let mut out: Arc<[f32]> = std::iter::repeat_n(0.0, n).collect();
    fill(Arc::get_mut(&mut out).expect("a new Arc has one owner"));
    Storage::Host(out)
}

/// `f` of each element of `a`, collected straight into the storage.
fn map1(a: &[f32], f: impl Fn(f32) -> f32) -> Storage {
    Storage::Host(a.iter().map(|&x| f(x)).collect())
}

/// `f` of the elements of `a` and `b` pairwise (same lengths).
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> Storage {
    Storage::Host(a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect())
}

/// Runs `$body!(Enum::Variant)` for the variant `$op` holds, one arm per
/// variant: each arm's loop is compiled for its op alone, so the op is
/// matched once per tensor rather than once per element (which also lets
/// the simple ones vectorize). The match is exhaustive, so a new variant
/// must be listed.
macro_rules! per_op {
    ($op:expr, $enum:ident [$($v:ident)*], $body:ident) => {
        match $op {
            $($enum::$v => $body!($enum::$v),)*
        }
    };
}

/// Applies a unary map to one value; shared with tests of other backends.
#[inline(always)]
pub fn unary_scalar(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Square => x * x,
        UnaryOp::ReluMask => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + (GELU_C * (x + 0.044_715 * x * x * x)).tanh()),
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        // max(x, 0) + ln(1 + e^-|x|): no overflow for large |x|.
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        UnaryOp::GeluGrad => {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() * INV_SQRT_2PI;
            cdf + x * pdf
        }
        UnaryOp::GeluTanhGrad => {
            let u = GELU_C * (x + 0.044_715 * x * x * x);
            let t = u.tanh();
            let du = GELU_C * (1.0 + 3.0 * 0.044_715 * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        }
        UnaryOp::SiluGrad => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
    }
}

/// √(2/π), GELU's tanh-form constant.
const GELU_C: f32 = 0.797_884_6;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// The error function, within about 1.2e-7 everywhere: Numerical Recipes'
/// `erfc` (a Chebyshev fit of t·e^(-z² + P(t)), t = 1/(1 + z/2)). The WGSL
/// kernels compute the same expression.
#[allow(
    clippy::excessive_precision,
    reason = "the published coefficients, as written"
)]
pub(crate) fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_9
                                + t * (1.488_515_9 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }
}

fn mask(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

#[inline(always)]
fn binary_scalar(op: BinaryOp, x: f32, y: f32) -> f32 {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Maximum => {
            if x.is_nan() || y.is_nan() {
                f32::NAN
            } else {
                x.max(y)
            }
        }
        BinaryOp::Minimum => {
            if x.is_nan() || y.is_nan() {
                f32::NAN
            } else {
                x.min(y)
            }
        }
        BinaryOp::Pow => x.powf(y),
        BinaryOp::Eq => mask(x == y),
        BinaryOp::Ne => mask(x != y),
        BinaryOp::Lt => mask(x < y),
        BinaryOp::Le => mask(x <= y),
        BinaryOp::Gt => mask(x > y),
        BinaryOp::Ge => mask(x >= y),
    }
}

/// min(max(x, lo), hi), NaN staying NaN.
pub fn clamp_value(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() { x } else { x.max(lo).min(hi) }
}

/// A scalar op on one value; shared with tests of other backends.
#[inline(always)]
pub fn scalar_value(op: ScalarOp, x: f32, v: f32) -> f32 {
    match op {
        ScalarOp::Add => x + v,
        ScalarOp::Mul => x * v,
        ScalarOp::Pow => x.powf(v),
        ScalarOp::Max => binary_scalar(BinaryOp::Maximum, x, v),
        ScalarOp::Min => binary_scalar(BinaryOp::Minimum, x, v),
        ScalarOp::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                v * x
            }
        }
    }
}

/// Where `small`, broadcast against `full`, is one contiguous block of
/// `full`'s dimensions repeated (its dimensions other than 1 are a run of
/// `full`'s): the number of elements of `full` each element of `small`
/// spans (1 for a bias `[n]` against `[rows, n]`; h·w for a channel bias
/// `[c, 1, 1]` against `[n, c, h, w]`), or None.
fn repeated_block(small: &[usize], full: &[usize]) -> Option<usize> {
    let pad = full.len().checked_sub(small.len())?;
    let dim = |d: usize| if d < pad { 1 } else { small[d - pad] };
    let kept: Vec<usize> = (0..full.len()).filter(|&d| dim(d) != 1).collect();
    let (Some(&lo), Some(&hi)) = (kept.first(), kept.last()) else {
        return None;
    };
    let contiguous = kept.len() == hi - lo + 1 && (lo..=hi).all(|d| dim(d) == full[d]);
    contiguous.then(|| full[hi + 1..].iter().product())
}

/// `f(full, small)` with `small` repeated as [`repeated_block`] found,
/// each element over `span` elements of `full`.
fn binary_blocks(full: &[f32], small: &[f32], span: usize, f: impl Fn(f32, f32) -> f32) -> Storage {
    build(full.len(), |out| {
        let (out_blocks, full_blocks) = (
            out.chunks_mut(small.len() * span),
            full.chunks(small.len() * span),
        );
        for (o, a) in out_blocks.zip(full_blocks) {
            if span == 1 {
                for ((o, &x), &y) in o.iter_mut().zip(a).zip(small) {
                    *o = f(x, y);
                }
            } else {
                for ((o, a), &y) in o.chunks_mut(span).zip(a.chunks(span)).zip(small) {
                    for (o, &x) in o.iter_mut().zip(a) {
                        *o = f(x, y);
                    }
                }
            }
        }
    })
}

/// [`Backend::binary`] for one op `f`, monomorphized by the caller.
fn binary_with(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Copy,
) -> Storage {
    if out_shape.contains(&0) {
        return store(Vec::new());
    }
    if a_shape == b_shape {
        return map2(a, b, f);
    }
    if b.len() == 1 {
        let y = b[0];
        return map1(a, |x| f(x, y));
    }
    if a.len() == 1 {
        let x = a[0];
        return map1(b, |y| f(x, y));
    }
    // A bias, a per-channel scale, a feature mean: whole blocks at a time.
    if a_shape == out_shape
        && !b.is_empty()
        && let Some(span) = repeated_block(b_shape, out_shape)
    {
        return binary_blocks(a, b, span, f);
    }
    if b_shape == out_shape
        && !a.is_empty()
        && let Some(span) = repeated_block(a_shape, out_shape)
    {
        return binary_blocks(b, a, span, |y, x| f(x, y));
    }
    store(binary_walk(a, a_shape, b, b_shape, out_shape, f))
}

/// `f` over any broadcast: walks the output with an odometer, carrying
/// both operands' offsets.
fn binary_walk(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let n: usize = out_shape.iter().product();
    let (sa, sb) = (broadcast_strides(a_shape), broadcast_strides(b_shape));
    let rank = out_shape.len();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..n {
        out.push(f(a[oa], b[ob]));
        advance(&mut idx, out_shape, (&mut oa, &sa), (&mut ob, &sb));
    }
    out
}

/// One step of a row-major walk over `dims`: `idx` moves to the next
/// element and each of the two offsets by its strides (a dimension that
/// wraps around takes back what it added).
#[inline(always)]
fn advance(
    idx: &mut [usize],
    dims: &[usize],
    (a, sa): (&mut usize, &[usize]),
    (b, sb): (&mut usize, &[usize]),
) {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        *a += sa[d];
        *b += sb[d];
        if idx[d] < dims[d] {
            return;
        }
        *a -= sa[d] * dims[d];
        *b -= sb[d] * dims[d];
        idx[d] = 0;
    }
}

/// [`Backend::reduce`] along an axis that is not the last (`inner` > 1), a
/// whole row at a time; None for the other cases. Each output element
/// still takes its values in order along the axis, starting where
/// [`reduce_walk`] does (-0.0 for sums, as `Iterator::sum`), so the bits
/// are the walk's.
fn reduce_rows(
    op: ReduceOp,
    a: &[f32],
    outer: usize,
    axis: usize,
    inner: usize,
) -> Option<Storage> {
    let start = match op {
        ReduceOp::Sum | ReduceOp::Mean => Some(-0.0),
        ReduceOp::Max => Some(f32::NEG_INFINITY),
        ReduceOp::Min => Some(f32::INFINITY),
        ReduceOp::ArgMax => None,
    };
    let start = start.filter(|_| inner > 1 && axis > 0)?;
    Some(build(outer * inner, |out| {
        out.fill(start);
        for (acc, block) in out.chunks_mut(inner).zip(a.chunks(axis * inner)) {
            for row in block.chunks(inner) {
                match op {
                    ReduceOp::Max => acc.iter_mut().zip(row).for_each(|(s, &x)| *s = s.max(x)),
                    ReduceOp::Min => acc.iter_mut().zip(row).for_each(|(s, &x)| *s = s.min(x)),
                    _ => acc.iter_mut().zip(row).for_each(|(s, &x)| *s += x),
                }
            }
            if op == ReduceOp::Mean {
                acc.iter_mut().for_each(|s| *s /= axis as f32);
            }
        }
    }))
}

/// [`Backend::reduce`], one output element at a time.
fn reduce_walk(op: ReduceOp, a: &[f32], outer: usize, axis: usize, inner: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let base = o * axis * inner;
        for i in 0..inner {
            let at = |j: usize| a[base + j * inner + i];
            let v = match op {
                ReduceOp::Sum => (0..axis).map(at).sum(),
                ReduceOp::Mean => (0..axis).map(at).sum::<f32>() / axis as f32,
                ReduceOp::Max => (0..axis).map(at).fold(f32::NEG_INFINITY, f32::max),
                ReduceOp::Min => (0..axis).map(at).fold(f32::INFINITY, f32::min),
                ReduceOp::ArgMax => {
                    let mut best = 0;
                    for j in 1..axis {
                        if at(j) > at(best) {
                            best = j;
                        }
                    }
                    best as f32
                }
            };
            out.push(v);
        }
    }
    out
}

/// Row-major strides of `shape`, with 0 where the dimension is 1 (broadcast).
fn broadcast_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

impl Backend for CpuBackend {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cpu,
            name: format!("{} reference backend", std::env::consts::ARCH),
        }
    }

    fn upload(&self, data: &[f32]) -> Storage {
        Storage::Host(Arc::from(data))
    }

    fn download(&self, s: &Storage, len: usize) -> Result<Vec<f32>, DeviceError> {
        let v = host(s).map_err(|e| (*e).clone())?;
        debug_assert_eq!(v.len(), len);
        Ok(v.into_owned())
    }

    fn fill(&self, len: usize, value: f32) -> Storage {
        Storage::Host(std::iter::repeat_n(value, len).collect())
    }

    fn random(&self, len: usize, dist: Distribution, seed: u64) -> Storage {
        Storage::Host(
            (0..len)
                .map(|i| rng::sample(dist, seed, i as u32))
                .collect(),
        )
    }

    fn matmul(&self, a: &Storage, b: &Storage, m: usize, k: usize, n: usize) -> Storage {
        let (a, b) = (host!(a), host!(b));
        build(m * n, |c| {
            if m == 0 || n == 0 || k == 0 {
                return;
            }
            assert!(a.len() == m * k && b.len() == k * n, "matmul storage sizes");
            if few_rows::fits(m, k, n) && few_rows::matmul(&a, &b, k, n, c) {
                return;
            }
            // SAFETY: the slices hold exactly m*k, k*n and m*n elements (checked
            // above), and the row-major strides below stay within them.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        })
    }

    fn transpose(&self, a: &Storage, rows: usize, cols: usize) -> Storage {
        let a = host!(a);
        let mut out = vec![0.0f32; rows * cols];
        const B: usize = 32;
        for r0 in (0..rows).step_by(B) {
            for c0 in (0..cols).step_by(B) {
                for r in r0..(r0 + B).min(rows) {
                    for c in c0..(c0 + B).min(cols) {
                        out[c * rows + r] = a[r * cols + c];
                    }
                }
            }
        }
        store(out)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Storage {
        let (a, b) = (host!(a), host!(b));
        macro_rules! with {
            ($op:expr) => {
                binary_with(&a, a_shape, &b, b_shape, out_shape, |x, y| {
                    binary_scalar($op, x, y)
                })
            };
        }
        per_op!(op, BinaryOp [Add Sub Mul Div Maximum Minimum Pow Eq Ne Lt Le Gt Ge], with)
    }

    fn scalar(&self, op: ScalarOp, a: &Storage, _len: usize, value: f32) -> Storage {
        let a = host!(a);
        macro_rules! with {
            ($op:expr) => {
                map1(&a, |x| scalar_value($op, x, value))
            };
        }
        per_op!(op, ScalarOp [Add Mul Pow Max Min LeakyRelu], with)
    }

    fn unary(&self, op: UnaryOp, a: &Storage, _len: usize) -> Storage {
        let a = host!(a);
        macro_rules! with {
            ($op:expr) => {
                map1(&a, |x| unary_scalar($op, x))
            };
        }
        per_op!(
            op,
            UnaryOp [
                Relu Sigmoid Tanh Exp Log Sqrt Neg Abs Square ReluMask Gelu GeluTanh Silu
                Softplus GeluGrad GeluTanhGrad SiluGrad
            ],
            with
        )
    }

    fn reduce(
        &self,
        op: ReduceOp,
        a: &Storage,
        outer: usize,
        axis: usize,
        inner: usize,
    ) -> Storage {
        let a = host!(a);
        match reduce_rows(op, &a, outer, axis, inner) {
            Some(rows) => rows,
            None => store(reduce_walk(op, &a, outer, axis, inner)),
        }
    }

    fn softmax(&self, a: &Storage, outer: usize, axis: usize, inner: usize, log: bool) -> Storage {
        let a = host!(a);
        let mut out = vec![0.0f32; a.len()];
        for o in 0..outer {
            let base = o * axis * inner;
            for i in 0..inner {
                let at = |j: usize| base + j * inner + i;
                let max = (0..axis)
                    .map(|j| a[at(j)])
                    .fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = (0..axis).map(|j| (a[at(j)] - max).exp()).sum();
                for j in 0..axis {
                    let z = a[at(j)] - max;
                    out[at(j)] = if log { z - sum.ln() } else { z.exp() / sum };
                }
            }
        }
        store(out)
    }

    fn one_hot(&self, a: &Storage, n: usize, classes: usize) -> Storage {
        let a = host!(a);
        let mut out = vec![0.0f32; n * classes];
        for (r, &label) in a.iter().enumerate() {
            if label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes {
                out[r * classes + label as usize] = 1.0;
            }
        }
        store(out)
    }

    fn gather_rows(&self, a: &Storage, row_len: usize, indices: &[u32]) -> Storage {
        let a = host!(a);
        let mut out = Vec::with_capacity(indices.len() * row_len);
        for &i in indices {
            let i = i as usize;
            out.extend_from_slice(&a[i * row_len..(i + 1) * row_len]);
        }
        store(out)
    }

    fn scatter_add_rows(
        &self,
        g: &Storage,
        row_len: usize,
        indices: &[u32],
        rows: usize,
    ) -> Storage {
        let g = host!(g);
        let mut out = vec![0.0f32; rows * row_len];
        if row_len > 0 {
            for (&i, src) in indices.iter().zip(g.chunks_exact(row_len)) {
                let i = i as usize;
                for (o, &x) in out[i * row_len..(i + 1) * row_len].iter_mut().zip(src) {
                    *o += x;
                }
            }
        }
        store(out)
    }

    fn slice_rows(&self, a: &Storage, row_len: usize, start: usize, end: usize) -> Storage {
        store(host!(a)[start * row_len..end * row_len].to_vec())
    }

    fn concat(
        &self,
        a: &Storage,
        b: &Storage,
        outer: usize,
        a_inner: usize,
        b_inner: usize,
    ) -> Storage {
        let (a, b) = (host!(a), host!(b));
        let mut out = Vec::with_capacity(outer * (a_inner + b_inner));
        for o in 0..outer {
            out.extend_from_slice(&a[o * a_inner..(o + 1) * a_inner]);
            out.extend_from_slice(&b[o * b_inner..(o + 1) * b_inner]);
        }
        store(out)
    }

    fn upload_i64(&self, data: &[i64]) -> Storage {
        Storage::HostI64(Arc::from(data))
    }

    fn download_i64(&self, s: &Storage, len: usize) -> Result<Arc<[i64]>, DeviceError> {
        let v = host_i64(s).map_err(|e| (*e).clone())?;
        debug_assert_eq!(v.len(), len);
        Ok(v)
    }

    fn i64_to_f32(&self, a: &Storage, _len: usize) -> Storage {
        store(host_i64!(a).iter().map(|&x| x as f32).collect())
    }

    fn f32_to_i64(&self, a: &Storage, _len: usize) -> Result<Storage, usize> {
        let a = match host(a) {
            Ok(a) => a,
            Err(e) => return Ok(Storage::FailedI64(e)),
        };
        let mut out = Vec::with_capacity(a.len());
        for (i, &x) in a.iter().enumerate() {
            // -2^63 is exact in f32; 2^63 is the first value out of range.
            if x.fract() != 0.0 || !(-9.223_372e18..9.223_372e18).contains(&x) {
                return Err(i);
            }
            out.push(x as i64);
        }
        Ok(store_i64(out))
    }

    fn copy_nd(
        &self,
        dtype: DType,
        out_len: usize,
        fill: Option<f64>,
        parts: &[CopyPart<'_>],
    ) -> Storage {
        nd::copy_nd(dtype, out_len, fill, parts)
    }

    fn index_select(
        &self,
        dtype: DType,
        a: &Storage,
        outer: usize,
        n: usize,
        inner: usize,
        idx: &Storage,
        _m: usize,
    ) -> Storage {
        nd::index_select(dtype, a, outer, n, inner, idx)
    }

    fn gather(
        &self,
        dtype: DType,
        a: &Storage,
        a_dims: &[usize],
        axis: usize,
        idx: &Storage,
        idx_dims: &[usize],
    ) -> Storage {
        nd::gather(dtype, a, a_dims, axis, idx, idx_dims)
    }

    fn index_add(
        &self,
        g: &Storage,
        outer: usize,
        m: usize,
        inner: usize,
        idx: &[i64],
        n: usize,
    ) -> Storage {
        nd::index_add(g, outer, m, inner, idx, n)
    }

    fn scatter_add(
        &self,
        src: &Storage,
        idx: &Storage,
        idx_dims: &[usize],
        axis: usize,
        out_dims: &[usize],
    ) -> Storage {
        nd::scatter_add(src, idx, idx_dims, axis, out_dims)
    }

    fn clamp(&self, a: &Storage, _len: usize, lo: f32, hi: f32) -> Storage {
        store(host!(a).iter().map(|&x| clamp_value(x, lo, hi)).collect())
    }

    fn where_select(
        &self,
        cond: &Storage,
        cond_shape: &[usize],
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out: &[usize],
    ) -> Storage {
        nd::where_select(cond, cond_shape, a, a_shape, b, b_shape, out)
    }

    fn cumsum(
        &self,
        a: &Storage,
        outer: usize,
        len: usize,
        inner: usize,
        reverse: bool,
    ) -> Storage {
        nd::cumsum(a, outer, len, inner, reverse)
    }

    fn dropout_mask(&self, len: usize, p: f32, scale: f32, seed: u64) -> Storage {
        nd::dropout_mask(len, p, scale, seed)
    }

    fn batched_matmul(&self, a: &Storage, b: &Storage, g: &MatmulGeometry) -> Storage {
        nd::batched_matmul(a, b, g)
    }

    fn conv2d(&self, x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        conv::conv2d(x, w, g)
    }

    fn conv2d_grad_input(&self, dy: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        conv::conv2d_grad_input(dy, w, g)
    }

    fn conv2d_grad_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeometry) -> Storage {
        conv::conv2d_grad_weight(x, dy, g)
    }

    fn max_pool2d(&self, x: &Storage, g: &PoolGeometry) -> (Storage, Storage) {
        conv::max_pool2d(x, g)
    }

    fn max_pool2d_grad(&self, dy: &Storage, idx: &Storage, g: &PoolGeometry) -> Storage {
        conv::max_pool2d_grad(dy, idx, g)
    }

    fn avg_pool2d(&self, x: &Storage, g: &PoolGeometry) -> Storage {
        conv::avg_pool2d(x, g)
    }

    fn avg_pool2d_grad(&self, dy: &Storage, g: &PoolGeometry) -> Storage {
        conv::avg_pool2d_grad(dy, g)
    }
}

/// Products with a few rows of `A` (a served request's batch) and at most one
/// sgemm depth block, computed without sgemm's packing.
///
/// The result is bit-for-bit sgemm's: where `matrixmultiply` picks a fused
/// multiply-add kernel (x86-64 with FMA and AVX2, including its AVX-512
/// kernel; every aarch64), each element of `C` is one chain
/// `acc = fma(a[i][p], b[p][j], acc)` over `p` in order from `acc = 0`, and so
/// is this loop. Elsewhere sgemm rounds the product and the sum separately,
/// and `few_rows::matmul` declines so that sgemm runs. Training runs'
/// parameter digests depend on this equality; `tests/ops.rs`
/// (`few_row_products_are_sgemm_to_the_bit`) checks it.
mod few_rows {
    /// At most this many rows take this path.
    const MAX_ROWS: usize = 8;
    /// sgemm's depth block for f32 (`matrixmultiply`'s `S_KC`): a deeper
    /// product is summed block by block there, in another order.
    const MAX_DEPTH: usize = 256;
    /// Each row of `A` walks all of `B`, unpacked: past a few MiB of `B`,
    /// sgemm's one packed pass is cheaper.
    const MAX_B: usize = 1 << 20;

    pub(super) fn fits(m: usize, k: usize, n: usize) -> bool {
        m <= MAX_ROWS && k <= MAX_DEPTH && k * n <= MAX_B
    }

    /// `c += a·b` for row-major `a` (m×k), `b` (k×n), `c` (m×n) when sgemm
    /// would use fused multiply-adds; `false`, leaving `c` alone, otherwise.
    pub(super) fn matmul(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the features the function is built for.
                unsafe { fused_x86(a, b, k, n, c) };
                return true;
            }
            false
        }
        #[cfg(target_arch = "aarch64")]
        {
            // `f32::mul_add` is one `fmadd` on every aarch64, as sgemm's
            // NEON kernel's `fmla` is.
            fused(a, b, k, n, c);
            true
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = (a, b, k, n, c);
            false
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn fused_x86(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
        fused(a, b, k, n, c);
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    fn fused(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
        for (a_row, c_row) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
            let mut j = 0;
            while n - j >= 32 {
                columns::<32>(a_row, b, n, j, c_row);
                j += 32;
            }
            while n - j >= 8 {
                columns::<8>(a_row, b, n, j, c_row);
                j += 8;
            }
            while j < n {
                columns::<1>(a_row, b, n, j, c_row);
                j += 1;
            }
        }
    }

    /// Columns `j..j + W` of one row of `C`, each summed in a register over
    /// the whole depth.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    fn columns<const W: usize>(a_row: &[f32], b: &[f32], n: usize, j: usize, c_row: &mut [f32]) {
        let out = &mut c_row[j..j + W];
        let mut acc: [f32; W] = (&*out).try_into().expect("W columns");
        for (p, &x) in a_row.iter().enumerate() {
            let y = &b[p * n + j..][..W];
            for (acc, &y) in acc.iter_mut().zip(y) {
                *acc = x.mul_add(y, *acc);
            }
        }
        out.copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Varied values, with signed zeros and a NaN among them.
    fn values(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| match (i + salt) % 11 {
                0 => -0.0,
                1 => 0.0,
                7 if salt == 3 => f32::NAN,
                _ => rng::sample(
                    Distribution::Normal {
                        mean: 0.0,
                        std: 2.0,
                    },
                    9,
                    i + salt,
                ),
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn host_bits(s: &Storage) -> Vec<u32> {
        bits(&host(s).expect("host storage"))
    }

    #[test]
    fn broadcast_fast_paths_give_the_walks_bits() {
        let full = [2usize, 3, 4, 5];
        let smalls: [&[usize]; 10] = [
            &[5],
            &[4, 5],
            &[3, 4, 5],
            &[3, 1, 1],
            &[1, 3, 1, 1],
            &[3, 4, 1],
            &[2, 1, 1, 1],
            &[2, 3, 1, 1],
            &[1, 1, 4, 1],
            &[1],
        ];
        let a = values(full.iter().product(), 3);
        for small in smalls {
            let b = values(small.iter().product(), 5);
            // `Device` hands the backend shapes of the output's rank.
            let mut padded = vec![1; full.len() - small.len()];
            padded.extend_from_slice(small);
            let small = &padded[..];
            for op in [BinaryOp::Sub, BinaryOp::Div, BinaryOp::Maximum] {
                let f = |x, y| binary_scalar(op, x, y);
                let fast = binary_with(&a, &full, &b, small, &full, f);
                let walk = binary_walk(&a, &full, &b, small, &full, f);
                assert_eq!(
                    host_bits(&fast),
                    bits(&walk),
                    "{op:?} {full:?} with {small:?}"
                );
                let fast = binary_with(&b, small, &a, &full, &full, f);
                let walk = binary_walk(&b, small, &a, &full, &full, f);
                assert_eq!(
                    host_bits(&fast),
                    bits(&walk),
                    "{op:?} {small:?} with {full:?}"
                );
            }
        }
        let empty = binary_with(&[], &[2, 0], &[1.0, 2.0], &[2, 1], &[2, 0], |x, y| x + y);
        assert!(host_bits(&empty).is_empty());
    }

    #[test]
    fn row_reductions_give_the_walks_bits() {
        let shape = [3usize, 4, 5];
        let mut a = values(60, 3);
        // A column of negative zeros: its sum is -0.0, as `Iterator::sum`'s.
        for j in 0..4 {
            a[20 + j * 5] = -0.0;
        }
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
            for axis in 0..2 {
                let (outer, inner) = (
                    shape[..axis].iter().product(),
                    shape[axis + 1..].iter().product(),
                );
                let rows = reduce_rows(op, &a, outer, shape[axis], inner).expect("inner > 1");
                let walk = reduce_walk(op, &a, outer, shape[axis], inner);
                assert_eq!(host_bits(&rows), bits(&walk), "{op:?} along axis {axis}");
            }
        }
        assert!(reduce_rows(ReduceOp::Sum, &a, 12, 5, 1).is_none());
    }
}
