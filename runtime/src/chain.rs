//! The preprocessing chain: one or more preprocessors, each on the columns
//! it names, in order — scikit-learn's `ColumnTransformer` inside a
//! `Pipeline`.
//!
//! A stage gets its `columns` (every column when it names none), in the
//! order it names them, and its output columns take the place of those
//! columns: at the position of the first of them, the other columns passing
//! through in their order. The next stage sees the result. An output column
//! keeps its input's name when the stage keeps the width; otherwise the
//! outputs of a stage are named `<section>:0`, `<section>:1`… (`preprocessor.2:0`),
//! which a later stage may name too.
//!
//! A chain of one stage keeps its fitted state under the plugin's own names,
//! as a single `[preprocessor]` always has; in a longer chain each stage's
//! state is stored under `<n>/` (`2/fill` for the second stage's `fill`).
//! A stage without `columns` in a chain of one gets the tensor as is.

use tensorlet_gpu::{Device, Tensor};

use crate::error::{Result, RuntimeError};
use crate::pipeline::heading;
use crate::plugin::NamedTensors;
use crate::train::{StagePlugin, check_transformed};

/// One preprocessor of a chain.
pub struct ChainStage {
    /// The loaded plugin.
    pub stage: StagePlugin,
    /// Its section: `preprocessor`, `preprocessor.2`…
    pub section: String,
    /// The columns it transforms, by name; all of them when `None`.
    pub columns: Option<Vec<String>>,
}

/// The preprocessors of a pipeline or a model, in order.
pub struct Chain {
    /// The stages; at least one.
    pub stages: Vec<ChainStage>,
}

impl Chain {
    /// The stages' plugins, in order.
    pub fn plugins(&self) -> impl Iterator<Item = &StagePlugin> {
        self.stages.iter().map(|s| &s.stage)
    }

    /// The first stage's plugin.
    pub fn first(&self) -> &StagePlugin {
        &self.stages[0].stage
    }

