//! `tensorlet train <pipeline-ref|pipeline.toml> --data <csv> [--key <key>] [--out <dir>]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tensorlet_runtime::artifacts;
use tensorlet_runtime::data::{self, Dataset};
use tensorlet_runtime::model::{self, ModelMeta};
use tensorlet_runtime::registry::{KeyPair, Published, Registry, VerifiedArtifact, digest};
use tensorlet_runtime::train::{self, EpochMetrics, Observer};
use tensorlet_runtime::{Pipeline, Runtime};

use crate::artifacts::{RegistryArgs, UnsignedArgs};
use crate::common::{self, DeviceArgs};

/// Train a pipeline on a CSV file; sign and publish the model to the
/// registry (`--key`), and/or save it as a directory (`--out`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline: a registry reference (`ns/name[@version|@alias]`) or a
    /// pipeline file (TOML).
    pub pipeline: String,
    /// Training data: CSV with a header row, label in the last column (or `[data] label`).
    #[arg(long)]
    pub data: PathBuf,
    /// Sign the model with this key and publish it to the registry.
    #[arg(long, env = "TENSORLET_KEY")]
    pub key: Option<String>,
    /// The model's artifact name; default `<namespace>/<pipeline name>-model`.
    #[arg(long)]
    pub model: Option<String>,
    /// The model's version; default the next patch version (`0.1.0` first).
    #[arg(long)]
    pub version: Option<String>,
    /// Also (or only) write the model to this directory (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub unsigned: UnsignedArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let (mut pipeline, artifact) = load_pipeline(&reg, &args.registry, &args.pipeline)?;
    let t = &mut pipeline.training;
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    t.learning_rate = args.lr.unwrap_or(t.learning_rate);
    t.seed = args.seed.unwrap_or(t.seed);
    t.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid training options")?;
    let publish = match &args.key {
        Some(key) => {
            let key = reg.key(key)?;
            let name = match &args.model {
                Some(n) => n.clone(),
                None => default_model_name(&pipeline, artifact.as_ref())?,
            };
            let version = match &args.version {
                Some(v) => v.clone(),
                None => artifacts::next_version(&reg, &name)?,
            };
            Some(PublishAs { key, name, version })
        }
        None if args.out.is_none() => bail!(
            "nowhere to put the model: pass --key <name> to sign it and publish it to the \
             registry, and/or --out <dir> to save it as a directory"
        ),
        None => None,
    };
    let rt = common::runtime(args.device.open()?)?;
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let out = args.out.clone().unwrap_or_else(|| tmp.path().join("model"));
    let run = Run {
        rt: &rt,
        reg: &reg,
        registry: &args.registry,
        unsigned: args.unsigned.allow_unsigned,
        origin: &args.pipeline,
        artifact: artifact.as_ref(),
    };
    let (meta, published) = run.train(&pipeline, &args.data, &out, publish.as_ref(), true)?;
    println!(
        "trained {}: validation accuracy {} in {:.1} s",
        meta.name,
        meta.val_accuracy()
            .map_or("n/a (no validation split)".into(), |a| format!("{a:.4}")),
        started.elapsed().as_secs_f64()
    );
    println!("params {}", meta.params_digest);
    if let Some(dir) = &args.out {
        println!("model saved to {}", dir.display());
    }
    if let Some(p) = published {
        println!(
            "published {} ({}) signed by key {}",
            p.reference, p.digest, p.key_id
        );
    }
    Ok(())
}

/// Where a trained model is published.
pub struct PublishAs {
    /// The signing key.
    pub key: KeyPair,
    /// `ns/name`.
    pub name: String,
    /// Semantic version.
    pub version: String,
}

/// A pipeline file, or a registry reference verified and read.
pub fn load_pipeline(
    reg: &Registry,
    registry: &RegistryArgs,
    arg: &str,
) -> Result<(Pipeline, Option<VerifiedArtifact>)> {
    let path = Path::new(arg);
    if path.is_file() || arg.ends_with(".toml") {
        return Ok((Pipeline::load(path)?, None));
    }
    let artifact = registry
        .fetch(reg, arg)
        .with_context(|| format!("cannot load pipeline `{arg}`"))?;
    Ok((artifacts::load_pipeline(&artifact)?, Some(artifact)))
}

