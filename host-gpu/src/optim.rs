//! Optimizers and learning-rate schedules, applied by the host.
//!
//! An [`Optimizer`] turns parameters and their gradients (from
//! [`crate::autodiff::Tape::grad`]) into updated parameters and optimizer
//! state, with [`Device`] ops only, so a GPU device keeps everything on the
//! GPU. State tensors are named as trainer plugins name theirs (`opt.m.<p>`,
//! `opt.v.<p>`, `opt.momentum.<p>`), so a model's saved params look the same
//! whichever side trained it. The arithmetic follows PyTorch's `SGD`, `Adam`
//! and `AdamW` (and, for Adam, the exact order of operations of the `mlp`
//! example trainer, so both give the same bits on the CPU).

use crate::{BinaryOp, Device, ReduceOp, ScalarOp, Tensor, TensorError, UnaryOp};

/// An update rule and its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Stochastic gradient descent, PyTorch semantics with dampening 0:
    /// `v = μv + g`; with Nesterov `g' = g + μv`; `p -= lr·g'` (or `lr·v`).
    /// With momentum 0, `p - lr·g` exactly, and no state.
    Sgd {
        /// μ, in [0, 1).
        momentum: f32,
        /// Nesterov momentum (needs momentum > 0).
        nesterov: bool,
    },
    /// Adam; weight decay is L2, added to the gradient.
    Adam {
        /// First-moment decay, in [0, 1).
        beta1: f32,
        /// Second-moment decay, in [0, 1).
        beta2: f32,
        /// Added to the denominator, > 0.
        eps: f32,
    },
    /// Adam with decoupled weight decay: `p ← p·(1 − lr·wd)`, then the Adam update.
    AdamW {
        /// First-moment decay, in [0, 1).
        beta1: f32,
        /// Second-moment decay, in [0, 1).
        beta2: f32,
        /// Added to the denominator, > 0.
        eps: f32,
    },
}

/// A rule, weight decay and optional clipping of the gradients' global norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimizer {
    /// The update rule.
    pub rule: Rule,
    /// Weight decay, >= 0 (L2 for SGD and Adam, decoupled for AdamW).
    pub weight_decay: f32,
    /// Scale the gradients so that their global L2 norm is at most this.
    pub clip_grad_norm: Option<f32>,
}

/// How the learning rate changes after warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// The base rate times `gamma` once per `every_steps` steps after warm-up.
    Step {
        /// Steps between decays, > 0.
        every_steps: u64,
        /// Factor per decay.
        gamma: f32,
    },
    /// Half a cosine from the base rate down to `min_lr`, over the steps from
    /// the end of warm-up to `total_steps`; `min_lr` after that.
    Cosine {
        /// Step (counted from 0, warm-up included) at which `min_lr` is reached.
        total_steps: u64,
        /// The final rate.
        min_lr: f32,
    },
}

/// A learning rate for every step: linear warm-up, then a [`Schedule`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// The rate at the end of warm-up.
    pub base: f32,
    /// What happens after warm-up.
    pub schedule: Schedule,
    /// Steps of linear warm-up (0 for none).
    pub warmup_steps: u64,
}

impl LrSchedule {
    /// The learning rate of 0-based `step`: `base·(step+1)/warmup_steps` for
    /// the first `warmup_steps` steps, then the schedule, counted from the end
    /// of warm-up. Computed in f64, returned as f32: deterministic.
    pub fn lr(&self, step: u64) -> f32 {
        let base = f64::from(self.base);
        if step < self.warmup_steps {
            return (base * (step + 1) as f64 / self.warmup_steps as f64) as f32;
        }
        let after = step - self.warmup_steps;
        let lr = match self.schedule {
            Schedule::Constant => base,
            Schedule::Step { every_steps, gamma } => match after.checked_div(every_steps) {
                Some(decays) => base * f64::from(gamma).powf(decays as f64),
                None => base,
            },
            Schedule::Cosine {
                total_steps,
                min_lr,
            } => {
                let min = f64::from(min_lr);
                let span = total_steps.saturating_sub(self.warmup_steps);
                if after >= span {
                    min
                } else {
                    let phase = std::f64::consts::PI * after as f64 / span as f64;
                    min + (base - min) * 0.5 * (1.0 + phase.cos())
                }
            }
        };
        lr as f32
    }

