//! `tensorlet export --wasi-http`: one model as one standard `wasi:http` component.
//!
//! The export is a composition, not a rewrite. Five components are wired
//! together with `wac-graph` into a single component that exports only
//! `wasi:http/incoming-handler` (plus the WASI 0.2 imports any `wasi:http`
//! host provides):
//!
//! ```text
//!  tensor-cpu ──tensor──► preprocessor ──preprocess──┐
//!      │     └──tensor──► predictor    ──predict─────┤
//!      └────────tensor─────────────────────────────► http-front ──► wasi:http/incoming-handler
//!  model-store (generated: model.json, params, state) ─model-data──┘
//! ```
//!
//! A chain of preprocessors (`[[preprocessor]]`, up to eight) is composed
//! as one preprocessor per distinct component, each stage wired to its own
//! import of the front (`stage-2` … `stage-8` after the first), and the front
//! routes the columns through them as the host does (`crate::chain`).
//!
//! When the predictor is a `model` plugin (ABI 0.2 `forward`), the bundled
//! `forward-predict` adapter sits between it and the front, turning `forward`
//! in `eval` mode into class probabilities as the host does. The parts speak
//! ABI 0.2; a model whose plugins were built for 0.1 is refused with a message
//! that says to rebuild them.
//!
//! `tensor-cpu` is the CPU backend of `tensorlet-gpu` compiled for
//! `wasm32-wasip2`; the preprocessor and predictor are the model's own signed
//! components, byte for byte; `model-store` is generated here (a core module
//! whose data segment holds the model's blobs, wrapped by `wit-component`).
//! The result carries a `tensorlet-export` custom section naming the model and
//! its manifest digest, and, when a key is given, a `tensorlet-signature`
//! section that signs everything before it ([`inspect`] checks both).
//! [`spin::spin_toml`] writes the Spin application manifest that runs it.

mod compose;
pub mod host;
pub mod model;
mod sections;
pub mod spin;
mod store;
pub mod trust;

use serde::{Deserialize, Serialize};
use tensorlet_registry::{KeyPair, PublicKey, VerifiedArtifact};

use crate::digest;
use crate::model::{META, PARAMS, STATE};

pub use sections::{EXPORT_SECTION, SIGNATURE_SECTION};

/// The value of `format` in the `tensorlet-export` section.
pub const FORMAT: &str = "tensorlet-export/1";

/// The prefix of the message a `tensorlet-signature` signs (then the
/// `sha256:` digest of every byte before that section).
const SIGNED_PREFIX: &str = "tensorlet-export-signature/1\n";

/// Why an export could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The model cannot be exported as it is.
    #[error("cannot export {model}: {message}")]
    Model {
        /// The model reference.
        model: String,
        /// What is wrong, for people.
        message: String,
    },
    /// Composition failed (a bug or an incompatible plugin).
    #[error("composing {model} into one component failed: {message}")]
    Compose {
        /// The model reference.
        model: String,
        /// The cause.
        message: String,
    },
    /// The file is not an export, or its metadata or signature is bad.
    #[error("{0}")]
    Inspect(String),
}

/// The components tensorlet ships for exports (built from `plugins/`).
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    /// The OIP `wasi:http` handler: `http-front` (WASI 0.2) or `spin-front`
    /// (`spin-sdk`, WASI 0.3).
    pub front: &'a [u8],
    /// `tensor-cpu`: `tensorlet:ml/tensor` in pure Wasm.
    pub tensor: &'a [u8],
    /// `forward-predict`: `predict` over a `model` plugin's `forward`.
    pub forward_predict: &'a [u8],
}

/// The verified inputs of one export.
pub struct ExportInput<'a> {
    /// The model artifact (verified against the trust policy).
    pub model: &'a VerifiedArtifact,
    /// The name it answers to in URLs (`/v2/models/{name}/infer`).
    pub served_name: &'a str,
    /// Its preprocessor components in chain order, each with its section
    /// (`preprocessor`, `preprocessor.2`…; verified, pinned by the model).
    pub preprocessors: &'a [(String, Vec<u8>)],
    /// Its predictor component (verified, pinned by the model).
    pub predictor: &'a [u8],
}

/// What the `tensorlet-export` custom section records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// The model, `ns/name@version`.
    pub model: String,
    /// The name it is served under.
    pub served_name: String,
    /// Its version.
    pub version: String,
    /// `sha256:` of the model's signed manifest: the export's lineage.
    pub manifest_digest: String,
    /// The key id that signed the model manifest.
    pub model_key_id: String,
    /// `sha256:` of each composed component and embedded blob.
    pub digests: std::collections::BTreeMap<String, String>,
    /// The tensorlet version that exported it.
    pub tensorlet_version: String,
}

/// The signature section's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSection {
    key_id: String,
    public_key: String,
    signature: String,
}

/// What [`inspect`] found in an exported component.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    /// Its `tensorlet-export` metadata.
    pub meta: ExportMeta,
    /// The key that signed it (verified), when it is signed.
    pub signed_by: Option<PublicKey>,
    /// `sha256:` of the whole file.
    pub digest: String,
}

