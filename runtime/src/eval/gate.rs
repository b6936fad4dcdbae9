//! The promotion gate: the metrics recorded with a version, and the check
//! of a version's metrics against requirements, audited either way.

use std::path::Path;

use serde_json::json;
use tensorlet_registry::{Registry, RegistryError};

use crate::metrics::{Metrics, Requirement};
use crate::model::Model;
use crate::train::EpochMetrics;
use crate::{Runtime, Task};

/// The validation metrics recorded with a model's kept epoch, by the names
/// an evaluation uses (`accuracy`, `log_loss` / `mse`, `r2`, …) and with
/// `val_`; the loss also as `val_loss`.
pub fn recorded(task: Task, kept: Option<&EpochMetrics>) -> Metrics {
    let mut m = Metrics::new();
    let Some(kept) = kept else {
        return m;
    };
    let loss = match task {
        Task::Classification => "log_loss",
        Task::Regression => "mse",
    };
    let named = kept
        .val_loss
        .map(|v| (loss.to_string(), v))
        .into_iter()
        .chain(kept.val_accuracy.map(|v| ("accuracy".to_string(), v)))
        .chain(kept.val_metrics.iter().map(|(k, v)| (k.clone(), *v)));
    for (k, v) in named {
        m.insert(format!("val_{k}"), v);
        m.insert(k, v);
    }
    if let Some(l) = kept.val_loss {
        m.insert("val_loss".into(), l);
    }
    m
}

/// [`recorded`] for a model, with its test split's scores as `test_<name>`
/// (`test_accuracy`, `test_r2`, …) when it has one.
pub fn recorded_for(meta: &crate::model::ModelMeta) -> Metrics {
    let mut m = recorded(meta.task, meta.kept_metrics());
    for (k, v) in meta.test.iter().flat_map(|t| &t.metrics) {
        m.insert(format!("test_{k}"), *v);
    }
    m
}

/// The metrics a gate checks for `model`: its scores on `data` when given,
/// else those recorded with it ([`recorded_for`]); and where they came from.
pub fn metrics_for(
    rt: &Runtime,
    model: &Model,
    data: Option<&Path>,
) -> crate::Result<(Metrics, String)> {
    Ok(match data {
        Some(path) => (
            super::score(rt, model, path, None)?.metrics,
            format!("evaluated on {}", path.display()),
        ),
        None => (
            recorded_for(&model.meta),
            "recorded with the version".to_string(),
        ),
    })
}

/// A promotion gate: what a version must meet before `alias` may point at it.
#[derive(Clone, Copy, Debug)]
pub struct Gate<'a> {
    /// The version, as named.
    pub reference: &'a str,
    /// The alias to move.
    pub alias: &'a str,
    /// What it must meet.
    pub require: &'a [Requirement],
}

impl Gate<'_> {
    /// Checks `metrics` (obtained as `source` says) and audits the outcome
    /// (`promote.gate` or `promote.refused`); returns the requirements
    /// missed, each with why.
    pub fn check(
        &self,
        reg: &Registry,
        metrics: &Metrics,
        source: &str,
    ) -> std::result::Result<Vec<String>, RegistryError> {
        let missed: Vec<String> = self
            .require
            .iter()
            .filter_map(|r| r.check(metrics).err())
            .collect();
        let requirements: Vec<String> = self.require.iter().map(ToString::to_string).collect();
        reg.record(
            if missed.is_empty() {
                "promote.gate"
            } else {
                "promote.refused"
            },
            self.reference,
            json!({
                "alias": self.alias,
                "require": requirements,
                "metrics": metrics,
                "source": source,
                "missed": missed,
            }),
        )?;
        Ok(missed)
    }
}

