//! Artifacts: the list (search by name, filter by namespace and kind), one
//! artifact's versions with their verification and aliases with their
//! history, and one version's manifest.
//!
//! The list judges each signer by the trust policy alone (cheap); the pages
//! of an artifact verify each version fully (signature, trust, every blob's
//! digest) with [`Registry::inspect`], which audits nothing: looking is not
//! loading. With a remote registry, artifacts come from it and are judged by
//! the home's trust policy ([`Registry::check_signature`]); their blobs stay
//! on the remote.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use tensorlet_runtime::registry::{
    ArtifactSummary, Kind, Reference, Registry, RegistryError, SignedManifest, TrustEntry,
    check_name,
};

use super::{Layout, Params, blocking, bytes, page, short, when};
use crate::Console;
use crate::error::{ConsoleError, Result};
use crate::security::{self, Actions};

/// The path of an artifact page.
#[derive(Deserialize)]
pub struct NamePath {
    ns: String,
    name: String,
}

/// The path of a version page (`version` is a version, an alias or a digest).
#[derive(Deserialize)]
pub struct VersionPath {
    ns: String,
    name: String,
    version: String,
}

/// A signer as the trust policy sees it.
pub struct Signer {
    pub key_id: String,
    pub trusted: bool,
    pub note: String,
}

/// Judges `key_id` signing in `ns` by the trust policy alone.
fn signer(trust: &[TrustEntry], key_id: &str, ns: &str) -> Signer {
    let (trusted, note) = match trust.iter().find(|t| t.key_id == key_id) {
        None => (false, "not in the trust policy".to_string()),
        Some(t) if t.namespaces.iter().any(|n| n == ns || n == "*") => {
            (true, "trusted".to_string())
        }
        Some(t) => (
            false,
            format!("trusted only for {}", t.namespaces.join(", ")),
        ),
    };
    Signer {
        key_id: key_id.to_string(),
        trusted,
        note,
    }
}

/// One row of the list: an artifact with its versions.
pub struct Row {
    pub name: String,
    pub href: String,
    pub kind: String,
    pub versions: Vec<VersionLink>,
    pub aliases: Vec<(String, String)>,
    pub signers: Vec<Signer>,
    pub latest_digest: String,
}

pub struct VersionLink {
    pub version: String,
    pub href: String,
    pub yanked: bool,
}

#[derive(Template)]
#[template(path = "artifacts.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    q: String,
    namespace: String,
    kind: String,
    namespaces: Vec<String>,
    kinds: Vec<&'static str>,
    total: usize,
    source: String,
}

/// Where the artifacts come from: the home, or a remote judged by the home.
enum Source {
    Local(Arc<Registry>),
    Remote {
        remote: tensorlet_runtime::registry::client::Remote,
        local: Arc<Registry>,
    },
}

impl Source {
    fn open(console: &Console) -> Result<Source> {
        let local = console.registry()?;
        Ok(match console.remote()? {
            None => Source::Local(local),
            Some(remote) => Source::Remote { remote, local },
        })
    }

    fn local(&self) -> &Arc<Registry> {
        match self {
            Source::Local(r) | Source::Remote { local: r, .. } => r,
        }
    }

    fn label(&self) -> String {
        match self {
            Source::Local(r) => format!("the registry in {}", r.home().display()),
            Source::Remote { remote, .. } => format!(
                "the remote registry {}, judged by the local trust policy",
                remote.url()
            ),
        }
    }

    fn list(&self) -> Result<Vec<ArtifactSummary>> {
        Ok(match self {
            Source::Local(r) => r.list()?,
            Source::Remote { remote, .. } => remote.list()?,
        })
    }

