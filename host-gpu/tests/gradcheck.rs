//! The tape's gradients against central differences of float64 reference
//! implementations of the same functions, for every differentiable op over
//! awkward shapes (size-1 dimensions, broadcasting, scalars, every axis);
//! then the same gradients on the wgpu backend against the CPU backend's,
//! the error cases, and what the tape keeps alive.
//!
//! Each case builds `loss = Σ op(inputs) · R` for a fixed random `R` (so every
//! output element matters) and compares the tape's gradient of each watched
//! input with `(L(x + h) - L(x - h)) / 2h` computed in f64, `h = 1e-3`. The
//! inputs are chosen away from kinks (relu, abs, ties of max and min) so that
//! the difference quotient is the derivative.

mod common;
mod nd_reference;

use std::sync::Arc;

use nd_reference as nd;
use tensorlet_gpu::autodiff::{CrossEntropy, GradError, NormStats, Reduction, Tape, Var};
use tensorlet_gpu::{
    BinaryOp, Conv1d, Conv2d, Device, Pool2d, ReduceOp, ScalarOp, Storage, Tensor, TensorError,
    UnaryOp,
};

/// A small deterministic generator for test data (splitmix64).
struct Rand(u64);

impl Rand {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [lo, hi).
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

// ---------------------------------------------------------------------------
// Float64 reference implementations.

/// A row-major f64 tensor.
#[derive(Clone, Debug)]
struct T {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl T {
    fn new(shape: &[usize], data: Vec<f64>) -> T {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        T {
            shape: shape.to_vec(),
            data,
        }
    }
}

/// [outer, len, inner] around `axis`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn r_matmul(a: &T, b: &T) -> T {
    let (&[m, k], &[k2, n]) = (&a.shape[..], &b.shape[..]) else {
        panic!("r_matmul shapes")
    };
    assert_eq!(k, k2);
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a.data[i * k + p] * b.data[p * n + j]).sum();
        }
    }
    T::new(&[m, n], out)
}

fn r_transpose(a: &T) -> T {
    let &[r, c] = &a.shape[..] else {
        panic!("r_transpose shape")
    };
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = a.data[i * c + j];
        }
    }
    T::new(&[c, r], out)
}

fn r_reshape(a: &T, shape: &[usize]) -> T {
    T::new(shape, a.data.clone())
}

fn r_binary(op: BinaryOp, a: &T, b: &T) -> T {
    let rank = a.shape.len().max(b.shape.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(&a.shape), pad(&b.shape));
    let out: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let n: usize = out.iter().product();
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        let (mut rest, mut ia, mut ib, mut sa, mut sb) = (i, 0, 0, 1, 1);
        for d in (0..rank).rev() {
            let idx = rest % out[d];
            rest /= out[d];
            if pa[d] != 1 {
                ia += idx * sa;
            }
            if pb[d] != 1 {
                ib += idx * sb;
            }
            sa *= pa[d];
            sb *= pb[d];
        }
        let (x, y) = (a.data[ia], b.data[ib]);
        data.push(match op {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Maximum => x.max(y),
            BinaryOp::Minimum => x.min(y),
            BinaryOp::Pow => x.powf(y),
            BinaryOp::Eq => f64::from(u8::from(x == y)),
            BinaryOp::Ne => f64::from(u8::from(x != y)),
            BinaryOp::Lt => f64::from(u8::from(x < y)),
            BinaryOp::Le => f64::from(u8::from(x <= y)),
            BinaryOp::Gt => f64::from(u8::from(x > y)),
            BinaryOp::Ge => f64::from(u8::from(x >= y)),
        });
    }
    T::new(&out, data)
}

fn r_map(a: &T, f: impl Fn(f64) -> f64) -> T {
    T::new(&a.shape, a.data.iter().map(|&x| f(x)).collect())
}

fn r_scalar(op: ScalarOp, a: &T, v: f32) -> T {
    let v = f64::from(v);
    match op {
        ScalarOp::Add => r_map(a, |x| x + v),
        ScalarOp::Mul => r_map(a, |x| x * v),
        ScalarOp::Pow => r_map(a, |x| x.powf(v)),
        ScalarOp::Max => r_map(a, |x| x.max(v)),
        ScalarOp::Min => r_map(a, |x| x.min(v)),
        ScalarOp::LeakyRelu => r_map(a, |x| if x > 0.0 { x } else { v * x }),
    }
}

fn r_unary(op: UnaryOp, a: &T) -> T {
    r_map(a, |x| match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Square => x * x,
        UnaryOp::ReluMask => f64::from(u8::from(x > 0.0)),
        UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        UnaryOp::Softplus => (1.0 + x.exp()).ln(),
        UnaryOp::GeluGrad | UnaryOp::GeluTanhGrad | UnaryOp::SiluGrad => {
            panic!("derivative maps have no reference")
        }
    })
}

/// erf in f64 by its Maclaurin series (|x| <= 3) or the continued fraction of
/// erfc (beyond): far more precise than the f32 kernels it checks.
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let r = if z <= 3.0 {
        let mut term = z;
        let mut sum = z;
        for n in 1..200 {
            term *= -z * z / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(z) = e^(-z²)/√π · 1/(z + 1/2/(z + 1/(z + 3/2/(z + …)))).
        let mut f = z;
        for k in (1..60).rev() {
            f = z + (k as f64 / 2.0) / f;
        }
        1.0 - (-z * z).exp() / std::f64::consts::PI.sqrt() / f
    };
    if x < 0.0 { -r } else { r }
}

fn r_reduce(op: ReduceOp, a: &T, axis: usize, keep: bool) -> T {
    let (outer, len, inner) = around(&a.shape, axis);
    let mut data = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let xs = (0..len).map(|j| a.data[(o * len + j) * inner + i]);
            data.push(match op {
                ReduceOp::Sum => xs.sum(),
                ReduceOp::Mean => xs.sum::<f64>() / len as f64,
                ReduceOp::Max => xs.fold(f64::NEG_INFINITY, f64::max),
                ReduceOp::Min => xs.fold(f64::INFINITY, f64::min),
                ReduceOp::ArgMax => panic!("argmax has no reference"),
            });
        }
    }
    let mut shape = a.shape.clone();
    if keep {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    T::new(&shape, data)
}

fn r_softmax(a: &T, axis: usize, log: bool) -> T {
    let (outer, len, inner) = around(&a.shape, axis);
    let mut out = a.data.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let max = (0..len)
                .map(|j| a.data[at(j)])
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..len).map(|j| (a.data[at(j)] - max).exp()).sum();
            for j in 0..len {
                let z = a.data[at(j)] - max;
                out[at(j)] = if log { z - sum.ln() } else { z.exp() / sum };
            }
        }
    }
    T::new(&a.shape, out)
}

fn row_len(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}

fn r_slice_rows(a: &T, start: usize, end: usize) -> T {
    let len = row_len(&a.shape);
    let mut shape = a.shape.clone();
    shape[0] = end - start;
    T::new(&shape, a.data[start * len..end * len].to_vec())
}

fn r_gather_rows(a: &T, indices: &[u32]) -> T {
    let len = row_len(&a.shape);
    let mut shape = a.shape.clone();
    shape[0] = indices.len();
    let data = indices
        .iter()
        .flat_map(|&i| a.data[i as usize * len..(i as usize + 1) * len].to_vec())
        .collect();
    T::new(&shape, data)
}

fn r_concat(a: &T, b: &T, axis: usize) -> T {
    let (outer, la, inner) = around(&a.shape, axis);
    let lb = b.shape[axis];
    let mut data = Vec::new();
    for o in 0..outer {
        data.extend_from_slice(&a.data[o * la * inner..(o + 1) * la * inner]);
        data.extend_from_slice(&b.data[o * lb * inner..(o + 1) * lb * inner]);
    }
    let mut shape = a.shape.clone();
    shape[axis] += lb;
    T::new(&shape, data)
}

fn r_cross_entropy(logits: &T, labels: &[f32]) -> T {
    let (n, c) = (logits.shape[0], logits.shape[1]);
    let lsm = r_softmax(logits, 1, true);
    let total: f64 = (0..n).map(|i| lsm.data[i * c + labels[i] as usize]).sum();
    T::new(&[1], vec![-total / n as f64])
}

// ---------------------------------------------------------------------------
// Cases.

/// How an input's values are drawn.
#[derive(Clone, Copy, Debug)]
enum Data {
    /// Uniform in [-2, 2).
    Any,
    /// In [0.5, 2.5): for log, sqrt.
    Positive,
    /// |x| in [0.2, 2), either sign: away from the kinks of relu and abs and
    /// from zero divisors.
    AwayFromZero,
    /// Distinct values 0.25 apart, shuffled: no ties for max and min.
    Distinct,
}

struct Input {
    shape: Vec<usize>,
    data: Data,
    watched: bool,
}

fn watched(shape: &[usize], data: Data) -> Input {
    Input {
        shape: shape.to_vec(),
        data,
        watched: true,
    }
}

fn constant(shape: &[usize], data: Data) -> Input {
    Input {
        shape: shape.to_vec(),
        data,
        watched: false,
    }
}

type Forward = Box<dyn Fn(&mut Tape, &[Var]) -> Result<Var, TensorError>>;
type Reference = Box<dyn Fn(&[T]) -> T>;

