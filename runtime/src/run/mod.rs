//! Training runs as records. A [`Run`] loads verified plugins and data,
//! records the run in the registry (host, versions, plugins, options, data
//! digest), stores the fitted state and a checkpoint per epoch, saves the
//! kept checkpoint as a model, and publishes it signed with its lineage;
//! an interrupted or failed run keeps its checkpoints and continues with
//! [`resume`]. [`history`] reads runs back for listings and comparisons;
//! [`report`] lays them out as `tensorlet runs` prints them; [`summary`]
//! says what a finished run made and [`Bar`] shows one going on a terminal.
//! [`plan`] resolves what a command asks for (a new run with
//! [`overrides`], or a run to resume) into a run to make.

mod bar;
pub mod data;
pub mod history;
pub mod host;
pub mod overrides;
pub mod plan;
pub mod publish;
pub mod report;
pub mod resume;
pub mod summary;
pub mod track;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tensorlet_gpu::Device;
use tensorlet_registry::{
    Provenance, Published, Registry, RunDetails, RunEnd, RunPipeline, RunPlugin, RunPlugins,
    RunPublish, RunRecord, RunResult, VerifiedArtifact, digest,
};

pub use self::bar::Bar;
use self::data::DataSource;
use self::host::host_record;
use self::publish::PublishAs;
use self::resume::resume_point;
use self::track::{Tracker, Tracking};
use crate::data::{self as table, Dataset};
use crate::model::{self, ModelMeta};
use crate::pipeline::Pipeline;
use crate::source::{Notice, Sources};
use crate::train::{self, EpochMetrics, Observer, PipelinePlugins};
use crate::{NamedTensors, Runtime, RuntimeError, artifacts};

/// Hears how a run goes: the training progress of [`Observer`] (its
/// `start`, `resumed`, `step` and `epoch`), and the run's own events.
/// Every method has a do-nothing default.
pub trait Progress {
    /// A new run was recorded as `run_id`.
    fn started(&mut self, _run_id: &str) {}
    /// Run `run_id` continues after epoch `done` of `epochs`.
    fn resuming(&mut self, _run_id: &str, _done: u32, _epochs: u32) {}
    /// Training starts: `epochs` epochs of `steps_per_epoch` steps.
    fn start(&mut self, _epochs: u32, _steps_per_epoch: u64) {}
    /// A resumed run has these epochs done already.
    fn resumed(&mut self, _completed: &[EpochMetrics]) {}
    /// A step of `epoch` ended with `loss`.
    fn step(&mut self, _epoch: u32, _loss: f32) {}
    /// An epoch ended.
    fn epoch(&mut self, _metrics: &EpochMetrics) {}
    /// Something to tell the person training (see [`Observer::note`]).
    fn note(&mut self, _message: &str) {}
    /// Training ended (or stopped).
    fn finish(&mut self) {}
}

/// The training data, loaded or opened to stream (`[training] stream`).
enum Loaded {
    Memory(Box<Dataset>),
    Stream(Box<table::Stream>),
}

impl Loaded {
    fn read(path: &Path, pipeline: &Pipeline) -> Result<Loaded> {
        let opts = pipeline.data.options();
        Ok(if pipeline.training.stream {
            Loaded::Stream(Box::new(table::Stream::open(path, &opts)?))
        } else {
            Loaded::Memory(Box::new(table::load(path, &opts)?))
        })
    }

    /// The table's description (and, in memory, its rows).
    fn dataset(&self) -> &Dataset {
        match self {
            Loaded::Memory(d) => d,
            Loaded::Stream(s) => s.dataset(),
        }
    }

    fn classes(&self) -> u32 {
        match self {
            Loaded::Memory(d) => d.classes(),
            Loaded::Stream(s) => s.classes(),
        }
    }

    fn rows(&self) -> usize {
        match self {
            Loaded::Memory(d) => d.rows(),
            Loaded::Stream(s) => s.rows(),
        }
    }
}

