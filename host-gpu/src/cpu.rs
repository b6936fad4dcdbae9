//! The CPU reference backend: plain loops, and sgemm from `matrixmultiply`
//! (for products with a few rows, the same sums without its packing).
//!
//! Single-threaded on purpose: results are bit-for-bit reproducible, which is
//! what makes a training run's params digest depend only on its inputs.

mod conv;
mod nd;

use std::borrow::Cow;
use std::sync::Arc;

use crate::{
    Backend, BinaryOp, ConvGeometry, CopyPart, DType, DeviceInfo, DeviceKind, Distribution,
    MatmulGeometry, PoolGeometry, ReduceOp, ScalarOp, Storage, UnaryOp, rng,
};

/// The CPU backend. Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// The f32 elements of `s` in host memory; GPU storage is downloaded. (An
/// i64 storage, which `Device` never passes here, is converted.)
fn host(s: &Storage) -> Cow<'_, [f32]> {
    match s {
        Storage::Host(v) => Cow::Borrowed(v),
        Storage::HostI64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
        #[cfg(feature = "wgpu")]
        Storage::Gpu(g) => Cow::Owned(g.to_vec()),
        #[cfg(feature = "wgpu")]
        Storage::GpuI64(g) => Cow::Owned(g.to_i64().iter().map(|&x| x as f32).collect()),
    }
}

/// The i64 elements of `s` in host memory; GPU storage is downloaded (or
/// its host copy shared). (An f32 storage, which `Device` never passes
/// here, is truncated.)
fn host_i64(s: &Storage) -> Arc<[i64]> {
    match s {
        Storage::HostI64(v) => v.clone(),
        Storage::Host(v) => v.iter().map(|&x| x as i64).collect(),
        #[cfg(feature = "wgpu")]
        Storage::Gpu(g) => g.to_vec().iter().map(|&x| x as i64).collect(),
        #[cfg(feature = "wgpu")]
        Storage::GpuI64(g) => g.to_i64(),
    }
}

fn store_i64(v: Vec<i64>) -> Storage {
    Storage::HostI64(Arc::from(v))
}

fn store(v: Vec<f32>) -> Storage {
    Storage::Host(Arc::from(v))
}

/// Applies a unary map to one value; shared with tests of other backends.
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

/// Whether `small`, broadcast against `full`, repeats whole along the
/// leading dimensions: without its leading 1s, it is a suffix of `full`
/// (a bias `[n]` against `[rows, n]`, say).
fn repeats_along_rows(small: &[usize], full: &[usize]) -> bool {
    let first = small.iter().position(|&d| d != 1).unwrap_or(small.len());
    full.ends_with(&small[first..])
}

