//! A blocking client for a remote registry ([`crate::server`]), and
//! [`pull`], which verifies what it fetches against the *local* trust policy
//! before caching it in the local registry, so a compromised server cannot
//! make a client run anything the client does not trust.

use crate::audit::AuditCheckpoint;
use crate::digest::digest;
use crate::error::{RegistryError, Result};
use crate::http::{HttpClient, HttpError, HttpSettings};
use crate::index::{ArtifactSummary, Published};
use crate::manifest::SignedManifest;
use crate::reference::{Reference, Selector};
use crate::registry::Registry;
use crate::runs::{Checkpoint, RunRecord};
use crate::server::{Framed, PublishHeader, RunAnswer, TrackHeader};
use crate::tracking::SignedRunEvent;
use crate::verified::VerifiedArtifact;

/// A remote registry at an `http://` or `https://` base URL.
pub struct Remote {
    url: String,
    http: HttpClient,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Remote {
    /// A client for the registry at `url` (`http://host:port` or
    /// `https://host:port`) that trusts the system's root certificates.
    pub fn new(url: &str) -> Result<Self> {
        let http = HttpClient::new(&HttpSettings::default()).map_err(|e| {
            RegistryError::Invalid(format!("cannot set up a client for {url}: {e}"))
        })?;
        Self::with_client(url, http)
    }

    /// A client for the registry at `url` that talks through `http` (whose
    /// settings say which CAs it trusts and how long it waits).
    pub fn with_client(url: &str, http: HttpClient) -> Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(RegistryError::Invalid(format!(
                "`{url}` is not a registry URL; write it like `https://registry.local:7070` \
                 (or `http://…` on a trusted network)"
            )));
        }
        Ok(Remote { url, http })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `e` as a registry error: no connection is [`RegistryError::Unreachable`]
    /// (a cache may answer instead); the server's refusals and lookups are
    /// answers; TLS failures and broken answers are [`RegistryError::Remote`].
    fn err(&self, e: HttpError) -> RegistryError {
        match e {
            HttpError::Status {
                status, message, ..
            } => match status {
                404 => RegistryError::NotFound(format!("{message} (at {})", self.url)),
                409 | 403 | 400 | 413 => {
                    RegistryError::Invalid(format!("{} answered {status}: {message}", self.url))
                }
                _ => RegistryError::Remote {
                    url: self.url.clone(),
                    message: format!("HTTP {status}: {message}"),
                },
            },
            HttpError::Unreachable { reason, .. } => RegistryError::Unreachable {
                url: self.url.clone(),
                message: reason,
            },
            HttpError::Config(m) => RegistryError::Invalid(m),
            other => RegistryError::Remote {
                url: self.url.clone(),
                message: other.reason(),
            },
        }
    }

    /// `GET path` with a successful status.
    fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.http
            .get(&format!("{}{path}", self.url))
            .and_then(|r| r.error_for_status())
            .map(|r| r.body)
            .map_err(|e| self.err(e))
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.get(path)?;
        serde_json::from_slice(&body).map_err(|e| RegistryError::Remote {
            url: self.url.clone(),
            message: format!("unexpected answer to {path}: {e}"),
        })
    }

    /// Every version the remote holds.
    pub fn list(&self) -> Result<Vec<ArtifactSummary>> {
        self.get_json("/v1/artifacts")
    }

    /// The remote's signed audit checkpoint now, to keep as a witness of its
    /// log (it is signed by the remote's node key, which only the remote can
    /// check it against: `tensorlet audit verify --checkpoint` there).
    pub fn audit_checkpoint(&self) -> Result<AuditCheckpoint> {
        self.get_json("/v1/audit/checkpoint")
    }

    /// Resolves a reference remotely: the summary and the (unverified) signed manifest.
    pub fn resolve(&self, reference: &Reference) -> Result<(ArtifactSummary, SignedManifest)> {
        #[derive(serde::Deserialize)]
        struct Answer {
            summary: ArtifactSummary,
            manifest: SignedManifest,
        }
        let a: Answer = self.get_json(&format!(
            "/v1/resolve?ref={}",
            query_escape(&reference.to_string())
        ))?;
        Ok((a.summary, a.manifest))
    }

    /// A blob, checked against its digest.
    pub fn blob(&self, d: &str) -> Result<Vec<u8>> {
        let bytes = self.get(&format!("/v1/blobs/{d}"))?;
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
        let blobs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let body = Framed::body(
            PublishHeader {
                manifest: signed.clone(),
            },
            &blobs,
        );
        let resp = self
            .http
            .post(
                &format!("{}/v1/publish", self.url),
                "application/octet-stream",
                body,
            )
            .and_then(|r| r.error_for_status())
            .map_err(|e| self.err(e))?;
        serde_json::from_slice(&resp.body).map_err(|e| RegistryError::Remote {
            url: self.url.clone(),
            message: format!("unexpected answer to publish: {e}"),
        })
    }
}

impl Remote {
    /// Records a signed run event with the blob it carries on the remote
    /// (central run tracking; it checks the key against its trust policy for
    /// the run's namespace).
    pub fn track(&self, event: &SignedRunEvent, blob: Option<&[u8]>) -> Result<()> {
        let body = Framed::body(
            TrackHeader {
                event: event.clone(),
            },
            blob.as_slice(),
        );
        self.http
            .post(
                &format!("{}/v1/runs", self.url),
                "application/octet-stream",
                body,
            )
            .and_then(|r| r.error_for_status())
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Every run the remote records, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.get_json("/v1/runs")
    }

    /// A run the remote records (by id or a prefix only it has) and its
    /// checkpoints, their metrics as the trainer wrote them.
    pub fn run(&self, id: &str) -> Result<(RunRecord, Vec<Checkpoint<serde_json::Value>>)> {
        let a: RunAnswer = self.get_json(&format!("/v1/runs/{}", query_escape(id)))?;
        Ok((a.run, a.checkpoints))
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

/// `s` percent-encoded for a query value (RFC 3986 unreserved kept).
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            super::query_escape("acme/iris@sha256:ab+c d"),
            "acme%2Firis%40sha256%3Aab%2Bc%20d"
        );
    }
}
