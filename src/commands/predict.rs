//! `tensorlet predict <model-dir> --input <csv|json>`

use std::path::PathBuf;

use anyhow::Result;
use tensorlet_runtime::data;
use tensorlet_runtime::model::Model;

use crate::common::{self, DeviceArgs};

/// Predict with a saved model: one label per input row.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model directory written by `tensorlet train`.
    pub model: PathBuf,
    /// Rows to predict: CSV with a header (a label column is ignored), or a
    /// `.json` file holding an array of rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Print JSON (label, class name, probabilities per row) instead of labels.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let rt = common::runtime(args.device.open()?)?;
    let model = Model::load(&rt, &args.model)?;
    let input = data::load_features(&args.input, Some(&model.meta.label))?;
    let p = model.predict(rt.device(), input.x, input.rows)?;
    if args.json {
        let rows: Vec<_> = p
            .labels
            .iter()
            .zip(&p.probabilities)
            .map(|(&label, probs)| {
                serde_json::json!({
                    "label": label,
                    "class": model.class_name(label),
                    "probabilities": probs,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for &label in &p.labels {
            println!("{}", model.class_name(label));
        }
    }
    Ok(())
}
