//! Recorded runs read back: a run with its per-epoch metrics, and the
//! comparisons and short forms that listings show.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tensorlet_registry::client::Remote;
use tensorlet_registry::{Checkpoint, Registry, RegistryError, RunPlugins, RunRecord};

use super::host::shown_status;
use crate::pipeline::TrainingConfig;
use crate::train::{self, EpochMetrics};

/// A run with its per-epoch metrics.
#[derive(Clone, Debug)]
pub struct LoadedRun {
    /// The stored run.
    pub record: RunRecord,
    /// Metrics of each completed epoch.
    pub history: Vec<EpochMetrics>,
    /// Params digest of each completed epoch.
    pub params: Vec<String>,
}

/// Why a run cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The registry could not answer.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Loads a run (by id or a prefix only it has) and its checkpoints' metrics.
pub fn load(reg: &Registry, id: &str) -> Result<LoadedRun, HistoryError> {
    let record = reg.runs().get(id)?;
    let checkpoints = reg.runs().checkpoints::<EpochMetrics>(&record.id)?;
    Ok(LoadedRun::new(record, checkpoints))
}

/// Loads a run that a remote registry records (central run tracking), as
/// [`load`] does from this home.
pub fn load_remote(remote: &Remote, id: &str) -> Result<LoadedRun, HistoryError> {
    let (record, checkpoints) = remote.run(id)?;
    let checkpoints = checkpoints
        .into_iter()
        .map(|c| {
            let epoch = c.epoch;
            c.try_map(|m| {
                serde_json::from_value(m).map_err(|e| RegistryError::Remote {
                    url: remote.url().to_string(),
                    message: format!(
                        "run {}: the metrics of epoch {epoch} are unreadable: {e}",
                        record.id
                    ),
                })
            })
        })
        .collect::<Result<Vec<_>, RegistryError>>()?;
    Ok(LoadedRun::new(record, checkpoints))
}

impl LoadedRun {
    fn new(record: RunRecord, checkpoints: Vec<Checkpoint<EpochMetrics>>) -> Self {
        let (history, params) = checkpoints
            .into_iter()
            .map(|c| (c.metrics, c.params))
            .unzip();
        LoadedRun {
            record,
            history,
            params,
        }
    }

    /// The epoch the model keeps under `best` (lowest validation loss).
    pub fn best(&self) -> Option<&EpochMetrics> {
        train::best_epoch(&self.history).and_then(|e| self.history.iter().find(|m| m.epoch == e))
    }

    /// The epochs the run was asked for.
    pub fn epochs(&self) -> u64 {
        self.record.record.config["epochs"]
            .as_u64()
            .unwrap_or_default()
    }

    /// The pipeline without its digest, for tables.
    pub fn pipeline_name(&self) -> String {
        self.record
            .record
            .pipeline
            .version
            .clone()
            .unwrap_or_else(|| self.record.pipeline.clone())
    }

    /// The run in brief, as `runs list --json` shows it.
    pub fn summary(&self) -> Value {
        let r = &self.record;
        json!({
            "id": r.id,
            "pipeline": r.pipeline,
            "status": shown_status(r),
            "started": r.started,
            "ended": r.ended,
            "epochs_done": self.history.len(),
            "epochs": self.epochs(),
            "best": self.best(),
            "model": r.model,
            "error": r.error,
        })
    }

    /// The names of the task metrics (`f1_macro`, `r2`, …) recorded in any epoch.
    pub fn metric_names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self
            .history
            .iter()
            .flat_map(|m| m.val_metrics.keys())
            .collect();
        names.into_iter().cloned().collect()
    }
}