    /// A version with its manifest, verified as far as this source allows.
    fn show(&self, reference: &Reference) -> Result<Shown> {
        match self {
            Source::Local(reg) => {
                let (summary, signed) = reg.show(reference)?;
                let (verdict, sizes) = match reg.inspect(reference) {
                    Ok(v) => {
                        let sizes = signed
                            .manifest
                            .blobs
                            .keys()
                            .map(|role| (role.clone(), v.blob(role).map_or(0, |b| b.len() as u64)))
                            .collect();
                        (
                            Verdict::ok(
                                "verified: signature, trust policy and every blob's digest",
                            ),
                            Some(sizes),
                        )
                    }
                    Err(e @ RegistryError::Refused { .. }) => (Verdict::refused(&e), None),
                    Err(e) => return Err(e.into()),
                };
                Ok(Shown {
                    summary,
                    signed,
                    verdict,
                    sizes,
                })
            }
            Source::Remote { remote, local } => {
                let (summary, signed) = remote.resolve(reference)?;
                let verdict = match local.check_signature(&signed) {
                    Ok(_) => Verdict::ok(
                        "signature trusted by the local policy (blobs are checked when pulled)",
                    ),
                    Err(e @ RegistryError::Refused { .. }) => Verdict::refused(&e),
                    Err(e) => return Err(e.into()),
                };
                Ok(Shown {
                    summary,
                    signed,
                    verdict,
                    sizes: None,
                })
            }
        }
    }
}

/// What verification said of a version.
pub struct Verdict {
    pub ok: bool,
    pub text: String,
}

impl Verdict {
    fn ok(text: &str) -> Self {
        Verdict {
            ok: true,
            text: text.to_string(),
        }
    }

    fn refused(e: &RegistryError) -> Self {
        let text = match e {
            RegistryError::Refused { reason, key_id, .. } => {
                format!("refused (key {key_id}): {reason}")
            }
            other => other.to_string(),
        };
        Verdict { ok: false, text }
    }
}

struct Shown {
    summary: ArtifactSummary,
    signed: SignedManifest,
    verdict: Verdict,
    /// Blob sizes by role, when the blobs are here and verified.
    sizes: Option<BTreeMap<String, u64>>,
}

/// The page of an artifact, `/artifacts/ns/name`.
pub fn href(name: &str) -> String {
    format!("/artifacts/{name}")
}

/// The page of a version, `/artifacts/ns/name/version`.
pub fn version_href(name: &str, version: &str) -> String {
    format!("/artifacts/{name}/{version}")
}

fn semver_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// `GET /artifacts?q=&namespace=&kind=`.
pub async fn list(State(console): State<Arc<Console>>, RawQuery(q): RawQuery) -> Result<Response> {
    let params = Params::parse(q.as_deref(), &["q", "namespace", "kind"])?;
    let kinds: Vec<&'static str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let kind = params.choice("kind", &kinds)?.unwrap_or("").to_string();
    let search = params.get("q").unwrap_or("").to_string();
    let namespace = params.get("namespace").unwrap_or("").to_string();
    let page_data = blocking(move || {
        let source = Source::open(&console)?;
        let all = source.list()?;
        let trust = source.local().trust_list()?;
        let namespaces: BTreeSet<String> = all
            .iter()
            .filter_map(|a| a.name.split_once('/').map(|(ns, _)| ns.to_string()))
            .collect();
        let mut by_name: BTreeMap<String, Vec<ArtifactSummary>> = BTreeMap::new();
        for a in all {
            let ns = a.name.split_once('/').map_or("", |(ns, _)| ns);
            if !namespace.is_empty() && ns != namespace {
                continue;
            }
            if !kind.is_empty() && a.kind.as_str() != kind {
                continue;
            }
            if !search.is_empty() && !a.name.to_lowercase().contains(&search.to_lowercase()) {
                continue;
            }
            by_name.entry(a.name.clone()).or_default().push(a);
        }
        let rows: Vec<Row> = by_name
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_by(|a, b| semver_order(&a.version, &b.version));
                let ns = name.split_once('/').map_or("", |(ns, _)| ns).to_string();
                let mut signers: Vec<Signer> = Vec::new();
                for v in &versions {
                    if !signers.iter().any(|s| s.key_id == v.key_id) {
                        signers.push(signer(&trust, &v.key_id, &ns));
                    }
                }
                let mut aliases: Vec<(String, String)> = versions
                    .iter()
                    .flat_map(|v| v.aliases.iter().map(|a| (a.clone(), v.version.clone())))
                    .collect();
                aliases.sort();
                let latest = versions
                    .iter()
                    .rev()
                    .find(|v| !v.yanked)
                    .or(versions.last());
                Row {
                    href: href(&name),
                    kind: versions
                        .last()
                        .map_or(String::new(), |v| v.kind.to_string()),
                    latest_digest: latest.map_or(String::new(), |v| v.digest.clone()),
                    versions: versions
                        .iter()
                        .map(|v| VersionLink {
                            version: v.version.clone(),
                            href: version_href(&name, &v.version),
                            yanked: v.yanked,
                        })
                        .collect(),
                    aliases,
                    signers,
                    name,
                }
            })
            .collect();
        Ok(ListPage {
            layout: Layout::new("Artifacts", "artifacts"),
            total: rows.iter().map(|r| r.versions.len()).sum(),
            rows,
            q: search,
            namespace,
            kind,
            namespaces: namespaces.into_iter().collect(),
            kinds,
            source: source.label(),
        })
    })
    .await?;
    page(&page_data)
}

