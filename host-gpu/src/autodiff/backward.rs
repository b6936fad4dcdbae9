//! The gradient of each recorded op with respect to its inputs, in Device ops.

use super::{Node, Rule};
use crate::{BinaryOp, Device, ReduceOp, ScalarOp, Shape, Tensor, TensorError, UnaryOp};

/// The gradients of `node`'s inputs, given `g`, the gradient of its result:
/// one for each input whose `want` is set (its shape is in `in_shapes`).
/// `seed` says that `g` is the loss's own gradient, all ones.
pub(super) fn input_grads(
    dev: &Device,
    node: &Node,
    in_shapes: [Option<&Shape>; 2],
    g: &Tensor,
    want: [bool; 2],
    seed: bool,
) -> Result<[Option<Tensor>; 2], TensorError> {
    let shape_of = |k: usize| in_shapes[k].ok_or_else(|| missing("an input's shape"));
    let first = |f: &dyn Fn(&Shape) -> Result<Tensor, TensorError>| -> Result<_, TensorError> {
        Ok([Some(f(shape_of(0)?)?), None])
    };
    match &node.rule {
        Rule::Leaf | Rule::Blocked(_) => Ok([None, None]),
        Rule::Matmul { a, b } => {
            // C = A·B: dA = G·Bᵀ, dB = Aᵀ·G.
            let ga = when(want[0], || {
                dev.matmul(g, &dev.transpose(kept(b, "matmul's right operand")?)?)
            })?;
            let gb = when(want[1], || {
                dev.matmul(&dev.transpose(kept(a, "matmul's left operand")?)?, g)
            })?;
            Ok([ga, gb])
        }
        Rule::Transpose => first(&|_| dev.transpose(g)),
        Rule::Reshape => first(&|s| dev.reshape(g, &s.to_u32())),
        Rule::Binary { op, a, b, out } => binary(dev, *op, [a, b], out, in_shapes, g, want),
        Rule::Identity => first(&|_| Ok(g.clone())),
        Rule::Scale(v) => first(&|_| Ok(dev.scalar(ScalarOp::Mul, g, *v))),
        Rule::Unary { op, kept: t } => first(&|_| unary(dev, *op, t.as_ref(), g)),
        Rule::Reduce { op, axis, x, y } => first(&|s| reduce(dev, *op, *axis, s, x, y, g)),
        Rule::Softmax { axis, log, y } => first(&|_| {
            let axis = *axis as u32;
            if *log {
                // y = x - logsumexp(x): dx = g - softmax(x) · Σ g.
                let total = dev.reduce(ReduceOp::Sum, g, axis, true)?;
                let p = dev.unary(UnaryOp::Exp, y);
                dev.binary(BinaryOp::Sub, g, &dev.binary(BinaryOp::Mul, &p, &total)?)
            } else {
                // dx = y · (g - Σ g·y).
                let gy = dev.binary(BinaryOp::Mul, g, y)?;
                let total = dev.reduce(ReduceOp::Sum, &gy, axis, true)?;
                dev.binary(BinaryOp::Mul, y, &dev.binary(BinaryOp::Sub, g, &total)?)
            }
        }),
        Rule::SliceRows { start, end } => first(&|s| {
            // The slice's rows in place, zero rows around them.
            let (rows, row_len) = rows_and_len(s);
            let mut t = dev.reshape(g, &[end - start, row_len])?;
            if *start > 0 {
                t = dev.concat(&dev.fill(&[*start, row_len], 0.0)?, &t, 0)?;
            }
            if *end < rows {
                t = dev.concat(&t, &dev.fill(&[rows - end, row_len], 0.0)?, 0)?;
            }
            dev.reshape(&t, &s.to_u32())
        }),
        Rule::GatherRows { indices } => first(&|s| {
            // Each picked row's gradient added back where it came from.
            dev.scatter_add_rows(g, indices, rows_and_len(s).0)
        }),
        Rule::Concat { axis, split } => concat(dev, *axis, *split, &node.shape, in_shapes, g, want),
        Rule::CrossEntropy { probs, labels } => first(&|_| {
            // d/dlogits of -1/n Σ log softmax(logits)[label] = (softmax - onehot) / n.
            let (n, classes) = rows_and_len(probs.shape());
            let onehot = dev.one_hot(labels, classes)?;
            let d = dev.binary(BinaryOp::Sub, probs, &onehot)?;
            let d = dev.scalar(ScalarOp::Mul, &d, 1.0 / n as f32);
            if seed {
                Ok(d)
            } else {
                dev.binary(BinaryOp::Mul, &d, g)
            }
        }),
    }
}

fn missing(what: &str) -> TensorError {
    TensorError::argument(
        "grad",
        format!("the tape did not keep {what} (a bug in tensorlet)"),
    )
}

