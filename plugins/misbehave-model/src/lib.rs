//! Test plugin: a `model` (world `model`, ABI 0.2) that misbehaves on request,
//! so the host's training of forward-only models can be tested. It is a softmax
//! regression (params `w` `[features, outputs]`, `b` `[outputs]`) whose config's
//! `mode` says how to misbehave:
//! - absent or `"ok"`: behaves;
//! - `"unused-param"`: `init` also returns `unused` `[1]`, which `forward` never reads;
//! - `"opt-param"`: `init` also returns `opt.x`, a name reserved for the host optimizer;
//! - `"bad-shape"`: `forward` returns one row too many;
//! - `"argmax"`: `forward` returns logits that depend on `w` only through `argmax`;
//! - `"error"`: `forward` returns an error whose message contains `misbehave-model`;
//! - `"batch-norm"`: `init` also returns `state.bn.mean` and `state.bn.var`
//!   `[features]`, and `forward` batch-normalizes `x` with them first;
//! - `"dropout"`: `forward` drops half of `x` (seed 7) in training;
//! - `"probe:<op>"`: `forward` first calls a tensor op with bad arguments
//!   (see [`probe`]) and returns its error.

use tensorlet_sdk::{
    BatchNorm, Config, Conv2d, CrossEntropy, DataSpec, Mode, Model, Params, Pool2d, Result, Tensor,
    bail,
};

struct MisbehaveModel;

impl Model for MisbehaveModel {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let w = Tensor::randn(&[spec.features, spec.outputs], 0.0, 0.1, spec.seed)?;
        let b = Tensor::zeros(&[spec.outputs])?;
        let p = Params::new().with("w", w).with("b", b);
        Ok(match config.str_or("mode", "ok")? {
            "unused-param" => p.with("unused", Tensor::zeros(&[1])?),
            "opt-param" => p.with("opt.x", Tensor::zeros(&[1])?),
            "batch-norm" => p
                .with("state.bn.mean", Tensor::zeros(&[spec.features])?)
                .with("state.bn.var", Tensor::ones(&[spec.features])?),
            _ => p,
        })
    }

    fn forward(config: &Config, p: &Params, x: Tensor, mode: Mode) -> Result<Tensor> {
        let mode_name = config.str_or("mode", "ok")?;
        let train = matches!(mode, Mode::Train);
        let x = match mode_name {
            "batch-norm" => x.batch_norm(
                &BatchNorm {
                    weight: None,
                    bias: None,
                    running_mean: p.get("state.bn.mean")?,
                    running_var: p.get("state.bn.var")?,
                    momentum: 0.1,
                    eps: 1e-5,
                },
                train,
            )?,
            "dropout" if train => x.dropout(0.5, 7)?,
            m => {
                if let Some(op) = m.strip_prefix("probe:") {
                    probe(op)?;
                }
                x
            }
        };
        let logits = (&x.matmul(p.get("w")?)? + p.get("b")?)?;
        match mode_name {
            "bad-shape" => logits.concat(&Tensor::zeros(&[1, logits.dim(1)?])?, 0),
            "argmax" => {
                let classes = logits.dim(1)?;
                logits.argmax(1, false)?.one_hot(classes)
            }
            "error" => bail!("misbehave-model: forward fails as asked"),
            _ => Ok(logits),
        }
    }
}

/// Calls the tensor op `op` with arguments it must refuse; the host's error
/// (which names the op and the offending values) is the result.
fn probe(op: &str) -> Result<()> {
    let image = Tensor::zeros(&[1, 1, 4, 4])?;
    let kernel = Tensor::zeros(&[1, 1, 3, 3])?;
    match op {
        "conv-stride-0" => {
            image.conv2d(&kernel, None, Conv2d::default().stride(0))?;
        }
        "conv-kernel-too-large" => {
            let big = Tensor::zeros(&[1, 1, 5, 5])?;
            image.conv2d(&big, None, Conv2d::default())?;
        }
        "conv-rank" => {
            Tensor::zeros(&[4, 4])?.conv2d(&kernel, None, Conv2d::default())?;
        }
        "pool-too-large" => {
            image.max_pool2d(Pool2d::new(5))?;
        }
        "embedding-index" => {
            let ids = Tensor::from_i64(&[2], &[1, 9])?;
            Tensor::zeros(&[4, 2])?.embedding(&ids)?;
        }
        "embedding-dtype" => {
            let ids = Tensor::from_list(&[2], &[0.0, 1.0])?;
            Tensor::zeros(&[4, 2])?.embedding(&ids)?;
        }
        "bmm-shape" => {
            Tensor::zeros(&[2, 3, 4])?.matmul_t(&Tensor::zeros(&[2, 5, 6])?, false, false)?;
        }
        "permute-axes" => {
            image.permute(&[0, 0, 1, 2])?;
        }
        "cross-entropy-class" => {
            let logits = Tensor::zeros(&[2, 3])?;
            let target = Tensor::from_i64(&[2], &[0, 3])?;
            logits.cross_entropy(&target, &CrossEntropy::default())?;
        }
        "i64-to-list" => {
            Tensor::from_list(&[1], &[0.5])?.to_i64_vec()?;
        }
        other => bail!("misbehave-model: no probe `{other}`"),
    }
    bail!("misbehave-model: probe `{op}` was not refused")
}

tensorlet_sdk::export_model!(MisbehaveModel);
