//! `tensorlet predict <model-ref|model-dir> --input <csv|json>`

use std::path::PathBuf;

use anyhow::Result;
use tensorlet_runtime::data;
use tensorlet_runtime::report::PredictionView;

use crate::artifacts::{RegistryArgs, UnsignedArgs};
use crate::common::{self, DeviceArgs};

/// Predict with a model: one label per input row.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: a registry reference (`ns/name[@version|@alias]`), or a
    /// model directory written by `tensorlet train --out`.
    pub model: String,
    /// Rows to predict: CSV with a header (a label column is ignored), or a
    /// `.json` file holding an array of rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Print JSON (label, class name, probabilities per row; for regression the
    /// predicted target) instead of labels.
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
    let delimiter = args.delimiter.map(|c| c as u8);
    let input = data::load_features(
        &args.input,
        Some(&model.meta.label),
        model.meta.schema.as_deref(),
        delimiter,
    )?;
    let p = model.predict(rt.device(), input.x, input.rows)?;
    for line in PredictionView::of(&model.meta, &p).lines(args.json) {
        println!("{line}");
    }
    Ok(())
}
