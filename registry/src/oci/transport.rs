//! The wire: the OCI distribution API through the `oci-client` crate
//! (reqwest over rustls, the reqwest of [`crate::http`], trusting the same
//! roots), driven from tensorlet's blocking code on a small runtime of its
//! own. Everything here is about reaching a registry — TLS, plain HTTP for
//! trusted networks, credentials, error messages; what is stored there and
//! how it is verified lives in the parent module.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::Deserialize;

use crate::error::{RegistryError, Result};
use crate::http::{self, HttpError, HttpSettings, Roots};

/// Hosts reached over plain HTTP: `host[:port]` entries, comma-separated;
/// `none` for none. Unset: the loopback hosts (`localhost`, `127.*`, `[::1]`).
pub const ENV_PLAIN_HTTP: &str = "TENSORLET_OCI_PLAIN_HTTP";
/// A PEM file of extra root certificates for OCI registries only (a
/// registry behind a private CA); [`http::ENV_CA_FILE`] applies to every
/// `https://` URL, OCI registries included.
pub const ENV_CA_FILE: &str = "TENSORLET_OCI_CA_FILE";
/// Registry user name (with [`ENV_PASSWORD`]); otherwise `docker login`'s.
pub const ENV_USERNAME: &str = "TENSORLET_OCI_USERNAME";
/// Registry password or access token (with [`ENV_USERNAME`]).
pub const ENV_PASSWORD: &str = "TENSORLET_OCI_PASSWORD";

/// How to reach OCI registries. [`OciSettings::from_env`] reads the
/// `TENSORLET_OCI_*` variables and Docker's client configuration.
#[derive(Clone, Debug, Default)]
pub struct OciSettings {
    /// Hosts (`host` or `host:port`) reached over plain HTTP; `None` means
    /// the loopback hosts.
    pub plain_http: Option<Vec<String>>,
    /// PEM files of root certificates trusted besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Explicit credentials (user, password or token).
    pub credentials: Option<(String, String)>,
    /// Docker's `config.json` (`auths` written by `docker login`, `oras
    /// login`, …); consulted when no explicit credentials are set.
    pub docker_config: Option<PathBuf>,
}

impl OciSettings {
    /// The settings the environment gives (the CA files of both
    /// [`http::ENV_CA_FILE`] and [`ENV_CA_FILE`]).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let plain_http = std::env::var(ENV_PLAIN_HTTP).ok().map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty() && *h != "none")
                .map(str::to_string)
                .collect()
        });
        let credentials = match (var(ENV_USERNAME), var(ENV_PASSWORD)) {
            (Some(u), Some(p)) => Some((u, p)),
            _ => None,
        };
        let docker_config = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")))
            .map(|d| d.join("config.json"));
        OciSettings {
            plain_http,
            ca_files: [http::ENV_CA_FILE, ENV_CA_FILE]
                .into_iter()
                .filter_map(var)
                .map(PathBuf::from)
                .collect(),
            credentials,
            docker_config,
        }
    }

    /// Whether `host` (`name[:port]`) is reached over plain HTTP.
    pub fn is_plain_http(&self, host: &str) -> bool {
        let name = host_name(host);
        match &self.plain_http {
            Some(list) => list.iter().any(|h| h == host || h == name),
            None => name == "localhost" || name.starts_with("127.") || name == "[::1]",
        }
    }
}

