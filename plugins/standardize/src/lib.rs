//! Preprocessor: scales every feature column to mean 0 and standard deviation 1.
//!
//! Config: none (a key is an error). State: `mean` and `std`, both `[features]`, fitted on the training rows
//! (population std; a column whose std is below 1e-8 gets std 1, so a constant column
//! maps to 0 instead of dividing by zero). `transform` computes `(x - mean) / std`.
//!
//! It also fits in chunks (`preprocess-stream`) when training streams: the same
//! statistics, accumulated in f64 chunk by chunk (missing values left out).

use serde::Deserialize;
use tabular::{Moments, Table};
use tensorlet_sdk::{
    Config, Params, Preprocessor, Result, StreamingPreprocessor, Tensor, bail, ensure,
};

const NAME: &str = "standardize";

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

impl StreamingPreprocessor for Standardize {
    fn accumulate(config: &Config, partial: Params, x: Tensor) -> Result<Params> {
        config.decode::<Settings>()?;
        let table = Table::read(NAME, &x)?;
        let mut moments = Moments::from_partial(NAME, &partial, table.cols)?;
        moments.add(&table);
        moments.to_partial()
    }

    fn finish(config: &Config, partial: Params) -> Result<Params> {
        config.decode::<Settings>()?;
        let cols = partial.wide("moments").map_or(0, |m| m.len() / 6);
        let moments = Moments::from_partial(NAME, &partial, cols)?;
        ensure!(moments.rows() > 0.0, "{NAME}: cannot fit on zero rows");
        let mean: Vec<f32> = (0..cols).map(|c| moments.mean(c) as f32).collect();
        let std: Vec<f32> = (0..cols)
            .map(|c| match moments.variance(c).sqrt() as f32 {
                s if s < MIN_STD => 1.0,
                s => s,
            })
            .collect();
        Ok(Params::new()
            .with("mean", Tensor::from_list(&[cols as u32], &mean)?)
            .with("std", Tensor::from_list(&[cols as u32], &std)?))
    }
}

tensorlet_sdk::export_streaming_preprocessor!(Standardize);
