//! What tensorlet reads from its users, without the engine: tables
//! ([`data`]: CSV, Parquet, JSON lines), pipeline files ([`pipeline`]), the
//! sandbox limits people write (`2 GiB`, `90s`; [`limits`]) and what is
//! learned from a table ([`task`]).
//!
//! `tensorlet-runtime` re-exports all of it; it lives apart so that
//! whatever reads untrusted bytes can be built and fuzzed without wasmtime
//! (`fuzz/`).

pub mod data;
mod error;
pub mod limits;
pub mod pipeline;
pub mod task;

pub use error::{Error, Result, location};
pub use pipeline::Pipeline;