/// A run that tells nobody.
impl Progress for () {}

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
    /// Where pipeline stages come from (and a remote to publish to).
    pub sources: &'a Sources,
    /// The pipeline as the user named it.
    pub origin: &'a str,
    /// The pipeline artifact, when it came from the registry.
    pub artifact: Option<&'a VerifiedArtifact>,
    /// When set (by Ctrl-C, SIGTERM, …), training stops at the next step.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Run<'_> {
    /// Loads data and verified plugins and trains as a recorded run (or
    /// continues `resume`), telling `progress` as it goes; saves the kept
    /// checkpoint as a model in `out` (or a temporary directory) and
    /// publishes it when asked. Audited as `train.start` / `train.resume`
    /// and `train.run`.
    pub fn record(
        &self,
        pipeline: &Pipeline,
        data_source: &DataSource,
        out: Option<&Path>,
        publish: Option<&PublishAs>,
        progress: &mut dyn Progress,
        resume: Option<&RunRecord>,
    ) -> Result<Outcome> {
        let data_path = &data_source.path;
        if pipeline.training.stream {
            progress.note(&format!(
                "streaming {}: reading it once to learn its columns",
                data_path.display()
            ));
        }
        let loaded = Loaded::read(data_path, pipeline)?;
        let data = loaded.dataset();
        let named = pipeline
            .data
            .class_names
            .as_ref()
            .map_or(0, |n| n.len() as u32);
        if named > 0 && loaded.classes() > named {
            bail!(
                "{}: labels go up to {} but the pipeline names only {named} classes",
                data_path.display(),
                loaded.classes() - 1
            );
        }
        let classes = loaded.classes().max(named);
        let resolve = |s: &_| self.sources.stage(self.reg, s);
        let plugins = PipelinePlugins::load(pipeline, self.rt, &resolve)?;
        let plugin_record = plugins_record(&plugins);
        let pipeline_label = self.artifact.map_or_else(
            || self.origin.to_string(),
            |a| format!("{}@{}", a.manifest().name, a.digest()),
        );

        let device = self.rt.device();
        let tracker = Tracker::new(self.reg, self.tracking(publish));
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
                let from = resume_point(self.rt, self.reg, self.sources, r)?;
                let done = from.as_ref().map_or(0, |f| f.history.len() as u32);
                tracker.resume(r, done)?;
                progress.resuming(&r.id, done, pipeline.training.epochs);
                (r.id.clone(), from)
            }
            None => {
                let record = self.record_of(
                    pipeline,
                    data_source,
                    loaded.rows(),
                    classes,
                    plugin_record,
                    out,
                    publish,
                );
                let id = tracker.start(&pipeline_label, &record)?;
                progress.started(&id);
                (id, None)
            }
        };

        let mut recorder = Recorder {
            tracker: &tracker,
            run_id: &run_id,
            device,
            progress,
            stop: self.stop.clone(),
        };
        let trained = match &loaded {
            Loaded::Memory(data) => train::train_from(
                device,
                &plugins,
                data,
                &pipeline.training,
                classes,
                &mut recorder,
                from,
            ),
            Loaded::Stream(stream) => crate::stream::train_streamed(
                device,
                &plugins,
                stream,
                &pipeline.training,
                classes,
                &mut recorder,
                from,
            ),
        };
        recorder.progress.finish();
        let trained = match trained {
            Ok(t) => t,
            Err(RuntimeError::Interrupted) => {
                let done = tracker.epochs_done(&run_id)?;
                tracker.end(&run_id, &RunEnd::Interrupted)?;
                return Err(anyhow::Error::new(RuntimeError::Interrupted).context(format!(
                    "run {run_id} interrupted after {done} of {} epochs; its checkpoints are kept. \
                     Continue it with `tensorlet train --resume {run_id}`",
                    pipeline.training.epochs
                )));
            }
            Err(e) => {
                let msg = e.to_string();
                tracker.end(&run_id, &RunEnd::Failed { error: msg.clone() })?;
                if e.device_error().is_some() {
                    // The device, not the pipeline: the epochs done are good.
                    let done = tracker.epochs_done(&run_id)?;
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
            data,
            data_source,
            &trained,
            &run_id,
            out,
            publish,
        );
        match result {
            Ok((meta, published)) => {
                tracker.end(
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
                tracker.end(&run_id, &RunEnd::Failed { error: msg.clone() })?;
                Err(e.context(format!("run {run_id} failed")))
            }
        }
    }

    /// Where the run is recorded besides this home: the remote registry,
    /// with the key that signs the model, under the model's namespace.
    fn tracking<'p>(&'p self, publish: Option<&'p PublishAs>) -> Option<Tracking<'p>> {
        let remote = self.sources.remote()?;
        let Some(p) = publish else {
            self.sources.notify(Notice::Untracked {
                url: remote.url().to_string(),
            });
            return None;
        };
        Some(Tracking {
            remote,
            key: &p.key,
            namespace: p.name.split_once('/').map_or("", |(ns, _)| ns).to_string(),
        })
    }

    /// What a new run records: the pipeline (as named, pinned and by
    /// digest), the host, the version, the plugins, the options, the data,
    /// and where its model goes.
    #[allow(clippy::too_many_arguments, reason = "one record of many parts")]
    fn record_of(
        &self,
        pipeline: &Pipeline,
        data_source: &DataSource,
        rows: usize,
        classes: u32,
        plugins: RunPlugins,
        out: Option<&Path>,
        publish: Option<&PublishAs>,
    ) -> RunDetails {
        RunDetails {
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
            plugins,
            config: pipeline.training.to_json(),
            dataset: data_source.record(),
            seed: pipeline.training.seed,
            classes,
            rows: rows as u64,
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
            allow_unsigned: self.sources.unsigned_allowed(),
        }
    }

    /// Saves the model and publishes it with its lineage.
    #[allow(clippy::too_many_arguments, reason = "the parts of a finished run")]
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
        let published = match self.sources.remote() {
            Some(remote) => remote.publish(&signed, &blobs)?,
            None => self.reg.publish(&signed, &blobs)?,
        };
        Ok((meta, Some(published)))
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
        preprocessor: stage(p.preprocessors.first()),
        chain: p.preprocessors.plugins().skip(1).map(stage).collect(),
        trainer: p.trainer.as_ref().map(stage),
        predictor: stage(&p.predictor),
    }
}

