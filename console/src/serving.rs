//! The live-serving pages `tensorlet serve` adds to its admin address: the
//! models and versions served, requests per second, latency percentiles,
//! error and shed counts, each model's drift score, and the last deploys
//! and failed deploys; `GET /serving.json` is the same as data, which the
//! page polls to refresh itself (and `tensorlet ui --serving` reads).
//!
//! [`DeployLog`] sits between the server and its other event sink (the
//! audit log) and keeps the last deploy events in memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tensorlet_runtime::serve::metrics::VersionCounts;
use tensorlet_runtime::serve::{ServeEvents, Server};

use crate::error::ConsoleError;

/// Deploy events kept for the page.
const KEPT_EVENTS: usize = 50;
/// Requests per second are measured over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// One deploy event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployEvent {
    /// When (UTC).
    pub time: String,
    /// `deployed`, `undeployed` or `failed`.
    pub kind: String,
    /// The served name.
    pub model: String,
    /// The version (empty for a failure).
    pub version: String,
    /// Where it came from.
    pub reference: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// Keeps the last deploy events and passes every event on to `inner`.
pub struct DeployLog {
    inner: Arc<dyn ServeEvents>,
    events: Mutex<VecDeque<DeployEvent>>,
}

impl DeployLog {
    /// A log in front of `inner`.
    pub fn new(inner: Arc<dyn ServeEvents>) -> Self {
        DeployLog {
            inner,
            events: Mutex::new(VecDeque::new()),
        }
    }

    fn push(&self, kind: &str, model: &str, version: &str, reference: &str, error: Option<&str>) {
        let mut e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() == KEPT_EVENTS {
            e.pop_back();
        }
        e.push_front(DeployEvent {
            time: now(),
            kind: kind.to_string(),
            model: model.to_string(),
            version: version.to_string(),
            reference: reference.to_string(),
            error: error.map(String::from),
        });
    }

    /// The kept events, newest first.
    pub fn events(&self) -> Vec<DeployEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl ServeEvents for DeployLog {
    fn loaded(&self, name: &str, version: &str, reference: &str) {
        self.push("deployed", name, version, reference, None);
        self.inner.loaded(name, version, reference);
    }

    fn unloaded(&self, name: &str, version: &str, reference: &str) {
        self.push("undeployed", name, version, reference, None);
        self.inner.unloaded(name, version, reference);
    }

    fn deploy_failed(&self, name: &str, reference: &str, error: &str) {
        self.push("failed", name, "", reference, Some(error));
        self.inner.deploy_failed(name, reference, error);
    }

    fn invocations(&self, counts: &[(String, String, u64)]) {
        self.inner.invocations(counts);
    }

    fn shed(&self, name: &str, version: &str, reference: &str, reason: &str) {
        self.push("shed", name, version, reference, Some(reason));
        self.inner.shed(name, version, reference, reason);
    }

    fn restored(&self, name: &str, version: &str, reference: &str) {
        self.push("restored", name, version, reference, None);
        self.inner.restored(name, version, reference);
    }
}

/// Now as `YYYY-MM-DD HH:MM:SS` (UTC).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One model version's serving state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServedVersion {
    /// The served name.
    pub model: String,
    /// The version.
    pub version: String,
    /// Where it was loaded from (for the version being served).
    pub reference: String,
    /// Whether this version is the one being served now.
    pub current: bool,
    /// Requests answered.
    pub requests: u64,
    /// Requests answered 4xx.
    pub client_errors: u64,
    /// Requests answered 5xx.
    pub server_errors: u64,
    /// Requests per second over the last seconds.
    pub rate: f64,
    /// Latency percentiles of successful requests, in milliseconds
    /// (estimated within the histogram's buckets; `None` without data or
    /// beyond its last bucket, 1 s).
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Mean absolute z-score shift of served inputs against the training
    /// data (for the version being served).
    pub drift: Option<f64>,
}

/// A serving server's state at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingSnapshot {
    /// When (UTC).
    pub taken: String,
    /// Seconds since the console started watching.
    pub uptime_s: f64,
    /// Every model version served or counted.
    pub versions: Vec<ServedVersion>,
    /// Requests for no served model (answered 404).
    pub unrouted: u64,
    /// Requests refused at capacity (503).
    pub shed: u64,
    /// Requests being processed.
    pub in_flight: i64,
    /// The last deploy events, newest first.
    pub deploys: Vec<DeployEvent>,
}

/// The `q`-quantile in milliseconds of a cumulative latency histogram.
pub fn quantile_ms(q: f64, buckets: &[(f64, u64)], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let target = q * count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(bound, cum) in buckets {
        if cum as f64 >= target && cum > below {
            let frac = (target - below as f64) / (cum - below) as f64;
            return Some((lower + (bound - lower) * frac.clamp(0.0, 1.0)) * 1000.0);
        }
        lower = bound;
        below = cum;
    }
    None
}

/// Requests so far per (model, version), at one moment.
type Sample = (Instant, BTreeMap<(String, String), u64>);

/// What the serving pages read: the server, its deploy events and the
/// samples requests per second are computed from.
pub struct Serving {
    server: Arc<Server>,
    deploys: Arc<DeployLog>,
    started: Instant,
    samples: Mutex<VecDeque<Sample>>,
}

