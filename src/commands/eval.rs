//! `tensorlet eval <model> --data <csv>`: the task's metrics of a model on a
//! labelled table it did not train on.

use std::path::PathBuf;

use anyhow::Result;
use tensorlet_runtime::eval::{Report, score};

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
    /// The CSV field delimiter (`;`, `|`, `\t`; default a tab for `.tsv`
    /// files and a comma otherwise).
    #[arg(long, value_parser = tensorlet_runtime::data::parse_delimiter)]
    pub delimiter: Option<char>,
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
    let scores = score(&rt, &model, &args.data, args.delimiter.map(|c| c as u8))?;
    let classes: Vec<String> = (0..model.meta.classes)
        .map(|c| model.class_name(c))
        .collect();
    let report = Report {
        model: &args.model,
        data: &args.data,
        task: model.meta.task,
        classes: &classes,
        scores: &scores,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{report}");
    }
    Ok(())
}
