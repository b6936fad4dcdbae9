//! `tensorlet train <pipeline> --data <csv|dataset> [--key <key>] [--out <dir>]`
//! and `tensorlet train --resume <run>`.
//!
//! Every invocation is a recorded run (see `tensorlet runs`): the params
//! after each epoch are a checkpoint in the registry's blob store, the best
//! (or last) checkpoint becomes the model, and Ctrl-C or SIGTERM stops at the
//! next step, records the run as `interrupted` and keeps its checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tensorlet_runtime::artifacts;
use tensorlet_runtime::data::{self, Dataset};
use tensorlet_runtime::model::{self, ModelMeta};
use tensorlet_runtime::pipeline::{Keep, PluginSource, TrainingConfig};
use tensorlet_runtime::registry::{
    KeyPair, Provenance, Published, Reference, Registry, RegistryError, RunData, RunDetails,
    RunEnd, RunHost, RunPipeline, RunPlugin, RunPlugins, RunPublish, RunRecord, RunResult,
    RunStatus, Selector, VerifiedArtifact, check_name, check_version, digest,
};
use tensorlet_runtime::train::{self, EpochMetrics, Observer, PipelinePlugins, Resume};
use tensorlet_runtime::{NamedTensors, Pipeline, Runtime, RuntimeError, Task};

use crate::artifacts::{RegistryArgs, UnsignedArgs};
use crate::common::{self, DeviceArgs};

/// Train a pipeline on a CSV file or a registered dataset; record the run;
/// sign and publish the model to the registry (`--key`), and/or save it as a
/// directory (`--out`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline: a registry reference (`ns/name[@version|@alias]`) or a
    /// pipeline file (TOML).
    #[arg(required_unless_present = "resume")]
    pub pipeline: Option<String>,
    /// Training data: a CSV file with a header row (label in the last column,
    /// or `[data] label`), or a dataset registered with `tensorlet dataset
    /// add` (`name` or `name@sha256:…`).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<String>,
    /// Continue an interrupted (or failed) run from its last checkpoint, with
    /// its recorded pipeline, data and options; it ends with exactly the
    /// params an uninterrupted run would have.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["pipeline", "data"])]
    pub resume: Option<String>,
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
    /// Override `[training] keep`: which checkpoint becomes the model, `best`
    /// (lowest validation loss) or `last`.
    #[arg(long)]
    pub keep: Option<Keep>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub unsigned: UnsignedArgs,
}

/// Exit status of an interrupted run (128 + SIGINT, as shells report Ctrl-C).
const EXIT_INTERRUPTED: i32 = 130;

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let stop = interrupt_flag()?;
    let started = Instant::now();
    let outcome = match &args.resume {
        Some(id) => resume(&reg, &args, id, &stop),
        None => fresh(&reg, &args, &stop),
    };
    let outcome = match outcome {
        Err(e) if is_interrupted(&e) => {
            eprintln!("{e:#}");
            std::process::exit(EXIT_INTERRUPTED);
        }
        other => other?,
    };
    let meta = &outcome.meta;
    let headline = match (meta.task, meta.kept_metrics()) {
        (Task::Regression, Some(m)) if m.val_loss.is_some() => format!(
            "validation r2 {} rmse {}",
            m.val_metrics
                .get("r2")
                .map_or("n/a".into(), |v| format!("{v:.4}")),
            m.val_metrics
                .get("rmse")
                .map_or("n/a".into(), |v| format!("{v:.4}"))
        ),
        _ => format!(
            "validation accuracy {}",
            meta.val_accuracy()
                .map_or("n/a (no validation split)".into(), |a| format!("{a:.4}"))
        ),
    };
    println!(
        "trained {}: {headline} (epoch {} of {} kept; run {}) in {:.1} s",
        meta.name,
        meta.epoch.unwrap_or(meta.metrics.len() as u32),
        meta.metrics.len(),
        outcome.run_id,
        started.elapsed().as_secs_f64()
    );
    println!("params {}", meta.params_digest);
    if let Some(dir) = &args.out {
        println!("model saved to {}", dir.display());
    }
    if let Some(p) = outcome.published {
        println!(
            "published {} ({}) signed by key {}",
            p.reference, p.digest, p.key_id
        );
    }
    Ok(())
}

