//! Runs as `tensorlet runs list|show|compare` print them: a table of runs,
//! one run with a table of its epochs, and runs side by side, as text or
//! JSON. Each text view is a [`Display`](fmt::Display), so the command
//! prints it and a test reads it.

use std::fmt;

use serde_json::{Value, json};

use super::history::{LoadedRun, Row, comparison, metric, short_digest, training_options};
use super::host::shown_status;

/// `runs list`: one line per run, in the order given, or a hint when there
/// is none.
pub struct RunList<'a>(pub &'a [LoadedRun]);

impl RunList<'_> {
    /// Each run in brief, as `runs list --json` prints it.
    pub fn json(&self) -> Value {
        self.0.iter().map(LoadedRun::summary).collect()
    }
}

impl fmt::Display for RunList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no runs yet; `tensorlet train <pipeline> --data <csv>` records one"
            );
        }
        writeln!(
            f,
            "{:<20} {:<32} {:<11} {:>7} {:<26} STARTED",
            "RUN", "PIPELINE", "STATUS", "EPOCHS", "BEST (val_loss / val_acc)"
        )?;
        for r in self.0 {
            let best = r.best().map_or_else(
                || "-".to_string(),
                |m| {
                    format!(
                        "{} / {} @{}",
                        metric(m.val_loss),
                        metric(m.val_accuracy),
                        m.epoch
                    )
                },
            );
            writeln!(
                f,
                "{:<20} {:<32} {:<11} {:>7} {:<26} {}",
                r.record.id,
                r.pipeline_name(),
                shown_status(&r.record),
                format!("{}/{}", r.history.len(), r.epochs()),
                best,
                r.record.started
            )?;
        }
        Ok(())
    }
}

/// `runs show`: what a run recorded, then a table of its epochs with the
/// kept one marked.
pub struct RunView<'a>(pub &'a LoadedRun);

impl RunView<'_> {
    /// The run in brief with its whole record, state and checkpoints, as
    /// `runs show --json` prints it.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        let r = self.0;
        let mut v = r.summary();
        v["record"] = serde_json::to_value(&r.record.record)?;
        v["record"]["config"] = training_options(&r.record.record.config);
        v["state"] = json!(r.record.state);
        if let Some(t) = &r.record.tracked {
            v["tracked"] = json!(t);
        }
        v["checkpoints"] = r
            .history
            .iter()
            .zip(&r.params)
            .map(|(m, p)| {
                let mut m = serde_json::to_value(m)?;
                m["params"] = json!(p);
                Ok(m)
            })
            .collect::<Result<Value, serde_json::Error>>()?;
        Ok(v)
    }

    fn header(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let rec = &r.record.record;
        writeln!(f, "run {} ({})", r.record.id, shown_status(&r.record))?;
        writeln!(f, "  pipeline  {}", r.pipeline_name())?;
        writeln!(f, "  started   {}", r.record.started)?;
        if let Some(e) = &r.record.ended {
            writeln!(f, "  ended     {e}")?;
        }
        writeln!(
            f,
            "  host      {} ({} {}, {}, {} CPUs) on {}",
            or(&rec.host.hostname, "?"),
            or(&rec.host.os, "?"),
            or(&rec.host.arch, "?"),
            or(&rec.host.cpu, "?"),
            rec.host.cpus,
            or(&rec.host.device, "?"),
        )?;
        writeln!(f, "  tensorlet {}", or(&rec.tensorlet_version, "?"))?;
        if let Some(t) = &r.record.tracked {
            writeln!(
                f,
                "  recorded  by key {} in namespace {}",
                t.key_id, t.namespace
            )?;
        }
        let ds = &rec.dataset;
        writeln!(
            f,
            "  dataset   {}{}",
            or(&ds.digest, "?"),
            ds.name.as_deref().map_or_else(
                || format!(" ({})", ds.path.as_deref().unwrap_or("?")),
                |n| format!(" (dataset `{n}`)")
            )
        )?;
        writeln!(f, "  config    {}", training_options(&rec.config))?;
        for stage in rec.plugins.stage_names() {
            let p = rec.plugins.stage(&stage);
            writeln!(
                f,
                "  {stage:<13} {} {}",
                p.and_then(|p| p.artifact.as_deref().or(Some(p.name.as_str())))
                    .map_or("?", |n| or(n, "?")),
                p.map_or("?", |p| or(&p.digest, "?"))
            )?;
        }
        if let Some(m) = &r.record.model {
            writeln!(f, "  model     {m}")?;
        }
        if let Some(e) = &r.record.error {
            writeln!(f, "  error     {e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RunView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        self.header(f)?;
        writeln!(f)?;
        if r.history.is_empty() {
            return writeln!(f, "no completed epochs");
        }
        let best = r.best().map(|m| m.epoch);
        let extra = r.metric_names();
        let extra_head: String = extra
            .iter()
            .map(|k| format!(" {:>10}", format!("VAL_{}", k.to_uppercase())))
            .collect();
        writeln!(
            f,
            "  {:>5} {:>10} {:>10} {:>8}{extra_head} {:>8}  PARAMS",
            "EPOCH", "TRAIN_LOSS", "VAL_LOSS", "VAL_ACC", "SECONDS"
        )?;
        for (m, p) in r.history.iter().zip(&r.params) {
            let extra_cells: String = extra
                .iter()
                .map(|k| format!(" {:>10}", metric(m.val_metrics.get(k).copied())))
                .collect();
            writeln!(
                f,
                "{} {:>5} {:>10.4} {:>10} {:>8}{extra_cells} {:>8.3}  {}",
                if best == Some(m.epoch) { "*" } else { " " },
                m.epoch,
                m.train_loss,
                metric(m.val_loss),
                metric(m.val_accuracy),
                m.seconds,
                short_digest(p)
            )?;
        }
        if best.is_some() {
            writeln!(f, "(* the epoch with the lowest validation loss)")?;
        }
        Ok(())
    }
}

/// `runs compare`: the rows of [`comparison`], one column per run, rows
/// that differ marked with `*`.
pub struct Comparison<'a> {
    runs: &'a [LoadedRun],
    rows: Vec<Row>,
}