/// One version in an artifact's table.
pub struct VersionRow {
    pub version: String,
    pub href: String,
    pub kind: String,
    pub digest: String,
    pub size: String,
    pub signer: Signer,
    pub verdict: Verdict,
    pub yanked: bool,
    pub created: String,
    pub aliases: Vec<String>,
}

/// An alias, where it points and how it got there.
pub struct AliasView {
    pub alias: String,
    pub version: String,
    pub history: Vec<AliasMoveView>,
}

pub struct AliasMoveView {
    pub seq: i64,
    pub time: String,
    pub action: String,
    pub from: String,
    pub to: String,
    pub by: String,
}

#[derive(Template)]
#[template(path = "artifact.html")]
struct NamePage {
    layout: Layout,
    name: String,
    kind: String,
    versions: Vec<VersionRow>,
    aliases: Vec<AliasView>,
    actions: Actions,
    remote: bool,
    is_model: bool,
}

fn checked_name(ns: &str, name: &str) -> Result<String> {
    let full = format!("{ns}/{name}");
    check_name(&full).map_err(|_| {
        ConsoleError::NotFound(format!(
            "there is no artifact `{full}`: that is not an artifact name"
        ))
    })?;
    Ok(full)
}

/// `GET /artifacts/{ns}/{name}`.
pub async fn name(
    State(console): State<Arc<Console>>,
    Path(p): Path<NamePath>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    Params::parse(q.as_deref(), &[])?;
    let name = checked_name(&p.ns, &p.name)?;
    let data = blocking(move || {
        let source = Source::open(&console)?;
        let reg = source.local().clone();
        let mut versions: Vec<ArtifactSummary> = source
            .list()?
            .into_iter()
            .filter(|a| a.name == name)
            .collect();
        if versions.is_empty() {
            return Err(ConsoleError::NotFound(format!(
                "there is no artifact `{name}` in {}",
                source.label()
            )));
        }
        versions.sort_by(|a, b| semver_order(&b.version, &a.version));
        let trust = reg.trust_list()?;
        let ns = p.ns.clone();
        let mut rows = Vec::new();
        for v in &versions {
            let reference = Reference::parse(&v.reference())?;
            let shown = source.show(&reference)?;
            rows.push(VersionRow {
                href: version_href(&name, &v.version),
                version: v.version.clone(),
                kind: v.kind.to_string(),
                digest: v.digest.clone(),
                size: shown
                    .sizes
                    .as_ref()
                    .map_or("-".into(), |s| bytes(s.values().sum())),
                signer: signer(&trust, &v.key_id, &ns),
                verdict: shown.verdict,
                yanked: v.yanked,
                created: when(&v.created),
                aliases: v.aliases.clone(),
            });
        }
        let mut aliases: Vec<AliasView> = versions
            .iter()
            .flat_map(|v| {
                v.aliases.iter().map(|a| AliasView {
                    alias: a.clone(),
                    version: v.version.clone(),
                    history: Vec::new(),
                })
            })
            .collect();
        aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
        if matches!(source, Source::Local(_)) {
            alias_history(&reg, &name, &mut aliases)?;
        }
        Ok(NamePage {
            layout: Layout::new(name.clone(), "artifacts"),
            kind: versions[0].kind.to_string(),
            is_model: versions[0].kind == Kind::Model,
            versions: rows,
            aliases,
            actions: security::actions(&console, &reg),
            remote: matches!(source, Source::Remote { .. }),
            name,
        })
    })
    .await?;
    page(&data)
}

