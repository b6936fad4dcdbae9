//! The registry store: SQLite (WAL, `synchronous=FULL`, versioned migrations)
//! for the index, the trust policy and the audit log; blob files named by
//! digest under `blobs/sha256/`.
//!
//! Crash safety: a blob is written to a temporary file, fsynced and renamed
//! into place (and its directory fsynced) before the transaction that refers
//! to it commits; the index row, its blob rows and its audit entry commit in
//! one `BEGIN IMMEDIATE` transaction, so a publish is either wholly there or
//! not at all, and concurrent writers (threads or processes) serialise.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{self, AuditCheckpoint, AuditEntry, AuditReport};
use crate::datasets::Datasets;
use crate::error::{RegistryError, Result};
use crate::keys::{KeyPair, KeyStore, NODE_KEY, PublicKey, check_key_name};
use crate::manifest::{COMPONENT, Kind, Manifest, SignedManifest, digest};
use crate::reference::{Reference, Selector, check_alias, check_name, check_version};
use crate::runs::Runs;
use crate::time::now_rfc3339;
use crate::verified::{Provenance, VerifiedArtifact, VerifiedComponent};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    crate::runs::SCHEMA,
    crate::audit::ORIGIN_SCHEMA,
];

/// One artifact version, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtifactSummary {
    /// `namespace/name`.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Kind.
    pub kind: Kind,
    /// Manifest digest.
    pub digest: String,
    /// Signer's key id.
    pub key_id: String,
    /// Whether the version is yanked.
    pub yanked: bool,
    /// When it was published here (UTC).
    pub created: String,
    /// Aliases pointing at this version.
    pub aliases: Vec<String>,
}

impl ArtifactSummary {
    /// `ns/name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

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

/// The result of a publish.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// `ns/name@version`.
    pub reference: String,
    /// Manifest digest.
    pub digest: String,
    /// Signer's key id.
    pub key_id: String,
}

pub(crate) struct Row {
    pub(crate) summary: ArtifactSummary,
    pub(crate) manifest: String,
}

/// The registry in a `$TENSORLET_HOME`: database, blobs, keys, trust policy,
/// audit log. Cheap to share behind an `Arc`; methods take `&self`.
pub struct Registry {
    home: PathBuf,
    db_path: PathBuf,
    conn: Mutex<Connection>,
    keys: KeyStore,
    node: KeyPair,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.home.display())
    }
}

pub(crate) fn split_name(name: &str) -> (&str, &str) {
    name.split_once('/').expect("names are checked")
}

impl Registry {
    /// Opens (creating and migrating as needed) the registry in `home`.
    pub fn open(home: &Path) -> Result<Self> {
        std::fs::create_dir_all(home.join("blobs").join("sha256"))
            .map_err(|e| RegistryError::io(home, e))?;
        let db_path = home.join("registry.db");
        let db_err = |source| RegistryError::Database {
            path: db_path.clone(),
            source,
        };
        let mut conn = Connection::open(&db_path).map_err(db_err)?;
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
        let keys = KeyStore::new(home.join("keys"));
        let node = keys.load_or_create(NODE_KEY)?;
        let reg = Registry {
            home: home.to_path_buf(),
            db_path,
            conn: Mutex::new(conn),
            keys,
            node,
        };
        reg.first_checkpoint()?;
        Ok(reg)
    }

    /// A new registry gets a checkpoint of its empty log at once, so that a
    /// log whose checkpoint file is missing is always an error. Only a
    /// registry with no history at all is new: no entries, no index rows,
    /// and no checkpoint file ever written (the origin record says), so a
    /// wiped log is not mistaken for a fresh one.
    fn first_checkpoint(&self) -> Result<()> {
        let path = self.checkpoint_path();
        let conn = self.lock();
        let Some(origin) = audit::origin(&conn).map_err(|e| self.db(e))? else {
            // Deleted: verification says so; nothing is written on its word.
            return Ok(());
        };
        if origin.checkpointed {
            return Ok(());
        }
        if !path.exists() {
            let fresh = audit::head(&conn).map_err(|e| self.db(e))?.is_none()
                && origin.first_hash.is_none()
                && !audit::has_history(&conn).map_err(|e| self.db(e))?;
            if !fresh {
                return Ok(());
            }
            audit::write_checkpoint(&path, &self.node, &audit::Head::genesis())?;
        }
        audit::mark_checkpointed(&conn).map_err(|e| self.db(e))
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The key store (`keys/`).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The file the signed audit checkpoint is written to (outside the database).
    pub fn checkpoint_path(&self) -> PathBuf {
        self.home.join("audit.checkpoint")
    }

    /// The database file.
    pub fn database_path(&self) -> &Path {
        &self.db_path
    }

    /// The training runs and their checkpoints.
    pub fn runs(&self) -> Runs<'_> {
        Runs::new(self)
    }

