//! The registry over HTTP or HTTPS (axum; TLS by rustls through
//! `tokio-rustls`): what `tensorlet registry serve` runs.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/artifacts` | every version (JSON list of summaries) |
//! | `GET /v1/resolve?ref=ns/name@sel` | `{"summary": …, "manifest": <signed manifest>}` |
//! | `GET /v1/blobs/{digest}` | the blob's bytes |
//! | `POST /v1/publish` | one line of JSON `{"manifest": <signed manifest>, "sizes": [n, …]}`, then the blobs' bytes back to back |
//! | `GET /v1/audit/checkpoint` | a signed checkpoint of the server's audit log now, for a witness to keep |
//! | `POST /v1/runs` | a remote trainer's run event: one line `{"event": <signed run event>, "sizes": [n]}`, then its blob (see [`crate::tracking`]) |
//! | `GET /v1/runs` | every run, newest first |
//! | `GET /v1/runs/{id}` | `{"run": …, "checkpoints": […]}` (an id or a prefix only it has) |
//!
//! A publish is accepted only when the manifest is signed by a key that this
//! server's trust policy allows for the namespace (the same rule as a local
//! publish); so is a run event, for the run's namespace. Clients never take
//! the server's word: they verify what they pull
//! against their own trust policy. Errors are `{"error": "…"}` with 4xx for
//! the caller's mistakes (403 refused, 404 unknown, 409 version exists, 413
//! body too large); internal errors answer 500 without details.
//!
//! With a [`TlsIdentity`] (a certificate chain and its key, PEM) in the
//! [`ServerConfig`] it serves HTTPS only; clients trust it through their
//! system roots or a private CA (`TENSORLET_CA_FILE`, see [`crate::http`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::error::{RegistryError, Result};
use crate::manifest::SignedManifest;
use crate::reference::Reference;
use crate::registry::Registry;
use crate::runs::{Checkpoint, RunRecord};
use crate::tracking::SignedRunEvent;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Request bodies larger than this are refused with 413. Default 64 MiB.
    pub max_body_bytes: usize,
    /// Serve HTTPS with this certificate and key; `None` (the default)
    /// serves plain HTTP.
    pub tls: Option<TlsIdentity>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 64 << 20,
            tls: None,
        }
    }
}

/// How long a client may take over its TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's certificate chain and private key, checked to belong together:
/// what it serves HTTPS with (TLS 1.2 and 1.3, rustls over ring).
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity")
    }
}

impl TlsIdentity {
    /// Reads `cert` (PEM: the server's certificate first, then any
    /// intermediates) and `key` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                RegistryError::Invalid(format!("cannot read the TLS {what} {}: {e}", p.display()))
            })
        };
        let cert_pem = read("certificate", cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                RegistryError::Invalid(format!(
                    "the TLS certificate {} is not valid PEM: {e}",
                    cert.display()
                ))
            })?;
        if chain.is_empty() {
            return Err(RegistryError::Invalid(format!(
                "the TLS certificate {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert.display()
            )));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&read("key", key)?).map_err(|e| {
            RegistryError::Invalid(format!(
                "the TLS key {} holds no usable private key (PEM PRIVATE KEY, RSA PRIVATE KEY \
                 or EC PRIVATE KEY): {e}",
                key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::Invalid(format!("cannot set up TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                RegistryError::Invalid(match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "the TLS key {} does not belong to the certificate {}",
                        key.display(),
                        cert.display()
                    ),
                    e => format!(
                        "cannot serve TLS with {} and {}: {e}",
                        cert.display(),
                        key.display()
                    ),
                })
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            config: Arc::new(config),
        })
    }
}

/// A TCP listener that hands axum only connections whose TLS handshake
/// completed. Handshakes run as tasks of their own, so a slow or silent
/// client holds up no one else; one that takes longer than
/// [`HANDSHAKE_TIMEOUT`] is dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: tokio::task::JoinSet<Option<(TlsStream, SocketAddr)>>,
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                (tcp, addr) = axum::serve::Listener::accept(&mut self.tcp) => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => Some((tls, addr)),
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake with {addr} failed: {e}");
                                None
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake with {addr} timed out");
                                None
                            }
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The header line of a publish request (with its blobs' sizes, as
/// [`Framed`] adds them).
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct PublishHeader {
    pub(crate) manifest: SignedManifest,
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(body).expect("JSON"),
    )
        .into_response()
}

