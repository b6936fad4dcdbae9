//! Continuing an interrupted (or failed) run: whether it may be resumed,
//! its recorded pipeline, options and data, and the checkpoint to continue
//! from, so that it ends with exactly the params an uninterrupted run
//! would have.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tensorlet_registry::{Checkpoint, Registry, RunRecord, RunStatus, VerifiedArtifact, digest};

#[cfg(doc)]
use super::data::DataSource;
use super::host::process_alive;
use crate::model;
use crate::pipeline::{Pipeline, TrainingConfig};
use crate::source::{Notice, Sources};
use crate::train::{self, EpochMetrics, Resume};
use crate::{NamedTensors, Runtime};

/// Refuses to resume a completed run, or one whose process still runs here.
pub fn check_resumable(record: &RunRecord) -> Result<()> {
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
        _ => Ok(()),
    }
}

/// What a resumed run trains: as it recorded it.
pub struct Recorded {
    /// The pipeline as the user named it.
    pub origin: String,
    /// The pipeline, with the recorded training options.
    pub pipeline: Pipeline,
    /// The pipeline artifact, when it came from the registry.
    pub artifact: Option<VerifiedArtifact>,
    /// Whether it ran unverified components (`--allow-unsigned`).
    pub allow_unsigned: bool,
}

impl Recorded {
    /// Reads back what `record` trained: the pinned pipeline artifact, or
    /// the pipeline file unchanged; the training options. Its data is
    /// [`DataSource::from_record`] of the record's `dataset`.
    pub fn of(reg: &Registry, sources: &Sources, record: &RunRecord) -> Result<Self> {
        let rec = &record.record;
        let origin = Some(rec.pipeline.origin.clone())
            .filter(|o| !o.is_empty())
            .context("the run's record does not name its pipeline")?;
        let (mut pipeline, artifact) = match rec.pipeline.reference.as_deref() {
            Some(pinned) => sources.pipeline(reg, pinned)?,
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
                        "the pipeline file {} changed since run {} started (now {}, recorded \
                         {want}); a resumed run must use the same pipeline",
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
        Ok(Recorded {
            origin,
            pipeline,
            artifact,
            allow_unsigned: rec.allow_unsigned,
        })
    }
}

/// The checkpoints of `run` as a point to continue from (`None`: it never
/// got past fitting, or no checkpoint is intact, so it starts over).
///
/// It continues after the newest checkpoint whose blobs are intact: after a
/// power loss the newest ones may not be (they are written without fsync),
/// and training is deterministic, so the epochs after it are recomputed
/// exactly. Damage is noticed through `sources`.
pub fn resume_point(
    rt: &Runtime,
    reg: &Registry,
    sources: &Sources,
    run: &RunRecord,
) -> Result<Option<Resume>> {
    let device = rt.device();
    let checkpoints = reg.runs().checkpoints::<EpochMetrics>(&run.id)?;
    let Some(state_digest) = &run.state else {
        return Ok(None);
    };
    let load = |d: &str, what: &str| -> Result<NamedTensors> {
        let bytes = reg.blob(d)?;
        model::from_safetensors(device, &bytes)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("run {}: cannot read its {what} ({d})", run.id))
    };
    let state = load(state_digest, "preprocessor state")?;
    let history = history(&run.id, &checkpoints)?;
    for k in (1..=history.len()).rev() {
        let kept = &history[..k];
        let Ok(params) = load(&checkpoints[k - 1].params, &format!("epoch {k} checkpoint")) else {
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
            sources.notify(Notice::DamagedCheckpoints {
                run: run.id.clone(),
                epoch: k as u32,
            });
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

/// The metrics of each checkpoint, which must be epochs 1, 2, … in order.
fn history(run: &str, checkpoints: &[Checkpoint<EpochMetrics>]) -> Result<Vec<EpochMetrics>> {
    let mut history = Vec::with_capacity(checkpoints.len());
    for (i, c) in checkpoints.iter().enumerate() {
        if c.epoch as usize != i + 1 {
            bail!(
                "run {run} has no checkpoint for epoch {}; it cannot be resumed",
                i + 1
            );
        }
        history.push(c.metrics.clone());
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tensorlet_registry::{RunDetails, RunHost};

    use super::*;
    use crate::RuntimeConfig;

    /// A run with a fitted state and one checkpoint per validation loss;
    /// each checkpoint's params hold its epoch number.
    fn run_with(reg: &Registry, rt: &Runtime, val_losses: &[f32]) -> RunRecord {
        let dev = rt.device();
        let id = reg.runs().start("p", &RunDetails::default()).unwrap();
        let tensors = |v: f32| -> NamedTensors { vec![("w".into(), dev.fill(&[2], v).unwrap())] };
        let bytes = |v: f32| model::to_safetensors(dev, &tensors(v)).unwrap();
        reg.runs().save_state(&id, &bytes(-1.0)).unwrap();
        for (i, l) in val_losses.iter().enumerate() {
            let e = i as u32 + 1;
            let mut m = EpochMetrics::new(e, 1.0, None, 0.1);
            m.val_loss = Some(*l);
            reg.runs().checkpoint(&id, e, &bytes(e as f32), &m).unwrap();
        }
        reg.runs().get(&id).unwrap()
    }

    fn value(rt: &Runtime, t: &NamedTensors) -> f32 {
        rt.device().to_vec(&t[0].1).unwrap()[0]
    }

    fn damage(home: &std::path::Path, d: &str) {
        let path = home
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        std::fs::write(path, b"torn").unwrap();
    }

    #[test]
    fn resume_continues_after_the_newest_intact_checkpoint_with_the_best_one() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let notices = Arc::new(Mutex::new(Vec::new()));
        let n = notices.clone();
        let sources =
            Sources::default().with_notify(Arc::new(move |x| n.lock().unwrap().push(x.clone())));

        // Epoch 2 has the lowest validation loss; epoch 4 is the newest.
        let run = run_with(&reg, &rt, &[0.9, 0.2, 0.5, 0.4]);
        let r = resume_point(&rt, &reg, &sources, &run).unwrap().unwrap();
        assert_eq!(r.history.len(), 4);
        assert_eq!(value(&rt, &r.params), 4.0);
        assert_eq!(value(&rt, &r.state), -1.0);
        let (best, params) = r.best.unwrap();
        assert_eq!((best, value(&rt, &params)), (2, 2.0));
        assert!(notices.lock().unwrap().is_empty());

        // The newest checkpoint is torn: continue after epoch 3, noticed.
        let cps = reg.runs().checkpoints::<EpochMetrics>(&run.id).unwrap();
        damage(home.path(), &cps[3].params);
        let r = resume_point(&rt, &reg, &sources, &run).unwrap().unwrap();
        assert_eq!((r.history.len(), value(&rt, &r.params)), (3, 3.0));
        assert_eq!(
            *notices.lock().unwrap(),
            [Notice::DamagedCheckpoints {
                run: run.id.clone(),
                epoch: 3
            }]
        );

        // The best one is torn too: after epoch 3 it could not be kept, and
        // epoch 2's own checkpoint is gone, so it continues after epoch 1.
        damage(home.path(), &cps[1].params);
        let r = resume_point(&rt, &reg, &sources, &run).unwrap().unwrap();
        assert_eq!((r.history.len(), value(&rt, &r.params)), (1, 1.0));
        assert!(r.best.is_none(), "epoch 1 is its own best");
    }

    #[test]
    fn a_run_that_never_fitted_starts_over_and_finished_runs_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let id = reg.runs().start("p", &RunDetails::default()).unwrap();
        let run = reg.runs().get(&id).unwrap();
        assert!(
            resume_point(&rt, &reg, &Sources::default(), &run)
                .unwrap()
                .is_none()
        );

        let mut done = run.clone();
        done.status = RunStatus::Completed;
        done.model = Some("acme/m@1.0.0".into());
        let e = check_resumable(&done).unwrap_err().to_string();
        assert!(e.contains("already completed (model acme/m@1.0.0)"), "{e}");
        let mut alive = run;
        alive.record = RunDetails {
            host: RunHost {
                hostname: super::super::host::hostname(),
                pid: Some(std::process::id()),
                ..RunHost::default()
            },
            ..RunDetails::default()
        };
        let e = check_resumable(&alive).unwrap_err().to_string();
        assert!(e.contains("is still running"), "{e}");
        alive.status = RunStatus::Interrupted;
        assert!(check_resumable(&alive).is_ok());
    }
}
