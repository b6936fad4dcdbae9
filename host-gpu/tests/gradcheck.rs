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

use std::sync::Arc;

use tensorlet_gpu::autodiff::{GradError, Tape, Var};
use tensorlet_gpu::{BinaryOp, Device, ReduceOp, ScalarOp, Storage, Tensor, TensorError, UnaryOp};

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
    })
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
            move |t, x| Ok(t.scalar(op, &x[0], value)),
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
                move |t, x| Ok(t.unary(op, &x[0])),
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
            let m = t.unary(UnaryOp::ReluMask, &x[0]);
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
            let h = t.unary(UnaryOp::Relu, &z1);
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
            dev.to_vec(g).unwrap()
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
        let seed = 1000 + k as u64;
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
        let seed = 1000 + k as u64;
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
        dev.to_vec(&g[0]).unwrap(),
        vec![0.0, 0.5, 0.5, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
    );
    let mut tape = Tape::new(dev.clone());
    let x = tape
        .leaf("x", t(&dev, &[2, 3], &[1.0, 3.0, 4.0, 0.0, 5.0, 4.0]))
        .unwrap();
    let m = tape.reduce(ReduceOp::Min, &x, 0, true).unwrap();
    let loss = sum_all(&mut tape, &m);
    let g = tape.grad(&loss, &["x"]).unwrap();
    assert_eq!(
        dev.to_vec(&g[0]).unwrap(),
        vec![0.0, 1.0, 0.5, 1.0, 0.0, 0.5]
    );
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

    let y = tape.unary(UnaryOp::Tanh, &w);
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
    let unrecorded = tape.unary(UnaryOp::Exp, &c);
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
            let labels = tape.scalar(ScalarOp::Mul, x, 0.0);
            tape.one_hot(&labels, 3).unwrap()
        }),
        ("relu-mask", |tape, x| tape.unary(UnaryOp::ReluMask, x)),
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
        let want: f32 = dev.to_vec(blocked.value()).unwrap().iter().sum();
        assert_eq!(dev.to_vec(&gy[0]).unwrap(), vec![want], "{op}");
    }

    // With a differentiable path as well, x gets that path's gradient.
    let mut tape = Tape::new(dev.clone());
    let x = tape
        .leaf("x", t(&dev, &[4], &[0.5, -1.0, 2.0, -3.0]))
        .unwrap();
    let mask = tape.unary(UnaryOp::ReluMask, &x);
    let masked = tape.binary(BinaryOp::Mul, &x, &mask).unwrap();
    let loss = sum_all(&mut tape, &masked);
    let g = tape.grad(&loss, &["x"]).unwrap();
    assert_eq!(dev.to_vec(&g[0]).unwrap(), vec![1.0, 0.0, 1.0, 0.0]);
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
    let l = dev.to_vec(loss.value()).unwrap()[0];
    assert!((l - 4f32.ln()).abs() < 1e-6, "{l}");
    let g = dev.to_vec(&tape.grad(&loss, &["z"]).unwrap()[0]).unwrap();
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
    let c = tape.unary(UnaryOp::Exp, &Var::constant(x.clone()));
    assert!(!c.is_recorded() && c.node().is_none());
    assert_eq!(tape.len(), before);
    // tanh keeps its output.
    let h = tape.unary(UnaryOp::Tanh, &y);
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
        dev.to_vec(&second.grad(&loss, &["b"]).unwrap()[0]).unwrap(),
        vec![1.0, 2.0]
    );
    let only_a = second.unary(UnaryOp::Exp, &a);
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