    /// Checks the rates (finite, >= 0) and `every_steps` (> 0); Err is a
    /// sentence naming the field and the value.
    pub fn validate(&self) -> Result<(), String> {
        non_negative("learning_rate", self.base)?;
        match self.schedule {
            Schedule::Constant => Ok(()),
            Schedule::Step { every_steps, gamma } => {
                if every_steps == 0 {
                    return Err("`every_steps` must be > 0, got 0".to_string());
                }
                non_negative("gamma", gamma)
            }
            Schedule::Cosine { min_lr, .. } => non_negative("min_lr", min_lr),
        }
    }
}

fn non_negative(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("`{name}` must be finite and >= 0, got {v}"))
    }
}

fn unit(name: &str, v: f32) -> Result<(), String> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("`{name}` must be in [0, 1), got {v}"))
    }
}

fn positive(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("`{name}` must be finite and > 0, got {v}"))
    }
}

/// What one optimizer step produced.
#[derive(Clone, Debug)]
pub struct Update {
    /// The updated parameters, in the order they were given.
    pub params: Vec<(String, Tensor)>,
    /// The new optimizer state, in [`Optimizer::init_state`]'s order.
    pub state: Vec<(String, Tensor)>,
    /// `[1]`: the global L2 norm of the gradients, before clipping.
    pub grad_norm: Tensor,
}

const OP: &str = "optimizer";

fn momentum_key(p: &str) -> String {
    format!("opt.momentum.{p}")
}

fn adam_keys(p: &str) -> (String, String) {
    (format!("opt.m.{p}"), format!("opt.v.{p}"))
}

/// The state tensor `key`, which must have `param`'s shape.
fn state_of<'a>(
    state: &'a [(String, Tensor)],
    key: &str,
    param: &Tensor,
) -> Result<&'a Tensor, TensorError> {
    let Some((_, t)) = state.iter().find(|(n, _)| n == key) else {
        return Err(TensorError::argument(
            OP,
            format!("the optimizer state has no `{key}`; start from the state init_state returns"),
        ));
    };
    if t.shape() != param.shape() {
        return Err(TensorError::shape(
            OP,
            format!(
                "`{key}` has shape {} but its parameter has shape {}",
                t.shape(),
                param.shape()
            ),
        ));
    }
    Ok(t)
}

