//! Training runs with their per-epoch checkpoints, registered datasets, and
//! the alias history that promotion and rollback move along.
//!
//! A run's parameters after every epoch and its fitted preprocessor state are
//! blobs in the same content-addressed store as artifacts, so a checkpoint is
//! as durable as a published model and identical checkpoints share one file.

use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{RegistryError, Result};
use crate::manifest::digest;
use crate::reference::{Reference, Selector, check_alias, check_name, check_version};
use crate::store::{Registry, split_name};
use crate::time::now_rfc3339;

/// Migration 2: runs, checkpoints, datasets, alias history.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE runs (
    id       TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status   TEXT NOT NULL,
    started  TEXT NOT NULL,
    ended    TEXT,
    record   TEXT NOT NULL,
    state    TEXT REFERENCES blobs(digest),
    model    TEXT,
    error    TEXT
);
CREATE TABLE checkpoints (
    run_id  TEXT NOT NULL REFERENCES runs(id),
    epoch   INTEGER NOT NULL,
    params  TEXT NOT NULL REFERENCES blobs(digest),
    metrics TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE datasets (
    name   TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    path   TEXT NOT NULL,
    size   INTEGER NOT NULL,
    added  TEXT NOT NULL,
    PRIMARY KEY (name, digest)
);
CREATE TABLE alias_history (
    id          INTEGER PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    alias       TEXT NOT NULL,
    version     TEXT NOT NULL,
    rolled_back INTEGER NOT NULL DEFAULT 0
);
INSERT INTO alias_history (namespace, name, alias, version)
    SELECT namespace, name, alias, version FROM aliases;
"#;

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
    /// Everything else the run recorded (host, versions, plugins, config,
    /// dataset, seed); its shape belongs to the caller.
    pub record: Value,
    /// Digest of the fitted preprocessor state.
    pub state: Option<String>,
    /// The model it published (`ns/name@version`).
    pub model: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The parameters after one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// 1-based epoch.
    pub epoch: u32,
    /// Digest of the params blob (safetensors).
    pub params: String,
    /// The epoch's metrics.
    pub metrics: Value,
    /// When it was stored (UTC).
    pub created: String,
}

/// A dataset registered by digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Its name.
    pub name: String,
    /// `sha256:` of the file as registered (a snapshot is kept as a blob).
    pub digest: String,
    /// The file it was registered from (absolute).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// When (UTC).
    pub added: String,
}

impl Dataset {
    /// `name@sha256:…`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }
}

/// An alias that moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    /// `ns/name`.
    pub name: String,
    /// The alias.
    pub alias: String,
    /// The version it pointed at before.
    pub from: Option<String>,
    /// The version it points at now.
    pub to: String,
    /// Manifest digest of `to`.
    pub digest: String,
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

pub(crate) fn push_alias_history(
    tx: &Transaction<'_>,
    ns: &str,
    name: &str,
    alias: &str,
    version: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO alias_history (namespace, name, alias, version) VALUES (?1, ?2, ?3, ?4)",
        params![ns, name, alias, version],
    )
    .map(drop)
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let status: String = r.get(2)?;
    let record: String = r.get(5)?;
    Ok(RunRecord {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        status: RunStatus::parse(&status),
        started: r.get(3)?,
        ended: r.get(4)?,
        record: serde_json::from_str(&record).unwrap_or(Value::Null),
        state: r.get(6)?,
        model: r.get(7)?,
        error: r.get(8)?,
    })
}

const RUN_COLUMNS: &str = "id, pipeline, status, started, ended, record, state, model, error";

fn dataset_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Dataset> {
    Ok(Dataset {
        name: r.get(0)?,
        digest: r.get(1)?,
        path: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        added: r.get(4)?,
    })
}

