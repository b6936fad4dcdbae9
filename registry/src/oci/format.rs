//! The OCI image manifests tensorlet pushes and reads, and what their
//! annotations carry: parsing only, no network, so it is built (and fuzzed)
//! without the `http` feature.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};
use crate::manifest::{Manifest, Signature, SignedManifest};

/// The media type of every manifest tensorlet pushes.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Config of a Wasm component (CNCF Wasm OCI artifact layout).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// A Wasm component layer (CNCF Wasm OCI artifact layout).
pub const WASM_LAYER: &str = "application/wasm";
/// Config of a pipeline or model.
pub const TENSORLET_CONFIG: &str = "application/vnd.tensorlet.config.v1+json";
/// The layer holding a pipeline's or model's tensorlet manifest (canonical JSON).
pub const MANIFEST_LAYER: &str = "application/vnd.tensorlet.manifest.v1+json";
/// A blob layer.
pub const BLOB_LAYER: &str = "application/vnd.tensorlet.blob.v1";
/// A weights layer (safetensors).
pub const SAFETENSORS_LAYER: &str = "application/vnd.tensorlet.safetensors.v1";
/// Annotation: a plugin's tensorlet manifest (canonical JSON).
pub const ANNOTATION_MANIFEST: &str = "dev.tensorlet.manifest";
/// Annotation: the JSON of the manifest's [`Signature`].
pub const ANNOTATION_SIGNATURE: &str = "dev.tensorlet.signature";
/// Annotation: `{role: OCI manifest digest}` of the dependencies.
pub const ANNOTATION_DEPENDS: &str = "dev.tensorlet.depends";
/// Standard annotation naming a layer (its role) or the artifact.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Standard annotation carrying the version.
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:` of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (the title of a layer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    #[cfg(feature = "http")]
    pub(crate) fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: crate::digest::digest(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest (the fields tensorlet reads and writes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`IMAGE_MANIFEST`].
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where an OCI manifest carries its tensorlet manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried<'a> {
    /// In the [`ANNOTATION_MANIFEST`] annotation (plugins).
    Annotation(&'a str),
    /// In the [`MANIFEST_LAYER`] layer of this digest (pipelines, models).
    Layer(&'a str),
}

impl ImageManifest {
    /// Parses an OCI image manifest; `what` names it in errors.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<ImageManifest> {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| {
            RegistryError::Invalid(format!(
                "{what} is not an OCI image manifest ({e}); was it pushed by `tensorlet push`?"
            ))
        })?;
        if m.schema_version != 2 || m.media_type.as_deref().is_some_and(|t| t != IMAGE_MANIFEST) {
            return Err(RegistryError::Invalid(format!(
                "{what} is not an OCI image manifest (media type {:?}, schema {})",
                m.media_type, m.schema_version
            )));
        }
        Ok(m)
    }

    /// Where the tensorlet manifest is: the annotation, else the manifest
    /// layer.
    pub fn carried_manifest(&self, what: &str) -> Result<Carried<'_>> {
        if let Some(m) = self.annotations.get(ANNOTATION_MANIFEST) {
            return Ok(Carried::Annotation(m));
        }
        self.layers
            .iter()
            .find(|l| l.media_type == MANIFEST_LAYER)
            .map(|l| Carried::Layer(&l.digest))
            .ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "{what} carries no tensorlet manifest (neither a `{ANNOTATION_MANIFEST}` \
                     annotation nor a `{MANIFEST_LAYER}` layer); push it with `tensorlet push`"
                ))
            })
    }

    /// The signed tensorlet manifest (unverified) from the manifest's bytes
    /// (what [`ImageManifest::carried_manifest`] located) and the
    /// [`ANNOTATION_SIGNATURE`] annotation.
    pub fn signed(&self, what: &str, manifest_bytes: &[u8]) -> Result<SignedManifest> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes).map_err(|e| {
            RegistryError::Invalid(format!(
                "{what} carries a malformed tensorlet manifest: {e}"
            ))
        })?;
        let signature = match self.annotations.get(ANNOTATION_SIGNATURE) {
            None => None,
            Some(s) => Some(serde_json::from_str::<Signature>(s).map_err(|e| {
                RegistryError::Invalid(format!("{what} carries a malformed signature: {e}"))
            })?),
        };
        Ok(SignedManifest {
            manifest,
            signature,
        })
    }

    /// The [`ANNOTATION_DEPENDS`] map, `{role: OCI manifest digest}` (empty
    /// without the annotation).
    pub fn depends(&self, what: &str) -> Result<BTreeMap<String, String>> {
        match self.annotations.get(ANNOTATION_DEPENDS) {
            Some(s) => serde_json::from_str(s).map_err(|e| {
                RegistryError::Invalid(format!(
                    "{what} has a malformed `{ANNOTATION_DEPENDS}`: {e}"
                ))
            }),
            None => Ok(BTreeMap::new()),
        }
    }
}
