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

/// Per-column moments and extremes of the present (non-NaN) values, kept
/// between the chunks of a streaming fit (`preprocess-stream`): count, mean and
/// sum of squared deviations merged chunk by chunk (Chan et al.), in f64.
///
/// Partial state: `moments`, wide (see `Params::put_wide`), six values per
/// column: present count, mean, squared deviations, minimum, maximum, rows.
pub struct Moments {
    cols: usize,
    /// `[present, mean, m2, min, max, rows]` per column.
    values: Vec<[f64; 6]>,
}

impl Moments {
    /// The moments in `partial`, or none yet (the first chunk) for `cols` columns.
    pub fn from_partial(plugin: &str, partial: &Params, cols: usize) -> Result<Moments> {
        if !partial.contains("moments") {
            let empty = [0.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0];
            return Ok(Moments {
                cols,
                values: vec![empty; cols],
            });
        }
        let flat = partial.wide("moments")?;
        ensure!(
            flat.len() == cols * 6,
            "{plugin}: the partial state holds {} columns but the chunk has {cols}",
            flat.len() / 6
        );
        let values = flat
            .chunks(6)
            .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
            .collect();
        Ok(Moments { cols, values })
    }

    /// Folds every row of `table` in.
    pub fn add(&mut self, table: &Table) {
        for (c, m) in self.values.iter_mut().enumerate().take(self.cols) {
            let present: Vec<f64> = table
                .column(c)
                .filter(|v| !v.is_nan())
                .map(f64::from)
                .collect();
            m[5] += table.rows as f64;
            if present.is_empty() {
                continue;
            }
            let nb = present.len() as f64;
            let mean_b = present.iter().sum::<f64>() / nb;
            let m2_b: f64 = present.iter().map(|v| (v - mean_b).powi(2)).sum();
            let (na, mean_a, m2_a) = (m[0], m[1], m[2]);
            let n = na + nb;
            let delta = mean_b - mean_a;
            m[0] = n;
            m[1] = mean_a + delta * nb / n;
            m[2] = m2_a + m2_b + delta * delta * na * nb / n;
            for v in present {
                m[3] = m[3].min(v);
                m[4] = m[4].max(v);
            }
        }
    }

    /// The partial state to hand back to the host.
    pub fn to_partial(&self) -> Result<Params> {
        let flat: Vec<f64> = self.values.iter().flatten().copied().collect();
        let mut p = Params::new();
        p.put_wide("moments", &flat)?;
        Ok(p)
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Present values of column `c`.
    pub fn present(&self, c: usize) -> f64 {
        self.values[c][0]
    }

    /// Rows seen.
    pub fn rows(&self) -> f64 {
        self.values.first().map_or(0.0, |m| m[5])
    }

    /// Mean of column `c`'s present values.
    pub fn mean(&self, c: usize) -> f64 {
        self.values[c][1]
    }

    /// Population variance of column `c`'s present values.
    pub fn variance(&self, c: usize) -> f64 {
        let m = &self.values[c];
        if m[0] > 0.0 { m[2] / m[0] } else { 0.0 }
    }

    /// Smallest and largest present value of column `c`.
    pub fn range(&self, c: usize) -> (f64, f64) {
        (self.values[c][3], self.values[c][4])
    }
}

/// How often each present value of each column was seen, kept between the
/// chunks of a streaming fit: categories, or a most-frequent value.
///
/// Partial state: `values` (every column's distinct values, ascending, one
/// column after the other), `counts` (wide, one per value) and `sizes`
/// (`[cols]`).
pub struct Counts {
    per_column: Vec<std::collections::BTreeMap<u32, f64>>,
}

/// The most distinct values a column may have in a streaming fit of [`Counts`].
pub const MAX_DISTINCT: usize = 1 << 16;

impl Counts {
    /// The counts in `partial`, or none yet for `cols` columns.
    pub fn from_partial(plugin: &str, partial: &Params, cols: usize) -> Result<Counts> {
        let mut per_column = vec![std::collections::BTreeMap::new(); cols];
        if !partial.contains("values") {
            return Ok(Counts { per_column });
        }
        let values = partial.get("values")?.to_vec();
        let counts = partial.wide("counts")?;
        let sizes = partial.get("sizes")?.to_vec();
        ensure!(
            sizes.len() == cols && values.len() == counts.len(),
            "{plugin}: the partial state holds {} columns but the chunk has {cols}",
            sizes.len()
        );
        let mut at = 0usize;
        for (c, size) in sizes.iter().enumerate() {
            for i in at..at + *size as usize {
                per_column[c].insert(values[i].to_bits(), counts[i]);
            }
            at += *size as usize;
        }
        Ok(Counts { per_column })
    }