impl Serving {
    /// Watches `server`, whose events go through `deploys`.
    pub fn new(server: Arc<Server>, deploys: Arc<DeployLog>) -> Arc<Self> {
        let start = Instant::now();
        Arc::new(Serving {
            server,
            deploys,
            started: start,
            samples: Mutex::new(VecDeque::from([(start, BTreeMap::new())])),
        })
    }

    /// The state now.
    pub fn snapshot(&self) -> ServingSnapshot {
        let m = self.server.metrics().snapshot();
        let now = Instant::now();
        let totals: BTreeMap<(String, String), u64> = m
            .versions
            .iter()
            .map(|v| {
                (
                    (v.model.clone(), v.version.clone()),
                    v.by_status.values().sum(),
                )
            })
            .collect();
        let (base_t, base) = {
            let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            while samples.len() > 1
                && samples
                    .get(1)
                    .is_some_and(|s| now.duration_since(s.0) >= RATE_WINDOW)
            {
                samples.pop_front();
            }
            let base = samples.front().cloned().expect("one sample is kept");
            samples.push_back((now, totals.clone()));
            base
        };
        let dt = now.duration_since(base_t).as_secs_f64().max(1e-3);
        let deployed: BTreeMap<String, (String, String)> = self
            .server
            .deployed()
            .into_iter()
            .map(|(name, version)| {
                let reference = self
                    .server
                    .get(&name)
                    .map(|d| d.reference.clone())
                    .unwrap_or_default();
                (name, (version, reference))
            })
            .collect();
        let mut versions: Vec<ServedVersion> = Vec::new();
        let mut unrouted = 0;
        let counted: Vec<&VersionCounts> = m.versions.iter().collect();
        for v in counted {
            if v.model.is_empty() {
                unrouted += v.by_status.values().sum::<u64>();
                continue;
            }
            let total: u64 = v.by_status.values().sum();
            let sum = |r: std::ops::Range<u16>| -> u64 {
                v.by_status
                    .iter()
                    .filter(|(s, _)| r.contains(s))
                    .map(|(_, n)| n)
                    .sum()
            };
            let key = (v.model.clone(), v.version.clone());
            let before = base.get(&key).copied().unwrap_or(0);
            let current = deployed
                .get(&v.model)
                .is_some_and(|(ver, _)| *ver == v.version);
            versions.push(ServedVersion {
                model: v.model.clone(),
                version: v.version.clone(),
                reference: deployed
                    .get(&v.model)
                    .filter(|_| current)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default(),
                current,
                requests: total,
                client_errors: sum(400..500),
                server_errors: sum(500..600),
                rate: total.saturating_sub(before) as f64 / dt,
                p50_ms: quantile_ms(0.5, &v.latency_buckets, v.latency_count),
                p90_ms: quantile_ms(0.9, &v.latency_buckets, v.latency_count),
                p99_ms: quantile_ms(0.99, &v.latency_buckets, v.latency_count),
                drift: None,
            });
        }
        for (name, (version, reference)) in &deployed {
            if !versions
                .iter()
                .any(|v| &v.model == name && &v.version == version)
            {
                versions.push(ServedVersion {
                    model: name.clone(),
                    version: version.clone(),
                    reference: reference.clone(),
                    current: true,
                    requests: 0,
                    client_errors: 0,
                    server_errors: 0,
                    rate: 0.0,
                    p50_ms: None,
                    p90_ms: None,
                    p99_ms: None,
                    drift: None,
                });
            }
        }
        for v in versions.iter_mut().filter(|v| v.current) {
            v.drift = self.server.get(&v.model).and_then(|d| d.drift());
        }
        versions.sort_by(|a, b| {
            (&a.model, !a.current, &a.version).cmp(&(&b.model, !b.current, &b.version))
        });
        ServingSnapshot {
            taken: now_string(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            versions,
            unrouted,
            shed: m.shed,
            in_flight: m.in_flight,
            deploys: self.deploys.events(),
        }
    }
}

fn now_string() -> String {
    now()
}

/// The serving pages of a `tensorlet serve` admin address: `/serving`,
/// `/serving.json` and the assets. `loopback`: the admin address is on
/// loopback (then only loopback `Host` names are answered).
pub fn app(serving: Arc<Serving>, loopback: bool) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/serving") }))
        .route(
            "/serving",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<Serving>>,
                 axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    crate::pages::serving::local_page(&s, q.as_deref())
                },
            ),
        )
        .route(
            "/serving.json",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<Serving>>| async move {
                    json(&s.snapshot())
                },
            ),
        )
        .route("/assets/{file}", get(crate::assets::serve))
        .with_state(serving)
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::security::guard(loopback, req, next)
        }))
}

/// A JSON response.
pub(crate) fn json(v: &impl Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            s,
        )
            .into_response(),
        Err(e) => ConsoleError::Internal(format!("serving snapshot: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [(0.001, 0), (0.002, 50), (0.004, 100)];
        assert_eq!(quantile_ms(0.5, &b, 100), Some(2.0));
        let p90 = quantile_ms(0.9, &b, 100).unwrap();
        assert!((p90 - 3.6).abs() < 1e-9, "{p90}");
        assert_eq!(quantile_ms(0.5, &b, 0), None);
        // Beyond the last bucket.
        assert_eq!(quantile_ms(0.99, &[(0.001, 10)], 20), None);
    }

    #[test]
    fn now_is_a_utc_time() {
        let t = now();
        assert_eq!(t.len(), "2026-12-04 11:38:51".len(), "{t}");
        assert!(t.starts_with("20"));
    }
}
