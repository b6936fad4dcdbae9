//! Preprocessor: fills missing values (NaN), column by column, as scikit-learn's
//! `SimpleImputer`.
//!
//! Config (all optional; an unknown key is an error):
//! - `strategy`: `"mean"` (default), `"median"`, `"most_frequent"` (the smallest
//!   of the most frequent values on a tie; the one for category-code columns) or
//!   `"constant"`;
//! - `fill_value`: the value `"constant"` fills in, default 0 (only with `"constant"`);
//! - `add_indicator`: also output a 0/1 column per input column that had missing
//!   values at fit, 1 where the value was missing, after the imputed columns (in
//!   column order), default false.
//!
//! State: `fill` (`[cols]`, the value each column's gaps get) and `indicator`
//! (`[cols]`, 1 for a column that gets an indicator column). A column with no
//! value at all at fit is an error unless the strategy is `"constant"`
//! (scikit-learn drops such a column; here it must be dropped in the pipeline).
//! Output: `[rows, cols + indicators]`, with no NaN left.

use serde::Deserialize;
use tabular::{Counts, Moments, Table, quantile, vector};
use tensorlet_sdk::{
    Config, Params, Preprocessor, Result, StreamingPreprocessor, Tensor, bail, ensure,
};

const NAME: &str = "imputer";

struct Imputer;

/// `[preprocessor.config]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    strategy: Strategy,
    fill_value: Option<f32>,
    add_indicator: bool,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Strategy {
    #[default]
    Mean,
    Median,
    MostFrequent,
    Constant,
}

impl Settings {
    fn read(config: &Config) -> Result<Settings> {
        let s: Settings = config.decode()?;
        if let Some(v) = s.fill_value {
            ensure!(
                s.strategy == Strategy::Constant,
                "{NAME}: `fill_value` is used only with strategy = \"constant\""
            );
            ensure!(
                v.is_finite(),
                "{NAME}: `fill_value` must be a finite number"
            );
        }
        Ok(s)
    }
}

/// The most frequent value of `sorted` (ascending), the smallest on a tie.
fn most_frequent(sorted: &[f64]) -> f64 {
    let (mut best, mut best_run) = (sorted[0], 0);
    let mut i = 0;
    while i < sorted.len() {
        let run = sorted[i..].iter().take_while(|v| **v == sorted[i]).count();
        if run > best_run {
            (best, best_run) = (sorted[i], run);
        }
        i += run;
    }
    best
}

impl Preprocessor for Imputer {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        let settings = Settings::read(config)?;
        let table = Table::read(NAME, &x)?;
        ensure!(table.rows > 0, "{NAME}: cannot fit on zero rows");
        let mut fill = Vec::with_capacity(table.cols);
        let mut indicator = Vec::with_capacity(table.cols);
        for c in 0..table.cols {
            let present = table.present_sorted(c);
            let missing = present.len() < table.rows;
            indicator.push(if settings.add_indicator && missing {
                1.0
            } else {
                0.0
            });
            if settings.strategy == Strategy::Constant {
                fill.push(settings.fill_value.unwrap_or(0.0));
                continue;
            }
            if present.is_empty() {
                bail!(
                    "{NAME}: column {c} has no value at fit (all {} rows are missing); drop \
                     the column, or use strategy = \"constant\"",
                    table.rows
                );
            }
            let value = match settings.strategy {
                Strategy::Mean => present.iter().sum::<f64>() / present.len() as f64,
                Strategy::Median => quantile(&present, 0.5),
                Strategy::MostFrequent => most_frequent(&present),
                Strategy::Constant => unreachable!("handled above"),
            };
            fill.push(value as f32);
        }
        Ok(Params::new()
            .with("fill", vector(&fill)?)
            .with("indicator", vector(&indicator)?))
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        Settings::read(config)?;
        let fill = state.get("fill")?.to_vec();
        let indicator: Vec<usize> = (state.get("indicator")?.to_vec().iter())
            .enumerate()
            .filter(|(_, flag)| **flag != 0.0)
            .map(|(c, _)| c)
            .collect();
        let table = Table::read_fitted(NAME, &x, fill.len())?;
        let width = table.cols + indicator.len();
        let mut out = Vec::with_capacity(table.rows * width);
        for r in 0..table.rows {
            out.extend((0..table.cols).map(|c| match table.get(r, c) {
                v if v.is_nan() => fill[c],
                v => v,
            }));
            out.extend(
                indicator
                    .iter()
                    .map(|&c| f32::from(u8::from(table.get(r, c).is_nan()))),
            );
        }
        Tensor::from_list(&[table.rows as u32, width as u32], &out)
    }
}

/// Streaming fits keep the moments of each column (mean, and which columns
/// have gaps) and, for `most_frequent`, the count of every value; `median`
/// needs every row at once and cannot stream.
impl StreamingPreprocessor for Imputer {
    fn accumulate(config: &Config, partial: Params, x: Tensor) -> Result<Params> {
        let settings = Settings::read(config)?;
        ensure!(
            settings.strategy != Strategy::Median,
            "{NAME}: strategy = \"median\" needs every training row at once and cannot fit \
             while training streams; use \"mean\" or \"most_frequent\", or train without \
             [training] stream"
        );
        let table = Table::read(NAME, &x)?;
        let mut moments = Moments::from_partial(NAME, &partial, table.cols)?;
        moments.add(&table);
        let mut out = moments.to_partial()?;
        if settings.strategy == Strategy::MostFrequent {
            let mut counts = Counts::from_partial(NAME, &partial, table.cols)?;
            counts.add(NAME, &table)?;
            let mut counted = counts.to_partial()?;
            for name in ["values", "counts", "sizes"] {
                out.insert(name, counted.take(name)?);
            }
        }
        Ok(out)
    }

    fn finish(config: &Config, partial: Params) -> Result<Params> {
        let settings = Settings::read(config)?;
        let cols = partial.wide("moments").map_or(0, |m| m.len() / 6);
        let moments = Moments::from_partial(NAME, &partial, cols)?;
        ensure!(moments.rows() > 0.0, "{NAME}: cannot fit on zero rows");
        let counts = match settings.strategy {
            Strategy::MostFrequent => Some(Counts::from_partial(NAME, &partial, cols)?),
            _ => None,
        };
        let mut fill = Vec::with_capacity(cols);
        let mut indicator = Vec::with_capacity(cols);
        for c in 0..cols {
            let missing = moments.present(c) < moments.rows();
            indicator.push(f32::from(u8::from(settings.add_indicator && missing)));
            if settings.strategy == Strategy::Constant {
                fill.push(settings.fill_value.unwrap_or(0.0));
                continue;
            }
            if moments.present(c) == 0.0 {
                bail!(
                    "{NAME}: column {c} has no value at fit (all {} rows are missing); drop \
                     the column, or use strategy = \"constant\"",
                    moments.rows()
                );
            }
            let value = match &counts {
                // The smallest of the most frequent on a tie: values ascend.
                Some(counts) => {
                    counts
                        .of(c)
                        .into_iter()
                        .fold(
                            (0.0f32, 0.0f64),
                            |best, (v, n)| if n > best.1 { (v, n) } else { best },
                        )
                        .0
                }
                None => moments.mean(c) as f32,
            };
            fill.push(value);
        }
        Ok(Params::new()
            .with("fill", vector(&fill)?)
            .with("indicator", vector(&indicator)?))
    }
}

tensorlet_sdk::export_streaming_preprocessor!(Imputer);