fn fresh(reg: &Registry, args: &Args, stop: &Arc<AtomicBool>) -> Result<Outcome> {
    if args.resume.is_none() && (args.pipeline.is_none() || args.data.is_none()) {
        bail!("pass a pipeline and --data, or --resume <run>");
    }
    let origin = args.pipeline.as_deref().expect("checked");
    let (mut pipeline, artifact) = load_pipeline(reg, &args.registry, origin)?;
    let t = &mut pipeline.training;
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    t.learning_rate = args.lr.unwrap_or(t.learning_rate);
    t.seed = args.seed.unwrap_or(t.seed);
    t.keep = args.keep.unwrap_or(t.keep);
    t.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid training options")?;
    let publish = publish_target(reg, args, &pipeline, artifact.as_ref(), None)?;
    let data = DataSource::open(reg, args.data.as_deref().expect("checked"))?;
    let rt = common::runtime(args.device.open()?)?;
    let run = Run {
        rt: &rt,
        reg,
        registry: &args.registry,
        unsigned: args.unsigned.allow_unsigned,
        origin,
        artifact: artifact.as_ref(),
        stop: Some(stop.clone()),
    };
    run.record(
        &pipeline,
        &data,
        args.out.as_deref(),
        publish.as_ref(),
        true,
        None,
    )
}

fn resume(reg: &Registry, args: &Args, id: &str, stop: &Arc<AtomicBool>) -> Result<Outcome> {
    let record = reg.runs().get(id)?;
    match record.status {
        RunStatus::Completed => bail!(
            "run {} already completed{}; there is nothing to resume",
            record.id,
            record
                .model
                .as_ref()
                .map_or(String::new(), |m| format!(" (model {m})"))
        ),
        RunStatus::Running if process_alive(&record.record) => bail!(
            "run {} is still running (process {} on this host); stop it first",
            record.id,
            record.record.host.pid.unwrap_or_default()
        ),
        _ => {}
    }
    for (flag, given) in [
        ("--epochs", args.epochs.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--lr", args.lr.is_some()),
        ("--seed", args.seed.is_some()),
        ("--keep", args.keep.is_some()),
    ] {
        if given {
            bail!(
                "{flag} cannot be combined with --resume: a resumed run keeps its recorded options \
                 so that it ends exactly as an uninterrupted run would; start a new run instead"
            );
        }
    }
    let rec = &record.record;
    let origin = Some(rec.pipeline.origin.clone())
        .filter(|o| !o.is_empty())
        .context("the run's record does not name its pipeline")?;
    let (mut pipeline, artifact) = match rec.pipeline.reference.as_deref() {
        Some(pinned) => {
            let (p, a) = load_pipeline(reg, &args.registry, pinned)?;
            (p, a)
        }
        None => {
            let path = PathBuf::from(&origin);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read the run's pipeline file {}; resuming needs it unchanged",
                    path.display()
                )
            })?;
            let want = &rec.pipeline.digest;
            if &digest(&bytes) != want {
                bail!(
                    "the pipeline file {} changed since run {} started (now {}, recorded {want}); \
                     a resumed run must use the same pipeline",
                    path.display(),
                    record.id,
                    digest(&bytes)
                );
            }
            (Pipeline::load(&path)?, None)
        }
    };
    pipeline.training = serde_json::from_value::<TrainingConfig>(rec.config.clone())
        .context("the run's recorded training options are unreadable")?;
    let publish = publish_target(reg, args, &pipeline, artifact.as_ref(), Some(rec))?;
    let data = DataSource::from_record(reg, &rec.dataset)?;
    let out = args
        .out
        .clone()
        .or_else(|| rec.out.as_ref().map(PathBuf::from));
    let rt = common::runtime(args.device.open()?)?;
    let run = Run {
        rt: &rt,
        reg,
        registry: &args.registry,
        unsigned: args.unsigned.allow_unsigned || rec.allow_unsigned,
        origin: &origin,
        artifact: artifact.as_ref(),
        stop: Some(stop.clone()),
    };
    run.record(
        &pipeline,
        &data,
        out.as_deref(),
        publish.as_ref(),
        true,
        Some(&record),
    )
}

