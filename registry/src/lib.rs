//! tensorlet's artifact registry.
//!
//! Every plugin, pipeline and model is an artifact `namespace/name@semver`
//! described by a signed [`Manifest`] (canonical JSON, ed25519) that pins its
//! blobs and its dependencies by sha256 digest. A [`Registry`] keeps them in
//! `$TENSORLET_HOME`: a SQLite database (index, trust policy, audit log) and
//! content-addressed blob files. [`Registry::verify`] recomputes every digest
//! and checks the signature against the trust policy; it is the only way to a
//! [`VerifiedComponent`], which is the only thing the runtime compiles (the
//! development-only [`Registry::allow_unsigned`] is loud and audited). The
//! audit log is hash-chained, signed by the node key and checkpointed outside
//! the database; it must account for every index row, so an emptied or
//! restarted log fails verification, and [`AuditCheckpoint`]s exported
//! elsewhere check it later.
//!
//! Inside, each part has one job: `db` (the SQLite file and its migrations),
//! `blobs` (the content-addressed files), `index` (versions and aliases),
//! `trust` (the trust policy), `verify` (signatures, trust and digests, the
//! only maker of the `verified` types), `audit` (the log), `publish` and
//! `promotion` (the writes that check first), and [`Runs`] and [`Datasets`]
//! behind handles of their own; `tracking` holds the signed run events that
//! remote trainers record their runs with ([`Registry::track`]). [`Registry`] opens the parts and hands each
//! call to its part; no part knows the `Registry`.
//!
//! With the `http` feature (off by default, on in the CLI), `server` serves a
//! registry over HTTP or HTTPS and `client` talks to one; pulled artifacts are
//! verified against the local trust policy before they are cached. `oci`
//! pushes artifacts to and pulls them from OCI registries (CNCF Wasm layout
//! for plugins), verifying the same way. Both reach the network through
//! `http`, tensorlet's one HTTP client (reqwest over rustls, the system's
//! roots plus a private CA). Without the feature nothing of this is linked.
//!
//! ```no_run
//! use tensorlet_registry::{Kind, Manifest, Registry};
//! let reg = Registry::open("/tmp/home".as_ref())?;
//! let key = reg.keygen("alice")?;
//! reg.trust_add(&key.public(), &["acme".into()])?;
//! let wasm = std::fs::read("scale.wasm").unwrap();
//! let mut m = Manifest::new("acme/scale", "1.0.0", Kind::Preprocessor)?;
//! m.blobs.insert("component".into(), tensorlet_registry::digest(&wasm));
//! reg.publish(&m.sign(&key), &[wasm])?;
//! let verified = reg.verify_str("acme/scale@1.0.0")?;
//! let component = verified.component().unwrap();
//! # Ok::<(), tensorlet_registry::RegistryError>(())
//! ```

mod audit;
mod blobs;
pub mod canonical;
#[cfg(feature = "http")]
pub mod client;
mod datasets;
mod db;
mod digest;
mod durable;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod index;
mod keys;
mod manifest;
pub mod oci;
mod promotion;
mod publish;
mod reference;
mod registry;
mod runs;
#[cfg(feature = "http")]
pub mod server;
mod time;
pub mod tracking;
mod trust;
mod verified;
mod verify;

pub use audit::{AuditCheckpoint, AuditEntry, AuditReport, GENESIS, entry_hash};
pub use datasets::{Dataset, Datasets};
pub use digest::{check_digest, digest, digest_file};
pub use error::{RegistryError, Result};
pub use index::{ArtifactSummary, Published};
pub use keys::{KeyPair, KeyStore, NODE_KEY, PublicKey};
pub use manifest::{COMPONENT, FORMAT, Kind, Manifest, Pin, Signature, SignedManifest};
pub use promotion::AliasMove;
pub use reference::{Reference, Selector, check_alias, check_name, check_version};
pub use registry::Registry;
pub use runs::{
    Checkpoint, RunData, RunDetails, RunEnd, RunHost, RunPipeline, RunPlugin, RunPlugins,
    RunPublish, RunRecord, RunResult, RunStatus, RunTracking, Runs, new_run_id,
};
pub use trust::TrustEntry;
pub use verified::{GRAPH_PREFIX, Provenance, VerifiedArtifact, VerifiedComponent};
