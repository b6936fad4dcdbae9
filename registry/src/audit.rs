//! The audit log: an append-only table, hash-chained and signed.
//!
//! Entry *n* stores `hash = sha256(prev_hash ‖ "\n" ‖ canonical({time, action,
//! subject, detail}))`, where `prev_hash` is entry *n−1*'s hash (64 zeros for
//! the first), and the node key's signature over that hash. After every
//! commit the head (`seq`, `hash`, and entry 1's hash) is signed and written
//! to `$TENSORLET_HOME/audit.checkpoint`, outside the database, so deleting
//! the newest entries (truncation) is caught too; the same signed
//! [`AuditCheckpoint`] can be exported and kept elsewhere, and verification
//! checks the log against such copies. Triggers refuse `UPDATE` and `DELETE`
//! on the table; verification catches what gets past them.
//!
//! The log also knows that it has history: the `audit_origin` row, written
//! when the database is created, records entry 1's hash and that a checkpoint
//! file was written; and every row of the index (artifacts, yanks, aliases,
//! runs, datasets, trust entries) must be accounted for by an entry. So an
//! emptied log, a log restarted from genesis, or a checkpoint file that went
//! missing is a failure even when the rows and the file are gone.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::durable;
use crate::error::{RegistryError, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::time::now_rfc3339;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position, from 1.
    pub seq: i64,
    /// When (UTC).
    pub time: String,
    /// What happened: `publish`, `yank`, `alias.set`, `trust.add`, …
    pub action: String,
    /// What it happened to (an artifact reference, a key id, …).
    pub subject: String,
    /// Details (JSON).
    pub detail: Value,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
    /// The node key's signature over `hash`.
    pub signature: String,
}

impl AuditEntry {
    /// The entry as `tensorlet audit log` lists it: position, time, action,
    /// subject and details on one line.
    pub fn line(&self) -> String {
        format!(
            "{:>5} {} {:<16} {} {}",
            self.seq, self.time, self.action, self.subject, self.detail
        )
    }
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditReport {
    /// Number of entries.
    pub entries: u64,
    /// The entry count recorded by the signed checkpoint.
    pub checkpoint: u64,
    /// The entry count recorded by each external checkpoint checked, in the
    /// order given.
    pub external: Vec<u64>,
}

impl AuditReport {
    /// What `tensorlet audit verify` prints; `files` are the external
    /// checkpoints, as given.
    pub fn lines(&self, files: &[&Path]) -> Vec<String> {
        let mut lines = vec![format!(
            "OK {} entries; hash chain, node signatures and the checkpoint at entry {} verify",
            self.entries, self.checkpoint
        )];
        for (path, seq) in files.iter().zip(&self.external) {
            lines.push(format!(
                "OK the log holds the checkpoint {} (entry {seq})",
                path.display()
            ));
        }
        lines
    }
}

/// A signed statement of the log's head: how many entries it had, the
/// newest one's hash and entry 1's hash. The node writes one to
/// `audit.checkpoint` after every commit; `tensorlet audit checkpoint`
/// exports one to keep elsewhere, which verification then checks the log
/// against: a log shorter than it, or with other entries, fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// Entries in the log (0 for an empty log).
    pub seq: i64,
    /// The hash of entry `seq` ([`GENESIS`] for an empty log).
    pub hash: String,
    /// The hash of entry 1, once there is one: a log restarted from genesis
    /// has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// In `audit.checkpoint` only: the entry count when the file was
    /// started. 0 when it was written with the log; more when the file was
    /// missing (or damaged) and the next commit wrote it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// The id of the node key that signed it.
    pub key_id: String,
    /// The node key's signature over the canonical JSON of the other fields.
    pub signature: String,
}

impl AuditCheckpoint {
    fn message(&self) -> Vec<u8> {
        let mut m = json!({"seq": self.seq, "hash": self.hash});
        if let Some(first) = &self.first {
            m["first"] = json!(first);
        }
        if let Some(since) = self.since {
            m["since"] = json!(since);
        }
        crate::canonical::to_vec(&m)
    }

    fn signed(node: &KeyPair, head: &Head, since: Option<i64>) -> Self {
        let mut cp = AuditCheckpoint {
            seq: head.seq,
            hash: head.hash.clone(),
            first: head.first.clone(),
            since,
            key_id: node.key_id(),
            signature: String::new(),
        };
        cp.signature = node.sign(&cp.message());
        cp
    }

    /// Whether `key` signed it.
    pub fn is_signed_by(&self, key: &PublicKey) -> bool {
        self.key_id == key.key_id() && key.verify(&self.message(), &self.signature)
    }

