//! The host-op sequencer: random programs of the ops of `tensorlet:ml/tensor`
//! (as the host runs them for a plugin: through the call's tape, on the CPU
//! device, with watched parameters and a gradient at the end) on tensors of
//! random shapes, each op checked against a float64 reference computed here
//! from the op's inputs. An op the reference finds ill-shaped must be a
//! `TensorError` (a `result` error for the plugin), one it accepts must
//! succeed with the reference's shape and, on finite inputs, its values
//! within float32 rounding; nothing may panic.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tensorlet_gpu::autodiff::{Tape, Var};
use tensorlet_gpu::{BinaryOp, Device, ReduceOp, ScalarOp, UnaryOp};

/// The most ops of one program.
const MAX_OPS: usize = 32;
/// The most elements an op may make (bigger ones are skipped, to keep
/// executions fast).
const MAX_ELEMENTS: usize = 1 << 14;
/// The most watched parameters.
const MAX_LEAVES: usize = 4;

/// A tensor as the reference sees it: dims and row-major f64 values.
#[derive(Clone, Debug)]
struct Host {
    dims: Vec<usize>,
    v: Vec<f64>,
}

impl Host {
    fn finite(&self) -> bool {
        self.v.iter().all(|x| x.is_finite())
    }
}

/// What the reference expects of an op: an error, or a result whose every
/// element `i` is within `tol[i]` of `v[i]`.
enum Want {
    Error,
    Value { out: Host, tol: Vec<f64> },
}

fn value(u: &mut Unstructured<'_>) -> Result<f32> {
    Ok(f32::from(u.arbitrary::<i8>()?) / 16.0)
}

fn dims(u: &mut Unstructured<'_>) -> Result<Vec<usize>> {
    let rank = u.int_in_range(0..=3)?;
    (0..rank).map(|_| u.int_in_range(0..=4)).collect()
}

fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// NumPy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |d: &[usize], i: usize| {
        let pad = n - d.len();
        if i < pad { 1 } else { d[i - pad] }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// The flat index into `dims` (right-aligned, size-1 dims broadcast) of
/// the output position `pos` of shape `out`.
fn source_index(out: &[usize], pos: &[usize], dims: &[usize]) -> usize {
    let pad = out.len() - dims.len();
    let mut idx = 0;
    for (i, &d) in dims.iter().enumerate() {
        let p = if d == 1 { 0 } else { pos[pad + i] };
        idx = idx * d + p;
    }
    idx
}

