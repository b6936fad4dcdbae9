//! Training runs and their per-epoch checkpoints, behind [`Runs`]
//! ([`crate::Registry::runs`]).
//!
//! A run's parameters after every epoch and its fitted preprocessor state are
//! blobs in the same content-addressed store as artifacts, so a checkpoint is
//! as durable as a published model and identical checkpoints share one file.
//! What a run records when it starts is a [`RunDetails`]; every field has a
//! default, so records written by earlier versions (or with fewer fields)
//! still load.

use rusqlite::{OptionalExtension, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditLog;
use crate::blobs::{self, Blobs};
use crate::db::Db;
use crate::digest::digest;
use crate::error::{RegistryError, Result};
use crate::time::now_rfc3339;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Training (or its process died without saying so).
    Running,
    /// Finished every epoch.
    Completed,
    /// Stopped by an error.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM; resumable.
    Interrupted,
}

impl RunStatus {
    /// The word stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Running,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (`YYYYMMDD-HHMMSS-xxxx`).
    pub id: String,
    /// The pipeline as the run loaded it (a pinned reference or a file).
    pub pipeline: String,
    /// Status.
    pub status: RunStatus,
    /// Start (UTC).
    pub started: String,
    /// End (UTC), once it ended.
    pub ended: Option<String>,
    /// What the run recorded when it started.
    pub record: RunDetails,
    /// Digest of the fitted preprocessor state.
    pub state: Option<String>,
    /// The model it published (`ns/name@version`).
    pub model: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// For a run a remote trainer recorded here (central run tracking): the
    /// namespace it is recorded under and the key that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked: Option<RunTracking>,
}

/// Who recorded a run on a registry that tracks the runs of remote
/// trainers: its namespace (whose trust policy admits the trainers' keys)
/// and the key that started it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTracking {
    /// The namespace the run is recorded under.
    pub namespace: String,
    /// The key id that started it.
    pub key_id: String,
}

/// What a run records when it starts: enough to show it, compare it with
/// others and resume it exactly. Every field has a default, so a record
/// written by an earlier version, or by a tool that knew fewer fields, loads;
/// a field it lacks reads as empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunDetails {
    /// The pipeline it trained.
    pub pipeline: RunPipeline,
    /// The machine it ran on.
    pub host: RunHost,
    /// The tensorlet version that ran it.
    pub tensorlet_version: String,
    /// The plugins of each stage.
    pub plugins: RunPlugins,
    /// The training options, as the runtime's `TrainingConfig` writes them.
    /// Kept as JSON: the registry knows nothing of the runtime, and records
    /// from before the options kept their `f32` form hold them widened
    /// (`0.10000000149011612`), which readers normalise for display.
    pub config: Value,
    /// The training data.
    pub dataset: RunData,
    /// The seed of the split, the shuffles and the initialisation.
    pub seed: u64,
    /// Number of classes (the pipeline's, or the labels').
    pub classes: u32,
    /// Rows of training data.
    pub rows: u64,
    /// Where the model is published, when it is.
    pub publish: Option<RunPublish>,
    /// The directory the model is saved to (absolute), when given.
    pub out: Option<String>,
    /// Whether unsigned plugins were allowed (`--allow-unsigned`).
    pub allow_unsigned: bool,
}

/// The pipeline a run trained.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunPipeline {
    /// As the user named it: a reference or a file path.
    pub origin: String,
    /// The pinned reference (`ns/name@sha256:…`) when it came from the
    /// registry; `None` for a pipeline file.
    pub reference: Option<String>,
    /// `ns/name@version` when it came from the registry.
    pub version: Option<String>,
    /// The artifact's manifest digest, or the file's digest.
    pub digest: String,
}