fn kept<'a>(t: &'a Option<Tensor>, what: &str) -> Result<&'a Tensor, TensorError> {
    t.as_ref().ok_or_else(|| missing(what))
}

fn when(
    yes: bool,
    f: impl FnOnce() -> Result<Tensor, TensorError>,
) -> Result<Option<Tensor>, TensorError> {
    if yes { f().map(Some) } else { Ok(None) }
}

/// Rows and elements per row of `s` viewed as [rows, rest]; u32 always fits
/// (element counts are capped at u32::MAX).
fn rows_and_len(s: &Shape) -> (u32, u32) {
    match s.dims() {
        [] => (1, 1),
        [rows, rest @ ..] => (*rows as u32, rest.iter().product::<usize>() as u32),
    }
}

/// `g` summed over the axes along which `target` was broadcast to `g`'s
/// shape, then shaped as `target`. Neighbouring axes that are summed (or
/// kept) alike are merged first, so it takes one reduction per run of
/// broadcast axes.
fn sum_to(dev: &Device, g: &Tensor, target: &Shape) -> Result<Tensor, TensorError> {
    let (out, want) = (g.shape().dims(), target.dims());
    if out == want {
        return Ok(g.clone());
    }
    let pad = out.len().saturating_sub(want.len());
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for (i, &d) in out.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let summed = i < pad || want.get(i - pad) == Some(&1);
        match groups.last_mut() {
            Some((size, s)) if *s == summed => *size *= d,
            _ => groups.push((d, summed)),
        }
    }
    let dims: Vec<u32> = groups.iter().map(|&(d, _)| d as u32).collect();
    let mut t = dev.reshape(g, &dims)?;
    for (axis, &(_, summed)) in groups.iter().enumerate() {
        if summed {
            t = dev.reduce(ReduceOp::Sum, &t, axis as u32, true)?;
        }
    }
    dev.reshape(&t, &target.to_u32())
}

fn binary(
    dev: &Device,
    op: BinaryOp,
    [a, b]: [&Option<Tensor>; 2],
    out: &Option<Tensor>,
    in_shapes: [Option<&Shape>; 2],
    g: &Tensor,
    want: [bool; 2],
) -> Result<[Option<Tensor>; 2], TensorError> {
    let target = |k: usize| in_shapes[k].ok_or_else(|| missing("an operand's shape"));
    let (ga, gb) = match op {
        BinaryOp::Add => (
            when(want[0], || sum_to(dev, g, target(0)?))?,
            when(want[1], || sum_to(dev, g, target(1)?))?,
        ),
        BinaryOp::Sub => (
            when(want[0], || sum_to(dev, g, target(0)?))?,
            when(want[1], || {
                Ok(dev.unary(UnaryOp::Neg, &sum_to(dev, g, target(1)?)?))
            })?,
        ),
        BinaryOp::Mul => (
            when(want[0], || {
                let t = dev.binary(BinaryOp::Mul, g, kept(b, "the right factor")?)?;
                sum_to(dev, &t, target(0)?)
            })?,
            when(want[1], || {
                let t = dev.binary(BinaryOp::Mul, g, kept(a, "the left factor")?)?;
                sum_to(dev, &t, target(1)?)
            })?,
        ),
        BinaryOp::Div => {
            let b = kept(b, "the divisor")?;
            (
                when(want[0], || {
                    sum_to(dev, &dev.binary(BinaryOp::Div, g, b)?, target(0)?)
                })?,
                // d(a/b)/db = -(a/b)/b.
                when(want[1], || {
                    let t = dev.binary(BinaryOp::Mul, g, kept(out, "the quotient")?)?;
                    let t = dev.binary(BinaryOp::Div, &t, b)?;
                    Ok(dev.unary(UnaryOp::Neg, &sum_to(dev, &t, target(1)?)?))
                })?,
            )
        }
    };
    Ok([ga, gb])
}

