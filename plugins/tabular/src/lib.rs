//! What the bundled tabular preprocessors (`imputer`, `one-hot`, `ordinal`,
//! `min-max`, `robust`) share: a batch copied out of the host as columns, NumPy's
//! quantiles, and the categories seen in code columns.
//!
//! The host's conventions, which every one of them follows: a stage gets an f32
//! tensor `[rows, cols]` holding only the columns its `[[preprocessor]]` entry
//! selected; a missing value is NaN; a categorical column holds category codes
//! `0..k` (an unknown category, at predict time, is -1); a boolean is 0 or 1.
//! Columns are named by their 0-based index among the stage's columns.
//!
//! Fitting runs once, so it copies the data out and works in f64 on plain vectors;
//! the scalers' transforms stay on the host as tensor ops.

use tensorlet_sdk::{Params, Result, Tensor, bail, ensure};

/// A `[rows, cols]` batch, copied out of the host (row-major).
pub struct Table {
    /// Rows of the batch.
    pub rows: usize,
    /// Columns of the batch.
    pub cols: usize,
    data: Vec<f32>,
}

impl Table {
    /// Copies `x` out of the host; `plugin` names the stage in the error when `x` is
    /// not 2-D.
    pub fn read(plugin: &str, x: &Tensor) -> Result<Table> {
        let shape = x.shape();
        let [rows, cols] = shape[..] else {
            bail!("{plugin}: x must be [rows, columns], got shape {shape:?}");
        };
        Ok(Table {
            rows: rows as usize,
            cols: cols as usize,
            data: x.to_vec(),
        })
    }

    /// Like [`Table::read`], and fails unless `x` has the `fitted` columns the state
    /// was fitted on.
    pub fn read_fitted(plugin: &str, x: &Tensor, fitted: usize) -> Result<Table> {
        let table = Table::read(plugin, x)?;
        ensure!(
            table.cols == fitted,
            "{plugin}: fitted on [rows, {fitted}] but got x of shape [{}, {}]",
            table.rows,
            table.cols
        );
        Ok(table)
    }

    /// The value in row `r`, column `c`.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    /// Column `c`, top to bottom.
    pub fn column(&self, c: usize) -> impl Iterator<Item = f32> + '_ {
        (0..self.rows).map(move |r| self.get(r, c))
    }

    /// The values of column `c` that are not missing (not NaN), as f64, sorted.
    pub fn present_sorted(&self, c: usize) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .column(c)
            .filter(|x| !x.is_nan())
            .map(f64::from)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Fails, naming the column and row, if any value is missing (NaN).
    pub fn ensure_no_missing(&self, plugin: &str) -> Result<()> {
        for r in 0..self.rows {
            for c in 0..self.cols {
                ensure!(
                    !self.get(r, c).is_nan(),
                    "{plugin}: column {c} has a missing value (NaN) in row {r}; impute it \
                     first (an `imputer` stage before this one, e.g. strategy = \"most_frequent\")"
                );
            }
        }
        Ok(())
    }
}

/// The `q`-th quantile (`q` in `[0, 1]`) of `sorted` (ascending, not empty), with
/// NumPy's default (`linear`) interpolation: position `q * (n - 1)`, between the two
/// values around it.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let h = q * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    // NumPy's `_lerp`: exact at both ends.
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// A divisor of 0 (below 10 f32 epsilons, as scikit-learn's `_handle_zeros_in_scale`
/// for f32 data) becomes 1, so a constant column does not divide by zero.
pub fn nonzero_scale(scale: f64) -> f64 {
    if scale < 10.0 * f64::from(f32::EPSILON) {
        1.0
    } else {
        scale
    }
}

/// A one-dimensional state tensor.
pub fn vector(values: &[f32]) -> Result<Tensor> {
    Tensor::from_list(&[values.len() as u32], values)
}

/// `v` as people write it: `3` rather than `3.0`.
pub fn show(v: f32) -> String {
    format!("{v}")
}

/// The categories of each column: the distinct non-negative values seen at fit,
/// ascending (negative codes are unknown categories and are not learned).
///
/// State: `categories` (every column's categories, one column after the other) and
/// `sizes` (`[cols]`, how many each column has).
pub struct Categories {
    per_column: Vec<Vec<f32>>,
}

impl Categories {
    /// Learns the categories of every column of `table` (missing values are not
    /// categories); a column without any non-negative code is an error.
    pub fn fit(plugin: &str, table: &Table) -> Result<Categories> {
        let mut per_column = Vec::with_capacity(table.cols);
        for c in 0..table.cols {
            let mut seen: Vec<f32> = table.column(c).filter(|v| *v >= 0.0).collect();
            seen.sort_by(f32::total_cmp);
            seen.dedup();
            ensure!(
                !seen.is_empty(),
                "{plugin}: column {c} has no category at fit (every value is negative, \
                 that is unknown)"
            );
            per_column.push(seen);
        }
        Ok(Categories { per_column })
    }

    /// The fitted state.
    pub fn to_params(&self) -> Result<Params> {
        let flat: Vec<f32> = self.per_column.iter().flatten().copied().collect();
        let sizes: Vec<f32> = self.per_column.iter().map(|c| c.len() as f32).collect();
        Ok(Params::new()
            .with("categories", vector(&flat)?)
            .with("sizes", vector(&sizes)?))
    }

    /// Reads the state back.
    pub fn from_params(plugin: &str, state: &Params) -> Result<Categories> {
        let flat = state.get("categories")?.to_vec();
        let sizes = state.get("sizes")?.to_vec();
        let mut per_column = Vec::with_capacity(sizes.len());
        let mut start = 0usize;
        for size in sizes {
            let end = start + size as usize;
            ensure!(
                end <= flat.len(),
                "{plugin}: the state's `sizes` add up to more than its {} `categories`",
                flat.len()
            );
            per_column.push(flat[start..end].to_vec());
            start = end;
        }
        Ok(Categories { per_column })
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.per_column.len()
    }

    /// The categories of column `c`, ascending.
    pub fn of(&self, c: usize) -> &[f32] {
        &self.per_column[c]
    }

    /// The position of `value` among column `c`'s categories, if it is one.
    pub fn index(&self, c: usize, value: f32) -> Option<usize> {
        self.per_column[c]
            .binary_search_by(|probe| probe.total_cmp(&value))
            .ok()
    }

    /// Column `c`'s categories for a message: `0, 1, 2`.
    pub fn list(&self, c: usize) -> String {
        let all = &self.per_column[c];
        let mut shown: Vec<String> = all.iter().take(10).map(|v| show(*v)).collect();
        if all.len() > 10 {
            shown.push(format!("… ({} in all)", all.len()));
        }
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 8.0);
        assert_eq!(quantile(&v, 0.5), 3.0); // median of an even count
        assert_eq!(quantile(&v, 0.25), 1.75); // numpy.percentile([1, 2, 4, 8], 25)
        assert_eq!(quantile(&v, 0.75), 5.0);
        assert_eq!(quantile(&[7.0], 0.3), 7.0);
    }

    #[test]
    fn zero_scales_become_one() {
        assert_eq!(nonzero_scale(0.0), 1.0);
        assert_eq!(nonzero_scale(1e-7), 1.0);
        assert_eq!(nonzero_scale(0.5), 0.5);
    }
}
