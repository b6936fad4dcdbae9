//! `tensorlet eval <model> --data <csv>`: the task's metrics of a model on a
//! labelled table it did not train on.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;
use tensorlet_runtime::Task;
use tensorlet_runtime::eval::{Scores, score};

use crate::artifacts::{RegistryArgs, UnsignedArgs};
use crate::common::{self, DeviceArgs};

/// Evaluate a model on labelled data: accuracy, macro-F1, log-loss, ROC AUC
/// and the confusion matrix for classification; RMSE, MAE and R² for
/// regression.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: a registry reference (`ns/name[@version|@alias]`), or a
    /// model directory written by `tensorlet train --out`.
    pub model: String,
    /// Labelled rows: a CSV with the model's feature columns and its label
    /// column.
    #[arg(long)]
    pub data: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub unsigned: UnsignedArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let rt = common::runtime(args.device.open()?)?;
    let model = args
        .registry
        .sources()?
        .allow_unsigned(args.unsigned.allow_unsigned)
        .model(&rt, &reg, &args.model)?;
    let meta = &model.meta;
    let Scores {
        rows,
        metrics: scores,
        confusion,
    } = score(&rt, &model, &args.data)?;
    let names: Vec<String> = (0..meta.classes).map(|c| model.class_name(c)).collect();
    if args.json {
        let mut out = json!({
            "model": args.model,
            "data": args.data.display().to_string(),
            "rows": rows,
            "task": meta.task,
            "metrics": scores,
        });
        if let Some(cm) = &confusion {
            out["classes"] = json!(names);
            out["confusion"] = json!(cm);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let task = match meta.task {
        Task::Classification => "classification",
        Task::Regression => "regression",
    };
    println!(
        "{} on {} ({} rows, {task})",
        args.model,
        args.data.display(),
        rows
    );
    for (k, v) in &scores {
        println!("  {k:<9} {v:.4}");
    }
    if let Some(cm) = confusion {
        let width = names.iter().map(String::len).max().unwrap_or(1).max(5);
        println!("\nconfusion (rows: actual, columns: predicted)");
        let head: String = names.iter().map(|n| format!(" {n:>width$}")).collect();
        println!("  {:<width$}{head}", "");
        for (n, row) in names.iter().zip(&cm) {
            let cells: String = row.iter().map(|c| format!(" {c:>width$}")).collect();
            println!("  {n:<width$}{cells}");
        }
    }
    Ok(())
}