/// The machine a run ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunHost {
    /// Host name.
    pub hostname: String,
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture (`x86_64`).
    pub arch: String,
    /// CPU model.
    pub cpu: String,
    /// CPUs available.
    pub cpus: u32,
    /// The tensor device (`cpu (reference)`, a GPU adapter).
    pub device: String,
    /// The training process, to tell a live run from a lost one.
    pub pid: Option<u32>,
}

/// The plugins of a run's stages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunPlugins {
    /// The (first) preprocessor.
    pub preprocessor: RunPlugin,
    /// The preprocessors after the first, in order (a chain).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<RunPlugin>,
    /// The trainer; `None` for a model trained by the host.
    pub trainer: Option<RunPlugin>,
    /// The predictor.
    pub predictor: RunPlugin,
}

impl RunPlugins {
    /// The stage named `preprocessor`, `preprocessor.2`…, `trainer` or
    /// `predictor`.
    pub fn stage(&self, stage: &str) -> Option<&RunPlugin> {
        match stage {
            "preprocessor" => Some(&self.preprocessor),
            "trainer" => self.trainer.as_ref(),
            "predictor" => Some(&self.predictor),
            _ => {
                let n: usize = stage.strip_prefix("preprocessor.")?.parse().ok()?;
                self.chain.get(n.checked_sub(2)?)
            }
        }
    }

    /// The names of the stages a run shows, in order: `preprocessor`, the
    /// chain's `preprocessor.2`…, `trainer` (even when there is none) and
    /// `predictor`.
    pub fn stage_names(&self) -> Vec<String> {
        let mut v = vec!["preprocessor".to_string()];
        v.extend((0..self.chain.len()).map(|i| format!("preprocessor.{}", i + 2)));
        v.extend(["trainer".to_string(), "predictor".to_string()]);
        v
    }

    /// The stages a comparison of these runs shows: every stage any of them
    /// has, in [`RunPlugins::stage_names`] order (the longest chain's).
    pub fn stage_names_of<'a>(runs: impl IntoIterator<Item = &'a RunPlugins>) -> Vec<String> {
        runs.into_iter().max_by_key(|p| p.chain.len()).map_or_else(
            || RunPlugins::default().stage_names(),
            RunPlugins::stage_names,
        )
    }

    /// Every stage with its name, in order: the preprocessors
    /// (`preprocessor`, `preprocessor.2`…), the trainer when there is one,
    /// the predictor.
    pub fn stages(&self) -> Vec<(String, &RunPlugin)> {
        let mut v = vec![("preprocessor".to_string(), &self.preprocessor)];
        v.extend(
            self.chain
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("preprocessor.{}", i + 2), p)),
        );
        if let Some(t) = &self.trainer {
            v.push(("trainer".into(), t));
        }
        v.push(("predictor".into(), &self.predictor));
        v
    }
}

/// One stage's plugin as a run loaded it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunPlugin {
    /// The component's name.
    pub name: String,
    /// `sha256:` of the component.
    pub digest: String,
    /// `ns/name@version` of the signed artifact (`None` when unsigned).
    pub artifact: Option<String>,
    /// Its manifest digest.
    pub manifest: Option<String>,
    /// The key that signed it.
    pub key_id: Option<String>,
}

/// A run's training data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunData {
    /// `sha256:` of the data.
    pub digest: String,
    /// The registered dataset, when named by one.
    pub name: Option<String>,
    /// The file (for a dataset, the file it was registered from).
    pub path: Option<String>,
}

/// Where a run publishes its model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunPublish {
    /// `ns/name`.
    pub name: String,
    /// The version; `None` takes the next patch version.
    pub version: Option<String>,
    /// The name of the signing key.
    pub key: String,
}