    /// Counts every present value of `table`; more than [`MAX_DISTINCT`]
    /// distinct values in a column is an error.
    pub fn add(&mut self, plugin: &str, table: &Table) -> Result<()> {
        for (c, seen) in self.per_column.iter_mut().enumerate() {
            for v in table.column(c).filter(|v| !v.is_nan()) {
                // +0.0 for -0.0, so that both count as one value.
                *seen.entry((v + 0.0).to_bits()).or_insert(0.0) += 1.0;
            }
            ensure!(
                seen.len() <= MAX_DISTINCT,
                "{plugin}: column {c} has more than {MAX_DISTINCT} distinct values, too many                  to count while streaming; is it a category column?"
            );
        }
        Ok(())
    }

    /// Column `c`'s distinct values, ascending, with their counts.
    pub fn of(&self, c: usize) -> Vec<(f32, f64)> {
        let mut v: Vec<(f32, f64)> = self.per_column[c]
            .iter()
            .map(|(bits, n)| (f32::from_bits(*bits), *n))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.per_column.len()
    }

    /// The partial state to hand back to the host.
    pub fn to_partial(&self) -> Result<Params> {
        let (mut values, mut counts, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..self.cols() {
            let of = self.of(c);
            sizes.push(of.len() as f32);
            for (v, n) in of {
                values.push(v);
                counts.push(n);
            }
        }
        let mut p = Params::new()
            .with("values", vector(&values)?)
            .with("sizes", vector(&sizes)?);
        p.put_wide("counts", &counts)?;
        Ok(p)
    }
}

impl Categories {
    /// The categories of counted columns: their non-negative values; a column
    /// without any is an error, as in [`Categories::fit`].
    pub fn from_counts(plugin: &str, counts: &Counts) -> Result<Categories> {
        let mut per_column = Vec::with_capacity(counts.cols());
        for c in 0..counts.cols() {
            let seen: Vec<f32> = counts
                .of(c)
                .into_iter()
                .map(|(v, _)| v)
                .filter(|v| *v >= 0.0)
                .collect();
            ensure!(
                !seen.is_empty(),
                "{plugin}: column {c} has no category at fit (every value is negative,                  that is unknown)"
            );
            per_column.push(seen);
        }
        Ok(Categories { per_column })
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
    fn moments_merged_chunk_by_chunk_equal_one_pass() {
        let rows: Vec<[f64; 2]> = (0..10)
            .map(|i| {
                [
                    f64::from(i) * 1.5 + 1000.0,
                    if i % 3 == 0 { f64::NAN } else { f64::from(i) },
                ]
            })
            .collect();
        let mut merged = Moments {
            cols: 2,
            values: vec![[0.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0]; 2],
        };
        for chunk in rows.chunks(3) {
            let data: Vec<f32> = chunk.iter().flatten().map(|v| *v as f32).collect();
            merged.add(&Table {
                rows: chunk.len(),
                cols: 2,
                data,
            });
        }
        assert_eq!(merged.rows(), 10.0);
        for c in 0..2 {
            let present: Vec<f64> = rows.iter().map(|r| r[c]).filter(|v| !v.is_nan()).collect();
            let n = present.len() as f64;
            let mean = present.iter().sum::<f64>() / n;
            let var = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            assert_eq!(merged.present(c), n);
            assert!((merged.mean(c) - mean).abs() < 1e-9, "{c}");
            assert!((merged.variance(c) - var).abs() < 1e-9, "{c}");
            let min = present.iter().copied().fold(f64::INFINITY, f64::min);
            let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(merged.range(c), (min, max));
        }
    }

    #[test]
    fn zero_scales_become_one() {
        assert_eq!(nonzero_scale(0.0), 1.0);
        assert_eq!(nonzero_scale(1e-7), 1.0);
        assert_eq!(nonzero_scale(0.5), 0.5);
    }
}
