//! tensorlet's one HTTP client: reqwest's blocking client over rustls, with
//! ring as the crypto provider. The registry [`client`](crate::client) and
//! the CLI's own requests use [`HttpClient`]; OCI drives the same reqwest
//! through `oci-client` with the same root certificates. So every URL
//! tensorlet accepts works over `https://`, and every failure says why.
//!
//! **Trust.** The operating system's root certificates (read with
//! `rustls-native-certs`: the system store, or the files `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` name), plus the PEM files of [`HttpSettings::ca_files`]
//! for a private CA (the CLI takes one from [`ENV_CA_FILE`]).
//!
//! **Errors.** [`HttpError`] tells apart a connection that could not be made
//! ([`HttpError::Unreachable`]: the only failure after which a cache may
//! answer instead), a TLS failure that names the certificate's problem (an
//! unknown issuer, an expiry, another host name), an answer that was cut
//! short or late, and an error status.
//!
//! ```no_run
//! use tensorlet_registry::http::{HttpClient, HttpSettings};
//! let client = HttpClient::new(&HttpSettings::default())?;
//! let metrics = client.get("https://serve.local:8080/metrics")?.error_for_status()?;
//! println!("{}", metrics.text());
//! # Ok::<(), tensorlet_registry::http::HttpError>(())
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, RootCertStore};

/// A PEM file of root certificates to trust besides the system's (a private
/// CA), for every `https://` URL: registries, OCI registries, servers.
pub const ENV_CA_FILE: &str = "TENSORLET_CA_FILE";

/// How the client connects and what it trusts.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// PEM files of root certificates trusted besides the system's (a
    /// private CA). Default: none.
    pub ca_files: Vec<PathBuf>,
    /// How long connecting may take: TCP and the TLS handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a whole exchange may take, answer included. Default 300 s.
    pub timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            ca_files: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
        }
    }
}

impl HttpSettings {
    /// The defaults, trusting also the file [`ENV_CA_FILE`] names (when set).
    pub fn from_env() -> Self {
        HttpSettings {
            ca_files: std::env::var_os(ENV_CA_FILE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .into_iter()
                .collect(),
            ..HttpSettings::default()
        }
    }
}

/// Why an HTTP exchange failed. The messages are sentences for people.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The settings or the request cannot be used: an unreadable CA file, one
    /// without certificates, a malformed URL.
    #[error("{0}")]
    Config(String),
    /// No connection could be made: refused, no route, the host name does not
    /// resolve, or connecting timed out. Nothing was said to the server.
    #[error("cannot connect to {url}: {reason}")]
    Unreachable {
        /// The URL asked for.
        url: String,
        /// Why, in words.
        reason: String,
    },
    /// The TLS handshake failed: the server's certificate is not trusted,
    /// expired or for another name, or the server does not speak TLS.
    #[error("TLS with {url} failed: {reason}")]
    Tls {
        /// The URL asked for.
        url: String,
        /// Why, in words, with what to do about it.
        reason: String,
    },
    /// Connected, but no complete answer came: it timed out, or the
    /// connection closed or broke.
    #[error("no complete answer from {url}: {reason}")]
    Transfer {
        /// The URL asked for.
        url: String,
        /// Why, in words.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}: {message}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
        /// The server's `{"error": …}`, or the start of its answer.
        message: String,
    },
}

impl HttpError {
    /// Whether no connection could be made (see [`HttpError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Unreachable { .. })
    }

    /// What went wrong, without the URL (for messages that name it already).
    pub fn reason(&self) -> String {
        match self {
            HttpError::Config(m) => m.clone(),
            HttpError::Unreachable { reason, .. } => format!("cannot connect: {reason}"),
            HttpError::Tls { reason, .. } => format!("TLS failed: {reason}"),
            HttpError::Transfer { reason, .. } => format!("no complete answer: {reason}"),
            HttpError::Status {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
        }
    }
}