    /// The stages' plugin names, joined for messages: `imputer → one-hot`.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.plugins().map(|s| s.plugin.name()).collect();
        names.join(" → ")
    }

    /// Whether the input goes to the one stage untouched, and its state
    /// keeps the plugin's names.
    pub(crate) fn is_plain(&self) -> bool {
        self.stages.len() == 1 && self.stages[0].columns.is_none()
    }

    fn prefix(&self, i: usize) -> Option<String> {
        (self.stages.len() > 1).then(|| format!("{}/", i + 1))
    }

    /// Checks, before any fitting, that every column a stage names is an
    /// input column (`names`) or an output of an earlier stage
    /// (`<section>:<n>`).
    pub fn check_columns(&self, names: &[String]) -> Result<()> {
        for (i, s) in self.stages.iter().enumerate() {
            for c in s.columns.iter().flatten() {
                let earlier = self.stages[..i].iter().any(|e| {
                    c.strip_prefix(&e.section)
                        .and_then(|r| r.strip_prefix(':'))
                        .is_some_and(|n| n.parse::<usize>().is_ok())
                });
                if !names.contains(c) && !earlier {
                    return Err(RuntimeError::Pipeline {
                        path: heading(&s.section).into(),
                        message: format!(
                            "columns: `{c}` is not a feature column; the feature columns are {} \
                             (see [data] features and drop)",
                            names.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Fits every stage in turn on the training rows `x`, whose columns are
    /// `names`: each on its columns of what the stages before it gave.
    /// Returns the chain's state.
    pub fn fit(&self, device: &Device, names: &[String], x: &Tensor) -> Result<NamedTensors> {
        if self.is_plain() {
            let s = &self.stages[0].stage;
            return s.plugin.fit(&s.config, x);
        }
        let mut state = NamedTensors::new();
        let mut table = Table::new(device, names, x)?;
        for (i, s) in self.stages.iter().enumerate() {
            let picked = table.pick(s)?;
            let input = table.columns(device, &picked)?;
            let fitted = s.stage.plugin.fit(&s.stage.config, &input)?;
            let out = s.stage.plugin.transform(&s.stage.config, &fitted, &input)?;
            let out = check_transformed(&s.stage, &input, out)?;
            table.replace(device, s, &picked, &out)?;
            let prefix = self.prefix(i).unwrap_or_default();
            state.extend(fitted.into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)));
        }
        Ok(state)
    }

    /// The state of stage `i` out of the chain's state.
    fn state_of(&self, i: usize, state: &NamedTensors) -> NamedTensors {
        match self.prefix(i) {
            None => state.clone(),
            Some(p) => state
                .iter()
                .filter_map(|(n, t)| n.strip_prefix(&p).map(|n| (n.to_string(), t.clone())))
                .collect(),
        }
    }

    /// Transforms rows `x` (columns `names`) with a fitted chain.
    pub fn transform(
        &self,
        device: &Device,
        names: &[String],
        state: &NamedTensors,
        x: &Tensor,
    ) -> Result<Tensor> {
        if self.is_plain() {
            let s = &self.stages[0].stage;
            let out = s.plugin.transform(&s.config, state, x)?;
            return check_transformed(s, x, out);
        }
        self.through(device, names, state, x, self.stages.len())?
            .into_tensor(device)
    }

    /// Rows `x` (columns `names`) through the first `stages` stages of a
    /// chain with columns, whose state so far is `state`.
    fn through(
        &self,
        device: &Device,
        names: &[String],
        state: &NamedTensors,
        x: &Tensor,
        stages: usize,
    ) -> Result<Table> {
        let mut table = Table::new(device, names, x)?;
        for (i, s) in self.stages.iter().enumerate().take(stages) {
            let picked = table.pick(s)?;
            let input = table.columns(device, &picked)?;
            let own = self.state_of(i, state);
            let out = s.stage.plugin.transform(&s.stage.config, &own, &input)?;
            let out = check_transformed(&s.stage, &input, out)?;
            table.replace(device, s, &picked, &out)?;
        }
        Ok(table)
    }

    /// Fits every stage in turn over training rows that arrive in chunks,
    /// as training that streams reads them: one pass over `passes.scan` per
    /// stage, each chunk taken through the stages already fitted. A stage
    /// that exports `preprocess-stream` accumulates every chunk; any other
    /// is fitted on the rows `passes.sampled` picks, and `passes.sampling`
    /// is told its name first. Returns the chain's state.
    pub fn fit_in_passes(
        &self,
        device: &Device,
        names: &[String],
        passes: Passes<'_>,
    ) -> Result<NamedTensors> {
        let Passes {
            scan,
            sampled,
            sampling,
        } = passes;
        let mut state = NamedTensors::new();
        for (i, s) in self.stages.iter().enumerate() {
            let (plugin, config) = (&s.stage.plugin, &s.stage.config);
            let chunked = plugin.fits_in_chunks();
            if !chunked {
                sampling(&s.section, plugin.name());
            }
            let mut partial = NamedTensors::new();
            let (mut sample, mut width, mut row) = (Vec::new(), 0usize, 0u64);
            scan(&mut |chunk: &Tensor| {
                let input = if self.is_plain() {
                    chunk.clone()
                } else {
                    let table = self.through(device, names, &state, chunk, i)?;
                    let picked = table.pick(s)?;
                    table.columns(device, &picked)?
                };
                if chunked {
                    partial = plugin.accumulate(config, &partial, &input)?;
                    return Ok(());
                }
                let dims = input.shape().dims().to_vec();
                width = dims[1];
                let values = device.to_vec(&input)?;
                for r in values.chunks_exact(width.max(1)) {
                    if sampled(row) {
                        sample.extend_from_slice(r);
                    }
                    row += 1;
                }
                Ok(())
            })?;
            let fitted = if chunked {
                plugin.finish_fit(config, &partial)?
            } else {
                let rows = sample.len().checked_div(width).unwrap_or(0);
                let x = device.from_vec(&[rows as u32, width as u32], sample)?;
                plugin.fit(config, &x)?
            };
            let prefix = self.prefix(i).unwrap_or_default();
            state.extend(fitted.into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)));
        }
        Ok(state)
    }

    /// [`Chain::transform`] with the plugins driven by an async executor, in
    /// one store.
    pub(crate) async fn transform_in(
        &self,
        store: &mut wasmtime::Store<crate::host::Ctx>,
        device: &Device,
        names: &[String],
        state: &NamedTensors,
        x: &Tensor,
    ) -> Result<Tensor> {
        if self.is_plain() {
            let s = &self.stages[0].stage;
            let out = s.plugin.transform_in(store, &s.config, state, x).await?;
            return check_transformed(s, x, out);
        }
        let mut table = Table::new(device, names, x)?;
        for (i, s) in self.stages.iter().enumerate() {
            let picked = table.pick(s)?;
            let input = table.columns(device, &picked)?;
            let own = self.state_of(i, state);
            let out = s
                .stage
                .plugin
                .transform_in(store, &s.stage.config, &own, &input)
                .await?;
            let out = check_transformed(&s.stage, &input, out)?;
            table.replace(device, s, &picked, &out)?;
        }
        table.into_tensor(device)
    }
}

/// What [`Passes::scan`] calls with each chunk of training rows.
pub type ChunkFn<'c> = dyn FnMut(&Tensor) -> Result<()> + 'c;

/// The training rows as [`Chain::fit_in_passes`] reads them.
pub struct Passes<'a> {
    /// Calls its argument with every chunk of training rows, `[rows,
    /// columns]`, in the same order on every call.
    pub scan: &'a mut dyn FnMut(&mut ChunkFn<'_>) -> Result<()>,
    /// Whether the training row of this number (counted across chunks) is in
    /// the sample a stage without `preprocess-stream` is fitted on.
    pub sampled: &'a dyn Fn(u64) -> bool,
    /// Told the section and plugin name of each stage fitted on the sample.
    pub sampling: &'a mut dyn FnMut(&str, &str),
}