/// Where the model goes: `--key` (or, when resuming, the recorded key).
/// Everything about it that can be checked before training is checked here,
/// so that a run that could not keep its model fails before the first epoch:
/// the output directory, the key, the model's name and version, that the
/// version is free, that the key may publish in the namespace, and that
/// every stage is a signed registry artifact.
fn publish_target(
    reg: &Registry,
    args: &Args,
    pipeline: &Pipeline,
    artifact: Option<&VerifiedArtifact>,
    recorded: Option<&RunDetails>,
) -> Result<Option<PublishAs>> {
    let rec = recorded.and_then(|r| r.publish.as_ref());
    let out = args
        .out
        .clone()
        .or_else(|| recorded.and_then(|r| r.out.as_ref().map(PathBuf::from)));
    if let Some(out) = &out
        && out.exists()
        && !out.is_dir()
    {
        bail!(
            "--out {} is a file, not a directory; the model is saved as a directory",
            out.display()
        );
    }
    let key = args
        .key
        .clone()
        .or_else(|| rec.map(|p| p.key.clone()).filter(|k| !k.is_empty()));
    let Some(key) = key else {
        if out.is_none() {
            bail!(
                "nowhere to put the model: pass --key <name> to sign it and publish it to the \
                 registry, and/or --out <dir> to save it as a directory"
            );
        }
        return Ok(None);
    };
    let name = match args
        .model
        .clone()
        .or_else(|| rec.map(|p| p.name.clone()).filter(|n| !n.is_empty()))
    {
        Some(n) => n,
        None => default_model_name(pipeline, artifact)?,
    };
    let version = args
        .version
        .clone()
        .or_else(|| rec.and_then(|p| p.version.clone()));
    let key_pair = reg.key(&key)?;
    let target = format!("{name}@{}", version.as_deref().unwrap_or("<next version>"));
    check_publishable(
        reg,
        &args.registry,
        pipeline,
        &key_pair,
        &name,
        version.as_deref(),
    )
    .with_context(|| {
        format!(
            "cannot publish the model as {target} with key `{key}`, so training did not \
                 start"
        )
    })?;
    Ok(Some(PublishAs {
        key: key_pair,
        key_name: key,
        name,
        version,
    }))
}

/// What publishing `name@version` signed by `key` will check, checked before
/// training: the registry's own checks (name, version, trust, a free version)
/// for the local registry; for a remote one, which applies its own trust
/// policy, the name, the version and that the version is free there. A model
/// pins its plugins, so every stage must be a signed registry artifact.
fn check_publishable(
    reg: &Registry,
    registry: &RegistryArgs,
    pipeline: &Pipeline,
    key: &KeyPair,
    name: &str,
    version: Option<&str>,
) -> Result<()> {
    for (section, stage) in pipeline.stages() {
        if !matches!(stage.source(), PluginSource::Registry(_)) {
            bail!(
                "its {section} is a local `path`/`bundled` plugin, which a published model cannot \
                 pin; publish the plugins and name them with `ref`, or save the model with --out \
                 only"
            );
        }
    }
    let Some(remote) = registry.remote()? else {
        reg.check_publish(&key.public(), name, version)?;
        return Ok(());
    };
    check_name(name)?;
    let Some(version) = version else {
        return Ok(());
    };
    let exact = Reference {
        name: name.to_string(),
        selector: Selector::Version(check_version(version)?),
    };
    match remote.resolve(&exact) {
        Ok((summary, _)) => Err(RegistryError::AlreadyExists {
            artifact: summary.reference(),
            digest: summary.digest,
        }
        .into()),
        Err(RegistryError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Ctrl-C and SIGTERM set the flag; training stops at the next step. A
/// second Ctrl-C exits at once.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, flag.clone())
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, flag.clone())
            .context("cannot install the signal handler")?;
    }
    Ok(flag)
}

fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::Interrupted)
        )
    })
}