    /// Parses a checkpoint (JSON).
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Writes it (canonical JSON) to `path` atomically and durably, through
    /// a temporary file beside it.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let name = path
            .file_name()
            .ok_or_else(|| RegistryError::Invalid(format!("{} names no file", path.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        durable::replace(
            path,
            &path.with_file_name(tmp_name),
            &self.to_canonical(),
            true,
        )
    }

    /// The canonical JSON form, as written to files.
    pub fn to_canonical(&self) -> Vec<u8> {
        crate::canonical::of(self)
    }
}

/// The audit log of a registry: the node key that signs its entries and
/// checkpoints, and the checkpoint file kept beside the database.
pub(crate) struct AuditLog {
    node: KeyPair,
    checkpoint: PathBuf,
}

impl AuditLog {
    /// The log signed by `node`, checkpointed to `checkpoint`. A new
    /// database gets a checkpoint of its empty log at once, so that a log
    /// whose checkpoint file is missing is always an error. Only a registry
    /// with no history at all is new: no entries, no index rows, and no
    /// checkpoint file ever written (the origin record says), so a wiped
    /// log is not mistaken for a fresh one.
    pub(crate) fn open(db: &Db, node: KeyPair, checkpoint: PathBuf) -> Result<Self> {
        let log = AuditLog { node, checkpoint };
        let conn = db.lock();
        let Some(origin) = origin(&conn).map_err(|e| db.err(e))? else {
            // Deleted: verification says so; nothing is written on its word.
            return Ok(log);
        };
        if origin.checkpointed {
            return Ok(log);
        }
        if !log.checkpoint.exists() {
            let fresh = head(&conn).map_err(|e| db.err(e))?.is_none()
                && origin.first_hash.is_none()
                && !has_history(&conn).map_err(|e| db.err(e))?;
            if !fresh {
                return Ok(log);
            }
            write_checkpoint(&log.checkpoint, &log.node, &Head::genesis())?;
        }
        mark_checkpointed(&conn).map_err(|e| db.err(e))?;
        Ok(log)
    }

    /// The checkpoint file (outside the database).
    pub(crate) fn checkpoint_path(&self) -> &Path {
        &self.checkpoint
    }

    /// The node key's public half.
    pub(crate) fn node_key(&self) -> PublicKey {
        self.node.public()
    }

    /// Runs `f` in one immediate transaction of `db` and commits; then
    /// advances the checkpoint to the new head. Every audited write goes
    /// through here, with its entry appended by [`AuditLog::append`] inside `f`.
    pub(crate) fn write<T>(
        &self,
        db: &Db,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let (out, head) = db.immediate(|tx| {
            let out = f(tx)?;
            Ok((out, full_head(tx).map_err(|e| db.err(e))?))
        })?;
        if let Some(head) = head {
            write_checkpoint(&self.checkpoint, &self.node, &head)?;
        }
        Ok(out)
    }

    /// Appends an entry inside the caller's transaction ([`AuditLog::write`]).
    pub(crate) fn append(
        &self,
        db: &Db,
        tx: &Transaction<'_>,
        action: &str,
        subject: &str,
        detail: Value,
    ) -> Result<()> {
        append(tx, &self.node, action, subject, detail).map_err(|e| db.err(e))
    }

    /// Appends an entry on its own.
    pub(crate) fn record(&self, db: &Db, action: &str, subject: &str, detail: Value) -> Result<()> {
        self.write(db, |tx| self.append(db, tx, action, subject, detail))
    }

    /// Audits a refusal as `action`, then returns it; other errors pass
    /// through.
    pub(crate) fn refused(&self, db: &Db, e: RegistryError, action: &str) -> RegistryError {
        if let RegistryError::Refused {
            artifact,
            key_id,
            reason,
        } = &e
            && let Err(audit_err) = self.record(
                db,
                action,
                artifact,
                json!({"key_id": key_id, "reason": reason}),
            )
        {
            tracing::warn!("cannot audit a refusal: {audit_err}");
        }
        e
    }

    /// Every entry, oldest first.
    pub(crate) fn entries(&self, db: &Db) -> Result<Vec<AuditEntry>> {
        entries(&db.lock()).map_err(|e| db.err(e))
    }

    /// Verifies the log in `db` against its chain, the node key, the origin
    /// record, the checkpoint file, the index and the `external` checkpoints.
    pub(crate) fn verify(&self, db: &Db, external: &[&Path]) -> Result<AuditReport> {
        // The checkpoint file first: it is written after each commit, so
        // the snapshot read next holds at least what it records.
        let local = std::fs::read(&self.checkpoint);
        let (entries, origin, index) = {
            let mut conn = db.lock();
            let mut read = || -> rusqlite::Result<_> {
                // One read transaction: one snapshot of log and index.
                let tx = conn.transaction()?;
                Ok((entries(&tx)?, origin(&tx)?, index(&tx)?))
            };
            read().map_err(|e| db.err(e))?
        };
        verify(
            &entries,
            &Evidence {
                node: self.node.public(),
                checkpoint: &self.checkpoint,
                local,
                origin,
                index,
                external,
            },
        )
    }

    /// A signed checkpoint of the head now, once the log verifies.
    pub(crate) fn export(&self, db: &Db) -> Result<AuditCheckpoint> {
        let head = full_head(&db.lock()).map_err(|e| db.err(e))?;
        self.verify(db, &[])?;
        Ok(AuditCheckpoint::signed(
            &self.node,
            &head.unwrap_or_else(Head::genesis),
            None,
        ))
    }
}

/// The hash of an entry's content chained to `prev_hash`.
pub fn entry_hash(
    prev_hash: &str,
    time: &str,
    action: &str,
    subject: &str,
    detail: &Value,
) -> String {
    let content = crate::canonical::to_vec(&json!({
        "time": time, "action": action, "subject": subject, "detail": detail,
    }));
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(&content);
    hex::encode(h.finalize())
}

/// The newest entry's (seq, hash).
fn head(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// What a checkpoint records of the log.
#[derive(Clone, Debug)]
struct Head {
    pub(crate) seq: i64,
    pub(crate) hash: String,
    pub(crate) first: Option<String>,
}

impl Head {
    /// The head of an empty log.
    pub(crate) fn genesis() -> Self {
        Head {
            seq: 0,
            hash: GENESIS.to_string(),
            first: None,
        }
    }
}

/// The log's head with entry 1's hash; `None` for an empty log.
fn full_head(conn: &Connection) -> rusqlite::Result<Option<Head>> {
    let Some((seq, hash)) = head(conn)? else {
        return Ok(None);
    };
    let first = conn
        .query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0))
        .optional()?;
    Ok(Some(Head { seq, hash, first }))
}

/// Appends an entry inside the caller's (immediate) transaction.
fn append(
    conn: &Connection,
    node: &KeyPair,
    action: &str,
    subject: &str,
    detail: Value,
) -> rusqlite::Result<()> {
    let (seq, prev) = head(conn)?.unwrap_or((0, GENESIS.to_string()));
    let time = now_rfc3339();
    let hash = entry_hash(&prev, &time, action, subject, &detail);
    let signature = node.sign(hash.as_bytes());
    conn.execute(
        "INSERT INTO audit (seq, time, action, subject, detail, prev_hash, hash, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq + 1,
            time,
            action,
            subject,
            String::from_utf8(crate::canonical::to_vec(&detail)).expect("JSON is UTF-8"),
            prev,
            hash,
            signature
        ],
    )?;
    if seq == 0 {
        // The origin record keeps entry 1 for good: a log emptied and begun
        // again has another entry 1.
        conn.execute(
            "UPDATE audit_origin SET first_hash = ?1 WHERE id = 1 AND first_hash IS NULL",
            [&hash],
        )?;
    }
    Ok(())
}

