//! Preprocessor: scales each column to a range, as scikit-learn's `MinMaxScaler`.
//!
//! Config (optional; an unknown key is an error):
//! - `feature_range`: `[low, high]`, default `[0, 1]`, `low < high`.
//!
//! Fit: each column's minimum and maximum, ignoring missing values (NaN); a column
//! with no value at fit is an error. State: `scale` and `offset`, both `[cols]`:
//! `scale = (high - low) / (max - min)` and `offset = low - min * scale`, where a
//! constant column's `max - min` counts as 1 (so it maps to `low` instead of
//! dividing by zero). `transform` computes `x * scale + offset`; a missing value
//! stays missing.

use serde::Deserialize;
use tabular::{Moments, Table, nonzero_scale, vector};
use tensorlet_sdk::{
    Config, Params, Preprocessor, Result, StreamingPreprocessor, Tensor, bail, ensure,
};

const NAME: &str = "min-max";

struct MinMax;

/// `[preprocessor.config]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    feature_range: [f32; 2],
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            feature_range: [0.0, 1.0],
        }
    }
}

impl Settings {
    fn read(config: &Config) -> Result<Settings> {
        let s: Settings = config.decode()?;
        let [low, high] = s.feature_range;
        ensure!(
            low < high,
            "{NAME}: `feature_range` must be [low, high] with low < high, got [{low}, {high}]"
        );
        Ok(s)
    }
}

impl Preprocessor for MinMax {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        let [low, high] = Settings::read(config)?.feature_range.map(f64::from);
        let table = Table::read(NAME, &x)?;
        let mut moments = Moments::from_partial(NAME, &Params::new(), table.cols)?;
        moments.add(&table);
        fitted(low, high, &moments)
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        Settings::read(config)?;
        let (scale, offset) = (state.get("scale")?, state.get("offset")?);
        check_shape(&x, scale)?;
        // [rows, cols] * [cols] + [cols], broadcast over rows.
        (&x * scale)? + offset
    }
}

impl StreamingPreprocessor for MinMax {
    fn accumulate(config: &Config, partial: Params, x: Tensor) -> Result<Params> {
        Settings::read(config)?;
        let table = Table::read(NAME, &x)?;
        let mut moments = Moments::from_partial(NAME, &partial, table.cols)?;
        moments.add(&table);
        moments.to_partial()
    }

    fn finish(config: &Config, partial: Params) -> Result<Params> {
        let [low, high] = Settings::read(config)?.feature_range.map(f64::from);
        let cols = partial.wide("moments").map_or(0, |m| m.len() / 6);
        fitted(low, high, &Moments::from_partial(NAME, &partial, cols)?)
    }
}

/// `scale` and `offset` from each column's range.
fn fitted(low: f64, high: f64, moments: &Moments) -> Result<Params> {
    ensure!(moments.rows() > 0.0, "{NAME}: cannot fit on zero rows");
    let (mut scale, mut offset) = (Vec::new(), Vec::new());
    for c in 0..moments.cols() {
        if moments.present(c) == 0.0 {
            bail!(
                "{NAME}: column {c} has no value at fit (all {} rows are missing)",
                moments.rows()
            );
        }
        let (min, max) = moments.range(c);
        let s = (high - low) / nonzero_scale(max - min);
        scale.push(s as f32);
        offset.push((low - min * s) as f32);
    }
    Ok(Params::new()
        .with("scale", vector(&scale)?)
        .with("offset", vector(&offset)?))
}

/// Fails unless `x` is `[rows, cols]` with the columns `fitted` (`[cols]`) has.
fn check_shape(x: &Tensor, fitted: &Tensor) -> Result<()> {
    let (shape, cols) = (x.shape(), fitted.shape());
    ensure!(
        shape.len() == 2 && shape[1..] == cols[..],
        "{NAME}: fitted on [rows, {}] but got x of shape {shape:?}",
        cols.first().copied().unwrap_or(0)
    );
    Ok(())
}

tensorlet_sdk::export_streaming_preprocessor!(MinMax);