fn unary(dev: &Device, op: UnaryOp, t: Option<&Tensor>, g: &Tensor) -> Result<Tensor, TensorError> {
    let t = || t.ok_or_else(|| missing("a unary map's operand or result"));
    let mul = |x: &Tensor| dev.binary(BinaryOp::Mul, g, x);
    // 1 - x.
    let one_minus = |x: &Tensor| dev.scalar(ScalarOp::Add, &dev.unary(UnaryOp::Neg, x), 1.0);
    match op {
        // t is the output y.
        UnaryOp::Relu => mul(&dev.unary(UnaryOp::ReluMask, t()?)),
        UnaryOp::Sigmoid => mul(&dev.binary(BinaryOp::Mul, t()?, &one_minus(t()?))?),
        UnaryOp::Tanh => mul(&one_minus(&dev.unary(UnaryOp::Square, t()?))),
        UnaryOp::Exp => mul(t()?),
        UnaryOp::Sqrt => Ok(dev.scalar(ScalarOp::Mul, &dev.binary(BinaryOp::Div, g, t()?)?, 0.5)),
        // t is the input x.
        UnaryOp::Log => dev.binary(BinaryOp::Div, g, t()?),
        UnaryOp::Abs => {
            // sign(x) = [x > 0] - [-x > 0], 0 at 0.
            let x = t()?;
            let pos = dev.unary(UnaryOp::ReluMask, x);
            let neg = dev.unary(UnaryOp::ReluMask, &dev.unary(UnaryOp::Neg, x));
            mul(&dev.binary(BinaryOp::Sub, &pos, &neg)?)
        }
        UnaryOp::Square => mul(&dev.scalar(ScalarOp::Mul, t()?, 2.0)),
        UnaryOp::Neg => Ok(dev.unary(UnaryOp::Neg, g)),
        UnaryOp::ReluMask => Err(missing("a gradient for relu-mask")),
    }
}

fn reduce(
    dev: &Device,
    op: ReduceOp,
    axis: usize,
    in_shape: &Shape,
    x: &Option<Tensor>,
    y: &Option<Tensor>,
    g: &Tensor,
) -> Result<Tensor, TensorError> {
    let full = in_shape.to_u32();
    let mut keep = full.clone();
    keep[axis] = 1;
    let g = dev.reshape(g, &keep)?;
    let axis32 = axis as u32;
    match op {
        // Every element gets its row's gradient (broadcast by adding zeros).
        ReduceOp::Sum => dev.binary(BinaryOp::Add, &dev.fill(&full, 0.0)?, &g),
        ReduceOp::Mean => {
            let n = in_shape.dims()[axis] as f32;
            dev.binary(BinaryOp::Mul, &dev.fill(&full, 1.0 / n)?, &g)
        }
        // The gradient is shared evenly among the elements equal to the
        // extremum (as torch.amax does).
        ReduceOp::Max | ReduceOp::Min => {
            let x = kept(x, "the reduced tensor")?;
            let y = dev.reshape(kept(y, "the extremum")?, &keep)?;
            // Positive exactly where x is not the extremum.
            let gap = match op {
                ReduceOp::Max => dev.binary(BinaryOp::Sub, &y, x)?,
                _ => dev.binary(BinaryOp::Sub, x, &y)?,
            };
            let apart = dev.unary(UnaryOp::ReluMask, &gap);
            let tied = dev.scalar(ScalarOp::Add, &dev.unary(UnaryOp::Neg, &apart), 1.0);
            let count = dev.reduce(ReduceOp::Sum, &tied, axis32, true)?;
            let share = dev.binary(BinaryOp::Div, &g, &count)?;
            dev.binary(BinaryOp::Mul, &tied, &share)
        }
        ReduceOp::ArgMax => Err(missing("a gradient for argmax")),
    }
}

/// Splits `g` along `axis` back into the two operands' parts.
fn concat(
    dev: &Device,
    axis: usize,
    split: usize,
    out_shape: &Shape,
    in_shapes: [Option<&Shape>; 2],
    g: &Tensor,
    want: [bool; 2],
) -> Result<[Option<Tensor>; 2], TensorError> {
    let dims = out_shape.dims();
    let total = dims[axis];
    let outer: usize = dims[..axis].iter().product();
    let tail: usize = dims[axis + 1..].iter().product();
    let ranges = [(0, split), (split, total)];
    let mut parts = [None, None];
    if outer == 1 {
        // The parts are contiguous: rows of g viewed as [total, tail].
        let rows = dev.reshape(g, &[total as u32, tail as u32])?;
        for k in 0..2 {
            if let (true, Some(s)) = (want[k], in_shapes[k]) {
                let (lo, hi) = ranges[k];
                let part = dev.slice_rows(&rows, lo as u32, hi as u32)?;
                parts[k] = Some(dev.reshape(&part, &s.to_u32())?);
            }
        }
    } else {
        // Interleaved: transpose [outer, total·tail] so that each part is a
        // range of rows, slice, and transpose back.
        let flat = dev.reshape(g, &[outer as u32, (total * tail) as u32])?;
        let cols = dev.transpose(&flat)?;
        for k in 0..2 {
            if let (true, Some(s)) = (want[k], in_shapes[k]) {
                let (lo, hi) = ranges[k];
                let part = dev.slice_rows(&cols, (lo * tail) as u32, (hi * tail) as u32)?;
                parts[k] = Some(dev.reshape(&dev.transpose(&part)?, &s.to_u32())?);
            }
        }
    }
    Ok(parts)
}
