//! Normalizations and losses, composed of tape ops (so their gradients are
//! the composition's), with `Device` entry points for the forward value.

use super::ops::untaped;
use super::{Tape, Var};
use crate::dtype::{need_f32, need_i64};
use crate::math::check_probability;
use crate::shape::broadcast;
use crate::{BinaryOp, DType, Device, ReduceOp, ScalarOp, Tensor, TensorError, UnaryOp};

/// How a loss combines its per-element (or per-sample) values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (the default), a `[1]` tensor. Cross-entropy with class
    /// weights divides by the sum of the samples' weights, as PyTorch does.
    #[default]
    Mean,
    /// The sum, a `[1]` tensor.
    Sum,
    /// No reduction: one value per element (per sample for cross-entropy).
    None,
}

/// Running statistics of a batch normalization, one value per channel.
#[derive(Clone, Debug)]
pub struct NormStats {
    /// Running mean, `[channels]`.
    pub mean: Tensor,
    /// Running (unbiased) variance, `[channels]`.
    pub var: Tensor,
}

impl NormStats {
    /// Mean 0 and variance 1 for `channels` channels (PyTorch's initial values).
    pub fn new(dev: &Device, channels: u32) -> Result<Self, TensorError> {
        Ok(NormStats {
            mean: dev.fill(&[channels], 0.0)?,
            var: dev.fill(&[channels], 1.0)?,
        })
    }
}

/// Options of [`Tape::cross_entropy_with`]; the default is PyTorch's: class
/// axis 1, no class weights, no label smoothing, no ignored class, mean.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropy<'a> {
    /// The axis of the logits that holds the classes.
    pub axis: u32,
    /// A weight per class, `[classes]`.
    pub weights: Option<&'a Tensor>,
    /// ε in `0..=1`: the target becomes `(1 - ε)·target + ε / classes`.
    pub label_smoothing: f32,
    /// Samples whose class index is this contribute nothing and are left
    /// out of the mean (padding in sequences).
    pub ignore_index: Option<i64>,
    /// How the per-sample losses combine.
    pub reduction: Reduction,
}

impl Default for CrossEntropy<'_> {
    fn default() -> Self {
        CrossEntropy {
            axis: 1,
            weights: None,
            label_smoothing: 0.0,
            ignore_index: None,
            reduction: Reduction::Mean,
        }
    }
}

fn check_eps(op: &'static str, eps: f32) -> Result<(), TensorError> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(TensorError::argument(
            op,
            format!("eps {eps} must be finite and at least 0"),
        ))
    }
}

fn check_param(
    op: &'static str,
    what: &str,
    p: Option<&Var>,
    want: &[usize],
) -> Result<(), TensorError> {
    if let Some(p) = p {
        need_f32(op, p.value())?;
        if p.shape().dims() != want {
            return Err(TensorError::shape(
                op,
                format!(
                    "{what} of shape {} does not fit: it needs shape {}",
                    p.shape(),
                    crate::nd::dims_str(want)
                ),
            ));
        }
    }
    Ok(())
}

/// The f32 target of a loss: broadcastable with the prediction.
fn check_pair(op: &'static str, pred: &Var, target: &Var) -> Result<(), TensorError> {
    need_f32(op, pred.value())?;
    need_f32(op, target.value())?;
    if broadcast(pred.shape().dims(), target.shape().dims()).is_none() {
        return Err(TensorError::shape(
            op,
            format!(
                "prediction of shape {} and target of shape {} do not broadcast",
                pred.shape(),
                target.shape()
            ),
        ));
    }
    Ok(())
}