impl Optimizer {
    /// Checks the hyper-parameters (betas and momentum in [0, 1), eps > 0,
    /// weight_decay >= 0, clip > 0, all finite; Nesterov needs momentum);
    /// Err is a sentence naming the field and the value.
    pub fn validate(&self) -> Result<(), String> {
        match self.rule {
            Rule::Sgd { momentum, nesterov } => {
                unit("momentum", momentum)?;
                if nesterov && momentum == 0.0 {
                    return Err("`nesterov` needs `momentum` > 0, got 0".to_string());
                }
            }
            Rule::Adam { beta1, beta2, eps } | Rule::AdamW { beta1, beta2, eps } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                positive("eps", eps)?;
            }
        }
        non_negative("weight_decay", self.weight_decay)?;
        if let Some(clip) = self.clip_grad_norm {
            positive("clip_grad_norm", clip)?;
        }
        Ok(())
    }

    /// Initial (zero) optimizer state for `params`: `opt.m.<p>` then
    /// `opt.v.<p>` per parameter (Adam, AdamW), `opt.momentum.<p>` (SGD with
    /// momentum > 0), nothing for plain SGD.
    pub fn init_state(
        &self,
        device: &Device,
        params: &[(String, Tensor)],
    ) -> Result<Vec<(String, Tensor)>, TensorError> {
        let mut state = Vec::new();
        for (name, p) in params {
            let zeros = || device.fill(&p.shape().to_u32(), 0.0);
            match self.rule {
                Rule::Sgd { momentum: 0.0, .. } => {}
                Rule::Sgd { .. } => state.push((momentum_key(name), zeros()?)),
                Rule::Adam { .. } | Rule::AdamW { .. } => {
                    let (m, v) = adam_keys(name);
                    state.push((m, zeros()?));
                    state.push((v, zeros()?));
                }
            }
        }
        Ok(state)
    }

    /// One update at 0-based `step` (Adam's bias correction uses t = step + 1)
    /// with learning rate `lr`. `grads[i]` is the gradient of `params[i]`;
    /// `state` is what `init_state` or the previous step returned (a missing
    /// entry is an Err naming it). Clipping scales every gradient by
    /// min(1, clip / norm), computed on the device (nothing is read back);
    /// weight decay applies to the clipped gradients, as in PyTorch.
    pub fn step(
        &self,
        device: &Device,
        lr: f32,
        step: u64,
        params: &[(String, Tensor)],
        grads: &[Tensor],
        state: &[(String, Tensor)],
    ) -> Result<Update, TensorError> {
        self.validate().map_err(|m| TensorError::argument(OP, m))?;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(TensorError::argument(
                OP,
                format!("the learning rate must be finite and >= 0, got {lr}"),
            ));
        }
        if grads.len() != params.len() {
            return Err(TensorError::shape(
                OP,
                format!(
                    "{} gradients were given for {} parameters",
                    grads.len(),
                    params.len()
                ),
            ));
        }
        for ((name, p), g) in params.iter().zip(grads) {
            if g.shape() != p.shape() {
                return Err(TensorError::shape(
                    OP,
                    format!(
                        "the gradient of `{name}` has shape {} but the parameter has shape {}",
                        g.shape(),
                        p.shape()
                    ),
                ));
            }
        }
        let dev = device;
        let grad_norm = global_norm(dev, grads)?;
        let scale = match self.clip_grad_norm {
            Some(clip) => Some(clip_scale(dev, &grad_norm, clip)?),
            None => None,
        };

        let wd = self.weight_decay;
        let mut new_params = Vec::with_capacity(params.len());
        let mut new_state = Vec::new();
        for ((name, p), g) in params.iter().zip(grads) {
            let mut g = match &scale {
                Some(s) => dev.binary(BinaryOp::Mul, g, s)?,
                None => g.clone(),
            };
            // L2 weight decay: g + wd·p.
            if wd > 0.0 && !matches!(self.rule, Rule::AdamW { .. }) {
                g = dev.binary(BinaryOp::Add, &g, &dev.scalar(ScalarOp::Mul, p, wd)?)?;
            }
            let updated = match self.rule {
                // p - lr·g: one multiply, one subtract.
                Rule::Sgd { momentum: 0.0, .. } => {
                    dev.binary(BinaryOp::Sub, p, &dev.scalar(ScalarOp::Mul, &g, lr)?)?
                }
                Rule::Sgd { momentum, nesterov } => {
                    let key = momentum_key(name);
                    let old = state_of(state, &key, p)?;
                    let v = dev.binary(
                        BinaryOp::Add,
                        &dev.scalar(ScalarOp::Mul, old, momentum)?,
                        &g,
                    )?;
                    let direction = if nesterov {
                        dev.binary(BinaryOp::Add, &g, &dev.scalar(ScalarOp::Mul, &v, momentum)?)?
                    } else {
                        v.clone()
                    };
                    new_state.push((key, v));
                    dev.binary(
                        BinaryOp::Sub,
                        p,
                        &dev.scalar(ScalarOp::Mul, &direction, lr)?,
                    )?
                }
                Rule::Adam { beta1, beta2, eps } | Rule::AdamW { beta1, beta2, eps } => {
                    let p = match self.rule {
                        Rule::AdamW { .. } if wd > 0.0 => {
                            // Decoupled decay, PyTorch's p·(1 − lr·wd).
                            let keep = 1.0 - f64::from(lr) * f64::from(wd);
                            dev.scalar(ScalarOp::Mul, p, keep as f32)?
                        }
                        _ => p.clone(),
                    };
                    let (m_key, v_key) = adam_keys(name);
                    let (m, v) = (state_of(state, &m_key, &p)?, state_of(state, &v_key, &p)?);
                    let (p, m, v) = adam(dev, &p, &g, m, v, lr, step, beta1, beta2, eps)?;
                    new_state.push((m_key, m));
                    new_state.push((v_key, v));
                    p
                }
            };
            new_params.push((name.clone(), updated));
        }
        Ok(Update {
            params: new_params,
            state: new_state,
            grad_norm,
        })
    }
}