/// A promotion [`Gate`] that refused a version, or could not record why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The version missed requirements (the refusal is audited).
    #[error(
        "not promoting {reference} to {alias}: {missed} (metrics {metrics_from}); the refusal \
         is in the audit log"
    )]
    Refused {
        /// The version, as named.
        reference: String,
        /// The alias it was to move.
        alias: String,
        /// What it missed and why, `; `-separated.
        missed: String,
        /// Where the metrics came from.
        metrics_from: String,
    },
    /// The audit log could not record the check.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Gate<'_> {
    /// [`Gate::check`], refusing with [`GateError::Refused`] when a
    /// requirement is missed.
    pub fn enforce(
        &self,
        reg: &Registry,
        metrics: &Metrics,
        source: &str,
    ) -> std::result::Result<(), GateError> {
        let missed = self.check(reg, metrics, source)?;
        if missed.is_empty() {
            return Ok(());
        }
        Err(GateError::Refused {
            reference: self.reference.to_string(),
            alias: self.alias.to_string(),
            missed: missed.join("; "),
            metrics_from: source.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_go_by_both_names() {
        let mut kept = EpochMetrics::new(3, 0.2, None, 1.0);
        kept.val_loss = Some(0.25);
        kept.val_accuracy = Some(0.9);
        kept.val_metrics.insert("f1_macro".into(), 0.88);
        let m = recorded(Task::Classification, Some(&kept));
        for (k, v) in [
            ("log_loss", 0.25),
            ("val_log_loss", 0.25),
            ("val_loss", 0.25),
            ("accuracy", 0.9),
            ("val_accuracy", 0.9),
            ("f1_macro", 0.88),
            ("val_f1_macro", 0.88),
        ] {
            assert_eq!(m.get(k), Some(&v), "{k}");
        }
        assert_eq!(m.len(), 7);
        let r = recorded(Task::Regression, Some(&kept));
        assert_eq!((r.get("mse"), r.get("log_loss")), (Some(&0.25), None));
        assert!(recorded(Task::Regression, None).is_empty());
    }

    #[test]
    fn a_gate_lists_what_was_missed_and_audits_either_way() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let require: Vec<Requirement> = ["accuracy>=0.9", "r2>0.5"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let gate = Gate {
            reference: "acme/iris-model@1.0.0",
            alias: "production",
            require: &require,
        };
        let metrics: Metrics = [("accuracy".to_string(), 0.95)].into();
        let missed = gate.check(&reg, &metrics, "recorded").unwrap();
        assert_eq!(missed.len(), 1);
        assert!(
            missed[0].contains("`r2` is not among the metrics"),
            "{missed:?}"
        );
        let passing = Gate {
            require: &require[..1],
            ..gate
        };
        assert!(
            passing
                .check(&reg, &metrics, "recorded")
                .unwrap()
                .is_empty()
        );
        let log = reg.audit_log().unwrap();
        let actions: Vec<&str> = log
            .iter()
            .filter(|e| e.action.starts_with("promote."))
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(actions, ["promote.refused", "promote.gate"]);
        assert_eq!(log.last().unwrap().detail["alias"], "production");
    }

    #[test]
    fn an_enforced_gate_refuses_with_what_was_missed() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let require: Vec<Requirement> = ["accuracy>=0.9", "f1_macro>=0.9"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let gate = Gate {
            reference: "acme/iris-model@1.0.0",
            alias: "production",
            require: &require,
        };
        let metrics: Metrics = [
            ("accuracy".to_string(), 0.5),
            ("f1_macro".to_string(), 0.95),
        ]
        .into();
        let e = gate
            .enforce(&reg, &metrics, "recorded with the version")
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("not promoting acme/iris-model@1.0.0 to production: ")
                && text.ends_with(
                    " (metrics recorded with the version); the refusal is in the audit log"
                ),
            "{text}"
        );
        assert!(
            text.contains("accuracy") && !text.contains("f1_macro"),
            "{text}"
        );
        let good: Metrics = [
            ("accuracy".to_string(), 0.95),
            ("f1_macro".to_string(), 0.95),
        ]
        .into();
        gate.enforce(&reg, &good, "recorded with the version")
            .unwrap();
    }
}