struct Case {
    name: String,
    inputs: Vec<Input>,
    forward: Forward,
    reference: Reference,
    /// The data's seed, when the case needs particular data (away from
    /// kinks); otherwise one from the case's position.
    seed: Option<u64>,
}

fn case(
    name: impl Into<String>,
    inputs: Vec<Input>,
    forward: impl Fn(&mut Tape, &[Var]) -> Result<Var, TensorError> + 'static,
    reference: impl Fn(&[T]) -> T + 'static,
) -> Case {
    Case {
        name: name.into(),
        inputs,
        forward: Box::new(forward),
        reference: Box::new(reference),
        seed: None,
    }
}

fn values(r: &mut Rand, n: usize, data: Data) -> Vec<f32> {
    match data {
        Data::Any => (0..n).map(|_| r.f32(-2.0, 2.0)).collect(),
        Data::Positive => (0..n).map(|_| r.f32(0.5, 2.5)).collect(),
        Data::AwayFromZero => (0..n)
            .map(|_| {
                let x = r.f32(0.2, 2.0);
                if r.below(2) == 0 { x } else { -x }
            })
            .collect(),
        Data::Distinct => {
            let mut v: Vec<f32> = (0..n).map(|k| 0.25 * k as f32 - 0.125 * n as f32).collect();
            for i in (1..n).rev() {
                v.swap(i, r.below(i + 1));
            }
            v
        }
    }
}

const BINARY: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];
const SMOOTH: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min];

fn cases() -> Vec<Case> {
    let mut v = Vec::new();

    for (m, k, n) in [(3, 4, 5), (1, 7, 1), (5, 1, 3), (2, 3, 1), (4, 2, 6)] {
        v.push(case(
            format!("matmul [{m}, {k}] x [{k}, {n}]"),
            vec![watched(&[m, k], Data::Any), watched(&[k, n], Data::Any)],
            |t, x| t.matmul(&x[0], &x[1]),
            |x| r_matmul(&x[0], &x[1]),
        ));
    }
    v.push(case(
        "matmul of constant data by a watched weight",
        vec![constant(&[6, 3], Data::Any), watched(&[3, 2], Data::Any)],
        |t, x| t.matmul(&x[0], &x[1]),
        |x| r_matmul(&x[0], &x[1]),
    ));
    v.push(case(
        "matmul of a watched input by a constant",
        vec![watched(&[2, 3], Data::Any), constant(&[3, 4], Data::Any)],
        |t, x| t.matmul(&x[0], &x[1]),
        |x| r_matmul(&x[0], &x[1]),
    ));

    for shape in [[3usize, 5], [1, 4], [4, 1]] {
        v.push(case(
            format!("transpose {shape:?}"),
            vec![watched(&shape, Data::Any)],
            |t, x| t.transpose(&x[0]),
            |x| r_transpose(&x[0]),
        ));
    }
    for (from, to) in [
        (vec![2usize, 3, 4], vec![6usize, 4]),
        (vec![5], vec![1, 5, 1]),
        (vec![1], vec![]),
    ] {
        let dims: Vec<u32> = to.iter().map(|&d| d as u32).collect();
        v.push(case(
            format!("reshape {from:?} to {to:?}"),
            vec![watched(&from, Data::Any)],
            move |t, x| t.reshape(&x[0], &dims),
            move |x| r_reshape(&x[0], &to),
        ));
    }

    let pairs: [(&[usize], &[usize]); 9] = [
        (&[3, 1, 4], &[5, 1]),
        (&[3, 1, 4], &[4]),
        (&[2, 3], &[1]),
        (&[1], &[2, 3]),
        (&[], &[2, 2]),
        (&[2, 3], &[2, 3]),
        (&[4, 1], &[1, 5]),
        (&[2, 1, 3], &[2, 4, 1]),
        (&[1, 1], &[1]),
    ];
    for op in BINARY {
        let divisor = if op == BinaryOp::Div {
            Data::AwayFromZero
        } else {
            Data::Any
        };
        for (sa, sb) in pairs {
            v.push(case(
                format!("{op:?} {sa:?} {sb:?}"),
                vec![watched(sa, Data::Any), watched(sb, divisor)],
                move |t, x| t.binary(op, &x[0], &x[1]),
                move |x| r_binary(op, &x[0], &x[1]),
            ));
        }
        v.push(case(
            format!("{op:?} with only the broadcast operand watched"),
            vec![constant(&[3, 4], Data::Any), watched(&[4], divisor)],
            move |t, x| t.binary(op, &x[0], &x[1]),
            move |x| r_binary(op, &x[0], &x[1]),
        ));
        v.push(case(
            format!("{op:?} with only the full operand watched"),
            vec![watched(&[3, 4], Data::Any), constant(&[3, 1], divisor)],
            move |t, x| t.binary(op, &x[0], &x[1]),
            move |x| r_binary(op, &x[0], &x[1]),
        ));
    }

    for (op, value, shape) in [
        (ScalarOp::Add, 0.7f32, vec![3usize, 4]),
        (ScalarOp::Mul, -1.5, vec![2, 3, 1]),
        (ScalarOp::Mul, 0.0, vec![2]),
    ] {
        v.push(case(
            format!("scalar {op:?} {value} on {shape:?}"),
            vec![watched(&shape, Data::Any)],
            move |t, x| t.scalar(op, &x[0], value),
            move |x| r_scalar(op, &x[0], value),
        ));
    }

    for op in [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Square,
    ] {
        let data = match op {
            UnaryOp::Log | UnaryOp::Sqrt => Data::Positive,
            UnaryOp::Relu | UnaryOp::Abs => Data::AwayFromZero,
            _ => Data::Any,
        };
        for shape in [vec![3usize, 4], vec![1]] {
            v.push(case(
                format!("{op:?} {shape:?}"),
                vec![watched(&shape, data)],
                move |t, x| t.unary(op, &x[0]),
                move |x| r_unary(op, &x[0]),
            ));
        }
    }

    for shape in [vec![3usize, 4, 5], vec![1, 4], vec![6], vec![2, 1, 3]] {
        for axis in 0..shape.len() {
            for keep in [false, true] {
                for op in SMOOTH {
                    v.push(case(
                        format!("{op:?} of {shape:?} along {axis}, keepdims {keep}"),
                        vec![watched(&shape, Data::Distinct)],
                        move |t, x| t.reduce(op, &x[0], axis as u32, keep),
                        move |x| r_reduce(op, &x[0], axis, keep),
                    ));
                }
            }
        }
    }

    for shape in [vec![3usize, 4, 5], vec![1, 5], vec![4, 1], vec![7]] {
        for axis in 0..shape.len() {
            for log in [false, true] {
                v.push(case(
                    format!("softmax (log {log}) of {shape:?} along {axis}"),
                    vec![watched(&shape, Data::Any)],
                    move |t, x| t.softmax(&x[0], axis as u32, log),
                    move |x| r_softmax(&x[0], axis, log),
                ));
            }
        }
    }

    for (shape, start, end) in [
        (vec![6usize, 2], 0usize, 6usize),
        (vec![6, 2], 1, 4),
        (vec![6, 2], 5, 6),
        (vec![6, 2], 0, 1),
        (vec![6, 2], 3, 3),
        (vec![5, 2, 3], 1, 3),
        (vec![4], 1, 3),
    ] {
        v.push(case(
            format!("slice rows {start}..{end} of {shape:?}"),
            vec![watched(&shape, Data::Any)],
            move |t, x| t.slice_rows(&x[0], start as u32, end as u32),
            move |x| r_slice_rows(&x[0], start, end),
        ));
    }

    for (shape, indices) in [
        (vec![4usize, 3], vec![1u32, 1, 3, 0, 1]),
        (vec![5, 2, 2], vec![4, 4]),
        (vec![3, 2], vec![]),
        (vec![6], vec![5, 0, 5, 5]),
    ] {
        let idx = indices.clone();
        v.push(case(
            format!("gather rows {indices:?} of {shape:?}"),
            vec![watched(&shape, Data::Any)],
            move |t, x| t.gather_rows(&x[0], &idx),
            move |x| r_gather_rows(&x[0], &indices),
        ));
    }

    for (sa, sb, axis) in [
        (vec![2usize, 3], vec![4usize, 3], 0usize),
        (vec![2, 3], vec![2, 1], 1),
        (vec![2, 3, 4], vec![2, 1, 4], 1),
        (vec![2, 3, 4], vec![2, 3, 2], 2),
        (vec![3], vec![5], 0),
        (vec![1, 2, 3], vec![1, 2, 2], 2),
        (vec![2, 3, 4], vec![5, 3, 4], 0),
    ] {
        for (wa, wb) in [(true, true), (true, false), (false, true)] {
            let input = |s: &[usize], w: bool| Input {
                shape: s.to_vec(),
                data: Data::Any,
                watched: w,
            };
            v.push(case(
                format!("concat {sa:?} ({wa}) {sb:?} ({wb}) along {axis}"),
                vec![input(&sa, wa), input(&sb, wb)],
                move |t, x| t.concat(&x[0], &x[1], axis as u32),
                move |x| r_concat(&x[0], &x[1], axis),
            ));
        }
    }
    v.push(case(
        "concat of a tensor with itself along 1",
        vec![watched(&[3, 2], Data::Any)],
        |t, x| t.concat(&x[0], &x[0], 1),
        |x| r_concat(&x[0], &x[0], 1),
    ));

    for (shape, labels) in [
        (vec![5usize, 4], vec![0.0f32, 3.0, 1.0, 3.0, 2.0]),
        (vec![1, 3], vec![2.0]),
        (vec![3, 1], vec![0.0, 0.0, 0.0]),
    ] {
        let l = labels.clone();
        v.push(case(
            format!("cross-entropy of {shape:?}"),
            vec![watched(&shape, Data::Any)],
            move |t, x| {
                let labels = t.device().from_vec(&[l.len() as u32], l.clone())?;
                t.cross_entropy(&x[0], &labels)
            },
            move |x| r_cross_entropy(&x[0], &labels),
        ));
    }

    // Compositions.
    v.push(case(
        "a leaf used twice: x·xᵀ + x*x",
        vec![watched(&[3, 3], Data::Any)],
        |t, x| {
            let xt = t.transpose(&x[0])?;
            let p = t.matmul(&x[0], &xt)?;
            let sq = t.binary(BinaryOp::Mul, &x[0], &x[0])?;
            t.binary(BinaryOp::Add, &p, &sq)
        },
        |x| {
            let p = r_matmul(&x[0], &r_transpose(&x[0]));
            r_binary(BinaryOp::Add, &p, &r_binary(BinaryOp::Mul, &x[0], &x[0]))
        },
    ));
    v.push(case(
        "x * relu_mask(x) (the mask passes no gradient)",
        vec![watched(&[4, 3], Data::AwayFromZero)],
        |t, x| {
            let m = t.unary(UnaryOp::ReluMask, &x[0]).unwrap();
            t.binary(BinaryOp::Mul, &x[0], &m)
        },
        |x| r_binary(BinaryOp::Mul, &x[0], &r_unary(UnaryOp::ReluMask, &x[0])),
    ));
    v.push(case(
        "mean of log-softmax",
        vec![watched(&[4, 3], Data::Any)],
        |t, x| {
            let l = t.softmax(&x[0], 1, true)?;
            let m = t.reduce(ReduceOp::Mean, &l, 1, false)?;
            t.reduce(ReduceOp::Mean, &m, 0, true)
        },
        |x| {
            let l = r_softmax(&x[0], 1, true);
            r_reduce(
                ReduceOp::Mean,
                &r_reduce(ReduceOp::Mean, &l, 1, false),
                0,
                true,
            )
        },
    ));
    v.push(case(
        "embedding lookup then a product",
        vec![watched(&[5, 3], Data::Any), watched(&[3, 2], Data::Any)],
        |t, x| {
            let e = t.gather_rows(&x[0], &[1, 4, 1, 0])?;
            t.matmul(&e, &x[1])
        },
        |x| r_matmul(&r_gather_rows(&x[0], &[1, 4, 1, 0]), &x[1]),
    ));
    v.push(mlp_case(6, 4, 5, 3));
    v.extend(nd_cases());
    v.push(cnn_case(3));
    v
}

