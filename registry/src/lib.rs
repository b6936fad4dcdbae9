//! tensorlet's artifact registry.
//!
//! This crate will hold the SQLite store of content-addressed blobs, the ed25519
//! signing of artifact manifests, the trust policy that maps keys to namespaces,
//! and the hash-chained audit log. Until then the runtime loads plugins from
//! local paths and records nothing.