/// A metric with four decimals, or `-` when there is none.
pub fn metric(v: Option<f32>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// The first 12 hex digits of a `sha256:` digest.
pub fn short_digest(d: &str) -> &str {
    let hex = d.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// Recorded training options (a run's `config`, a manifest's `training`) for
/// showing, each `f32` in its shortest form (`0.1`). Records and manifests
/// written by earlier versions hold them widened to `f64`
/// (`0.10000000149011612`); anything that is not a training config is shown
/// as it is.
pub fn training_options(recorded: &Value) -> Value {
    serde_json::from_value::<TrainingConfig>(recorded.clone())
        .map_or_else(|_| recorded.clone(), |c| c.to_json())
}

/// One row of a comparison: a field and its value in each run.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What is compared (`status`, `config.learning_rate`, `best val_loss`, …).
    pub field: String,
    /// Its value in each run, in the order of the runs.
    pub values: Vec<String>,
}

impl Row {
    /// Whether the runs differ in it.
    pub fn differs(&self) -> bool {
        self.values.iter().any(|v| v != &self.values[0])
    }
}

/// Runs side by side: status, pipeline, data, every training option any of
/// them set, plugins, device, version, and the best and final metrics.
pub fn comparison(runs: &[LoadedRun]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |field: &str, f: &dyn Fn(&LoadedRun) -> String| {
        rows.push(Row {
            field: field.to_string(),
            values: runs.iter().map(f).collect(),
        });
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    add("status", &|r| shown_status(&r.record).to_string());
    add("pipeline", &|r| r.pipeline_name());
    let recorded = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    add("dataset", &|r| recorded(&r.record.record.dataset.digest));
    let options = |r: &LoadedRun| training_options(&r.record.record.config);
    let mut keys: BTreeMap<String, ()> = BTreeMap::new();
    for r in runs {
        if let Value::Object(o) = options(r) {
            keys.extend(o.keys().map(|k| (k.clone(), ())));
        }
    }
    for k in keys.keys() {
        add(&format!("config.{k}"), &|r| text(&options(r)[k]));
    }
    let stages = RunPlugins::stage_names_of(runs.iter().map(|r| &r.record.record.plugins));
    for stage in &stages {
        let stage = stage.as_str();
        add(stage, &|r| {
            r.record
                .record
                .plugins
                .stage(stage)
                .map_or_else(|| "-".to_string(), |p| recorded(&p.digest))
        });
    }
    add("device", &|r| recorded(&r.record.record.host.device));
    add("tensorlet", &|r| {
        recorded(&r.record.record.tensorlet_version)
    });
    add("epochs done", &|r| r.history.len().to_string());
    add("best epoch", &|r| {
        r.best().map_or("-".into(), |m| m.epoch.to_string())
    });
    add("best val_loss", &|r| {
        metric(r.best().and_then(|m| m.val_loss))
    });
    add("best val_accuracy", &|r| {
        metric(r.best().and_then(|m| m.val_accuracy))
    });
    let extra: BTreeSet<String> = runs.iter().flat_map(LoadedRun::metric_names).collect();
    for k in &extra {
        add(&format!("best val_{k}"), &|r| {
            metric(r.best().and_then(|m| m.val_metrics.get(k).copied()))
        });
    }
    add("final train_loss", &|r| {
        metric(r.history.last().map(|m| m.train_loss))
    });
    add("final val_accuracy", &|r| {
        metric(r.history.last().and_then(|m| m.val_accuracy))
    });
    add("final params", &|r| {
        r.params
            .last()
            .map_or("-".into(), |p| short_digest(p).to_string())
    });
    add("model", &|r| r.record.model.clone().unwrap_or("-".into()));
    rows
}

/// Runs made up for the tests of this module and of `report`.
#[cfg(test)]
pub(crate) mod fixture {
    use serde_json::json;
    use tensorlet_registry::{RunDetails, RunHost, RunPipeline, RunRecord, RunStatus};

    use super::LoadedRun;
    use crate::train::EpochMetrics;

    pub fn epoch(e: u32, val_loss: Option<f32>, acc: Option<f32>) -> EpochMetrics {
        let mut m = EpochMetrics::new(e, 1.0 / e as f32, None, 0.5);
        m.val_loss = val_loss;
        m.val_accuracy = acc;
        m
    }

    pub fn run(id: &str, lr: f64, history: Vec<EpochMetrics>) -> LoadedRun {
        LoadedRun {
            record: RunRecord {
                id: id.into(),
                pipeline: "acme/iris@sha256:ab".into(),
                status: RunStatus::Completed,
                started: String::new(),
                ended: None,
                record: RunDetails {
                    pipeline: RunPipeline {
                        version: Some("acme/iris@1.0.0".into()),
                        ..RunPipeline::default()
                    },
                    config: json!({"epochs": 3, "learning_rate": lr}),
                    host: RunHost {
                        hostname: "elsewhere".into(),
                        device: "cpu".into(),
                        ..RunHost::default()
                    },
                    ..RunDetails::default()
                },
                state: None,
                model: None,
                error: None,
                tracked: None,
            },
            params: history
                .iter()
                .map(|m| format!("sha256:{:064}", m.epoch))
                .collect(),
            history,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{epoch, run};
    use super::*;

    #[test]
    fn the_best_epoch_has_the_lowest_validation_loss() {
        let r = run(
            "a",
            0.1,
            vec![
                epoch(1, Some(0.9), Some(0.5)),
                epoch(2, Some(0.3), Some(0.8)),
                epoch(3, Some(0.4), Some(0.9)),
            ],
        );
        assert_eq!(r.best().map(|m| m.epoch), Some(2));
        assert_eq!(r.epochs(), 3);
        assert_eq!(r.pipeline_name(), "acme/iris@1.0.0");
        let s = r.summary();
        assert_eq!(
            (s["epochs_done"].clone(), s["best"]["epoch"].clone()),
            (json!(3), json!(2))
        );
        assert!(run("b", 0.1, vec![epoch(1, None, None)]).best().is_none());
    }

    #[test]
    fn numbers_and_digests_are_shortened_for_tables() {
        assert_eq!(metric(Some(0.123_456)), "0.1235");
        assert_eq!(metric(None), "-");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
        // A widened f32 is shown in its shortest form; other values as they are.
        let widened = json!({"epochs": 3, "batch_size": 8, "learning_rate": 0.10000000149011612,
                             "seed": 1});
        assert_eq!(training_options(&widened)["learning_rate"], json!(0.1));
        assert_eq!(training_options(&json!("x")), json!("x"));
    }

    #[test]
    fn a_comparison_marks_the_fields_that_differ() {
        let a = run("a", 0.1, vec![epoch(1, Some(0.5), Some(0.7))]);
        let mut b = run("b", 0.05, vec![epoch(1, Some(0.5), Some(0.7))]);
        b.history[0].val_metrics.insert("f1_macro".into(), 0.66);
        let rows = comparison(&[a, b]);
        let row = |f: &str| {
            rows.iter()
                .find(|r| r.field == f)
                .unwrap_or_else(|| panic!("{f}"))
        };
        assert_eq!(row("config.learning_rate").values, ["0.1", "0.05"]);
        assert!(row("config.learning_rate").differs());
        assert!(!row("best val_loss").differs());
        assert_eq!(row("best val_loss").values, ["0.5000", "0.5000"]);
        assert_eq!(row("best val_f1_macro").values, ["-", "0.6600"]);
        assert_eq!(row("status").values, ["completed", "completed"]);
        assert_eq!(row("trainer").values, ["-", "-"]);
        assert_eq!(row("final params").values, ["000000000000", "000000000000"]);
    }
}
