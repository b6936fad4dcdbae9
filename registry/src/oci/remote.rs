use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::layout::Layout;
use super::transport::Transport;
pub use super::transport::{ENV_CA_FILE, ENV_PASSWORD, ENV_PLAIN_HTTP, ENV_USERNAME, OciSettings};

use super::format::*;
use crate::digest::{check_digest, digest};
use crate::error::{RegistryError, Result};
use crate::manifest::{COMPONENT, Signature, SignedManifest};
use crate::reference::{Reference, Selector, check_alias, check_name, check_version};
use crate::registry::Registry;
use crate::verified::VerifiedArtifact;

/// An OCI location: `oci://host[:port][/prefix]`, or an OCI image layout
/// directory, `oci-layout:DIR`. Artifact `ns/name` lives in repository
/// `[prefix/]ns/name`.
pub struct OciRemote {
    host: String,
    prefix: String,
    transport: Wire,
}

/// Where an [`OciRemote`]'s manifests and blobs are: a registry, or files.
enum Wire {
    Registry(Box<Transport>),
    Layout(Layout),
}

impl Wire {
    fn head(&self, what: &str, repo: &str, selector: &str) -> Result<Option<String>> {
        match self {
            Wire::Registry(t) => t.head(what, repo, selector),
            Wire::Layout(l) => l.head(repo, selector),
        }
    }

    fn manifest(&self, what: &str, repo: &str, selector: &str) -> Result<Vec<u8>> {
        match self {
            Wire::Registry(t) => t.manifest(what, repo, selector),
            Wire::Layout(l) => l.manifest(what, repo, selector),
        }
    }

    fn blob(&self, what: &str, repo: &str, digest: &str) -> Result<Vec<u8>> {
        match self {
            Wire::Registry(t) => t.blob(what, repo, digest),
            Wire::Layout(l) => l.blob(what, digest),
        }
    }

    fn blob_exists(&self, what: &str, repo: &str, digest: &str) -> Result<bool> {
        match self {
            Wire::Registry(t) => t.blob_exists(what, repo, digest),
            Wire::Layout(l) => Ok(l.blob_exists(digest)),
        }
    }

    fn put_blob(&self, what: &str, repo: &str, digest: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Wire::Registry(t) => t.put_blob(what, repo, digest, bytes),
            Wire::Layout(l) => l.put_blob(digest, bytes),
        }
    }

    fn put_manifest(&self, what: &str, repo: &str, tag: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Wire::Registry(t) => t.put_manifest(what, repo, tag, bytes),
            Wire::Layout(l) => l.put_manifest(repo, tag, IMAGE_MANIFEST, bytes),
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Wire::Registry(t) => t.scheme(),
            Wire::Layout(_) => "file",
        }
    }
}

impl std::fmt::Debug for OciRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OciRemote({})", self.url())
    }
}

/// What an OCI reference selects in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OciSelector {
    /// A tag: a semantic version or an alias.
    Tag(String),
    /// An OCI manifest digest.
    Digest(String),
}

impl std::fmt::Display for OciSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OciSelector::Tag(t) => write!(f, ":{t}"),
            OciSelector::Digest(d) => write!(f, "@{d}"),
        }
    }
}

impl OciSelector {
    fn as_str(&self) -> &str {
        match self {
            OciSelector::Tag(t) | OciSelector::Digest(t) => t,
        }
    }
}

/// A parsed `oci://host[:port][/prefix]/ns/name[:tag|@sha256:…]`.
#[derive(Debug)]
pub struct OciReference {
    /// The registry and prefix.
    pub remote: OciRemote,
    /// The tensorlet artifact name, `ns/name` (the repository's last two segments).
    pub name: String,
    /// The tag or digest, when one was given.
    pub selector: Option<OciSelector>,
}

fn path_segment_ok(s: &str) -> bool {
    // OCI distribution: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
        && !s.contains("..")
        && !s.contains("___")
}

fn host_ok(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'))
}

/// A tag as OCI allows it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn tag_ok(t: &str) -> bool {
    t.len() <= 128
        && t.as_bytes()
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The scheme of an OCI image layout directory: `oci-layout:DIR`.
pub const LAYOUT: &str = "oci-layout:";

fn bad_location(s: &str, why: &str) -> RegistryError {
    RegistryError::Invalid(format!(
        "`{s}` is not an OCI location: {why}; write it like `oci://registry.local:5000/acme` \
         (an artifact: `oci://registry.local:5000/acme/iris-model:1.2.0`)"
    ))
}

