//! Publishing: a signed artifact and its blobs enter the registry only when
//! the manifest is well formed, its signature verifies and the trust policy
//! allows the key for its namespace, every pinned blob is given and hashes
//! right, every dependency is present, and the version is new.
//!
//! Crash safety: the blobs are written durably before the transaction that
//! adds the index row, its blob rows and its audit entry commits, so a
//! publish is either wholly there or not at all.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::audit::AuditLog;
use crate::blobs::{self, Blobs};
use crate::db::Db;
use crate::digest::digest;
use crate::error::{RegistryError, Result};
use crate::index::{self, Published, split_name};
use crate::keys::PublicKey;
use crate::manifest::SignedManifest;
use crate::reference::{check_name, check_version};
use crate::{trust, verify};

/// Checks, before any long work, what publishing `name@version` signed by
/// `key` would check: the name and version are well formed, the trust
/// policy allows the key for the namespace, and the version is not
/// published yet (`None` stands for the next version, new by construction).
pub(crate) fn check(db: &Db, key: &PublicKey, name: &str, version: Option<&str>) -> Result<()> {
    check_name(name)?;
    let artifact = match version {
        Some(v) => {
            check_version(v)?;
            format!("{name}@{v}")
        }
        None => name.to_string(),
    };
    let (ns, n) = split_name(name);
    let conn = db.lock();
    trust::check(db, &conn, &artifact, key, ns)?;
    if let Some(v) = version
        && let Some(digest) = index::version_digest(db, &conn, ns, n, v)?
    {
        return Err(RegistryError::AlreadyExists { artifact, digest });
    }
    Ok(())
}

/// Stores a signed artifact with its blobs (in any order) after the checks
/// above; audited as `action` with `detail` and the digest, kind and key.
pub(crate) fn store(
    db: &Db,
    blob_store: &Blobs,
    audit: &AuditLog,
    signed: &SignedManifest,
    blobs: &[Vec<u8>],
    action: &str,
    mut detail: Value,
) -> Result<Published> {
    let m = &signed.manifest;
    m.validate()?;
    let key_id = verify::signature(db, &db.lock(), signed)?;
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
        blob_store.write(d, given[d], true)?;
    }
    let manifest_digest = m.digest();
    let envelope = String::from_utf8(signed.to_canonical()).expect("JSON is UTF-8");
    let (ns, name) = split_name(&m.name);
    let reference = m.reference();
    audit.write(db, |tx| {
        if let Some(digest) = index::version_digest(db, tx, ns, name, &m.version)? {
            return Err(RegistryError::AlreadyExists {
                artifact: reference.clone(),
                digest,
            });
        }
        for (role, pin) in &m.depends {
            if !index::holds(db, tx, &pin.digest)? {
                return Err(RegistryError::NotFound(format!(
                    "{reference} depends on {} ({}) as its {role}, which is not in this \
                     registry; publish that first",
                    pin.reference, pin.digest
                )));
            }
        }
        for d in m.blobs.values() {
            blobs::list(tx, d, given[d].len()).map_err(|e| db.err(e))?;
        }
        index::insert(db, tx, m, &manifest_digest, &envelope, &key_id)?;
        if let Value::Object(o) = &mut detail {
            o.insert("digest".into(), json!(manifest_digest));
            o.insert("kind".into(), json!(m.kind));
            o.insert("key_id".into(), json!(key_id));
        }
        audit.append(db, tx, action, &reference, detail)?;
        Ok(Published {
            reference: reference.clone(),
            digest: manifest_digest.clone(),
            key_id: key_id.clone(),
        })
    })
}
