//! HTTP for the tests, through tensorlet's own client (reqwest over rustls).
//! Each request goes on a connection of its own (`Connection: close`), as a
//! fresh client would, so no test leans on a kept-alive connection.

use std::fmt::Display;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
pub use tensorlet_runtime::registry::http::{HttpClient, HttpError, HttpSettings, Response};

fn settings() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_secs(60),
        ..HttpSettings::default()
    }
}

/// The client of the tests: the system's roots only.
pub fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| HttpClient::new(&settings()).unwrap())
}

/// A client that also trusts the CA in `ca_file` (PEM).
pub fn client_trusting(ca_file: &Path) -> HttpClient {
    HttpClient::new(&HttpSettings {
        ca_files: vec![ca_file.to_path_buf()],
        ..settings()
    })
    .unwrap()
}

/// `http://{addr}{path}`; `addr` is `host:port`, or a base URL
/// (`https://host:port`) taken as it is.
pub fn url(addr: impl Display, path: &str) -> String {
    let addr = addr.to_string();
    if addr.starts_with("http://") || addr.starts_with("https://") {
        format!("{addr}{path}")
    } else {
        format!("http://{addr}{path}")
    }
}

/// One request with `client`; `Err` when no answer came.
pub fn try_request_with(
    client: &HttpClient,
    method: &str,
    addr: impl Display,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut all = vec![("connection", "close")];
    all.extend_from_slice(headers);
    client.request(method, &url(addr, path), &all, body.to_vec())
}

/// One request; `Err` when no answer came (nothing listens, a cut connection).
pub fn try_request(
    method: &str,
    addr: impl Display,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    try_request_with(client(), method, addr, path, headers, body)
}

/// One request, which must be answered (with any status).
pub fn request(
    method: &str,
    addr: impl Display,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let url = url(&addr, path);
    try_request(method, addr, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url}: no answer: {e}"))
}

/// The body as JSON; panics, showing the body, when it is not.
pub fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// The body as JSON, or `null` when it is not.
pub fn json_or_null(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// `GET path`: the status and the body as JSON (`null` if it is not).
pub fn get(addr: impl Display, path: &str) -> (u16, Value) {
    let r = request("GET", addr, path, &[], b"");
    (r.status, json_or_null(&r))
}

/// `POST path` with a JSON body (`Content-Type: application/json`): the
/// status and the answer as JSON (`null` if it is not).
pub fn post_json(addr: impl Display, path: &str, body: &Value) -> (u16, Value) {
    let r = request(
        "POST",
        addr,
        path,
        &[("content-type", "application/json")],
        &serde_json::to_vec(body).unwrap(),
    );
    (r.status, json_or_null(&r))
}
