//! `tensorlet runs list|show|compare|plot`: the recorded training runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tensorlet_runtime::registry::{Registry, RunRecord};
use tensorlet_runtime::train::{self, EpochMetrics};

use crate::common;

/// Inspect, compare and plot training runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Every run, newest first: id, pipeline, status, best metric, start.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run: what it recorded and a table of its epochs.
    Show {
        /// Run id (or a prefix of it that only it has).
        run: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs side by side: options, data, plugins and metrics; rows that
    /// differ are marked with `*`.
    Compare {
        /// Two or more run ids.
        #[arg(num_args = 2.., required = true)]
        runs: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Loss and accuracy curves of runs as a PNG or SVG image.
    Plot {
        /// One or more run ids.
        #[arg(num_args = 1.., required = true)]
        runs: Vec<String>,
        /// The image to write: `.png` or `.svg`.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        RunsCommand::List { json } => list(&reg, json),
        RunsCommand::Show { run, json } => show(&reg, &run, json),
        RunsCommand::Compare { runs, json } => compare(&reg, &runs, json),
        RunsCommand::Plot { runs, out } => {
            let runs = runs
                .iter()
                .map(|r| load(&reg, r))
                .collect::<Result<Vec<_>>>()?;
            let series: Vec<(String, Vec<EpochMetrics>)> = runs
                .iter()
                .map(|r| (r.record.id.clone(), r.history.clone()))
                .collect();
            if series.iter().all(|(_, h)| h.is_empty()) {
                bail!("the runs have no completed epochs to plot");
            }
            super::plot::curves(&series, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// A run with its per-epoch metrics.
pub struct LoadedRun {
    /// The stored run.
    pub record: RunRecord,
    /// Metrics of each completed epoch.
    pub history: Vec<EpochMetrics>,
    /// Params digest of each completed epoch.
    pub params: Vec<String>,
}

impl LoadedRun {
    /// The epoch the model keeps under `best` (lowest validation loss).
    pub fn best(&self) -> Option<&EpochMetrics> {
        train::best_epoch(&self.history).and_then(|e| self.history.iter().find(|m| m.epoch == e))
    }

    fn epochs(&self) -> u64 {
        self.record.record.config["epochs"]
            .as_u64()
            .unwrap_or_default()
    }

    fn summary(&self) -> Value {
        let r = &self.record;
        json!({
            "id": r.id,
            "pipeline": r.pipeline,
            "status": super::train::shown_status(r),
            "started": r.started,
            "ended": r.ended,
            "epochs_done": self.history.len(),
            "epochs": self.epochs(),
            "best": self.best(),
            "model": r.model,
            "error": r.error,
        })
    }
}

/// Loads a run and its checkpoints' metrics.
pub fn load(reg: &Registry, id: &str) -> Result<LoadedRun> {
    let record = reg.runs().get(id)?;
    let checkpoints = reg.runs().checkpoints::<EpochMetrics>(&record.id)?;
    let mut history = Vec::with_capacity(checkpoints.len());
    let mut params = Vec::with_capacity(checkpoints.len());
    for c in checkpoints {
        history.push(c.metrics);
        params.push(c.params);
    }
    Ok(LoadedRun {
        record,
        history,
        params,
    })
}

fn fmt_opt(v: Option<f32>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn short(d: &str) -> &str {
    let hex = d.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

fn list(reg: &Registry, json: bool) -> Result<()> {
    let runs = reg
        .runs()
        .list()?
        .into_iter()
        .map(|r| load(reg, &r.id))
        .collect::<Result<Vec<_>>>()?;
    if json {
        let all: Vec<Value> = runs.iter().map(LoadedRun::summary).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs yet; `tensorlet train <pipeline> --data <csv>` records one");
        return Ok(());
    }
    println!(
        "{:<20} {:<32} {:<11} {:>7} {:<26} STARTED",
        "RUN", "PIPELINE", "STATUS", "EPOCHS", "BEST (val_loss / val_acc)"
    );
    for r in &runs {
        let best = r.best().map_or_else(
            || "-".to_string(),
            |m| {
                format!(
                    "{} / {} @{}",
                    fmt_opt(m.val_loss),
                    fmt_opt(m.val_accuracy),
                    m.epoch
                )
            },
        );
        println!(
            "{:<20} {:<32} {:<11} {:>7} {:<26} {}",
            r.record.id,
            pipeline_name(&r.record),
            super::train::shown_status(&r.record),
            format!("{}/{}", r.history.len(), r.epochs()),
            best,
            r.record.started
        );
    }
    Ok(())
}

/// The pipeline without its digest, for tables.
fn pipeline_name(r: &RunRecord) -> String {
    r.record
        .pipeline
        .version
        .clone()
        .unwrap_or_else(|| r.pipeline.clone())
}

/// A recorded text, or `or` when the record lacks it.
fn or<'a>(text: &'a str, or: &'a str) -> &'a str {
    if text.is_empty() { or } else { text }
}

fn show(reg: &Registry, id: &str, json: bool) -> Result<()> {
    let r = load(reg, id)?;
    if json {
        let mut v = r.summary();
        v["record"] = serde_json::to_value(&r.record.record)?;
        v["record"]["config"] = common::training_options(&r.record.record.config);
        v["state"] = json!(r.record.state);
        v["checkpoints"] = r
            .history
            .iter()
            .zip(&r.params)
            .map(|(m, p)| {
                let mut m = serde_json::to_value(m).expect("metrics serialise");
                m["params"] = json!(p);
                m
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rec = &r.record.record;
    println!(
        "run {} ({})",
        r.record.id,
        super::train::shown_status(&r.record)
    );
    println!("  pipeline  {}", pipeline_name(&r.record));
    println!("  started   {}", r.record.started);
    if let Some(e) = &r.record.ended {
        println!("  ended     {e}");
    }
    println!(
        "  host      {} ({} {}, {}, {} CPUs) on {}",
        or(&rec.host.hostname, "?"),
        or(&rec.host.os, "?"),
        or(&rec.host.arch, "?"),
        or(&rec.host.cpu, "?"),
        rec.host.cpus,
        or(&rec.host.device, "?"),
    );
    println!("  tensorlet {}", or(&rec.tensorlet_version, "?"));
    let ds = &rec.dataset;
    println!(
        "  dataset   {}{}",
        or(&ds.digest, "?"),
        ds.name.as_deref().map_or_else(
            || format!(" ({})", ds.path.as_deref().unwrap_or("?")),
            |n| format!(" (dataset `{n}`)")
        )
    );
    println!("  config    {}", common::training_options(&rec.config));
    for stage in ["preprocessor", "trainer", "predictor"] {
        let p = rec.plugins.stage(stage);
        println!(
            "  {stage:<13} {} {}",
            p.and_then(|p| p.artifact.as_deref().or(Some(p.name.as_str())))
                .map_or("?", |n| or(n, "?")),
            p.map_or("?", |p| or(&p.digest, "?"))
        );
    }
    if let Some(m) = &r.record.model {
        println!("  model     {m}");
    }
    if let Some(e) = &r.record.error {
        println!("  error     {e}");
    }
    println!();
    if r.history.is_empty() {
        println!("no completed epochs");
        return Ok(());
    }
    let best = r.best().map(|m| m.epoch);
    let extra = metric_names(&r.history);
    let extra_head: String = extra
        .iter()
        .map(|k| format!(" {:>10}", format!("VAL_{}", k.to_uppercase())))
        .collect();
    println!(
        "  {:>5} {:>10} {:>10} {:>8}{extra_head} {:>8}  PARAMS",
        "EPOCH", "TRAIN_LOSS", "VAL_LOSS", "VAL_ACC", "SECONDS"
    );
    for (m, p) in r.history.iter().zip(&r.params) {
        let extra_cells: String = extra
            .iter()
            .map(|k| format!(" {:>10}", fmt_opt(m.val_metrics.get(k).copied())))
            .collect();
        println!(
            "{} {:>5} {:>10.4} {:>10} {:>8}{extra_cells} {:>8.3}  {}",
            if best == Some(m.epoch) { "*" } else { " " },
            m.epoch,
            m.train_loss,
            fmt_opt(m.val_loss),
            fmt_opt(m.val_accuracy),
            m.seconds,
            short(p)
        );
    }
    if best.is_some() {
        println!("(* the epoch with the lowest validation loss)");
    }
    Ok(())
}

/// The names of the task metrics (`f1_macro`, `r2`, …) recorded in any epoch.
fn metric_names(history: &[EpochMetrics]) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> =
        history.iter().flat_map(|m| m.val_metrics.keys()).collect();
    names.into_iter().cloned().collect()
}

/// The rows `runs compare` prints: (label, value per run).
fn comparison(runs: &[LoadedRun]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |label: &str, f: &dyn Fn(&LoadedRun) -> String| {
        rows.push((label.to_string(), runs.iter().map(f).collect()));
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    add("status", &|r| {
        super::train::shown_status(&r.record).to_string()
    });
    add("pipeline", &|r| pipeline_name(&r.record));
    add("dataset", &|r| {
        or(&r.record.record.dataset.digest, "-").to_string()
    });
    let options = |r: &LoadedRun| common::training_options(&r.record.record.config);
    let mut keys: BTreeMap<String, ()> = BTreeMap::new();
    for r in runs {
        if let Value::Object(o) = options(r) {
            keys.extend(o.keys().map(|k| (k.clone(), ())));
        }
    }
    for k in keys.keys() {
        add(&format!("config.{k}"), &|r| text(&options(r)[k]));
    }
    for stage in ["preprocessor", "trainer", "predictor"] {
        add(stage, &|r| {
            let p = r.record.record.plugins.stage(stage);
            p.map_or("-", |p| or(&p.digest, "-")).to_string()
        });
    }
    add("device", &|r| {
        or(&r.record.record.host.device, "-").to_string()
    });
    add("tensorlet", &|r| {
        or(&r.record.record.tensorlet_version, "-").to_string()
    });
    add("epochs done", &|r| r.history.len().to_string());
    add("best epoch", &|r| {
        r.best().map_or("-".into(), |m| m.epoch.to_string())
    });
    add("best val_loss", &|r| {
        fmt_opt(r.best().and_then(|m| m.val_loss))
    });
    add("best val_accuracy", &|r| {
        fmt_opt(r.best().and_then(|m| m.val_accuracy))
    });
    let extra: std::collections::BTreeSet<String> =
        runs.iter().flat_map(|r| metric_names(&r.history)).collect();
    for k in &extra {
        add(&format!("best val_{k}"), &|r| {
            fmt_opt(r.best().and_then(|m| m.val_metrics.get(k).copied()))
        });
    }
    add("final train_loss", &|r| {
        fmt_opt(r.history.last().map(|m| m.train_loss))
    });
    add("final val_accuracy", &|r| {
        fmt_opt(r.history.last().and_then(|m| m.val_accuracy))
    });
    add("final params", &|r| {
        r.params.last().map_or("-".into(), |p| short(p).to_string())
    });
    add("model", &|r| r.record.model.clone().unwrap_or("-".into()));
    rows
}

fn compare(reg: &Registry, ids: &[String], json: bool) -> Result<()> {
    let runs = ids
        .iter()
        .map(|id| load(reg, id))
        .collect::<Result<Vec<_>>>()?;
    let rows = comparison(&runs);
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(label, values)| {
                json!({
                    "field": label,
                    "values": values,
                    "differs": values.iter().any(|v| v != &values[0]),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "runs": runs.iter().map(|r| r.record.id.clone()).collect::<Vec<_>>(),
                "fields": v,
            }))?
        );
        return Ok(());
    }
    let widths: Vec<usize> = (0..runs.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .chain([runs[i].record.id.len()])
                .max()
                .unwrap_or(0)
                .min(48)
        })
        .collect();
    print!("  {:<20}", "");
    for (r, w) in runs.iter().zip(&widths) {
        print!(" {:<w$}", r.record.id, w = *w);
    }
    println!();
    for (label, values) in &rows {
        let differs = values.iter().any(|v| v != &values[0]);
        print!("{} {label:<20}", if differs { "*" } else { " " });
        for (v, w) in values.iter().zip(&widths) {
            let v: String = v.chars().take(*w).collect();
            print!(" {v:<w$}", w = *w);
        }
        println!();
    }
    println!("(* differs between the runs)");
    Ok(())
}