impl Tape {
    /// Layer normalization over the last `normalized` dimensions of `x`:
    /// `(x - mean) / √(var + eps)` (biased variance), then `· weight + bias`
    /// when given (each shaped like those dimensions).
    pub fn layer_norm(
        &mut self,
        x: &Var,
        normalized: u32,
        weight: Option<&Var>,
        bias: Option<&Var>,
        eps: f32,
    ) -> Result<Var, TensorError> {
        const OP: &str = "layer-norm";
        need_f32(OP, x.value())?;
        check_eps(OP, eps)?;
        let dims = x.shape().dims();
        let k = normalized as usize;
        if k == 0 || k > dims.len() {
            return Err(TensorError::argument(
                OP,
                format!(
                    "normalizes over the last 1..={} dimensions of shape {}, not {k}",
                    dims.len(),
                    x.shape()
                ),
            ));
        }
        let tail = &dims[dims.len() - k..];
        check_param(OP, "weight", weight, tail)?;
        check_param(OP, "bias", bias, tail)?;
        let inner: usize = tail.iter().product();
        if inner == 0 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "the last {k} dimensions of shape {} hold no elements",
                    x.shape()
                ),
            ));
        }
        let outer = x.value().numel() / inner;
        let xr = self.reshape(x, &[outer as u32, inner as u32])?;
        let mean = self.reduce(ReduceOp::Mean, &xr, 1, true)?;
        let xc = self.binary(BinaryOp::Sub, &xr, &mean)?;
        let sq = self.unary(UnaryOp::Square, &xc)?;
        let var = self.reduce(ReduceOp::Mean, &sq, 1, true)?;
        let shifted = self.scalar(ScalarOp::Add, &var, eps)?;
        let inv = self.scalar(ScalarOp::Pow, &shifted, -0.5)?;
        let y = self.binary(BinaryOp::Mul, &xc, &inv)?;
        let mut y = self.reshape(&y, &x.shape().to_u32())?;
        if let Some(w) = weight {
            y = self.binary(BinaryOp::Mul, &y, w)?;
        }
        if let Some(b) = bias {
            y = self.binary(BinaryOp::Add, &y, b)?;
        }
        Ok(y)
    }

    /// Batch normalization of `x` `[batch, channels, ...]` per channel. In
    /// training, with the batch's statistics (biased variance), returning the
    /// running statistics updated as `(1 - momentum)·running +
    /// momentum·batch` (unbiased variance) for the caller to keep; in
    /// evaluation, with `running` (returned unchanged). Then `· weight +
    /// bias` (`[channels]` each) when given.
    #[allow(clippy::too_many_arguments, reason = "the options of batch norm")]
    pub fn batch_norm(
        &mut self,
        x: &Var,
        weight: Option<&Var>,
        bias: Option<&Var>,
        running: &NormStats,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<(Var, NormStats), TensorError> {
        const OP: &str = "batch-norm";
        need_f32(OP, x.value())?;
        check_eps(OP, eps)?;
        check_probability(OP, momentum)?;
        let dims = x.shape().dims();
        if dims.len() < 2 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "needs input [batch, channels, ...] of rank 2 or more, got shape {}",
                    x.shape()
                ),
            ));
        }
        let (n, c) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        check_param(OP, "weight", weight, &[c])?;
        check_param(OP, "bias", bias, &[c])?;
        for (what, t) in [
            ("running mean", &running.mean),
            ("running var", &running.var),
        ] {
            need_f32(OP, t)?;
            if t.shape().dims() != [c] {
                return Err(TensorError::shape(
                    OP,
                    format!("{what} of shape {} does not fit {c} channels", t.shape()),
                ));
            }
        }
        let count = n * s;
        let dev = self.device.clone();
        let xr = self.reshape(x, &[n as u32, c as u32, s as u32])?;
        let per_channel = [1, c as u32, 1];
        let (centered, var, stats) = if training {
            if count < 2 {
                return Err(TensorError::shape(
                    OP,
                    format!(
                        "training needs more than one value per channel, got shape {}",
                        x.shape()
                    ),
                ));
            }
            let m = self.reduce(ReduceOp::Mean, &xr, 2, true)?;
            let mean = self.reduce(ReduceOp::Mean, &m, 0, true)?;
            let xc = self.binary(BinaryOp::Sub, &xr, &mean)?;
            let sq = self.unary(UnaryOp::Square, &xc)?;
            let v = self.reduce(ReduceOp::Mean, &sq, 2, true)?;
            let var = self.reduce(ReduceOp::Mean, &v, 0, true)?;
            let blend = |old: &Tensor, new: &Tensor, scale: f32| -> Result<Tensor, TensorError> {
                let new = dev.reshape(new, &[c as u32])?;
                let kept = dev.scalar(ScalarOp::Mul, old, 1.0 - momentum)?;
                let added = dev.scalar(ScalarOp::Mul, &new, momentum * scale)?;
                dev.binary(BinaryOp::Add, &kept, &added)
            };
            let unbiased = count as f32 / (count - 1) as f32;
            let stats = NormStats {
                mean: blend(&running.mean, mean.value(), 1.0)?,
                var: blend(&running.var, var.value(), unbiased)?,
            };
            (xc, var, stats)
        } else {
            let mean = Var::constant(dev.reshape(&running.mean, &per_channel)?);
            let var = Var::constant(dev.reshape(&running.var, &per_channel)?);
            let xc = self.binary(BinaryOp::Sub, &xr, &mean)?;
            (xc, var, running.clone())
        };
        let shifted = self.scalar(ScalarOp::Add, &var, eps)?;
        let inv = self.scalar(ScalarOp::Pow, &shifted, -0.5)?;
        let mut y = self.binary(BinaryOp::Mul, &centered, &inv)?;
        if let Some(w) = weight {
            let w = self.reshape(w, &per_channel)?;
            y = self.binary(BinaryOp::Mul, &y, &w)?;
        }
        if let Some(b) = bias {
            let b = self.reshape(b, &per_channel)?;
            y = self.binary(BinaryOp::Add, &y, &b)?;
        }
        Ok((self.reshape(&y, &x.shape().to_u32())?, stats))
    }

    /// `v` reduced over all its elements to `[1]` (or left as it is).
    fn reduce_all(
        &mut self,
        op: &'static str,
        v: &Var,
        reduction: Reduction,
    ) -> Result<Var, TensorError> {
        let how = match reduction {
            Reduction::None => return Ok(v.clone()),
            Reduction::Mean => ReduceOp::Mean,
            Reduction::Sum => ReduceOp::Sum,
        };
        let n = v.value().numel();
        if n == 0 && how == ReduceOp::Mean {
            return Err(TensorError::shape(
                op,
                format!("the mean of no elements (shape {})", v.shape()),
            ));
        }
        let flat = self.reshape(v, &[n as u32])?;
        self.reduce(how, &flat, 0, true)
    }

    /// Mean squared error, `(pred - target)²` (shapes broadcast).
    pub fn mse_loss(
        &mut self,
        pred: &Var,
        target: &Var,
        reduction: Reduction,
    ) -> Result<Var, TensorError> {
        const OP: &str = "mse-loss";
        check_pair(OP, pred, target)?;
        let d = self.binary(BinaryOp::Sub, pred, target)?;
        let l = self.unary(UnaryOp::Square, &d)?;
        self.reduce_all(OP, &l, reduction)
    }

    /// Mean absolute error, `|pred - target|` (its gradient at 0 is 0).
    pub fn l1_loss(
        &mut self,
        pred: &Var,
        target: &Var,
        reduction: Reduction,
    ) -> Result<Var, TensorError> {
        const OP: &str = "l1-loss";
        check_pair(OP, pred, target)?;
        let d = self.binary(BinaryOp::Sub, pred, target)?;
        let l = self.unary(UnaryOp::Abs, &d)?;
        self.reduce_all(OP, &l, reduction)
    }

    /// Huber loss with threshold `delta > 0`: `d²/2` where `|d| <= delta`,
    /// else `delta·(|d| - delta/2)`, for `d = pred - target`.
    pub fn huber_loss(
        &mut self,
        pred: &Var,
        target: &Var,
        delta: f32,
        reduction: Reduction,
    ) -> Result<Var, TensorError> {
        const OP: &str = "huber-loss";
        check_pair(OP, pred, target)?;
        if !(delta > 0.0 && delta.is_finite()) {
            return Err(TensorError::argument(
                OP,
                format!("delta {delta} must be finite and greater than 0"),
            ));
        }
        // With q = min(|d|, delta): q²/2 + delta·(|d| - q).
        let d = self.binary(BinaryOp::Sub, pred, target)?;
        let a = self.unary(UnaryOp::Abs, &d)?;
        let q = self.scalar(ScalarOp::Min, &a, delta)?;
        let sq = self.unary(UnaryOp::Square, &q)?;
        let half = self.scalar(ScalarOp::Mul, &sq, 0.5)?;
        let over = self.binary(BinaryOp::Sub, &a, &q)?;
        let lin = self.scalar(ScalarOp::Mul, &over, delta)?;
        let l = self.binary(BinaryOp::Add, &half, &lin)?;
        self.reduce_all(OP, &l, reduction)
    }

    /// Binary cross-entropy of `logits` against probabilities `target`
    /// (shapes broadcast): `softplus(z) - z·y`, which is
    /// `-(y·ln σ(z) + (1 - y)·ln(1 - σ(z)))` without overflow.
    pub fn bce_with_logits(
        &mut self,
        logits: &Var,
        target: &Var,
        reduction: Reduction,
    ) -> Result<Var, TensorError> {
        const OP: &str = "bce-with-logits";
        check_pair(OP, logits, target)?;
        let sp = self.unary(UnaryOp::Softplus, logits)?;
        let zy = self.binary(BinaryOp::Mul, logits, target)?;
        let l = self.binary(BinaryOp::Sub, &sp, &zy)?;
        self.reduce_all(OP, &l, reduction)
    }

    /// Cross-entropy of `logits` along the class axis `opts.axis`, against
    /// either class indices (an i64 tensor, or f32 integers, shaped like the
    /// logits without the class axis) or class probabilities (f32, shaped
    /// like the logits). With class weights `w` and label smoothing ε over
    /// `C` classes, sample `i` with class `y` costs
    /// `-(1 - ε)·w_y·log p_y - ε/C·Σ_c w_c·log p_c` (PyTorch's definition);
    /// the mean divides by the sum of `w_y` over the samples not ignored.
    /// For probabilities `t`, the cost is `-Σ_c w_c·t̃_c·log p_c` with
    /// `t̃ = (1 - ε)·t + ε/C`, and the mean divides by the number of samples.
    ///
    /// Class indices are read back to the host to be checked.
    pub fn cross_entropy_with(
        &mut self,
        logits: &Var,
        target: &Var,
        opts: &CrossEntropy<'_>,
    ) -> Result<Var, TensorError> {
        const OP: &str = "cross-entropy";
        need_f32(OP, logits.value())?;
        let dims = logits.shape().dims().to_vec();
        let axis = crate::device::axis_of(OP, logits.shape(), opts.axis)?;
        let classes = dims[axis];
        if classes == 0 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "logits of shape {} have no classes along axis {axis}",
                    logits.shape()
                ),
            ));
        }
        let eps = opts.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(TensorError::argument(
                OP,
                format!("label smoothing {eps} is not in 0..=1"),
            ));
        }
        if let Some(w) = opts.weights {
            need_f32(OP, w)?;
            if w.shape().dims() != [classes] {
                return Err(TensorError::shape(
                    OP,
                    format!(
                        "class weights of shape {} do not fit {classes} classes",
                        w.shape()
                    ),
                ));
            }
        }
        let mut sample_dims = dims.clone();
        sample_dims.remove(axis);
        let samples: usize = sample_dims.iter().product();
        let dev = self.device.clone();
        // Class weights shaped to broadcast along the class axis.
        let mut along = vec![1u32; dims.len()];
        along[axis] = classes as u32;
        let class_weights = opts
            .weights
            .map(|w| dev.reshape(w, &along))
            .transpose()?
            .map(Var::constant);
        let lp = self.softmax(logits, axis as u32, true)?;

        if target.shape().dims() == dims.as_slice() && target.value().dtype() == DType::F32 {
            if opts.ignore_index.is_some() {
                return Err(TensorError::argument(
                    OP,
                    "ignore_index needs class-index targets, not probabilities",
                ));
            }
            // Soft targets: -Σ_c w_c·t̃_c·log p_c.
            let t = if eps > 0.0 {
                let kept = self.scalar(ScalarOp::Mul, target, 1.0 - eps)?;
                self.scalar(ScalarOp::Add, &kept, eps / classes as f32)?
            } else {
                target.clone()
            };
            let mut tl = self.binary(BinaryOp::Mul, &t, &lp)?;
            if let Some(w) = &class_weights {
                tl = self.binary(BinaryOp::Mul, &tl, w)?;
            }
            let s = self.reduce(ReduceOp::Sum, &tl, axis as u32, false)?;
            let per = self.unary(UnaryOp::Neg, &s)?;
            return match opts.reduction {
                Reduction::Mean => {
                    if samples == 0 {
                        return Err(TensorError::shape(
                            OP,
                            format!("the mean over no samples (logits {})", logits.shape()),
                        ));
                    }
                    let total = self.reduce_all(OP, &per, Reduction::Sum)?;
                    self.scalar(ScalarOp::Mul, &total, 1.0 / samples as f32)
                }
                r => self.reduce_all(OP, &per, r),
            };
        }

        if target.shape().dims() != sample_dims.as_slice() {
            return Err(TensorError::shape(
                OP,
                format!(
                    "target of shape {} fits neither class indices (shape {}) nor class \
                     probabilities (shape {}) for classes along axis {axis}",
                    target.shape(),
                    crate::nd::dims_str(&sample_dims),
                    logits.shape()
                ),
            ));
        }
        let labels = match target.value().dtype() {
            DType::I64 => target.value().clone(),
            DType::F32 => dev
                .to_i64(target.value())
                .map_err(|e| TensorError::argument(OP, format!("class indices: {e}")))?,
        };
        need_i64(OP, "class indices", &labels)?;
        let values = dev.i64_values(&labels);
        let mut picks = Vec::with_capacity(values.len());
        let mut valid = Vec::with_capacity(values.len());
        for (p, &v) in values.iter().enumerate() {
            if opts.ignore_index == Some(v) {
                picks.push(0);
                valid.push(0.0);
            } else if (0..classes as i64).contains(&v) {
                picks.push(v);
                valid.push(1.0);
            } else {
                return Err(TensorError::argument(
                    OP,
                    format!("target {v} (element {p}) is not a class index in 0..{classes}"),
                ));
            }
        }
        let sample_u32: Vec<u32> = sample_dims.iter().map(|&d| d as u32).collect();
        let mut pick_dims = sample_u32.clone();
        pick_dims.insert(axis, 1);
        let pick_idx = Var::constant(dev.from_i64(&pick_dims, picks.clone())?);
        let valid = dev.from_vec(&sample_u32, valid)?;
        // Each sample's weight w_y, 0 where ignored.
        let wy = match opts.weights {
            Some(w) => {
                let flat = dev.from_i64(&[picks.len() as u32], picks)?;
                let wy = dev.index_select(w, 0, &flat)?;
                dev.binary(BinaryOp::Mul, &dev.reshape(&wy, &sample_u32)?, &valid)?
            }
            None => valid.clone(),
        };
        let picked = self.gather(&lp, axis as u32, &pick_idx)?;
        let picked = self.squeeze(&picked, axis as u32)?;
        let weighted = self.binary(BinaryOp::Mul, &picked, &Var::constant(wy.clone()))?;
        let mut per = self.unary(UnaryOp::Neg, &weighted)?;
        if eps > 0.0 {
            let wl = match &class_weights {
                Some(w) => self.binary(BinaryOp::Mul, &lp, w)?,
                None => lp.clone(),
            };
            let s = self.reduce(ReduceOp::Sum, &wl, axis as u32, false)?;
            let s = self.binary(BinaryOp::Mul, &s, &Var::constant(valid))?;
            let nll = self.scalar(ScalarOp::Mul, &per, 1.0 - eps)?;
            let smooth = self.scalar(ScalarOp::Mul, &s, -eps / classes as f32)?;
            per = self.binary(BinaryOp::Add, &nll, &smooth)?;
        }
        match opts.reduction {
            Reduction::Mean => {
                if samples == 0 {
                    return Err(TensorError::shape(
                        OP,
                        format!("the mean over no samples (logits {})", logits.shape()),
                    ));
                }
                let total = self.reduce_all(OP, &per, Reduction::Sum)?;
                let flat = dev.reshape(&wy, &[samples as u32])?;
                let denominator = dev.reduce(ReduceOp::Sum, &flat, 0, true)?;
                self.binary(BinaryOp::Div, &total, &Var::constant(denominator))
            }
            r => self.reduce_all(OP, &per, r),
        }
    }
}

impl Device {
    /// [`Tape::layer_norm`]'s value, outside a tape.
    pub fn layer_norm(
        &self,
        x: &Tensor,
        normalized: u32,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor, TensorError> {
        untaped(self, |t| {
            let (w, b) = (
                weight.cloned().map(Var::constant),
                bias.cloned().map(Var::constant),
            );
            t.layer_norm(
                &Var::constant(x.clone()),
                normalized,
                w.as_ref(),
                b.as_ref(),
                eps,
            )
        })
        .map(Var::into_value)
    }

    /// [`Tape::batch_norm`]'s value and updated statistics, outside a tape.
    #[allow(clippy::too_many_arguments, reason = "the options of batch norm")]
    pub fn batch_norm(
        &self,
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running: &NormStats,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, NormStats), TensorError> {
        untaped(self, |t| {
            let (w, b) = (
                weight.cloned().map(Var::constant),
                bias.cloned().map(Var::constant),
            );
            let (y, stats) = t.batch_norm(
                &Var::constant(x.clone()),
                w.as_ref(),
                b.as_ref(),
                running,
                training,
                momentum,
                eps,
            )?;
            Ok((y.into_value(), stats))
        })
    }
}