/// The root certificates a client trusts, and where they came from.
#[derive(Clone, Debug)]
pub(crate) struct Roots {
    /// The system's, then the CA files', each usable as a root.
    pub(crate) certs: Vec<CertificateDer<'static>>,
    /// How many of `certs` are the system's.
    system: usize,
    /// The CA files the rest came from.
    files: Vec<PathBuf>,
}

impl Roots {
    /// The system's roots and those in `ca_files` (each must hold at least
    /// one PEM certificate).
    pub(crate) fn load(ca_files: &[PathBuf]) -> Result<Roots, HttpError> {
        // Certificates of the system store that cannot be read or used as
        // roots are skipped, as other TLS clients do; a store that is absent
        // is simply empty.
        let usable = |c: &CertificateDer<'static>| RootCertStore::empty().add(c.clone());
        let mut certs: Vec<_> = rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .filter(|c| usable(c).is_ok())
            .collect();
        let system = certs.len();
        for file in ca_files {
            let pem = std::fs::read(file).map_err(|e| {
                HttpError::Config(format!("cannot read the CA file {}: {e}", file.display()))
            })?;
            let before = certs.len();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    HttpError::Config(format!(
                        "the CA file {} is not valid PEM: {e}",
                        file.display()
                    ))
                })?;
                usable(&cert).map_err(|e| {
                    HttpError::Config(format!(
                        "a certificate in the CA file {} cannot be a root certificate: {e}",
                        file.display()
                    ))
                })?;
                certs.push(cert);
            }
            if certs.len() == before {
                return Err(HttpError::Config(format!(
                    "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                )));
            }
        }
        Ok(Roots {
            certs,
            system,
            files: ca_files.to_vec(),
        })
    }

    /// The rustls root store of `certs`.
    fn store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(self.certs.iter().cloned());
        store
    }

    fn files_text(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What to do about a certificate from an issuer none of the roots is.
    fn unknown_issuer_hint(&self) -> String {
        let mut trusted = format!("the system's {} root certificates", self.system);
        if self.system == 0 {
            trusted = "no system root certificates (install the ca-certificates package)".into();
        }
        if self.files.is_empty() {
            format!(
                "its certificate is signed by a CA this machine does not trust (unknown \
                 issuer; trusted: {trusted}); if the certificate comes from a private CA, point \
                 {ENV_CA_FILE} at that CA's PEM file"
            )
        } else {
            format!(
                "its certificate is signed by a CA this machine does not trust (unknown \
                 issuer; trusted: {trusted} and the CA file {}): is that the CA that signed \
                 the server's certificate?",
                self.files_text()
            )
        }
    }
}

/// The TLS client configuration over `roots`: rustls with ring, TLS 1.2 and
/// 1.3, HTTP/1.1.
fn tls_config(roots: &Roots) -> Result<rustls::ClientConfig, HttpError> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HttpError::Config(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots.store())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An answer, whatever its status.
#[derive(Clone, Debug)]
pub struct Response {
    /// The URL asked for.
    pub url: String,
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Itself when the status is a success (2xx), else [`HttpError::Status`]
    /// with the server's `{"error": …}` or the start of its answer.
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let text = self.text();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                let t = text.trim();
                match t.char_indices().nth(300) {
                    Some((i, _)) => format!("{}…", &t[..i]),
                    None if t.is_empty() => "(no body)".into(),
                    None => t.to_string(),
                }
            });
        Err(HttpError::Status {
            url: self.url,
            status: self.status,
            message,
        })
    }
}

