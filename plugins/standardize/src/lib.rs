//! Preprocessor: scales every feature column to mean 0 and standard deviation 1.
//!
//! Config: none (a key is an error). State: `mean` and `std`, both `[features]`, fitted on the training rows
//! (population std; a column whose std is below 1e-8 gets std 1, so a constant column
//! maps to 0 instead of dividing by zero). `transform` computes `(x - mean) / std`.

use serde::Deserialize;
use tensorlet_sdk::{Config, Params, Preprocessor, Result, Tensor, bail, ensure};

/// Columns with a smaller std are treated as constant.
const MIN_STD: f32 = 1e-8;

struct Standardize;

/// `[preprocessor.config]`: no keys, so any key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

impl Preprocessor for Standardize {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        config.decode::<Settings>()?;
        let shape = x.shape();
        let [rows, features] = shape[..] else {
            bail!("standardize: x must be [rows, features], got shape {shape:?}");
        };
        ensure!(rows > 0, "standardize: cannot fit on zero rows");
        let mean = x.mean(0, false)?; // [features]
        let var = (&x - &mean)?.square().mean(0, false)?; // [features]: mean((x - mean)^2)
        // `std` is one number per feature: fixing constant columns here is clearer than
        // with tensor ops, and this runs once.
        let std: Vec<f32> = var
            .sqrt()
            .to_vec()
            .into_iter()
            .map(|s| if s < MIN_STD { 1.0 } else { s })
            .collect();
        let std = Tensor::from_list(&[features], &std)?;
        Ok(Params::new().with("mean", mean).with("std", std))
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        config.decode::<Settings>()?;
        let (mean, std) = (state.get("mean")?, state.get("std")?);
        let (shape, fitted) = (x.shape(), mean.shape());
        if shape.len() != 2 || shape[1..] != fitted[..] {
            bail!(
                "standardize: fitted on [rows, {}] (mean has shape {fitted:?}) but got x of shape {shape:?}",
                fitted.first().copied().unwrap_or(0)
            );
        }
        // [rows, features] - [features] and / [features] broadcast over rows.
        (&x - mean)? / std
    }
}

tensorlet_sdk::export_preprocessor!(Standardize);