/// A table between stages: named columns of row-major values.
struct Table {
    names: Vec<String>,
    rows: usize,
    values: Vec<f32>,
}

impl Table {
    fn new(device: &Device, names: &[String], x: &Tensor) -> Result<Table> {
        let rows = x.shape().dims()[0];
        Ok(Table {
            names: names.to_vec(),
            rows,
            values: device.to_vec(x)?,
        })
    }

    /// The indices of a stage's columns, or an error naming the missing one
    /// and the columns there are.
    fn pick(&self, s: &ChainStage) -> Result<Vec<usize>> {
        let Some(columns) = &s.columns else {
            return Ok((0..self.names.len()).collect());
        };
        columns
            .iter()
            .map(|c| {
                self.names
                    .iter()
                    .position(|n| n == c)
                    .ok_or_else(|| RuntimeError::Pipeline {
                        path: heading(&s.section).into(),
                        message: format!(
                            "columns: `{c}` is not a column here; the columns at this stage are \
                             {}",
                            self.names.join(", ")
                        ),
                    })
            })
            .collect()
    }

    /// Columns `picked` as a `[rows, picked]` tensor.
    fn columns(&self, device: &Device, picked: &[usize]) -> Result<Tensor> {
        let width = self.names.len();
        let v = select(&self.values, width, picked);
        Ok(device.from_vec(&[self.rows as u32, picked.len() as u32], v)?)
    }