fn process_alive(rec: &RunDetails) -> bool {
    let same_host = rec.host.hostname == hostname();
    match rec.host.pid {
        Some(pid) if same_host => Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// A run's status for people: `lost` for one recorded as running whose
/// process on this host is gone (killed or crashed; `--resume` continues it).
pub fn shown_status(run: &RunRecord) -> &'static str {
    let same_host = run.record.host.hostname == hostname();
    if run.status == RunStatus::Running && same_host && !process_alive(&run.record) {
        "lost"
    } else {
        run.status.as_str()
    }
}

/// Where a trained model is published.
pub struct PublishAs {
    /// The signing key.
    pub key: KeyPair,
    /// Its name (recorded so that a resumed run publishes the same way).
    pub key_name: String,
    /// `ns/name`.
    pub name: String,
    /// Semantic version; `None` takes the next patch version when publishing.
    pub version: Option<String>,
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

/// The training data of a run: a CSV file, or a registered dataset's
/// snapshot.
pub struct DataSource {
    /// The file to read.
    pub path: PathBuf,
    /// `sha256:` of its bytes.
    pub digest: String,
    /// The registered dataset, when named by one.
    pub dataset: Option<tensorlet_runtime::registry::Dataset>,
    _snapshot: Option<tempfile::TempDir>,
}

impl DataSource {
    /// A CSV path, or else a dataset name (`name` or `name@sha256:…`).
    pub fn open(reg: &Registry, arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        if path.is_file() {
            return DataSource::file(path);
        }
        if arg.contains(['/', '\\', '.']) && !arg.contains("@sha256:") {
            bail!(
                "{arg}: no such file; --data takes a CSV file or the name of a dataset registered \
                 with `tensorlet dataset add`"
            );
        }
        DataSource::dataset(reg, arg)
    }

    /// A CSV file as it is now.
    pub fn file(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(DataSource {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            digest: digest(&bytes),
            dataset: None,
            _snapshot: None,
        })
    }

    /// A registered dataset: its snapshot, after checking that the file it
    /// was registered from has not changed since (when named without a digest).
    pub fn dataset(reg: &Registry, spec: &str) -> Result<Self> {
        let ds = reg.datasets().get(spec)?;
        if !spec.contains('@')
            && let Ok(now) = std::fs::read(&ds.path)
            && digest(&now) != ds.digest
        {
            bail!(
                "dataset `{}` changed since it was registered: {} now has digest {}, but `{}` was \
                 registered as {}; register the new contents with `tensorlet dataset add {} {}`, \
                 or train on the registered snapshot with `--data {}`",
                ds.name,
                ds.path,
                digest(&now),
                ds.name,
                ds.digest,
                ds.name,
                ds.path,
                ds.reference()
            );
        }
        let bytes = reg
            .blob(&ds.digest)
            .with_context(|| format!("the snapshot of dataset {} is missing", ds.reference()))?;
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let name = Path::new(&ds.path).file_name().map_or_else(
            || format!("{}.csv", ds.name),
            |n| n.to_string_lossy().into(),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DataSource {
            path,
            digest: ds.digest.clone(),
            dataset: Some(ds),
            _snapshot: Some(dir),
        })
    }

    /// The data a run recorded: the same dataset snapshot, or the same file
    /// with the same digest.
    pub fn from_record(reg: &Registry, rec: &RunData) -> Result<Self> {
        let want = Some(rec.digest.as_str())
            .filter(|d| !d.is_empty())
            .context("the run's record has no dataset digest")?;
        if let Some(name) = &rec.name {
            return DataSource::dataset(reg, &format!("{name}@{want}"));
        }
        let path = rec
            .path
            .as_deref()
            .context("the run's record has no data path")?;
        let d = DataSource::file(Path::new(path))?;
        if d.digest != want {
            bail!(
                "{path} changed since the run started (now {}, recorded {want}); a resumed run \
                 must train on the same data. Register data with `tensorlet dataset add` to keep \
                 a snapshot of it",
                d.digest
            );
        }
        Ok(d)
    }

    fn record(&self) -> RunData {
        RunData {
            digest: self.digest.clone(),
            name: self.dataset.as_ref().map(|d| d.name.clone()),
            path: Some(
                self.dataset
                    .as_ref()
                    .map_or_else(|| self.path.display().to_string(), |d| d.path.clone()),
            ),
        }
    }
}

/// What a run produced.
pub struct Outcome {
    /// The run's id.
    pub run_id: String,
    /// The saved model's metadata.
    pub meta: ModelMeta,
    /// The published model, when one was published.
    pub published: Option<Published>,
}

/// One training run and what it needs.
pub struct Run<'a> {
    /// The runtime.
    pub rt: &'a Runtime,
    /// The local registry (verification, runs, audit, publishing).
    pub reg: &'a Registry,
    /// The remote, if any.
    pub registry: &'a RegistryArgs,
    /// `--allow-unsigned`.
    pub unsigned: bool,
    /// The pipeline as the user named it.
    pub origin: &'a str,
    /// The pipeline artifact, when it came from the registry.
    pub artifact: Option<&'a VerifiedArtifact>,
    /// Set by Ctrl-C / SIGTERM.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Run<'_> {
    /// Loads data and verified plugins and trains as a recorded run (or
    /// continues `resume`) with a progress bar; saves the kept checkpoint as
    /// a model in `out` (or a temporary directory) and publishes it when
    /// asked. Audited as `train.start` / `train.resume` and `train.run`.
    pub fn record(
        &self,
        pipeline: &Pipeline,
        data_source: &DataSource,
        out: Option<&Path>,
        publish: Option<&PublishAs>,
        progress: bool,
        resume: Option<&RunRecord>,
    ) -> Result<Outcome> {
        let data_path = &data_source.path;
        let data: Dataset = data::load(data_path, &pipeline.data.options())?;
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
        let plugin_record = plugins_record(&plugins);
        let pipeline_label = self.artifact.map_or_else(
            || self.origin.to_string(),
            |a| format!("{}@{}", a.manifest().name, a.digest()),
        );

        let device = self.rt.device();
        let (run_id, from) = match resume {
            Some(r) => {
                if r.record.plugins != plugin_record {
                    bail!(
                        "the plugins of run {} changed since it started (recorded {}, now {}); a \
                         resumed run must use the same components",
                        r.id,
                        json!(r.record.plugins),
                        json!(plugin_record)
                    );
                }
                let from = self.resume_point(r)?;
                let done = from.as_ref().map_or(0, |f| f.history.len() as u32);
                self.reg.runs().resume(&r.id, done)?;
                if progress {
                    eprintln!(
                        "resuming run {} after epoch {done} of {}",
                        r.id, pipeline.training.epochs
                    );
                }
                (r.id.clone(), from)
            }
            None => {
                let record = RunDetails {
                    pipeline: RunPipeline {
                        origin: self.origin.to_string(),
                        reference: self
                            .artifact
                            .map(|a| format!("{}@{}", a.manifest().name, a.digest())),
                        version: self.artifact.map(|a| a.reference()),
                        digest: match self.artifact {
                            Some(a) => a.digest().to_string(),
                            None => std::fs::read(self.origin)
                                .map(|b| digest(&b))
                                .unwrap_or_default(),
                        },
                    },
                    host: host_record(self.rt),
                    tensorlet_version: env!("CARGO_PKG_VERSION").to_string(),
                    plugins: plugin_record,
                    config: pipeline.training.to_json(),
                    dataset: data_source.record(),
                    seed: pipeline.training.seed,
                    classes,
                    rows: data.rows() as u64,
                    publish: publish.map(|p| RunPublish {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        key: p.key_name.clone(),
                    }),
                    out: out.map(|o| {
                        std::path::absolute(o)
                            .unwrap_or_else(|_| o.to_path_buf())
                            .display()
                            .to_string()
                    }),
                    allow_unsigned: self.unsigned,
                };
                let id = self.reg.runs().start(&pipeline_label, &record)?;
                if progress {
                    eprintln!("run {id}");
                }
                (id, None)
            }
        };

        let mut recorder = Recorder {
            reg: self.reg,
            run_id: &run_id,
            device,
            bar: Progress::new(&pipeline.pipeline.name, progress),
            stop: self.stop.clone(),
        };
        let trained = train::train_from(
            device,
            &plugins,
            &data,
            &pipeline.training,
            classes,
            &mut recorder,
            from,
        );
        recorder.bar.finish();
        let trained = match trained {
            Ok(t) => t,
            Err(RuntimeError::Interrupted) => {
                let done = self.reg.runs().epochs_done(&run_id)?;
                self.reg.runs().end(&run_id, &RunEnd::Interrupted)?;
                return Err(anyhow::Error::new(RuntimeError::Interrupted).context(format!(
                    "run {run_id} interrupted after {done} of {} epochs; its checkpoints are kept. \
                     Continue it with `tensorlet train --resume {run_id}`",
                    pipeline.training.epochs
                )));
            }
            Err(e) => {
                let msg = e.to_string();
                self.reg
                    .runs()
                    .end(&run_id, &RunEnd::Failed { error: msg.clone() })?;
                if e.device_error().is_some() {
                    // The device, not the pipeline: the epochs done are good.
                    let done = self.reg.runs().epochs_done(&run_id)?;
                    return Err(anyhow::Error::new(e).context(format!(
                        "run {run_id} failed after {done} of {} epochs on {}; its checkpoints \
                         are kept. Continue it on the CPU with `tensorlet train --resume \
                         {run_id} --device cpu`",
                        pipeline.training.epochs,
                        device.info()
                    )));
                }
                return Err(anyhow::Error::new(e).context(format!("run {run_id} failed")));
            }
        };
        let result = self.finish(
            pipeline,
            &plugins,
            &data,
            data_source,
            &trained,
            &run_id,
            out,
            publish,
        );
        match result {
            Ok((meta, published)) => {
                self.reg.runs().end(
                    &run_id,
                    &RunEnd::Completed {
                        model: published.as_ref().map(|p| p.reference.clone()),
                        result: RunResult {
                            dataset: data_source.digest.clone(),
                            seed: pipeline.training.seed,
                            epochs: pipeline.training.epochs,
                            epoch: trained.epoch,
                            val_accuracy: meta.val_accuracy(),
                            params: meta.params_digest.clone(),
                        },
                    },
                )?;
                Ok(Outcome {
                    run_id,
                    meta,
                    published,
                })
            }
            Err(e) => {
                let msg = format!("{e:#}");
                self.reg
                    .runs()
                    .end(&run_id, &RunEnd::Failed { error: msg.clone() })?;
                Err(e.context(format!("run {run_id} failed")))
            }
        }
    }

    /// Saves the model and publishes it with its lineage.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        pipeline: &Pipeline,
        plugins: &PipelinePlugins,
        data: &Dataset,
        data_source: &DataSource,
        trained: &train::TrainedModel,
        run_id: &str,
        out: Option<&Path>,
        publish: Option<&PublishAs>,
    ) -> Result<(ModelMeta, Option<Published>)> {
        let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
        let dir = out.map_or_else(|| tmp.path().join("model"), Path::to_path_buf);
        let meta = model::save(&dir, self.rt.device(), pipeline, plugins, data, trained)
            .with_context(|| format!("cannot save the model to {}", dir.display()))?;
        let Some(p) = publish else {
            return Ok((meta, None));
        };
        let version = match &p.version {
            Some(v) => v.clone(),
            None => artifacts::next_version(self.reg, &p.name)?,
        };
        let lineage = json!({
            "run_id": run_id,
            "pipeline": self.artifact.map_or_else(|| self.origin.to_string(), |a| a.reference()),
            "pipeline_digest": self.artifact.map(|a| a.digest().to_string()),
            "dataset": data_source.digest,
            "dataset_name": data_source.dataset.as_ref().map(|d| d.name.clone()),
            "seed": pipeline.training.seed,
            "epoch": trained.epoch,
            "params": meta.params_digest,
            "parent": null,
        });
        let (manifest, blobs) =
            artifacts::model_manifest(&p.name, &version, &dir, plugins, self.artifact, lineage)?;
        let signed = manifest.sign(&p.key);
        let published = match self.registry.remote()? {
            Some(remote) => remote.publish(&signed, &blobs)?,
            None => self.reg.publish(&signed, &blobs)?,
        };
        Ok((meta, Some(published)))
    }

    /// The checkpoints of `run` as a point to continue from (`None`: it
    /// never got past fitting, so it starts over).
    fn resume_point(&self, run: &RunRecord) -> Result<Option<Resume>> {
        let device = self.rt.device();
        let checkpoints = self.reg.runs().checkpoints::<EpochMetrics>(&run.id)?;
        let Some(state_digest) = &run.state else {
            return Ok(None);
        };
        let load = |d: &str, what: &str| -> Result<NamedTensors> {
            let bytes = self.reg.blob(d)?;
            model::from_safetensors(device, &bytes)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("run {}: cannot read its {what} ({d})", run.id))
        };
        let state = load(state_digest, "preprocessor state")?;
        let mut history = Vec::with_capacity(checkpoints.len());
        for (i, c) in checkpoints.iter().enumerate() {
            if c.epoch as usize != i + 1 {
                bail!(
                    "run {} has no checkpoint for epoch {}; it cannot be resumed",
                    run.id,
                    i + 1
                );
            }
            history.push(c.metrics.clone());
        }
        // Continue after the newest checkpoint whose blobs are intact: after
        // a power loss the newest ones may not be (they are written without
        // fsync), and training is deterministic, so the epochs after it are
        // recomputed exactly. With none, start over (fitting again gives the
        // same state).
        for k in (1..=history.len()).rev() {
            let kept = &history[..k];
            let Ok(params) = load(&checkpoints[k - 1].params, &format!("epoch {k} checkpoint"))
            else {
                continue;
            };
            let best = match train::best_epoch(kept) {
                Some(e) if e as usize != k => {
                    match load(
                        &checkpoints[e as usize - 1].params,
                        &format!("epoch {e} checkpoint"),
                    ) {
                        Ok(p) => Some((e, p)),
                        Err(_) => continue,
                    }
                }
                _ => None,
            };
            if k < history.len() {
                eprintln!(
                    "warning: run {}: the checkpoints after epoch {k} are damaged; continuing \
                     after epoch {k}",
                    run.id
                );
            }
            return Ok(Some(Resume {
                state,
                params,
                history: kept.to_vec(),
                best,
            }));
        }
        Ok(None)
    }
}