/// What a completed run produced, recorded in its `train.run` audit entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `sha256:` of the training data.
    pub dataset: String,
    /// The seed.
    pub seed: u64,
    /// Epochs planned.
    pub epochs: u32,
    /// The epoch whose params became the model.
    pub epoch: u32,
    /// Validation accuracy of that epoch, when there is one.
    pub val_accuracy: Option<f32>,
    /// `sha256:` of the model's params.
    pub params: String,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    /// Every epoch ran; `model` is what it published, if it did.
    Completed {
        /// `ns/name@version`.
        model: Option<String>,
        /// What it produced.
        result: RunResult,
    },
    /// An error stopped it.
    Failed {
        /// The error, for people.
        error: String,
    },
    /// Ctrl-C or SIGTERM stopped it; resumable.
    Interrupted,
}

impl RunEnd {
    /// The status it leaves the run in.
    pub fn status(&self) -> RunStatus {
        match self {
            RunEnd::Completed { .. } => RunStatus::Completed,
            RunEnd::Failed { .. } => RunStatus::Failed,
            RunEnd::Interrupted => RunStatus::Interrupted,
        }
    }
}

/// The parameters after one epoch, with that epoch's metrics as the trainer
/// wrote them (the runtime's `EpochMetrics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint<M> {
    /// 1-based epoch.
    pub epoch: u32,
    /// Digest of the params blob (safetensors).
    pub params: String,
    /// The epoch's metrics.
    pub metrics: M,
    /// When it was stored (UTC).
    pub created: String,
}

impl<M> Checkpoint<M> {
    /// The same checkpoint with its metrics read by `read`.
    pub fn try_map<N, E>(
        self,
        read: impl FnOnce(M) -> std::result::Result<N, E>,
    ) -> std::result::Result<Checkpoint<N>, E> {
        Ok(Checkpoint {
            epoch: self.epoch,
            params: self.params,
            metrics: read(self.metrics)?,
            created: self.created,
        })
    }
}

/// A new run id: UTC time to the second and 16 bits that tell runs started
/// in the same second apart.
pub fn new_run_id() -> String {
    let now = now_rfc3339();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let salt = digest(format!("{nanos}-{}", std::process::id()).as_bytes());
    let compact: String = now[..19].chars().filter(char::is_ascii_digit).collect();
    format!(
        "{}-{}-{}",
        &compact[..8],
        &compact[8..],
        &salt["sha256:".len().."sha256:".len() + 4]
    )
}

/// A run row as stored, its record not parsed yet.
struct StoredRun {
    record: RunRecord,
    details: String,
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRun> {
    let status: String = r.get(2)?;
    Ok(StoredRun {
        record: RunRecord {
            id: r.get(0)?,
            pipeline: r.get(1)?,
            status: RunStatus::parse(&status),
            started: r.get(3)?,
            ended: r.get(4)?,
            record: RunDetails::default(),
            state: r.get(6)?,
            model: r.get(7)?,
            error: r.get(8)?,
            tracked: match (r.get(9)?, r.get(10)?) {
                (Some(namespace), Some(key_id)) => Some(RunTracking { namespace, key_id }),
                _ => None,
            },
        },
        details: r.get(5)?,
    })
}

impl StoredRun {
    fn parse(self) -> Result<RunRecord> {
        let mut run = self.record;
        run.record = serde_json::from_str(&self.details).map_err(|e| {
            RegistryError::Damaged(format!("run {}: its record is unreadable: {e}", run.id))
        })?;
        Ok(run)
    }
}

/// Inserts a new run row as `running`; returns the rows inserted (0 when
/// `strict` is off and the id is taken).
fn insert_run(
    db: &Db,
    tx: &rusqlite::Transaction<'_>,
    strict: bool,
    id: &str,
    pipeline: &str,
    record: &str,
    tracked: Option<&RunTracking>,
) -> Result<usize> {
    let verb = if strict { "INSERT" } else { "INSERT OR IGNORE" };
    tx.execute(
        &format!(
            "{verb} INTO runs (id, pipeline, status, started, record, namespace, key_id) \
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6)"
        ),
        params![
            id,
            pipeline,
            now_rfc3339(),
            record,
            tracked.map(|t| &t.namespace),
            tracked.map(|t| &t.key_id)
        ],
    )
    .map_err(|e| db.err(e))
}

const RUN_COLUMNS: &str =
    "id, pipeline, status, started, ended, record, state, model, error, namespace, key_id";

/// The training runs of a registry, and their checkpoints
/// ([`crate::Registry::runs`]).
#[derive(Clone, Copy)]
pub struct Runs<'r> {
    db: &'r Db,
    blobs: &'r Blobs,
    audit: &'r AuditLog,
}