    /// Puts a stage's output in place of its columns `picked`.
    fn replace(
        &mut self,
        device: &Device,
        s: &ChainStage,
        picked: &[usize],
        out: &Tensor,
    ) -> Result<()> {
        let out_width = out.shape().dims()[1];
        let out_names: Vec<String> = if out_width == picked.len() {
            picked.iter().map(|&c| self.names[c].clone()).collect()
        } else {
            (0..out_width)
                .map(|j| format!("{}:{j}", s.section))
                .collect()
        };
        let out = device.to_vec(out)?;
        let (names, values) = splice(
            (&self.names, &self.values),
            picked,
            (&out_names, &out),
            self.rows,
        );
        self.names = names;
        self.values = values;
        Ok(())
    }

    fn into_tensor(self, device: &Device) -> Result<Tensor> {
        let shape = [self.rows as u32, self.names.len() as u32];
        Ok(device.from_vec(&shape, self.values)?)
    }
}

/// Columns `picked` of row-major `values` that are `width` wide.
fn select(values: &[f32], width: usize, picked: &[usize]) -> Vec<f32> {
    let rows = values.len().checked_div(width).unwrap_or(0);
    let mut v = Vec::with_capacity(rows * picked.len());
    for row in values.chunks_exact(width.max(1)).take(rows) {
        v.extend(picked.iter().map(|&c| row[c]));
    }
    v
}

/// The table with columns `picked` removed and `out`'s columns in their
/// place, at the position of the first picked column.
fn splice(
    (names, values): (&[String], &[f32]),
    picked: &[usize],
    (out_names, out): (&[String], &[f32]),
    rows: usize,
) -> (Vec<String>, Vec<f32>) {
    let width = names.len();
    let kept: Vec<usize> = (0..width).filter(|c| !picked.contains(c)).collect();
    let first = picked.iter().min().copied().unwrap_or(width);
    let at = kept.iter().filter(|&&c| c < first).count();
    let (before, after) = kept.split_at(at);
    let mut new_names: Vec<String> = before.iter().map(|&c| names[c].clone()).collect();
    new_names.extend(out_names.iter().cloned());
    new_names.extend(after.iter().map(|&c| names[c].clone()));
    let out_width = out_names.len();
    let mut v = Vec::with_capacity(rows * new_names.len());
    for r in 0..rows {
        let row = &values[r * width..(r + 1) * width];
        v.extend(before.iter().map(|&c| row[c]));
        v.extend_from_slice(&out[r * out_width..(r + 1) * out_width]);
        v.extend(after.iter().map(|&c| row[c]));
    }
    (new_names, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn select_takes_columns_in_the_order_named() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(select(&v, 3, &[2, 0]), [3.0, 1.0, 6.0, 4.0]);
        assert_eq!(select(&v, 3, &[]), Vec::<f32>::new());
    }

    #[test]
    fn splice_puts_outputs_where_the_first_input_was() {
        // Columns a b c d; a stage on [c, a] gives three columns.
        let cols = names(&["a", "b", "c", "d"]);
        let v = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
        let out_names = names(&["x", "y", "z"]);
        let out = [7.0, 8.0, 9.0, 70.0, 80.0, 90.0];
        let (n, got) = splice((&cols, &v), &[2, 0], (&out_names, &out), 2);
        assert_eq!(n, names(&["x", "y", "z", "b", "d"]));
        assert_eq!(got, [7.0, 8.0, 9.0, 2.0, 4.0, 70.0, 80.0, 90.0, 20.0, 40.0]);
        // A stage on [b, d] that keeps the width: in place of b.
        let (n, got) = splice(
            (&cols, &v),
            &[1, 3],
            (&names(&["b", "d"]), &[5.0, 6.0, 50.0, 60.0]),
            2,
        );
        assert_eq!(n, names(&["a", "b", "d", "c"]));
        assert_eq!(got, [1.0, 5.0, 6.0, 3.0, 10.0, 50.0, 60.0, 30.0]);
        // Every column.
        let all = [0, 1, 2, 3];
        let (n, got) = splice((&cols, &v), &all, (&names(&["p"]), &[0.5, 0.25]), 2);
        assert_eq!(n, names(&["p"]));
        assert_eq!(got, [0.5, 0.25]);
    }
}