/// Every entry, by seq.
fn entries(conn: &Connection) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(
        "SELECT seq, time, action, subject, detail, prev_hash, hash, signature FROM audit ORDER BY seq",
    )?;
    stmt.query_map([], |r| {
        let detail: String = r.get(4)?;
        Ok(AuditEntry {
            seq: r.get(0)?,
            time: r.get(1)?,
            action: r.get(2)?,
            subject: r.get(3)?,
            // A detail that is not JSON any more keeps its text, so that the
            // hash check reports the edit.
            detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
            signature: r.get(7)?,
        })
    })?
    .collect()
}

// ----- what the database holds besides the log ----------------------------

/// The `audit_origin` row.
#[derive(Clone, Debug)]
struct Origin {
    /// Entry 1's hash, once written.
    pub(crate) first_hash: Option<String>,
    /// Whether a checkpoint file was written for this database.
    pub(crate) checkpointed: bool,
}

/// The origin row; `None` when it was deleted.
fn origin(conn: &Connection) -> rusqlite::Result<Option<Origin>> {
    conn.query_row(
        "SELECT first_hash, checkpointed FROM audit_origin WHERE id = 1",
        [],
        |r| {
            Ok(Origin {
                first_hash: r.get(0)?,
                checkpointed: r.get::<_, i64>(1)? != 0,
            })
        },
    )
    .optional()
}

