//! Trainer and predictor: softmax (multinomial logistic) regression, trained by
//! mini-batch gradient descent on the mean cross-entropy.
//!
//! Trainer config: `learning_rate` (default 0.1), `init_std` (std of the normal initial
//! weights, default 0.01), `l2` (weight of `l2/2 * ||w||^2` in the loss, default 0).
//! Params: `w` `[features, classes]`, `b` `[classes]`. Predictor config: none.

use tensorlet_sdk::{
    Config, DataSpec, Params, Predictor, Result, StepOutput, Tensor, Trainer, ensure,
};

struct SoftmaxRegression;

/// `x·w + b`: `[batch, features] x [features, classes] + [classes] -> [batch, classes]`.
fn logits(params: &Params, x: &Tensor) -> Result<Tensor> {
    x.matmul(params.get("w")?)? + params.get("b")?
}

impl Trainer for SoftmaxRegression {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let std = config.f32_or("init_std", 0.01)?;
        let w = Tensor::randn(&[spec.features, spec.classes], 0.0, std, spec.seed)?;
        let b = Tensor::zeros(&[spec.classes])?;
        Ok(Params::new().with("w", w).with("b", b))
    }

    fn step(config: &Config, p: Params, x: Tensor, y: Tensor, _step: u64) -> Result<StepOutput> {
        let lr = config.f32_or("learning_rate", 0.1)?;
        let l2 = config.f32_or("l2", 0.0)?;
        let (w, b) = (p.get("w")?, p.get("b")?);
        let (batch, classes) = (x.dim(0)?, w.dim(1)?);
        ensure!(
            y.shape() == [batch],
            "y has shape {:?}, want [{batch}]",
            y.shape()
        );

        // L = -1/B sum_i sum_j Y_ij log softmax(Z)_ij + l2/2 sum w^2, Z = x·w + b
        let z = logits(&p, &x)?; // [B, C]
        let onehot = y.one_hot(classes)?; // [B, C]
        let log_likelihood = (&onehot * &z.log_softmax(1)?)?
            .sum(1, false)?
            .mean(0, true)?; // [1]
        let mut loss = -log_likelihood.item()?;

        // dL/dZ = (softmax(Z) - Y) / B                                     [B, C]
        let dz = (&z.softmax(1)? - &onehot)? * (1.0 / batch as f32);
        // dL/dw = xᵀ·dL/dZ + l2 w                                          [F, C]
        let mut dw = x.t()?.matmul(&dz)?;
        if l2 != 0.0 {
            loss += 0.5 * l2 * w.square().sum(0, false)?.sum(0, true)?.item()?;
            dw = (&dw + &(w * l2))?;
        }
        // dL/db = sum over rows of dL/dZ                                   [C]
        let db = dz.sum(0, false)?;

        let params = Params::new()
            .with("w", (w - &(&dw * lr))?)
            .with("b", (b - &(&db * lr))?);
        Ok(StepOutput::new(params, loss))
    }
}

impl Predictor for SoftmaxRegression {
    fn predict(_config: &Config, params: &Params, x: Tensor) -> Result<Tensor> {
        logits(params, &x)?.softmax(1)
    }
}

tensorlet_sdk::export_trainer!(SoftmaxRegression);
tensorlet_sdk::export_predictor!(SoftmaxRegression);
