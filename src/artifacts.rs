//! What the commands that touch the registry share: opening the local
//! registry, the optional remote (`--registry`), the development-only
//! `--allow-unsigned` escape hatch, and how their notices read.

use std::sync::Arc;

use anyhow::{Context, Result};
use tensorlet_registry::Registry;
use tensorlet_registry::client::Remote;
use tensorlet_runtime::source::{Notice, Sources};

use crate::{bundled, common};

/// Opens the registry in `$TENSORLET_HOME`.
pub fn open() -> Result<Registry> {
    let home = common::home();
    Registry::open(&home).with_context(|| format!("cannot open the registry in {}", home.display()))
}

/// A client for the tensorlet registry at `url` (`http://…` or `https://…`),
/// through the process's HTTP client (so `TENSORLET_CA_FILE` applies).
pub fn remote(url: &str) -> Result<Remote> {
    Ok(Remote::with_client(url, common::http_client()?)?)
}

/// `--registry`: use a remote registry as well as the local one.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RegistryArgs {
    /// A remote registry (`https://host:port`, or `http://` on a trusted
    /// network). Artifacts pulled from it are verified against the local
    /// trust policy and cached locally by digest; when no connection to it
    /// can be made the local cache answers (a TLS or HTTP error is an error).
    /// A private CA's certificate goes in `TENSORLET_CA_FILE`.
    #[arg(long, env = "TENSORLET_REGISTRY")]
    pub registry: Option<String>,
}

impl RegistryArgs {
    /// The remote, when one is set.
    pub fn remote(&self) -> Result<Option<Remote>> {
        match self.registry.as_deref().filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(url) => Ok(Some(remote(url)?)),
        }
    }

    /// Where artifacts come from: the local registry, this remote, the
    /// bundled plugins; notices printed on stderr.
    pub fn sources(&self) -> Result<Sources> {
        Ok(Sources::default()
            .with_remote(self.remote()?)
            .with_bundled(bundled::BUNDLED)
            .with_notify(Arc::new(print_notice)))
    }
}

/// `--allow-unsigned`: for local development only.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct UnsignedArgs {
    /// DEVELOPMENT ONLY: run `path`/`bundled` pipeline stages and model
    /// directories whose components are not verified registry artifacts.
    /// Prints a warning for every such component and records it in the audit log.
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// A notice of the libraries, on stderr.
pub fn print_notice(n: &Notice) {
    eprintln!("{n}");
}