impl OciRemote {
    /// A client for `oci://host[:port][/prefix]`, configured from the
    /// environment ([`OciSettings::from_env`]).
    pub fn new(location: &str) -> Result<Self> {
        Self::with_settings(location, &OciSettings::from_env())
    }

    /// A client for `oci://host[:port][/prefix]` with explicit settings, or
    /// for the OCI image layout in `oci-layout:DIR`.
    pub fn with_settings(location: &str, settings: &OciSettings) -> Result<Self> {
        if let Some(dir) = location.strip_prefix(LAYOUT) {
            let dir = dir.trim_end_matches('/');
            if dir.is_empty() {
                return Err(bad_location(location, "the directory is missing"));
            }
            return Ok(OciRemote {
                host: dir.to_string(),
                prefix: String::new(),
                transport: Wire::Layout(Layout::new(std::path::Path::new(dir))),
            });
        }
        let rest = location
            .strip_prefix("oci://")
            .ok_or_else(|| bad_location(location, "it does not start with `oci://`"))?;
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !host_ok(host) {
            return Err(bad_location(
                location,
                "the registry host is missing or malformed",
            ));
        }
        if !prefix.is_empty() && !prefix.split('/').all(path_segment_ok) {
            return Err(bad_location(
                location,
                "repository path segments are lowercase letters, digits, `.`, `_` and `-`",
            ));
        }
        Ok(OciRemote {
            host: host.to_string(),
            prefix: prefix.to_string(),
            transport: Wire::Registry(Box::new(Transport::new(host, settings)?)),
        })
    }

    /// `oci://host[/prefix]`, or `oci-layout:DIR`.
    pub fn url(&self) -> String {
        if let Wire::Layout(l) = &self.transport {
            format!("{LAYOUT}{}", l.dir().display())
        } else if self.prefix.is_empty() {
            format!("oci://{}", self.host)
        } else {
            format!("oci://{}/{}", self.host, self.prefix)
        }
    }

    /// `http` or `https`: how this registry is reached (`file` for a layout).
    pub fn scheme(&self) -> &'static str {
        self.transport.scheme()
    }

    /// The repository that holds artifact `ns/name`.
    pub fn repository(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// `oci://host/repository` (`oci-layout:DIR/repository`) of artifact
    /// `ns/name`, for messages.
    pub fn location(&self, name: &str) -> String {
        match &self.transport {
            Wire::Layout(_) => format!("{LAYOUT}{}/{}", self.host, self.repository(name)),
            Wire::Registry(_) => format!("oci://{}/{}", self.host, self.repository(name)),
        }
    }

    /// Every `(ns/name, tag)` an OCI image layout holds; an error for a
    /// registry (which lists no repositories).
    pub fn layout_tags(&self) -> Result<Vec<(String, String)>> {
        match &self.transport {
            Wire::Layout(l) => l.tags(),
            Wire::Registry(_) => Err(RegistryError::Invalid(format!(
                "{} is a registry, not an OCI image layout",
                self.url()
            ))),
        }
    }

    /// The OCI manifest digest a tag (or digest) of `ns/name` resolves to,
    /// or `None` when the repository has no such tag. One `HEAD` request: this
    /// is how followers notice that an alias moved.
    pub fn head(&self, name: &str, selector: &OciSelector) -> Result<Option<String>> {
        let what = format!("{}{selector}", self.location(name));
        let d = self
            .transport
            .head(&what, &self.repository(name), selector.as_str())?;
        match d {
            Some(d) if check_digest(&d).is_err() => Err(RegistryError::Remote {
                url: self.url(),
                message: format!("{what}: the registry answered with a malformed digest `{d}`"),
            }),
            d => Ok(d),
        }
    }

    /// An OCI manifest of `ns/name` by tag or digest: (digest, bytes).
    fn manifest(&self, name: &str, selector: &OciSelector) -> Result<(String, Vec<u8>)> {
        let what = format!("{}{selector}", self.location(name));
        let bytes = self
            .transport
            .manifest(&what, &self.repository(name), selector.as_str())?;
        let d = digest(&bytes);
        if let OciSelector::Digest(want) = selector
            && &d != want
        {
            return Err(RegistryError::Refused {
                artifact: what,
                key_id: "none".into(),
                reason: format!("the registry served a manifest that hashes to {d}"),
            });
        }
        Ok((d, bytes))
    }

    /// A blob of `ns/name`, checked against its digest.
    pub fn blob(&self, name: &str, d: &str) -> Result<Vec<u8>> {
        check_digest(d)?;
        let what = format!("blob {d} of {}", self.location(name));
        let bytes = self.transport.blob(&what, &self.repository(name), d)?;
        if digest(&bytes) != d {
            return Err(RegistryError::Refused {
                artifact: what,
                key_id: "none".into(),
                reason: format!(
                    "{} served bytes that do not hash to the digest asked for",
                    self.host
                ),
            });
        }
        Ok(bytes)
    }

    /// Uploads a blob to the repository of `ns/name` unless it is there.
    /// Returns whether it was uploaded.
    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        let repo = self.repository(name);
        let d = digest(bytes);
        let what = format!("blob {d} of {}", self.location(name));
        if self.transport.blob_exists(&what, &repo, &d)? {
            return Ok(false);
        }
        self.transport.put_blob(&what, &repo, &d, bytes)?;
        Ok(true)
    }

    fn put_manifest(&self, name: &str, tag: &str, bytes: &[u8]) -> Result<()> {
        let what = format!("{}:{tag}", self.location(name));
        self.transport
            .put_manifest(&what, &self.repository(name), tag, bytes)
    }
}