/// A 2-layer MLP with mean cross-entropy: relu(x·w1 + b1)·w2 + b2.
fn mlp_case(n: usize, features: usize, hidden: usize, classes: usize) -> Case {
    let labels: Vec<f32> = (0..n).map(|i| ((i * 7 + 3) % classes) as f32).collect();
    let l = labels.clone();
    case(
        format!("mlp {n}x{features} -> {hidden} -> {classes} with cross-entropy"),
        vec![
            constant(&[n, features], Data::Any),
            watched(&[features, hidden], Data::Any),
            watched(&[hidden], Data::Any),
            watched(&[hidden, classes], Data::Any),
            watched(&[classes], Data::Any),
        ],
        move |t, x| {
            let z1 = t.matmul(&x[0], &x[1])?;
            let z1 = t.binary(BinaryOp::Add, &z1, &x[2])?;
            let h = t.unary(UnaryOp::Relu, &z1).unwrap();
            let z2 = t.matmul(&h, &x[3])?;
            let z2 = t.binary(BinaryOp::Add, &z2, &x[4])?;
            let labels = t.device().from_vec(&[n as u32], l.clone())?;
            t.cross_entropy(&z2, &labels)
        },
        move |x| {
            let z1 = r_binary(BinaryOp::Add, &r_matmul(&x[0], &x[1]), &x[2]);
            // Central differences are meaningless next to relu's kink.
            assert!(
                z1.data.iter().all(|z| z.abs() > 0.005),
                "a hidden pre-activation is within 0.005 of relu's kink; pick other data"
            );
            let h = r_unary(UnaryOp::Relu, &z1);
            let z2 = r_binary(BinaryOp::Add, &r_matmul(&h, &x[3]), &x[4]);
            r_cross_entropy(&z2, &labels)
        },
    )
}

// ---------------------------------------------------------------------------
// Running a case.

/// The case's inputs as f32 data, drawn from a generator seeded by `seed`.
fn draw(case: &Case, seed: u64) -> Vec<Vec<f32>> {
    let mut r = Rand(seed);
    case.inputs
        .iter()
        .map(|i| values(&mut r, i.shape.iter().product(), i.data))
        .collect()
}

/// The weights `R` of `loss = Σ out · R`, for an output of `n` elements.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rand(seed ^ 0x5eed);
    (0..n).map(|_| r.f32(-1.0, 1.0)).collect()
}

fn dims(shape: &[usize]) -> Vec<u32> {
    shape.iter().map(|&d| d as u32).collect()
}

fn name(i: usize) -> String {
    format!("x{i}")
}

/// The tape's gradients of `Σ out · R` for the watched inputs, in order.
fn tape_grads(dev: &Device, case: &Case, data: &[Vec<f32>], seed: u64) -> Vec<Vec<f32>> {
    let mut tape = Tape::new(dev.clone());
    let mut vars = Vec::new();
    let mut names = Vec::new();
    for (i, (input, d)) in case.inputs.iter().zip(data).enumerate() {
        let t = dev.from_vec(&dims(&input.shape), d.clone()).unwrap();
        vars.push(if input.watched {
            names.push(name(i));
            tape.leaf(&name(i), t).unwrap()
        } else {
            Var::constant(t)
        });
    }
    let out = (case.forward)(&mut tape, &vars).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let r = dev
        .from_vec(
            &dims(out.shape().dims()),
            weights(out.value().numel(), seed),
        )
        .unwrap();
    let weighted = tape.binary(BinaryOp::Mul, &out, &Var::constant(r)).unwrap();
    let flat = tape
        .reshape(&weighted, &[weighted.value().numel() as u32])
        .unwrap();
    // A rank-0 loss: any shape with one element will do.
    let loss = tape.reduce(ReduceOp::Sum, &flat, 0, false).unwrap();
    assert_eq!(loss.shape().rank(), 0);
    let wrt: Vec<&str> = names.iter().map(String::as_str).collect();
    let grads = tape
        .grad(&loss, &wrt)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    grads
        .iter()
        .zip(case.inputs.iter().filter(|i| i.watched))
        .map(|(g, input)| {
            assert_eq!(
                g.shape().dims(),
                &input.shape[..],
                "{}: gradient shape",
                case.name
            );
            dev.to_vec(g)
        })
        .collect()
}

/// Central differences of `Σ reference(x) · R` in f64, for the watched inputs.
fn numeric_grads(case: &Case, data: &[Vec<f32>], seed: u64) -> Vec<Vec<f64>> {
    const H: f64 = 1e-3;
    let mut xs: Vec<T> = case
        .inputs
        .iter()
        .zip(data)
        .map(|(i, d)| T::new(&i.shape, d.iter().map(|&v| f64::from(v)).collect()))
        .collect();
    let n_out = (case.reference)(&xs).data.len();
    let r: Vec<f64> = weights(n_out, seed).into_iter().map(f64::from).collect();
    let loss = |xs: &[T]| -> f64 {
        let out = (case.reference)(xs);
        out.data.iter().zip(&r).map(|(o, w)| o * w).sum()
    };
    let mut grads = Vec::new();
    for i in 0..xs.len() {
        if !case.inputs[i].watched {
            continue;
        }
        let mut g = Vec::with_capacity(xs[i].data.len());
        for j in 0..xs[i].data.len() {
            let x = xs[i].data[j];
            xs[i].data[j] = x + H;
            let up = loss(&xs);
            xs[i].data[j] = x - H;
            let down = loss(&xs);
            xs[i].data[j] = x;
            g.push((up - down) / (2.0 * H));
        }
        grads.push(g);
    }
    grads
}

