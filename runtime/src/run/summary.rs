//! What `tensorlet train` says about a finished run: the headline with the
//! kept epoch's validation scores, the held-out test scores, where the model
//! went; and the per-epoch line of the progress bar.

use std::path::Path;

use super::Outcome;
use crate::Task;
use crate::train::{EpochMetrics, TestScores};

/// The lines that report `outcome`, a run that took `seconds`, whose model
/// was also saved to `out` when given.
pub fn lines(outcome: &Outcome, out: Option<&Path>, seconds: f64) -> Vec<String> {
    let meta = &outcome.meta;
    let mut lines = vec![format!(
        "trained {}: {} (epoch {} of {} kept; run {}) in {seconds:.1} s",
        meta.name,
        validation(meta.task, meta.kept_metrics()),
        meta.epoch.unwrap_or(meta.metrics.len() as u32),
        meta.metrics.len(),
        outcome.run_id,
    )];
    if let Some(t) = &meta.test {
        lines.push(test(meta.task, t));
    }
    lines.push(format!("params {}", meta.params_digest));
    if let Some(dir) = out {
        lines.push(format!("model saved to {}", dir.display()));
    }
    if let Some(p) = &outcome.published {
        lines.push(format!(
            "published {} ({}) signed by key {}",
            p.reference, p.digest, p.key_id
        ));
    }
    lines
}

/// The kept epoch's validation scores: R² and RMSE for regression, else
/// the accuracy (or why there is none).
pub fn validation(task: Task, kept: Option<&EpochMetrics>) -> String {
    let score = |name: &str, m: &EpochMetrics| {
        m.val_metrics
            .get(name)
            .map_or("n/a".into(), |v| format!("{v:.4}"))
    };
    match (task, kept) {
        (Task::Regression, Some(m)) if m.val_loss.is_some() => {
            format!("validation r2 {} rmse {}", score("r2", m), score("rmse", m))
        }
        _ => format!(
            "validation accuracy {}",
            kept.and_then(|m| m.val_accuracy)
                .map_or("n/a (no validation split)".into(), |a| format!("{a:.4}"))
        ),
    }
}

/// The held-out test split's headline metrics for `task`.
pub fn test(task: Task, scores: &TestScores) -> String {
    let names = match task {
        Task::Classification => ["accuracy", "f1_macro", "auc"],
        Task::Regression => ["r2", "rmse", "mae"],
    };
    let shown: Vec<String> = names
        .iter()
        .filter_map(|k| scores.metrics.get(*k).map(|v| format!("{k} {v:.4}")))
        .collect();
    format!(
        "test {} on {} held-out rows (never used to select)",
        shown.join(", "),
        scores.rows
    )
}

/// The progress line after epoch `m` of `epochs`: the training loss, and
/// the validation loss with accuracy (classification) or R² (regression).
pub fn epoch(m: &EpochMetrics, epochs: u32) -> String {
    let val = match (m.val_loss, m.val_accuracy, m.val_metrics.get("r2")) {
        (Some(l), Some(a), _) => format!(" val_loss {l:.4} val_accuracy {a:.4}"),
        (Some(l), None, Some(r2)) => format!(" val_loss {l:.4} val_r2 {r2:.4}"),
        _ => String::new(),
    };
    format!("epoch {}/{epochs} loss {:.4}{val}", m.epoch, m.train_loss)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn metrics(
        val_loss: Option<f32>,
        val_accuracy: Option<f32>,
        more: &[(&str, f32)],
    ) -> EpochMetrics {
        let mut m = EpochMetrics::new(3, 0.51234, None, 0.5);
        m.val_loss = val_loss;
        m.val_accuracy = val_accuracy;
        m.val_metrics = more.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        m
    }

    #[test]
    fn classification_headline_is_the_accuracy() {
        let m = metrics(Some(0.2), Some(0.96667), &[("f1_macro", 0.9)]);
        assert_eq!(
            validation(Task::Classification, Some(&m)),
            "validation accuracy 0.9667"
        );
        assert_eq!(
            validation(Task::Classification, Some(&metrics(None, None, &[]))),
            "validation accuracy n/a (no validation split)"
        );
        assert_eq!(
            validation(Task::Classification, None),
            "validation accuracy n/a (no validation split)"
        );
    }

    #[test]
    fn regression_headline_is_r2_and_rmse() {
        let m = metrics(Some(3.0), None, &[("r2", 0.45678), ("rmse", 55.5)]);
        assert_eq!(
            validation(Task::Regression, Some(&m)),
            "validation r2 0.4568 rmse 55.5000"
        );
        let partial = metrics(Some(3.0), None, &[("rmse", 1.0)]);
        assert_eq!(
            validation(Task::Regression, Some(&partial)),
            "validation r2 n/a rmse 1.0000"
        );
        // Without a validation split, regression says so as classification does.
        assert_eq!(
            validation(Task::Regression, Some(&metrics(None, None, &[]))),
            "validation accuracy n/a (no validation split)"
        );
    }

    #[test]
    fn test_line_names_the_task_metrics_it_has() {
        let scores = TestScores {
            rows: 30,
            metrics: BTreeMap::from([
                ("accuracy".to_string(), 0.9),
                ("f1_macro".to_string(), 0.88889),
                ("log_loss".to_string(), 0.3),
            ]),
        };
        assert_eq!(
            test(Task::Classification, &scores),
            "test accuracy 0.9000, f1_macro 0.8889 on 30 held-out rows (never used to select)"
        );
        let scores = TestScores {
            rows: 7,
            metrics: BTreeMap::from([("r2".to_string(), 0.5), ("mae".to_string(), 2.0)]),
        };
        assert_eq!(
            test(Task::Regression, &scores),
            "test r2 0.5000, mae 2.0000 on 7 held-out rows (never used to select)"
        );
    }

    #[test]
    fn epoch_line_shows_what_the_epoch_measured() {
        assert_eq!(
            epoch(&metrics(Some(0.25), Some(0.9), &[]), 10),
            "epoch 3/10 loss 0.5123 val_loss 0.2500 val_accuracy 0.9000"
        );
        assert_eq!(
            epoch(&metrics(Some(4.0), None, &[("r2", 0.75)]), 5),
            "epoch 3/5 loss 0.5123 val_loss 4.0000 val_r2 0.7500"
        );
        assert_eq!(epoch(&metrics(None, None, &[]), 5), "epoch 3/5 loss 0.5123");
    }
}
