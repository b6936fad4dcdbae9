//! Where a run is recorded: this home's registry always and, with a remote
//! registry and a signing key (`train --registry … --key …`), that registry
//! too, each change signed (central run tracking, see
//! [`tensorlet_registry::tracking`]). Every change is written here first,
//! so a run whose remote goes away keeps everything, and a resumed run
//! sends the remote what it lacks before it goes on.

use std::time::Duration;

use tensorlet_registry::client::Remote;
use tensorlet_registry::tracking::{RunChange, RunEvent, SignedRunEvent};
use tensorlet_registry::{
    Checkpoint, KeyPair, Registry, RegistryError, RunDetails, RunEnd, RunRecord,
};

use crate::train::EpochMetrics;

/// A remote registry that records a run, and the key and namespace it is
/// recorded with.
pub struct Tracking<'a> {
    /// The registry.
    pub remote: &'a Remote,
    /// The trainer's key (the one that signs its model).
    pub key: &'a KeyPair,
    /// The namespace (the model's).
    pub namespace: String,
}

/// How often a change is sent before the run stops for want of its remote,
/// and how long to wait before each retry.
const RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// Records a run here and, with [`Tracking`], on a remote registry.
pub struct Tracker<'a> {
    reg: &'a Registry,
    tracking: Option<Tracking<'a>>,
}

impl<'a> Tracker<'a> {
    /// Records in `reg`, and on `tracking`'s registry when there is one.
    pub fn new(reg: &'a Registry, tracking: Option<Tracking<'a>>) -> Self {
        Tracker { reg, tracking }
    }

    /// The remote registry's URL, when the run is recorded on one.
    pub fn remote_url(&self) -> Option<&str> {
        self.tracking.as_ref().map(|t| t.remote.url())
    }

    /// Sends one change (retried while the remote cannot be reached).
    fn send(
        &self,
        run_id: &str,
        change: RunChange,
        blob: Option<&[u8]>,
    ) -> Result<(), RegistryError> {
        let Some(t) = &self.tracking else {
            return Ok(());
        };
        let event = SignedRunEvent::sign(
            &RunEvent {
                run_id: run_id.to_string(),
                namespace: t.namespace.clone(),
                change,
            },
            t.key,
        );
        let mut waits = RETRIES.iter();
        loop {
            match t.remote.track(&event, blob) {
                Err(RegistryError::Unreachable { .. } | RegistryError::Remote { .. })
                    if let Some(wait) = waits.next() =>
                {
                    std::thread::sleep(*wait);
                }
                other => return other.map_err(|e| self.lost(run_id, e)),
            }
        }
    }

    /// `e`, saying that the run is kept here and how to go on.
    fn lost(&self, run_id: &str, e: RegistryError) -> RegistryError {
        let url = self.remote_url().unwrap_or_default();
        RegistryError::Invalid(format!(
            "cannot record run {run_id} on {url}: {e}. Everything so far is kept in this home; \
             `tensorlet train --resume {run_id} --registry {url}` continues it and sends {url} \
             what it lacks"
        ))
    }

    /// Records a new run; returns its id. A remote that refuses it ends the
    /// run here as failed.
    pub fn start(&self, pipeline: &str, record: &RunDetails) -> Result<String, RegistryError> {
        let id = self.reg.runs().start(pipeline, record)?;
        let change = RunChange::Start {
            pipeline: pipeline.to_string(),
            record: Box::new(record.clone()),
        };
        if let Err(e) = self.send(&id, change, None) {
            let failed = RunEnd::Failed {
                error: e.to_string(),
            };
            self.reg.runs().end(&id, &failed)?;
            return Err(e);
        }
        Ok(id)
    }

    /// Marks `run` as running again after `done` epochs; first sends the
    /// remote whatever of the run it lacks (the start, the fitted state,
    /// checkpoints), so a run that lost its remote catches up.
    pub fn resume(&self, run: &RunRecord, done: u32) -> Result<(), RegistryError> {
        self.reg.runs().resume(&run.id, done)?;
        let sent = match &self.tracking {
            Some(t) => self
                .catch_up(t.remote, run)
                .and_then(|()| self.send(&run.id, RunChange::Resume { after_epoch: done }, None)),
            None => Ok(()),
        };
        if let Err(e) = sent {
            // Resumable again, here, once the registry answers.
            let failed = RunEnd::Failed {
                error: e.to_string(),
            };
            self.reg.runs().end(&run.id, &failed)?;
            return Err(e);
        }
        Ok(())
    }