impl OciReference {
    /// Parses `oci://host[:port][/prefix]/ns/name[:tag|@sha256:…]`, or
    /// `oci-layout:DIR/ns/name[:tag|@sha256:…]`. The last two path segments
    /// are the artifact's `ns/name`.
    pub fn parse(s: &str) -> Result<Self> {
        let (scheme, rest) = match s.strip_prefix(LAYOUT) {
            Some(rest) => (LAYOUT, rest),
            None => (
                "oci://",
                s.strip_prefix("oci://").ok_or_else(|| {
                    bad_location(s, "it does not start with `oci://` (or `oci-layout:`)")
                })?,
            ),
        };
        let (path, selector) = if let Some((p, d)) = rest.split_once('@') {
            check_digest(d).map_err(|_| bad_location(s, "the part after `@` is not a digest"))?;
            (p, Some(OciSelector::Digest(d.to_string())))
        } else {
            let last_slash = rest.rfind('/').unwrap_or(0);
            match rest[last_slash..].rfind(':') {
                Some(i) => {
                    let tag = &rest[last_slash + i + 1..];
                    if !tag_ok(tag) {
                        return Err(bad_location(s, "the tag is malformed"));
                    }
                    (
                        &rest[..last_slash + i],
                        Some(OciSelector::Tag(tag.to_string())),
                    )
                }
                None => (rest, None),
            }
        };
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 3 {
            return Err(bad_location(
                s,
                "it names no repository `ns/name` after the registry host",
            ));
        }
        let name = segments[segments.len() - 2..].join("/");
        check_name(&name).map_err(|_| {
            bad_location(
                s,
                &format!(
                    "the repository must end in a tensorlet artifact name, and `{name}` is not one"
                ),
            )
        })?;
        let base = segments[..segments.len() - 2].join("/");
        let remote = OciRemote::new(&format!("{scheme}{base}"))?;
        Ok(OciReference {
            remote,
            name,
            selector,
        })
    }
}