impl std::fmt::Debug for Runs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runs({})", self.db.path().display())
    }
}

impl<'r> Runs<'r> {
    pub(crate) fn new(db: &'r Db, blobs: &'r Blobs, audit: &'r AuditLog) -> Self {
        Runs { db, blobs, audit }
    }

    /// Records a new run as `running` under a fresh id ([`new_run_id`]) and
    /// returns the id; an id already taken (two runs started in the same
    /// second whose 16 bits collide) is drawn again. Audited as `train.start`.
    pub fn start(&self, pipeline: &str, record: &RunDetails) -> Result<String> {
        let (db, audit) = (self.db, self.audit);
        let record = serde_json::to_string(record).expect("a run record serialises");
        audit.write(db, |tx| {
            let mut draws = 0;
            let id = loop {
                let id = new_run_id();
                draws += 1;
                // After 64 draws, a plain insert reports the constraint it breaks.
                if insert_run(db, tx, draws >= 64, &id, pipeline, &record, None)? == 1 {
                    break id;
                }
            };
            audit.append(db, tx, "train.start", pipeline, json!({"run_id": id}))?;
            Ok(id)
        })
    }

    /// Records a remote trainer's new run under the id it chose, for
    /// `tracked` (central run tracking). Starting the same run again with the
    /// same record and key changes nothing (a retried request); anything
    /// else under a taken id is refused. Audited as `train.start` with the
    /// namespace and key.
    pub fn start_tracked(
        &self,
        id: &str,
        pipeline: &str,
        record: &RunDetails,
        tracked: &RunTracking,
    ) -> Result<()> {
        if let Some(run) = self.find(id)? {
            if run.tracked.as_ref() == Some(tracked)
                && run.pipeline == pipeline
                && &run.record == record
            {
                return Ok(());
            }
            return Err(RegistryError::Invalid(format!(
                "run {id} is already recorded here, with another record or key; a new run needs \
                 a new id"
            )));
        }
        let (db, audit) = (self.db, self.audit);
        let text = serde_json::to_string(record).expect("a run record serialises");
        audit.write(db, |tx| {
            insert_run(db, tx, true, id, pipeline, &text, Some(tracked))?;
            audit.append(
                db,
                tx,
                "train.start",
                pipeline,
                json!({"run_id": id, "namespace": tracked.namespace, "key_id": tracked.key_id}),
            )
        })
    }

    /// Copies a run recorded elsewhere (a remote registry that tracks runs)
    /// into this registry so that it can be resumed here: its record as
    /// given, its fitted state and every checkpoint with its params. Audited
    /// as `train.import` with where it came from. A run already here is
    /// refused; resume it instead.
    pub fn import(
        &self,
        run: &RunRecord,
        state: Option<&[u8]>,
        checkpoints: &[(Checkpoint<Value>, Vec<u8>)],
        origin: &str,
    ) -> Result<()> {
        if self.find(&run.id)?.is_some() {
            return Err(RegistryError::Invalid(format!(
                "run {} is already recorded in this home; resume it without importing",
                run.id
            )));
        }
        let (db, audit) = (self.db, self.audit);
        let state = state.map(|s| self.blobs.put(db, s)).transpose()?;
        let mut stored = Vec::with_capacity(checkpoints.len());
        for (c, params) in checkpoints {
            stored.push((c, self.blobs.put(db, params)?));
        }
        let text = serde_json::to_string(&run.record).expect("a run record serialises");
        audit.write(db, |tx| {
            insert_run(db, tx, true, &run.id, &run.pipeline, &text, run.tracked.as_ref())?;
            tx.execute(
                "UPDATE runs SET status = ?1, started = ?2, ended = ?3, state = ?4, model = ?5, \
                 error = ?6 WHERE id = ?7",
                params![
                    run.status.as_str(),
                    run.started,
                    run.ended,
                    state,
                    run.model,
                    run.error,
                    run.id
                ],
            )
            .map_err(|e| db.err(e))?;
            for (c, params) in &stored {
                tx.execute(
                    "INSERT INTO checkpoints (run_id, epoch, params, metrics, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![run.id, c.epoch, params, c.metrics.to_string(), c.created],
                )
                .map_err(|e| db.err(e))?;
            }
            audit.append(
                db,
                tx,
                "train.import",
                &run.pipeline,
                json!({"run_id": run.id, "from": origin, "epochs": stored.len()}),
            )
        })
    }