    fn catch_up(&self, remote: &Remote, run: &RunRecord) -> Result<(), RegistryError> {
        let (state, have) = match remote.run(&run.id) {
            Ok((r, checkpoints)) if r.id == run.id => (r.state, checkpoints),
            Ok(_) | Err(RegistryError::NotFound(_)) => {
                let change = RunChange::Start {
                    pipeline: run.pipeline.clone(),
                    record: Box::new(run.record.clone()),
                };
                self.send(&run.id, change, None)?;
                (None, Vec::new())
            }
            Err(e) => return Err(self.lost(&run.id, e)),
        };
        if let Some(d) = run.state.as_ref().filter(|&d| state.as_ref() != Some(d)) {
            let bytes = self.reg.blob(d)?;
            self.send(
                &run.id,
                RunChange::State { digest: d.clone() },
                Some(&bytes),
            )?;
        }
        let local = self.reg.runs().checkpoints::<serde_json::Value>(&run.id)?;
        for c in local {
            let sent = have
                .iter()
                .any(|h| h.epoch == c.epoch && h.params == c.params);
            if !sent {
                let bytes = self.reg.blob(&c.params)?;
                let change = RunChange::Checkpoint {
                    epoch: c.epoch,
                    params: c.params,
                    metrics: c.metrics,
                };
                self.send(&run.id, change, Some(&bytes))?;
            }
        }
        Ok(())
    }

    /// Stores the run's fitted preprocessor state.
    pub fn save_state(&self, run_id: &str, state: &[u8]) -> Result<(), RegistryError> {
        let d = self.reg.runs().save_state(run_id, state)?;
        self.send(run_id, RunChange::State { digest: d }, Some(state))
    }

    /// Stores the params after an epoch with its metrics.
    pub fn checkpoint(
        &self,
        run_id: &str,
        m: &EpochMetrics,
        params: &[u8],
    ) -> Result<(), RegistryError> {
        let d = self.reg.runs().checkpoint(run_id, m.epoch, params, m)?;
        let metrics = serde_json::to_value(m).map_err(|e| {
            RegistryError::Invalid(format!(
                "run {run_id}: the metrics of epoch {} do not serialise: {e}",
                m.epoch
            ))
        })?;
        let change = RunChange::Checkpoint {
            epoch: m.epoch,
            params: d,
            metrics,
        };
        self.send(run_id, change, Some(params))
    }

    /// Ends the run here, then on the remote.
    pub fn end(&self, run_id: &str, end: &RunEnd) -> Result<(), RegistryError> {
        self.reg.runs().end(run_id, end)?;
        self.send(run_id, RunChange::end(end), None)
    }

    /// How many epochs of the run have a checkpoint here.
    pub fn epochs_done(&self, run_id: &str) -> Result<usize, RegistryError> {
        self.reg.runs().epochs_done(run_id)
    }
}

/// Copies run `id` from `remote` into `reg` (its record, fitted state and
/// every checkpoint; each blob checked against its digest), so that it can
/// be resumed in this home. Returns the run as recorded here.
pub fn fetch(reg: &Registry, remote: &Remote, id: &str) -> anyhow::Result<RunRecord> {
    use anyhow::Context;
    let copy = || -> Result<RunRecord, RegistryError> {
        let (run, checkpoints) = remote.run(id)?;
        let state = run.state.as_deref().map(|d| remote.blob(d)).transpose()?;
        let mut with_params: Vec<(Checkpoint<serde_json::Value>, Vec<u8>)> = Vec::new();
        for c in checkpoints {
            let bytes = remote.blob(&c.params)?;
            with_params.push((c, bytes));
        }
        reg.runs()
            .import(&run, state.as_deref(), &with_params, remote.url())?;
        reg.runs().get(&run.id)
    };
    copy().with_context(|| format!("cannot fetch run {id} from {} to resume it", remote.url()))
}
