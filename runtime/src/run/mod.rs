//! Training runs as records: what a run recorded about its host, and runs
//! read back with their per-epoch metrics for listings and comparisons.

pub mod history;
pub mod host;