fn default_model_name(pipeline: &Pipeline, artifact: Option<&VerifiedArtifact>) -> Result<String> {
    let ns = match artifact {
        Some(a) => a.manifest().namespace().to_string(),
        None => match &pipeline.pipeline.namespace {
            Some(ns) => ns.clone(),
            None => bail!(
                "the pipeline has no namespace to publish the model under; pass --model ns/name \
                 or set `namespace` in [pipeline]"
            ),
        },
    };
    Ok(format!("{ns}/{}-model", pipeline.pipeline.name))
}

/// One training run and what it needs.
pub struct Run<'a> {
    /// The runtime.
    pub rt: &'a Runtime,
    /// The local registry (verification, audit, publishing).
    pub reg: &'a Registry,
    /// The remote, if any.
    pub registry: &'a RegistryArgs,
    /// `--allow-unsigned`.
    pub unsigned: bool,
    /// The pipeline as the user named it.
    pub origin: &'a str,
    /// The pipeline artifact, when it came from the registry.
    pub artifact: Option<&'a VerifiedArtifact>,
}

impl Run<'_> {
    /// Loads data and verified plugins, trains with a progress bar, saves the
    /// model to `out`, and publishes it when asked. Audited as `train.run`.
    pub fn train(
        &self,
        pipeline: &Pipeline,
        data_path: &Path,
        out: &Path,
        publish: Option<&PublishAs>,
        progress: bool,
    ) -> Result<(ModelMeta, Option<Published>)> {
        let data: Dataset = data::load_labeled(data_path, pipeline.data.label.as_deref())?;
        let named = pipeline
            .data
            .class_names
            .as_ref()
            .map_or(0, |n| n.len() as u32);
        if named > 0 && data.classes() > named {
            bail!(
                "{}: labels go up to {} but the pipeline names only {named} classes",
                data_path.display(),
                data.classes() - 1
            );
        }
        let classes = data.classes().max(named);
        let resolve =
            |s: &_| crate::artifacts::resolve_stage(self.reg, self.registry, self.unsigned, s);
        let plugins = pipeline.load_plugins(self.rt, &resolve)?;
        let mut bar = Progress::new(&pipeline.pipeline.name, progress);
        let trained = train::train(
            self.rt.device(),
            &plugins,
            &data,
            &pipeline.training,
            classes,
            &mut bar,
        )?;
        bar.finish();
        let meta = model::save(out, self.rt.device(), pipeline, &plugins, &data, &trained)
            .with_context(|| format!("cannot save the model to {}", out.display()))?;
        let dataset = digest(
            &std::fs::read(data_path)
                .with_context(|| format!("cannot read {}", data_path.display()))?,
        );
        let run_id = format!(
            "{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            std::process::id()
        );
        let pipeline_ref = self
            .artifact
            .map_or_else(|| self.origin.to_string(), |a| a.reference());
        let mut published = None;
        if let Some(p) = publish {
            let lineage = json!({
                "pipeline": pipeline_ref,
                "dataset": dataset,
                "run_id": run_id,
                "seed": pipeline.training.seed,
                "parent": null,
            });
            let (manifest, blobs) = artifacts::model_manifest(
                &p.name,
                &p.version,
                out,
                &plugins,
                self.artifact,
                lineage,
            )?;
            let signed = manifest.sign(&p.key);
            published = Some(match self.registry.remote()? {
                Some(remote) => remote.publish(&signed, &blobs)?,
                None => self.reg.publish(&signed, &blobs)?,
            });
        }
        self.reg.record(
            "train.run",
            &pipeline_ref,
            json!({
                "run_id": run_id,
                "dataset": dataset,
                "seed": pipeline.training.seed,
                "epochs": pipeline.training.epochs,
                "val_accuracy": meta.val_accuracy(),
                "params": meta.params_digest,
                "model": published.as_ref().map(|p| p.reference.clone()),
            }),
        )?;
        Ok((meta, published))
    }
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