fn error_response(e: RegistryError) -> Response {
    let status = match &e {
        RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::AlreadyExists { .. } => StatusCode::CONFLICT,
        RegistryError::Refused { .. } => StatusCode::FORBIDDEN,
        _ => {
            tracing::error!("registry server: {e}");
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": "internal error; see the server's log"}),
            );
        }
    };
    json_response(status, &serde_json::json!({"error": e.to_string()}))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(RegistryError::Invalid(format!("request failed: {e}"))))
}

async fn list(State(reg): State<Arc<Registry>>) -> Response {
    match blocking(move || reg.list()).await {
        Ok(all) => json_response(StatusCode::OK, &all),
        Err(e) => error_response(e),
    }
}

#[derive(Deserialize)]
struct ResolveQuery {
    #[serde(rename = "ref")]
    reference: String,
}

async fn resolve(State(reg): State<Arc<Registry>>, Query(q): Query<ResolveQuery>) -> Response {
    let r = blocking(move || {
        let reference = Reference::parse(&q.reference)?;
        let (summary, manifest) = reg.resolve_envelope(&reference)?;
        let manifest: serde_json::Value = serde_json::from_str(&manifest)
            .map_err(|e| RegistryError::Invalid(format!("stored manifest: {e}")))?;
        Ok(serde_json::json!({"summary": summary, "manifest": manifest}))
    })
    .await;
    match r {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(e),
    }
}

async fn blob(State(reg): State<Arc<Registry>>, Path(digest): Path<String>) -> Response {
    match blocking(move || reg.blob(&digest)).await {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

/// The server's audit log verifies, and this is its signed head: a client
/// keeps it, and `tensorlet audit verify --checkpoint` on the server later
/// proves the log was not cut back or rewritten since. A log that does not
/// verify gets a 500 (the reason is in the server's log, not the answer).
async fn audit_checkpoint(State(reg): State<Arc<Registry>>) -> Response {
    match blocking(move || reg.audit_checkpoint()).await {
        Ok(cp) => json_response(StatusCode::OK, &cp),
        Err(e) => error_response(e),
    }
}

/// Reads a request body of at most `max` bytes. A larger body is still read
/// (up to four times `max`) before the 413 goes out, so that a client that
/// writes its whole request before reading the answer sees the 413 instead of
/// a connection reset.
async fn read_limited(body: Body, max: usize) -> std::result::Result<Vec<u8>, Response> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(error_response(RegistryError::Invalid(
                "the request body could not be read".into(),
            )));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= max {
            buf.extend_from_slice(&data);
        } else if seen > max.saturating_mul(4) {
            break;
        }
    }
    if seen > max {
        return Err(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &serde_json::json!({"error": format!(
                "the request is larger than this registry accepts ({max} bytes; the server's \
                 --max-body-bytes)"
            )}),
        ));
    }
    Ok(buf)
}

/// A request of one JSON header line followed by blobs back to back, the
/// header's `sizes` saying how long each is (a publish, a run event).
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct Framed<H> {
    #[serde(flatten)]
    pub(crate) header: H,
    pub(crate) sizes: Vec<usize>,
}

impl<H: serde::Serialize> Framed<H> {
    /// The request body carrying `header` and `blobs`.
    pub(crate) fn body(header: H, blobs: &[&[u8]]) -> Vec<u8> {
        let framed = Framed {
            header,
            sizes: blobs.iter().map(|b| b.len()).collect(),
        };
        let mut body = serde_json::to_vec(&framed).expect("JSON");
        body.push(b'\n');
        for b in blobs {
            body.extend_from_slice(b);
        }
        body
    }
}

impl<H: serde::de::DeserializeOwned> Framed<H> {
    /// The header and the blobs of a body written by [`Framed::body`];
    /// `what` names the request in errors.
    fn parse(body: &[u8], what: &str) -> Result<(H, Vec<Vec<u8>>)> {
        let bad = |m: &str| RegistryError::Invalid(format!("malformed {what} request: {m}"));
        let nl = body
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line"))?;
        let framed: Framed<H> =
            serde_json::from_slice(&body[..nl]).map_err(|e| bad(&e.to_string()))?;
        let mut rest = &body[nl + 1..];
        let mut blobs = Vec::with_capacity(framed.sizes.len());
        for &n in &framed.sizes {
            if n > rest.len() {
                return Err(bad("the body is shorter than the sizes in its header"));
            }
            blobs.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            return Err(bad("the body is longer than the sizes in its header"));
        }
        Ok((framed.header, blobs))
    }
}

