//! `tensorlet demo`: the whole story on the bundled data, in seconds.

use std::time::Instant;

use anyhow::{Context, Result};
use tensorlet_runtime::model::Model;
use tensorlet_runtime::{Pipeline, data};

use crate::bundled::EXAMPLES;
use crate::common::{self, DeviceArgs};

/// Train the bundled iris and digits pipelines, then predict a few rows.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Keep the trained models in this directory instead of a temporary one.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

pub fn execute(args: Args) -> Result<()> {
    let device = args.device.open()?;
    println!("tensorlet demo on {}", device.info());
    let rt = common::runtime(device)?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let work = args.out.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let mut models = Vec::new();
    for ex in EXAMPLES {
        let data_path = work.join(ex.data_file);
        std::fs::write(&data_path, ex.data)
            .with_context(|| format!("cannot write {}", data_path.display()))?;
        let origin = std::path::PathBuf::from(format!("<bundled {}.toml>", ex.name));
        let pipeline = Pipeline::parse(ex.pipeline, &work, &origin)?;
        let out = work.join(format!("{}-model", ex.name));
        let started = Instant::now();
        let meta = super::train::run(&rt, &pipeline, &data_path, &out, true)?;
        let t = &meta.training;
        println!(
            "{:<7} validation accuracy {:.4}  ({} held-out rows; {} + {}; {} epochs in {:.2} s)",
            meta.name,
            meta.val_accuracy().unwrap_or(f32::NAN),
            meta.split.1,
            meta.plugins.trainer.name,
            meta.plugins.preprocessor.name,
            t.epochs,
            started.elapsed().as_secs_f64(),
        );
        models.push((out, data_path));
    }

    println!();
    println!("predictions from the saved models:");
    for (dir, data_path) in &models {
        let model = Model::load(&rt, dir)?;
        let ds = data::load_labeled(data_path, Some(&model.meta.label))?;
        let f = ds.features();
        // A few rows spread over the file.
        let picks: Vec<usize> = (0..4).map(|i| i * ds.rows() / 4 + 7).collect();
        let x: Vec<f32> = picks
            .iter()
            .flat_map(|&r| ds.x[r * f..(r + 1) * f].iter().copied())
            .collect();
        let p = model.predict(rt.device(), x, picks.len())?;
        for ((&row, &label), probs) in picks.iter().zip(&p.labels).zip(&p.probabilities) {
            let truth = ds.y[row];
            println!(
                "  {:<7} row {:>4}: predicted {:<11} p={:.3}  actual {:<11} {}",
                model.meta.name,
                row + 1,
                model.class_name(label),
                probs[label as usize],
                model.class_name(truth),
                if label == truth { "ok" } else { "MISS" }
            );
        }
    }
    if let Some(out) = &args.out {
        println!();
        println!(
            "models saved in {}; try: tensorlet predict {}/iris-model --input {}/iris.csv",
            out.display(),
            out.display(),
            out.display()
        );
    }
    Ok(())
}
