//! The gradient of each recorded op with respect to its inputs, in Device ops.

use super::{Node, Rule};
use crate::{BinaryOp, Device, ReduceOp, ScalarOp, Shape, Tensor, TensorError, UnaryOp};

/// The gradients of `node`'s inputs, given `g`, the gradient of its result:
/// one for each input whose `want` is set (its shape is in `in_shapes`).
/// `seed` says that `g` is the loss's own gradient, all ones.
pub(super) fn input_grads(
    dev: &Device,
    node: &Node,
    in_shapes: &[Option<&Shape>],
    g: &Tensor,
    want: &[bool],
    seed: bool,
) -> Result<Vec<Option<Tensor>>, TensorError> {
    let shape_of = |k: usize| {
        in_shapes
            .get(k)
            .copied()
            .flatten()
            .ok_or_else(|| missing("an input's shape"))
    };
    let wants = |k: usize| want.get(k).copied().unwrap_or(false);
    let first = |f: &dyn Fn(&Shape) -> Result<Tensor, TensorError>| -> Result<_, TensorError> {
        let mut out = vec![None; want.len().max(1)];
        out[0] = Some(f(shape_of(0)?)?);
        Ok(out)
    };
    match &node.rule {
        Rule::Leaf | Rule::Blocked(_) => Ok(vec![None; want.len()]),
        Rule::Matmul { a, b } => {
            // C = A·B: dA = G·Bᵀ, dB = Aᵀ·G.
            let ga = when(wants(0), || {
                dev.matmul(g, &dev.transpose(kept(b, "matmul's right operand")?)?)
            })?;
            let gb = when(wants(1), || {
                dev.matmul(&dev.transpose(kept(a, "matmul's left operand")?)?, g)
            })?;
            Ok(vec![ga, gb])
        }
        Rule::BatchedMatmul {
            a,
            b,
            transpose_a: ta,
            transpose_b: tb,
        } => {
            let (ta, tb) = (*ta, *tb);
            // C = op(A)·op(B): d op(A) = G·op(B)ᵀ, d op(B) = op(A)ᵀ·G, each
            // transposed back where the operand was, then summed over the
            // batch dimensions it was broadcast along.
            let ga = when(wants(0), || {
                let b = kept(b, "matmul's right operand")?;
                let d = if ta {
                    dev.matmul_transposed(b, tb, g, true)?
                } else {
                    dev.matmul_transposed(g, false, b, !tb)?
                };
                sum_to(dev, &d, shape_of(0)?)
            })?;
            let gb = when(wants(1), || {
                let a = kept(a, "matmul's left operand")?;
                let d = if tb {
                    dev.matmul_transposed(g, true, a, ta)?
                } else {
                    dev.matmul_transposed(a, !ta, g, false)?
                };
                sum_to(dev, &d, shape_of(1)?)
            })?;
            Ok(vec![ga, gb])
        }
        Rule::Transpose => first(&|_| dev.transpose(g)),
        Rule::Reshape => first(&|s| dev.reshape(g, &s.to_u32())),
        Rule::Binary { op, a, b, out } => binary(
            dev,
            *op,
            [a, b],
            out,
            [shape_of(0).ok(), shape_of(1).ok()],
            g,
            [wants(0), wants(1)],
        )
        .map(Vec::from),
        Rule::Identity => first(&|_| Ok(g.clone())),
        Rule::Scale(v) => first(&|_| dev.scalar(ScalarOp::Mul, g, *v)),
        Rule::Unary { op, kept: t } => first(&|_| unary(dev, *op, t.as_ref(), g)),
        Rule::ScalarMap { op, value, x, y } => first(&|_| {
            let d = match op {
                ScalarOp::Pow => {
                    let p = dev.scalar(ScalarOp::Pow, x, value - 1.0)?;
                    dev.scalar(ScalarOp::Mul, &p, *value)?
                }
                ScalarOp::LeakyRelu => {
                    let m = dev.unary(UnaryOp::ReluMask, x)?;
                    dev.scalar(
                        ScalarOp::Add,
                        &dev.scalar(ScalarOp::Mul, &m, 1.0 - value)?,
                        *value,
                    )?
                }
                _ => dev.binary(BinaryOp::Eq, kept(y, "the bounded output")?, x)?,
            };
            dev.binary(BinaryOp::Mul, g, &d)
        }),
        Rule::Clamp { x, y } => {
            first(&|_| dev.binary(BinaryOp::Mul, g, &dev.binary(BinaryOp::Eq, x, y)?))
        }
        Rule::Reduce { op, axis, x, y } => first(&|s| reduce(dev, *op, *axis, s, x, y, g)),
        Rule::Softmax { axis, log, y } => first(&|_| {
            let axis = *axis as u32;
            if *log {
                // y = x - logsumexp(x): dx = g - softmax(x) · Σ g.
                let total = dev.reduce(ReduceOp::Sum, g, axis, true)?;
                let p = dev.unary(UnaryOp::Exp, y)?;
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
        Rule::Concat { axis, split } => concat(
            dev,
            *axis,
            *split,
            &node.shape,
            [shape_of(0).ok(), shape_of(1).ok()],
            g,
            [wants(0), wants(1)],
        )
        .map(Vec::from),
        Rule::CrossEntropy { probs, labels } => first(&|_| {
            // d/dlogits of -1/n Σ log softmax(logits)[label] = (softmax - onehot) / n.
            let (n, classes) = rows_and_len(probs.shape());
            let onehot = dev.one_hot(labels, classes)?;
            let d = dev.binary(BinaryOp::Sub, probs, &onehot)?;
            let d = dev.scalar(ScalarOp::Mul, &d, 1.0 / n as f32)?;
            if seed {
                Ok(d)
            } else {
                dev.binary(BinaryOp::Mul, &d, g)
            }
        }),
        Rule::Permute { axes } => first(&|_| {
            let mut inverse = vec![0u32; axes.len()];
            for (i, &a) in axes.iter().enumerate() {
                inverse[a as usize] = i as u32;
            }
            dev.permute(g, &inverse)
        }),
        Rule::Slice { axis, start, step } => first(&|s| dev.unslice(g, s, *axis, *start, *step)),
        Rule::ConcatMany { axis, sizes } => {
            let mut out = vec![None; want.len()];
            let mut at = 0;
            for (k, &size) in sizes.iter().enumerate() {
                if wants(k) {
                    let s = shape_of(k)?;
                    let mut starts = vec![0; s.rank()];
                    starts[*axis] = at;
                    out[k] = Some(dev.crop(g, &starts, s.dims())?);
                }
                at += size;
            }
            Ok(out)
        }
        Rule::Pad { starts } => first(&|s| dev.crop(g, starts, s.dims())),
        Rule::BroadcastTo => first(&|s| sum_to(dev, g, s)),
        Rule::Take { axis, idx } => first(&|s| dev.index_add(&s.to_u32(), *axis as u32, idx, g)),
        Rule::Gather { axis, idx } => {
            first(&|s| dev.scatter_add(&s.to_u32(), *axis as u32, idx, g))
        }
        Rule::ScatterAdd { axis, idx } => first(&|_| dev.gather(g, *axis as u32, idx)),
        Rule::IndexAdd { axis, idx } => first(&|_| dev.index_select(g, *axis as u32, idx)),
        Rule::Where { cond } => {
            let zero = dev.fill(&[], 0.0)?;
            let ga = when(wants(1), || {
                sum_to(dev, &dev.where_(cond, g, &zero)?, shape_of(1)?)
            })?;
            let gb = when(wants(2), || {
                sum_to(dev, &dev.where_(cond, &zero, g)?, shape_of(2)?)
            })?;
            Ok(vec![None, ga, gb])
        }
        Rule::Cumsum { axis, reverse } => first(&|_| dev.cumsum(g, *axis, !reverse)),
        Rule::Conv2d { x, w, geometry } => {
            let gx = when(wants(0), || {
                dev.conv2d_grad_input(g, kept(w, "the convolution's weights")?, geometry)
            })?;
            let gw = when(wants(1), || {
                dev.conv2d_grad_weight(kept(x, "the convolution's input")?, g, geometry)
            })?;
            Ok(vec![gx, gw])
        }
        Rule::MaxPool2d { idx, geometry } => first(&|_| dev.max_pool2d_grad(g, idx, geometry)),
        Rule::AvgPool2d { geometry } => first(&|_| dev.avg_pool2d_grad(g, geometry)),
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
    if let BinaryOp::Maximum | BinaryOp::Minimum = op {
        return extremum(dev, op, [a, b], in_shapes, g, want);
    }
    let target = |k: usize| in_shapes[k].ok_or_else(|| missing("an operand's shape"));
    let (ga, gb) = match op {
        BinaryOp::Add => (
            when(want[0], || sum_to(dev, g, target(0)?))?,
            when(want[1], || sum_to(dev, g, target(1)?))?,
        ),
        BinaryOp::Sub => (
            when(want[0], || sum_to(dev, g, target(0)?))?,
            when(want[1], || {
                dev.unary(UnaryOp::Neg, &sum_to(dev, g, target(1)?)?)
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
                    dev.unary(UnaryOp::Neg, &sum_to(dev, &t, target(1)?)?)
                })?,
            )
        }
        BinaryOp::Pow => {
            let (a, b) = (kept(a, "the base")?, kept(b, "the exponent")?);
            (
                // d(aᵇ)/da = b·a^(b-1).
                when(want[0], || {
                    let p = dev.binary(BinaryOp::Pow, a, &dev.scalar(ScalarOp::Add, b, -1.0)?)?;
                    let t = dev.binary(BinaryOp::Mul, &dev.binary(BinaryOp::Mul, &p, b)?, g)?;
                    sum_to(dev, &t, target(0)?)
                })?,
                // d(aᵇ)/db = aᵇ·ln a, taken as 0 where a = 0 (as PyTorch does).
                when(want[1], || {
                    let out = kept(out, "the power")?;
                    let t = dev.binary(BinaryOp::Mul, out, &dev.unary(UnaryOp::Log, a)?)?;
                    let zero = dev.fill(&[], 0.0)?;
                    let t = dev.where_(&dev.binary(BinaryOp::Eq, a, &zero)?, &zero, &t)?;
                    sum_to(dev, &dev.binary(BinaryOp::Mul, &t, g)?, target(1)?)
                })?,
            )
        }
        _ => return Err(missing("a gradient for a comparison")),
    };
    Ok([ga, gb])
}

/// Maximum and minimum: the gradient goes to the operand that is the
/// result, half to each where they are equal (as PyTorch does).
fn extremum(
    dev: &Device,
    op: BinaryOp,
    [a, b]: [&Option<Tensor>; 2],
    in_shapes: [Option<&Shape>; 2],
    g: &Tensor,
    want: [bool; 2],
) -> Result<[Option<Tensor>; 2], TensorError> {
    let (a, b) = (kept(a, "the left operand")?, kept(b, "the right operand")?);
    let target = |k: usize| in_shapes[k].ok_or_else(|| missing("an operand's shape"));
    let (wins_a, wins_b) = match op {
        BinaryOp::Maximum => (BinaryOp::Gt, BinaryOp::Lt),
        _ => (BinaryOp::Lt, BinaryOp::Gt),
    };
    let half_ties = dev.scalar(ScalarOp::Mul, &dev.binary(BinaryOp::Eq, a, b)?, 0.5)?;
    let share = |wins: BinaryOp, k: usize| -> Result<Tensor, TensorError> {
        let m = dev.binary(BinaryOp::Add, &dev.binary(wins, a, b)?, &half_ties)?;
        sum_to(dev, &dev.binary(BinaryOp::Mul, &m, g)?, target(k)?)
    };
    Ok([
        when(want[0], || share(wins_a, 0))?,
        when(want[1], || share(wins_b, 1))?,
    ])
}

fn unary(dev: &Device, op: UnaryOp, t: Option<&Tensor>, g: &Tensor) -> Result<Tensor, TensorError> {
    let t = || t.ok_or_else(|| missing("a unary map's operand or result"));
    let mul = |x: &Tensor| dev.binary(BinaryOp::Mul, g, x);
    // 1 - x.
    let one_minus = |x: &Tensor| dev.scalar(ScalarOp::Add, &dev.unary(UnaryOp::Neg, x)?, 1.0);
    match op {
        // t is the output y.
        UnaryOp::Relu => mul(&dev.unary(UnaryOp::ReluMask, t()?)?),
        UnaryOp::Sigmoid => mul(&dev.binary(BinaryOp::Mul, t()?, &one_minus(t()?)?)?),
        UnaryOp::Tanh => mul(&one_minus(&dev.unary(UnaryOp::Square, t()?)?)?),
        UnaryOp::Exp => mul(t()?),
        UnaryOp::Sqrt => dev.scalar(ScalarOp::Mul, &dev.binary(BinaryOp::Div, g, t()?)?, 0.5),
        // t is the input x.
        UnaryOp::Log => dev.binary(BinaryOp::Div, g, t()?),
        UnaryOp::Abs => {
            // sign(x) = [x > 0] - [-x > 0], 0 at 0.
            let x = t()?;
            let pos = dev.unary(UnaryOp::ReluMask, x)?;
            let neg = dev.unary(UnaryOp::ReluMask, &dev.unary(UnaryOp::Neg, x)?)?;
            mul(&dev.binary(BinaryOp::Sub, &pos, &neg)?)
        }
        UnaryOp::Square => mul(&dev.scalar(ScalarOp::Mul, t()?, 2.0)?),
        UnaryOp::Neg => dev.unary(UnaryOp::Neg, g),
        UnaryOp::Gelu => mul(&dev.unary(UnaryOp::GeluGrad, t()?)?),
        UnaryOp::GeluTanh => mul(&dev.unary(UnaryOp::GeluTanhGrad, t()?)?),
        UnaryOp::Silu => mul(&dev.unary(UnaryOp::SiluGrad, t()?)?),
        UnaryOp::Softplus => mul(&dev.unary(UnaryOp::Sigmoid, t()?)?),
        UnaryOp::ReluMask | UnaryOp::GeluGrad | UnaryOp::GeluTanhGrad | UnaryOp::SiluGrad => {
            Err(missing("a gradient for a derivative map"))
        }
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
            let apart = dev.unary(UnaryOp::ReluMask, &gap)?;
            let tied = dev.scalar(ScalarOp::Add, &dev.unary(UnaryOp::Neg, &apart)?, 1.0)?;
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