/// Stores the fitted state and a checkpoint per epoch; passes progress on.
struct Recorder<'a> {
    tracker: &'a Tracker<'a>,
    run_id: &'a str,
    device: &'a Device,
    progress: &'a mut dyn Progress,
    stop: Option<Arc<AtomicBool>>,
}

impl Observer for Recorder<'_> {
    fn start(&mut self, epochs: u32, steps_per_epoch: u64) {
        self.progress.start(epochs, steps_per_epoch);
    }

    fn resumed(&mut self, completed: &[EpochMetrics]) {
        self.progress.resumed(completed);
    }

    fn step(&mut self, epoch: u32, loss: f32) {
        self.progress.step(epoch, loss);
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        self.progress.epoch(m);
    }

    fn fitted(&mut self, state: &NamedTensors) -> crate::Result<()> {
        self.tracker
            .save_state(self.run_id, &model::to_safetensors(self.device, state)?)?;
        Ok(())
    }

    fn checkpoint(&mut self, m: &EpochMetrics, params: &NamedTensors) -> crate::Result<()> {
        self.tracker
            .checkpoint(self.run_id, m, &model::to_safetensors(self.device, params)?)?;
        Ok(())
    }

    fn note(&mut self, message: &str) {
        self.progress.note(message);
    }

    fn interrupted(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}
