//! Preprocessor: one-hot encodes category-code columns, as scikit-learn's
//! `OneHotEncoder`.
//!
//! Each input column holds category codes (the host sends a categorical column as
//! `0..k`, and an unknown category at predict time as -1). The categories of a
//! column are the distinct non-negative codes seen at fit, ascending; the output has
//! one 0/1 column per category of each input column, input column by input column.
//!
//! Config (optional; an unknown key is an error):
//! - `handle_unknown`: what a code not seen at fit becomes: `"ignore"` (default; its
//!   columns are all zero) or `"error"` (an error naming the column, the row and
//!   the code). scikit-learn's default is `"error"`.
//!
//! A missing value (NaN) is an error, at fit and after: impute first (an `imputer`
//! stage with strategy `"most_frequent"` or `"constant"`).
//!
//! State: `categories` (every column's categories, one column after the other) and
//! `sizes` (`[cols]`, how many each column has).

use serde::Deserialize;
use tabular::{Categories, Counts, Table, show};
use tensorlet_sdk::{
    Config, Params, Preprocessor, Result, StreamingPreprocessor, Tensor, bail, ensure,
};

const NAME: &str = "one-hot";

struct OneHot;

/// `[preprocessor.config]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    handle_unknown: HandleUnknown,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum HandleUnknown {
    #[default]
    Ignore,
    Error,
}

impl Preprocessor for OneHot {
    fn fit(config: &Config, x: Tensor) -> Result<Params> {
        config.decode::<Settings>()?;
        let table = Table::read(NAME, &x)?;
        ensure!(table.rows > 0, "{NAME}: cannot fit on zero rows");
        table.ensure_no_missing(NAME)?;
        Categories::fit(NAME, &table)?.to_params()
    }

    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
        let Settings { handle_unknown } = config.decode()?;
        let categories = Categories::from_params(NAME, state)?;
        let table = Table::read_fitted(NAME, &x, categories.cols())?;
        table.ensure_no_missing(NAME)?;
        let width: usize = (0..table.cols).map(|c| categories.of(c).len()).sum();
        let mut out = vec![0.0; table.rows * width];
        for r in 0..table.rows {
            let mut offset = r * width;
            for c in 0..table.cols {
                let code = table.get(r, c);
                match categories.index(c, code) {
                    Some(i) => out[offset + i] = 1.0,
                    None if handle_unknown == HandleUnknown::Error => bail!(
                        "{NAME}: unknown category code {} in column {c} (row {r}); the codes \
                         seen at fit are {}. Set handle_unknown = \"ignore\" to encode it as \
                         all zeros",
                        show(code),
                        categories.list(c)
                    ),
                    None => {}
                }
                offset += categories.of(c).len();
            }
        }
        Tensor::from_list(&[table.rows as u32, width as u32], &out)
    }
}

impl StreamingPreprocessor for OneHot {
    fn accumulate(config: &Config, partial: Params, x: Tensor) -> Result<Params> {
        config.decode::<Settings>()?;
        let table = Table::read(NAME, &x)?;
        table.ensure_no_missing(NAME)?;
        let mut counts = Counts::from_partial(NAME, &partial, table.cols)?;
        counts.add(NAME, &table)?;
        counts.to_partial()
    }

    fn finish(config: &Config, partial: Params) -> Result<Params> {
        config.decode::<Settings>()?;
        let cols = partial.get("sizes").map(|s| s.to_vec().len()).unwrap_or(0);
        ensure!(cols > 0, "{NAME}: cannot fit on zero rows");
        let counts = Counts::from_partial(NAME, &partial, cols)?;
        Categories::from_counts(NAME, &counts)?.to_params()
    }
}

tensorlet_sdk::export_streaming_preprocessor!(OneHot);