/// `name` of `name[:port]` (`[v6]` kept bracketed).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials for `host`, and where they came from (for messages).
fn credentials(settings: &OciSettings, host: &str) -> Result<(RegistryAuth, String)> {
    if let Some((u, p)) = &settings.credentials {
        return Ok((
            RegistryAuth::Basic(u.clone(), p.clone()),
            format!("the credentials of {ENV_USERNAME} ({u})"),
        ));
    }
    let Some(path) = &settings.docker_config else {
        return Ok((RegistryAuth::Anonymous, "no credentials".into()));
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((RegistryAuth::Anonymous, "no credentials".into()));
        }
        Err(e) => {
            return Err(RegistryError::Invalid(format!(
                "cannot read Docker's configuration {}: {e}",
                path.display()
            )));
        }
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| {
        RegistryError::Invalid(format!(
            "Docker's configuration {} is malformed ({e}); fix it, or set {ENV_USERNAME} and \
             {ENV_PASSWORD}",
            path.display()
        ))
    })?;
    let entry = config.auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next() == Some(host)
    });
    if let Some((_, a)) = entry {
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            return Ok((
                RegistryAuth::Basic(u.clone(), p.clone()),
                format!("{}'s login for {host} ({u})", path.display()),
            ));
        }
        if let Some(encoded) = &a.auth {
            use base64::Engine as _;
            let pair = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
                .ok_or_else(|| {
                    RegistryError::Invalid(format!(
                        "the login for {host} in {} is not base64 of `user:password`; log in \
                         again, or set {ENV_USERNAME} and {ENV_PASSWORD}",
                        path.display()
                    ))
                })?;
            let who = format!("{}'s login for {host} ({})", path.display(), pair.0);
            return Ok((RegistryAuth::Basic(pair.0, pair.1), who));
        }
    }
    let helper = config
        .cred_helpers
        .get(host)
        .or(config.creds_store.as_ref());
    Ok((
        RegistryAuth::Anonymous,
        match helper {
            Some(h) => format!(
                "no credentials (Docker's credential helper `{h}` is not consulted; set \
                 {ENV_USERNAME} and {ENV_PASSWORD})"
            ),
            None => "no credentials".into(),
        },
    ))
}

/// One registry host, reached through `oci-client`.
pub(super) struct Transport {
    host: String,
    scheme: &'static str,
    client: Client,
    auth: RegistryAuth,
    /// Where `auth` came from, for messages.
    auth_source: String,
    runtime: tokio::runtime::Runtime,
    /// What the client trusts and how long it waits (for messages).
    roots: Roots,
    http: HttpSettings,
    /// The (repository, push?) scopes authenticated so far.
    authed: Mutex<HashSet<(String, bool)>>,
}