/// Dataset names: like a path segment of an artifact name.
fn check_dataset_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{name}` is not a valid dataset name: use 1-64 lowercase letters, digits, `-` and \
             `_`, starting with a letter or digit"
        )))
    }
}

impl Registry {
    /// Stores bytes as a content-addressed blob (kept like an artifact's
    /// blobs) and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let d = digest(bytes);
        self.write_blob(&d, bytes)?;
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO blobs (digest, size, created) VALUES (?1, ?2, ?3)",
            params![d, bytes.len() as i64, now_rfc3339()],
        )
        .map_err(|e| self.db(e))?;
        Ok(d)
    }

    // ----- runs -------------------------------------------------------------

    /// Records a new run as `running` under a fresh id ([`new_run_id`]) and
    /// returns the id; an id already taken (two runs started in the same
    /// second whose 16 bits collide) is drawn again. Audited as `train.start`.
    pub fn run_start(&self, pipeline: &str, record: &Value) -> Result<String> {
        self.write(|tx| {
            let record = record.to_string();
            let insert = |verb: &str, id: &str| {
                tx.execute(
                    &format!("{verb} INTO runs (id, pipeline, status, started, record) VALUES (?1, ?2, 'running', ?3, ?4)"),
                    params![id, pipeline, now_rfc3339(), record],
                )
                .map_err(|e| self.db(e))
            };
            let mut draws = 0;
            let id = loop {
                let id = new_run_id();
                draws += 1;
                // After 64 draws, a plain insert reports the constraint it breaks.
                let verb = if draws < 64 { "INSERT OR IGNORE" } else { "INSERT" };
                if insert(verb, &id)? == 1 {
                    break id;
                }
            };
            self.append(tx, "train.start", pipeline, json!({"run_id": id}))?;
            Ok(id)
        })
    }

    /// Marks an interrupted or failed run as `running` again. Audited as
    /// `train.resume` with the epoch it continues after.
    pub fn run_resume(&self, id: &str, after_epoch: u32) -> Result<()> {
        let run = self.run(id)?;
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL WHERE id = ?1",
                [&run.id],
            )
            .map_err(|e| self.db(e))?;
            self.append(
                tx,
                "train.resume",
                &run.pipeline,
                json!({"run_id": run.id, "after_epoch": after_epoch}),
            )
        })
    }

    /// Stores the run's fitted preprocessor state; returns its digest.
    pub fn run_state(&self, id: &str, state: &[u8]) -> Result<String> {
        let d = self.put_blob(state)?;
        let conn = self.lock();
        conn.execute("UPDATE runs SET state = ?1 WHERE id = ?2", params![d, id])
            .map_err(|e| self.db(e))?;
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
    /// end (`run_end`) is durable.
    pub fn run_checkpoint(
        &self,
        id: &str,
        epoch: u32,
        params: &[u8],
        metrics: &Value,
    ) -> Result<String> {
        let d = digest(params);
        self.write_blob_with(&d, params, false)?;
        let conn = self.lock();
        let relaxed =
            |on: bool| conn.pragma_update(None, "synchronous", if on { "NORMAL" } else { "FULL" });
        relaxed(true).map_err(|e| self.db(e))?;
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO blobs (digest, size, created) VALUES (?1, ?2, ?3)",
                params![d, params.len() as i64, now_rfc3339()],
            )
            .and_then(|_| {
                conn.execute(
                    "INSERT INTO checkpoints (run_id, epoch, params, metrics, created) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(run_id, epoch) DO UPDATE SET params = excluded.params,
                         metrics = excluded.metrics, created = excluded.created",
                    params![id, epoch, d, metrics.to_string(), now_rfc3339()],
                )
            });
        relaxed(false).map_err(|e| self.db(e))?;
        inserted.map_err(|e| self.db(e))?;
        Ok(d)
    }

    /// Ends a run. Audited as `train.run` with the status, the model, the
    /// error and `detail`'s fields.
    pub fn run_end(
        &self,
        id: &str,
        status: RunStatus,
        model: Option<&str>,
        error: Option<&str>,
        detail: Value,
    ) -> Result<()> {
        let run = self.run(id)?;
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = ?1, ended = ?2, model = ?3, error = ?4 WHERE id = ?5",
                params![status.as_str(), now_rfc3339(), model, error, run.id],
            )
            .map_err(|e| self.db(e))?;
            let mut d = json!({"run_id": run.id, "status": status, "model": model, "error": error});
            if let (Value::Object(d), Value::Object(extra)) = (&mut d, detail) {
                d.extend(extra);
            }
            self.append(tx, "train.run", &run.pipeline, d)
        })
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY started DESC, id DESC"
            ))
            .map_err(|e| self.db(e))?;
        stmt.query_map([], run_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.db(e))
    }

    /// A run by id or by a prefix of its id that only it has.
    pub fn run(&self, id: &str) -> Result<RunRecord> {
        let conn = self.lock();
        let exact = conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_row,
            )
            .optional()
            .map_err(|e| self.db(e))?;
        if let Some(r) = exact {
            return Ok(r);
        }
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id"
            ))
            .map_err(|e| self.db(e))?;
        let mut found: Vec<RunRecord> = stmt
            .query_map([id], run_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.db(e))?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(RegistryError::NotFound(format!(
                "no run `{id}`; `tensorlet runs list` shows the runs"
            ))),
            n => Err(RegistryError::Invalid(format!(
                "`{id}` matches {n} runs ({}); give more of the id",
                found
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// A run's checkpoints, by epoch.
    pub fn checkpoints(&self, run_id: &str) -> Result<Vec<Checkpoint>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT epoch, params, metrics, created FROM checkpoints WHERE run_id = ?1 ORDER BY epoch",
            )
            .map_err(|e| self.db(e))?;
        stmt.query_map([run_id], |r| {
            let metrics: String = r.get(2)?;
            Ok(Checkpoint {
                epoch: r.get(0)?,
                params: r.get(1)?,
                metrics: serde_json::from_str(&metrics).unwrap_or(Value::Null),
                created: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.db(e))
    }

    // ----- datasets -----------------------------------------------------------

    /// Registers `path` as dataset `name` by digest and keeps a snapshot of
    /// it. Registering changed content under the same name adds a new entry
    /// (the newest is what the bare name means); the same content again is a
    /// no-op. Returns the entry and whether it is new. Audited as `dataset.add`.
    pub fn dataset_add(&self, name: &str, path: &Path) -> Result<(Dataset, bool)> {
        check_dataset_name(name)?;
        let bytes = std::fs::read(path).map_err(|e| RegistryError::io(path, e))?;
        let abs = std::fs::canonicalize(path).map_err(|e| RegistryError::io(path, e))?;
        let d = self.put_blob(&bytes)?;
        let entry = Dataset {
            name: name.to_string(),
            digest: d,
            path: abs.display().to_string(),
            size: bytes.len() as u64,
            added: now_rfc3339(),
        };
        let added = self.write(|tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO datasets (name, digest, path, size, added) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![entry.name, entry.digest, entry.path, entry.size as i64, entry.added],
                )
                .map_err(|e| self.db(e))?;
            if n > 0 {
                self.append(
                    tx,
                    "dataset.add",
                    name,
                    json!({"digest": entry.digest, "path": entry.path, "size": entry.size}),
                )?;
            }
            Ok(n > 0)
        })?;
        Ok((self.dataset(&entry.reference())?, added))
    }

    /// A dataset by `name` (its newest entry) or `name@sha256:…`.
    pub fn dataset(&self, spec: &str) -> Result<Dataset> {
        let (name, want) = match spec.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        let conn = self.lock();
        let found = match want {
            Some(d) => conn.query_row(
                "SELECT name, digest, path, size, added FROM datasets WHERE name = ?1 AND digest = ?2",
                params![name, d],
                dataset_row,
            ),
            None => conn.query_row(
                "SELECT name, digest, path, size, added FROM datasets WHERE name = ?1
                 ORDER BY added DESC, rowid DESC LIMIT 1",
                [name],
                dataset_row,
            ),
        }
        .optional()
        .map_err(|e| self.db(e))?;
        found.ok_or_else(|| {
            RegistryError::NotFound(format!(
                "no dataset `{spec}`; register one with `tensorlet dataset add {name} <file.csv>` \
                 (`tensorlet dataset list` shows what is registered)"
            ))
        })
    }

    /// Every registered dataset, newest first.
    pub fn datasets(&self) -> Result<Vec<Dataset>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT name, digest, path, size, added FROM datasets ORDER BY added DESC, rowid DESC",
            )
            .map_err(|e| self.db(e))?;
        stmt.query_map([], dataset_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.db(e))
    }

    // ----- promotion ------------------------------------------------------------

    /// Points `alias` at the version `reference` names, once it verifies
    /// against the trust policy (a refusal is audited as `promote.refused`
    /// and moves nothing). Audited as `promote`.
    pub fn promote(&self, reference: &Reference, alias: &str) -> Result<AliasMove> {
        check_alias(alias)?;
        self.write(|tx| {
            let target = self.alias_target_in(tx, reference)?;
            let name = target.name.clone();
            let (ns, n) = split_name(&name);
            let from = current_alias(tx, ns, n, alias).map_err(|e| self.db(e))?;
            tx.execute(
                "INSERT INTO aliases (namespace, name, alias, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(namespace, name, alias) DO UPDATE SET version = excluded.version",
                params![ns, n, alias, target.version],
            )
            .map_err(|e| self.db(e))?;
            if from.as_deref() != Some(target.version.as_str()) {
                push_alias_history(tx, ns, n, alias, &target.version).map_err(|e| self.db(e))?;
            }
            let m = AliasMove {
                name: name.clone(),
                alias: alias.to_string(),
                from,
                to: target.version,
                digest: target.digest,
            };
            self.append(
                tx,
                "promote",
                &format!("{name}@{alias}"),
                json!({"from": m.from, "to": m.to, "digest": m.digest}),
            )?;
            Ok(m)
        })
        .map_err(|e| self.refused(e, "promote.refused"))
    }

    /// Moves `alias` of `name` back to the version it pointed at before its
    /// latest move; rolling back again goes further back. That version must
    /// still verify against the trust policy (a refusal is audited as
    /// `rollback.refused` and moves nothing). Audited as `rollback`.
    pub fn rollback(&self, name: &str, alias: &str) -> Result<AliasMove> {
        check_name(name)?;
        check_alias(alias)?;
        let (ns, n) = split_name(name);
        let m = self.write(|tx| {
            let from = current_alias(tx, ns, n, alias).map_err(|e| self.db(e))?;
            let Some(from) = from else {
                return Err(RegistryError::NotFound(format!(
                    "{name}@{alias} is not set, so there is nothing to roll back; `tensorlet list` \
                     shows the aliases"
                )));
            };
            let mut stmt = tx
                .prepare(
                    "SELECT id, version, rolled_back FROM alias_history
                     WHERE namespace = ?1 AND name = ?2 AND alias = ?3
                     ORDER BY id",
                )
                .map_err(|e| self.db(e))?;
            let history: Vec<(i64, String, bool)> = stmt
                .query_map(params![ns, n, alias], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(Iterator::collect)
                .map_err(|e| self.db(e))?;
            drop(stmt);
            // The moves still in effect, oldest first: the latest is where the
            // alias points now, the one before it is where it goes back to.
            let standing: Vec<&(i64, String, bool)> =
                history.iter().filter(|(_, _, undone)| !undone).collect();
            let [.., before, now] = standing.as_slice() else {
                return Err(RegistryError::NotFound(no_earlier_version(
                    name, alias, &from, &history,
                )));
            };
            let (latest, previous) = (now.0, before.1.clone());
            let semver = check_version(&previous)?;
            let digest = self
                .alias_target_in(
                    tx,
                    &Reference {
                        name: name.to_string(),
                        selector: Selector::Version(semver),
                    },
                )?
                .digest;
            tx.execute(
                "UPDATE alias_history SET rolled_back = 1 WHERE id = ?1",
                [latest],
            )
            .map_err(|e| self.db(e))?;
            tx.execute(
                "UPDATE aliases SET version = ?4 WHERE namespace = ?1 AND name = ?2 AND alias = ?3",
                params![ns, n, alias, previous],
            )
            .map_err(|e| self.db(e))?;
            let m = AliasMove {
                name: name.to_string(),
                alias: alias.to_string(),
                from: Some(from),
                to: previous.clone(),
                digest,
            };
            self.append(
                tx,
                "rollback",
                &format!("{name}@{alias}"),
                json!({"from": m.from, "to": m.to, "digest": m.digest}),
            )?;
            Ok(m)
        })
        .map_err(|e| self.refused(e, "rollback.refused"))?;
        Ok(m)
    }

    /// Resolves `name@alias` and returns (version, manifest digest), if set.
    pub fn alias_target(&self, name: &str, alias: &str) -> Result<Option<(String, String)>> {
        let r = Reference {
            name: name.to_string(),
            selector: Selector::Alias(alias.to_string()),
        };
        match self.resolve_row(&r) {
            Ok(row) => Ok(Some((row.summary.version, row.summary.digest))),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why `name@alias`, now at `current`, cannot be rolled back, from its whole
/// history (moves since rolled back included).
fn no_earlier_version(
    name: &str,
    alias: &str,
    current: &str,
    history: &[(i64, String, bool)],
) -> String {
    let mut others: Vec<&str> = Vec::new();
    for (_, version, _) in history {
        if version != current && !others.contains(&version.as_str()) {
            others.push(version);
        }
    }
    if others.is_empty() {
        return format!(
            "{name}@{alias} has pointed only at {current}, so there is no earlier version to \
             roll back to"
        );
    }
    format!(
        "{name}@{alias} is at {current}, the first version it pointed at; its later moves (to \
         {}) have been rolled back, so there is no earlier version to roll back to. Point it \
         forward again with `tensorlet promote {name}@<version> --to {alias}`",
        others.join(", ")
    )
}

fn current_alias(
    tx: &Transaction<'_>,
    ns: &str,
    name: &str,
    alias: &str,
) -> rusqlite::Result<Option<String>> {
    tx.query_row(
        "SELECT version FROM aliases WHERE namespace = ?1 AND name = ?2 AND alias = ?3",
        params![ns, name, alias],
        |r| r.get(0),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_together_get_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        // A thousand runs within a second or two: some of their 16-bit
        // suffixes collide, and each is drawn again instead of failing.
        let ids: Vec<String> = (0..1000)
            .map(|i| reg.run_start("p", &json!({ "n": i })).unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert_eq!(reg.run(id).unwrap().id, *id);
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

    #[test]
    fn dataset_names_are_checked() {
        assert!(check_dataset_name("iris-2024_v1").is_ok());
        assert!(check_dataset_name("Iris").is_err());
        assert!(check_dataset_name("").is_err());
        assert!(check_dataset_name("-x").is_err());
    }
}