    /// Marks an interrupted or failed run as `running` again. Audited as
    /// `train.resume` with the epoch it continues after.
    pub fn resume(&self, id: &str, after_epoch: u32) -> Result<()> {
        let (db, audit) = (self.db, self.audit);
        let run = self.get(id)?;
        audit.write(db, |tx| {
            tx.execute(
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL WHERE id = ?1",
                [&run.id],
            )
            .map_err(|e| db.err(e))?;
            audit.append(
                db,
                tx,
                "train.resume",
                &run.pipeline,
                json!({"run_id": run.id, "after_epoch": after_epoch}),
            )
        })
    }

    /// Stores the run's fitted preprocessor state; returns its digest.
    pub fn save_state(&self, id: &str, state: &[u8]) -> Result<String> {
        let db = self.db;
        let d = self.blobs.put(db, state)?;
        db.lock()
            .execute("UPDATE runs SET state = ?1 WHERE id = ?2", params![d, id])
            .map_err(|e| db.err(e))?;
        Ok(d)
    }

    /// Stores the params after `epoch` with that epoch's metrics; returns
    /// the params digest. Storing an epoch again replaces it (a resumed run
    /// that repeats an epoch gets the same bytes).
    ///
    /// Checkpoints are written without fsync, so that epochs of a few
    /// milliseconds are not slowed down by the disk: they survive the
    /// process being killed, and after a power loss a resumed run falls back
    /// to the last checkpoint whose blob is intact (training is
    /// deterministic, so the lost epochs are recomputed exactly). The run's
    /// end ([`Runs::end`]) is durable.
    pub fn checkpoint<M: Serialize>(
        &self,
        id: &str,
        epoch: u32,
        params: &[u8],
        metrics: &M,
    ) -> Result<String> {
        let db = self.db;
        let metrics = serde_json::to_string(metrics).map_err(|e| {
            RegistryError::Invalid(format!(
                "run {id}: the metrics of epoch {epoch} do not serialise: {e}"
            ))
        })?;
        let d = digest(params);
        self.blobs.write(&d, params, false)?;
        let conn = db.lock();
        let relaxed =
            |on: bool| conn.pragma_update(None, "synchronous", if on { "NORMAL" } else { "FULL" });
        relaxed(true).map_err(|e| db.err(e))?;
        let inserted = blobs::list(&conn, &d, params.len())
            .and_then(|()| {
                conn.execute(
                    "INSERT INTO checkpoints (run_id, epoch, params, metrics, created) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(run_id, epoch) DO UPDATE SET params = excluded.params,
                         metrics = excluded.metrics, created = excluded.created",
                    params![id, epoch, d, metrics, now_rfc3339()],
                )
            });
        relaxed(false).map_err(|e| db.err(e))?;
        inserted.map_err(|e| db.err(e))?;
        Ok(d)
    }