/// Records that a checkpoint file exists for this database.
fn mark_checkpointed(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE audit_origin SET checkpointed = 1 WHERE id = 1 AND checkpointed = 0",
        [],
    )
    .map(drop)
}

/// One artifact version in the index.
#[derive(Clone, Debug)]
struct IndexedArtifact {
    reference: String,
    digest: String,
    yanked: bool,
}

/// The index rows that only an audited action writes.
#[derive(Clone, Debug, Default)]
struct Index {
    artifacts: Vec<IndexedArtifact>,
    /// (`ns/name@alias`, version).
    aliases: Vec<(String, String)>,
    runs: Vec<String>,
    /// (name, digest).
    datasets: Vec<(String, String)>,
    /// (key id, public key, namespaces).
    trust: Vec<(String, String, Vec<String>)>,
}

impl Index {
    fn is_empty(&self) -> bool {
        self.artifacts.is_empty()
            && self.aliases.is_empty()
            && self.runs.is_empty()
            && self.datasets.is_empty()
            && self.trust.is_empty()
    }

    /// "9 artifacts, 2 aliases and 1 trust entry".
    fn counts(&self) -> String {
        let plural = |n: usize, one: &str, many: &str| {
            (n > 0).then(|| format!("{n} {}", if n == 1 { one } else { many }))
        };
        let parts: Vec<String> = [
            plural(self.artifacts.len(), "artifact", "artifacts"),
            plural(self.aliases.len(), "alias", "aliases"),
            plural(self.runs.len(), "run", "runs"),
            plural(self.datasets.len(), "dataset", "datasets"),
            plural(self.trust.len(), "trust entry", "trust entries"),
        ]
        .into_iter()
        .flatten()
        .collect();
        join_and(&parts)
    }
}

/// "a", "a and b", "a, b and c".
fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Reads the index rows that the log must account for.
fn index(conn: &Connection) -> rusqlite::Result<Index> {
    fn all<T>(
        conn: &Connection,
        sql: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        conn.prepare(sql)?.query_map([], row)?.collect()
    }
    Ok(Index {
        artifacts: all(
            conn,
            "SELECT namespace || '/' || name || '@' || version, digest, yanked FROM artifacts ORDER BY id",
            |r| {
                Ok(IndexedArtifact {
                    reference: r.get(0)?,
                    digest: r.get(1)?,
                    yanked: r.get::<_, i64>(2)? != 0,
                })
            },
        )?,
        aliases: all(
            conn,
            "SELECT namespace || '/' || name || '@' || alias, version FROM aliases
             ORDER BY namespace, name, alias",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        runs: all(conn, "SELECT id FROM runs ORDER BY started, id", |r| {
            r.get(0)
        })?,
        datasets: all(
            conn,
            "SELECT name, digest FROM datasets ORDER BY added, rowid",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        trust: all(
            conn,
            "SELECT key_id, public_key, namespaces FROM trust ORDER BY key_id",
            |r| {
                let ns: String = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    serde_json::from_str(&ns).unwrap_or_default(),
                ))
            },
        )?,
    })
}

/// Whether the index holds anything that an audited action wrote.
fn has_history(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM artifacts) OR EXISTS (SELECT 1 FROM aliases)
             OR EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM datasets)
             OR EXISTS (SELECT 1 FROM trust)",
        [],
        |r| r.get(0),
    )
}

// ----- the checkpoint file --------------------------------------------------

/// The checkpoint in `path` if it parses and `node` signed it.
fn read_own(path: &Path, node: &PublicKey) -> Option<AuditCheckpoint> {
    let bytes = std::fs::read(path).ok()?;
    AuditCheckpoint::parse(&bytes)
        .ok()
        .filter(|cp| cp.is_signed_by(node))
}

/// Writes `cp` to `path` atomically (temporary file, fsync, rename, fsync of
/// the directory).
fn write_file(path: &Path, cp: &AuditCheckpoint) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    durable::replace(path, &tmp, &cp.to_canonical(), true)
}