/// Composes the model into one `wasi:http` component; signs it with `key`
/// when given.
pub fn export_wasi_http(
    input: &ExportInput<'_>,
    parts: Parts<'_>,
    key: Option<&KeyPair>,
) -> Result<Vec<u8>, ExportError> {
    let model = input.model.reference();
    let manifest = input.model.manifest();
    let blob = |role: &str| -> Result<&[u8], ExportError> {
        input.model.blob(role).ok_or_else(|| ExportError::Model {
            model: model.clone(),
            message: format!("it has no `{role}` blob; is it a model?"),
        })
    };
    let (meta, params, state) = (blob(META)?, blob(PARAMS)?, blob(STATE)?);
    let stages = crate::model::parse_meta(meta)
        .map_err(|message| ExportError::Model {
            model: model.clone(),
            message,
        })?
        .plugins;
    let pinned = stages.preprocessors();
    if pinned.len() > compose::MAX_PREPROCESSORS {
        let names: Vec<&str> = pinned.iter().map(|(_, s)| s.name.as_str()).collect();
        return Err(ExportError::Model {
            model: model.clone(),
            message: format!(
                "its preprocessing is a chain of {} preprocessors (`{}`), and an exported \
                 component composes at most {}; serve it with `tensorlet serve`, or train it \
                 with fewer [[preprocessor]] entries (one entry may name several `columns`)",
                pinned.len(),
                names.join(" → "),
                compose::MAX_PREPROCESSORS
            ),
        });
    }
    // The components given are the stages model.json lists, in its order.
    let listed: Vec<&str> = pinned.iter().map(|(s, _)| s.as_str()).collect();
    let given: Vec<&str> = input
        .preprocessors
        .iter()
        .map(|(s, _)| s.as_str())
        .collect();
    if given != listed {
        return Err(ExportError::Model {
            model: model.clone(),
            message: format!(
                "its model.json lists the preprocessors {} but {} were given",
                listed.join(", "),
                given.join(", ")
            ),
        });
    }
    let info = serde_json::json!({
        "name": input.served_name,
        "version": manifest.version.clone(),
        "reference": model,
        "manifest-digest": input.model.digest(),
    });
    let data = store::model_store(&info.to_string(), meta, params, state).map_err(|e| {
        ExportError::Compose {
            model: model.clone(),
            message: format!("generating the model-data component: {e:#}"),
        }
    })?;
    let preprocessors: Vec<(String, &[u8])> = input
        .preprocessors
        .iter()
        .map(|(section, bytes)| (section.clone(), bytes.as_slice()))
        .collect();
    let mut bytes = compose::compose(&compose::Inputs {
        tensor: parts.tensor,
        preprocessors: &preprocessors,
        predictor: input.predictor,
        data: &data,
        front: parts.front,
        forward_predict: parts.forward_predict,
    })
    .map_err(|e| match e {
        compose::Error::Plugin(message) => ExportError::Model {
            model: model.clone(),
            message,
        },
        compose::Error::Other(e) => ExportError::Compose {
            model: model.clone(),
            message: format!("{e:#}"),
        },
    })?;
    // `preprocessor`, then `preprocessor.2`… for a chain.
    let digests = input
        .preprocessors
        .iter()
        .map(|(section, bytes)| (section.clone(), digest(bytes)))
        .chain(
            [
                ("predictor", digest(input.predictor)),
                ("tensor", digest(parts.tensor)),
                ("front", digest(parts.front)),
                (META, digest(meta)),
                (PARAMS, digest(params)),
                (STATE, digest(state)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        )
        .collect();
    let export_meta = ExportMeta {
        format: FORMAT.into(),
        model: model.clone(),
        served_name: input.served_name.to_string(),
        version: manifest.version.clone(),
        manifest_digest: input.model.digest().to_string(),
        model_key_id: input.model.key_id().to_string(),
        digests,
        tensorlet_version: env!("CARGO_PKG_VERSION").into(),
    };
    sections::append(
        &mut bytes,
        EXPORT_SECTION,
        &serde_json::to_vec(&export_meta).expect("metadata serialises"),
    );
    if let Some(key) = key {
        let signature = SignatureSection {
            key_id: key.key_id(),
            public_key: key.public().to_string(),
            signature: key.sign(&signed_message(&bytes)),
        };
        sections::append(
            &mut bytes,
            SIGNATURE_SECTION,
            &serde_json::to_vec(&signature).expect("signature serialises"),
        );
    }
    Ok(bytes)
}

fn signed_message(before_signature: &[u8]) -> Vec<u8> {
    format!("{SIGNED_PREFIX}{}", digest(before_signature)).into_bytes()
}

/// Reads an exported component's metadata and checks its signature, if any.
/// A signature that does not verify, or any byte after it, is an error.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, ExportError> {
    let bad = |m: String| ExportError::Inspect(m);
    let found = sections::top_level_custom(bytes).map_err(bad)?;
    let meta = found
        .iter()
        .find(|s| s.name == EXPORT_SECTION)
        .ok_or_else(|| {
            bad(format!(
                "it has no `{EXPORT_SECTION}` section; it was not made by `tensorlet export`"
            ))
        })?;
    let meta: ExportMeta = serde_json::from_slice(meta.data)
        .map_err(|e| bad(format!("its `{EXPORT_SECTION}` section is not valid: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!(
            "its export format is `{}`; this tensorlet reads `{FORMAT}`",
            meta.format
        )));
    }
    let signed_by = match found.iter().find(|s| s.name == SIGNATURE_SECTION) {
        None => None,
        Some(s) => {
            if s.end != bytes.len() {
                return Err(bad(format!(
                    "bytes follow its `{SIGNATURE_SECTION}` section; the file was modified after signing"
                )));
            }
            let sig: SignatureSection = serde_json::from_slice(s.data).map_err(|e| {
                bad(format!(
                    "its `{SIGNATURE_SECTION}` section is not valid: {e}"
                ))
            })?;
            let key = PublicKey::parse(&sig.public_key).map_err(|e| bad(e.to_string()))?;
            if key.key_id() != sig.key_id
                || !key.verify(&signed_message(&bytes[..s.start]), &sig.signature)
            {
                return Err(bad(format!(
                    "its signature by key {} does not verify; the file was modified after signing",
                    sig.key_id
                )));
            }
            Some(key)
        }
    };
    Ok(Inspection {
        meta,
        signed_by,
        digest: digest(bytes),
    })
}
