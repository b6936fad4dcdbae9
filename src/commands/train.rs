//! `tensorlet train <pipeline.toml> --data <csv> --out <dir>`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tensorlet_runtime::data::{self, Dataset};
use tensorlet_runtime::model::{self, ModelMeta};
use tensorlet_runtime::train::{self, EpochMetrics, Observer};
use tensorlet_runtime::{Pipeline, Runtime};

use crate::common::{self, DeviceArgs};

/// Train a pipeline on a CSV file and save the model.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Training data: CSV with a header row, label in the last column (or `[data] label`).
    #[arg(long)]
    pub data: PathBuf,
    /// Directory to write the model to (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Override `[training] epochs`.
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Override `[training] batch_size`.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Override `[training] learning_rate`.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Override `[training] seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let mut pipeline = Pipeline::load(&args.pipeline)?;
    let t = &mut pipeline.training;
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    t.learning_rate = args.lr.unwrap_or(t.learning_rate);
    t.seed = args.seed.unwrap_or(t.seed);
    t.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid training options")?;
    let rt = common::runtime(args.device.open()?)?;
    let started = Instant::now();
    let meta = run(&rt, &pipeline, &args.data, &args.out, true)?;
    println!(
        "trained {}: validation accuracy {} in {:.1} s",
        meta.name,
        meta.val_accuracy()
            .map_or("n/a (no validation split)".into(), |a| format!("{a:.4}")),
        started.elapsed().as_secs_f64()
    );
    println!("params {}", meta.params_digest);
    println!("model saved to {}", args.out.display());
    Ok(())
}

/// Loads data and plugins, trains with a progress bar, saves the model.
pub fn run(
    rt: &Runtime,
    pipeline: &Pipeline,
    data_path: &Path,
    out: &Path,
    progress: bool,
) -> Result<ModelMeta> {
    let data: Dataset = data::load_labeled(data_path, pipeline.data.label.as_deref())?;
    let named = pipeline
        .data
        .class_names
        .as_ref()
        .map_or(0, |n| n.len() as u32);
    if named > 0 && data.classes() > named {
        anyhow::bail!(
            "{}: labels go up to {} but the pipeline names only {named} classes",
            data_path.display(),
            data.classes() - 1
        );
    }
    let classes = data.classes().max(named);
    let plugins = pipeline.load_plugins(rt, &common::resolve)?;
    let mut bar = Progress::new(&pipeline.pipeline.name, progress);
    let trained = train::train(
        rt.device(),
        &plugins,
        &data,
        &pipeline.training,
        classes,
        &mut bar,
    )?;
    bar.finish();
    let meta = model::save(out, rt.device(), pipeline, &plugins, &data, &trained)
        .with_context(|| format!("cannot save the model to {}", out.display()))?;
    Ok(meta)
}

/// An indicatif bar over all steps, with the latest epoch's metrics.
struct Progress {
    bar: ProgressBar,
    epochs: u32,
}

impl Progress {
    fn new(name: &str, visible: bool) -> Self {
        let bar = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {pos}/{len} steps {elapsed_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar, epochs: 0 }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn start(&mut self, epochs: u32, steps_per_epoch: u64) {
        self.epochs = epochs;
        self.bar.set_length(u64::from(epochs) * steps_per_epoch);
    }

    fn step(&mut self, _epoch: u32, _loss: f32) {
        self.bar.inc(1);
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        let val = match (m.val_loss, m.val_accuracy) {
            (Some(l), Some(a)) => format!(" val_loss {l:.4} val_accuracy {a:.4}"),
            _ => String::new(),
        };
        self.bar.set_message(format!(
            "epoch {}/{} loss {:.4}{val}",
            m.epoch, self.epochs, m.train_loss
        ));
    }
}
