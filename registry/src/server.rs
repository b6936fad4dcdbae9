//! The registry over HTTP (axum): what `tensorlet registry serve` runs.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/artifacts` | every version (JSON list of summaries) |
//! | `GET /v1/resolve?ref=ns/name@sel` | `{"summary": …, "manifest": <signed manifest>}` |
//! | `GET /v1/blobs/{digest}` | the blob's bytes |
//! | `POST /v1/publish` | one line of JSON `{"manifest": <signed manifest>, "sizes": [n, …]}`, then the blobs' bytes back to back |
//! | `GET /v1/audit/checkpoint` | a signed checkpoint of the server's audit log now, for a witness to keep |
//!
//! A publish is accepted only when the manifest is signed by a key that this
//! server's trust policy allows for the namespace (the same rule as a local
//! publish). Clients never take the server's word: they verify what they pull
//! against their own trust policy. Errors are `{"error": "…"}` with 4xx for
//! the caller's mistakes (403 refused, 404 unknown, 409 version exists, 413
//! body too large); internal errors answer 500 without details.

use std::net::SocketAddr;
use std::sync::Arc;

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
use crate::store::Registry;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Request bodies larger than this are refused with 413. Default 64 MiB.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 64 << 20,
        }
    }
}

/// The header line of a publish request.
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct PublishHeader {
    pub(crate) manifest: SignedManifest,
    pub(crate) sizes: Vec<usize>,
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

async fn publish(State(reg): State<Arc<Registry>>, body: Body, max: usize) -> Response {
    let body = match read_limited(body, max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = blocking(move || {
        let bad = |m: &str| RegistryError::Invalid(format!("malformed publish request: {m}"));
        let nl = body
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line"))?;
        let header: PublishHeader =
            serde_json::from_slice(&body[..nl]).map_err(|e| bad(&e.to_string()))?;
        let mut rest = &body[nl + 1..];
        let mut blobs = Vec::new();
        for &n in &header.sizes {
            if n > rest.len() {
                return Err(bad("the body is shorter than the sizes in its header"));
            }
            blobs.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            return Err(bad("the body is longer than the sizes in its header"));
        }
        reg.publish(&header.manifest, &blobs)
    })
    .await;
    match r {
        Ok(p) => json_response(StatusCode::CREATED, &p),
        Err(e) => error_response(e),
    }
}

/// The HTTP API over `registry`.
pub fn app(registry: Arc<Registry>, config: &ServerConfig) -> Router {
    Router::new()
        .route("/v1/artifacts", get(list))
        .route("/v1/resolve", get(resolve))
        .route("/v1/blobs/{digest}", get(blob))
        .route("/v1/audit/checkpoint", get(audit_checkpoint))
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

/// Serves on an already bound listener until ctrl-c (or forever when the
/// process has no terminal); blocks the calling thread.
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
    registry.record(
        "server.start",
        &format!("http://{addr}"),
        serde_json::json!({"max_body_bytes": config.max_body_bytes}),
    )?;
    let app = app(registry.clone(), &config);
    let served: std::io::Result<()> = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    registry.record(
        "server.stop",
        &format!("http://{addr}"),
        serde_json::json!({}),
    )?;
    served.map_err(|e| RegistryError::io(format!("http://{addr}"), e))
}

/// Binds `addr` and serves (see [`serve_listener`]).
pub fn serve(registry: Arc<Registry>, addr: SocketAddr, config: ServerConfig) -> Result<()> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| RegistryError::io(addr.to_string(), e))?;
    serve_listener(registry, listener, config)
}