/// Every position of `dims`, in row-major order.
fn positions(dims: &[usize]) -> Vec<Vec<usize>> {
    let mut all = vec![vec![]];
    for &d in dims {
        all = all
            .into_iter()
            .flat_map(|p| {
                (0..d).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    all
}

/// Relative tolerance of one float32 op on values of magnitude `scale` (a
/// sum of terms whose magnitudes reach float32's range may overflow on its
/// way, so anything goes there).
fn rel(want: &[f64], scale: &[f64]) -> Vec<f64> {
    want.iter()
        .zip(scale)
        .map(|(w, s)| {
            if s + w.abs() > 1e37 {
                f64::INFINITY
            } else {
                1e-5 * (s + w.abs()) + 1e-6
            }
        })
        .collect()
}

fn binary_ref(op: BinaryOp, x: f64, y: f64) -> f64 {
    let mask = |b: bool| if b { 1.0 } else { 0.0 };
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Maximum => x.max(y),
        BinaryOp::Minimum => x.min(y),
        BinaryOp::Pow => x.powf(y),
        BinaryOp::Eq => mask(x == y),
        BinaryOp::Ne => mask(x != y),
        BinaryOp::Lt => mask(x < y),
        BinaryOp::Le => mask(x <= y),
        BinaryOp::Gt => mask(x > y),
        BinaryOp::Ge => mask(x >= y),
    }
}

fn unary_ref(op: UnaryOp, x: f64) -> f64 {
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
        UnaryOp::ReluMask => f64::from(u8::from(x > 0.0)),
        UnaryOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        other => unreachable!("{other:?} is not generated"),
    }
}

/// An op of a program, with the reference's verdict.
struct Machine {
    tape: Tape,
    regs: Vec<Var>,
    /// The watched parameters: name and dims.
    leaves: Vec<(String, Vec<usize>)>,
    trace: Vec<String>,
}

impl Machine {
    fn host(&self, v: &Var) -> Host {
        let t = v.value();
        let values = self
            .tape
            .device()
            .to_vec(t)
            .expect("the CPU device does not fail");
        Host {
            dims: t.shape().dims().to_vec(),
            v: values.into_iter().map(f64::from).collect(),
        }
    }

    fn pick(&self, u: &mut Unstructured<'_>) -> Result<usize> {
        u.choose_index(self.regs.len())
    }

    /// Checks `got` against `want`, keeps a result, and panics with the
    /// program so far on a disagreement.
    fn check(
        &mut self,
        what: String,
        inputs_finite: bool,
        want: Want,
        got: std::result::Result<Var, tensorlet_gpu::TensorError>,
    ) {
        self.trace.push(what);
        let fail = |why: String| -> ! {
            panic!("{why}\nprogram:\n  {}", self.trace.join("\n  "));
        };
        match (want, got) {
            (Want::Error, Err(e)) => {
                let text = e.to_string();
                if text.is_empty() {
                    fail("an empty error".into());
                }
            }
            (Want::Error, Ok(v)) => fail(format!(
                "accepted an op the reference refuses, giving shape {:?}",
                v.shape().dims()
            )),
            (Want::Value { .. }, Err(e)) => fail(format!("refused a valid op: {e}")),
            (Want::Value { out, tol }, Ok(v)) => {
                let got = self.host(&v);
                if got.dims != out.dims {
                    fail(format!("shape {:?}, reference {:?}", got.dims, out.dims));
                }
                if inputs_finite {
                    for (i, ((g, w), t)) in got.v.iter().zip(&out.v).zip(&tol).enumerate() {
                        let g = *g;
                        let ok = if t.is_infinite() {
                            true
                        } else if w.is_nan() {
                            g.is_nan()
                        } else if (*w as f32).is_infinite() {
                            g == f64::from(*w as f32) || g.abs() > 1e37
                        } else {
                            (g - w).abs() <= *t
                        };
                        if !ok {
                            fail(format!("element {i}: {g}, reference {w} (tolerance {t})"));
                        }
                    }
                }
                if self.regs.len() < 16 {
                    self.regs.push(v);
                } else {
                    self.regs[0] = v;
                }
            }
        }
    }

    fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let dev = self.tape.device().clone();
        match u.int_in_range(0..=15)? {
            // from-list, with a length that sometimes does not fit.
            0 => {
                let d = dims(u)?;
                let n = numel(&d) + usize::from(u.ratio(1, 8)?);
                let data = (0..n).map(|_| value(u)).collect::<Result<Vec<_>>>()?;
                let want = if data.len() == numel(&d) {
                    let out = Host {
                        dims: d.clone(),
                        v: data.iter().map(|&x| f64::from(x)).collect(),
                    };
                    Want::Value {
                        tol: vec![0.0; out.v.len()],
                        out,
                    }
                } else {
                    Want::Error
                };
                let dims32: Vec<u32> = d.iter().map(|&x| x as u32).collect();
                let got = dev.from_vec(&dims32, data).map(Var::constant);
                self.check(format!("from-list {d:?}"), true, want, got);
            }
            // from-list shaped after a register: the same shape, its last
            // two dims swapped (a matmul's right side) or another last dim
            // (a concat's other side).
            1 => {
                let like = self.host(&self.regs[self.pick(u)?]);
                let mut d = like.dims.clone();
                match u.int_in_range(0..=2)? {
                    0 => {}
                    1 if d.len() >= 2 => {
                        let r = d.len();
                        d[r - 2] = d[r - 1];
                        d[r - 1] = u.int_in_range(1..=4)?;
                    }
                    _ => {
                        if let Some(last) = d.last_mut() {
                            *last = u.int_in_range(0..=4)?;
                        }
                    }
                }
                if numel(&d) > MAX_ELEMENTS {
                    return Ok(());
                }
                let data = (0..numel(&d))
                    .map(|_| value(u))
                    .collect::<Result<Vec<_>>>()?;
                let dims32: Vec<u32> = d.iter().map(|&x| x as u32).collect();
                let out = Host {
                    dims: d.clone(),
                    v: data.iter().map(|&x| f64::from(x)).collect(),
                };
                let got = dev.from_vec(&dims32, data).map(Var::constant);
                let tol = vec![0.0; out.v.len()];
                self.check(
                    format!("from-list like {d:?}"),
                    true,
                    Want::Value { out, tol },
                    got,
                );
            }
            // Element-wise arithmetic and comparisons, broadcasting.
            2 => {
                let op = *u.choose(&[
                    BinaryOp::Add,
                    BinaryOp::Sub,
                    BinaryOp::Mul,
                    BinaryOp::Div,
                    BinaryOp::Maximum,
                    BinaryOp::Minimum,
                    BinaryOp::Pow,
                    BinaryOp::Eq,
                    BinaryOp::Lt,
                    BinaryOp::Ge,
                ])?;
                let (ia, ib) = (self.pick(u)?, self.pick(u)?);
                let (a, b) = (self.host(&self.regs[ia]), self.host(&self.regs[ib]));
                let want = match broadcast(&a.dims, &b.dims) {
                    None => Want::Error,
                    Some(out) if numel(&out) > MAX_ELEMENTS => return Ok(()),
                    Some(out) => {
                        let mut v = Vec::new();
                        let mut scale = Vec::new();
                        for pos in positions(&out) {
                            let x = a.v[source_index(&out, &pos, &a.dims)];
                            let y = b.v[source_index(&out, &pos, &b.dims)];
                            v.push(binary_ref(op, x, y));
                            scale.push(0.0);
                        }
                        let mut tol = rel(&v, &scale);
                        if op.is_comparison() {
                            tol.iter_mut().for_each(|t| *t = 0.0);
                        }
                        Want::Value {
                            out: Host { dims: out, v },
                            tol,
                        }
                    }
                };
                let finite = a.finite() && b.finite();
                let (va, vb) = (self.regs[ia].clone(), self.regs[ib].clone());
                let got = self.tape.binary(op, &va, &vb);
                self.check(format!("{} r{ia} r{ib}", op.name()), finite, want, got);
            }
            // Scalar arithmetic.
            3 => {
                let op =
                    *u.choose(&[ScalarOp::Add, ScalarOp::Mul, ScalarOp::Max, ScalarOp::Min])?;
                let s = value(u)?;
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let v: Vec<f64> =
                    a.v.iter()
                        .map(|&x| {
                            let y = f64::from(s);
                            match op {
                                ScalarOp::Add => x + y,
                                ScalarOp::Mul => x * y,
                                ScalarOp::Max => x.max(y),
                                _ => x.min(y),
                            }
                        })
                        .collect();
                let tol = rel(&v, &vec![0.0; v.len()]);
                let finite = a.finite();
                let want = Want::Value {
                    out: Host { dims: a.dims, v },
                    tol,
                };
                let va = self.regs[ia].clone();
                let got = self.tape.scalar(op, &va, s);
                self.check(format!("{} r{ia} {s}", op.name()), finite, want, got);
            }
            // Unary maps.
            4 => {
                let op = *u.choose(&[
                    UnaryOp::Relu,
                    UnaryOp::Sigmoid,
                    UnaryOp::Tanh,
                    UnaryOp::Exp,
                    UnaryOp::Log,
                    UnaryOp::Sqrt,
                    UnaryOp::Neg,
                    UnaryOp::Abs,
                    UnaryOp::Square,
                    UnaryOp::ReluMask,
                    UnaryOp::GeluTanh,
                    UnaryOp::Silu,
                    UnaryOp::Softplus,
                ])?;
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let v: Vec<f64> = a.v.iter().map(|&x| unary_ref(op, x)).collect();
                let tol = rel(&v, &vec![0.0; v.len()]);
                let finite = a.finite();
                let want = Want::Value {
                    out: Host { dims: a.dims, v },
                    tol,
                };
                let va = self.regs[ia].clone();
                let got = self.tape.unary(op, &va);
                self.check(format!("{op:?} r{ia}"), finite, want, got);
            }
            // Reductions along an axis.
            5 => {
                let op = *u.choose(&[
                    ReduceOp::Sum,
                    ReduceOp::Mean,
                    ReduceOp::Max,
                    ReduceOp::Min,
                    ReduceOp::ArgMax,
                ])?;
                let axis = u.int_in_range(0..=3u32)?;
                let keepdims = u.arbitrary::<bool>()?;
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let ax = axis as usize;
                let want = if ax >= a.dims.len() || (a.dims[ax] == 0 && op != ReduceOp::Sum) {
                    Want::Error
                } else {
                    let outer = numel(&a.dims[..ax]);
                    let len = a.dims[ax];
                    let inner = numel(&a.dims[ax + 1..]);
                    let (mut v, mut scale) = (Vec::new(), Vec::new());
                    for o in 0..outer {
                        for i in 0..inner {
                            let xs: Vec<f64> =
                                (0..len).map(|j| a.v[(o * len + j) * inner + i]).collect();
                            let abs: f64 = xs.iter().map(|x| x.abs()).sum();
                            let (r, s) = match op {
                                ReduceOp::Sum => (xs.iter().sum(), abs),
                                ReduceOp::Mean => (xs.iter().sum::<f64>() / len as f64, abs),
                                ReduceOp::Max => (xs.iter().copied().fold(f64::MIN, f64::max), 0.0),
                                ReduceOp::Min => (xs.iter().copied().fold(f64::MAX, f64::min), 0.0),
                                ReduceOp::ArgMax => {
                                    let mut best = 0;
                                    for j in 1..len {
                                        if xs[j] > xs[best] {
                                            best = j;
                                        }
                                    }
                                    (best as f64, 0.0)
                                }
                            };
                            v.push(r);
                            scale.push(s);
                        }
                    }
                    let mut out = a.dims.clone();
                    if keepdims {
                        out[ax] = 1;
                    } else {
                        out.remove(ax);
                    }
                    Want::Value {
                        tol: rel(&v, &scale),
                        out: Host { dims: out, v },
                    }
                };
                let finite = a.finite();
                let va = self.regs[ia].clone();
                let got = self.tape.reduce(op, &va, axis, keepdims);
                self.check(
                    format!("{op:?} r{ia} axis {axis} keep {keepdims}"),
                    finite,
                    want,
                    got,
                );
            }
            // Softmax and log-softmax.
            6 => {
                let axis = u.int_in_range(0..=3u32)?;
                let log = u.arbitrary::<bool>()?;
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let ax = axis as usize;
                let want = if ax >= a.dims.len() {
                    Want::Error
                } else {
                    let outer = numel(&a.dims[..ax]);
                    let len = a.dims[ax];
                    let inner = numel(&a.dims[ax + 1..]);
                    let mut v = vec![0.0; a.v.len()];
                    for o in 0..outer {
                        for i in 0..inner {
                            let at = |j: usize| (o * len + j) * inner + i;
                            let max = (0..len).map(|j| a.v[at(j)]).fold(f64::MIN, f64::max);
                            let sum: f64 = (0..len).map(|j| (a.v[at(j)] - max).exp()).sum();
                            for j in 0..len {
                                let x = a.v[at(j)] - max;
                                v[at(j)] = if log { x - sum.ln() } else { x.exp() / sum };
                            }
                        }
                    }
                    let tol = rel(&v, &vec![1.0; v.len()]);
                    Want::Value {
                        out: Host {
                            dims: a.dims.clone(),
                            v,
                        },
                        tol,
                    }
                };
                let finite = a.finite();
                let va = self.regs[ia].clone();
                let got = self.tape.softmax(&va, axis, log);
                self.check(
                    format!("softmax r{ia} axis {axis} log {log}"),
                    finite,
                    want,
                    got,
                );
            }
            // Matrix products, batched over broadcast leading dims.
            7 => {
                let (ia, ib) = (self.pick(u)?, self.pick(u)?);
                let (a, b) = (self.host(&self.regs[ia]), self.host(&self.regs[ib]));
                let (ra, rb) = (a.dims.len(), b.dims.len());
                let want = if ra < 2 || rb < 2 || a.dims[ra - 1] != b.dims[rb - 2] {
                    Want::Error
                } else {
                    match broadcast(&a.dims[..ra - 2], &b.dims[..rb - 2]) {
                        None => Want::Error,
                        Some(batch) => {
                            let (m, k, n) = (a.dims[ra - 2], a.dims[ra - 1], b.dims[rb - 1]);
                            let mut out = batch.clone();
                            out.extend([m, n]);
                            if numel(&out) > MAX_ELEMENTS {
                                return Ok(());
                            }
                            let (mut v, mut scale) = (Vec::new(), Vec::new());
                            for pos in positions(&batch) {
                                let sa = source_index(&batch, &pos, &a.dims[..ra - 2]) * m * k;
                                let sb = source_index(&batch, &pos, &b.dims[..rb - 2]) * k * n;
                                for i in 0..m {
                                    for j in 0..n {
                                        let (mut s, mut abs) = (0.0, 0.0);
                                        for l in 0..k {
                                            let p = a.v[sa + i * k + l] * b.v[sb + l * n + j];
                                            s += p;
                                            abs += p.abs();
                                        }
                                        v.push(s);
                                        scale.push(abs);
                                    }
                                }
                            }
                            Want::Value {
                                tol: rel(&v, &scale),
                                out: Host { dims: out, v },
                            }
                        }
                    }
                };
                let finite = a.finite() && b.finite();
                let (va, vb) = (self.regs[ia].clone(), self.regs[ib].clone());
                let got = self.tape.matmul(&va, &vb);
                self.check(format!("matmul r{ia} r{ib}"), finite, want, got);
            }
            // Transpose of a matrix.
            8 => {
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let want = match a.dims[..] {
                    [r, c] => {
                        let v = (0..c)
                            .flat_map(|j| (0..r).map(move |i| (i, j)))
                            .map(|(i, j)| a.v[i * c + j])
                            .collect::<Vec<_>>();
                        Want::Value {
                            tol: vec![0.0; v.len()],
                            out: Host {
                                dims: vec![c, r],
                                v,
                            },
                        }
                    }
                    _ => Want::Error,
                };
                let va = self.regs[ia].clone();
                let got = self.tape.transpose(&va);
                self.check(format!("transpose r{ia}"), a.finite(), want, got);
            }
            // Reshape: to the flat shape, or to random dims.
            9 => {
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let d = if u.arbitrary::<bool>()? {
                    vec![a.v.len()]
                } else {
                    dims(u)?
                };
                let want = if numel(&d) == a.v.len() {
                    Want::Value {
                        tol: vec![0.0; a.v.len()],
                        out: Host {
                            dims: d.clone(),
                            v: a.v.clone(),
                        },
                    }
                } else {
                    Want::Error
                };
                let dims32: Vec<u32> = d.iter().map(|&x| x as u32).collect();
                let va = self.regs[ia].clone();
                let got = self.tape.reshape(&va, &dims32);
                self.check(format!("reshape r{ia} {d:?}"), a.finite(), want, got);
            }
            // Rows of the outermost dimension: a range, or gathered.
            10 | 11 => {
                let gather = u.arbitrary::<bool>()?;
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let rows = a.dims.first().copied().unwrap_or(0);
                let idx: Vec<u32> = if gather {
                    let n = u.int_in_range(0..=4)?;
                    (0..n)
                        .map(|_| u.int_in_range(0..=rows as u32))
                        .collect::<Result<_>>()?
                } else {
                    let s = u.int_in_range(0..=rows as u32 + 1)?;
                    let e = u.int_in_range(0..=rows as u32 + 1)?;
                    vec![s, e]
                };
                let valid = !a.dims.is_empty()
                    && if gather {
                        idx.iter().all(|&i| (i as usize) < rows)
                    } else {
                        idx[0] <= idx[1] && idx[1] as usize <= rows
                    };
                let want = if valid {
                    let row_len = numel(&a.dims[1..]);
                    let picked: Vec<usize> = if gather {
                        idx.iter().map(|&i| i as usize).collect()
                    } else {
                        (idx[0] as usize..idx[1] as usize).collect()
                    };
                    let v: Vec<f64> = picked
                        .iter()
                        .flat_map(|&r| a.v[r * row_len..(r + 1) * row_len].iter().copied())
                        .collect();
                    let mut d = a.dims.clone();
                    d[0] = picked.len();
                    Want::Value {
                        tol: vec![0.0; v.len()],
                        out: Host { dims: d, v },
                    }
                } else {
                    Want::Error
                };
                let va = self.regs[ia].clone();
                let got = if gather {
                    self.tape.gather_rows(&va, &idx)
                } else {
                    self.tape.slice_rows(&va, idx[0], idx[1])
                };
                let what = if gather { "gather-rows" } else { "slice-rows" };
                self.check(format!("{what} r{ia} {idx:?}"), a.finite(), want, got);
            }
            // Concatenation along an axis.
            12 => {
                let (ia, ib) = (self.pick(u)?, self.pick(u)?);
                let axis = u.int_in_range(0..=3u32)?;
                let (a, b) = (self.host(&self.regs[ia]), self.host(&self.regs[ib]));
                let ax = axis as usize;
                let valid = ax < a.dims.len()
                    && a.dims.len() == b.dims.len()
                    && (0..a.dims.len()).all(|i| i == ax || a.dims[i] == b.dims[i]);
                let want = if !valid {
                    Want::Error
                } else {
                    let mut d = a.dims.clone();
                    d[ax] += b.dims[ax];
                    if numel(&d) > MAX_ELEMENTS {
                        return Ok(());
                    }
                    let outer = numel(&a.dims[..ax]);
                    let (ta, tb) = (numel(&a.dims[ax..]), numel(&b.dims[ax..]));
                    let v: Vec<f64> = (0..outer)
                        .flat_map(|o| {
                            a.v[o * ta..(o + 1) * ta]
                                .iter()
                                .chain(&b.v[o * tb..(o + 1) * tb])
                                .copied()
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    Want::Value {
                        tol: vec![0.0; v.len()],
                        out: Host { dims: d, v },
                    }
                };
                let finite = a.finite() && b.finite();
                let (va, vb) = (self.regs[ia].clone(), self.regs[ib].clone());
                let got = self.tape.concat(&va, &vb, axis);
                self.check(format!("concat r{ia} r{ib} axis {axis}"), finite, want, got);
            }
            // One-hot rows of class indices.
            13 => {
                let classes = u.int_in_range(0..=6u32)?;
                let ia = self.pick(u)?;
                let a = self.host(&self.regs[ia]);
                let want = match a.dims[..] {
                    [n] if classes > 0 => {
                        let c = classes as usize;
                        let mut v = vec![0.0; n * c];
                        for (r, &x) in a.v.iter().enumerate() {
                            if x >= 0.0 && x.fract() == 0.0 && (x as usize) < c {
                                v[r * c + x as usize] = 1.0;
                            }
                        }
                        Want::Value {
                            tol: vec![0.0; v.len()],
                            out: Host {
                                dims: vec![n, c],
                                v,
                            },
                        }
                    }
                    _ => Want::Error,
                };
                let va = self.regs[ia].clone();
                let got = self.tape.one_hot(&va, classes);
                self.check(format!("one-hot r{ia} {classes}"), a.finite(), want, got);
            }
            // Watch a register as a parameter.
            14 => {
                if self.leaves.len() >= MAX_LEAVES {
                    return Ok(());
                }
                let ia = self.pick(u)?;
                let name = format!("p{}", self.leaves.len());
                let value = self.regs[ia].value().clone();
                let dims = value.shape().dims().to_vec();
                let leaf = self.tape.leaf(&name, value).expect("a new f32 leaf");
                self.trace.push(format!("watch r{ia} as {name}"));
                self.leaves.push((name, dims));
                self.regs[ia] = leaf;
            }
            // The gradient of a register's sum with respect to every
            // parameter: one tensor of each parameter's shape.
            _ => self.gradient(u)?,
        }
        Ok(())
    }

    fn gradient(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let ia = self.pick(u)?;
        let x = self.regs[ia].clone();
        let n = x.value().numel() as u32;
        let flat = self.tape.reshape(&x, &[n]).expect("flattens");
        let loss = self
            .tape
            .reduce(ReduceOp::Sum, &flat, 0, false)
            .expect("sums");
        self.trace.push(format!("grad of sum r{ia}"));
        // Each parameter's gradient, or the error that the loss does not
        // depend on it or only through an op without a gradient (a
        // comparison, an argmax, a one-hot, a ReLU mask); only a loss the
        // tape recorded has one.
        for (name, dims) in &self.leaves {
            match self.tape.grad(&loss, &[name.as_str()]) {
                Ok(g) => {
                    assert!(loss.is_recorded(), "a gradient of an unrecorded loss");
                    assert_eq!(g.len(), 1);
                    assert_eq!(g[0].shape().dims(), &dims[..], "the gradient of {name}");
                }
                Err(e)
                    if e.to_string().contains("does not depend")
                        || e.to_string().contains("which has no gradient") => {}
                Err(e) => panic!(
                    "the gradient failed: {e}\nprogram:\n  {}",
                    self.trace.join("\n  ")
                ),
            }
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let dev = Device::cpu();
    let mut m = Machine {
        tape: Tape::new(dev.clone()),
        regs: vec![Var::constant(
            dev.from_vec(&[2, 3], vec![1.0, -2.0, 0.5, 3.0, 0.0, -1.5])
                .expect("a tensor"),
        )],
        leaves: Vec::new(),
        trace: Vec::new(),
    };
    for _ in 0..MAX_OPS {
        if u.is_empty() || m.step(&mut u).is_err() {
            break;
        }
    }
});