impl Transport {
    pub(super) fn new(host: &str, settings: &OciSettings) -> Result<Self> {
        // oci-client builds its reqwest client itself, with the process's
        // default crypto provider: rustls over ring (C-free-ish; cross-builds
        // for arm64 with gcc), as crate::http uses explicitly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain = settings.is_plain_http(host);
        let roots =
            Roots::load(&settings.ca_files).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let http = HttpSettings {
            ca_files: settings.ca_files.clone(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
        };
        // Exactly the roots crate::http trusts: the system's and the CA files.
        let tls_certs_only = roots
            .certs
            .iter()
            .map(|c| Certificate {
                encoding: CertificateEncoding::Der,
                data: c.to_vec(),
            })
            .collect();
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            tls_certs_only,
            connect_timeout: Some(http.connect_timeout),
            read_timeout: Some(http.timeout),
            user_agent: concat!("tensorlet/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let (auth, auth_source) = credentials(settings, host)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Invalid(format!("cannot start an HTTP client: {e}")))?;
        let client = Client::try_from(config).map_err(|e| {
            RegistryError::Invalid(format!(
                "cannot set up a client for the OCI registry {host}: {e}"
            ))
        })?;
        Ok(Transport {
            host: host.to_string(),
            scheme: if plain { "http" } else { "https" },
            client,
            auth,
            auth_source,
            runtime,
            roots,
            http,
            authed: Mutex::new(HashSet::new()),
        })
    }

    /// `http` or `https`.
    pub(super) fn scheme(&self) -> &'static str {
        self.scheme
    }

    fn reference(&self, repo: &str, selector: &str) -> oci_client::Reference {
        if selector.starts_with("sha256:") {
            oci_client::Reference::with_digest(
                self.host.clone(),
                repo.to_string(),
                selector.to_string(),
            )
        } else {
            oci_client::Reference::with_tag(
                self.host.clone(),
                repo.to_string(),
                selector.to_string(),
            )
        }
    }

    /// Runs `f` once the client holds credentials (or a token) for `repo`.
    fn call<T, F>(&self, what: &str, repo: &str, push: bool, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&Client) -> std::result::Result<T, OciDistributionError>,
    {
        self.runtime.block_on(async {
            let scope = (repo.to_string(), push);
            if !self.authed.lock().expect("auth lock").contains(&scope) {
                let op = if push {
                    RegistryOperation::Push
                } else {
                    RegistryOperation::Pull
                };
                let r = self.reference(repo, "latest");
                self.client
                    .auth(&r, &self.auth, op)
                    .await
                    .map_err(|e| self.error(what, e))?;
                self.authed.lock().expect("auth lock").insert(scope);
            }
            f(&self.client).await.map_err(|e| self.error(what, e))
        })
    }

    /// Whether `e` says the thing asked for does not exist.
    fn is_not_found(e: &OciDistributionError) -> bool {
        match e {
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => true,
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                    )
                })
            }
            _ => false,
        }
    }

    fn is_unauthorized(e: &OciDistributionError) -> bool {
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => true,
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
            _ => false,
        }
    }

    fn error(&self, what: &str, e: OciDistributionError) -> RegistryError {
        let url = format!("oci://{}", self.host);
        if Self::is_not_found(&e) {
            return RegistryError::NotFound(format!(
                "{what} is not in the OCI registry {} ({e})",
                self.host
            ));
        }
        if Self::is_unauthorized(&e) {
            return RegistryError::Remote {
                url,
                message: format!(
                    "{what}: the registry refused access with {}; log in with `docker login \
                     {}` (tensorlet reads Docker's config.json) or set {ENV_USERNAME} and \
                     {ENV_PASSWORD}",
                    self.auth_source, self.host
                ),
            };
        }
        if let OciDistributionError::RequestError(r) = &e {
            let not_tls = matches!(
                http::find::<rustls::Error>(r),
                Some(rustls::Error::InvalidMessage(_))
            );
            let wire = format!("{}://{}", self.scheme, self.host);
            return match http::classify(&wire, r, &self.roots, &self.http) {
                HttpError::Unreachable { reason, .. } => RegistryError::Unreachable {
                    url,
                    message: format!("{what}: {reason}"),
                },
                _ if not_tls => RegistryError::Remote {
                    url,
                    message: format!(
                        "{what}: TLS failed: it does not seem to speak TLS: for a registry on a \
                         trusted network that serves plain HTTP, list it in \
                         {ENV_PLAIN_HTTP}={}",
                        self.host
                    ),
                },
                other => {
                    let hint = if r.is_redirect() {
                        "; it redirected too many times"
                    } else {
                        ""
                    };
                    RegistryError::Remote {
                        url,
                        message: format!("{what}: {}{hint}", other.reason()),
                    }
                }
            };
        }
        let hint = match &e {
            OciDistributionError::ServerError {
                code: 400, message, ..
            } if self.scheme == "http" && message.contains("HTTPS") => {
                format!(
                    "; it speaks TLS, so reach it over https: loopback hosts are plain HTTP \
                     unless {ENV_PLAIN_HTTP} says otherwise (`{ENV_PLAIN_HTTP}=none`), and \
                     other hosts only when it lists them"
                )
            }
            _ => String::new(),
        };
        RegistryError::Remote {
            url,
            message: format!("{what}: {e}{hint}"),
        }
    }

    /// The manifest digest `selector` resolves to, or `None` (one `HEAD`).
    pub(super) fn head(&self, what: &str, repo: &str, selector: &str) -> Result<Option<String>> {
        let r = self.reference(repo, selector);
        let auth = &self.auth;
        match self.call(what, repo, false, async |c| {
            c.fetch_manifest_digest(&r, auth).await
        }) {
            Ok(d) => Ok(Some(d)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A manifest's bytes (its digest is checked when `selector` is one).
    pub(super) fn manifest(&self, what: &str, repo: &str, selector: &str) -> Result<Vec<u8>> {
        let r = self.reference(repo, selector);
        let auth = &self.auth;
        self.call(what, repo, false, async |c| {
            c.pull_manifest_raw(&r, auth, &[super::IMAGE_MANIFEST])
                .await
                .map(|(b, _)| b.to_vec())
        })
    }

    /// A blob's bytes (following redirects to a blob store).
    pub(super) fn blob(&self, what: &str, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let r = self.reference(repo, digest);
        self.call(what, repo, false, async |c| {
            let mut out = Vec::new();
            c.pull_blob(&r, digest, &mut out).await.map(|()| out)
        })
    }

    /// Whether the repository holds a blob.
    pub(super) fn blob_exists(&self, what: &str, repo: &str, digest: &str) -> Result<bool> {
        let r = self.reference(repo, digest);
        self.call(what, repo, true, async |c| c.blob_exists(&r, digest).await)
    }

    /// Uploads a blob.
    pub(super) fn put_blob(
        &self,
        what: &str,
        repo: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let r = self.reference(repo, digest);
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.call(what, repo, true, async |c| {
            c.push_blob(&r, data, digest).await.map(|_| ())
        })
    }

    /// Puts an image manifest under a tag.
    pub(super) fn put_manifest(
        &self,
        what: &str,
        repo: &str,
        tag: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let r = self.reference(repo, tag);
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.call(what, repo, true, async |c| {
            c.push_manifest_raw(
                &r,
                data,
                reqwest::header::HeaderValue::from_static(super::IMAGE_MANIFEST),
            )
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http_unless_told_otherwise() {
        let s = OciSettings::default();
        assert!(s.is_plain_http("127.0.0.1:5000"));
        assert!(s.is_plain_http("localhost"));
        assert!(s.is_plain_http("[::1]:5000"));
        assert!(!s.is_plain_http("ghcr.io"));
        let s = OciSettings {
            plain_http: Some(vec!["registry.ml:5000".into(), "zot".into()]),
            ..OciSettings::default()
        };
        assert!(s.is_plain_http("registry.ml:5000"));
        assert!(!s.is_plain_http("registry.ml:5001"));
        assert!(s.is_plain_http("zot:8080"));
        assert!(!s.is_plain_http("127.0.0.1:5000"));
    }

    #[test]
    fn reads_docker_logins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        // base64("ci:s3cret")
        std::fs::write(
            &path,
            r#"{"auths": {"https://reg.example:5000": {"auth": "Y2k6czNjcmV0"}},
                "credHelpers": {"ecr.example": "ecr-login"}}"#,
        )
        .unwrap();
        let s = OciSettings {
            docker_config: Some(path.clone()),
            ..OciSettings::default()
        };
        let (auth, from) = credentials(&s, "reg.example:5000").unwrap();
        assert!(matches!(auth, RegistryAuth::Basic(u, p) if u == "ci" && p == "s3cret"));
        assert!(from.contains("(ci)"), "{from}");
        let (auth, from) = credentials(&s, "ecr.example").unwrap();
        assert!(matches!(auth, RegistryAuth::Anonymous));
        assert!(
            from.contains("ecr-login") && from.contains(ENV_USERNAME),
            "{from}"
        );
        let (auth, _) = credentials(&s, "other.example").unwrap();
        assert!(matches!(auth, RegistryAuth::Anonymous));

        // Explicit credentials win.
        let s = OciSettings {
            credentials: Some(("bot".into(), "tok".into())),
            docker_config: Some(path.clone()),
            ..OciSettings::default()
        };
        let (auth, _) = credentials(&s, "reg.example:5000").unwrap();
        assert!(matches!(auth, RegistryAuth::Basic(u, _) if u == "bot"));

        std::fs::write(&path, r#"{"auths": {"reg.example": {"auth": "%%%"}}}"#).unwrap();
        let s = OciSettings {
            docker_config: Some(path),
            ..OciSettings::default()
        };
        let e = credentials(&s, "reg.example").err().unwrap().to_string();
        assert!(e.contains("not base64"), "{e}");
    }
}