async fn publish(State(reg): State<Arc<Registry>>, body: Body, max: usize) -> Response {
    let body = match read_limited(body, max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = blocking(move || {
        let (header, blobs) = Framed::<PublishHeader>::parse(&body, "publish")?;
        reg.publish(&header.manifest, &blobs)
    })
    .await;
    match r {
        Ok(p) => json_response(StatusCode::CREATED, &p),
        Err(e) => error_response(e),
    }
}

/// A remote trainer's signed run event ([`Registry::track`]).
async fn track(State(reg): State<Arc<Registry>>, body: Body, max: usize) -> Response {
    let body = match read_limited(body, max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = blocking(move || {
        let (header, blobs) = Framed::<TrackHeader>::parse(&body, "run event")?;
        reg.track(&header.event, &blobs)
    })
    .await;
    match r {
        Ok(()) => json_response(StatusCode::OK, &serde_json::json!({})),
        Err(e) => error_response(e),
    }
}

/// Every run, newest first.
async fn runs(State(reg): State<Arc<Registry>>) -> Response {
    match blocking(move || reg.runs().list()).await {
        Ok(all) => json_response(StatusCode::OK, &all),
        Err(e) => error_response(e),
    }
}

/// One run (by id or a prefix only it has) with its checkpoints:
/// `{"run": …, "checkpoints": […]}`.
async fn run(State(reg): State<Arc<Registry>>, Path(id): Path<String>) -> Response {
    let r = blocking(move || {
        let run = reg.runs().get(&id)?;
        let checkpoints = reg.runs().checkpoints::<serde_json::Value>(&run.id)?;
        Ok(RunAnswer { run, checkpoints })
    })
    .await;
    match r {
        Ok(a) => json_response(StatusCode::OK, &a),
        Err(e) => error_response(e),
    }
}

/// The header line of a run event request.
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct TrackHeader {
    pub(crate) event: SignedRunEvent,
}

/// The answer to `GET /v1/runs/{id}`.
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct RunAnswer {
    pub(crate) run: RunRecord,
    pub(crate) checkpoints: Vec<Checkpoint<serde_json::Value>>,
}

/// The HTTP API over `registry`.
pub fn app(registry: Arc<Registry>, config: &ServerConfig) -> Router {
    Router::new()
        .route("/v1/artifacts", get(list))
        .route("/v1/resolve", get(resolve))
        .route("/v1/blobs/{digest}", get(blob))
        .route("/v1/audit/checkpoint", get(audit_checkpoint))
        .route(
            "/v1/runs",
            get(runs).post({
                let max = config.max_body_bytes;
                move |state, body| track(state, body, max)
            }),
        )
        .route("/v1/runs/{id}", get(run))
        .route(
            "/v1/publish",
            post({
                let max = config.max_body_bytes;
                move |state, body| publish(state, body, max)
            }),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(registry)
}

/// Serves on an already bound listener (HTTPS when `config.tls` is set)
/// until ctrl-c (or forever when the process has no terminal); blocks the
/// calling thread.
pub fn serve_listener(
    registry: Arc<Registry>,
    listener: std::net::TcpListener,
    config: ServerConfig,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| RegistryError::io("<listener>", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| RegistryError::io("<listener>", e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RegistryError::io("<tokio runtime>", e))?;
    let url = format!(
        "{}://{addr}",
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    );
    registry.record(
        "server.start",
        &url,
        serde_json::json!({
            "max_body_bytes": config.max_body_bytes,
            "tls": config.tls.is_some(),
        }),
    )?;
    let app = app(registry.clone(), &config);
    let served: std::io::Result<()> = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match config.tls {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Some(identity) => {
                let tls = TlsListener {
                    tcp: listener,
                    acceptor: tokio_rustls::TlsAcceptor::from(identity.config),
                    handshakes: tokio::task::JoinSet::new(),
                };
                axum::serve(tls, app).with_graceful_shutdown(stop).await
            }
        }
    });
    registry.record("server.stop", &url, serde_json::json!({}))?;
    served.map_err(|e| RegistryError::io(url, e))
}

/// Binds `addr` and serves (see [`serve_listener`]).
pub fn serve(registry: Arc<Registry>, addr: SocketAddr, config: ServerConfig) -> Result<()> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| RegistryError::io(addr.to_string(), e))?;
    serve_listener(registry, listener, config)
}

#[cfg(test)]
mod tests {
    use super::TlsIdentity;

    #[test]
    fn tls_files_that_cannot_serve_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let e = TlsIdentity::from_pem_files(&cert, &key)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read the TLS certificate") && e.contains("cert.pem"),
            "{e}"
        );
        std::fs::write(&cert, "not PEM\n").unwrap();
        std::fs::write(&key, "not PEM either\n").unwrap();
        let e = TlsIdentity::from_pem_files(&cert, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
