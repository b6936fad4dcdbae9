//! Where artifacts come from: the local registry, optionally a remote
//! tensorlet registry that is pulled from first (verified against the local
//! trust policy and cached by digest), and, for local development only, the
//! plugins bundled with the program and component files on disk.
//!
//! A [`Sources`] is settled once, from a command's options, and passed down;
//! what an embedder should tell its user (a remote that could not be
//! reached, a yanked version, an unverified component) comes back as a
//! [`Notice`] through the callback it was built with.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tensorlet_registry::client::{self, Remote};
use tensorlet_registry::{Reference, Registry, RegistryError, VerifiedArtifact, VerifiedComponent};

use crate::model::{Model, StageMeta};
use crate::pipeline::{Pipeline, PluginSource};
use crate::{Runtime, RuntimeError, artifacts};

/// Plugins shipped inside a program: name and component bytes.
pub type Bundled = &'static [(&'static str, &'static [u8])];

/// Something the user of a [`Sources`] should be told; none of them stops
/// the work.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// No connection to the remote could be made; the local cache answered.
    Unreachable {
        /// The remote's URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A yanked version runs because it was named exactly.
    Yanked {
        /// `ns/name@version`.
        reference: String,
    },
    /// A component runs without signature verification (audited).
    Unsigned {
        /// The plugin's name.
        name: String,
        /// `sha256:` of its bytes.
        digest: String,
    },
    /// A run trains with a remote registry but no key to sign its records
    /// with, so it is recorded only in this home.
    Untracked {
        /// The remote's URL.
        url: String,
    },
    /// The newest checkpoints of a resumed run are damaged; it continues
    /// after `epoch`.
    DamagedCheckpoints {
        /// The run id.
        run: String,
        /// The last intact epoch.
        epoch: u32,
    },
}

impl fmt::Display for Notice {
    /// The warning as the CLI prints it on stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Unreachable { url, message } => write!(
                f,
                "warning: registry {url} is unreachable ({message}); using the local cache"
            ),
            Notice::Yanked { reference } => write!(
                f,
                "warning: {reference} is yanked; it runs because it was named exactly"
            ),
            Notice::Unsigned { name, digest } => write!(
                f,
                "WARNING: --allow-unsigned: running `{name}` ({digest}) WITHOUT signature \
                 verification; recorded in the audit log"
            ),
            Notice::Untracked { url } => write!(
                f,
                "warning: the run is recorded in this home only: recording it on {url} needs a \
                 key to sign it with (--key)"
            ),
            Notice::DamagedCheckpoints { run, epoch } => write!(
                f,
                "warning: run {run}: the checkpoints after epoch {epoch} are damaged; continuing \
                 after epoch {epoch}"
            ),
        }
    }
}

/// Receives [`Notice`]s.
pub type Notify = Arc<dyn Fn(&Notice) + Send + Sync>;

