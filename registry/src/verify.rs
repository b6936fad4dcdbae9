//! Verification: a signed manifest checked against the trust policy, and
//! an indexed artifact checked against its manifest and its blobs. It is the
//! only way to the types of [`crate::verified`] that the runtime loads.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::Connection;

use crate::blobs::Blobs;
use crate::db::Db;
use crate::digest::digest;
use crate::error::{RegistryError, Result};
use crate::index::Row;
use crate::keys::PublicKey;
use crate::manifest::SignedManifest;
use crate::trust;
use crate::verified::VerifiedArtifact;

impl SignedManifest {
    /// The key that signed this manifest, checked: signed, the key id
    /// matches the key, and the signature verifies (`verify_strict`) over
    /// the canonical manifest. Whether that key is trusted is the trust
    /// policy's question ([`crate::Registry::verify`] asks both).
    pub fn signer(&self) -> Result<PublicKey> {
        let m = &self.manifest;
        let refuse = |key_id: &str, reason: String| RegistryError::Refused {
            artifact: m.reference(),
            key_id: key_id.to_string(),
            reason,
        };
        let Some(sig) = &self.signature else {
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
        Ok(key)
    }
}

/// Checks a signed manifest on `conn`: [`SignedManifest::signer`], and the
/// trust policy allows the key for the manifest's namespace. Returns the
/// key id.
pub(crate) fn signature(db: &Db, conn: &Connection, signed: &SignedManifest) -> Result<String> {
    let key = signed.signer()?;
    let m = &signed.manifest;
    trust::check(db, conn, &m.reference(), &key, m.namespace())
}

/// Verifies an index row: its manifest is what was published (digest, name,
/// version, kind) and well formed, `check_signature` accepts its signature
/// (see [`signature`]), and every blob hashes to its pinned digest.
pub(crate) fn row(
    row: Row,
    blobs: &Blobs,
    check_signature: impl FnOnce(&SignedManifest) -> Result<String>,
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
    let key_id = check_signature(&signed)?;
    let mut found = BTreeMap::new();
    for (role, d) in &m.blobs {
        let bytes = blobs.read(d).map_err(|_| {
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
        found.insert(role.clone(), Arc::new(bytes));
    }
    Ok(VerifiedArtifact::new(
        signed.manifest,
        s.digest.clone(),
        key_id,
        s.yanked,
        found,
    ))
}