/// `op` over `full`, with `small` repeated along its leading dimensions
/// (see [`repeats_along_rows`]); `small_first` says which is the left operand.
fn binary_rows(op: BinaryOp, full: &[f32], small: &[f32], small_first: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(full.len());
    for row in full.chunks(small.len()) {
        if small_first {
            out.extend(
                small
                    .iter()
                    .zip(row)
                    .map(|(&x, &y)| binary_scalar(op, x, y)),
            );
        } else {
            out.extend(
                row.iter()
                    .zip(small)
                    .map(|(&x, &y)| binary_scalar(op, x, y)),
            );
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

    fn download(&self, s: &Storage, len: usize) -> Vec<f32> {
        let v = host(s);
        debug_assert_eq!(v.len(), len);
        v.into_owned()
    }

    fn fill(&self, len: usize, value: f32) -> Storage {
        store(vec![value; len])
    }

    fn random(&self, len: usize, dist: Distribution, seed: u64) -> Storage {
        store(
            (0..len)
                .map(|i| rng::sample(dist, seed, i as u32))
                .collect(),
        )
    }

    fn matmul(&self, a: &Storage, b: &Storage, m: usize, k: usize, n: usize) -> Storage {
        let mut c = vec![0.0f32; m * n];
        if m > 0 && n > 0 && k > 0 {
            let (a, b) = (host(a), host(b));
            assert!(a.len() == m * k && b.len() == k * n, "matmul storage sizes");
            if few_rows::fits(m, k, n) && few_rows::matmul(&a, &b, k, n, &mut c) {
                return store(c);
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
        }
        store(c)
    }

    fn transpose(&self, a: &Storage, rows: usize, cols: usize) -> Storage {
        let a = host(a);
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
        let (a, b) = (host(a), host(b));
        let n: usize = out_shape.iter().product();
        if a_shape == b_shape {
            return store(
                a.iter()
                    .zip(b.iter())
                    .map(|(&x, &y)| binary_scalar(op, x, y))
                    .collect(),
            );
        }
        if b.len() == 1 {
            let y = b[0];
            return store(a.iter().map(|&x| binary_scalar(op, x, y)).collect());
        }
        // A row broadcast (a bias, a feature mean): whole rows at a time.
        if a_shape == out_shape && !b.is_empty() && repeats_along_rows(b_shape, out_shape) {
            return store(binary_rows(op, &a, &b, false));
        }
        if b_shape == out_shape && !a.is_empty() && repeats_along_rows(a_shape, out_shape) {
            return store(binary_rows(op, &b, &a, true));
        }
        // General case: walk the output with an odometer, carrying both offsets.
        let (sa, sb) = (broadcast_strides(a_shape), broadcast_strides(b_shape));
        let rank = out_shape.len();
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; rank];
        let (mut oa, mut ob) = (0usize, 0usize);
        for _ in 0..n {
            out.push(binary_scalar(op, a[oa], b[ob]));
            for d in (0..rank).rev() {
                idx[d] += 1;
                oa += sa[d];
                ob += sb[d];
                if idx[d] < out_shape[d] {
                    break;
                }
                oa -= sa[d] * idx[d];
                ob -= sb[d] * idx[d];
                idx[d] = 0;
            }
        }
        store(out)
    }

    fn scalar(&self, op: ScalarOp, a: &Storage, _len: usize, value: f32) -> Storage {
        let a = host(a);
        store(match op {
            ScalarOp::Add => a.iter().map(|&x| x + value).collect(),
            ScalarOp::Mul => a.iter().map(|&x| x * value).collect(),
            _ => a.iter().map(|&x| scalar_value(op, x, value)).collect(),
        })
    }

    fn unary(&self, op: UnaryOp, a: &Storage, _len: usize) -> Storage {
        store(host(a).iter().map(|&x| unary_scalar(op, x)).collect())
    }

    fn reduce(
        &self,
        op: ReduceOp,
        a: &Storage,
        outer: usize,
        axis: usize,
        inner: usize,
    ) -> Storage {
        let a = host(a);
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
        store(out)
    }

    fn softmax(&self, a: &Storage, outer: usize, axis: usize, inner: usize, log: bool) -> Storage {
        let a = host(a);
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
        let a = host(a);
        let mut out = vec![0.0f32; n * classes];
        for (r, &label) in a.iter().enumerate() {
            if label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes {
                out[r * classes + label as usize] = 1.0;
            }
        }
        store(out)
    }

    fn gather_rows(&self, a: &Storage, row_len: usize, indices: &[u32]) -> Storage {
        let a = host(a);
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
        let g = host(g);
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
        store(host(a)[start * row_len..end * row_len].to_vec())
    }

    fn concat(
        &self,
        a: &Storage,
        b: &Storage,
        outer: usize,
        a_inner: usize,
        b_inner: usize,
    ) -> Storage {
        let (a, b) = (host(a), host(b));
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

    fn download_i64(&self, s: &Storage, len: usize) -> Arc<[i64]> {
        let v = host_i64(s);
        debug_assert_eq!(v.len(), len);
        v
    }

    fn i64_to_f32(&self, a: &Storage, _len: usize) -> Storage {
        store(host_i64(a).iter().map(|&x| x as f32).collect())
    }

    fn f32_to_i64(&self, a: &Storage, _len: usize) -> Result<Storage, usize> {
        let a = host(a);
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
        store(host(a).iter().map(|&x| clamp_value(x, lo, hi)).collect())
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