/// The local registry's companions: a remote to pull from, the bundled
/// plugins, and whether unverified components may run.
///
/// Defaults: no remote, no bundled plugins, unverified components refused,
/// notices logged with `tracing`.
#[derive(Clone)]
pub struct Sources {
    remote: Option<Arc<Remote>>,
    bundled: Bundled,
    allow_unsigned: bool,
    notify: Notify,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            remote: None,
            bundled: &[],
            allow_unsigned: false,
            notify: Arc::new(|n| tracing::warn!("{n:?}")),
        }
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("remote", &self.remote.as_ref().map(|r| r.url()))
            .field("allow_unsigned", &self.allow_unsigned)
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// Pull from `remote` first.
    pub fn with_remote(mut self, remote: Option<Remote>) -> Self {
        self.remote = remote.map(Arc::new);
        self
    }

    /// Plugins that `bundled = "…"` pipeline stages name.
    pub fn with_bundled(mut self, bundled: Bundled) -> Self {
        self.bundled = bundled;
        self
    }

    /// DEVELOPMENT ONLY: let `path`/`bundled` stages and model directories
    /// run components that are not verified registry artifacts (each one is
    /// audited and noticed).
    pub fn allow_unsigned(mut self, allow: bool) -> Self {
        self.allow_unsigned = allow;
        self
    }

    /// Where notices go.
    pub fn with_notify(mut self, notify: Notify) -> Self {
        self.notify = notify;
        self
    }

    /// The remote, when there is one.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    /// Whether unverified components may run.
    pub fn unsigned_allowed(&self) -> bool {
        self.allow_unsigned
    }

    /// Tells the user `notice`.
    pub fn notify(&self, notice: Notice) {
        (self.notify)(&notice);
    }

    /// Verifies a reference, pulling it (and what it pins) from the remote
    /// first when there is one; the local cache answers only when no
    /// connection to the remote can be made (noticed). Notices a yanked
    /// version.
    pub fn fetch(
        &self,
        reg: &Registry,
        reference: &str,
    ) -> Result<VerifiedArtifact, RegistryError> {
        let r = Reference::parse(reference)?;
        let artifact = match self.remote() {
            None => reg.verify(&r)?,
            Some(remote) => match client::pull(reg, remote, &r) {
                Err(RegistryError::Unreachable { url, message }) => {
                    self.notify(Notice::Unreachable { url, message });
                    reg.verify(&r)?
                }
                other => other?,
            },
        };
        if artifact.yanked() {
            self.notify(Notice::Yanked {
                reference: artifact.reference(),
            });
        }
        Ok(artifact)
    }

    /// The audited unsigned path, noticed.
    pub fn unsigned(
        &self,
        reg: &Registry,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<VerifiedComponent, RuntimeError> {
        let c = reg.allow_unsigned(name, bytes)?;
        self.notify(Notice::Unsigned {
            name: name.to_string(),
            digest: c.digest().to_string(),
        });
        Ok(c)
    }

    /// Reads a local (`path`/`bundled`) pipeline stage: a plugin name and its
    /// component bytes, unverified.
    pub fn local_plugin(&self, source: &PluginSource) -> Result<(String, Vec<u8>), RuntimeError> {
        match source {
            PluginSource::Registry(r) => Err(RuntimeError::Load {
                plugin: r.clone(),
                message: "a registry reference is not a local file".into(),
            }),
            PluginSource::Path(p) => {
                let bytes = std::fs::read(p).map_err(|e| RuntimeError::Io {
                    path: p.clone(),
                    source: e,
                })?;
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.display().to_string());
                Ok((name, bytes))
            }
            PluginSource::Bundled(name) => match self.bundled.iter().find(|(n, _)| n == name) {
                Some((_, b)) => Ok((name.clone(), b.to_vec())),
                None => Err(RuntimeError::Load {
                    plugin: name.clone(),
                    message: format!(
                        "there is no bundled plugin of that name; bundled plugins are: {}",
                        self.bundled
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            },
        }
    }

    /// Resolves a pipeline stage: `ref` through registry verification;
    /// `path` and `bundled` only when unverified components are allowed.
    pub fn stage(
        &self,
        reg: &Registry,
        source: &PluginSource,
    ) -> Result<VerifiedComponent, RuntimeError> {
        match source {
            PluginSource::Registry(r) => {
                let a = self.fetch(reg, r)?;
                a.component().ok_or_else(|| RuntimeError::Load {
                    plugin: a.reference(),
                    message: format!("it is a {}, not a plugin", a.kind()),
                })
            }
            local => {
                let (name, bytes) = self.local_plugin(local)?;
                if !self.allow_unsigned {
                    return Err(RuntimeError::Load {
                        plugin: name,
                        message: "it is a local `path`/`bundled` plugin, not a signed registry \
                                  artifact; publish it (`tensorlet publish <file.wasm> --name \
                                  ns/name --version 1.0.0 --kind <kind> --key <key>`) and name \
                                  it with `ref`, or pass --allow-unsigned for local development"
                            .into(),
                    });
                }
                self.unsigned(reg, &name, bytes)
            }
        }
    }

    /// A pipeline file, or a registry reference verified and read (with the
    /// artifact).
    pub fn pipeline(
        &self,
        reg: &Registry,
        arg: &str,
    ) -> anyhow::Result<(Pipeline, Option<VerifiedArtifact>)> {
        use anyhow::Context;
        let path = Path::new(arg);
        if path.is_file() || arg.ends_with(".toml") {
            return Ok((Pipeline::load(path)?, None));
        }
        let artifact = self
            .fetch(reg, arg)
            .with_context(|| format!("cannot load pipeline `{arg}`"))?;
        Ok((artifacts::load_pipeline(&artifact)?, Some(artifact)))
    }

    /// Loads a model from the registry (verified with everything it pins) or
    /// from a directory. A directory's components run only when the registry
    /// holds each as a verified artifact, or when unverified ones are
    /// allowed; loading a directory is audited (`model.load`).
    pub fn model(&self, rt: &Runtime, reg: &Registry, arg: &str) -> anyhow::Result<Model> {
        let dir = Path::new(arg);
        if dir.is_dir() {
            let component = |s: &StageMeta, bytes: Vec<u8>| {
                if let Some(c) = reg.component_by_digest(&s.digest)? {
                    return Ok(c);
                }
                if self.allow_unsigned {
                    return self.unsigned(reg, &s.name, bytes);
                }
                Err(RuntimeError::Load {
                    plugin: s.name.clone(),
                    message: format!(
                        "its component {} in {} is not a verified artifact in the registry; \
                         predict from a published model (`tensorlet predict ns/name-model`), \
                         publish the plugin, or pass --allow-unsigned for local development",
                        s.digest,
                        dir.display()
                    ),
                })
            };
            let model = Model::load(rt, dir, &component)?;
            reg.record(
                "model.load",
                &dir.display().to_string(),
                serde_json::json!({"params": model.meta.params_digest}),
            )?;
            return Ok(model);
        }
        if Reference::parse(arg).is_err() {
            anyhow::bail!(
                "`{arg}` is neither a model directory nor a registry reference (`ns/name`, \
                 `ns/name@1.0.0`, `ns/name@production`)"
            );
        }
        let artifact = self.fetch(reg, arg)?;
        Ok(artifacts::load_model(rt, reg, &artifact)?)
    }
}

#[cfg(test)]
mod tests;
