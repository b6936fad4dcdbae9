//! Model: softmax (multinomial logistic) regression. Its forward pass is the
//! class logits `x·w + b`; the host trains it (the cross-entropy, its
//! gradients and the `[training]` optimizer) and predicts with their softmax.
//!
//! Config: `init_std` (std of the normal initial weights, default 0.01).
//! Params: `w` `[features, classes]`, `b` `[classes]`.

use serde::Deserialize;
use tensorlet_sdk::{Config, DataSpec, Mode, Model, Params, Result, Tensor};

struct SoftmaxRegression;

/// `[model.config]`: an unknown key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    init_std: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { init_std: 0.01 }
    }
}

impl Model for SoftmaxRegression {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let Settings { init_std } = config.decode()?;
        let w = Tensor::randn(&[spec.features, spec.outputs], 0.0, init_std, spec.seed)?;
        let b = Tensor::zeros(&[spec.outputs])?;
        Ok(Params::new().with("w", w).with("b", b))
    }

    /// `[batch, features] x [features, classes] + [classes] -> [batch, classes]`.
    fn forward(config: &Config, p: &Params, x: Tensor, _mode: Mode) -> Result<Tensor> {
        config.decode::<Settings>()?; // a predictor-only stage's typo is an error too
        &x.matmul(p.get("w")?)? + p.get("b")?
    }
}

tensorlet_sdk::export_model!(SoftmaxRegression);
