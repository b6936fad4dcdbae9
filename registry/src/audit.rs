//! The audit log: an append-only table, hash-chained and signed.
//!
//! Entry *n* stores `hash = sha256(prev_hash ‖ "\n" ‖ canonical({time, action,
//! subject, detail}))`, where `prev_hash` is entry *n−1*'s hash (64 zeros for
//! the first), and the node key's signature over that hash. After every
//! commit the head (`seq`, `hash`) is signed and written to
//! `$TENSORLET_HOME/audit.checkpoint`, outside the database, so deleting the
//! newest entries (truncation) is caught too. Triggers refuse `UPDATE` and
//! `DELETE` on the table; verification catches what gets past them.

use std::io::Write;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditReport {
    /// Number of entries.
    pub entries: u64,
    /// The entry count recorded by the signed checkpoint.
    pub checkpoint: u64,
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
pub(crate) fn head(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Appends an entry inside the caller's (immediate) transaction.
pub(crate) fn append(
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
    Ok(())
}

/// Every entry, by seq.
pub(crate) fn entries(conn: &Connection) -> rusqlite::Result<Vec<AuditEntry>> {
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

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    seq: i64,
    hash: String,
    key_id: String,
    signature: String,
}

fn checkpoint_message(seq: i64, hash: &str) -> Vec<u8> {
    crate::canonical::to_vec(&json!({"seq": seq, "hash": hash}))
}

/// Advances the signed checkpoint to (`seq`, `hash`) unless it is already
/// there or further (concurrent writers may finish out of order): a lock
/// file serialises writers, the file is replaced atomically.
pub(crate) fn write_checkpoint(path: &Path, node: &KeyPair, seq: i64, hash: &str) -> Result<()> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| RegistryError::io(&lock_path, e))?;
    lock.lock().map_err(|e| RegistryError::io(&lock_path, e))?;
    if let Ok(bytes) = std::fs::read(path)
        && let Ok(current) = serde_json::from_slice::<Checkpoint>(&bytes)
        && current.seq >= seq
    {
        return Ok(());
    }
    let cp = Checkpoint {
        seq,
        hash: hash.to_string(),
        key_id: node.key_id(),
        signature: node.sign(&checkpoint_message(seq, hash)),
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let io = |e| RegistryError::io(&tmp, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&crate::canonical::of(&cp)).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| RegistryError::io(path, e))?;
    if let Some(dir) = path.parent() {
        crate::store::sync_dir(dir);
    }
    Ok(())
}

/// Verifies entries (by seq) against the chain, the node key and the
/// checkpoint file. The error names the first bad entry.
pub fn verify(entries: &[AuditEntry], node: &PublicKey, checkpoint: &Path) -> Result<AuditReport> {
    let fail = |m: String| Err(RegistryError::Audit(m));
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
    let bytes = match std::fs::read(checkpoint) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(format!(
                "the checkpoint file {} is missing, so truncation cannot be ruled out",
                checkpoint.display()
            ));
        }
        Err(e) => return Err(RegistryError::io(checkpoint, e)),
    };
    let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
        RegistryError::Audit(format!(
            "the checkpoint file {} is damaged: {e}",
            checkpoint.display()
        ))
    })?;
    if cp.key_id != node.key_id()
        || !node.verify(&checkpoint_message(cp.seq, &cp.hash), &cp.signature)
    {
        return fail(format!(
            "the checkpoint file {} is not signed by this node's key",
            checkpoint.display()
        ));
    }
    let n = entries.len() as i64;
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
    Ok(AuditReport {
        entries: n as u64,
        checkpoint: cp.seq as u64,
    })
}
