//! Datasets registered by digest, behind [`Datasets`]
//! ([`crate::Registry::datasets`]): a name for a data file and a snapshot of
//! its bytes in the blob store, so that a run can name its data and be
//! resumed on exactly the same rows.

use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditLog;
use crate::blobs::Blobs;
use crate::db::Db;
use crate::error::{RegistryError, Result};
use crate::time::now_rfc3339;

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
    /// Its columns and their types, as the table reader recorded them
    /// (absent for a dataset registered before schemas were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

impl Dataset {
    /// `name@sha256:…`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }
}

fn dataset_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Dataset> {
    Ok(Dataset {
        name: r.get(0)?,
        digest: r.get(1)?,
        path: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        added: r.get(4)?,
        schema: r
            .get::<_, Option<String>>(5)?
            .and_then(|s| serde_json::from_str(&s).ok()),
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

/// The registered datasets of a registry ([`crate::Registry::datasets`]).
#[derive(Clone, Copy)]
pub struct Datasets<'r> {
    db: &'r Db,
    blobs: &'r Blobs,
    audit: &'r AuditLog,
}

impl std::fmt::Debug for Datasets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Datasets({})", self.db.path().display())
    }
}

impl<'r> Datasets<'r> {
    pub(crate) fn new(db: &'r Db, blobs: &'r Blobs, audit: &'r AuditLog) -> Self {
        Datasets { db, blobs, audit }
    }

    /// Registers `path` as dataset `name` by digest and keeps a snapshot of
    /// it. Registering changed content under the same name adds a new entry
    /// (the newest is what the bare name means); the same content again is a
    /// no-op. Returns the entry and whether it is new. Audited as `dataset.add`.
    pub fn add(&self, name: &str, path: &Path) -> Result<(Dataset, bool)> {
        self.add_with_schema(name, path, None)
    }

    /// [`Datasets::add`], recording the table's `schema` (its columns and
    /// their types) with the entry; an entry of the same content registered
    /// without one gets it.
    pub fn add_with_schema(
        &self,
        name: &str,
        path: &Path,
        schema: Option<&Value>,
    ) -> Result<(Dataset, bool)> {
        let (db, audit) = (self.db, self.audit);
        check_dataset_name(name)?;
        let abs = std::fs::canonicalize(path).map_err(|e| RegistryError::io(path, e))?;
        let (d, size) = self.blobs.put_file(db, path)?;
        let entry = Dataset {
            name: name.to_string(),
            digest: d,
            path: abs.display().to_string(),
            size,
            added: now_rfc3339(),
            schema: schema.cloned(),
        };
        let schema_text = schema.map(Value::to_string);
        let added = audit.write(db, |tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO datasets (name, digest, path, size, added, schema) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![entry.name, entry.digest, entry.path, entry.size as i64, entry.added, schema_text],
                )
                .map_err(|e| db.err(e))?;
            if n == 0 && schema_text.is_some() {
                tx.execute(
                    "UPDATE datasets SET schema = ?3 WHERE name = ?1 AND digest = ?2 AND schema IS NULL",
                    params![entry.name, entry.digest, schema_text],
                )
                .map_err(|e| db.err(e))?;
            }
            if n > 0 {
                audit.append(
                    db,
                    tx,
                    "dataset.add",
                    name,
                    json!({"digest": entry.digest, "path": entry.path, "size": entry.size}),
                )?;
            }
            Ok(n > 0)
        })?;
        Ok((self.get(&entry.reference())?, added))
    }

    /// A dataset by `name` (its newest entry) or `name@sha256:…`.
    pub fn get(&self, spec: &str) -> Result<Dataset> {
        let db = self.db;
        let (name, want) = match spec.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        let conn = db.lock();
        let found = match want {
            Some(d) => conn.query_row(
                "SELECT name, digest, path, size, added, schema FROM datasets WHERE name = ?1 AND digest = ?2",
                params![name, d],
                dataset_row,
            ),
            None => conn.query_row(
                "SELECT name, digest, path, size, added, schema FROM datasets WHERE name = ?1
                 ORDER BY added DESC, rowid DESC LIMIT 1",
                [name],
                dataset_row,
            ),
        }
        .optional()
        .map_err(|e| db.err(e))?;
        found.ok_or_else(|| {
            RegistryError::NotFound(format!(
                "no dataset `{spec}`; register one with `tensorlet dataset add {name} <file.csv>` \
                 (`tensorlet dataset list` shows what is registered)"
            ))
        })
    }

    /// Every registered dataset, newest first.
    pub fn list(&self) -> Result<Vec<Dataset>> {
        let db = self.db;
        let conn = db.lock();
        let mut stmt = conn
            .prepare(
                "SELECT name, digest, path, size, added, schema FROM datasets ORDER BY added DESC, rowid DESC",
            )
            .map_err(|e| db.err(e))?;
        stmt.query_map([], dataset_row)
            .and_then(Iterator::collect)
            .map_err(|e| db.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_are_checked() {
        assert!(check_dataset_name("iris-2024_v1").is_ok());
        assert!(check_dataset_name("Iris").is_err());
        assert!(check_dataset_name("").is_err());
        assert!(check_dataset_name("-x").is_err());
    }
}
