//! Preprocessor: passes rows through unchanged.
//!
//! For pipelines whose predictor does its own preprocessing, such as an ONNX
//! model that standardizes its inputs inside the graph. Config: none (a key is
//! an error). State: none. `transform` checks that every batch has as many
//! features as the training rows had (recorded at fit time as `features`, shape
//! `[1]`).

use serde::Deserialize;
use tensorlet_sdk::{Config, Params, Preprocessor, Result, Tensor, bail};

struct Passthrough;

/// `[preprocessor.config]`: no keys, so any key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

impl Preprocessor for Passthrough {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        config.decode::<Settings>()?;
        let shape = x.shape();
        let [_, features] = shape[..] else {
            bail!("passthrough: x must be [rows, features], got shape {shape:?}");
        };
        let features = Tensor::from_list(&[1], &[features as f32])?;
        Ok(Params::new().with("features", features))
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        config.decode::<Settings>()?;
        let want = state.get("features")?.to_vec()[0] as u32;
        let shape = x.shape();
        if shape.len() != 2 || shape[1] != want {
            bail!("passthrough: fitted on [rows, {want}] but got x of shape {shape:?}");
        }
        Ok(x)
    }
}

tensorlet_sdk::export_preprocessor!(Passthrough);