impl std::fmt::Display for OciReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.remote.location(&self.name))?;
        if let Some(s) = &self.selector {
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pushed {
    /// `ns/name@version`.
    pub reference: String,
    /// `oci://host/repo:version`.
    pub location: String,
    /// The OCI manifest digest.
    pub oci_digest: String,
    /// The tensorlet manifest digest.
    pub digest: String,
    /// Tags pointed at it (the version and any aliases).
    pub tags: Vec<String>,
    /// Every artifact pushed or found already present, dependencies first:
    /// `(oci://… location, uploaded?)`.
    pub artifacts: Vec<(String, bool)>,
}

/// The imports and exports a component declares at its top level, as
/// interface names (`wasi:cli/environment@0.2.0`), for the Wasm config.
fn component_world(bytes: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    use wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    let mut is_component = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    is_component = encoding == wasmparser::Encoding::Component;
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(r) if depth == 1 => {
                for i in r {
                    let i = i.ok()?;
                    if matches!(
                        i.ty,
                        ComponentTypeRef::Instance(_) | ComponentTypeRef::Func(_)
                    ) {
                        imports.push(i.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for e in r {
                    let e = e.ok()?;
                    if matches!(
                        e.kind,
                        ComponentExternalKind::Instance | ComponentExternalKind::Func
                    ) {
                        exports.push(e.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    is_component.then_some((imports, exports))
}

fn layer_type(role: &str) -> &'static str {
    if role.ends_with(".safetensors") {
        SAFETENSORS_LAYER
    } else {
        BLOB_LAYER
    }
}

/// Builds the OCI manifest of a verified artifact, returning it with the
/// config and layer contents to upload (in upload order).
fn build(
    artifact: &VerifiedArtifact,
    signature: &Signature,
    created: &str,
    depends: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let m = artifact.manifest();
    let manifest_bytes = m.canonical_bytes();
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_TITLE.to_string(), m.name.clone());
    annotations.insert(ANNOTATION_VERSION.to_string(), m.version.clone());
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    );
    annotations.insert(
        ANNOTATION_SIGNATURE.to_string(),
        serde_json::to_string(signature).expect("JSON"),
    );
    if !depends.is_empty() {
        annotations.insert(
            ANNOTATION_DEPENDS.to_string(),
            serde_json::to_string(depends).expect("JSON"),
        );
    }
    let blob = |role: &str| -> Result<Vec<u8>> {
        artifact.blob(role).map(<[u8]>::to_vec).ok_or_else(|| {
            RegistryError::Invalid(format!("{} has no blob `{role}`", m.reference()))
        })
    };
    let mut contents: Vec<Vec<u8>> = Vec::new();
    let mut layers = Vec::new();
    let config_bytes;
    let config_type;
    if m.kind.is_plugin() {
        // CNCF Wasm OCI artifact: the component first (and only, for plugins
        // this registry publishes), the tensorlet manifest as an annotation.
        let component = blob(COMPONENT)?;
        let (imports, exports) = component_world(&component).ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{}'s `{COMPONENT}` blob is not a WebAssembly component",
                m.reference()
            ))
        })?;
        let mut d = Descriptor::of(WASM_LAYER, &component);
        d.annotations
            .insert(ANNOTATION_TITLE.to_string(), COMPONENT.to_string());
        layers.push(d);
        contents.push(component);
        for role in m.blobs.keys().filter(|r| *r != COMPONENT) {
            let bytes = blob(role)?;
            let mut d = Descriptor::of(layer_type(role), &bytes);
            d.annotations
                .insert(ANNOTATION_TITLE.to_string(), role.clone());
            layers.push(d);
            contents.push(bytes);
        }
        annotations.insert(
            ANNOTATION_MANIFEST.to_string(),
            String::from_utf8(manifest_bytes).expect("JSON is UTF-8"),
        );
        config_type = WASM_CONFIG;
        config_bytes = crate::canonical::of(&json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            "component": {"imports": imports, "exports": exports, "target": null},
        }));
    } else {
        let mut d = Descriptor::of(MANIFEST_LAYER, &manifest_bytes);
        d.annotations
            .insert(ANNOTATION_TITLE.to_string(), "manifest.json".to_string());
        layers.push(d);
        contents.push(manifest_bytes);
        for role in m.blobs.keys() {
            let bytes = blob(role)?;
            let mut d = Descriptor::of(layer_type(role), &bytes);
            d.annotations
                .insert(ANNOTATION_TITLE.to_string(), role.clone());
            layers.push(d);
            contents.push(bytes);
        }
        config_type = TENSORLET_CONFIG;
        config_bytes = crate::canonical::of(&json!({
            "name": m.name, "version": m.version, "kind": m.kind, "digest": artifact.digest(),
        }));
    }
    let oci = ImageManifest {
        schema_version: 2,
        media_type: Some(IMAGE_MANIFEST.to_string()),
        config: Descriptor::of(config_type, &config_bytes),
        layers,
        annotations,
    };
    contents.insert(0, config_bytes);
    Ok((serde_json::to_vec(&oci).expect("JSON"), contents))
}

/// The signed tensorlet manifest an OCI manifest carries (unverified),
/// fetching the manifest layer when it is not an annotation.
fn signed_of(
    remote: &OciRemote,
    name: &str,
    what: &str,
    oci: &ImageManifest,
) -> Result<SignedManifest> {
    let manifest_bytes = match oci.carried_manifest(what)? {
        Carried::Annotation(m) => m.as_bytes().to_vec(),
        Carried::Layer(d) => remote.blob(name, d)?,
    };
    oci.signed(what, &manifest_bytes)
}

