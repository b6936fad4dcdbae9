//! The trust policy: which public keys may publish in which namespaces.
//! Changing it is audited; verification asks it about every signature.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::AuditLog;
use crate::db::Db;
use crate::error::{RegistryError, Result};
use crate::keys::PublicKey;
use crate::reference::check_name;
use crate::time::now_rfc3339;

/// A trust policy entry: a key and the namespaces it may publish.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrustEntry {
    /// Key id.
    pub key_id: String,
    /// `ed25519:<hex>`.
    pub public_key: String,
    /// Namespaces; `*` means every namespace.
    pub namespaces: Vec<String>,
    /// When it was added (UTC).
    pub added: String,
}

/// Allows `key` to publish in `namespaces` (added to any it had). Audited
/// as `trust.add`.
pub(crate) fn add(
    db: &Db,
    audit: &AuditLog,
    key: &PublicKey,
    namespaces: &[String],
) -> Result<TrustEntry> {
    if namespaces.is_empty() {
        return Err(RegistryError::Invalid(
            "name at least one namespace the key may publish (`--namespace acme`, or `*` for all)"
                .into(),
        ));
    }
    for ns in namespaces {
        if ns != "*" {
            check_name(&format!("{ns}/x")).map_err(|_| {
                RegistryError::Invalid(format!(
                    "`{ns}` is not a namespace; use lowercase letters, digits, `-`, `_`, `.` (or `*`)"
                ))
            })?;
        }
    }
    let key_id = key.key_id();
    audit.write(db, |tx| {
        let existing: Option<String> = tx
            .query_row(
                "SELECT namespaces FROM trust WHERE key_id = ?1",
                [&key_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db.err(e))?;
        let mut all: Vec<String> = existing
            .map(|s| serde_json::from_str(&s).unwrap_or_default())
            .unwrap_or_default();
        for ns in namespaces {
            if !all.contains(ns) {
                all.push(ns.clone());
            }
        }
        all.sort();
        let added = now_rfc3339();
        tx.execute(
            "INSERT INTO trust (key_id, public_key, namespaces, added) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(key_id) DO UPDATE SET namespaces = excluded.namespaces",
            params![
                key_id,
                key.to_string(),
                serde_json::to_string(&all).unwrap(),
                added
            ],
        )
        .map_err(|e| db.err(e))?;
        audit.append(
            db,
            tx,
            "trust.add",
            &key_id,
            json!({"public_key": key.to_string(), "namespaces": namespaces}),
        )?;
        Ok(TrustEntry {
            key_id: key_id.clone(),
            public_key: key.to_string(),
            namespaces: all,
            added,
        })
    })
}

/// Removes a key (by key id or public key). Audited as `trust.remove`.
pub(crate) fn remove(db: &Db, audit: &AuditLog, key: &str) -> Result<TrustEntry> {
    let key_id = match PublicKey::parse(key) {
        Ok(k) => k.key_id(),
        Err(_) => key.trim().to_string(),
    };
    audit.write(db, |tx| {
        let entry = entry(tx, &key_id).map_err(|e| db.err(e))?.ok_or_else(|| {
            RegistryError::NotFound(format!(
                "key {key_id} is not in the trust policy; `tensorlet trust list` shows the trusted keys"
            ))
        })?;
        tx.execute("DELETE FROM trust WHERE key_id = ?1", [&key_id])
            .map_err(|e| db.err(e))?;
        audit.append(
            db,
            tx,
            "trust.remove",
            &key_id,
            json!({"namespaces": entry.namespaces}),
        )?;
        Ok(entry)
    })
}

/// The policy, by key id.
pub(crate) fn list(db: &Db) -> Result<Vec<TrustEntry>> {
    let conn = db.lock();
    let mut stmt = conn
        .prepare("SELECT key_id, public_key, namespaces, added FROM trust ORDER BY key_id")
        .map_err(|e| db.err(e))?;
    stmt.query_map([], row)
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| db.err(e))
}

/// Checks on `conn` that the policy allows `key` to sign artifacts in `ns`;
/// `artifact` names what is refused. Returns the key id.
pub(crate) fn check(
    db: &Db,
    conn: &Connection,
    artifact: &str,
    key: &PublicKey,
    ns: &str,
) -> Result<String> {
    let key_id = key.key_id();
    let refuse = |reason: String| RegistryError::Refused {
        artifact: artifact.to_string(),
        key_id: key_id.clone(),
        reason,
    };
    match entry(conn, &key_id).map_err(|e| db.err(e))? {
        None => Err(refuse(format!(
            "the key is not in this trust policy; if you trust it, run `tensorlet trust add \
             {key} --namespace {ns}`"
        ))),
        Some(e) if e.public_key != key.to_string() => Err(refuse(
            "the trust policy holds a different public key under this key id".into(),
        )),
        Some(e) if !e.namespaces.iter().any(|n| n == ns || n == "*") => Err(refuse(format!(
            "the key is trusted only for namespace(s) {}, not for `{ns}`",
            e.namespaces.join(", ")
        ))),
        Some(_) => Ok(key_id.clone()),
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TrustEntry> {
    let ns: String = r.get(2)?;
    Ok(TrustEntry {
        key_id: r.get(0)?,
        public_key: r.get(1)?,
        namespaces: serde_json::from_str(&ns).unwrap_or_default(),
        added: r.get(3)?,
    })
}

fn entry(conn: &Connection, key_id: &str) -> rusqlite::Result<Option<TrustEntry>> {
    conn.query_row(
        "SELECT key_id, public_key, namespaces, added FROM trust WHERE key_id = ?1",
        [key_id],
        row,
    )
    .optional()
}
