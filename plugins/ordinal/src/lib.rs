//! Preprocessor: maps the category codes seen at fit to `0..k`, as scikit-learn's
//! `OrdinalEncoder`.
//!
//! Each input column holds category codes (the host sends a categorical column as
//! `0..k`, and an unknown category at predict time as -1). The categories of a
//! column are the distinct non-negative codes seen at fit, ascending; the `i`-th
//! becomes `i`, so a column whose training rows hold only some of the codes comes
//! out contiguous. A missing value (NaN) stays missing (scikit-learn's default).
//!
//! Config (all optional; an unknown key is an error):
//! - `handle_unknown`: what a code not seen at fit becomes: `"use_encoded_value"`
//!   (default: `unknown_value`) or `"error"` (an error naming the column, the row
//!   and the code);
//! - `unknown_value`: default -1; with `"use_encoded_value"` it may not be one of a
//!   column's codes `0..k`.
//!
//! State: `categories` (every column's categories, one column after the other) and
//! `sizes` (`[cols]`, how many each column has). Output: the input's shape.

use serde::Deserialize;
use tabular::{Categories, Counts, Table, show};
use tensorlet_sdk::{
    Config, Params, Preprocessor, Result, StreamingPreprocessor, Tensor, bail, ensure,
};

const NAME: &str = "ordinal";

struct Ordinal;

/// `[preprocessor.config]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    handle_unknown: HandleUnknown,
    unknown_value: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            handle_unknown: HandleUnknown::UseEncodedValue,
            unknown_value: -1.0,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum HandleUnknown {
    UseEncodedValue,
    Error,
}

impl Settings {
    fn read(config: &Config) -> Result<Settings> {
        let s: Settings = config.decode()?;
        ensure!(
            s.unknown_value.is_finite() && s.unknown_value.fract() == 0.0,
            "{NAME}: `unknown_value` must be a whole number, got {}",
            show(s.unknown_value)
        );
        Ok(s)
    }
}

impl Preprocessor for Ordinal {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        let settings = Settings::read(config)?;
        let table = Table::read(NAME, &x)?;
        ensure!(table.rows > 0, "{NAME}: cannot fit on zero rows");
        fitted(&settings, Categories::fit(NAME, &table)?)
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        let settings = Settings::read(config)?;
        let categories = Categories::from_params(NAME, state)?;
        let table = Table::read_fitted(NAME, &x, categories.cols())?;
        let mut out = Vec::with_capacity(table.rows * table.cols);
        for r in 0..table.rows {
            for c in 0..table.cols {
                let code = table.get(r, c);
                out.push(match categories.index(c, code) {
                    _ if code.is_nan() => f32::NAN,
                    Some(i) => i as f32,
                    None if settings.handle_unknown == HandleUnknown::Error => bail!(
                        "{NAME}: unknown category code {} in column {c} (row {r}); the codes \
                         seen at fit are {}. Set handle_unknown = \"use_encoded_value\" to \
                         encode it as unknown_value",
                        show(code),
                        categories.list(c)
                    ),
                    None => settings.unknown_value,
                });
            }
        }
        Tensor::from_list(&[table.rows as u32, table.cols as u32], &out)
    }
}

impl StreamingPreprocessor for Ordinal {
    fn accumulate(config: &Config, partial: Params, x: Tensor) -> Result<Params> {
        Settings::read(config)?;
        let table = Table::read(NAME, &x)?;
        let mut counts = Counts::from_partial(NAME, &partial, table.cols)?;
        counts.add(NAME, &table)?;
        counts.to_partial()
    }

    fn finish(config: &Config, partial: Params) -> Result<Params> {
        let settings = Settings::read(config)?;
        let sizes = partial.get("sizes").map(|s| s.to_vec().len()).unwrap_or(0);
        ensure!(sizes > 0, "{NAME}: cannot fit on zero rows");
        let counts = Counts::from_partial(NAME, &partial, sizes)?;
        fitted(&settings, Categories::from_counts(NAME, &counts)?)
    }
}

/// The state of categories learned at fit, after checking that
/// `unknown_value` is not one of their codes.
fn fitted(settings: &Settings, categories: Categories) -> Result<Params> {
    if settings.handle_unknown == HandleUnknown::UseEncodedValue {
        for c in 0..categories.cols() {
            let k = categories.of(c).len();
            ensure!(
                !(0.0..k as f32).contains(&settings.unknown_value),
                "{NAME}: unknown_value = {} is also the code of a category seen at fit \
                     in column {c} (its {k} categories become 0 to {}); choose a negative \
                     value or one of at least {k}",
                show(settings.unknown_value),
                k - 1
            );
        }
    }
    categories.to_params()
}

tensorlet_sdk::export_streaming_preprocessor!(Ordinal);
