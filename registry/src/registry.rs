//! [`Registry`]: the registry in a `$TENSORLET_HOME`, put together from its
//! parts: the database ([`crate::db`]), the blob store ([`crate::blobs`]),
//! the key store, and the audit log ([`crate::audit`]). Its methods hand the
//! work to the part whose job it is: the index, the trust policy,
//! verification, publishing, promotion; runs and datasets have handles of
//! their own ([`Registry::runs`], [`Registry::datasets`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::audit::{AuditCheckpoint, AuditEntry, AuditLog, AuditReport};
use crate::blobs::Blobs;
use crate::datasets::Datasets;
use crate::db::Db;
use crate::digest::digest;
use crate::error::{RegistryError, Result};
use crate::index::{self, ArtifactSummary, Published, Row};
use crate::keys::{KeyPair, KeyStore, NODE_KEY, PublicKey, check_key_name};
use crate::manifest::{Manifest, Pin, SignedManifest};
use crate::promotion::{AliasMove, Promotion};
use crate::reference::{Reference, Selector};
use crate::runs::{RunEnd, RunStatus, RunTracking, Runs};
use crate::tracking::{RunChange, SignedRunEvent};
use crate::trust::TrustEntry;
use crate::verified::{Provenance, VerifiedArtifact, VerifiedComponent};
use crate::{publish, trust, verify};

/// The registry in a `$TENSORLET_HOME`: database, blobs, keys, trust policy,
/// audit log. Cheap to share behind an `Arc`; methods take `&self`.
pub struct Registry {
    home: PathBuf,
    db: Db,
    blobs: Blobs,
    keys: KeyStore,
    audit: AuditLog,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.home.display())
    }
}

impl Registry {
    /// Opens (creating and migrating as needed) the registry in `home`.
    pub fn open(home: &Path) -> Result<Self> {
        let blobs = Blobs::open(home)?;
        let db = Db::open(&home.join("registry.db"))?;
        let keys = KeyStore::new(home.join("keys"));
        let node = keys.load_or_create(NODE_KEY)?;
        let audit = AuditLog::open(&db, node, home.join("audit.checkpoint"))?;
        Ok(Registry {
            home: home.to_path_buf(),
            db,
            blobs,
            keys,
            audit,
        })
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
        self.audit.checkpoint_path().to_path_buf()
    }

    /// The database file.
    pub fn database_path(&self) -> &Path {
        self.db.path()
    }