/// Pushes `reference` from `local` (verified first; everything it pins is
/// pushed too, each to its own repository) to `remote`, tagged with its
/// version and with each of `aliases`. A version tag that already holds the
/// same artifact is left alone; one that holds a different artifact is
/// refused (versions are immutable). Audited in `local` as `oci.push`.
pub fn push(
    local: &Registry,
    remote: &OciRemote,
    reference: &Reference,
    aliases: &[String],
) -> Result<Pushed> {
    for a in aliases {
        check_alias(a)?;
    }
    let mut done = Vec::new();
    let mut pushed = BTreeMap::new();
    let (oci_digest, artifact) = push_one(local, remote, reference, &mut done, &mut pushed)?;
    let m = artifact.manifest();
    let mut tags = vec![m.version.clone()];
    if !aliases.is_empty() {
        let (_, bytes) = remote.manifest(&m.name, &OciSelector::Digest(oci_digest.clone()))?;
        for a in aliases {
            remote.put_manifest(&m.name, a, &bytes)?;
            tags.push(a.clone());
        }
    }
    local.record(
        "oci.push",
        &m.reference(),
        json!({"to": remote.location(&m.name), "oci_digest": oci_digest,
               "digest": artifact.digest(), "tags": tags}),
    )?;
    Ok(Pushed {
        reference: m.reference(),
        location: format!("{}:{}", remote.location(&m.name), m.version),
        oci_digest,
        digest: artifact.digest().to_string(),
        tags,
        artifacts: done,
    })
}

fn push_one(
    local: &Registry,
    remote: &OciRemote,
    reference: &Reference,
    done: &mut Vec<(String, bool)>,
    pushed: &mut BTreeMap<String, String>,
) -> Result<(String, VerifiedArtifact)> {
    let artifact = local.verify(reference)?;
    if let Some(oci_digest) = pushed.get(artifact.digest()) {
        // Pinned twice (by a model and by its pipeline): handled already.
        return Ok((oci_digest.clone(), artifact));
    }
    let m = artifact.manifest().clone();
    let pinned = Reference {
        name: m.name.clone(),
        selector: Selector::Digest(artifact.digest().to_string()),
    };
    let (summary, signed) = local.show(&pinned)?;
    let signature = signed.signature.ok_or_else(|| RegistryError::Refused {
        artifact: m.reference(),
        key_id: "none".into(),
        reason: "it is unsigned".into(),
    })?;
    let mut depends = BTreeMap::new();
    for (role, pin) in &m.depends {
        let (d, _) = push_one(local, remote, &pin.exact(), done, pushed)?;
        depends.insert(role.clone(), d);
    }
    let location = format!("{}:{}", remote.location(&m.name), m.version);
    let tag = OciSelector::Tag(m.version.clone());
    if let Some(existing) = remote.head(&m.name, &tag)? {
        let (_, bytes) = remote.manifest(&m.name, &OciSelector::Digest(existing.clone()))?;
        let held = ImageManifest::parse(&location, &bytes)
            .and_then(|oci| signed_of(remote, &m.name, &location, &oci));
        match held {
            Ok(s) if s.manifest.digest() == artifact.digest() => {
                done.push((location, false));
                pushed.insert(artifact.digest().to_string(), existing.clone());
                return Ok((existing, artifact));
            }
            Ok(s) => {
                return Err(RegistryError::AlreadyExists {
                    artifact: format!("{location} (tensorlet manifest {})", s.manifest.digest()),
                    digest: s.manifest.digest(),
                });
            }
            Err(e) => {
                return Err(RegistryError::Invalid(format!(
                    "{location} already holds something that is not this artifact ({e}); \
                     versions are immutable, so push a new version"
                )));
            }
        }
    }
    let (oci_bytes, contents) = build(&artifact, &signature, &summary.created, &depends)?;
    for c in &contents {
        remote.put_blob(&m.name, c)?;
    }
    remote.put_manifest(&m.name, &m.version, &oci_bytes)?;
    done.push((location, true));
    let oci_digest = digest(&oci_bytes);
    pushed.insert(artifact.digest().to_string(), oci_digest.clone());
    Ok((oci_digest, artifact))
}