/// Widest a column of `runs compare` gets; longer values are cut.
const MAX_WIDTH: usize = 48;

impl<'a> Comparison<'a> {
    /// Compares `runs`.
    pub fn new(runs: &'a [LoadedRun]) -> Self {
        Comparison {
            runs,
            rows: comparison(runs),
        }
    }

    /// The runs and each compared field, as `runs compare --json` prints it.
    pub fn json(&self) -> Value {
        let fields: Vec<Value> = self
            .rows
            .iter()
            .map(|row| json!({"field": row.field, "values": row.values, "differs": row.differs()}))
            .collect();
        json!({
            "runs": self.runs.iter().map(|r| r.record.id.clone()).collect::<Vec<_>>(),
            "fields": fields,
        })
    }
}

impl fmt::Display for Comparison<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = (0..self.runs.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|row| row.values[i].chars().count())
                    .chain([self.runs[i].record.id.len()])
                    .max()
                    .unwrap_or(0)
                    .min(MAX_WIDTH)
            })
            .collect();
        write!(f, "  {:<20}", "")?;
        for (r, w) in self.runs.iter().zip(&widths) {
            write!(f, " {:<w$}", r.record.id, w = *w)?;
        }
        writeln!(f)?;
        for row in &self.rows {
            let mark = if row.differs() { "*" } else { " " };
            write!(f, "{mark} {:<20}", row.field)?;
            for (v, w) in row.values.iter().zip(&widths) {
                let v: String = v.chars().take(*w).collect();
                write!(f, " {v:<w$}", w = *w)?;
            }
            writeln!(f)?;
        }
        writeln!(f, "(* differs between the runs)")
    }
}

/// A recorded text, or `or` when the record lacks it.
fn or<'a>(text: &'a str, or: &'a str) -> &'a str {
    if text.is_empty() { or } else { text }
}