    /// The registered datasets.
    pub fn datasets(&self) -> Datasets<'_> {
        Datasets::new(self)
    }

    pub(crate) fn db(&self, source: rusqlite::Error) -> RegistryError {
        RegistryError::Database {
            path: self.db_path.clone(),
            source,
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one immediate transaction and commits; then advances the
    /// audit checkpoint to the new head.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let out = f(&tx)?;
        let head = audit::full_head(&tx).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        drop(conn);
        if let Some(head) = head {
            audit::write_checkpoint(&self.checkpoint_path(), &self.node, &head)?;
        }
        Ok(out)
    }

    pub(crate) fn append(
        &self,
        tx: &Transaction<'_>,
        action: &str,
        subject: &str,
        detail: Value,
    ) -> Result<()> {
        audit::append(tx, &self.node, action, subject, detail).map_err(|e| self.db(e))
    }

    /// Appends an audit entry on its own (training runs, model loads, …).
    pub fn record(&self, action: &str, subject: &str, detail: Value) -> Result<()> {
        self.write(|tx| self.append(tx, action, subject, detail))
    }

    // ----- keys and trust -------------------------------------------------

    /// Creates a named signing key in `keys/` (mode 0600) and audits it.
    pub fn keygen(&self, name: &str) -> Result<KeyPair> {
        check_key_name(name)?;
        if name == NODE_KEY {
            return Err(RegistryError::Invalid(format!(
                "`{NODE_KEY}` is reserved for the key that signs audit checkpoints; choose another name"
            )));
        }
        let key = self.keys.create(name)?;
        self.record(
            "key.create",
            name,
            json!({"key_id": key.key_id(), "public_key": key.public().to_string()}),
        )?;
        Ok(key)
    }

    /// Loads a named signing key.
    pub fn key(&self, name: &str) -> Result<KeyPair> {
        self.keys.load(name)
    }

    /// The node key's public half (it signs audit entries and checkpoints).
    pub fn node_key(&self) -> PublicKey {
        self.node.public()
    }

    /// Allows `key` to publish in `namespaces` (added to any it had).
    pub fn trust_add(&self, key: &PublicKey, namespaces: &[String]) -> Result<TrustEntry> {
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
        self.write(|tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT namespaces FROM trust WHERE key_id = ?1",
                    [&key_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.db(e))?;
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
            .map_err(|e| self.db(e))?;
            self.append(
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

    /// Removes a key (by key id or public key) from the trust policy.
    pub fn trust_remove(&self, key: &str) -> Result<TrustEntry> {
        let key_id = match PublicKey::parse(key) {
            Ok(k) => k.key_id(),
            Err(_) => key.trim().to_string(),
        };
        self.write(|tx| {
            let entry = trust_entry(tx, &key_id).map_err(|e| self.db(e))?.ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "key {key_id} is not in the trust policy; `tensorlet trust list` shows the trusted keys"
                ))
            })?;
            tx.execute("DELETE FROM trust WHERE key_id = ?1", [&key_id])
                .map_err(|e| self.db(e))?;
            self.append(tx, "trust.remove", &key_id, json!({"namespaces": entry.namespaces}))?;
            Ok(entry)
        })
    }

    /// The trust policy, by key id.
    pub fn trust_list(&self) -> Result<Vec<TrustEntry>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key_id, public_key, namespaces, added FROM trust ORDER BY key_id")
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], trust_row)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    // ----- verification ---------------------------------------------------

    /// Checks a signed manifest: signed, the key id matches the key, the
    /// signature verifies (`verify_strict`) over the canonical manifest, and
    /// the trust policy allows the key for the manifest's namespace.
    /// Returns the key id.
    fn check_signed(&self, conn: &Connection, signed: &SignedManifest) -> Result<String> {
        let m = &signed.manifest;
        let refuse = |key_id: &str, reason: String| RegistryError::Refused {
            artifact: m.reference(),
            key_id: key_id.to_string(),
            reason,
        };
        let Some(sig) = &signed.signature else {
            return Err(refuse(
                "none",
                "it is unsigned; publish it with `tensorlet publish … --key <name>` (only \
                 `--allow-unsigned`, for local development, runs unsigned code)"
                    .into(),
            ));
        };
        let key = PublicKey::parse(&sig.public_key).map_err(|_| {
            refuse(
                &sig.key_id,
                "its signature carries a malformed public key".into(),
            )
        })?;
        if key.key_id() != sig.key_id {
            return Err(refuse(
                &sig.key_id,
                format!(
                    "the signature's key id does not match its public key (which has id {})",
                    key.key_id()
                ),
            ));
        }
        if !key.verify(&m.canonical_bytes(), &sig.signature) {
            return Err(refuse(
                &sig.key_id,
                "the signature does not verify over the manifest: the manifest or its signature \
                 was altered"
                    .into(),
            ));
        }
        self.check_trusted(conn, &m.reference(), &key, m.namespace())
    }

    /// Checks that the trust policy allows `key` to sign artifacts in `ns`;
    /// `artifact` names what is refused. Returns the key id.
    fn check_trusted(
        &self,
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
        match trust_entry(conn, &key_id).map_err(|e| self.db(e))? {
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

    /// Checks, before any long work, what [`Registry::publish`] would check
    /// of `name@version` signed by `key`: the name and version are well
    /// formed, the trust policy allows the key for the namespace, and the
    /// version is not published yet (`None` stands for the next version,
    /// new by construction). A command that trains for minutes and then
    /// publishes calls this first, so that it fails before the first epoch.
    /// Records nothing; publishing checks all of it again, and the rest.
    pub fn check_publish(&self, key: &PublicKey, name: &str, version: Option<&str>) -> Result<()> {
        check_name(name)?;
        let artifact = match version {
            Some(v) => {
                check_version(v)?;
                format!("{name}@{v}")
            }
            None => name.to_string(),
        };
        let (ns, n) = split_name(name);
        let conn = self.lock();
        self.check_trusted(&conn, &artifact, key, ns)?;
        if let Some(v) = version {
            let existing: Option<String> = conn
                .query_row(
                    "SELECT digest FROM artifacts WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                    params![ns, n, v],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.db(e))?;
            if let Some(digest) = existing {
                return Err(RegistryError::AlreadyExists { artifact, digest });
            }
        }
        Ok(())
    }

    /// Audits a refusal, then returns it.
    pub(crate) fn refused(&self, e: RegistryError, action: &str) -> RegistryError {
        if let RegistryError::Refused {
            artifact,
            key_id,
            reason,
        } = &e
            && let Err(audit_err) = self.record(
                action,
                artifact,
                json!({"key_id": key_id, "reason": reason}),
            )
        {
            tracing::warn!("cannot audit a refusal: {audit_err}");
        }
        e
    }

    /// Resolves a reference and verifies the artifact: its index row matches
    /// its manifest, the manifest digest is what was published, the signature
    /// verifies and is trusted for the namespace, and every blob hashes to its
    /// pinned digest. Refusals are audited.
    pub fn verify(&self, reference: &Reference) -> Result<VerifiedArtifact> {
        let row = self.resolve_row(reference)?;
        self.verify_row(row)
            .map_err(|e| self.refused(e, "verify.failed"))
    }

    /// [`Registry::verify`] of a reference string.
    pub fn verify_str(&self, reference: &str) -> Result<VerifiedArtifact> {
        self.verify(&Reference::parse(reference)?)
    }

    /// [`Registry::verify`] for views that only look (the console): the same
    /// checks, but a refusal is returned without an audit entry, so that
    /// showing a tampered artifact does not write to the log on every view.
    /// What loads, serves or moves an artifact uses [`Registry::verify`].
    pub fn inspect(&self, reference: &Reference) -> Result<VerifiedArtifact> {
        let row = self.resolve_row(reference)?;
        self.verify_row(row)
    }

    /// Checks a signed manifest held elsewhere (a remote registry's) against
    /// this registry's trust policy: signed, the signature verifies, the key
    /// is trusted for the namespace. Blobs are not checked and nothing is
    /// recorded. Returns the key id.
    pub fn check_signature(&self, signed: &SignedManifest) -> Result<String> {
        self.check_signed(&self.lock(), signed)
    }

    fn verify_row(&self, row: Row) -> Result<VerifiedArtifact> {
        self.verify_row_with(row, |signed| self.check_signed(&self.lock(), signed))
    }

    /// Resolves `reference` on `conn` (the caller's transaction) and
    /// verifies it there: what an alias may be pointed at. Returns its summary.
    pub(crate) fn alias_target_in(
        &self,
        conn: &Connection,
        reference: &Reference,
    ) -> Result<ArtifactSummary> {
        let row = self.resolve_row_in(conn, reference)?;
        let summary = row.summary.clone();
        self.verify_row_with(row, |signed| self.check_signed(conn, signed))?;
        Ok(summary)
    }

    /// Verifies a row, with `check_signed` checking the signature against
    /// the trust policy.
    fn verify_row_with(
        &self,
        row: Row,
        check_signed: impl FnOnce(&SignedManifest) -> Result<String>,
    ) -> Result<VerifiedArtifact> {
        let s = &row.summary;
        let refuse = |reason: String| RegistryError::Refused {
            artifact: s.reference(),
            key_id: s.key_id.clone(),
            reason,
        };
        let signed = SignedManifest::parse(row.manifest.as_bytes())
            .map_err(|e| refuse(format!("its stored manifest is damaged ({e})")))?;
        let m = &signed.manifest;
        let got = m.digest();
        if got != s.digest {
            return Err(refuse(format!(
                "its manifest was modified: it hashes to {got}, but it was published as {}",
                s.digest
            )));
        }
        if m.name != s.name || m.version != s.version || m.kind != s.kind {
            return Err(refuse(format!(
                "the registry index says {} ({}) but the signed manifest is {} ({})",
                s.reference(),
                s.kind,
                m.reference(),
                m.kind
            )));
        }
        m.validate().map_err(|e| refuse(e.to_string()))?;
        let key_id = check_signed(&signed)?;
        let mut blobs = BTreeMap::new();
        for (role, d) in &m.blobs {
            let bytes = self.read_blob(d).map_err(|_| {
                refuse(format!(
                    "blob `{role}` ({d}) is missing from the blob store"
                ))
            })?;
            let got = digest(&bytes);
            if &got != d {
                return Err(refuse(format!(
                    "blob `{role}` was modified: it hashes to {got} but the manifest pins {d}"
                )));
            }
            blobs.insert(role.clone(), Arc::new(bytes));
        }
        Ok(VerifiedArtifact::new(
            signed.manifest,
            s.digest.clone(),
            key_id,
            s.yanked,
            blobs,
        ))
    }

    /// Verifies a dependency by its pinned digest.
    pub fn verify_pin(&self, pin: &crate::manifest::Pin) -> Result<VerifiedArtifact> {
        self.verify(&pin.exact())
    }

    /// Caches what a pull fetched (a signed manifest and its blobs, whose
    /// dependencies are already cached) after checking it against the trust
    /// policy, and returns it verified. `source` names where it came from,
    /// for the audit log and messages. A different artifact under the same
    /// version is refused: versions are immutable, so one of them is not
    /// genuine.
    pub fn import_pulled(
        &self,
        signed: &SignedManifest,
        blobs: &[Vec<u8>],
        source: &str,
    ) -> Result<VerifiedArtifact> {
        match self.import(signed, blobs, source) {
            Ok(_) => {}
            Err(RegistryError::AlreadyExists { artifact, digest }) => {
                return Err(RegistryError::Refused {
                    artifact,
                    key_id: signed.key_id(),
                    reason: format!(
                        "{source} serves manifest {} for it, but this machine already holds \
                         that version as {digest}; versions are immutable, so one of them is \
                         not genuine",
                        signed.manifest.digest()
                    ),
                });
            }
            Err(e) => return Err(e),
        }
        self.verify(&Reference {
            name: signed.manifest.name.clone(),
            selector: Selector::Digest(signed.manifest.digest()),
        })
    }

    /// A verified, non-yanked plugin artifact whose component has this
    /// digest, if the registry holds one.
    pub fn component_by_digest(&self, component_digest: &str) -> Result<Option<VerifiedComponent>> {
        let found: Option<(String, String)> = {
            let conn = self.lock();
            conn.query_row(
                "SELECT a.namespace || '/' || a.name, a.digest FROM artifact_blobs b
                 JOIN artifacts a ON a.id = b.artifact_id
                 WHERE b.role = ?1 AND b.digest = ?2 ORDER BY a.yanked, a.id LIMIT 1",
                params![COMPONENT, component_digest],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?
        };
        match found {
            None => Ok(None),
            Some((name, d)) => {
                let a = self.verify(&Reference {
                    name,
                    selector: Selector::Digest(d),
                })?;
                Ok(a.component())
            }
        }
    }

    /// The development-only escape hatch: wraps component bytes that passed
    /// no verification so the runtime will load them. Loud (a warning in the
    /// log) and audited (`load.unsigned`). Never use it for anything that
    /// came from outside your own build.
    pub fn allow_unsigned(&self, name: &str, bytes: Vec<u8>) -> Result<VerifiedComponent> {
        let d = digest(&bytes);
        tracing::info!("loading `{name}` ({d}) WITHOUT signature verification (--allow-unsigned)");
        self.record("load.unsigned", name, json!({"digest": d}))?;
        Ok(VerifiedComponent::new(
            name.to_string(),
            d,
            Arc::new(bytes),
            Provenance::Unsigned,
        ))
    }

    // ----- publishing -----------------------------------------------------

    /// Publishes a signed artifact with its blobs (in any order). Accepted
    /// only when the manifest is well formed, signed by a key that the trust
    /// policy allows for its namespace, every pinned blob is given and hashes
    /// right, every dependency is present, and the version is new.
    pub fn publish(&self, signed: &SignedManifest, blobs: &[Vec<u8>]) -> Result<Published> {
        self.store(signed, blobs, "publish", json!({}))
            .map_err(|e| self.refused(e, "publish.refused"))
    }

    /// Stores an artifact pulled from a remote registry after verifying it
    /// against this registry's own trust policy (audited as `pull`).
    pub fn import(
        &self,
        signed: &SignedManifest,
        blobs: &[Vec<u8>],
        origin: &str,
    ) -> Result<Published> {
        self.store(signed, blobs, "pull", json!({"from": origin}))
            .map_err(|e| self.refused(e, "pull.refused"))
    }

    fn store(
        &self,
        signed: &SignedManifest,
        blobs: &[Vec<u8>],
        action: &str,
        mut detail: Value,
    ) -> Result<Published> {
        let m = &signed.manifest;
        m.validate()?;
        let key_id = {
            let conn = self.lock();
            self.check_signed(&conn, signed)?
        };
        let given: BTreeMap<String, &Vec<u8>> = blobs.iter().map(|b| (digest(b), b)).collect();
        for (role, d) in &m.blobs {
            if !given.contains_key(d) {
                return Err(RegistryError::Refused {
                    artifact: m.reference(),
                    key_id: key_id.clone(),
                    reason: format!(
                        "blob `{role}` ({d}) was not supplied, or its bytes do not hash to the pinned digest"
                    ),
                });
            }
        }
        for d in m.blobs.values() {
            self.write_blob(d, given[d])?;
        }
        let manifest_digest = m.digest();
        let envelope = String::from_utf8(signed.to_canonical()).expect("JSON is UTF-8");
        let (ns, name) = split_name(&m.name);
        let reference = m.reference();
        self.write(|tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT digest FROM artifacts WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                    params![ns, name, m.version],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.db(e))?;
            if let Some(digest) = existing {
                return Err(RegistryError::AlreadyExists {
                    artifact: reference.clone(),
                    digest,
                });
            }
            for (role, pin) in &m.depends {
                let present: Option<i64> = tx
                    .query_row("SELECT id FROM artifacts WHERE digest = ?1", [&pin.digest], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(|e| self.db(e))?;
                if present.is_none() {
                    return Err(RegistryError::NotFound(format!(
                        "{reference} depends on {} ({}) as its {role}, which is not in this \
                         registry; publish that first",
                        pin.reference, pin.digest
                    )));
                }
            }
            let now = now_rfc3339();
            for d in m.blobs.values() {
                tx.execute(
                    "INSERT OR IGNORE INTO blobs (digest, size, created) VALUES (?1, ?2, ?3)",
                    params![d, given[d].len() as i64, now],
                )
                .map_err(|e| self.db(e))?;
            }
            tx.execute(
                "INSERT INTO artifacts (namespace, name, version, kind, digest, manifest, key_id, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![ns, name, m.version, m.kind.as_str(), manifest_digest, envelope, key_id, now],
            )
            .map_err(|e| self.db(e))?;
            let id = tx.last_insert_rowid();
            for (role, d) in &m.blobs {
                tx.execute(
                    "INSERT INTO artifact_blobs (artifact_id, role, digest) VALUES (?1, ?2, ?3)",
                    params![id, role, d],
                )
                .map_err(|e| self.db(e))?;
            }
            if let Value::Object(o) = &mut detail {
                o.insert("digest".into(), json!(manifest_digest));
                o.insert("kind".into(), json!(m.kind));
                o.insert("key_id".into(), json!(key_id));
            }
            self.append(tx, action, &reference, detail)?;
            Ok(Published {
                reference: reference.clone(),
                digest: manifest_digest.clone(),
                key_id: key_id.clone(),
            })
        })
    }

    fn blob_path(&self, d: &str) -> PathBuf {
        self.home
            .join("blobs")
            .join("sha256")
            .join(d.trim_start_matches("sha256:"))
    }

    /// Writes a blob durably: temporary file, fsync, rename, fsync of the
    /// directory. A blob already present with the right content is kept.
    pub(crate) fn write_blob(&self, d: &str, bytes: &[u8]) -> Result<()> {
        self.write_blob_with(d, bytes, true)
    }

    /// [`Registry::write_blob`], optionally without the fsyncs: still atomic
    /// (rename), but a power loss may leave the file empty or missing.
    pub(crate) fn write_blob_with(&self, d: &str, bytes: &[u8], sync: bool) -> Result<()> {
        let path = self.blob_path(d);
        if let Ok(existing) = std::fs::read(&path)
            && digest(&existing) == d
        {
            return Ok(());
        }
        let dir = path.parent().expect("blob path has a parent");
        let tmp = dir.join(format!(
            ".{}.{}.{:?}.tmp",
            d.trim_start_matches("sha256:"),
            std::process::id(),
            std::thread::current().id()
        ));
        let io = |e| RegistryError::io(&tmp, e);
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        if sync {
            f.sync_all().map_err(io)?;
        }
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| RegistryError::io(&path, e))?;
        if sync {
            sync_dir(dir);
        }
        Ok(())
    }

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

    fn read_blob(&self, d: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        std::fs::read(&path).map_err(|e| RegistryError::io(path, e))
    }

    /// A blob's bytes, checked against its digest.
    pub fn blob(&self, d: &str) -> Result<Vec<u8>> {
        crate::manifest::check_digest(d)?;
        let bytes = self
            .read_blob(d)
            .map_err(|_| RegistryError::NotFound(format!("blob {d} is not in this registry")))?;
        if digest(&bytes) != d {
            return Err(RegistryError::Refused {
                artifact: d.to_string(),
                key_id: "none".into(),
                reason: "the blob file was modified".into(),
            });
        }
        Ok(bytes)
    }

    // ----- queries --------------------------------------------------------

    fn rows(
        &self,
        conn: &Connection,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Row>> {
        let sql = format!(
            "SELECT a.namespace || '/' || a.name, a.version, a.kind, a.digest, a.key_id,
                    a.yanked, a.created, a.manifest,
                    (SELECT group_concat(alias, ',') FROM (SELECT alias FROM aliases l
                       WHERE l.namespace = a.namespace AND l.name = a.name AND l.version = a.version
                       ORDER BY alias))
             FROM artifacts a {filter}"
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map(args, |r| {
                let kind: String = r.get(2)?;
                let aliases: Option<String> = r.get(8)?;
                Ok(Row {
                    summary: ArtifactSummary {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        kind: kind.parse().unwrap_or(Kind::Model),
                        digest: r.get(3)?,
                        key_id: r.get(4)?,
                        yanked: r.get::<_, i64>(5)? != 0,
                        created: r.get(6)?,
                        aliases: aliases
                            .map(|a| a.split(',').map(str::to_string).collect())
                            .unwrap_or_default(),
                    },
                    manifest: r.get(7)?,
                })
            })
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    pub(crate) fn resolve_row(&self, reference: &Reference) -> Result<Row> {
        self.resolve_row_in(&self.lock(), reference)
    }

    /// [`Registry::resolve_row`] on a connection the caller holds (inside
    /// its transaction).
    fn resolve_row_in(&self, conn: &Connection, reference: &Reference) -> Result<Row> {
        let (ns, name) = split_name(&reference.name);
        let missing = |what: String| {
            RegistryError::NotFound(format!(
                "{what} is not in the registry; `tensorlet list` shows what is there"
            ))
        };
        let mut rows = match &reference.selector {
            Selector::Version(v) => self.rows(
                conn,
                "WHERE a.namespace = ?1 AND a.name = ?2 AND a.version = ?3",
                &[&ns, &name, &v.to_string()],
            )?,
            Selector::Digest(d) => self.rows(
                conn,
                "WHERE a.namespace = ?1 AND a.name = ?2 AND a.digest = ?3",
                &[&ns, &name, d],
            )?,
            Selector::Alias(alias) => {
                let version: Option<String> = conn
                    .query_row(
                        "SELECT version FROM aliases WHERE namespace = ?1 AND name = ?2 AND alias = ?3",
                        params![ns, name, alias],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.db(e))?;
                let Some(version) = version else {
                    return Err(missing(format!("alias `{alias}` of {}", reference.name)));
                };
                self.rows(
                    conn,
                    "WHERE a.namespace = ?1 AND a.name = ?2 AND a.version = ?3",
                    &[&ns, &name, &version],
                )?
            }
            Selector::Latest => {
                let all = self.rows(
                    conn,
                    "WHERE a.namespace = ?1 AND a.name = ?2",
                    &[&ns, &name],
                )?;
                if !all.is_empty() && all.iter().all(|r| r.summary.yanked) {
                    return Err(RegistryError::NotFound(format!(
                        "every version of {} is yanked; name a version exactly \
                         (`{}@<version>`) to use a yanked one",
                        reference.name, reference.name
                    )));
                }
                let best = all
                    .into_iter()
                    .filter(|r| !r.summary.yanked)
                    .filter_map(|r| {
                        semver::Version::parse(&r.summary.version)
                            .ok()
                            .map(|v| (v, r))
                    })
                    .max_by(|a, b| a.0.cmp(&b.0))
                    .map(|(_, r)| r);
                best.into_iter().collect()
            }
        };
        rows.pop().ok_or_else(|| missing(reference.to_string()))
    }

    /// Resolves a reference to its version's summary (no verification).
    pub fn resolve(&self, reference: &Reference) -> Result<ArtifactSummary> {
        self.resolve_row(reference).map(|r| r.summary)
    }

    /// A resolved summary with its stored signed manifest (canonical JSON),
    /// unverified: what a remote registry serves; the client verifies.
    pub fn resolve_envelope(&self, reference: &Reference) -> Result<(ArtifactSummary, String)> {
        self.resolve_row(reference).map(|r| (r.summary, r.manifest))
    }

    /// Every artifact version, sorted by name then version.
    pub fn list(&self) -> Result<Vec<ArtifactSummary>> {
        let conn = self.lock();
        let mut all: Vec<ArtifactSummary> = self
            .rows(&conn, "", &[])?
            .into_iter()
            .map(|r| r.summary)
            .collect();
        all.sort_by(|a, b| {
            a.name.cmp(&b.name).then_with(|| {
                match (
                    semver::Version::parse(&a.version),
                    semver::Version::parse(&b.version),
                ) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => a.version.cmp(&b.version),
                }
            })
        });
        Ok(all)
    }

    /// Versions of `ns/name` (yanked included), ascending.
    pub fn versions(&self, name: &str) -> Result<Vec<semver::Version>> {
        check_name(name)?;
        let mut v: Vec<semver::Version> = self
            .list()?
            .into_iter()
            .filter(|s| s.name == name)
            .filter_map(|s| semver::Version::parse(&s.version).ok())
            .collect();
        v.sort();
        Ok(v)
    }

    /// The summary and the signed manifest of a reference (unverified; use
    /// [`Registry::verify`] before trusting it).
    pub fn show(&self, reference: &Reference) -> Result<(ArtifactSummary, SignedManifest)> {
        let row = self.resolve_row(reference)?;
        let signed = SignedManifest::parse(row.manifest.as_bytes())?;
        Ok((row.summary, signed))
    }

    /// Yanks a version: it stays loadable when named exactly, but is never
    /// chosen as the latest. Audited.
    pub fn yank(&self, reference: &Reference) -> Result<ArtifactSummary> {
        let row = self.resolve_row(reference)?;
        let (ns, name) = split_name(&row.summary.name);
        self.write(|tx| {
            tx.execute(
                "UPDATE artifacts SET yanked = 1 WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                params![ns, name, row.summary.version],
            )
            .map_err(|e| self.db(e))?;
            self.append(
                tx,
                "yank",
                &row.summary.reference(),
                json!({"digest": row.summary.digest}),
            )
        })?;
        let mut s = row.summary;
        s.yanked = true;
        Ok(s)
    }

    /// Points `alias` of `ns/name` at `version`; returns the version it
    /// pointed at before. The version must verify against the trust policy
    /// (as it would have to when served); a refusal is audited as
    /// `alias.refused` and moves nothing. Audited as `alias.set`.
    pub fn alias_set(&self, name: &str, alias: &str, version: &str) -> Result<Option<String>> {
        check_name(name)?;
        check_alias(alias)?;
        let v = check_version(version)?;
        let (ns, n) = split_name(name);
        let reference = Reference {
            name: name.to_string(),
            selector: Selector::Version(v),
        };
        self.write(|tx| {
            let target = self.alias_target_in(tx, &reference)?;
            let previous: Option<String> = tx
                .query_row(
                    "SELECT version FROM aliases WHERE namespace = ?1 AND name = ?2 AND alias = ?3",
                    params![ns, n, alias],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.db(e))?;
            tx.execute(
                "INSERT INTO aliases (namespace, name, alias, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(namespace, name, alias) DO UPDATE SET version = excluded.version",
                params![ns, n, alias, target.version],
            )
            .map_err(|e| self.db(e))?;
            if previous.as_deref() != Some(target.version.as_str()) {
                push_alias_history(tx, ns, n, alias, &target.version).map_err(|e| self.db(e))?;
            }
            self.append(
                tx,
                "alias.set",
                &format!("{name}@{alias}"),
                json!({"from": previous, "to": target.version, "digest": target.digest}),
            )?;
            Ok(previous)
        })
        .map_err(|e| self.refused(e, "alias.refused"))
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

    // ----- audit ----------------------------------------------------------

    /// Every audit entry, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        let conn = self.lock();
        audit::entries(&conn).map_err(|e| self.db(e))
    }

    /// Verifies the hash chain, every entry's node signature, the origin
    /// record, the signed checkpoint, and that the log accounts for every
    /// index row (artifact, yank, alias, run, dataset, trusted key); the
    /// error names the first bad entry, the truncation, or what is
    /// inconsistent (an emptied or restarted log, a missing checkpoint).
    pub fn audit_verify(&self) -> Result<AuditReport> {
        self.audit_verify_with(&[])
    }

    /// [`Registry::audit_verify`], and checks the log against checkpoints
    /// kept elsewhere (files written by [`Registry::audit_checkpoint`]): a
    /// log shorter than one of them, restarted, or with another entry at its
    /// position fails, naming the entry.
    pub fn audit_verify_with(&self, external: &[&Path]) -> Result<AuditReport> {
        // The checkpoint file first: it is written after each commit, so
        // the snapshot read next holds at least what it records.
        let checkpoint = self.checkpoint_path();
        let local = std::fs::read(&checkpoint);
        let (entries, origin, index) = {
            let mut conn = self.lock();
            let mut read = || -> rusqlite::Result<_> {
                // One read transaction: one snapshot of log and index.
                let tx = conn.transaction()?;
                Ok((
                    audit::entries(&tx)?,
                    audit::origin(&tx)?,
                    audit::index(&tx)?,
                ))
            };
            read().map_err(|e| self.db(e))?
        };
        audit::verify(
            &entries,
            &audit::Evidence {
                node: self.node.public(),
                checkpoint: &checkpoint,
                local,
                origin,
                index,
                external,
            },
        )
    }

    /// A signed checkpoint of the log's head now, to keep off this machine
    /// (`tensorlet audit checkpoint --out`, or fetched from the registry
    /// server); [`Registry::audit_verify_with`] checks the log against it
    /// later. Only a log that verifies gets one.
    pub fn audit_checkpoint(&self) -> Result<AuditCheckpoint> {
        let head = {
            let conn = self.lock();
            audit::full_head(&conn).map_err(|e| self.db(e))?
        };
        self.audit_verify()?;
        Ok(audit::export(
            &self.node,
            &head.unwrap_or_else(audit::Head::genesis),
        ))
    }

    /// Signs a manifest with the named key (convenience for callers).
    pub fn sign(&self, manifest: Manifest, key: &str) -> Result<SignedManifest> {
        Ok(manifest.sign(&self.keys.load(key)?))
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

fn push_alias_history(
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

fn trust_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TrustEntry> {
    let ns: String = r.get(2)?;
    Ok(TrustEntry {
        key_id: r.get(0)?,
        public_key: r.get(1)?,
        namespaces: serde_json::from_str(&ns).unwrap_or_default(),
        added: r.get(3)?,
    })
}

fn trust_entry(conn: &Connection, key_id: &str) -> rusqlite::Result<Option<TrustEntry>> {
    conn.query_row(
        "SELECT key_id, public_key, namespaces, added FROM trust WHERE key_id = ?1",
        [key_id],
        trust_row,
    )
    .optional()
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

/// Fsyncs a directory so a rename in it is durable (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
