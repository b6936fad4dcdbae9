//! The index: which artifact versions the registry holds (name, version,
//! kind, manifest digest, signer, yanked), the aliases that point at them
//! and the history of each alias's moves. Rows only; what may be written
//! (verification, promotion) is decided by the callers.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::{RegistryError, Result};
use crate::manifest::{COMPONENT, Kind, Manifest};
use crate::reference::{Reference, Selector, check_name};
use crate::time::now_rfc3339;

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

/// An index row with its stored signed manifest (canonical JSON), unverified.
pub(crate) struct Row {
    pub(crate) summary: ArtifactSummary,
    pub(crate) manifest: String,
}

/// `(namespace, name)` of a checked `ns/name`.
pub(crate) fn split_name(name: &str) -> (&str, &str) {
    name.split_once('/').expect("names are checked")
}

fn rows(
    db: &Db,
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
    let mut stmt = conn.prepare(&sql).map_err(|e| db.err(e))?;
    stmt.query_map(args, |r| {
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
    .map_err(|e| db.err(e))
}

/// Resolves a reference on `conn` (the caller's connection or transaction):
/// a version, a digest, an alias, or the latest version that is not yanked.
pub(crate) fn resolve(db: &Db, conn: &Connection, reference: &Reference) -> Result<Row> {
    let (ns, name) = split_name(&reference.name);
    let missing = |what: String| {
        RegistryError::NotFound(format!(
            "{what} is not in the registry; `tensorlet list` shows what is there"
        ))
    };
    let mut found = match &reference.selector {
        Selector::Version(v) => rows(
            db,
            conn,
            "WHERE a.namespace = ?1 AND a.name = ?2 AND a.version = ?3",
            &[&ns, &name, &v.to_string()],
        )?,
        Selector::Digest(d) => rows(
            db,
            conn,
            "WHERE a.namespace = ?1 AND a.name = ?2 AND a.digest = ?3",
            &[&ns, &name, d],
        )?,
        Selector::Alias(alias) => {
            let Some(version) = alias_version(db, conn, ns, name, alias)? else {
                return Err(missing(format!("alias `{alias}` of {}", reference.name)));
            };
            rows(
                db,
                conn,
                "WHERE a.namespace = ?1 AND a.name = ?2 AND a.version = ?3",
                &[&ns, &name, &version],
            )?
        }
        Selector::Latest => {
            let all = rows(
                db,
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
    found.pop().ok_or_else(|| missing(reference.to_string()))
}

/// Every artifact version, sorted by name then version.
pub(crate) fn list(db: &Db) -> Result<Vec<ArtifactSummary>> {
    let mut all: Vec<ArtifactSummary> = rows(db, &db.lock(), "", &[])?
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
pub(crate) fn versions(db: &Db, name: &str) -> Result<Vec<semver::Version>> {
    check_name(name)?;
    let mut v: Vec<semver::Version> = list(db)?
        .into_iter()
        .filter(|s| s.name == name)
        .filter_map(|s| semver::Version::parse(&s.version).ok())
        .collect();
    v.sort();
    Ok(v)
}

/// The manifest digest of `ns/name@version`, if it is published.
pub(crate) fn version_digest(
    db: &Db,
    conn: &Connection,
    ns: &str,
    name: &str,
    version: &str,
) -> Result<Option<String>> {
    conn.query_row(
        "SELECT digest FROM artifacts WHERE namespace = ?1 AND name = ?2 AND version = ?3",
        params![ns, name, version],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| db.err(e))
}

/// Whether an artifact with this manifest digest is in the index.
pub(crate) fn holds(db: &Db, conn: &Connection, digest: &str) -> Result<bool> {
    conn.query_row(
        "SELECT id FROM artifacts WHERE digest = ?1",
        [digest],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|id| id.is_some())
    .map_err(|e| db.err(e))
}

/// Adds a version with its blob roles (the blobs are listed already).
pub(crate) fn insert(
    db: &Db,
    tx: &Transaction<'_>,
    m: &Manifest,
    digest: &str,
    envelope: &str,
    key_id: &str,
) -> Result<()> {
    let (ns, name) = split_name(&m.name);
    tx.execute(
        "INSERT INTO artifacts (namespace, name, version, kind, digest, manifest, key_id, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            ns,
            name,
            m.version,
            m.kind.as_str(),
            digest,
            envelope,
            key_id,
            now_rfc3339()
        ],
    )
    .map_err(|e| db.err(e))?;
    let id = tx.last_insert_rowid();
    for (role, d) in &m.blobs {
        tx.execute(
            "INSERT INTO artifact_blobs (artifact_id, role, digest) VALUES (?1, ?2, ?3)",
            params![id, role, d],
        )
        .map_err(|e| db.err(e))?;
    }
    Ok(())
}

/// Marks `ns/name@version` yanked.
pub(crate) fn yank(db: &Db, tx: &Transaction<'_>, summary: &ArtifactSummary) -> Result<()> {
    let (ns, name) = split_name(&summary.name);
    tx.execute(
        "UPDATE artifacts SET yanked = 1 WHERE namespace = ?1 AND name = ?2 AND version = ?3",
        params![ns, name, summary.version],
    )
    .map(drop)
    .map_err(|e| db.err(e))
}

/// `(ns/name, manifest digest)` of an artifact whose component has this
/// digest, not yanked ones first.
pub(crate) fn component_owner(db: &Db, component: &str) -> Result<Option<(String, String)>> {
    db.lock()
        .query_row(
            "SELECT a.namespace || '/' || a.name, a.digest FROM artifact_blobs b
             JOIN artifacts a ON a.id = b.artifact_id
             WHERE b.role = ?1 AND b.digest = ?2 ORDER BY a.yanked, a.id LIMIT 1",
            params![COMPONENT, component],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| db.err(e))
}

// ----- aliases ----------------------------------------------------------------

/// The version `alias` of `ns/name` points at.
pub(crate) fn alias_version(
    db: &Db,
    conn: &Connection,
    ns: &str,
    name: &str,
    alias: &str,
) -> Result<Option<String>> {
    conn.query_row(
        "SELECT version FROM aliases WHERE namespace = ?1 AND name = ?2 AND alias = ?3",
        params![ns, name, alias],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| db.err(e))
}

/// Points `alias` at `version`; `from` is where it pointed before. A move
/// to another version is added to the alias's history.
pub(crate) fn point_alias(
    db: &Db,
    tx: &Transaction<'_>,
    (ns, name, alias): (&str, &str, &str),
    from: Option<&str>,
    version: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO aliases (namespace, name, alias, version) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(namespace, name, alias) DO UPDATE SET version = excluded.version",
        params![ns, name, alias, version],
    )
    .map_err(|e| db.err(e))?;
    if from != Some(version) {
        tx.execute(
            "INSERT INTO alias_history (namespace, name, alias, version) VALUES (?1, ?2, ?3, ?4)",
            params![ns, name, alias, version],
        )
        .map_err(|e| db.err(e))?;
    }
    Ok(())
}

/// One move of an alias.
pub(crate) struct AliasHistory {
    /// Its row.
    pub(crate) id: i64,
    /// The version it moved to.
    pub(crate) version: String,
    /// Whether a rollback undid it.
    pub(crate) rolled_back: bool,
}

/// Every move of `alias`, oldest first (rolled-back ones included).
pub(crate) fn alias_history(
    db: &Db,
    tx: &Transaction<'_>,
    (ns, name, alias): (&str, &str, &str),
) -> Result<Vec<AliasHistory>> {
    let mut stmt = tx
        .prepare(
            "SELECT id, version, rolled_back FROM alias_history
             WHERE namespace = ?1 AND name = ?2 AND alias = ?3
             ORDER BY id",
        )
        .map_err(|e| db.err(e))?;
    stmt.query_map(params![ns, name, alias], |r| {
        Ok(AliasHistory {
            id: r.get(0)?,
            version: r.get(1)?,
            rolled_back: r.get(2)?,
        })
    })
    .and_then(Iterator::collect)
    .map_err(|e| db.err(e))
}

/// Undoes the move `latest` of `alias`: marks it rolled back and points the
/// alias at `previous`.
pub(crate) fn roll_back_alias(
    db: &Db,
    tx: &Transaction<'_>,
    (ns, name, alias): (&str, &str, &str),
    latest: i64,
    previous: &str,
) -> Result<()> {
    tx.execute(
        "UPDATE alias_history SET rolled_back = 1 WHERE id = ?1",
        [latest],
    )
    .map_err(|e| db.err(e))?;
    tx.execute(
        "UPDATE aliases SET version = ?4 WHERE namespace = ?1 AND name = ?2 AND alias = ?3",
        params![ns, name, alias, previous],
    )
    .map(drop)
    .map_err(|e| db.err(e))
}