fn plugins_record(p: &PipelinePlugins) -> RunPlugins {
    let stage = |s: &train::StagePlugin| {
        let (artifact, manifest, key_id) = match s.component.provenance() {
            Provenance::Signed {
                artifact,
                manifest_digest,
                key_id,
            } => (
                Some(artifact.clone()),
                Some(manifest_digest.clone()),
                Some(key_id.clone()),
            ),
            _ => (None, None, None),
        };
        RunPlugin {
            name: s.component.name().to_string(),
            digest: s.plugin.digest().to_string(),
            artifact,
            manifest,
            key_id,
        }
    };
    RunPlugins {
        preprocessor: stage(&p.preprocessor),
        trainer: p.trainer.as_ref().map(stage),
        predictor: stage(&p.predictor),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Model", "Hardware", "cpu model"] {
        if let Some(v) = info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        }) {
            return v;
        }
    }
    "unknown".into()
}

fn host_record(rt: &Runtime) -> RunHost {
    RunHost {
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cpu: cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        device: rt.device().info().to_string(),
        pid: Some(std::process::id()),
    }
}

/// Stores a checkpoint per epoch and drives the progress bar.
struct Recorder<'a> {
    reg: &'a Registry,
    run_id: &'a str,
    device: &'a tensorlet_runtime::gpu::Device,
    bar: Progress,
    stop: Option<Arc<AtomicBool>>,
}

