//! Promotion: moving an alias (`alias set`, `promote`, `rollback`) to a
//! version that verifies against the trust policy, as it would have to when
//! served. A refusal is audited and moves nothing; every move is audited
//! and kept in the alias's history, which rollback walks back along.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::AuditLog;
use crate::blobs::Blobs;
use crate::db::Db;
use crate::error::{RegistryError, Result};
use crate::index::{self, AliasHistory, ArtifactSummary, split_name};
use crate::reference::{Reference, Selector, check_alias, check_name, check_version};
use crate::verify;

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

impl AliasMove {
    /// The move for people, after `verb` (`promoted`, `rolled back`):
    /// `promoted acme/m@production: 1.0.0 -> 1.1.0 (sha256:…)`, or that the
    /// alias already pointed there.
    pub fn describe(&self, verb: &str) -> String {
        match &self.from {
            Some(from) if from == &self.to => {
                format!("{}@{} already points at {}", self.name, self.alias, self.to)
            }
            from => format!(
                "{verb} {}@{}: {} -> {} ({})",
                self.name,
                self.alias,
                from.as_deref().unwrap_or("(unset)"),
                self.to,
                self.digest
            ),
        }
    }
}

/// What moving aliases needs: the database, the blobs to verify and the log.
#[derive(Clone, Copy)]
pub(crate) struct Promotion<'r> {
    pub(crate) db: &'r Db,
    pub(crate) blobs: &'r Blobs,
    pub(crate) audit: &'r AuditLog,
}

impl Promotion<'_> {
    /// Resolves `reference` on `conn` (the caller's transaction) and
    /// verifies it there: what an alias may be pointed at. Returns its summary.
    fn target(&self, conn: &Connection, reference: &Reference) -> Result<ArtifactSummary> {
        let row = index::resolve(self.db, conn, reference)?;
        let summary = row.summary.clone();
        verify::row(row, self.blobs, |signed| {
            verify::signature(self.db, conn, signed)
        })?;
        Ok(summary)
    }

    /// Points `alias` of `ns/name` at `version`; returns the version it
    /// pointed at before. Audited as `alias.set` (a refusal as `alias.refused`).
    pub(crate) fn alias_set(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<Option<String>> {
        check_name(name)?;
        check_alias(alias)?;
        let v = check_version(version)?;
        let (ns, n) = split_name(name);
        let reference = Reference {
            name: name.to_string(),
            selector: Selector::Version(v),
        };
        let (db, audit) = (self.db, self.audit);
        audit
            .write(db, |tx| {
                let target = self.target(tx, &reference)?;
                let previous = index::alias_version(db, tx, ns, n, alias)?;
                index::point_alias(db, tx, (ns, n, alias), previous.as_deref(), &target.version)?;
                audit.append(
                    db,
                    tx,
                    "alias.set",
                    &format!("{name}@{alias}"),
                    json!({"from": previous, "to": target.version, "digest": target.digest}),
                )?;
                Ok(previous)
            })
            .map_err(|e| audit.refused(db, e, "alias.refused"))
    }

    /// Points `alias` at the version `reference` names. Audited as
    /// `promote` (a refusal as `promote.refused`).
    pub(crate) fn promote(&self, reference: &Reference, alias: &str) -> Result<AliasMove> {
        check_alias(alias)?;
        let (db, audit) = (self.db, self.audit);
        audit
            .write(db, |tx| {
                let target = self.target(tx, reference)?;
                let name = target.name.clone();
                let (ns, n) = split_name(&name);
                let from = index::alias_version(db, tx, ns, n, alias)?;
                index::point_alias(db, tx, (ns, n, alias), from.as_deref(), &target.version)?;
                let m = AliasMove {
                    name: name.clone(),
                    alias: alias.to_string(),
                    from,
                    to: target.version,
                    digest: target.digest,
                };
                audit.append(
                    db,
                    tx,
                    "promote",
                    &format!("{name}@{alias}"),
                    json!({"from": m.from, "to": m.to, "digest": m.digest}),
                )?;
                Ok(m)
            })
            .map_err(|e| audit.refused(db, e, "promote.refused"))
    }

    /// Moves `alias` of `name` back to the version it pointed at before its
    /// latest move; rolling back again goes further back. Audited as
    /// `rollback` (a refusal as `rollback.refused`).
    pub(crate) fn rollback(&self, name: &str, alias: &str) -> Result<AliasMove> {
        check_name(name)?;
        check_alias(alias)?;
        let (ns, n) = split_name(name);
        let (db, audit) = (self.db, self.audit);
        audit
            .write(db, |tx| {
                let Some(from) = index::alias_version(db, tx, ns, n, alias)? else {
                    return Err(RegistryError::NotFound(format!(
                        "{name}@{alias} is not set, so there is nothing to roll back; `tensorlet \
                         list` shows the aliases"
                    )));
                };
                let history = index::alias_history(db, tx, (ns, n, alias))?;
                // The moves still in effect, oldest first: the latest is where
                // the alias points now, the one before it is where it goes back to.
                let standing: Vec<&AliasHistory> =
                    history.iter().filter(|h| !h.rolled_back).collect();
                let [.., before, now] = standing.as_slice() else {
                    return Err(RegistryError::NotFound(no_earlier_version(
                        name, alias, &from, &history,
                    )));
                };
                let (latest, previous) = (now.id, before.version.clone());
                let semver = check_version(&previous)?;
                let digest = self
                    .target(
                        tx,
                        &Reference {
                            name: name.to_string(),
                            selector: Selector::Version(semver),
                        },
                    )?
                    .digest;
                index::roll_back_alias(db, tx, (ns, n, alias), latest, &previous)?;
                let m = AliasMove {
                    name: name.to_string(),
                    alias: alias.to_string(),
                    from: Some(from),
                    to: previous,
                    digest,
                };
                audit.append(
                    db,
                    tx,
                    "rollback",
                    &format!("{name}@{alias}"),
                    json!({"from": m.from, "to": m.to, "digest": m.digest}),
                )?;
                Ok(m)
            })
            .map_err(|e| audit.refused(db, e, "rollback.refused"))
    }
}

/// Why `name@alias`, now at `current`, cannot be rolled back, from its whole
/// history (moves since rolled back included).
fn no_earlier_version(name: &str, alias: &str, current: &str, history: &[AliasHistory]) -> String {
    let mut others: Vec<&str> = Vec::new();
    for h in history {
        if h.version != current && !others.contains(&h.version.as_str()) {
            others.push(&h.version);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_says_where_the_alias_went_from() {
        let mut m = AliasMove {
            name: "acme/m".into(),
            alias: "production".into(),
            from: Some("1.0.0".into()),
            to: "1.1.0".into(),
            digest: "sha256:ab".into(),
        };
        assert_eq!(
            m.describe("promoted"),
            "promoted acme/m@production: 1.0.0 -> 1.1.0 (sha256:ab)"
        );
        m.from = None;
        assert_eq!(
            m.describe("rolled back"),
            "rolled back acme/m@production: (unset) -> 1.1.0 (sha256:ab)"
        );
        m.from = Some("1.1.0".into());
        assert_eq!(
            m.describe("promoted"),
            "acme/m@production already points at 1.1.0"
        );
    }
}
