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
use tabular::{Table, nonzero_scale, vector};
use tensorlet_sdk::{Config, Params, Preprocessor, Result, Tensor, bail, ensure};

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
        ensure!(table.rows > 0, "{NAME}: cannot fit on zero rows");
        let (mut scale, mut offset) = (Vec::new(), Vec::new());
        for c in 0..table.cols {
            let present = table.present_sorted(c);
            let (Some(min), Some(max)) = (present.first(), present.last()) else {
                bail!(
                    "{NAME}: column {c} has no value at fit (all {} rows are missing)",
                    table.rows
                );
            };
            let s = (high - low) / nonzero_scale(max - min);
            scale.push(s as f32);
            offset.push((low - min * s) as f32);
        }
        Ok(Params::new()
            .with("scale", vector(&scale)?)
            .with("offset", vector(&offset)?))
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        Settings::read(config)?;
        let (scale, offset) = (state.get("scale")?, state.get("offset")?);
        check_shape(&x, scale)?;
        // [rows, cols] * [cols] + [cols], broadcast over rows.
        (&x * scale)? + offset
    }
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

tensorlet_sdk::export_preprocessor!(MinMax);