impl Observer for Recorder<'_> {
    fn start(&mut self, epochs: u32, steps_per_epoch: u64) {
        self.bar.start(epochs, steps_per_epoch);
    }

    fn resumed(&mut self, completed: &[EpochMetrics]) {
        self.bar.resumed(completed);
    }

    fn step(&mut self, epoch: u32, loss: f32) {
        self.bar.step(epoch, loss);
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        self.bar.epoch(m);
    }

    fn fitted(&mut self, state: &NamedTensors) -> tensorlet_runtime::Result<()> {
        self.reg
            .runs()
            .save_state(self.run_id, &model::to_safetensors(self.device, state)?)?;
        Ok(())
    }

    fn checkpoint(
        &mut self,
        m: &EpochMetrics,
        params: &NamedTensors,
    ) -> tensorlet_runtime::Result<()> {
        self.reg.runs().checkpoint(
            self.run_id,
            m.epoch,
            &model::to_safetensors(self.device, params)?,
            m,
        )?;
        Ok(())
    }

    fn interrupted(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// An indicatif bar over all steps, with the latest epoch's metrics.
struct Progress {
    bar: ProgressBar,
    epochs: u32,
    steps_per_epoch: u64,
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
        Progress {
            bar,
            epochs: 0,
            steps_per_epoch: 0,
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn start(&mut self, epochs: u32, steps_per_epoch: u64) {
        self.epochs = epochs;
        self.steps_per_epoch = steps_per_epoch;
        self.bar.set_length(u64::from(epochs) * steps_per_epoch);
    }

    fn resumed(&mut self, completed: &[EpochMetrics]) {
        self.bar
            .set_position(completed.len() as u64 * self.steps_per_epoch);
        if let Some(m) = completed.last() {
            self.epoch(m);
        }
    }

    fn step(&mut self, _epoch: u32, _loss: f32) {
        self.bar.inc(1);
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        let val = match (m.val_loss, m.val_accuracy, m.val_metrics.get("r2")) {
            (Some(l), Some(a), _) => format!(" val_loss {l:.4} val_accuracy {a:.4}"),
            (Some(l), None, Some(r2)) => format!(" val_loss {l:.4} val_r2 {r2:.4}"),
            _ => String::new(),
        };
        self.bar.set_message(format!(
            "epoch {}/{} loss {:.4}{val}",
            m.epoch, self.epochs, m.train_loss
        ));
    }
}