/// Fetches `ns/name` at `selector` (a semver tag, an alias tag or an OCI
/// manifest digest) and everything it pins from `remote`, verifies it against
/// `local`'s trust policy exactly as [`crate::client::pull`] does, caches it
/// in `local`, and returns the locally verified artifact. An artifact already
/// cached is not downloaded again. Audited as `pull` (or `pull.refused`).
pub fn pull(
    local: &Registry,
    remote: &OciRemote,
    name: &str,
    selector: &OciSelector,
) -> Result<VerifiedArtifact> {
    check_source(name, selector)?;
    let (_, bytes) = remote.manifest(name, selector)?;
    pull_manifest(local, remote, name, selector, &bytes)
}

/// Checks what is about to be fetched: an artifact name and a valid tag.
fn check_source(name: &str, selector: &OciSelector) -> Result<()> {
    check_name(name)?;
    match selector {
        OciSelector::Tag(t) if !tag_ok(t) => {
            Err(RegistryError::Invalid(format!("`{t}` is not an OCI tag")))
        }
        _ => Ok(()),
    }
}

/// [`pull`] of the manifest `bytes` that `selector` named in `remote`.
fn pull_manifest(
    local: &Registry,
    remote: &OciRemote,
    name: &str,
    selector: &OciSelector,
    bytes: &[u8],
) -> Result<VerifiedArtifact> {
    let what = format!("{}{selector}", remote.location(name));
    let oci = ImageManifest::parse(&what, bytes)?;
    let signed = signed_of(remote, name, &what, &oci)?;
    let m = &signed.manifest;
    let d = m.digest();
    let refuse = |reason: String| {
        let e = RegistryError::Refused {
            artifact: what.clone(),
            key_id: signed.key_id(),
            reason,
        };
        if let Err(audit) = local.record(
            "pull.refused",
            &what,
            json!({"key_id": signed.key_id(), "reason": e.to_string()}),
        ) {
            tracing::warn!("cannot audit a refusal: {audit}");
        }
        e
    };
    if m.name != name {
        return Err(refuse(format!(
            "the repository for {name} holds a manifest for {}",
            m.name
        )));
    }
    if let OciSelector::Tag(t) = selector
        && t.as_bytes()[0].is_ascii_digit()
        && *t != m.version
    {
        return Err(refuse(format!(
            "the version tag `{t}` holds version {} of {name}",
            m.version
        )));
    }
    let pinned = Reference {
        name: m.name.clone(),
        selector: Selector::Digest(d.clone()),
    };
    if local.resolve(&pinned).is_ok() {
        return local.verify(&pinned);
    }
    let located = oci.depends(&what)?;
    for (role, pin) in &m.depends {
        let sel = match located.get(role) {
            Some(od) => OciSelector::Digest(od.clone()),
            None => OciSelector::Tag(
                pin.reference
                    .split_once('@')
                    .map_or("", |(_, v)| v)
                    .to_string(),
            ),
        };
        let dep = pull(local, remote, pin.name(), &sel)?;
        if dep.digest() != pin.digest {
            return Err(refuse(format!(
                "its {role} {} is pinned as {}, but the registry's copy is {}",
                pin.reference,
                pin.digest,
                dep.digest()
            )));
        }
    }
    let mut blobs = Vec::new();
    for (role, bd) in &m.blobs {
        if !oci.layers.iter().any(|l| &l.digest == bd) {
            return Err(refuse(format!(
                "its blob `{role}` ({bd}) is not among the OCI manifest's layers"
            )));
        }
        blobs.push(remote.blob(name, bd)?);
    }
    local.import_pulled(&signed, &blobs, &what)
}

