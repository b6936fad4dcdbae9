//! Artifact manifests and their signatures.
//!
//! A manifest names an artifact (`namespace/name`, semver version, kind), pins
//! every blob by digest, pins the artifacts it depends on by manifest digest,
//! and carries config and lineage. It is signed over its canonical JSON bytes
//! ([`crate::canonical`]); the sha256 of those bytes is the artifact's digest.
//!
//! ```json
//! {"manifest":{"blobs":{"component":"sha256:…"},"config":{},"depends":{},
//!   "format":"tensorlet-manifest/1","kind":"preprocessor","lineage":{},
//!   "name":"acme/scale","version":"1.0.0"},
//!  "signature":{"key_id":"…","public_key":"ed25519:…","signature":"…"}}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{check_digest, digest};
use crate::error::{RegistryError, Result};
use crate::keys::KeyPair;
use crate::reference::{check_name, check_version};

/// The value of `format` in every manifest this registry writes.
pub const FORMAT: &str = "tensorlet-manifest/1";

/// What an artifact is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A component exporting `tensorlet:ml/preprocess`.
    Preprocessor,
    /// A component exporting `tensorlet:ml/train` (and often `predict`).
    Trainer,
    /// A component exporting `tensorlet:ml/predict`.
    Predictor,
    /// A pipeline: plugin artifacts pinned by digest, config, training settings.
    Pipeline,
    /// A trained model: its pipeline pinned by digest, params and state blobs.
    Model,
}

impl Kind {
    /// All kinds, for messages.
    pub const ALL: [Kind; 5] = [
        Kind::Preprocessor,
        Kind::Trainer,
        Kind::Predictor,
        Kind::Pipeline,
        Kind::Model,
    ];

    /// Whether artifacts of this kind are a wasm component (blob `component`).
    pub fn is_plugin(self) -> bool {
        matches!(self, Kind::Preprocessor | Kind::Trainer | Kind::Predictor)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Preprocessor => "preprocessor",
            Kind::Trainer => "trainer",
            Kind::Predictor => "predictor",
            Kind::Pipeline => "pipeline",
            Kind::Model => "model",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "`{s}` is not an artifact kind; kinds are preprocessor, trainer, predictor, \
                     pipeline and model"
                ))
            })
    }
}

/// The blob role of a plugin's component.
pub const COMPONENT: &str = "component";

/// Another artifact, pinned by its manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `ns/name@version`, for people.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:` of its canonical manifest: what is actually loaded.
    pub digest: String,
}

impl Pin {
    /// `ns/name` of the pinned artifact.
    pub fn name(&self) -> &str {
        self.reference
            .split_once('@')
            .map_or(self.reference.as_str(), |(n, _)| n)
    }

    /// The reference that names exactly the pinned artifact: `ns/name@sha256:…`.
    pub fn exact(&self) -> crate::reference::Reference {
        crate::reference::Reference {
            name: self.name().to_string(),
            selector: crate::reference::Selector::Digest(self.digest.clone()),
        }
    }
}

/// The signed part of an artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// `namespace/name`.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// What it is.
    pub kind: Kind,
    /// Blobs by role (`component`, `params.safetensors`, …) → `sha256:` digest.
    #[serde(default)]
    pub blobs: BTreeMap<String, String>,
    /// Artifacts it is built from, by role (`trainer`, `pipeline`, …).
    #[serde(default)]
    pub depends: BTreeMap<String, Pin>,
    /// Configuration (any JSON).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Where it came from: parent versions, dataset digest, run id (any JSON).
    #[serde(default)]
    pub lineage: serde_json::Value,
}

impl Manifest {
    /// A manifest with no blobs, dependencies, config or lineage yet.
    pub fn new(name: &str, version: &str, kind: Kind) -> Result<Self> {
        check_name(name)?;
        check_version(version)?;
        Ok(Manifest {
            format: FORMAT.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            kind,
            blobs: BTreeMap::new(),
            depends: BTreeMap::new(),
            config: serde_json::Value::Object(Default::default()),
            lineage: serde_json::Value::Object(Default::default()),
        })
    }

    /// The canonical bytes that are signed and hashed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        crate::canonical::of(self)
    }

    /// `sha256:` of the canonical bytes: the artifact's digest.
    pub fn digest(&self) -> String {
        digest(&self.canonical_bytes())
    }

    /// The namespace (before the `/`).
    pub fn namespace(&self) -> &str {
        self.name.split_once('/').map_or("", |(ns, _)| ns)
    }

    /// `ns/name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Signs the manifest with `key`.
    pub fn sign(self, key: &KeyPair) -> SignedManifest {
        let signature = Signature {
            key_id: key.key_id(),
            public_key: key.public().to_string(),
            signature: key.sign(&self.canonical_bytes()),
        };
        SignedManifest {
            manifest: self,
            signature: Some(signature),
        }
    }

    /// Checks the fields a manifest must have right.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(RegistryError::Invalid(format!(
                "manifest format `{}` is not `{FORMAT}`",
                self.format
            )));
        }
        check_name(&self.name)?;
        check_version(&self.version)?;
        for (role, d) in &self.blobs {
            check_digest(d).map_err(|_| {
                RegistryError::Invalid(format!("blob `{role}` has a malformed digest `{d}`"))
            })?;
        }
        for (role, pin) in &self.depends {
            check_digest(&pin.digest).map_err(|_| {
                RegistryError::Invalid(format!(
                    "dependency `{role}` has a malformed digest `{}`",
                    pin.digest
                ))
            })?;
        }
        if self.kind.is_plugin() && !self.blobs.contains_key(COMPONENT) {
            return Err(RegistryError::Invalid(format!(
                "a {} manifest must pin a `{COMPONENT}` blob",
                self.kind
            )));
        }
        Ok(())
    }
}

/// An ed25519 signature over a manifest's canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The signer's key id (16 hex digits of sha256 of the public key).
    pub key_id: String,
    /// `ed25519:<hex>`.
    pub public_key: String,
    /// 64 bytes in hex.
    pub signature: String,
}

/// A manifest with its signature, as stored and transferred. An unsigned
/// manifest is representable (so it can be refused with a reason) but never
/// accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// The signed content.
    pub manifest: Manifest,
    /// The signature; `None` for an unsigned manifest.
    #[serde(default)]
    pub signature: Option<Signature>,
}

impl SignedManifest {
    /// Canonical JSON of the whole envelope.
    pub fn to_canonical(&self) -> Vec<u8> {
        crate::canonical::of(self)
    }

    /// Parses an envelope (unknown keys are errors).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Invalid(format!("not a valid signed manifest: {e}")))
    }

    /// The signer's key id, or `none`.
    pub fn key_id(&self) -> String {
        self.signature
            .as_ref()
            .map_or_else(|| "none".to_string(), |s| s.key_id.clone())
    }
}
