//! Scoring a model on labelled rows (and the report `tensorlet eval`
//! prints), and the promotion gate ([`gate`]) that checks a version's
//! metrics (recorded with it, or freshly scored) against requirements.

mod gate;

pub use gate::{Gate, GateError, metrics_for, recorded, recorded_for};

use std::fmt;
use std::path::Path;

use serde_json::{Value, json};

use crate::metrics::{self, Metrics};
use crate::model::Model;
use crate::train::Labels;
use crate::{Result, Runtime, RuntimeError, Task, data};

/// A model's metrics on a labelled table.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// Rows scored.
    pub rows: usize,
    /// The task's metrics by name.
    pub metrics: Metrics,
    /// Classification: counts by actual (rows) and predicted (columns) class.
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// Predicts the rows of `path` (features by the model's schema, labels by its
/// task and class names) and scores the predictions.
/// A CSV's delimiter is `delimiter`, else a tab for `.tsv` and a comma
/// otherwise.
pub fn score(rt: &Runtime, model: &Model, path: &Path, delimiter: Option<u8>) -> Result<Scores> {
    let meta = &model.meta;
    let schema = meta.schema.as_deref();
    let input = data::load_features(path, Some(&meta.label), schema, delimiter)?;
    let names = meta.class_names.as_deref();
    let labels = data::load_labels(path, (&meta.label_columns(), meta.task), names, delimiter)?;
    if labels.len() != input.rows {
        return Err(RuntimeError::Data {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: format!(
                "read {} rows of features but {} labels",
                input.rows,
                labels.len()
            ),
        });
    }
    let rows = input.rows;
    let p = model.predict(rt.device(), input.x, rows)?;
    Ok(match &labels {
        Labels::Classes(y) => {
            let classes = meta.classes as usize;
            Scores {
                rows,
                metrics: metrics::classification(&p.probabilities.concat(), y, classes),
                confusion: Some(metrics::confusion(y, &p.labels, classes)),
            }
        }
        Labels::Targets { values, width } => Scores {
            rows,
            metrics: metrics::regression(&p.values.concat(), values, *width),
            confusion: None,
        },
    })
}

/// [`Scores`] as `tensorlet eval` reports them: the metrics, and for
/// classification a confusion matrix with the class names.
pub struct Report<'a> {
    /// The model, as named.
    pub model: &'a str,
    /// The table scored.
    pub data: &'a Path,
    /// The model's task.
    pub task: Task,
    /// The class names (classification).
    pub classes: &'a [String],
    /// The scores.
    pub scores: &'a Scores,
}

impl Report<'_> {
    /// The report as `tensorlet eval --json` prints it.
    pub fn json(&self) -> Value {
        let mut out = json!({
            "model": self.model,
            "data": self.data.display().to_string(),
            "rows": self.scores.rows,
            "task": self.task,
            "metrics": self.scores.metrics,
        });
        if let Some(cm) = &self.scores.confusion {
            out["classes"] = json!(self.classes);
            out["confusion"] = json!(cm);
        }
        out
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = match self.task {
            Task::Classification => "classification",
            Task::Regression => "regression",
        };
        writeln!(
            f,
            "{} on {} ({} rows, {task})",
            self.model,
            self.data.display(),
            self.scores.rows
        )?;
        for (k, v) in &self.scores.metrics {
            writeln!(f, "  {k:<9} {v:.4}")?;
        }
        if let Some(cm) = &self.scores.confusion {
            let names = self.classes;
            let width = names.iter().map(String::len).max().unwrap_or(1).max(5);
            writeln!(f, "\nconfusion (rows: actual, columns: predicted)")?;
            let head: String = names.iter().map(|n| format!(" {n:>width$}")).collect();
            writeln!(f, "  {:<width$}{head}", "")?;
            for (n, row) in names.iter().zip(cm) {
                let cells: String = row.iter().map(|c| format!(" {c:>width$}")).collect();
                writeln!(f, "  {n:<width$}{cells}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_metrics_and_a_confusion_matrix_with_class_names() {
        let scores = Scores {
            rows: 5,
            metrics: [
                ("accuracy".to_string(), 0.8),
                ("f1_macro".to_string(), 0.75),
            ]
            .into(),
            confusion: Some(vec![vec![2, 1], vec![0, 2]]),
        };
        let classes = ["setosa".to_string(), "virginica".to_string()];
        let r = Report {
            model: "acme/iris-model@1.0.0",
            data: Path::new("test.csv"),
            task: Task::Classification,
            classes: &classes,
            scores: &scores,
        };
        assert_eq!(
            r.to_string(),
            "acme/iris-model@1.0.0 on test.csv (5 rows, classification)\n  \
             accuracy  0.8000\n  f1_macro  0.7500\n\n\
             confusion (rows: actual, columns: predicted)\n  \
             \x20\x20\x20\x20\x20\x20\x20\x20\x20    setosa virginica\n  \
             setosa            2         1\n  \
             virginica         0         2\n"
        );
        let v = r.json();
        assert_eq!(v["confusion"], json!([[2, 1], [0, 2]]));
        assert_eq!(v["classes"], json!(classes));
        assert_eq!(v["rows"], json!(5));
        let regression = Scores {
            rows: 3,
            metrics: [("r2".to_string(), 0.5)].into(),
            confusion: None,
        };
        let r = Report {
            task: Task::Regression,
            classes: &[],
            scores: &regression,
            ..r
        };
        assert_eq!(
            r.to_string(),
            "acme/iris-model@1.0.0 on test.csv (3 rows, regression)\n  r2        0.5000\n"
        );
        assert!(r.json().get("confusion").is_none());
    }
}
