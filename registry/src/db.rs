//! The registry's database: one SQLite file (`registry.db`) in WAL mode with
//! `synchronous=FULL`, its schema, and the versioned migrations that bring
//! an older file up to date.
//!
//! Every table is created here, so the schema can be read in one place; the
//! modules that own the rows (index, trust, audit, runs, datasets) only
//! query and write them. A write that must be audited goes through
//! [`crate::audit::AuditLog::write`], which runs it in one `BEGIN IMMEDIATE`
//! transaction, so concurrent writers (threads or processes) serialise.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{RegistryError, Result};

/// Migration 1: blobs, the index (artifacts, their blobs, aliases), the
/// trust policy and the audit log.
const INITIAL: &str = r#"
CREATE TABLE blobs (
    digest  TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE artifacts (
    id        INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   TEXT NOT NULL,
    kind      TEXT NOT NULL,
    digest    TEXT NOT NULL UNIQUE,
    manifest  TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    yanked    INTEGER NOT NULL DEFAULT 0,
    created   TEXT NOT NULL,
    UNIQUE (namespace, name, version)
);
CREATE TABLE artifact_blobs (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
    role        TEXT NOT NULL,
    digest      TEXT NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (artifact_id, role)
);
CREATE INDEX artifact_blobs_by_digest ON artifact_blobs(digest);
CREATE TABLE aliases (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    alias     TEXT NOT NULL,
    version   TEXT NOT NULL,
    PRIMARY KEY (namespace, name, alias)
);
CREATE TABLE trust (
    key_id     TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    added      TEXT NOT NULL
);
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    time      TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// Migration 2: runs, checkpoints, datasets, alias history.
const RUNS: &str = r#"
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

/// Migration 3: the record that the audit log has begun, and its guards.
const AUDIT_ORIGIN: &str = r#"
CREATE TABLE audit_origin (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    created      TEXT NOT NULL,
    first_hash   TEXT,
    checkpointed INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_origin (id, created, first_hash, checkpointed)
    VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), (SELECT hash FROM audit WHERE seq = 1), 0);
CREATE TRIGGER audit_origin_no_delete BEFORE DELETE ON audit_origin
    BEGIN SELECT RAISE(ABORT, 'the audit origin record is permanent'); END;
CREATE TRIGGER audit_origin_set_once BEFORE UPDATE ON audit_origin
    WHEN NEW.id IS NOT OLD.id OR NEW.created IS NOT OLD.created
      OR (OLD.first_hash IS NOT NULL AND NEW.first_hash IS NOT OLD.first_hash)
      OR NEW.checkpointed < OLD.checkpointed
    BEGIN SELECT RAISE(ABORT, 'the audit origin record is written once'); END;
"#;

/// Migration 4: the columns and types of a registered dataset (JSON, as
/// the reader that typed it wrote them).
const DATASET_SCHEMA: &str = r#"
ALTER TABLE datasets ADD COLUMN schema TEXT;
"#;

/// Migration 5: a run recorded by a remote trainer (central run tracking)
/// keeps the namespace it was recorded under and the key that started it.
const TRACKED_RUNS: &str = r#"
ALTER TABLE runs ADD COLUMN namespace TEXT;
ALTER TABLE runs ADD COLUMN key_id TEXT;
"#;

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[INITIAL, RUNS, AUDIT_ORIGIN, DATASET_SCHEMA, TRACKED_RUNS];

/// The open database: one connection, shared behind a mutex.
pub(crate) struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Db {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db_err = |source| RegistryError::Database {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(db_err)?;
        // WAL: readers never block the writer. FULL: a commit is on disk when
        // it returns (an acknowledged publish survives power loss, not only a
        // killed process).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        migrate(&mut conn).map_err(db_err)?;
        Ok(Db {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A SQLite error as the registry reports it, naming the file.
    pub(crate) fn err(&self, source: rusqlite::Error) -> RegistryError {
        RegistryError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// The connection, for reads and for writes that need no audit entry.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one immediate transaction and commits it when `f`
    /// succeeds; the lock is held until then.
    pub(crate) fn immediate<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()
}