/// Moves the alias tag `alias` of `ns/name` in `remote` to what `selector`
/// names there (usually a version tag), after pulling and verifying that
/// against `local`'s trust policy exactly as [`pull`] does: a node promotes
/// only what it would run itself. The manifest is re-tagged, nothing is
/// uploaded. Audited in `local` as `oci.promote`. An OCI registry keeps no
/// history of a tag; `from` (and the audit entry) say what it pointed at.
pub fn promote(
    local: &Registry,
    remote: &OciRemote,
    name: &str,
    selector: &OciSelector,
    alias: &str,
) -> Result<crate::AliasMove> {
    check_alias(alias)?;
    check_source(name, selector)?;
    // One fetch: the manifest that is verified is the one that is re-tagged,
    // even if `selector`'s tag moves meanwhile.
    let (oci_digest, bytes) = remote.manifest(name, selector)?;
    let artifact = pull_manifest(local, remote, name, selector, &bytes)?;
    let tag = OciSelector::Tag(alias.to_string());
    let from = match remote.head(name, &tag)? {
        None => None,
        Some(previous) => {
            let what = format!("{}{tag}", remote.location(name));
            let (_, held) = remote.manifest(name, &OciSelector::Digest(previous))?;
            let version = ImageManifest::parse(&what, &held)
                .ok()
                .and_then(|m| m.annotations.get(ANNOTATION_VERSION).cloned());
            Some(version.unwrap_or_else(|| "(not a tensorlet artifact)".to_string()))
        }
    };
    let m = artifact.manifest();
    if from.as_deref() != Some(m.version.as_str()) {
        remote.put_manifest(name, alias, &bytes)?;
    }
    local.record(
        "oci.promote",
        &m.reference(),
        json!({"at": remote.location(name), "alias": alias, "from": from,
               "oci_digest": oci_digest, "digest": artifact.digest()}),
    )?;
    Ok(crate::AliasMove {
        name: m.name.clone(),
        alias: alias.to_string(),
        from,
        to: m.version.clone(),
        digest: artifact.digest().to_string(),
    })
}

/// Checks that a push destination tag is the artifact's semantic version.
pub fn check_version_tag(tag: &str, version: &str) -> Result<()> {
    check_version(tag).map_err(|_| {
        RegistryError::Invalid(format!(
            "the tag `{tag}` is not a semantic version; tensorlet tags artifacts with their \
             version (as Wasm package tooling expects) and moves aliases with `--alias {tag}`"
        ))
    })?;
    if tag != version {
        return Err(RegistryError::Invalid(format!(
            "the tag `{tag}` is not the artifact's version {version}; an artifact is tagged with \
             its own version"
        )));
    }
    Ok(())
}

impl OciReference {
    /// The tag or digest `what` needs (`pull`, `promote`), or an error that
    /// shows how to name one.
    pub fn selected(&self, what: &str) -> Result<&OciSelector> {
        self.selector.as_ref().ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{what} needs a version: `{self}` names no tag; add the version or alias, e.g. \
                     `{self}:1.2.0`"
            ))
        })
    }

    /// Checks that an artifact `name` at `version` may be pushed here: the
    /// repository ends in its name (so its dependencies are found beside it)
    /// and the tag, when given, is its version, never a digest.
    pub fn check_push(&self, name: &str, version: &str) -> Result<()> {
        if self.name != name {
            return Err(RegistryError::Invalid(format!(
                "{} is the repository of {}, not of {name}; tensorlet keeps `ns/name` in \
                 repository `[prefix/]ns/name` so dependencies are found beside it: push to {}:{version}",
                self.remote.location(&self.name),
                self.name,
                self.remote.location(name),
            )));
        }
        match &self.selector {
            None => Ok(()),
            Some(OciSelector::Tag(t)) => check_version_tag(t, version),
            Some(OciSelector::Digest(_)) => Err(RegistryError::Invalid(format!(
                "push to a tag (the version), not to a digest: {self}"
            ))),
        }
    }
}

