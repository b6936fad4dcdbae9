//! What the commands that touch the registry share: opening the local
//! registry, the optional remote (`--registry`), verified fetches, and the
//! development-only `--allow-unsigned` escape hatch.

use anyhow::{Context, Result};
use tensorlet_runtime::RuntimeError;
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::registry::client::{self, Remote};
use tensorlet_runtime::registry::{
    Reference, Registry, RegistryError, VerifiedArtifact, VerifiedComponent,
};

use crate::common;

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

    /// Verifies a reference, pulling it (and what it pins) from the remote
    /// first when one is set; the local cache answers only when no
    /// connection to the remote can be made (it says so). Warns about
    /// yanked versions.
    pub fn fetch(
        &self,
        reg: &Registry,
        reference: &str,
    ) -> Result<VerifiedArtifact, RegistryError> {
        let r = Reference::parse(reference)?;
        let remote = self
            .remote()
            .map_err(|e| RegistryError::Invalid(format!("{e:#}")))?;
        let artifact = match remote {
            None => reg.verify(&r)?,
            Some(remote) => match client::pull(reg, &remote, &r) {
                Err(RegistryError::Unreachable { url, message }) => {
                    eprintln!(
                        "warning: registry {url} is unreachable ({message}); using the local cache"
                    );
                    reg.verify(&r)?
                }
                other => other?,
            },
        };
        if artifact.yanked() {
            eprintln!(
                "warning: {} is yanked; it runs because it was named exactly",
                artifact.reference()
            );
        }
        Ok(artifact)
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

/// The loud, audited unsigned path.
pub fn unsigned(
    reg: &Registry,
    name: &str,
    bytes: Vec<u8>,
) -> Result<VerifiedComponent, RuntimeError> {
    let c = reg.allow_unsigned(name, bytes)?;
    eprintln!(
        "WARNING: --allow-unsigned: running `{name}` ({}) WITHOUT signature verification; \
         recorded in the audit log",
        c.digest()
    );
    Ok(c)
}

/// Resolves pipeline stages: `ref` through registry verification; `path`
/// and `bundled` only with `--allow-unsigned`.
pub fn resolve_stage(
    reg: &Registry,
    remote: &RegistryArgs,
    unsigned_ok: bool,
    source: &PluginSource,
) -> Result<VerifiedComponent, RuntimeError> {
    match source {
        PluginSource::Registry(r) => {
            let a = remote.fetch(reg, r)?;
            a.component().ok_or_else(|| RuntimeError::Load {
                plugin: a.reference(),
                message: format!("it is a {}, not a plugin", a.kind()),
            })
        }
        local => {
            let (name, bytes) = common::resolve(local)?;
            if !unsigned_ok {
                return Err(RuntimeError::Load {
                    plugin: name,
                    message: "it is a local `path`/`bundled` plugin, not a signed registry \
                              artifact; publish it (`tensorlet publish <file.wasm> --name ns/name \
                              --version 1.0.0 --kind <kind> --key <key>`) and name it with `ref`, \
                              or pass --allow-unsigned for local development"
                        .into(),
                });
            }
            unsigned(reg, &name, bytes)
        }
    }
}