/// Removes the temporary files of checkpoint writes that were killed before
/// their rename. Called with the lock held: no live writer has one then.
fn remove_orphans(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_stem()) else {
        return;
    };
    let mut prefix = name.to_os_string();
    prefix.push(".tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .as_encoded_bytes()
            .starts_with(prefix.as_encoded_bytes())
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Advances the signed checkpoint to `head` unless it is already there or
/// further (concurrent writers may finish out of order): a lock file
/// serialises writers, the file is replaced atomically. A file that is
/// missing, damaged or not signed by this node is replaced by one whose
/// `since` says from which entry on it guards the log.
fn write_checkpoint(path: &Path, node: &KeyPair, head: &Head) -> Result<()> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| RegistryError::io(&lock_path, e))?;
    lock.lock().map_err(|e| RegistryError::io(&lock_path, e))?;
    remove_orphans(path);
    let since = match read_own(path, &node.public()) {
        Some(current) if current.seq >= head.seq => return Ok(()),
        Some(current) => current.since,
        None => Some(head.seq),
    };
    write_file(path, &AuditCheckpoint::signed(node, head, since))
}

// ----- verification -----------------------------------------------------------

/// What verification checks the log against, besides the log itself.
struct Evidence<'a> {
    /// The node key.
    pub(crate) node: PublicKey,
    /// `audit.checkpoint`.
    pub(crate) checkpoint: &'a Path,
    /// Its contents, read before the log.
    pub(crate) local: std::io::Result<Vec<u8>>,
    /// The origin row (`None`: deleted).
    pub(crate) origin: Option<Origin>,
    /// The index.
    pub(crate) index: Index,
    /// Checkpoints kept elsewhere.
    pub(crate) external: &'a [&'a Path],
}

fn fail<T>(m: String) -> Result<T> {
    Err(RegistryError::Audit(m))
}

/// Verifies entries (by seq) against the chain, the node key, the origin
/// record, the checkpoint file, external checkpoints and the index. The
/// error names the first bad entry, or what is inconsistent.
fn verify(entries: &[AuditEntry], ev: &Evidence<'_>) -> Result<AuditReport> {
    verify_chain(entries, &ev.node)?;
    let local_cp = ev
        .local
        .as_ref()
        .ok()
        .and_then(|b| AuditCheckpoint::parse(b).ok())
        .filter(|cp| cp.is_signed_by(&ev.node));

    if entries.is_empty() {
        let mut history = Vec::new();
        if !ev.index.is_empty() {
            history.push(format!("the index holds {}", ev.index.counts()));
        }
        if let Some(cp) = local_cp.as_ref().filter(|cp| cp.seq > 0) {
            history.push(format!("the signed checkpoint records {} entries", cp.seq));
        }
        if ev.origin.as_ref().is_some_and(|o| o.first_hash.is_some()) {
            history.push("the origin record names the log's first entry".into());
        }
        if !history.is_empty() {
            return fail(format!(
                "the log is empty, but {}: entries were deleted",
                history.join("; ")
            ));
        }
    }

    match &ev.origin {
        None => {
            return fail(
                "the audit origin record was deleted (the database writes it when it is \
                 created and never removes it): the log may have been emptied or restarted"
                    .into(),
            );
        }
        Some(o) => match (&o.first_hash, entries.first()) {
            (Some(first), Some(e)) if &e.hash != first => {
                return fail(format!(
                    "the log was restarted from genesis: its entry 1 ({} {}) is not the entry 1 \
                     this registry wrote first (the origin record keeps that one's hash)",
                    e.action, e.subject
                ));
            }
            (None, Some(_)) => {
                return fail(
                    "the audit origin record does not name entry 1 although the log has \
                     entries: the record was rewritten"
                        .into(),
                );
            }
            _ => {}
        },
    }

    let path = ev.checkpoint.display();
    let bytes = match &ev.local {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(format!(
                "the checkpoint file {path} is missing, so truncation cannot be ruled out"
            ));
        }
        Err(e) => {
            return Err(RegistryError::io(
                ev.checkpoint,
                std::io::Error::new(e.kind(), e.to_string()),
            ));
        }
    };
    let cp = AuditCheckpoint::parse(bytes)
        .map_err(|e| RegistryError::Audit(format!("the checkpoint file {path} is damaged: {e}")))?;
    if !cp.is_signed_by(&ev.node) {
        return fail(format!(
            "the checkpoint file {path} is not signed by this node's key{}",
            if cp.key_id != ev.node.key_id() {
                format!(
                    " ({} signed it, not {}): it comes from another registry, or was forged",
                    cp.key_id,
                    ev.node.key_id()
                )
            } else {
                String::new()
            }
        ));
    }
    let n = entries.len() as i64;
    if let Some(since) = cp.since.filter(|&s| s > 0) {
        return fail(format!(
            "the checkpoint file {path} went missing (or was damaged) and was written again \
             at entry {since}: entries deleted before then cannot be ruled out; restore the \
             file from a copy, or check the log against an exported checkpoint"
        ));
    }
    if let Some(e) = first_mismatch(entries, &cp) {
        return fail(format!(
            "the log was restarted from genesis: its entry 1 ({} {}) is not the entry 1 the \
             signed checkpoint records",
            e.action, e.subject
        ));
    }
    if cp.seq > n {
        return fail(format!(
            "the log was truncated after entry {n}: the signed checkpoint records {} entries",
            cp.seq
        ));
    }
    if cp.seq > 0 && entries[(cp.seq - 1) as usize].hash != cp.hash {
        return fail(format!(
            "entry {} does not match the signed checkpoint: the log was rewritten up to there",
            cp.seq
        ));
    }

    let mut external = Vec::new();
    for p in ev.external {
        external.push(verify_external(entries, &ev.node, p)? as u64);
    }

    check_index(entries, &ev.index)?;

    Ok(AuditReport {
        entries: n as u64,
        checkpoint: cp.seq as u64,
        external,
    })
}

