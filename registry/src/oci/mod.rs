//! Artifacts through OCI registries (the OCI distribution API), so they
//! travel through infrastructure that already scales: any registry that
//! stores OCI image manifests (the CNCF distribution registry, Harbor, Zot,
//! cloud registries).
//!
//! # Layout
//!
//! The artifact `ns/name@version` lives in repository `[prefix/]ns/name`
//! under the tag `version` (a semantic version, as Wasm package tooling
//! expects); an alias (`production`) is a tag that moves. Every artifact is
//! an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`):
//!
//! - a **plugin** follows the CNCF Wasm OCI artifact layout: config
//!   `application/vnd.wasm.config.v0+json` (`architecture: wasm`,
//!   `os: wasip2`, `layerDigests`, the component's imports and exports) and
//!   one `application/wasm` layer, the component, so other Wasm tools can
//!   fetch it; its tensorlet manifest rides in the annotation
//!   `dev.tensorlet.manifest`;
//! - a **pipeline** or **model** has config
//!   `application/vnd.tensorlet.config.v1+json` and layers: first its
//!   tensorlet manifest (`application/vnd.tensorlet.manifest.v1+json`, whose
//!   layer digest *is* the artifact's digest), then each blob
//!   (`application/vnd.tensorlet.blob.v1`, or
//!   `application/vnd.tensorlet.safetensors.v1` for weights), titled with its
//!   role in `org.opencontainers.image.title`.
//!
//! The ed25519 signature travels in the annotation `dev.tensorlet.signature`
//! (the JSON of [`crate::Signature`]); `dev.tensorlet.depends` maps each dependency
//! role to the OCI manifest digest it was pushed as, so a pull fetches
//! dependencies by immutable digest. Annotations only *locate* things: a pull
//! checks the signature against the local trust policy and every digest the
//! signed manifest pins, exactly as [`crate::client::pull`] does, so a
//! registry (or anyone who can write to it) cannot make a node run anything
//! its trust policy does not accept.
//!
//! The wire is the `oci-client` crate (reqwest over rustls): HTTPS with the
//! system's roots plus an optional private CA, plain HTTP for registries on a
//! trusted network (loopback by default; [`ENV_PLAIN_HTTP`] names others),
//! anonymous, basic or bearer-token access (credentials from
//! `TENSORLET_OCI_USERNAME`/`_PASSWORD` or Docker's `config.json`), and
//! blob redirects to object stores. See [`OciSettings`].
//!
//! The same artifacts can be written to and read from an OCI image layout
//! directory (`oci-layout:DIR`, `layout`) instead of a registry, with the
//! same checks: how a model travels as files (a volume, KServe's
//! `/mnt/models`).
//!
//! The manifest formats (`format`) are built without the `http` feature;
//! the network half (`remote`, `transport`, `layout`) needs it.

mod format;
#[cfg(feature = "http")]
mod layout;
#[cfg(feature = "http")]
mod remote;
#[cfg(feature = "http")]
mod transport;

pub use format::*;
#[cfg(feature = "http")]
pub use remote::*;
