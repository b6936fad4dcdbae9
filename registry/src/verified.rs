//! Proof-carrying types: only verification in this crate can make them.
//!
//! The runtime compiles only a [`VerifiedComponent`], and the only ways to get
//! one are [`VerifiedArtifact::component`] (after [`crate::Registry::verify`]
//! recomputed every digest and checked the signature against the trust
//! policy) and [`crate::Registry::allow_unsigned`] (development only, loud and
//! audited). The fields are private and there is no other constructor.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::manifest::{COMPONENT, Kind, Manifest};

/// How a component came to be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provenance {
    /// A verified, signed artifact.
    Signed {
        /// `ns/name@version`.
        artifact: String,
        /// Its manifest digest.
        manifest_digest: String,
        /// The key that signed it.
        key_id: String,
    },
    /// `--allow-unsigned`: not verified at all.
    Unsigned,
}

/// An artifact whose signature, trust and blob digests were verified.
#[derive(Clone, Debug)]
pub struct VerifiedArtifact {
    manifest: Manifest,
    digest: String,
    key_id: String,
    yanked: bool,
    blobs: BTreeMap<String, Arc<Vec<u8>>>,
}

impl VerifiedArtifact {
    pub(crate) fn new(
        manifest: Manifest,
        digest: String,
        key_id: String,
        yanked: bool,
        blobs: BTreeMap<String, Arc<Vec<u8>>>,
    ) -> Self {
        VerifiedArtifact {
            manifest,
            digest,
            key_id,
            yanked,
            blobs,
        }
    }

    /// The signed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `ns/name@version`.
    pub fn reference(&self) -> String {
        self.manifest.reference()
    }

    /// The manifest digest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The signer's key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether this version is yanked (it was named exactly).
    pub fn yanked(&self) -> bool {
        self.yanked
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.manifest.kind
    }

    /// A blob's verified bytes, by role.
    pub fn blob(&self, role: &str) -> Option<&[u8]> {
        self.blobs.get(role).map(|b| b.as_slice())
    }

    /// The component of a plugin artifact.
    pub fn component(&self) -> Option<VerifiedComponent> {
        if !self.manifest.kind.is_plugin() {
            return None;
        }
        let bytes = self.blobs.get(COMPONENT)?.clone();
        let graphs = self
            .blobs
            .iter()
            .filter_map(|(role, b)| Some((role.strip_prefix(GRAPH_PREFIX)?.to_string(), b.clone())))
            .collect();
        Some(VerifiedComponent {
            name: self.reference(),
            digest: self.manifest.blobs[COMPONENT].clone(),
            bytes,
            graphs,
            provenance: Provenance::Signed {
                artifact: self.reference(),
                manifest_digest: self.digest.clone(),
                key_id: self.key_id.clone(),
            },
        })
    }
}

/// Component bytes that passed verification (or were explicitly let through
/// with `--allow-unsigned`): the only thing the runtime compiles.
#[derive(Clone, Debug)]
pub struct VerifiedComponent {
    name: String,
    digest: String,
    bytes: Arc<Vec<u8>>,
    graphs: Vec<(String, Arc<Vec<u8>>)>,
    provenance: Provenance,
}

/// The blob-role prefix of a plugin artifact's models: the blob
/// `graph:<name>` is offered to the plugin through `wasi:nn` as graph `<name>`.
pub const GRAPH_PREFIX: &str = "graph:";

impl VerifiedComponent {
    pub(crate) fn new(
        name: String,
        digest: String,
        bytes: Arc<Vec<u8>>,
        provenance: Provenance,
    ) -> Self {
        VerifiedComponent {
            name,
            digest,
            bytes,
            graphs: Vec::new(),
            provenance,
        }
    }

    /// The name used in messages (`ns/name@version`, or the local name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:` of the bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The component bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The models (e.g. ONNX) that came with it as blobs of its artifact,
    /// by name, verified like the component.
    pub fn graphs(&self) -> &[(String, Arc<Vec<u8>>)] {
        &self.graphs
    }

    /// How it was trusted.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
}
