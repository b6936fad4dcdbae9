//! Test plugin: a `model` (world `model`, ABI 0.2) that misbehaves on request,
//! so the host's training of forward-only models can be tested. It is a softmax
//! regression (params `w` `[features, outputs]`, `b` `[outputs]`) whose config's
//! `mode` says how to misbehave:
//! - absent or `"ok"`: behaves;
//! - `"unused-param"`: `init` also returns `unused` `[1]`, which `forward` never reads;
//! - `"opt-param"`: `init` also returns `opt.x`, a name reserved for the host optimizer;
//! - `"bad-shape"`: `forward` returns one row too many;
//! - `"argmax"`: `forward` returns logits that depend on `w` only through `argmax`;
//! - `"error"`: `forward` returns an error whose message contains `misbehave-model`.

use tensorlet_sdk::{Config, DataSpec, Mode, Model, Params, Result, Tensor, bail};

struct MisbehaveModel;

impl Model for MisbehaveModel {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let w = Tensor::randn(&[spec.features, spec.outputs], 0.0, 0.1, spec.seed)?;
        let b = Tensor::zeros(&[spec.outputs])?;
        let p = Params::new().with("w", w).with("b", b);
        Ok(match config.str_or("mode", "ok")? {
            "unused-param" => p.with("unused", Tensor::zeros(&[1])?),
            "opt-param" => p.with("opt.x", Tensor::zeros(&[1])?),
            _ => p,
        })
    }

    fn forward(config: &Config, p: &Params, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let logits = (&x.matmul(p.get("w")?)? + p.get("b")?)?;
        match config.str_or("mode", "ok")? {
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

tensorlet_sdk::export_model!(MisbehaveModel);