#[cfg(test)]
mod tests {
    use super::super::history::fixture::{epoch, run};
    use super::*;

    #[test]
    fn the_list_has_one_line_per_run_with_its_best_epoch() {
        assert_eq!(
            RunList(&[]).to_string(),
            "no runs yet; `tensorlet train <pipeline> --data <csv>` records one\n"
        );
        let runs = [
            run(
                "20260101-000000-aaaa",
                0.1,
                vec![
                    epoch(1, Some(0.9), Some(0.5)),
                    epoch(2, Some(0.25), Some(0.75)),
                ],
            ),
            run("20260101-000000-bbbb", 0.1, vec![]),
        ];
        let text = RunList(&runs).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("RUN "), "{text}");
        assert!(lines[0].ends_with(" STARTED"), "{text}");
        let a: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            a,
            [
                "20260101-000000-aaaa",
                "acme/iris@1.0.0",
                "completed",
                "2/3",
                "0.2500",
                "/",
                "0.7500",
                "@2"
            ]
        );
        assert!(
            lines[2].contains(" 0/3 ") && lines[2].contains(" - "),
            "{text}"
        );
        assert_eq!(RunList(&runs).json()[1]["epochs_done"], json!(0));
    }

    #[test]
    fn a_run_shows_its_record_and_marks_the_kept_epoch() {
        let mut r = run(
            "r1",
            0.1,
            vec![
                epoch(1, Some(0.5), Some(0.7)),
                epoch(2, Some(0.75), Some(0.6)),
            ],
        );
        r.history[0].val_metrics.insert("f1_macro".into(), 0.66);
        r.record.model = Some("acme/iris-model@0.1.0".into());
        let text = RunView(&r).to_string();
        assert!(text.starts_with("run r1 (completed)\n  pipeline  acme/iris@1.0.0\n"));
        assert!(
            text.contains("  host      elsewhere (? ?, ?, 0 CPUs) on cpu\n"),
            "{text}"
        );
        assert!(text.contains("  dataset   ? (?)\n"), "{text}");
        assert!(text.contains("  trainer       ? ?\n"), "{text}");
        assert!(
            text.contains("  model     acme/iris-model@0.1.0\n"),
            "{text}"
        );
        assert!(
            text.contains("VAL_ACC VAL_F1_MACRO  SECONDS  PARAMS\n"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("00000000000")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].starts_with("*     1     1.0000     0.5000   0.7000     0.6600"));
        assert!(rows[1].starts_with("      2     0.5000     0.7500   0.6000          -"));
        assert!(text.ends_with("(* the epoch with the lowest validation loss)\n"));

        let v = RunView(&r).json().unwrap();
        assert_eq!(v["checkpoints"][1]["params"], json!(r.params[1]));
        assert_eq!(v["record"]["config"]["learning_rate"], json!(0.1));
        assert!(
            RunView(&run("r2", 0.1, vec![]))
                .to_string()
                .ends_with("\n\nno completed epochs\n")
        );
    }

    #[test]
    fn a_comparison_has_a_column_per_run_and_marks_differences() {
        let runs = [
            run("a", 0.1, vec![epoch(1, Some(0.5), Some(0.7))]),
            run("bb", 0.05, vec![epoch(1, Some(0.5), Some(0.7))]),
        ];
        let c = Comparison::new(&runs);
        let text = c.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(&format!("{:22} a ", "")), "{text}");
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["a", "bb"]);
        let lr = lines
            .iter()
            .find(|l| l.contains("config.learning_rate"))
            .unwrap();
        assert_eq!(
            lr.split_whitespace().collect::<Vec<_>>(),
            ["*", "config.learning_rate", "0.1", "0.05"]
        );
        assert!(lines.iter().any(|l| l.starts_with("  best val_loss ")));
        assert_eq!(lines.last(), Some(&"(* differs between the runs)"));
        let v = c.json();
        assert_eq!(v["runs"], json!(["a", "bb"]));
        let row = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == "config.learning_rate")
            .unwrap();
        assert_eq!(row["differs"], json!(true));
    }
}