/// Imports the models of the OCI image layout in `dir` into `local`: of each
/// repository it holds, the tag `production` when it has one, else its
/// highest version, pulled with every check of a registry pull (signature
/// against the trust policy, dependencies by digest, refusals audited).
/// Returns the models, in the layout's order; an error if it holds none.
pub fn import_layout(local: &Registry, dir: &std::path::Path) -> Result<Vec<VerifiedArtifact>> {
    let remote = OciRemote::new(&format!("{LAYOUT}{}", dir.display()))?;
    let mut chosen: Vec<(String, String)> = Vec::new();
    for (repo, tag) in remote.layout_tags()? {
        let better = |old: &str| {
            let version = |t: &str| semver::Version::parse(t).ok();
            tag == "production"
                || (old != "production"
                    && version(&tag).is_some_and(|v| version(old).is_none_or(|o| v > o)))
        };
        match chosen.iter_mut().find(|(r, _)| *r == repo) {
            Some((_, old)) if better(old) => *old = tag,
            Some(_) => {}
            None => chosen.push((repo, tag)),
        }
    }
    let mut models = Vec::new();
    for (repo, tag) in chosen {
        let artifact = pull(local, &remote, &repo, &OciSelector::Tag(tag))?;
        if artifact.kind() == crate::manifest::Kind::Model {
            models.push(artifact);
        }
    }
    if models.is_empty() {
        return Err(RegistryError::NotFound(format!(
            "the OCI image layout {} holds no model (write one with `tensorlet push \
             <ns/name@version> {LAYOUT}{}/<ns>/<name>:<version>`)",
            dir.display(),
            dir.display()
        )));
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_without_a_tag_says_how_to_name_one() {
        let r = OciReference::parse("oci://reg:5000/acme/iris").unwrap();
        let e = r.selected("pull").unwrap_err().to_string();
        assert!(e.contains("pull needs a version"), "{e}");
        assert!(e.contains("`oci://reg:5000/acme/iris:1.2.0`"), "{e}");
        let tagged = OciReference::parse("oci://reg:5000/acme/iris:1.2.0").unwrap();
        assert_eq!(tagged.selected("pull").unwrap().to_string(), ":1.2.0");
    }

    #[test]
    fn parses_locations_and_references() {
        let r = OciReference::parse("oci://127.0.0.1:5000/acme/iris-model:1.2.0").unwrap();
        assert_eq!(r.name, "acme/iris-model");
        assert_eq!(r.selector, Some(OciSelector::Tag("1.2.0".into())));
        assert_eq!(r.remote.repository(&r.name), "acme/iris-model");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/acme/iris-model:1.2.0");

        let d = format!("sha256:{}", "b".repeat(64));
        let r = OciReference::parse(&format!("oci://reg.local/team/ml/acme/iris@{d}")).unwrap();
        assert_eq!(r.name, "acme/iris");
        assert_eq!(r.selector, Some(OciSelector::Digest(d)));
        assert_eq!(r.remote.repository(&r.name), "team/ml/acme/iris");
        assert_eq!(r.remote.url(), "oci://reg.local/team/ml");

        let r = OciReference::parse("oci://reg.local:5000/acme/iris").unwrap();
        assert_eq!(r.selector, None);

        for bad in [
            "http://reg/acme/iris:1.0.0",
            "oci://reg/iris:1.0.0",
            "oci://reg/Acme/iris:1.0.0",
            "oci://reg/acme/iris:bad tag",
            "oci://reg/acme/iris@sha256:abc",
            "oci:///acme/iris",
        ] {
            assert!(OciReference::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            OciRemote::new("oci://reg.local:5000/").unwrap().url(),
            "oci://reg.local:5000"
        );
    }

    #[test]
    fn tags_must_be_the_semantic_version() {
        assert!(check_version_tag("1.2.0", "1.2.0").is_ok());
        let e = check_version_tag("production", "1.2.0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a semantic version") && e.contains("--alias"),
            "{e}"
        );
        let e = check_version_tag("1.3.0", "1.2.0").unwrap_err().to_string();
        assert!(e.contains("not the artifact's version"), "{e}");
    }

    #[test]
    fn a_push_goes_to_the_artifact_repository_and_version_tag() {
        let at = |s: &str| OciReference::parse(s).unwrap();
        assert!(
            at("oci://reg:5000/p/acme/iris")
                .check_push("acme/iris", "1.2.0")
                .is_ok()
        );
        assert!(
            at("oci://reg:5000/acme/iris:1.2.0")
                .check_push("acme/iris", "1.2.0")
                .is_ok()
        );
        let e = at("oci://reg:5000/p/acme/other:1.2.0")
            .check_push("acme/iris", "1.2.0")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "oci://reg:5000/p/acme/other is the repository of acme/other, not of acme/iris; \
             tensorlet keeps `ns/name` in repository `[prefix/]ns/name` so dependencies are \
             found beside it: push to oci://reg:5000/p/acme/iris:1.2.0"
        );
        let e = at("oci://reg:5000/acme/iris:1.3.0").check_push("acme/iris", "1.2.0");
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("not the artifact's version")
        );
        let d = format!("oci://reg:5000/acme/iris@sha256:{}", "b".repeat(64));
        assert_eq!(
            at(&d)
                .check_push("acme/iris", "1.2.0")
                .unwrap_err()
                .to_string(),
            format!("push to a tag (the version), not to a digest: {d}")
        );
    }

    #[test]
    fn reads_the_world_of_a_component_and_refuses_a_core_module() {
        // A minimal component exporting nothing, and a core module.
        let component = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        assert_eq!(component_world(&component), Some((vec![], vec![])));
        let module = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert_eq!(component_world(&module), None);
        assert_eq!(component_world(b"not wasm"), None);
    }
}