/// The HTTP client (cheap to clone: clones share connections). Blocking;
/// call it from ordinary threads, not from inside an async task.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::blocking::Client,
    roots: Arc<Roots>,
    settings: Arc<HttpSettings>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client with `settings`; fails only on an unusable CA file.
    pub fn new(settings: &HttpSettings) -> Result<Self, HttpError> {
        let roots = Roots::load(&settings.ca_files)?;
        let client = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls_config(&roots)?)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("tensorlet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(HttpClient {
            client,
            roots: Arc::new(roots),
            settings: Arc::new(settings.clone()),
        })
    }

    /// `GET url`.
    pub fn get(&self, url: &str) -> Result<Response, HttpError> {
        self.request("GET", url, &[], Vec::new())
    }

    /// `POST url` with a body of type `content_type`.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        self.request("POST", url, &[("content-type", content_type)], body)
    }

    /// Any request. An answer with an error status is still an `Ok`
    /// ([`Response::error_for_status`] turns it into an error).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| HttpError::Config(format!("`{method}` is not an HTTP method")))?;
        let bodiless = matches!(method, reqwest::Method::GET | reqwest::Method::HEAD);
        let mut req = self.client.request(method, url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !(bodiless && body.is_empty()) {
            req = req.body(body);
        }
        let resp = req.send().map_err(|e| self.error(url, &e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.bytes().map_err(|e| self.error(url, &e))?.to_vec();
        Ok(Response {
            url: url.to_string(),
            status,
            headers,
            body,
        })
    }

    fn error(&self, url: &str, e: &reqwest::Error) -> HttpError {
        if e.is_builder() {
            return HttpError::Config(format!("cannot request `{url}`: {}", innermost(e)));
        }
        classify(url, e, &self.roots, &self.settings)
    }
}

/// What failed in an exchange that reqwest reports as `e`.
pub(crate) fn classify(
    url: &str,
    e: &reqwest::Error,
    roots: &Roots,
    settings: &HttpSettings,
) -> HttpError {
    let url = url.to_string();
    let https = url.starts_with("https://");
    if let Some(tls) = find::<rustls::Error>(e) {
        return HttpError::Tls {
            url,
            reason: tls_reason(tls, roots),
        };
    }
    let kind = io_kind(e);
    if e.is_connect() {
        if https && kind == Some(std::io::ErrorKind::UnexpectedEof) {
            return HttpError::Tls {
                url,
                reason: "the server closed the connection during the TLS handshake; does it \
                         serve HTTPS on this port?"
                    .into(),
            };
        }
        let reason = if e.is_timeout() {
            format!(
                "no connection within {} s",
                settings.connect_timeout.as_secs_f64()
            )
        } else if kind == Some(std::io::ErrorKind::ConnectionRefused) {
            "connection refused: nothing listens on that port".into()
        } else if chain(e).iter().any(|m| m.starts_with("dns error")) {
            format!("the host name does not resolve ({})", innermost(e))
        } else {
            innermost(e)
        };
        return HttpError::Unreachable { url, reason };
    }
    let reason = if e.is_timeout() {
        format!("no answer within {} s", settings.timeout.as_secs_f64())
    } else if !https
        && chain(e)
            .iter()
            .any(|m| m.contains("connection closed before") || m.contains("invalid HTTP version"))
    {
        // What a TLS server does with a plain request: close, or answer
        // with a TLS alert that is not HTTP.
        format!(
            "{}; if the server serves HTTPS, use an https:// URL",
            innermost(e)
        )
    } else {
        innermost(e)
    };
    HttpError::Transfer { url, reason }
}

/// A TLS failure in words, with what to do about it.
fn tls_reason(e: &rustls::Error, roots: &Roots) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => roots.unknown_issuer_hint(),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "its certificate expired on {} (the server must renew it)",
                crate::time::utc_of_unix(not_after.as_secs())
            ),
            CertificateError::Expired => {
                "its certificate has expired (the server must renew it)".into()
            }
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "its certificate is not valid before {} (check this machine's clock)",
                crate::time::utc_of_unix(not_before.as_secs())
            ),
            CertificateError::NotValidYet => {
                "its certificate is not valid yet (check this machine's clock)".into()
            }
            CertificateError::NotValidForNameContext { .. } | CertificateError::NotValidForName => {
                format!(
                    "its certificate is for another host name ({c}); reach it by a name the \
                     certificate lists"
                )
            }
            CertificateError::Revoked => "its certificate has been revoked".into(),
            CertificateError::BadSignature => "its certificate's signature does not verify".into(),
            other => format!("its certificate was rejected: {other}"),
        },
        rustls::Error::InvalidMessage(_) => format!(
            "the server does not speak TLS on this port ({e}); if it serves plain HTTP, use an \
             http:// URL"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("the server ended the TLS handshake with the alert {alert:?}")
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// The error messages of `e`'s chain, outermost first.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    walk(e, &mut |x| {
        out.push(x.to_string());
        false
    });
    out
}

