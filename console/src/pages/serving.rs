//! Serving: the page of a running `tensorlet serve`, refreshed live. On the
//! server's own admin address it reads the server directly
//! ([`crate::serving`]); `tensorlet ui --serving <admin address>` shows the
//! same page from that address's `/serving.json`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::{Layout, Params, blocking, page};
use crate::Console;
use crate::error::{ConsoleError, Result};
use crate::serving::{Serving, ServingSnapshot};

/// A row of the table, formatted.
pub struct Row {
    pub key: String,
    pub model: String,
    pub version: String,
    pub reference: String,
    pub current: bool,
    pub requests: u64,
    pub rate: String,
    pub p50: String,
    pub p90: String,
    pub p99: String,
    pub client_errors: u64,
    pub server_errors: u64,
    pub drift: String,
}

fn ms(v: Option<f64>, requests: u64) -> String {
    match v {
        Some(v) if v < 1.0 => format!("{:.0} µs", v * 1000.0),
        Some(v) => format!("{v:.2} ms"),
        None if requests == 0 => "-".into(),
        None => "> 1 s".into(),
    }
}

fn rows(s: &ServingSnapshot) -> Vec<Row> {
    s.versions
        .iter()
        .map(|v| Row {
            key: format!("{}@{}", v.model, v.version),
            model: v.model.clone(),
            version: v.version.clone(),
            reference: v.reference.clone(),
            current: v.current,
            requests: v.requests,
            rate: format!("{:.1}", v.rate),
            p50: ms(v.p50_ms, v.requests),
            p90: ms(v.p90_ms, v.requests),
            p99: ms(v.p99_ms, v.requests),
            client_errors: v.client_errors,
            server_errors: v.server_errors,
            drift: v.drift.map_or("-".into(), |d| format!("{d:.3}")),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "serving.html")]
struct ServingPage {
    layout: Layout,
    source: String,
    rows: Vec<Row>,
    snapshot: ServingSnapshot,
    uptime: String,
}

fn render(snapshot: ServingSnapshot, source: String, serving_only: bool) -> Result<Response> {
    let mut layout = Layout::new("Serving", "serving");
    layout.serving_only = serving_only;
    page(&ServingPage {
        layout,
        source,
        rows: rows(&snapshot),
        uptime: super::duration(snapshot.uptime_s),
        snapshot,
    })
}

/// `GET /serving` on a serve admin address.
pub fn local_page(serving: &Serving, q: Option<&str>) -> Response {
    let r =
        Params::parse(q, &[]).and_then(|_| render(serving.snapshot(), "this server".into(), true));
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Reads `/serving.json` of the admin address this console was given.
fn fetch(console: &Console) -> Result<(String, ServingSnapshot)> {
    let Some(url) = console.config().serving_url.clone() else {
        return Err(ConsoleError::Unsupported(
            "This console watches no server. `tensorlet serve` shows its serving page on its \
             admin address (http://127.0.0.1:8081/serving by default); or start `tensorlet ui \
             --serving http://127.0.0.1:8081` to show it here."
                .into(),
        ));
    };
    let endpoint = format!("{}/serving.json", url.trim_end_matches('/'));
    let remote = |m: String| ConsoleError::Remote(format!("the server at {url}: {m}"));
    let body = console
        .serving_client()?
        .get(&endpoint)
        .and_then(|r| r.error_for_status())
        .map_err(|e| remote(e.to_string()))?
        .text();
    let snapshot = serde_json::from_str(&body).map_err(|e| remote(e.to_string()))?;
    Ok((url, snapshot))
}

/// `GET /serving` on `tensorlet ui`.
pub async fn remote_page(
    State(console): State<Arc<Console>>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    Params::parse(q.as_deref(), &[])?;
    let (url, snapshot) = blocking(move || fetch(&console)).await?;
    render(snapshot, format!("the server at {url}"), false)
}

/// `GET /serving.json` on `tensorlet ui`.
pub async fn remote_json(State(console): State<Arc<Console>>) -> Result<Response> {
    let (_, snapshot) = blocking(move || fetch(&console)).await?;
    Ok(crate::serving::json(&snapshot))
}