    /// Ends a run. Audited as `train.run` with the status, the model, the
    /// error and, for a completed run, its [`RunResult`]'s fields.
    pub fn end(&self, id: &str, end: &RunEnd) -> Result<()> {
        let (db, audit) = (self.db, self.audit);
        let run = self.get(id)?;
        let status = end.status();
        let (model, error, result) = match end {
            RunEnd::Completed { model, result } => (model.as_deref(), None, Some(result)),
            RunEnd::Failed { error } => (None, Some(error.as_str()), None),
            RunEnd::Interrupted => (None, None, None),
        };
        audit.write(db, |tx| {
            tx.execute(
                "UPDATE runs SET status = ?1, ended = ?2, model = ?3, error = ?4 WHERE id = ?5",
                params![status.as_str(), now_rfc3339(), model, error, run.id],
            )
            .map_err(|e| db.err(e))?;
            let mut d = json!({"run_id": run.id, "status": status, "model": model, "error": error});
            if let (Value::Object(d), Some(Ok(Value::Object(extra)))) =
                (&mut d, result.map(serde_json::to_value))
            {
                d.extend(extra);
            }
            audit.append(db, tx, "train.run", &run.pipeline, d)
        })
    }

    /// Every run, newest first.
    pub fn list(&self) -> Result<Vec<RunRecord>> {
        let db = self.db;
        let stored: Vec<StoredRun> = {
            let conn = db.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs ORDER BY started DESC, id DESC"
                ))
                .map_err(|e| db.err(e))?;
            stmt.query_map([], run_row)
                .and_then(Iterator::collect)
                .map_err(|e| db.err(e))?
        };
        stored.into_iter().map(StoredRun::parse).collect()
    }

    /// The run with exactly this id, if there is one.
    pub fn find(&self, id: &str) -> Result<Option<RunRecord>> {
        let db = self.db;
        let conn = db.lock();
        conn.query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            [id],
            run_row,
        )
        .optional()
        .map_err(|e| db.err(e))?
        .map(StoredRun::parse)
        .transpose()
    }

    /// A run by id or by a prefix of its id that only it has.
    pub fn get(&self, id: &str) -> Result<RunRecord> {
        let db = self.db;
        let conn = db.lock();
        let exact = conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_row,
            )
            .optional()
            .map_err(|e| db.err(e))?;
        if let Some(r) = exact {
            return r.parse();
        }
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id"
            ))
            .map_err(|e| db.err(e))?;
        let mut found: Vec<StoredRun> = stmt
            .query_map([id], run_row)
            .and_then(Iterator::collect)
            .map_err(|e| db.err(e))?;
        match found.len() {
            1 => found.remove(0).parse(),
            0 => Err(RegistryError::NotFound(format!(
                "no run `{id}`; `tensorlet runs list` shows the runs"
            ))),
            n => Err(RegistryError::Invalid(format!(
                "`{id}` matches {n} runs ({}); give more of the id",
                found
                    .iter()
                    .map(|r| r.record.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// A run's checkpoints, by epoch, with their metrics read as `M`; metrics
    /// that do not read as `M` are an error naming the run and the epoch.
    pub fn checkpoints<M: DeserializeOwned>(&self, run_id: &str) -> Result<Vec<Checkpoint<M>>> {
        let db = self.db;
        let stored: Vec<Checkpoint<String>> = {
            let conn = db.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT epoch, params, metrics, created FROM checkpoints WHERE run_id = ?1 ORDER BY epoch",
                )
                .map_err(|e| db.err(e))?;
            stmt.query_map([run_id], |r| {
                Ok(Checkpoint {
                    epoch: r.get(0)?,
                    params: r.get(1)?,
                    metrics: r.get(2)?,
                    created: r.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| db.err(e))?
        };
        stored
            .into_iter()
            .map(|c| {
                let epoch = c.epoch;
                c.try_map(|m| {
                    serde_json::from_str(&m).map_err(|e| {
                        RegistryError::Damaged(format!(
                            "run {run_id}: epoch {epoch} metrics are unreadable: {e}"
                        ))
                    })
                })
            })
            .collect()
    }

    /// How many epochs of a run have a checkpoint.
    pub fn epochs_done(&self, run_id: &str) -> Result<usize> {
        let db = self.db;
        let conn = db.lock();
        conn.query_row(
            "SELECT count(*) FROM checkpoints WHERE run_id = ?1",
            [run_id],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as usize)
        .map_err(|e| db.err(e))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn stage_names_cover_the_longest_chain() {
        let one = RunPlugins::default();
        let chain = RunPlugins {
            chain: vec![RunPlugin::default(), RunPlugin::default()],
            ..RunPlugins::default()
        };
        assert_eq!(one.stage_names(), ["preprocessor", "trainer", "predictor"]);
        let all = RunPlugins::stage_names_of([&one, &chain]);
        assert_eq!(
            all,
            [
                "preprocessor",
                "preprocessor.2",
                "preprocessor.3",
                "trainer",
                "predictor"
            ]
        );
        assert_eq!(chain.stage("preprocessor.3"), Some(&chain.chain[1]));
        assert_eq!(chain.stage("preprocessor.4"), None);
        assert_eq!(RunPlugins::stage_names_of([]), one.stage_names());
    }

    use super::*;
    use crate::Registry;

    #[test]
    fn runs_started_together_get_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        // A thousand runs within a second or two: some of their 16-bit
        // suffixes collide, and each is drawn again instead of failing.
        let ids: Vec<String> = (0..1000)
            .map(|i| {
                let record = RunDetails {
                    seed: i,
                    ..RunDetails::default()
                };
                reg.runs().start("p", &record).unwrap()
            })
            .collect();
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            let run = reg.runs().get(id).unwrap();
            assert_eq!(run.id, *id);
            assert_eq!(run.record.seed, i as u64);
        }
    }

    #[test]
    fn run_ids_are_sortable_and_distinct() {
        let a = new_run_id();
        let b = new_run_id();
        assert_eq!(a.len(), "20261122-054700-3f2a".len(), "{a}");
        assert!(a[..8].chars().all(|c| c.is_ascii_digit()));
        assert_ne!(a, b);
    }

    /// A record as `tensorlet train` wrote it before records were typed
    /// (the options widened to `f64`, a pipeline file, a dataset file).
    const OLD_RECORD: &str = r#"{
        "allow_unsigned": false,
        "classes": 3,
        "config": {"batch_size": 16, "epochs": 12, "learning_rate": 0.10000000149011612,
                   "seed": 3, "validation_fraction": 0.20000000298023224},
        "dataset": {"digest": "sha256:aa", "name": null, "path": "/data/iris.csv"},
        "host": {"arch": "x86_64", "cpu": "Xeon", "cpus": 2, "device": "cpu (reference)",
                 "hostname": "node-1", "os": "linux", "pid": 4242},
        "out": null,
        "pipeline": {"digest": "sha256:bb", "origin": "iris.toml", "reference": null,
                     "version": null},
        "plugins": {
            "predictor": {"artifact": "acme/softmax@1.0.0", "digest": "sha256:cc",
                          "key_id": "k1", "manifest": "sha256:dd", "name": "softmax"},
            "preprocessor": {"artifact": null, "digest": "sha256:ee", "key_id": null,
                             "manifest": null, "name": "standardize"},
            "trainer": {"artifact": "acme/softmax@1.0.0", "digest": "sha256:cc",
                        "key_id": "k1", "manifest": "sha256:dd", "name": "softmax"}
        },
        "publish": {"key": "alice", "name": "acme/iris-model", "version": null},
        "rows": 150,
        "seed": 3,
        "tensorlet_version": "0.1.0"
    }"#;

    #[test]
    fn records_written_before_they_were_typed_load() {
        let r: RunDetails = serde_json::from_str(OLD_RECORD).unwrap();
        assert_eq!(r.pipeline.origin, "iris.toml");
        assert_eq!(r.pipeline.reference, None);
        assert_eq!(r.host.hostname, "node-1");
        assert_eq!(r.host.pid, Some(4242));
        assert_eq!(r.host.cpus, 2);
        assert_eq!(r.plugins.preprocessor.name, "standardize");
        assert_eq!(r.plugins.preprocessor.artifact, None);
        let trainer = r.plugins.stage("trainer").unwrap();
        assert_eq!(trainer.key_id.as_deref(), Some("k1"));
        assert_eq!(r.dataset.path.as_deref(), Some("/data/iris.csv"));
        assert_eq!(r.config["epochs"], 12);
        assert_eq!(r.config["learning_rate"], 0.10000000149011612);
        assert_eq!((r.seed, r.classes, r.rows), (3, 3, 150));
        let publish = r.publish.as_ref().unwrap();
        assert_eq!(
            (publish.name.as_str(), publish.key.as_str()),
            ("acme/iris-model", "alice")
        );
        // Written back, it is the same JSON: `runs show --json` prints what
        // was recorded.
        let old: Value = serde_json::from_str(OLD_RECORD).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), old);

        // A model trained by the host has no trainer; a record with only
        // some fields (a test's, a benchmark's) loads with the rest empty.
        let r: RunDetails =
            serde_json::from_str(r#"{"seed": 1, "plugins": {"trainer": null}}"#).unwrap();
        assert_eq!(r.seed, 1);
        assert!(r.plugins.stage("trainer").is_none());
        assert_eq!(r.host, RunHost::default());
        assert!(r.publish.is_none());
    }

    #[test]
    fn a_run_reads_back_typed_with_its_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let record: RunDetails = serde_json::from_str(OLD_RECORD).unwrap();
        let id = reg.runs().start("iris.toml", &record).unwrap();
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Metrics {
            epoch: u32,
            train_loss: f32,
        }
        for epoch in 1..=2 {
            let m = Metrics {
                epoch,
                train_loss: 0.5 / epoch as f32,
            };
            reg.runs()
                .checkpoint(&id, epoch, &[epoch as u8], &m)
                .unwrap();
        }
        assert_eq!(reg.runs().epochs_done(&id).unwrap(), 2);
        let cps: Vec<Checkpoint<Metrics>> = reg.runs().checkpoints(&id).unwrap();
        assert_eq!(
            cps[1].metrics,
            Metrics {
                epoch: 2,
                train_loss: 0.25
            }
        );
        assert_eq!(cps[1].params, digest(&[2]));
        // Metrics of another shape are an error naming the run and epoch.
        let e = reg.runs().checkpoints::<RunResult>(&id).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("run {id}: epoch 1 metrics")),
            "{e}"
        );

        let result = RunResult {
            dataset: "sha256:aa".into(),
            epochs: 2,
            epoch: 2,
            ..RunResult::default()
        };
        let end = RunEnd::Completed {
            model: Some("acme/iris-model@0.1.0".into()),
            result,
        };
        reg.runs().end(&id[..12], &end).unwrap();
        let run = reg.runs().get(&id).unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.model.as_deref(), Some("acme/iris-model@0.1.0"));
        assert_eq!(run.record, record);
        assert_eq!(reg.runs().list().unwrap(), vec![run]);
        let last = reg.audit_log().unwrap().pop().unwrap();
        assert_eq!(last.action, "train.run");
        assert_eq!(last.detail["status"], "completed");
        assert_eq!(last.detail["dataset"], "sha256:aa");
        assert_eq!(last.detail["epoch"], 2);
        assert!(last.detail["error"].is_null());

        // A record that is not a run record any more is an error naming it.
        let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
        conn.execute("UPDATE runs SET record = '[1]' WHERE id = ?1", [&id])
            .unwrap();
        let e = reg.runs().get(&id).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("run {id}: its record is unreadable")),
            "{e}"
        );
    }
}
