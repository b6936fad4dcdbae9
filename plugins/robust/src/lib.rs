//! Preprocessor: centres each column on its median and scales it by a quantile
//! range, as scikit-learn's `RobustScaler`; outliers move these much less than
//! the mean and standard deviation.
//!
//! Config (all optional; an unknown key is an error):
//! - `quantile_range`: `[q_low, q_high]` in percent, default `[25, 75]` (the
//!   interquartile range), `0 <= q_low <= q_high <= 100`;
//! - `with_centering`: subtract the median, default true;
//! - `with_scaling`: divide by the quantile range, default true.
//!
//! Fit: each column's median and quantiles ignoring missing values (NaN), with
//! NumPy's default linear interpolation; a column with no value at fit is an error.
//! State: `center` and `scale`, both `[cols]` (`center` is 0 without centering,
//! `scale` 1 without scaling, and a range of 0, a constant column, counts as 1).
//! `transform` computes `(x - center) / scale`; a missing value stays missing.

use serde::Deserialize;
use tabular::{Table, nonzero_scale, quantile, vector};
use tensorlet_sdk::{Config, Params, Preprocessor, Result, Tensor, bail, ensure};

const NAME: &str = "robust";

struct Robust;

/// `[preprocessor.config]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    quantile_range: [f64; 2],
    with_centering: bool,
    with_scaling: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            quantile_range: [25.0, 75.0],
            with_centering: true,
            with_scaling: true,
        }
    }
}

impl Settings {
    fn read(config: &Config) -> Result<Settings> {
        let s: Settings = config.decode()?;
        let [low, high] = s.quantile_range;
        ensure!(
            0.0 <= low && low <= high && high <= 100.0,
            "{NAME}: `quantile_range` must be [q_low, q_high] with 0 <= q_low <= q_high <= \
             100, got [{low}, {high}]"
        );
        Ok(s)
    }
}

impl Preprocessor for Robust {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        let settings = Settings::read(config)?;
        let [q_low, q_high] = settings.quantile_range.map(|q| q / 100.0);
        let table = Table::read(NAME, &x)?;
        ensure!(table.rows > 0, "{NAME}: cannot fit on zero rows");
        let (mut center, mut scale) = (Vec::new(), Vec::new());
        for c in 0..table.cols {
            let present = table.present_sorted(c);
            if present.is_empty() {
                bail!(
                    "{NAME}: column {c} has no value at fit (all {} rows are missing)",
                    table.rows
                );
            }
            center.push(if settings.with_centering {
                quantile(&present, 0.5) as f32
            } else {
                0.0
            });
            scale.push(if settings.with_scaling {
                nonzero_scale(quantile(&present, q_high) - quantile(&present, q_low)) as f32
            } else {
                1.0
            });
        }
        Ok(Params::new()
            .with("center", vector(&center)?)
            .with("scale", vector(&scale)?))
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        Settings::read(config)?;
        let (center, scale) = (state.get("center")?, state.get("scale")?);
        let (shape, cols) = (x.shape(), center.shape());
        ensure!(
            shape.len() == 2 && shape[1..] == cols[..],
            "{NAME}: fitted on [rows, {}] but got x of shape {shape:?}",
            cols.first().copied().unwrap_or(0)
        );
        // [rows, cols] - [cols] and / [cols] broadcast over rows.
        (&x - center)? / scale
    }
}

tensorlet_sdk::export_preprocessor!(Robust);