/// The hash chain and every entry's node signature.
fn verify_chain(entries: &[AuditEntry], node: &PublicKey) -> Result<()> {
    let mut prev = GENESIS.to_string();
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64 + 1;
        if e.seq != expected {
            return fail(format!(
                "entry {expected} was deleted: the log goes from entry {} to entry {}",
                expected - 1,
                e.seq
            ));
        }
        let recomputed = entry_hash(&e.prev_hash, &e.time, &e.action, &e.subject, &e.detail);
        if recomputed != e.hash {
            return fail(format!(
                "entry {} ({} {}) was edited: its contents no longer match its hash",
                e.seq, e.action, e.subject
            ));
        }
        if !node.verify(e.hash.as_bytes(), &e.signature) {
            return fail(format!(
                "entry {} ({} {}) was not written by this node (its signature does not verify): \
                 it was inserted or rewritten",
                e.seq, e.action, e.subject
            ));
        }
        if e.prev_hash != prev {
            if let Some(later) = entries[i + 1..].iter().find(|l| l.hash == e.prev_hash) {
                return fail(format!(
                    "entry {} ({} {}) is out of order: in the chain it follows the entry now at \
                     position {}; entries were reordered",
                    e.seq, e.action, e.subject, later.seq
                ));
            }
            return fail(format!(
                "entry {} ({} {}) does not follow entry {}: an entry before it was deleted or \
                 one was inserted",
                e.seq,
                e.action,
                e.subject,
                e.seq - 1
            ));
        }
        prev = e.hash.clone();
    }
    Ok(())
}

/// The log's entry 1, when it is not the one `cp` records.
fn first_mismatch<'e>(entries: &'e [AuditEntry], cp: &AuditCheckpoint) -> Option<&'e AuditEntry> {
    let (first, e) = (cp.first.as_ref()?, entries.first()?);
    (&e.hash != first).then_some(e)
}

/// Checks the log against a checkpoint kept elsewhere; returns its entry count.
fn verify_external(entries: &[AuditEntry], node: &PublicKey, path: &Path) -> Result<i64> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| RegistryError::io(path, e))?;
    let cp = AuditCheckpoint::parse(&bytes).map_err(|e| {
        RegistryError::Audit(format!("the checkpoint {shown} is not a checkpoint: {e}"))
    })?;
    if cp.key_id != node.key_id() {
        return fail(format!(
            "the checkpoint {shown} was signed by key {}, not by this node's key {}: it comes \
             from another registry",
            cp.key_id,
            node.key_id()
        ));
    }
    if !cp.is_signed_by(node) {
        return fail(format!(
            "the checkpoint {shown} does not verify with this node's key: it was altered"
        ));
    }
    let n = entries.len() as i64;
    if let Some(e) = first_mismatch(entries, &cp) {
        return fail(format!(
            "the log was restarted from genesis: its entry 1 ({} {}) is not the entry 1 the \
             checkpoint {shown} records",
            e.action, e.subject
        ));
    }
    if cp.seq > n {
        return fail(if n == 0 {
            format!(
                "the log is empty, but the checkpoint {shown} records {} entries: entries \
                 were deleted",
                cp.seq
            )
        } else {
            format!(
                "the log is shorter than the checkpoint {shown}: it ends at entry {n}, the \
                 checkpoint records {} entries; {} deleted",
                cp.seq,
                if cp.seq == n + 1 {
                    format!("entry {} was", cp.seq)
                } else {
                    format!("entries {} to {} were", n + 1, cp.seq)
                }
            )
        });
    }
    if cp.seq > 0 {
        let e = &entries[(cp.seq - 1) as usize];
        if e.hash != cp.hash {
            return fail(format!(
                "entry {} ({} {}) diverges from the checkpoint {shown}: the log was rewritten \
                 at or before entry {}",
                e.seq, e.action, e.subject, e.seq
            ));
        }
    }
    Ok(cp.seq)
}

