//! A blocking client for a remote registry ([`crate::server`]), and
//! [`pull`], which verifies what it fetches against the *local* trust policy
//! before caching it in the local registry, so a compromised server cannot
//! make a client run anything the client does not trust.

use std::io::Read;
use std::time::Duration;

use crate::audit::AuditCheckpoint;
use crate::error::{RegistryError, Result};
use crate::manifest::{SignedManifest, digest};
use crate::reference::{Reference, Selector};
use crate::server::PublishHeader;
use crate::store::{ArtifactSummary, Published, Registry};
use crate::verified::VerifiedArtifact;

/// A remote registry at an `http://` base URL.
pub struct Remote {
    url: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Remote {
    /// A client for the registry at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(RegistryError::Invalid(format!(
                "`{url}` is not a registry URL; write it like `http://registry.local:7070`"
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build();
        Ok(Remote { url, agent })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, e: ureq::Error) -> RegistryError {
        match e {
            ureq::Error::Status(code, resp) => {
                let body = resp.into_string().unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(body);
                // The server's refusals and lookups are answers, not outages.
                match code {
                    404 => RegistryError::NotFound(format!("{message} (at {})", self.url)),
                    409 | 403 | 400 | 413 => {
                        RegistryError::Invalid(format!("{} answered {code}: {message}", self.url))
                    }
                    _ => RegistryError::Remote {
                        url: self.url.clone(),
                        message: format!("HTTP {code}: {message}"),
                    },
                }
            }
            ureq::Error::Transport(t) => RegistryError::Remote {
                url: self.url.clone(),
                message: format!("cannot reach it: {t}"),
            },
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let mut req = self.agent.get(&format!("{}{path}", self.url));
        for (k, v) in query {
            req = req.query(k, v);
        }
        let resp = req.call().map_err(|e| self.err(e))?;
        let text = resp.into_string().map_err(|e| RegistryError::Remote {
            url: self.url.clone(),
            message: format!("reading the answer: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| RegistryError::Remote {
            url: self.url.clone(),
            message: format!("unexpected answer to {path}: {e}"),
        })
    }

    /// Every version the remote holds.
    pub fn list(&self) -> Result<Vec<ArtifactSummary>> {
        self.get_json("/v1/artifacts", &[])
    }

    /// The remote's signed audit checkpoint now, to keep as a witness of its
    /// log (it is signed by the remote's node key, which only the remote can
    /// check it against: `tensorlet audit verify --checkpoint` there).
    pub fn audit_checkpoint(&self) -> Result<AuditCheckpoint> {
        self.get_json("/v1/audit/checkpoint", &[])
    }

    /// Resolves a reference remotely: the summary and the (unverified) signed manifest.
    pub fn resolve(&self, reference: &Reference) -> Result<(ArtifactSummary, SignedManifest)> {
        #[derive(serde::Deserialize)]
        struct Answer {
            summary: ArtifactSummary,
            manifest: SignedManifest,
        }
        let a: Answer = self.get_json("/v1/resolve", &[("ref", &reference.to_string())])?;
        Ok((a.summary, a.manifest))
    }

    /// A blob, checked against its digest.
    pub fn blob(&self, d: &str) -> Result<Vec<u8>> {
        let resp = self
            .agent
            .get(&format!("{}/v1/blobs/{d}", self.url))
            .call()
            .map_err(|e| self.err(e))?;
        let mut bytes = Vec::new();
        resp.into_reader()
            .read_to_end(&mut bytes)
            .map_err(|e| RegistryError::Remote {
                url: self.url.clone(),
                message: format!("reading blob {d}: {e}"),
            })?;
        if digest(&bytes) != d {
            return Err(RegistryError::Refused {
                artifact: d.to_string(),
                key_id: "none".into(),
                reason: format!(
                    "{} served bytes that do not hash to the digest asked for",
                    self.url
                ),
            });
        }
        Ok(bytes)
    }

    /// Publishes to the remote (it checks the signature against its own trust policy).
    pub fn publish(&self, signed: &SignedManifest, blobs: &[Vec<u8>]) -> Result<Published> {
        let header = PublishHeader {
            manifest: signed.clone(),
            sizes: blobs.iter().map(Vec::len).collect(),
        };
        let mut body = serde_json::to_vec(&header).expect("JSON");
        body.push(b'\n');
        for b in blobs {
            body.extend_from_slice(b);
        }
        let resp = self
            .agent
            .post(&format!("{}/v1/publish", self.url))
            .set("content-type", "application/octet-stream")
            .send_bytes(&body)
            .map_err(|e| self.err(e))?;
        let text = resp.into_string().unwrap_or_default();
        serde_json::from_str(&text).map_err(|e| RegistryError::Remote {
            url: self.url.clone(),
            message: format!("unexpected answer to publish: {e}"),
        })
    }
}

/// Fetches `reference` (and everything it pins) from `remote`, verifies it
/// against `local`'s trust policy and caches it there by digest; then
/// returns the locally verified artifact. An artifact already cached is not
/// downloaded again. Audited in `local` as `pull` (or `pull.refused`).
pub fn pull(local: &Registry, remote: &Remote, reference: &Reference) -> Result<VerifiedArtifact> {
    let (summary, signed) = remote.resolve(reference)?;
    let m = &signed.manifest;
    let d = m.digest();
    if d != summary.digest || m.name != reference.name {
        return Err(RegistryError::Refused {
            artifact: reference.to_string(),
            key_id: signed.key_id(),
            reason: format!(
                "{} answered with a manifest for {} ({d}) that does not match what it claims ({})",
                remote.url(),
                m.reference(),
                summary.digest
            ),
        });
    }
    let pinned = Reference {
        name: m.name.clone(),
        selector: Selector::Digest(d.clone()),
    };
    if local.resolve(&pinned).is_ok() {
        return local.verify(&pinned);
    }
    for pin in m.depends.values() {
        pull(local, remote, &pin.exact())?;
    }
    let mut blobs = Vec::new();
    for bd in m.blobs.values() {
        blobs.push(remote.blob(bd)?);
    }
    local.import_pulled(&signed, &blobs, remote.url())
}