#[test]
fn gradients_match_central_differences_of_a_float64_reference() {
    let dev = Device::cpu();
    let all = cases();
    assert!(all.len() > 200, "{} cases", all.len());
    for (k, case) in all.iter().enumerate() {
        let seed = case.seed.unwrap_or(1000 + k as u64);
        let data = draw(case, seed);
        let analytic = tape_grads(&dev, case, &data, seed);
        let numeric = numeric_grads(case, &data, seed);
        assert_eq!(analytic.len(), numeric.len());
        for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
            assert_eq!(a.len(), n.len());
            for (j, (&a, &n)) in a.iter().zip(n).enumerate() {
                let a = f64::from(a);
                assert!(
                    (a - n).abs() <= 1e-3 * n.abs().max(1.0),
                    "{}: watched input {i}, element {j}: tape {a}, numeric {n}",
                    case.name
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn gpu_gradients_match_the_cpu_backend() {
    let gpu = common::gpu();
    let cpu = Device::cpu();
    let mut all = cases();
    // Larger than any tile or workgroup, with ragged edges.
    all.push(mlp_case(67, 33, 65, 10));
    for (k, case) in all.iter().enumerate() {
        let seed = case.seed.unwrap_or(1000 + k as u64);
        let data = draw(case, seed);
        let want = tape_grads(&cpu, case, &data, seed);
        let got = tape_grads(&gpu, case, &data, seed);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.len(), g.len());
            for (j, (&w, &g)) in w.iter().zip(g).enumerate() {
                assert!(
                    (w - g).abs() <= 1e-4 * w.abs().max(1.0),
                    "{}: watched input {i}, element {j}: gpu {g}, cpu {w}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn cpu_gradients_are_bit_identical_run_to_run() {
    let dev = Device::cpu();
    let case = mlp_case(64, 20, 32, 10);
    let data = draw(&case, 7);
    let bits = |grads: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
        grads
            .into_iter()
            .map(|g| g.into_iter().map(f32::to_bits).collect())
            .collect()
    };
    let first = bits(tape_grads(&dev, &case, &data, 7));
    let second = bits(tape_grads(&dev, &case, &data, 7));
    assert_eq!(first, second);
    assert!(first.iter().flatten().any(|&b| b != 0));
}

// ---------------------------------------------------------------------------
// Semantics and errors.

fn t(dev: &Device, shape: &[u32], data: &[f32]) -> Tensor {
    dev.from_vec(shape, data.to_vec()).unwrap()
}

fn sum_all(tape: &mut Tape, v: &Var) -> Var {
    let flat = tape.reshape(v, &[v.value().numel() as u32]).unwrap();
    tape.reduce(ReduceOp::Sum, &flat, 0, true).unwrap()
}

#[test]
fn max_and_min_share_the_gradient_among_ties() {
    let dev = Device::cpu();
    let mut tape = Tape::new(dev.clone());
    let x = tape
        .leaf("x", t(&dev, &[2, 3], &[1.0, 3.0, 3.0, 2.0, 2.0, 2.0]))
        .unwrap();
    let m = tape.reduce(ReduceOp::Max, &x, 1, false).unwrap();
    let loss = sum_all(&mut tape, &m);
    let g = tape.grad(&loss, &["x"]).unwrap();
    assert_eq!(
        dev.to_vec(&g[0]),
        vec![0.0, 0.5, 0.5, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
    );
    let mut tape = Tape::new(dev.clone());
    let x = tape
        .leaf("x", t(&dev, &[2, 3], &[1.0, 3.0, 4.0, 0.0, 5.0, 4.0]))
        .unwrap();
    let m = tape.reduce(ReduceOp::Min, &x, 0, true).unwrap();
    let loss = sum_all(&mut tape, &m);
    let g = tape.grad(&loss, &["x"]).unwrap();
    assert_eq!(dev.to_vec(&g[0]), vec![0.0, 1.0, 0.5, 1.0, 0.0, 0.5]);
}

#[test]
fn errors_name_the_problem() {
    let dev = Device::cpu();
    let mut tape = Tape::new(dev.clone());
    let w = tape.leaf("w", t(&dev, &[4, 3], &[0.5; 12])).unwrap();
    let b = tape.leaf("b", t(&dev, &[3], &[0.0; 3])).unwrap();
    assert_eq!(tape.leaf_names().collect::<Vec<_>>(), ["w", "b"]);

    let err = tape.leaf("w", t(&dev, &[1], &[0.0])).unwrap_err();
    assert!(matches!(&err, GradError::DuplicateLeaf { name } if name == "w"));
    assert_eq!(
        err.to_string(),
        "leaf: a tensor named `w` is already watched in this call"
    );

    let y = tape.unary(UnaryOp::Tanh, &w).unwrap();
    let err = tape.grad(&y, &["w"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "grad: the loss must have one element, got shape [4, 3]; reduce it first (mean or sum)"
    );

    let loss = sum_all(&mut tape, &y);
    let err = tape.grad(&loss, &["w", "bias"]).unwrap_err();
    match &err {
        GradError::UnknownLeaf { name, known } => {
            assert_eq!(name, "bias");
            assert_eq!(known, &["w", "b"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "grad: no watched tensor is named `bias`; the watched tensors are `w`, `b`"
    );

    let err = tape.grad(&loss, &["w", "b"]).unwrap_err();
    assert!(matches!(&err, GradError::NoPath { names } if names == &["b"]));
    assert_eq!(err.to_string(), "grad: the loss does not depend on `b`");

    let c = Var::constant(t(&dev, &[1], &[2.0]));
    let unrecorded = tape.unary(UnaryOp::Exp, &c).unwrap();
    assert!(!unrecorded.is_recorded());
    let err = tape.grad(&unrecorded, &["w"]).unwrap_err();
    assert!(matches!(err, GradError::Unrecorded), "{err:?}");

    // Ops refuse exactly what Device refuses, with the same error.
    let bad = tape.matmul(&w, &w).unwrap_err();
    assert_eq!(
        bad,
        dev.matmul(w.value(), w.value()).unwrap_err(),
        "tape and device errors differ"
    );
    assert_eq!(
        tape.concat(&w, &b, 0).unwrap_err(),
        dev.concat(w.value(), b.value(), 0).unwrap_err()
    );
    let _ = b;
}

/// Applies an op with no gradient.
type Blocking = fn(&mut Tape, &Var) -> Var;

#[test]
fn leaves_reaching_the_loss_only_through_ops_without_gradient_are_errors() {
    let dev = Device::cpu();
    let ops: [(&str, Blocking); 3] = [
        ("argmax", |tape, x| {
            tape.reduce(ReduceOp::ArgMax, x, 0, true).unwrap()
        }),
        ("one-hot", |tape, x| {
            let labels = tape.scalar(ScalarOp::Mul, x, 0.0).unwrap();
            tape.one_hot(&labels, 3).unwrap()
        }),
        ("relu-mask", |tape, x| {
            tape.unary(UnaryOp::ReluMask, x).unwrap()
        }),
    ];
    for (op, f) in ops {
        let mut tape = Tape::new(dev.clone());
        let x = tape
            .leaf("x", t(&dev, &[4], &[0.5, -1.0, 2.0, 0.0]))
            .unwrap();
        let y = tape.leaf("y", t(&dev, &[1], &[3.0])).unwrap();
        let blocked = f(&mut tape, &x);
        assert!(blocked.is_recorded(), "{op}");
        let both = tape.binary(BinaryOp::Mul, &blocked, &y).unwrap();
        let loss = sum_all(&mut tape, &both);
        let err = tape.grad(&loss, &["y", "x"]).unwrap_err();
        match &err {
            GradError::NonDifferentiable { op: got, names } => {
                assert_eq!(*got, op);
                assert_eq!(names, &["x"]);
            }
            other => panic!("{op}: {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("grad: `x` reaches the loss only through {op}, which has no gradient")
        );
        // y's gradient is still there: Σ blocked.
        let gy = tape.grad(&loss, &["y"]).unwrap();
        let want: f32 = dev.to_vec(blocked.value()).iter().sum();
        assert_eq!(dev.to_vec(&gy[0]), vec![want], "{op}");
    }

    // With a differentiable path as well, x gets that path's gradient.
    let mut tape = Tape::new(dev.clone());
    let x = tape
        .leaf("x", t(&dev, &[4], &[0.5, -1.0, 2.0, -3.0]))
        .unwrap();
    let mask = tape.unary(UnaryOp::ReluMask, &x).unwrap();
    let masked = tape.binary(BinaryOp::Mul, &x, &mask).unwrap();
    let loss = sum_all(&mut tape, &masked);
    let g = tape.grad(&loss, &["x"]).unwrap();
    assert_eq!(dev.to_vec(&g[0]), vec![1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn cross_entropy_checks_its_labels() {
    let dev = Device::cpu();
    let mut tape = Tape::new(dev.clone());
    let z = tape.leaf("z", t(&dev, &[3, 4], &[0.0; 12])).unwrap();
    let err = |tape: &mut Tape, labels: &[f32], shape: &[u32]| {
        tape.cross_entropy(&z, &t(&dev, shape, labels))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&mut tape, &[0.0, 2.5, 1.0], &[3]),
        "cross-entropy: row 1 has label 2.5, which is not a class index in 0..4"
    );
    assert_eq!(
        err(&mut tape, &[0.0, 1.0, 4.0], &[3]),
        "cross-entropy: row 2 has label 4, which is not a class index in 0..4"
    );
    assert_eq!(
        err(&mut tape, &[-1.0, 1.0, 3.0], &[3]),
        "cross-entropy: row 0 has label -1, which is not a class index in 0..4"
    );
    assert_eq!(
        err(&mut tape, &[0.0, f32::NAN, 3.0], &[3]),
        "cross-entropy: row 1 has label NaN, which is not a class index in 0..4"
    );
    assert_eq!(
        err(&mut tape, &[0.0, 1.0], &[2]),
        "cross-entropy: labels have shape [2], but logits of shape [3, 4] need [3] (one class \
         index per row)"
    );
    let flat = tape.reshape(&z, &[12]).unwrap();
    assert_eq!(
        tape.cross_entropy(&flat, &t(&dev, &[12], &[0.0; 12]))
            .unwrap_err()
            .to_string(),
        "cross-entropy: needs 2-D logits [rows, classes], got shape [12]"
    );

    // Uniform logits: the loss is ln 4 and the gradient (1/4 - onehot) / 3.
    let loss = tape
        .cross_entropy(&z, &t(&dev, &[3], &[0.0, 3.0, 3.0]))
        .unwrap();
    assert_eq!(loss.shape().dims(), [1]);
    let l = dev.to_vec(loss.value())[0];
    assert!((l - 4f32.ln()).abs() < 1e-6, "{l}");
    let g = dev.to_vec(&tape.grad(&loss, &["z"]).unwrap()[0]);
    let (hit, miss) = ((0.25 - 1.0) / 3.0, 0.25 / 3.0);
    let want = [
        hit, miss, miss, miss, miss, miss, miss, hit, miss, miss, miss, hit,
    ];
    for (g, w) in g.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{g} vs {w}");
    }
}

/// The strong count of a host tensor's storage.
fn holders(x: &Tensor) -> usize {
    match x.storage() {
        Storage::Host(a) => Arc::strong_count(a),
        other => panic!("not host storage: {other:?}"),
    }
}

#[test]
fn the_tape_keeps_only_what_gradients_need_and_frees_it_when_dropped() {
    let dev = Device::cpu();
    let x = t(&dev, &[8, 4], &[0.5; 32]);
    let w = t(&dev, &[4, 2], &[0.25; 8]);
    assert_eq!((holders(&x), holders(&w)), (1, 1));

    let mut tape = Tape::new(dev.clone());
    assert_eq!(tape.saved_bytes(), 0);
    let wv = tape.leaf("w", w.clone()).unwrap();
    assert_eq!(tape.saved_bytes(), 0);
    // x·w keeps x (for w's gradient) and not w (x is not watched).
    let y = tape.matmul(&Var::constant(x.clone()), &wv).unwrap();
    assert_eq!(tape.saved_bytes(), x.byte_len());
    // Operations on constants alone are not recorded.
    let before = tape.len();
    let c = tape.unary(UnaryOp::Exp, &Var::constant(x.clone())).unwrap();
    assert!(!c.is_recorded() && c.node().is_none());
    assert_eq!(tape.len(), before);
    // tanh keeps its output.
    let h = tape.unary(UnaryOp::Tanh, &y).unwrap();
    assert_eq!(tape.saved_bytes(), x.byte_len() + h.value().byte_len());
    let loss = sum_all(&mut tape, &h);
    let g = tape.grad(&loss, &["w"]).unwrap();
    assert_eq!(g[0].shape().dims(), [4, 2]);
    drop((wv, y, c, h, loss, g));
    assert!(holders(&x) > 1, "the tape holds x");
    assert_eq!(holders(&w), 1, "the tape keeps no copy of w");
    drop(tape);
    assert_eq!((holders(&x), holders(&w)), (1, 1));
    assert_eq!(Tape::new(dev).saved_bytes(), 0);
}

#[test]
fn vars_of_another_tape_are_constants_here() {
    let dev = Device::cpu();
    let mut first = Tape::new(dev.clone());
    let a = first.leaf("a", t(&dev, &[2], &[1.0, 2.0])).unwrap();
    let mut second = Tape::new(dev.clone());
    let b = second.leaf("b", t(&dev, &[2], &[3.0, 4.0])).unwrap();
    let ab = second.binary(BinaryOp::Mul, &a, &b).unwrap();
    let loss = sum_all(&mut second, &ab);
    assert_eq!(
        dev.to_vec(&second.grad(&loss, &["b"]).unwrap()[0]),
        vec![1.0, 2.0]
    );
    let only_a = second.unary(UnaryOp::Exp, &a).unwrap();
    assert!(!only_a.is_recorded());
    let loss = sum_all(&mut first, &a);
    assert!(matches!(
        second.grad(&loss, &["b"]),
        Err(GradError::Unrecorded)
    ));
}

#[test]
fn a_tape_can_move_to_another_thread() {
    fn send<T: Send>(_: &T) {}
    let tape = Tape::new(Device::cpu());
    send(&tape);
    let handle = std::thread::spawn(move || tape.saved_bytes());
    assert_eq!(handle.join().unwrap(), 0);
}

// ---------------------------------------------------------------------------
// The N-D ops.

/// A constant i64 tensor on the tape's device.
fn ids(t: &Tape, shape: &[usize], values: &[i64]) -> Result<Var, TensorError> {
    Ok(Var::constant(
        t.device().from_i64(&dims(shape), values.to_vec())?,
    ))
}

/// Panics unless every element of `x` is at least `gap` from each of `kinks`
/// (central differences see a kink as a wrong slope).
fn away_from(x: &T, kinks: &[f64], gap: f64) {
    for &v in &x.data {
        for &k in kinks {
            assert!(
                (v - k).abs() > gap,
                "an input is within {gap} of a kink at {k}; pick other data"
            );
        }
    }
}

fn nd_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let w = |s: &[usize]| watched(s, Data::Any);

    for (shape, axes) in [
        (vec![2usize, 3, 4], vec![2u32, 0, 1]),
        (vec![2, 3, 4], vec![1, 2, 0]),
        (vec![2, 1, 3], vec![0, 2, 1]),
        (vec![5], vec![0]),
    ] {
        let a2: Vec<usize> = axes.iter().map(|&x| x as usize).collect();
        v.push(case(
            format!("permute {shape:?} by {axes:?}"),
            vec![w(&shape)],
            move |t, x| t.permute(&x[0], &axes),
            move |x| nd::permute(&x[0], &a2),
        ));
    }
    for (shape, axis, start, end, step) in [
        (vec![5usize, 4], 0usize, 1usize, 5usize, 2usize),
        (vec![5, 4], 1, 0, 4, 3),
        (vec![2, 3, 4], 2, 1, 3, 1),
        (vec![6], 0, 5, 6, 1),
        (vec![3, 4], 1, 2, 2, 1),
    ] {
        v.push(case(
            format!("slice {start}..{end} step {step} of {shape:?} along {axis}"),
            vec![w(&shape)],
            move |t, x| t.slice(&x[0], axis as u32, start as u32, end as u32, step as u32),
            move |x| nd::slice(&x[0], axis, start, end, step),
        ));
    }
    for (shapes, axis) in [
        (vec![vec![2usize, 1], vec![2, 3], vec![2, 2]], 1usize),
        (vec![vec![1, 3], vec![2, 3], vec![1, 3]], 0),
        (vec![vec![2, 2, 1], vec![2, 2, 3]], 2),
    ] {
        let n = shapes.len();
        let inputs = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Input {
                shape: s.clone(),
                data: Data::Any,
                watched: i != 1,
            })
            .collect();
        v.push(case(
            format!("concat of {shapes:?} along {axis} (the middle one constant)"),
            inputs,
            move |t, x| t.concat_many(&x.iter().take(n).collect::<Vec<_>>(), axis as u32),
            move |x| nd::concat(&x.iter().collect::<Vec<_>>(), axis),
        ));
    }
    v.push(case(
        "concat of a tensor with itself three times along 0",
        vec![w(&[2, 2])],
        |t, x| t.concat_many(&[&x[0], &x[0], &x[0]], 0),
        |x| nd::concat(&[&x[0], &x[0], &x[0]], 0),
    ));
    for (shape, pads) in [
        (vec![2usize, 3], vec![[1usize, 0], [2, 1]]),
        (vec![4], vec![[0, 3]]),
        (vec![2, 1, 2], vec![[0, 0], [1, 1], [0, 2]]),
    ] {
        let p32: Vec<[u32; 2]> = pads.iter().map(|p| [p[0] as u32, p[1] as u32]).collect();
        v.push(case(
            format!("pad {shape:?} by {pads:?}"),
            vec![w(&shape)],
            move |t, x| t.pad(&x[0], &p32, 0.5),
            move |x| nd::pad(&x[0], &pads, 0.5),
        ));
    }
    for (from, to) in [
        (vec![3usize], vec![2usize, 3]),
        (vec![2, 1], vec![2, 2, 3]),
        (vec![1, 1], vec![3, 2]),
    ] {
        let t32 = dims(&to);
        v.push(case(
            format!("broadcast {from:?} to {to:?}"),
            vec![w(&from)],
            move |t, x| t.broadcast_to(&x[0], &t32),
            move |x| nd::broadcast_to(&x[0], &to),
        ));
    }
    v.push(case(
        "flatten, unsqueeze and squeeze",
        vec![w(&[2, 3, 1])],
        |t, x| {
            let f = t.flatten(&x[0], 0, 1)?;
            let u = t.unsqueeze(&f, 0)?;
            let s = t.squeeze(&u, 2)?;
            t.binary(BinaryOp::Mul, &s, &s)
        },
        |x| {
            let f = T::new(&[1, 6], x[0].data.clone());
            r_binary(BinaryOp::Mul, &f, &f)
        },
    ));

    for (shape, axis, idx, idx_shape) in [
        (vec![4usize, 3], 0usize, vec![3i64, 0, 3], vec![3usize]),
        (vec![2, 5], 1, vec![4, 0, 4, 4], vec![2, 2]),
        (vec![3, 2, 2], 2, vec![1], vec![1]),
        (vec![3, 2], 0, vec![], vec![0]),
    ] {
        let (i2, s2) = (idx.clone(), idx_shape.clone());
        v.push(case(
            format!("index-select {idx:?} of {shape:?} along {axis}"),
            vec![w(&shape)],
            move |t, x| {
                let i = ids(t, &idx_shape, &idx)?;
                t.index_select(&x[0], axis as u32, &i)
            },
            move |x| nd::index_select(&x[0], axis, &i2, &s2),
        ));
    }
    v.push(case(
        "embedding [5, 3] at [[1, 4], [1, 0]]",
        vec![w(&[5, 3])],
        |t, x| {
            let i = ids(t, &[2, 2], &[1, 4, 1, 0])?;
            t.embedding(&x[0], &i)
        },
        |x| nd::index_select(&x[0], 0, &[1, 4, 1, 0], &[2, 2]),
    ));
    for (shape, axis, idx, idx_shape) in [
        (
            vec![3usize, 4],
            1usize,
            vec![3i64, 0, 0, 2, 1, 1],
            vec![3usize, 2],
        ),
        (vec![3, 4], 0, vec![2, 0, 2, 2, 1, 1, 0, 2], vec![2, 4]),
        (vec![2, 3, 2], 2, vec![1, 0, 1, 1, 0, 0], vec![2, 3, 1]),
        (vec![2, 3], 1, vec![0, 2, 2, 1, 1, 1, 0, 0], vec![2, 4]),
    ] {
        let (i2, s2) = (idx.clone(), idx_shape.clone());
        v.push(case(
            format!("gather {idx:?} of {shape:?} along {axis}"),
            vec![w(&shape)],
            move |t, x| {
                let i = ids(t, &idx_shape, &idx)?;
                t.gather(&x[0], axis as u32, &i)
            },
            move |x| nd::gather(&x[0], axis, &i2, &s2),
        ));
    }
    v.push(case(
        "scatter-add of [3, 2] into [3, 4] along 1",
        vec![w(&[3, 2])],
        |t, x| {
            let i = ids(t, &[3, 2], &[3, 0, 0, 0, 1, 3])?;
            t.scatter_add(&[3, 4], 1, &i, &x[0])
        },
        |x| nd::scatter_add(&[3, 4], 1, &[3, 0, 0, 0, 1, 3], &x[0]),
    ));
    v.push(case(
        "index-add of [3, 2] into [4, 2] along 0",
        vec![w(&[3, 2])],
        |t, x| {
            let i = ids(t, &[3], &[3, 0, 3])?;
            t.index_add(&[4, 2], 0, &i, &x[0])
        },
        |x| nd::index_add(&[4, 2], 0, &[3, 0, 3], &x[0]),
    ));

    for (sa, ta, sb, tb) in [
        (vec![2usize, 3, 4], false, vec![4usize, 5], false),
        (vec![3, 1, 2, 3], false, vec![2, 3, 2], false),
        (vec![1, 2, 3], false, vec![4, 3, 2], false),
        (vec![2, 4, 3], true, vec![2, 4, 5], false),
        (vec![3, 2], false, vec![4, 2], true),
        (vec![2, 3, 2], true, vec![1, 4, 3], true),
        (vec![2, 1, 3], false, vec![2, 3, 1], false),
    ] {
        v.push(case(
            format!("matmul {sa:?} (transposed {ta}) x {sb:?} (transposed {tb})"),
            vec![w(&sa), w(&sb)],
            move |t, x| t.matmul_transposed(&x[0], ta, &x[1], tb),
            move |x| nd::matmul(&x[0], ta, &x[1], tb),
        ));
    }
    v.push(case(
        "batched matmul of constant data by a watched broadcast weight",
        vec![constant(&[2, 3, 4], Data::Any), w(&[4, 2])],
        |t, x| t.matmul(&x[0], &x[1]),
        |x| nd::matmul(&x[0], false, &x[1], false),
    ));

    v.push(case(
        "clamp to -0.7..=0.9",
        vec![w(&[3, 4])],
        |t, x| t.clamp(&x[0], -0.7, 0.9),
        |x| {
            away_from(&x[0], &[-0.7, 0.9], 0.002);
            nd::map(&x[0], |v| v.clamp(-0.7, 0.9))
        },
    ));
    v.push(case(
        "where [2, 1] ? [3] : [2, 3]",
        vec![w(&[3]), w(&[2, 3])],
        |t, x| {
            let c = Var::constant(t.device().from_vec(&[2, 1], vec![1.0, 0.0])?);
            t.where_(&c, &x[0], &x[1])
        },
        |x| nd::select(&T::new(&[2, 1], vec![1.0, 0.0]), &x[0], &x[1]),
    ));
    v.push(case(
        "where with a per-element condition and a scalar",
        vec![w(&[2, 3]), w(&[])],
        |t, x| {
            let c = Var::constant(t.device().from_vec(&[2, 3], vec![1., 0., 0., 1., 1., 0.])?);
            t.where_(&c, &x[1], &x[0])
        },
        |x| nd::select(&T::new(&[2, 3], vec![1., 0., 0., 1., 1., 0.]), &x[1], &x[0]),
    ));
    v.push(case(
        "masked fill of the upper triangle",
        vec![w(&[3, 3])],
        |t, x| {
            let m = vec![0., 1., 1., 0., 0., 1., 0., 0., 0.];
            let mask = Var::constant(t.device().from_vec(&[3, 3], m)?);
            let f = t.masked_fill(&x[0], &mask, -3.0)?;
            t.softmax(&f, 1, false)
        },
        |x| {
            let m = T::new(&[3, 3], vec![0., 1., 1., 0., 0., 1., 0., 0., 0.]);
            let f = nd::select(&m, &T::new(&[], vec![-3.0]), &x[0]);
            r_softmax(&f, 1, false)
        },
    ));
    for (shape, axis) in [(vec![3usize, 4], 0usize), (vec![3, 4], 1), (vec![5], 0)] {
        for reverse in [false, true] {
            v.push(case(
                format!("cumsum of {shape:?} along {axis} (reverse {reverse})"),
                vec![w(&shape)],
                move |t, x| t.cumsum(&x[0], axis as u32, reverse),
                move |x| nd::cumsum(&x[0], axis, reverse),
            ));
        }
    }
    v.push(case(
        "dropout 0.4 with seed 9",
        vec![w(&[4, 5])],
        |t, x| t.dropout(&x[0], 0.4, 9),
        |x| {
            let scale = f64::from(1.0f32 / (1.0 - 0.4f32));
            let mut out = x[0].clone();
            for (i, v) in out.data.iter_mut().enumerate() {
                if tensorlet_gpu::rng::unit(9, 2 * i as u32) < 0.4 {
                    *v = 0.0;
                } else {
                    *v *= scale;
                }
            }
            out
        },
    ));

    for op in [
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Silu,
        UnaryOp::Softplus,
    ] {
        for shape in [vec![3usize, 4], vec![1]] {
            v.push(case(
                format!("{op:?} {shape:?}"),
                vec![w(&shape)],
                move |t, x| t.unary(op, &x[0]),
                move |x| r_unary(op, &x[0]),
            ));
        }
    }
    for (op, value, data) in [
        (ScalarOp::Pow, 2.0f32, Data::Any),
        (ScalarOp::Pow, 3.0, Data::Any),
        (ScalarOp::Pow, 0.5, Data::Positive),
        (ScalarOp::Pow, -1.5, Data::Positive),
        (ScalarOp::Max, 0.3, Data::Any),
        (ScalarOp::Min, -0.2, Data::Any),
        (ScalarOp::LeakyRelu, 0.1, Data::AwayFromZero),
    ] {
        v.push(case(
            format!("scalar {op:?} {value}"),
            vec![watched(&[3, 4], data)],
            move |t, x| t.scalar(op, &x[0], value),
            move |x| {
                if let ScalarOp::Max | ScalarOp::Min = op {
                    away_from(&x[0], &[f64::from(value)], 0.002);
                }
                r_scalar(op, &x[0], value)
            },
        ));
    }
    let pairs: [(&[usize], &[usize]); 4] = [
        (&[3, 4], &[3, 4]),
        (&[3, 1, 4], &[5, 1]),
        (&[2, 3], &[3]),
        (&[], &[2, 2]),
    ];
    for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
        for (sa, sb) in pairs {
            v.push(case(
                format!("{op:?} {sa:?} {sb:?}"),
                vec![watched(sa, Data::Distinct), watched(sb, Data::AwayFromZero)],
                move |t, x| t.binary(op, &x[0], &x[1]),
                move |x| {
                    let gaps = nd::zip(&x[0], &x[1], |a, b| a - b);
                    away_from(&gaps, &[0.0], 0.002);
                    r_binary(op, &x[0], &x[1])
                },
            ));
        }
    }
    for (sa, sb) in pairs {
        v.push(case(
            format!("Pow {sa:?} {sb:?}"),
            vec![watched(sa, Data::Positive), watched(sb, Data::Any)],
            move |t, x| t.binary(BinaryOp::Pow, &x[0], &x[1]),
            move |x| r_binary(BinaryOp::Pow, &x[0], &x[1]),
        ));
    }

    let conv = |stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups| nd::Conv {
        stride,
        padding,
        dilation,
        groups,
    };
    for (xs, ws, p, bias) in [
        (
            vec![2usize, 3, 5, 5],
            vec![4usize, 3, 3, 3],
            conv([1, 1], [0, 0], [1, 1], 1),
            true,
        ),
        (
            vec![1, 2, 5, 6],
            vec![3, 2, 3, 3],
            conv([2, 2], [1, 1], [1, 1], 1),
            false,
        ),
        (
            vec![1, 2, 6, 6],
            vec![2, 2, 3, 2],
            conv([1, 1], [2, 1], [2, 2], 1),
            true,
        ),
        (
            vec![1, 3, 4, 4],
            vec![6, 1, 2, 2],
            conv([1, 1], [0, 0], [1, 1], 3),
            true,
        ),
        (
            vec![2, 4, 5, 4],
            vec![2, 2, 3, 2],
            conv([2, 1], [0, 1], [1, 1], 2),
            false,
        ),
    ] {
        let o = ws[0];
        let mut inputs = vec![w(&xs), w(&ws)];
        if bias {
            inputs.push(w(&[o]));
        }
        let p2 = Conv2d {
            stride: p.stride.map(|s| s as u32),
            padding: p.padding.map(|s| s as u32),
            dilation: p.dilation.map(|s| s as u32),
            groups: p.groups as u32,
        };
        v.push(case(
            format!("conv2d {xs:?} with {ws:?}, {p:?}, bias {bias}"),
            inputs,
            move |t, x| t.conv2d(&x[0], &x[1], x.get(2), &p2),
            move |x| nd::conv2d(&x[0], &x[1], x.get(2), p),
        ));
    }
    v.push(case(
        "conv2d of constant images by watched weights",
        vec![constant(&[2, 1, 4, 4], Data::Any), w(&[2, 1, 3, 3])],
        |t, x| t.conv2d(&x[0], &x[1], None, &Conv2d::default()),
        move |x| nd::conv2d(&x[0], &x[1], None, conv([1, 1], [0, 0], [1, 1], 1)),
    ));
    for (xs, ws, p) in [
        (
            vec![2usize, 3, 7],
            vec![2usize, 3, 3],
            Conv1d {
                stride: 2,
                padding: 1,
                ..Conv1d::default()
            },
        ),
        (
            vec![1, 4, 6],
            vec![4, 2, 2],
            Conv1d {
                dilation: 2,
                groups: 2,
                ..Conv1d::default()
            },
        ),
    ] {
        let o = ws[0];
        v.push(case(
            format!("conv1d {xs:?} with {ws:?}, {p:?}"),
            vec![w(&xs), w(&ws), w(&[o])],
            move |t, x| t.conv1d(&x[0], &x[1], Some(&x[2]), &p),
            move |x| {
                let (n, c, l) = (x[0].shape[0], x[0].shape[1], x[0].shape[2]);
                let x4 = T::new(&[n, c, 1, l], x[0].data.clone());
                let (wo, wc, wk) = (x[1].shape[0], x[1].shape[1], x[1].shape[2]);
                let w4 = T::new(&[wo, wc, 1, wk], x[1].data.clone());
                let q = nd::Conv {
                    stride: [1, p.stride as usize],
                    padding: [0, p.padding as usize],
                    dilation: [1, p.dilation as usize],
                    groups: p.groups as usize,
                };
                let y = nd::conv2d(&x4, &w4, Some(&x[2]), q);
                let lo = y.shape[3];
                T::new(&[n, wo, lo], y.data)
            },
        ));
    }
    for (xs, k, s, p) in [
        (vec![2usize, 2, 5, 5], [2usize, 2], [2usize, 2], [0usize, 0]),
        (vec![1, 2, 5, 5], [3, 3], [2, 2], [1, 1]),
        (vec![1, 1, 4, 6], [2, 3], [1, 2], [1, 0]),
    ] {
        let pool = Pool2d {
            kernel: k.map(|v| v as u32),
            stride: s.map(|v| v as u32),
            padding: p.map(|v| v as u32),
        };
        v.push(case(
            format!("max-pool2d {xs:?}, kernel {k:?}, stride {s:?}, padding {p:?}"),
            vec![watched(&xs, Data::Distinct)],
            move |t, x| t.max_pool2d(&x[0], &pool),
            move |x| nd::max_pool2d(&x[0], k, s, p, 0.01),
        ));
        v.push(case(
            format!("avg-pool2d {xs:?}, kernel {k:?}, stride {s:?}, padding {p:?}"),
            vec![w(&xs)],
            move |t, x| t.avg_pool2d(&x[0], &pool),
            move |x| nd::avg_pool2d(&x[0], k, s, p),
        ));
    }
    v.push(case(
        "global average pooling of [2, 3, 2, 3]",
        vec![w(&[2, 3, 2, 3])],
        |t, x| t.global_avg_pool(&x[0]),
        |x| nd::global_avg_pool(&x[0]),
    ));

    for (shape, k, affine) in [
        (vec![4usize, 5], 1usize, true),
        (vec![2, 3, 4], 2, true),
        (vec![3, 4], 1, false),
        (vec![2, 1, 3], 1, true),
    ] {
        let tail = shape[shape.len() - k..].to_vec();
        let mut inputs = vec![w(&shape)];
        if affine {
            inputs.extend([w(&tail), w(&tail)]);
        }
        v.push(case(
            format!("layer-norm of {shape:?} over {k} dims, affine {affine}"),
            inputs,
            move |t, x| t.layer_norm(&x[0], k as u32, x.get(1), x.get(2), 1e-5),
            move |x| nd::layer_norm(&x[0], k, x.get(1), x.get(2), 1e-5),
        ));
    }
    for (shape, affine) in [
        (vec![4usize, 3], true),
        (vec![2, 3, 2, 2], true),
        (vec![3, 2, 5], false),
    ] {
        let c = shape[1];
        let mut inputs = vec![w(&shape)];
        if affine {
            inputs.extend([w(&[c]), w(&[c])]);
        }
        v.push(case(
            format!("batch-norm (training) of {shape:?}, affine {affine}"),
            inputs,
            move |t, x| {
                let stats = NormStats::new(t.device(), c as u32)?;
                let (y, _) = t.batch_norm(&x[0], x.get(1), x.get(2), &stats, true, 0.1, 1e-5)?;
                Ok(y)
            },
            move |x| nd::batch_norm_train(&x[0], x.get(1), x.get(2), 1e-5),
        ));
    }
    v.push(case(
        "batch-norm (evaluation) of [2, 2, 3]",
        vec![w(&[2, 2, 3]), w(&[2]), w(&[2])],
        |t, x| {
            let dev = t.device().clone();
            let stats = NormStats {
                mean: dev.from_vec(&[2], vec![0.5, -1.0])?,
                var: dev.from_vec(&[2], vec![2.0, 0.25])?,
            };
            let (y, _) = t.batch_norm(&x[0], Some(&x[1]), Some(&x[2]), &stats, false, 0.1, 1e-5)?;
            Ok(y)
        },
        |x| {
            let mean = T::new(&[2, 1], vec![0.5, -1.0]);
            let inv = T::new(
                &[2, 1],
                vec![1.0 / (2.0f64 + 1e-5).sqrt(), 1.0 / (0.25f64 + 1e-5).sqrt()],
            );
            let y = nd::zip(&nd::zip(&x[0], &mean, |a, b| a - b), &inv, |a, b| a * b);
            let w = T::new(&[2, 1], x[1].data.clone());
            let b = T::new(&[2, 1], x[2].data.clone());
            nd::zip(&nd::zip(&y, &w, |a, b| a * b), &b, |a, b| a + b)
        },
    ));

    v.extend(loss_cases());
    v
}

fn loss_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let w = |s: &[usize]| watched(s, Data::Any);
    let weights = [1.0f32, 2.0, 0.5, 1.5];
    let wf64: Vec<f64> = weights.iter().map(|&x| f64::from(x)).collect();
    let labels = vec![1i64, 3, 0, 3, 2];
    for (use_weights, smoothing, ignore, reduce) in [
        (false, 0.0f32, None, nd::Reduce::Mean),
        (true, 0.0, None, nd::Reduce::Mean),
        (true, 0.2, None, nd::Reduce::Mean),
        (false, 0.1, Some(3i64), nd::Reduce::Mean),
        (true, 0.3, Some(0), nd::Reduce::Sum),
        (false, 0.0, None, nd::Reduce::None),
    ] {
        let (l1, l2, wf) = (labels.clone(), labels.clone(), wf64.clone());
        let reduction = match reduce {
            nd::Reduce::Mean => Reduction::Mean,
            nd::Reduce::Sum => Reduction::Sum,
            nd::Reduce::None => Reduction::None,
        };
        v.push(case(
            format!(
                "cross-entropy of [5, 4]: weights {use_weights}, smoothing {smoothing}, \
                 ignore {ignore:?}, {reduce:?}"
            ),
            vec![w(&[5, 4])],
            move |t, x| {
                let target = ids(t, &[5], &l1)?;
                let wt = t.device().from_vec(&[4], weights.to_vec())?;
                let opts = CrossEntropy {
                    weights: use_weights.then_some(&wt),
                    label_smoothing: smoothing,
                    ignore_index: ignore,
                    reduction,
                    ..CrossEntropy::default()
                };
                t.cross_entropy_with(&x[0], &target, &opts)
            },
            move |x| {
                nd::cross_entropy(
                    &x[0],
                    1,
                    &l2,
                    use_weights.then_some(&wf[..]),
                    f64::from(smoothing),
                    ignore,
                    reduce,
                )
            },
        ));
    }
    v.push(case(
        "cross-entropy with classes along axis 1 of [2, 3, 4]",
        vec![w(&[2, 3, 4])],
        |t, x| {
            let target = ids(t, &[2, 4], &[0, 2, 1, 1, 2, 2, 0, 1])?;
            t.cross_entropy_with(&x[0], &target, &CrossEntropy::default())
        },
        |x| {
            nd::cross_entropy(
                &x[0],
                1,
                &[0, 2, 1, 1, 2, 2, 0, 1],
                None,
                0.0,
                None,
                nd::Reduce::Mean,
            )
        },
    ));
    v.push(case(
        "cross-entropy against watched class probabilities, smoothing 0.1",
        vec![w(&[3, 4]), watched(&[3, 4], Data::Positive)],
        |t, x| {
            let opts = CrossEntropy {
                label_smoothing: 0.1,
                ..CrossEntropy::default()
            };
            t.cross_entropy_with(&x[0], &x[1], &opts)
        },
        |x| nd::cross_entropy_soft(&x[0], 1, &x[1], 0.1),
    ));
    for (sp, st, reduce) in [
        (vec![3usize, 4], vec![3usize, 4], nd::Reduce::Mean),
        (vec![2, 3], vec![3], nd::Reduce::Sum),
        (vec![4], vec![4], nd::Reduce::None),
    ] {
        let reduction = match reduce {
            nd::Reduce::Mean => Reduction::Mean,
            nd::Reduce::Sum => Reduction::Sum,
            nd::Reduce::None => Reduction::None,
        };
        v.push(case(
            format!("bce-with-logits {sp:?} against {st:?}, {reduce:?}"),
            vec![w(&sp), watched(&st, Data::Positive)],
            move |t, x| t.bce_with_logits(&x[0], &x[1], reduction),
            move |x| {
                let l = nd::zip(&x[0], &x[1], |z, y| (1.0 + z.exp()).ln() - z * y);
                nd::reduce_loss(l, reduce)
            },
        ));
        v.push(case(
            format!("mse {sp:?} against {st:?}, {reduce:?}"),
            vec![w(&sp), w(&st)],
            move |t, x| t.mse_loss(&x[0], &x[1], reduction),
            move |x| nd::reduce_loss(nd::zip(&x[0], &x[1], |p, q| (p - q) * (p - q)), reduce),
        ));
        v.push(case(
            format!("l1 {sp:?} against {st:?}, {reduce:?}"),
            vec![w(&sp), w(&st)],
            move |t, x| t.l1_loss(&x[0], &x[1], reduction),
            move |x| {
                let d = nd::zip(&x[0], &x[1], |p, q| p - q);
                away_from(&d, &[0.0], 0.002);
                nd::reduce_loss(nd::map(&d, f64::abs), reduce)
            },
        ));
        v.push(case(
            format!("huber (delta 0.8) {sp:?} against {st:?}, {reduce:?}"),
            vec![w(&sp), w(&st)],
            move |t, x| t.huber_loss(&x[0], &x[1], 0.8, reduction),
            move |x| {
                let l = nd::zip(&x[0], &x[1], |p, q| {
                    let a = (p - q).abs();
                    if a <= 0.8 {
                        0.5 * a * a
                    } else {
                        0.8 * (a - 0.4)
                    }
                });
                nd::reduce_loss(l, reduce)
            },
        ));
    }
    v
}

/// A 2-convolution CNN on `n` random 1×8×8 images with mean cross-entropy:
/// conv 3×3 (4 channels, padding 1) → relu → max-pool 2 → conv 3×3 (6
/// channels) → relu → global average → linear (3 classes).
fn cnn_case(n: usize) -> Case {
    cnn_case_seeded(n, CNN_SEED)
}

/// Data for `cnn_case(3)` with every pre-activation away from relu's kink
/// and every pooling window's maximum apart from the rest (the reference
/// checks both, and says so if another seed is needed).
const CNN_SEED: u64 = 0;

fn cnn_case_seeded(n: usize, seed: u64) -> Case {
    let labels: Vec<i64> = (0..n).map(|i| ((i * 2 + 1) % 3) as i64).collect();
    let l = labels.clone();
    let mut c = case(
        format!("cnn on {n} 1x8x8 images with cross-entropy"),
        vec![
            constant(&[n, 1, 8, 8], Data::Any),
            watched(&[4, 1, 3, 3], Data::Any),
            watched(&[4], Data::Any),
            watched(&[6, 4, 3, 3], Data::Any),
            watched(&[6], Data::Any),
            watched(&[6, 3], Data::Any),
            watched(&[3], Data::Any),
        ],
        move |t, x| {
            let pad = Conv2d {
                padding: [1, 1],
                ..Conv2d::default()
            };
            let h = t.conv2d(&x[0], &x[1], Some(&x[2]), &pad)?;
            let h = t.unary(UnaryOp::Relu, &h)?;
            let h = t.max_pool2d(&h, &Pool2d::new([2, 2]))?;
            let h = t.conv2d(&h, &x[3], Some(&x[4]), &Conv2d::default())?;
            let h = t.unary(UnaryOp::Relu, &h)?;
            let h = t.global_avg_pool(&h)?;
            let z = t.matmul(&h, &x[5])?;
            let z = t.binary(BinaryOp::Add, &z, &x[6])?;
            let target = ids(t, &[n], &l)?;
            t.cross_entropy_with(&z, &target, &CrossEntropy::default())
        },
        move |x| {
            let one = nd::Conv {
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
                groups: 1,
            };
            // A parameter moved by h = 1e-3 moves the first layer's
            // pre-activations by at most 2e-3 (inputs are below 2), and the
            // second's by a sum of such moves.
            let h = nd::conv2d(
                &x[0],
                &x[1],
                Some(&x[2]),
                nd::Conv {
                    padding: [1, 1],
                    ..one
                },
            );
            away_from(&h, &[0.0], 0.003);
            let h = r_unary(UnaryOp::Relu, &h);
            let h = nd::max_pool2d(&h, [2, 2], [2, 2], [0, 0], 0.005);
            let h = nd::conv2d(&h, &x[3], Some(&x[4]), one);
            away_from(&h, &[0.0], 0.02);
            let h = r_unary(UnaryOp::Relu, &h);
            let h = nd::global_avg_pool(&h);
            let z = r_binary(BinaryOp::Add, &r_matmul(&h, &x[5]), &x[6]);
            nd::cross_entropy(&z, 1, &labels, None, 0.0, None, nd::Reduce::Mean)
        },
    );
    c.seed = Some(seed);
    c
}

#[test]
fn cnn_gradients_are_bit_identical_run_to_run() {
    let dev = Device::cpu();
    let case = cnn_case(3);
    let data = draw(&case, CNN_SEED);
    let bits = |grads: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
        grads
            .into_iter()
            .map(|g| g.into_iter().map(f32::to_bits).collect())
            .collect()
    };
    let first = bits(tape_grads(&dev, &case, &data, CNN_SEED));
    let second = bits(tape_grads(&dev, &case, &data, CNN_SEED));
    assert_eq!(first, second);
    assert!(first.iter().all(|g| g.iter().any(|&b| b != 0)));
}

#[test]
fn integers_have_no_gradient() {
    let dev = Device::cpu();
    let mut tape = Tape::new(dev.clone());
    let ids = dev.from_i64(&[2], vec![1, 0]).unwrap();
    let err = tape.leaf("ids", ids.clone()).unwrap_err();
    assert!(matches!(&err, GradError::IntegerLeaf { name, .. } if name == "ids"));
    assert_eq!(
        err.to_string(),
        "leaf: `ids` is an i64 tensor of shape [2]; integer tensors (indices, labels) have no \
         gradient, so they cannot be watched"
    );

    // A watched value that reaches the loss only as indices (through to-i64).
    let x = tape.leaf("x", t(&dev, &[2], &[1.0, 0.0])).unwrap();
    let table = tape
        .leaf("table", t(&dev, &[3, 2], &[1., 2., 3., 4., 5., 6.]))
        .unwrap();
    let idx = tape.to_i64(&x).unwrap();
    assert!(idx.is_recorded());
    let rows = tape.embedding(&table, &idx).unwrap();
    let loss = sum_all(&mut tape, &rows);
    let err = tape.grad(&loss, &["table", "x"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "grad: `x` reaches the loss only through to-i64, which has no gradient"
    );
    // The table's gradient counts the rows picked: rows 1 and 0 once each.
    let g = tape.grad(&loss, &["table"]).unwrap();
    assert_eq!(dev.to_vec(&g[0]), vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);

    // Through a comparison and back to f32: still no gradient.
    let y = tape.leaf("y", t(&dev, &[3], &[0.5, -1.0, 2.0])).unwrap();
    let zero = Var::constant(t(&dev, &[], &[0.0]));
    let mask = tape.binary(BinaryOp::Gt, &y, &zero).unwrap();
    let loss = sum_all(&mut tape, &mask);
    assert_eq!(
        tape.grad(&loss, &["y"]).unwrap_err().to_string(),
        "grad: `y` reaches the loss only through gt, which has no gradient"
    );
    let back = tape.to_f32(&idx);
    let loss = sum_all(&mut tape, &back);
    assert!(matches!(
        tape.grad(&loss, &["x"]).unwrap_err(),
        GradError::NonDifferentiable { op: "to-i64", .. }
    ));
    // Arithmetic on an integer var is the device's error.
    assert!(matches!(
        tape.unary(UnaryOp::Exp, &idx).unwrap_err(),
        TensorError::DType { op: "exp", .. }
    ));
}