/// One Adam update of `p`, in the `mlp` example trainer's order of operations:
/// m' = b1·m + (1 - b1)·g; v' = b2·v + (1 - b2)·g²; t = step + 1;
/// p' = p - (m'·(lr / (1 - b1^t))) / (sqrt(v'·(1 / (1 - b2^t))) + eps).
#[expect(
    clippy::too_many_arguments,
    reason = "the formula's inputs, named as in it"
)]
fn adam(
    dev: &Device,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    lr: f32,
    step: u64,
    beta1: f32,
    beta2: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor), TensorError> {
    let m = dev.binary(
        BinaryOp::Add,
        &dev.scalar(ScalarOp::Mul, m, beta1)?,
        &dev.scalar(ScalarOp::Mul, g, 1.0 - beta1)?,
    )?;
    let v = dev.binary(
        BinaryOp::Add,
        &dev.scalar(ScalarOp::Mul, v, beta2)?,
        &dev.scalar(ScalarOp::Mul, &dev.unary(UnaryOp::Square, g)?, 1.0 - beta2)?,
    )?;
    let t = step as f64 + 1.0;
    let correction1 = (1.0 - f64::from(beta1).powf(t)) as f32;
    let correction2 = (1.0 - f64::from(beta2).powf(t)) as f32;
    let denominator = dev.scalar(
        ScalarOp::Add,
        &dev.unary(
            UnaryOp::Sqrt,
            &dev.scalar(ScalarOp::Mul, &v, 1.0 / correction2)?,
        )?,
        eps,
    )?;
    let delta = dev.binary(
        BinaryOp::Div,
        &dev.scalar(ScalarOp::Mul, &m, lr / correction1)?,
        &denominator,
    )?;
    Ok((dev.binary(BinaryOp::Sub, p, &delta)?, m, v))
}

/// `[1]`: sqrt(Σ over every gradient of Σ g²).
fn global_norm(dev: &Device, grads: &[Tensor]) -> Result<Tensor, TensorError> {
    let mut total: Option<Tensor> = None;
    for g in grads {
        let flat = dev.reshape(g, &[g.numel() as u32])?;
        let squares = dev.reduce(ReduceOp::Sum, &dev.unary(UnaryOp::Square, &flat)?, 0, true)?;
        total = Some(match total {
            None => squares,
            Some(t) => dev.binary(BinaryOp::Add, &t, &squares)?,
        });
    }
    let total = match total {
        Some(t) => t,
        None => dev.fill(&[1], 0.0)?,
    };
    dev.unary(UnaryOp::Sqrt, &total)
}

/// `[1]`: min(1, clip / norm), as clip / max(norm, clip). Exactly 1 when the
/// norm is at most `clip`, so unclipped gradients keep their bits.
fn clip_scale(dev: &Device, norm: &Tensor, clip: f32) -> Result<Tensor, TensorError> {
    let over = dev.unary(UnaryOp::Relu, &dev.scalar(ScalarOp::Add, norm, -clip)?)?;
    let larger = dev.scalar(ScalarOp::Add, &over, clip)?;
    dev.binary(BinaryOp::Div, &dev.fill(&[1], clip)?, &larger)
}
