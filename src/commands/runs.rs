//! `tensorlet runs list|show|compare|plot`: the recorded training runs.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tensorlet_registry::Registry;
use tensorlet_runtime::run::history::{
    LoadedRun, comparison, load, metric as fmt_opt, short_digest as short, training_options,
};
use tensorlet_runtime::run::host::shown_status;
use tensorlet_runtime::train::EpochMetrics;

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
                .collect::<Result<Vec<_>, _>>()?;
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

fn list(reg: &Registry, json: bool) -> Result<()> {
    let runs = reg
        .runs()
        .list()?
        .into_iter()
        .map(|r| load(reg, &r.id))
        .collect::<Result<Vec<_>, _>>()?;
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
            r.pipeline_name(),
            shown_status(&r.record),
            format!("{}/{}", r.history.len(), r.epochs()),
            best,
            r.record.started
        );
    }
    Ok(())
}

fn show(reg: &Registry, id: &str, json: bool) -> Result<()> {
    let r = load(reg, id)?;
    if json {
        let mut v = r.summary();
        v["record"] = serde_json::to_value(&r.record.record)?;
        v["record"]["config"] = training_options(&r.record.record.config);
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
    println!("run {} ({})", r.record.id, shown_status(&r.record));
    println!("  pipeline  {}", r.pipeline_name());
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
    println!("  config    {}", training_options(&rec.config));
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
    let extra = r.metric_names();
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

fn compare(reg: &Registry, ids: &[String], json: bool) -> Result<()> {
    let runs = ids
        .iter()
        .map(|id| load(reg, id))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = comparison(&runs);
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|row| json!({"field": row.field, "values": row.values, "differs": row.differs()}))
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
                .map(|row| row.values[i].chars().count())
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
    for row in &rows {
        let mark = if row.differs() { "*" } else { " " };
        print!("{mark} {:<20}", row.field);
        for (v, w) in row.values.iter().zip(&widths) {
            let v: String = v.chars().take(*w).collect();
            print!(" {v:<w$}", w = *w);
        }
        println!();
    }
    println!("(* differs between the runs)");
    Ok(())
}

/// A recorded text, or `or` when the record lacks it.
fn or<'a>(text: &'a str, or: &'a str) -> &'a str {
    if text.is_empty() { or } else { text }
}