/// The innermost message of `e`'s chain (reqwest's outer ones only repeat
/// the URL).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).pop().unwrap_or_default()
}

/// Visits `e` and its sources until `f` says stop; also looks inside
/// `io::Error`s, whose `source()` skips the error they wrap.
fn walk(
    e: &(dyn std::error::Error + 'static),
    f: &mut dyn FnMut(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut next = Some(e);
    while let Some(x) = next {
        if f(x) {
            return true;
        }
        if let Some(io) = x.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            return walk(inner, f);
        }
        next = x.source();
    }
    false
}

/// The first error of type `T` in `e`'s chain.
pub(crate) fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut found: Option<&T> = None;
    let mut next = Some(e);
    while let Some(x) = next {
        if let Some(t) = x.downcast_ref::<T>() {
            found = Some(t);
            break;
        }
        if let Some(io) = x.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            next = Some(inner);
            continue;
        }
        next = x.source();
    }
    found
}

/// The kind of the first `io::Error` in `e`'s chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    find::<std::io::Error>(e).map(std::io::Error::kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = HttpClient::new(&HttpSettings {
            ca_files: vec![f.clone()],
            ..HttpSettings::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("holds no PEM certificate") && e.contains("ca.pem"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = HttpClient::new(&HttpSettings {
            ca_files: vec![missing],
            ..HttpSettings::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot read the CA file") && e.contains("missing.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_refused_connection_is_unreachable() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HttpClient::new(&HttpSettings::default()).unwrap();
        for scheme in ["http", "https"] {
            let e = client
                .get(&format!("{scheme}://127.0.0.1:{port}/"))
                .unwrap_err();
            assert!(e.is_unreachable(), "{e:?}");
            assert!(e.to_string().contains("connection refused"), "{e}");
        }
    }

    #[test]
    fn a_server_that_never_answers_times_out_and_is_not_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts, reads, never answers.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                held.push(s);
            }
        });
        let client = HttpClient::new(&HttpSettings {
            connect_timeout: Duration::from_millis(500),
            timeout: Duration::from_millis(800),
            ..HttpSettings::default()
        })
        .unwrap();
        let e = client.get(&format!("http://{addr}/")).unwrap_err();
        assert!(
            matches!(&e, HttpError::Transfer { reason, .. } if reason.contains("no answer within 0.8 s")),
            "{e:?}"
        );
        // Over https the silence falls in the handshake, part of connecting.
        let e = client.get(&format!("https://{addr}/")).unwrap_err();
        assert!(
            matches!(&e, HttpError::Unreachable { reason, .. } if reason.contains("within 0.5 s")),
            "{e:?}"
        );
    }

    #[test]
    fn a_plain_server_reached_over_https_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        let client = HttpClient::new(&HttpSettings::default()).unwrap();
        let e = client.get(&format!("https://{addr}/")).unwrap_err();
        assert!(
            matches!(&e, HttpError::Tls { reason, .. } if reason.contains("does not speak TLS") && reason.contains("http://")),
            "{e:?}"
        );
        let r = client.get(&format!("http://{addr}/")).unwrap();
        assert_eq!(r.status, 400);
        let e = r.error_for_status().unwrap_err().to_string();
        assert!(e.contains("answered HTTP 400: (no body)"), "{e}");
    }
}
