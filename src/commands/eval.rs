//! `tensorlet eval <model> --data <csv>`: the task's metrics of a model on a
//! labelled table it did not train on.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::json;
use tensorlet_runtime::train::Labels;
use tensorlet_runtime::{Task, data, metrics};

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
    let model = super::predict::load_model(
        &rt,
        &reg,
        &args.registry,
        args.unsigned.allow_unsigned,
        &args.model,
    )?;
    let meta = &model.meta;
    let input = data::load_features(&args.data, Some(&meta.label), meta.schema.as_deref())?;
    let labels = data::load_labels(
        &args.data,
        &meta.label,
        meta.task,
        meta.class_names.as_deref(),
    )?;
    if labels.len() != input.rows {
        bail!(
            "{}: read {} rows of features but {} labels",
            args.data.display(),
            input.rows,
            labels.len()
        );
    }
    let p = model.predict(rt.device(), input.x, input.rows)?;
    let (scores, confusion) = match &labels {
        Labels::Classes(y) => {
            let classes = meta.classes as usize;
            let flat: Vec<f32> = p.probabilities.concat();
            let cm = metrics::confusion(y, &p.labels, classes);
            (metrics::classification(&flat, y, classes), Some(cm))
        }
        Labels::Targets(t) => (metrics::regression(&p.values.concat(), t), None),
    };
    let names: Vec<String> = (0..meta.classes).map(|c| model.class_name(c)).collect();
    if args.json {
        let mut out = json!({
            "model": args.model,
            "data": args.data.display().to_string(),
            "rows": input.rows,
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
        input.rows
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