    /// The training runs and their checkpoints.
    pub fn runs(&self) -> Runs<'_> {
        Runs::new(&self.db, &self.blobs, &self.audit)
    }

    /// The registered datasets.
    pub fn datasets(&self) -> Datasets<'_> {
        Datasets::new(&self.db, &self.blobs, &self.audit)
    }

    fn promotion(&self) -> Promotion<'_> {
        Promotion {
            db: &self.db,
            blobs: &self.blobs,
            audit: &self.audit,
        }
    }

    /// Appends an audit entry on its own (training runs, model loads, …).
    pub fn record(&self, action: &str, subject: &str, detail: Value) -> Result<()> {
        self.audit.record(&self.db, action, subject, detail)
    }

    fn refused(&self, e: RegistryError, action: &str) -> RegistryError {
        self.audit.refused(&self.db, e, action)
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
        self.audit.node_key()
    }

    /// Allows `key` to publish in `namespaces` (added to any it had).
    pub fn trust_add(&self, key: &PublicKey, namespaces: &[String]) -> Result<TrustEntry> {
        trust::add(&self.db, &self.audit, key, namespaces)
    }

    /// Removes a key (by key id or public key) from the trust policy.
    pub fn trust_remove(&self, key: &str) -> Result<TrustEntry> {
        trust::remove(&self.db, &self.audit, key)
    }

    /// The trust policy, by key id.
    pub fn trust_list(&self) -> Result<Vec<TrustEntry>> {
        trust::list(&self.db)
    }

    // ----- verification ---------------------------------------------------

    /// Checks, before any long work, what [`Registry::publish`] would check
    /// of `name@version` signed by `key`: the name and version are well
    /// formed, the trust policy allows the key for the namespace, and the
    /// version is not published yet (`None` stands for the next version,
    /// new by construction). A command that trains for minutes and then
    /// publishes calls this first, so that it fails before the first epoch.
    /// Records nothing; publishing checks all of it again, and the rest.
    pub fn check_publish(&self, key: &PublicKey, name: &str, version: Option<&str>) -> Result<()> {
        publish::check(&self.db, key, name, version)
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
        verify::signature(&self.db, &self.db.lock(), signed)
    }

    fn verify_row(&self, row: Row) -> Result<VerifiedArtifact> {
        verify::row(row, &self.blobs, |signed| self.check_signature(signed))
    }

    /// Verifies a dependency by its pinned digest.
    pub fn verify_pin(&self, pin: &Pin) -> Result<VerifiedArtifact> {
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
        match index::component_owner(&self.db, component_digest)? {
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
        let (db, audit) = (&self.db, &self.audit);
        publish::store(db, &self.blobs, audit, signed, blobs, "publish", json!({}))
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
        let (db, audit) = (&self.db, &self.audit);
        publish::store(
            db,
            &self.blobs,
            audit,
            signed,
            blobs,
            "pull",
            json!({"from": origin}),
        )
        .map_err(|e| self.refused(e, "pull.refused"))
    }

    // ----- central run tracking -------------------------------------------

    /// Records a remote trainer's run event with the blob it carries (its
    /// fitted state or a checkpoint's params; none for the others). Accepted
    /// only when the signature verifies, this registry's trust policy allows
    /// the key for the event's namespace, the run was started under that
    /// namespace (every event but a start), and the blob hashes to the digest
    /// the event names. Refusals are audited as `train.refused`; the changes
    /// are audited as a local run's are.
    pub fn track(&self, signed: &SignedRunEvent, blobs: &[Vec<u8>]) -> Result<()> {
        self.track_checked(signed, blobs)
            .map_err(|e| self.refused(e, "train.refused"))
    }

    fn track_checked(&self, signed: &SignedRunEvent, blobs: &[Vec<u8>]) -> Result<()> {
        let (event, key) = signed.open()?;
        let id = event.run_id.as_str();
        let what = format!("run {id}");
        let key_id = trust::check(&self.db, &self.db.lock(), &what, &key, &event.namespace)?;
        let blob = match (event.change.blob(), blobs) {
            (None, []) => None,
            (Some(d), [bytes]) if digest(bytes) == d => Some(bytes.as_slice()),
            (Some(d), [_]) => {
                return Err(RegistryError::Invalid(format!(
                    "{what}: the blob sent does not hash to {d}, the digest the event names"
                )));
            }
            (want, got) => {
                return Err(RegistryError::Invalid(format!(
                    "{what}: the event carries {} blob(s), not {}",
                    usize::from(want.is_some()),
                    got.len()
                )));
            }
        };
        let runs = self.runs();
        if let RunChange::Start { pipeline, record } = &event.change {
            let tracked = RunTracking {
                namespace: event.namespace.clone(),
                key_id,
            };
            return runs.start_tracked(id, pipeline, record, &tracked);
        }
        let run = runs.find(id)?.ok_or_else(|| {
            RegistryError::NotFound(format!("{what} was never started on this registry"))
        })?;
        match &run.tracked {
            Some(t) if t.namespace == event.namespace => {}
            Some(t) => {
                return Err(RegistryError::Refused {
                    artifact: what,
                    key_id,
                    reason: format!(
                        "the run is recorded under namespace `{}`, not `{}`",
                        t.namespace, event.namespace
                    ),
                });
            }
            None => {
                return Err(RegistryError::Refused {
                    artifact: what,
                    key_id,
                    reason: "the run was trained on this registry's own home, not by a remote \
                             trainer"
                        .into(),
                });
            }
        }
        if run.status == RunStatus::Completed {
            // Nothing changes a completed run: its end sent again is a retry,
            // anything else an old event sent again.
            return match &event.change {
                RunChange::End {
                    status: RunStatus::Completed,
                    ..
                } => Ok(()),
                _ => Err(RegistryError::Invalid(format!("{what} already completed"))),
            };
        }
        match (&event.change, blob) {
            (RunChange::State { .. }, Some(bytes)) => runs.save_state(id, bytes).map(drop),
            (RunChange::Checkpoint { epoch, metrics, .. }, Some(bytes)) => {
                runs.checkpoint(id, *epoch, bytes, metrics).map(drop)
            }
            (RunChange::Resume { after_epoch }, _) => runs.resume(id, *after_epoch),
            (
                RunChange::End {
                    status,
                    model,
                    error,
                    result,
                },
                _,
            ) => {
                let end = match status {
                    RunStatus::Completed => RunEnd::Completed {
                        model: model.clone(),
                        result: result.clone().unwrap_or_default(),
                    },
                    RunStatus::Failed => RunEnd::Failed {
                        error: error.clone().unwrap_or_default(),
                    },
                    RunStatus::Interrupted => RunEnd::Interrupted,
                    RunStatus::Running => {
                        return Err(RegistryError::Invalid(format!(
                            "{what}: a run cannot end as `running`"
                        )));
                    }
                };
                runs.end(id, &end)
            }
            _ => unreachable!("start is handled above; blobs are checked against the change"),
        }
    }

    // ----- blobs ------------------------------------------------------------

    /// Stores bytes as a content-addressed blob (kept like an artifact's
    /// blobs) and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        self.blobs.put(&self.db, bytes)
    }

    /// A blob's bytes, checked against its digest.
    pub fn blob(&self, d: &str) -> Result<Vec<u8>> {
        self.blobs.get(d)
    }

    /// A blob's file, checked against its digest without reading it into
    /// memory (a dataset snapshot larger than memory).
    pub fn blob_path(&self, d: &str) -> Result<std::path::PathBuf> {
        self.blobs.verified_path(d)
    }

    // ----- the index --------------------------------------------------------

    fn resolve_row(&self, reference: &Reference) -> Result<Row> {
        index::resolve(&self.db, &self.db.lock(), reference)
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
        index::list(&self.db)
    }

    /// Versions of `ns/name` (yanked included), ascending.
    pub fn versions(&self, name: &str) -> Result<Vec<semver::Version>> {
        index::versions(&self.db, name)
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
        let (db, audit) = (&self.db, &self.audit);
        audit.write(db, |tx| {
            index::yank(db, tx, &row.summary)?;
            audit.append(
                db,
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

    // ----- promotion --------------------------------------------------------

    /// Points `alias` of `ns/name` at `version`; returns the version it
    /// pointed at before. The version must verify against the trust policy
    /// (as it would have to when served); a refusal is audited as
    /// `alias.refused` and moves nothing. Audited as `alias.set`.
    pub fn alias_set(&self, name: &str, alias: &str, version: &str) -> Result<Option<String>> {
        self.promotion().alias_set(name, alias, version)
    }

    /// Points `alias` at the version `reference` names, once it verifies
    /// against the trust policy (a refusal is audited as `promote.refused`
    /// and moves nothing). Audited as `promote`.
    pub fn promote(&self, reference: &Reference, alias: &str) -> Result<AliasMove> {
        self.promotion().promote(reference, alias)
    }

    /// Moves `alias` of `name` back to the version it pointed at before its
    /// latest move; rolling back again goes further back. That version must
    /// still verify against the trust policy (a refusal is audited as
    /// `rollback.refused` and moves nothing). Audited as `rollback`.
    pub fn rollback(&self, name: &str, alias: &str) -> Result<AliasMove> {
        self.promotion().rollback(name, alias)
    }

    // ----- audit ----------------------------------------------------------

    /// Every audit entry, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        self.audit.entries(&self.db)
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
        self.audit.verify(&self.db, external)
    }

    /// A signed checkpoint of the log's head now, to keep off this machine
    /// (`tensorlet audit checkpoint --out`, or fetched from the registry
    /// server); [`Registry::audit_verify_with`] checks the log against it
    /// later. Only a log that verifies gets one.
    pub fn audit_checkpoint(&self) -> Result<AuditCheckpoint> {
        self.audit.export(&self.db)
    }

    /// Signs a manifest with the named key (convenience for callers).
    pub fn sign(&self, manifest: Manifest, key: &str) -> Result<SignedManifest> {
        Ok(manifest.sign(&self.keys.load(key)?))
    }
}