/// Every index row must be accounted for by the log: an artifact by its
/// `publish` or `pull` (and a yank by its `yank`), an alias by the latest
/// entry that moved it, a run by its `train.start`, a dataset by its
/// `dataset.add`, a trusted key by its `trust.add`s since its last
/// `trust.remove`.
fn check_index(entries: &[AuditEntry], index: &Index) -> Result<()> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut stored: HashSet<(&str, String)> = HashSet::new();
    let mut yanked: HashSet<&str> = HashSet::new();
    let mut alias_to: HashMap<&str, Option<String>> = HashMap::new();
    let mut runs: HashSet<String> = HashSet::new();
    let mut datasets: HashSet<(&str, String)> = HashSet::new();
    let mut trust: HashMap<&str, (Option<String>, BTreeSet<String>)> = HashMap::new();
    for e in entries {
        let (subject, d) = (e.subject.as_str(), &e.detail);
        match e.action.as_str() {
            "publish" | "pull" => {
                stored.insert((subject, s(d, "digest").unwrap_or_default()));
            }
            "yank" => {
                yanked.insert(subject);
            }
            "alias.set" | "promote" | "rollback" => {
                alias_to.insert(subject, s(d, "to"));
            }
            "train.start" => {
                runs.extend(s(d, "run_id"));
            }
            "dataset.add" => {
                datasets.insert((subject, s(d, "digest").unwrap_or_default()));
            }
            "trust.add" => {
                let t = trust.entry(subject).or_default();
                t.0 = s(d, "public_key");
                if let Some(Value::Array(ns)) = d.get("namespaces") {
                    t.1.extend(ns.iter().filter_map(Value::as_str).map(str::to_string));
                }
            }
            "trust.remove" => {
                trust.remove(subject);
            }
            _ => {}
        }
    }

    let mut problems: Vec<String> = Vec::new();
    for a in &index.artifacts {
        if !stored.contains(&(a.reference.as_str(), a.digest.clone())) {
            problems.push(format!(
                "the index holds {} ({}), but no `publish` or `pull` entry records it",
                a.reference, a.digest
            ));
        } else if a.yanked && !yanked.contains(a.reference.as_str()) {
            problems.push(format!(
                "the index marks {} yanked, but no `yank` entry records it",
                a.reference
            ));
        }
    }
    for (alias, version) in &index.aliases {
        match alias_to.get(alias.as_str()) {
            None => problems.push(format!(
                "the index points {alias} at {version}, but no `alias.set`, `promote` or \
                 `rollback` entry records it"
            )),
            Some(to) if to.as_deref() != Some(version.as_str()) => problems.push(format!(
                "the index points {alias} at {version}, but the audit log last moved it to {}",
                to.as_deref().unwrap_or("nothing")
            )),
            Some(_) => {}
        }
    }
    for id in &index.runs {
        if !runs.contains(id) {
            problems.push(format!(
                "the index holds run {id}, but no `train.start` entry records it"
            ));
        }
    }
    for (name, digest) in &index.datasets {
        if !datasets.contains(&(name.as_str(), digest.clone())) {
            problems.push(format!(
                "the index holds dataset {name}@{digest}, but no `dataset.add` entry records it"
            ));
        }
    }
    for (key_id, public_key, namespaces) in &index.trust {
        let row: BTreeSet<String> = namespaces.iter().cloned().collect();
        match trust.get(key_id.as_str()) {
            None => problems.push(format!(
                "the trust policy holds key {key_id} (namespaces {}), but no `trust.add` entry \
                 since its last removal records it",
                namespaces.join(", ")
            )),
            Some((pk, _)) if pk.as_deref() != Some(public_key.as_str()) => problems.push(format!(
                "the trust policy holds key {key_id} as {public_key}, but the audit log \
                     added {}",
                pk.as_deref().unwrap_or("no public key")
            )),
            Some((_, granted)) if granted != &row => problems.push(format!(
                "the trust policy lets key {key_id} publish in {}, but the audit log granted \
                 {}",
                namespaces.join(", "),
                granted.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(_) => {}
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => fail(format!(
            "{}: entries were deleted, or the index was edited behind the registry's back",
            problems[0]
        )),
        n => fail(format!(
            "{n} index rows are not accounted for by the log; the first: {}: entries were \
             deleted, or the index was edited behind the registry's back",
            problems[0]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_says_what_verified() {
        let r = AuditReport {
            entries: 12,
            checkpoint: 12,
            external: vec![9],
        };
        assert_eq!(
            r.lines(&[Path::new("/backup/cp.json")]),
            [
                "OK 12 entries; hash chain, node signatures and the checkpoint at entry 12 verify",
                "OK the log holds the checkpoint /backup/cp.json (entry 9)",
            ]
        );
    }

    #[test]
    fn an_entry_is_one_line() {
        let e = AuditEntry {
            seq: 7,
            time: "2026-12-04T10:00:00Z".into(),
            action: "publish".into(),
            subject: "acme/iris@1.0.0".into(),
            detail: json!({"key_id": "k1"}),
            prev_hash: GENESIS.into(),
            hash: "ab".into(),
            signature: "sig".into(),
        };
        assert_eq!(
            e.line(),
            "    7 2026-12-04T10:00:00Z publish          acme/iris@1.0.0 {\"key_id\":\"k1\"}"
        );
    }

    #[test]
    fn a_checkpoint_is_written_whole_and_reads_back() {
        let node = KeyPair::generate("node").unwrap();
        let head = Head {
            seq: 2,
            hash: "cd".into(),
            first: Some("ab".into()),
        };
        let cp = AuditCheckpoint::signed(&node, &head, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, b"old").unwrap();
        cp.write_to(&path).unwrap();
        let back = AuditCheckpoint::parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, cp);
        assert!(back.is_signed_by(&node.public()));
        // Nothing but the file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = cp.write_to(Path::new("/")).unwrap_err();
        assert_eq!(e.to_string(), "/ names no file");
    }

    #[test]
    fn a_checkpoint_write_removes_what_killed_writers_left() {
        let node = KeyPair::generate("node").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.checkpoint");
        for orphan in ["audit.tmp.4242", "audit.tmp.77"] {
            std::fs::write(dir.path().join(orphan), b"half").unwrap();
        }
        std::fs::write(dir.path().join("audit.db"), b"kept").unwrap();
        write_checkpoint(&path, &node, &Head::genesis()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["audit.checkpoint", "audit.db", "audit.lock"]);
    }

    #[test]
    fn a_checkpoint_without_the_new_fields_signs_as_before() {
        let node = KeyPair::generate("node").unwrap();
        // The form written before `first` and `since` existed.
        let old = json!({"seq": 3, "hash": "ab"});
        let legacy = json!({
            "seq": 3, "hash": "ab", "key_id": node.key_id(),
            "signature": node.sign(&crate::canonical::to_vec(&old)),
        });
        let cp = AuditCheckpoint::parse(legacy.to_string().as_bytes()).unwrap();
        assert!(cp.is_signed_by(&node.public()));
        // Each field is covered by the signature.
        let head = Head {
            seq: 3,
            hash: "ab".into(),
            first: Some("cd".into()),
        };
        let cp = AuditCheckpoint::signed(&node, &head, Some(0));
        assert!(cp.is_signed_by(&node.public()));
        for tamper in [
            |c: &mut AuditCheckpoint| c.seq = 4,
            |c: &mut AuditCheckpoint| c.hash = "ac".into(),
            |c: &mut AuditCheckpoint| c.first = None,
            |c: &mut AuditCheckpoint| c.since = Some(2),
        ] {
            let mut t = cp.clone();
            tamper(&mut t);
            assert!(!t.is_signed_by(&node.public()), "{t:?}");
        }
        let other = KeyPair::generate("other").unwrap();
        assert!(!cp.is_signed_by(&other.public()));
        // Unknown keys are refused.
        let mut v = serde_json::to_value(&cp).unwrap();
        v["extra"] = json!(1);
        assert!(AuditCheckpoint::parse(v.to_string().as_bytes()).is_err());
    }

    #[test]
    fn counts_read_as_a_sentence() {
        let mut index = Index::default();
        assert_eq!(index.counts(), "");
        index.trust.push(("k".into(), "p".into(), vec![]));
        assert_eq!(index.counts(), "1 trust entry");
        for i in 0..9 {
            index.artifacts.push(IndexedArtifact {
                reference: format!("a/b@1.0.{i}"),
                digest: String::new(),
                yanked: false,
            });
        }
        index.aliases.push(("a/b@x".into(), "1.0.0".into()));
        index.aliases.push(("a/b@y".into(), "1.0.0".into()));
        assert_eq!(index.counts(), "9 artifacts, 2 aliases and 1 trust entry");
    }
}
