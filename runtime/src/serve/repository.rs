//! The OIP model repository extension (Triton's, which KServe and MLServer
//! follow), on the admin address next to `/admin/deploy`:
//!
//! - `POST /v2/repository/index` (`{"ready": true}` optional): every model
//!   this server knows, as `{"name", "version", "state", "reason"}`: `READY`
//!   while served, `UNAVAILABLE` with the reason when shed, when its deploy
//!   failed or after an unload;
//! - `POST /v2/repository/models/{m}/load` (`{"parameters": {"reference":
//!   "ns/name@alias"}}` optional): deploys `m` through the same hot-deploy
//!   path as `/admin/deploy` (verified, loaded, warmed, then swapped in), from
//!   the reference given or, without one, the reference `m` was last served
//!   or tried from, so a load after an unload needs no body;
//! - `POST /v2/repository/models/{m}/unload`: stops serving `m`; requests
//!   already running finish.
//!
//! A model the server never saw has no index entry (the repository behind
//! the server, a registry or model directories, is not listed); load it by
//! name with its reference.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{Server, Shared, error, ok};

/// A model in the repository extension's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The name it is served as.
    pub name: String,
    /// The version served, if one is.
    pub version: Option<String>,
    /// Whether requests are answered.
    pub ready: bool,
    /// Why it is not ready (or what else to know), or empty.
    pub reason: String,
}

impl Server {
    /// The reference `name` was last served or tried from.
    pub fn known_reference(&self, name: &str) -> Option<String> {
        self.known.lock().expect("known lock").get(name).cloned()
    }

    /// Every model this server knows, by name: served (ready unless shed or
    /// the device is being recovered), failed to deploy, or unloaded.
    pub fn repository_index(&self) -> Vec<IndexEntry> {
        let known = self.known.lock().expect("known lock").clone();
        let errors = self.deploy_errors.lock().expect("errors lock").clone();
        let models = self.models.load();
        known
            .into_keys()
            .map(|name| match models.get(&name) {
                Some(d) => {
                    let shed = d.shed_reason();
                    let reason = if self.recovering() {
                        "the device is being reopened".to_string()
                    } else if let Some(shed) = &shed {
                        format!("shed: {shed}")
                    } else {
                        errors
                            .get(&name)
                            .map(|e| format!("serving this version; the last deploy failed: {e}"))
                            .unwrap_or_default()
                    };
                    IndexEntry {
                        version: Some(d.version.clone()),
                        ready: !self.recovering() && shed.is_none(),
                        reason,
                        name,
                    }
                }
                None => IndexEntry {
                    version: None,
                    ready: false,
                    reason: errors
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| "unloaded".to_string()),
                    name,
                },
            })
            .collect()
    }
}

/// The extension's routes (state: the server).
pub(super) fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/v2/repository/index", post(index))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
}

/// A request body: empty, or a JSON object; else what is wrong with it.
fn object(body: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("the {what} request must be a JSON object")),
        Err(e) => Err(format!("the {what} request is not JSON: {e}")),
    }
}

async fn index(State(s): Shared, body: Bytes) -> Response {
    let req = match object(&body, "index") {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let ready_only = match req.get("ready") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`ready` must be true or false, not {other}"),
            );
        }
    };
    let entries: Vec<Value> = s
        .repository_index()
        .into_iter()
        .filter(|e| !ready_only || e.ready)
        .map(|e| {
            let mut v = json!({
                "name": e.name,
                "state": if e.ready { "READY" } else { "UNAVAILABLE" },
                "reason": e.reason,
            });
            if let Some(version) = e.version {
                v["version"] = json!(version);
            }
            v
        })
        .collect();
    ok(Value::Array(entries))
}

async fn load(State(s): Shared, Path(model): Path<String>, body: Bytes) -> Response {
    let req = match object(&body, "load") {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let given = match req.get("parameters").and_then(|p| p.get("reference")) {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r.clone()),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`parameters.reference` must be a string, not {other}"),
            );
        }
    };
    let Some(reference) = given.or_else(|| s.known_reference(&model)) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "model `{model}` is not in this server's repository; load it with \
                 {{\"parameters\": {{\"reference\": \"<namespace/name@version, alias or path>\"}}}}"
            ),
        );
    };
    match super::deploy_from_source(s, model.clone(), reference).await {
        Ok(version) => ok(json!({ "name": model, "version": version, "state": "READY" })),
        Err((status, message)) => error(status, message),
    }
}

async fn unload(State(s): Shared, Path(model): Path<String>) -> Response {
    if s.undeploy(&model) {
        ok(json!({ "name": model, "state": "UNAVAILABLE", "reason": "unloaded" }))
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no model `{model}` is served here"),
        )
    }
}