/// Fills in each alias's moves from the audit log (newest first), and adds
/// aliases that moved but no longer point anywhere in the list.
fn alias_history(reg: &Registry, name: &str, aliases: &mut Vec<AliasView>) -> Result<()> {
    let node = reg.node_key().key_id();
    let prefix = format!("{name}@");
    for e in reg.audit_log()?.into_iter().rev() {
        if !matches!(e.action.as_str(), "promote" | "rollback" | "alias.set") {
            continue;
        }
        let Some(alias) = e.subject.strip_prefix(&prefix) else {
            continue;
        };
        let mv = AliasMoveView {
            seq: e.seq,
            time: when(&e.time),
            action: e.action.clone(),
            from: super::text(&e.detail["from"]),
            to: super::text(&e.detail["to"]),
            by: format!("node {node}"),
        };
        match aliases.iter_mut().find(|a| a.alias == alias) {
            Some(a) => a.history.push(mv),
            None => aliases.push(AliasView {
                alias: alias.to_string(),
                version: "-".into(),
                history: vec![mv],
            }),
        }
    }
    Ok(())
}

pub struct BlobRow {
    pub role: String,
    pub digest: String,
    pub size: String,
}

pub struct DependsRow {
    pub role: String,
    pub reference: String,
    pub href: String,
    pub digest: String,
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    layout: Layout,
    name: String,
    name_href: String,
    reference: String,
    version: String,
    kind: String,
    digest: String,
    key_id: String,
    signer: Signer,
    verdict: Verdict,
    yanked: bool,
    created: String,
    aliases: Vec<String>,
    blobs: Vec<BlobRow>,
    total_size: String,
    depends: Vec<DependsRow>,
    config: String,
    lineage: String,
    manifest: String,
    lineage_href: Option<String>,
    actions: Actions,
}

/// `GET /artifacts/{ns}/{name}/{version}`.
pub async fn version(
    State(console): State<Arc<Console>>,
    Path(p): Path<VersionPath>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    Params::parse(q.as_deref(), &[])?;
    let name = checked_name(&p.ns, &p.name)?;
    let reference = Reference::parse(&format!("{name}@{}", p.version)).map_err(|_| {
        ConsoleError::NotFound(format!(
            "there is no version `{}` of {name}: give a version, an alias or a digest",
            p.version
        ))
    })?;
    let data = blocking(move || {
        let source = Source::open(&console)?;
        let reg = source.local().clone();
        let shown = source.show(&reference)?;
        let s = &shown.summary;
        let m = &shown.signed.manifest;
        let trust = reg.trust_list()?;
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let manifest: serde_json::Value =
            serde_json::from_slice(&shown.signed.to_canonical()).unwrap_or_default();
        let blobs: Vec<BlobRow> = m
            .blobs
            .iter()
            .map(|(role, d)| BlobRow {
                role: role.clone(),
                digest: d.clone(),
                size: shown
                    .sizes
                    .as_ref()
                    .and_then(|z| z.get(role))
                    .map_or("-".into(), |n| bytes(*n)),
            })
            .collect();
        Ok(VersionPage {
            layout: Layout::new(s.reference(), "artifacts"),
            name_href: href(&name),
            reference: s.reference(),
            version: s.version.clone(),
            kind: s.kind.to_string(),
            digest: s.digest.clone(),
            key_id: s.key_id.clone(),
            signer: signer(&trust, &s.key_id, &p.ns),
            yanked: s.yanked,
            created: when(&s.created),
            aliases: s.aliases.clone(),
            total_size: shown
                .sizes
                .as_ref()
                .map_or("-".into(), |z| bytes(z.values().sum())),
            blobs,
            depends: m
                .depends
                .iter()
                .map(|(role, pin)| DependsRow {
                    role: role.clone(),
                    href: version_href(
                        pin.name(),
                        pin.reference.rsplit_once('@').map_or("", |(_, v)| v),
                    ),
                    reference: pin.reference.clone(),
                    digest: pin.digest.clone(),
                })
                .collect(),
            config: pretty(&m.config),
            lineage: pretty(&m.lineage),
            manifest: pretty(&manifest),
            lineage_href: (matches!(source, Source::Local(_))
                && matches!(s.kind, Kind::Model | Kind::Pipeline))
            .then(|| format!("/lineage/{}/{}", s.name, s.version)),
            verdict: shown.verdict,
            actions: security::actions(&console, &reg),
            name,
        })
    })
    .await?;
    page(&data)
}

/// `short` for templates.
pub fn short_digest(d: &str) -> String {
    short(d)
}
