//! Server metrics in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// model -> version -> `V`. Keyed by level, unlike a map keyed by
/// `(model, version)` tuples, so that recording a request looks the labels up
/// as `&str` and allocates nothing once they are known.
type ByVersion<V> = BTreeMap<String, BTreeMap<String, V>>;

/// What a model version's requests have counted: one entry, so a request
/// takes one lock and one lookup.
#[derive(Default)]
struct Counts {
    /// status -> requests
    by_status: BTreeMap<u16, u64>,
    /// Latency of successful requests.
    latency: Histogram,
}

/// The entry of `key` in `map`, inserted as the default on first use.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Every `(model, version, value)` of `map`, in label order.
fn labelled<V>(map: &ByVersion<V>) -> impl Iterator<Item = (&str, &str, &V)> {
    map.iter()
        .flat_map(|(m, vs)| vs.iter().map(move |(v, x)| (m.as_str(), v.as_str(), x)))
}

/// Counters and histograms of one server.
#[derive(Default)]
pub struct Metrics {
    /// model -> version -> requests and latency
    requests: Mutex<ByVersion<Counts>>,
    in_flight: AtomicI64,
    shed: AtomicU64,
    /// Coalesced calls (adaptive batching) and the requests they answered.
    batches: AtomicU64,
    batched_requests: AtomicU64,
    device_failures: AtomicU64,
    device_recoveries: AtomicU64,
    /// (model, version) -> drift score, set by the server.
    drift: Mutex<BTreeMap<(String, String), f64>>,
    /// (model, version, column) -> served values of a category the model
    /// did not learn, set by the server.
    unknown_categories: Mutex<BTreeMap<(String, String, String), u64>>,
    /// (model, version) -> (shed now, times shed), set by the server.
    breakers: Mutex<BTreeMap<(String, String), (bool, u64)>>,
    /// (host tensor bytes held, their budget, resident set size), set by
    /// the server.
    memory: Mutex<Option<(usize, usize, Option<u64>)>>,
}

/// What one model version's requests have counted, as read by
/// [`Metrics::snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct VersionCounts {
    /// The model (empty for requests to no model, which answered 404).
    pub model: String,
    /// The version.
    pub version: String,
    /// HTTP status -> requests.
    pub by_status: BTreeMap<u16, u64>,
    /// Latency of successful requests: (upper bound in seconds, cumulative
    /// count), as in the Prometheus histogram; `latency_count` is `+Inf`.
    pub latency_buckets: Vec<(f64, u64)>,
    /// Successful requests.
    pub latency_count: u64,
    /// Their summed latency, in seconds.
    pub latency_sum: f64,
}

/// Every counter of a server at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// Per model version, in label order.
    pub versions: Vec<VersionCounts>,
    /// Requests being processed.
    pub in_flight: i64,
    /// Requests refused with 503 because the server was at capacity.
    pub shed: u64,
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts a request as in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records a finished request.
    pub fn record(&self, model: &str, version: &str, status: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().expect("metrics lock");
        let counts = entry(entry(&mut requests, model), version);
        *counts.by_status.entry(status).or_default() += 1;
        if status == 200 {
            let h = &mut counts.latency;
            let s = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        }
    }

    /// Counts a request refused for lack of capacity.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a coalesced call answering `requests` requests.
    pub fn batched(&self, requests: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_requests
            .fetch_add(requests as u64, Ordering::Relaxed);
    }

    /// Counts a failure of the device (each starts a recovery).
    pub fn device_failed(&self) {
        self.device_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished recovery of the device.
    pub fn device_recovered(&self) {
        self.device_recoveries.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the drift score of a model version.
    pub fn set_drift(&self, model: &str, version: &str, score: f64) {
        self.drift
            .lock()
            .expect("metrics lock")
            .insert((model.to_string(), version.to_string()), score);
    }

    /// Sets how many served values of a categorical column were a category
    /// the model version did not learn.
    pub fn set_unknown_categories(&self, model: &str, version: &str, column: &str, n: u64) {
        let key = (model.to_string(), version.to_string(), column.to_string());
        self.unknown_categories
            .lock()
            .expect("metrics lock")
            .insert(key, n);
    }

    /// Sets the host tensor bytes held by running calls, the process's
    /// budget of them, and the resident set size.
    pub fn set_memory(&self, held: usize, budget: usize, rss: Option<u64>) {
        *self.memory.lock().expect("metrics lock") = Some((held, budget, rss));
    }

    /// Sets whether a model version is shed now and how often it was.
    pub fn set_breaker(&self, model: &str, version: &str, shed: bool, trips: u64) {
        self.breakers
            .lock()
            .expect("metrics lock")
            .insert((model.to_string(), version.to_string()), (shed, trips));
    }

    /// Requests answered with `status` for a model (any version).
    pub fn count(&self, model: &str, status: u16) -> u64 {
        self.requests
            .lock()
            .expect("metrics lock")
            .get(model)
            .map_or(0, |versions| {
                versions
                    .values()
                    .filter_map(|c| c.by_status.get(&status))
                    .sum()
            })
    }

    /// The counters as values, for views that compute rates and percentiles
    /// themselves (the console's serving page).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let requests = self.requests.lock().expect("metrics lock");
        let versions = labelled(&requests)
            .map(|(m, v, c)| VersionCounts {
                model: m.to_string(),
                version: v.to_string(),
                by_status: c.by_status.clone(),
                latency_buckets: BUCKETS.iter().copied().zip(c.latency.counts).collect(),
                latency_count: c.latency.count,
                latency_sum: c.latency.sum,
            })
            .collect();
        drop(requests);
        MetricsSnapshot {
            versions,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
        }
    }

    /// The exposition text; `instances` is the runtime's instance counter.
    pub fn render(&self, instances: u64) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP tensorlet_requests_total Inference requests by model, version and HTTP status."
        );
        let _ = writeln!(w, "# TYPE tensorlet_requests_total counter");
        let requests = self.requests.lock().expect("metrics lock");
        let counts = || {
            labelled(&requests)
                .flat_map(|(m, v, c)| c.by_status.iter().map(move |(s, n)| (m, v, *s, n)))
        };
        for (m, v, s, n) in counts() {
            let _ = writeln!(
                w,
                "tensorlet_requests_total{{model=\"{}\",version=\"{}\",status=\"{s}\"}} {n}",
                escape(m),
                escape(v)
            );
        }
        let _ = writeln!(
            w,
            "# HELP tensorlet_request_errors_total Inference requests answered with an error status."
        );
        let _ = writeln!(w, "# TYPE tensorlet_request_errors_total counter");
        for (m, v, s, n) in counts().filter(|&(_, _, s, _)| s >= 400) {
            let _ = writeln!(
                w,
                "tensorlet_request_errors_total{{model=\"{}\",version=\"{}\",status=\"{s}\"}} {n}",
                escape(m),
                escape(v)
            );
        }
        let _ = writeln!(
            w,
            "# HELP tensorlet_request_duration_seconds Latency of successful inference requests."
        );
        let _ = writeln!(w, "# TYPE tensorlet_request_duration_seconds histogram");
        // A version has a histogram once one of its requests has succeeded.
        let histograms = labelled(&requests)
            .map(|(m, v, c)| (m, v, &c.latency))
            .filter(|(_, _, h)| h.count > 0);
        for (m, v, h) in histograms {
            let labels = format!("model=\"{}\",version=\"{}\"", escape(m), escape(v));
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    w,
                    "tensorlet_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                w,
                "tensorlet_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                w,
                "tensorlet_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                w,
                "tensorlet_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        drop(requests);
        let _ = writeln!(
            w,
            "# HELP tensorlet_requests_in_flight Inference requests being processed."
        );
        let _ = writeln!(w, "# TYPE tensorlet_requests_in_flight gauge");
        let _ = writeln!(
            w,
            "tensorlet_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP tensorlet_requests_shed_total Requests refused with 503 because the server was at capacity."
        );
        let _ = writeln!(w, "# TYPE tensorlet_requests_shed_total counter");
        let _ = writeln!(
            w,
            "tensorlet_requests_shed_total {}",
            self.shed.load(Ordering::Relaxed)
        );
        let batches = self.batches.load(Ordering::Relaxed);
        if batches > 0 {
            let _ = writeln!(
                w,
                "# HELP tensorlet_batches_total Calls that coalesced concurrent requests (adaptive batching)."
            );
            let _ = writeln!(w, "# TYPE tensorlet_batches_total counter");
            let _ = writeln!(w, "tensorlet_batches_total {batches}");
            let _ = writeln!(
                w,
                "# HELP tensorlet_batched_requests_total Requests answered by coalesced calls."
            );
            let _ = writeln!(w, "# TYPE tensorlet_batched_requests_total counter");
            let _ = writeln!(
                w,
                "tensorlet_batched_requests_total {}",
                self.batched_requests.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            w,
            "# HELP tensorlet_device_failures_total Times the GPU failed (lost, out of memory, work rejected)."
        );
        let _ = writeln!(w, "# TYPE tensorlet_device_failures_total counter");
        let _ = writeln!(
            w,
            "tensorlet_device_failures_total {}",
            self.device_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP tensorlet_device_recoveries_total Times the server reopened the failed GPU and redeployed its models on it."
        );
        let _ = writeln!(w, "# TYPE tensorlet_device_recoveries_total counter");
        let _ = writeln!(
            w,
            "tensorlet_device_recoveries_total {}",
            self.device_recoveries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP tensorlet_instances_created_total Wasm instances created (one per plugin call)."
        );
        let _ = writeln!(w, "# TYPE tensorlet_instances_created_total counter");
        let _ = writeln!(w, "tensorlet_instances_created_total {instances}");
        let drift = self.drift.lock().expect("metrics lock");
        if !drift.is_empty() {
            let _ = writeln!(
                w,
                "# HELP tensorlet_model_drift_score Mean absolute z-score shift of served inputs against the training data, per model."
            );
            let _ = writeln!(w, "# TYPE tensorlet_model_drift_score gauge");
            for ((m, v), d) in drift.iter() {
                let _ = writeln!(
                    w,
                    "tensorlet_model_drift_score{{model=\"{}\",version=\"{}\"}} {d}",
                    escape(m),
                    escape(v)
                );
            }
        }
        if let Some((held, budget, rss)) = *self.memory.lock().expect("metrics lock") {
            let _ = writeln!(
                w,
                "# HELP tensorlet_host_tensor_bytes Host tensor memory held by running plugin calls."
            );
            let _ = writeln!(w, "# TYPE tensorlet_host_tensor_bytes gauge");
            let _ = writeln!(w, "tensorlet_host_tensor_bytes {held}");
            let _ = writeln!(
                w,
                "# HELP tensorlet_host_tensor_budget_bytes The process's budget of host tensor memory (--max-memory)."
            );
            let _ = writeln!(w, "# TYPE tensorlet_host_tensor_budget_bytes gauge");
            let _ = writeln!(w, "tensorlet_host_tensor_budget_bytes {budget}");
            if let Some(rss) = rss {
                let _ = writeln!(
                    w,
                    "# HELP process_resident_memory_bytes Resident memory size in bytes."
                );
                let _ = writeln!(w, "# TYPE process_resident_memory_bytes gauge");
                let _ = writeln!(w, "process_resident_memory_bytes {rss}");
            }
        }
        let breakers = self.breakers.lock().expect("metrics lock");
        if !breakers.is_empty() {
            let _ = writeln!(
                w,
                "# HELP tensorlet_model_shed Whether a model version is shed now (1): its requests kept failing by its doing (deadline, trap, memory) and are refused with 503 until a probe after the cool-down succeeds."
            );
            let _ = writeln!(w, "# TYPE tensorlet_model_shed gauge");
            for ((m, v), (shed, _)) in breakers.iter() {
                let _ = writeln!(
                    w,
                    "tensorlet_model_shed{{model=\"{}\",version=\"{}\"}} {}",
                    escape(m),
                    escape(v),
                    u8::from(*shed)
                );
            }
            let _ = writeln!(
                w,
                "# HELP tensorlet_model_shed_total Times a model version was shed."
            );
            let _ = writeln!(w, "# TYPE tensorlet_model_shed_total counter");
            for ((m, v), (_, trips)) in breakers.iter() {
                let _ = writeln!(
                    w,
                    "tensorlet_model_shed_total{{model=\"{}\",version=\"{}\"}} {trips}",
                    escape(m),
                    escape(v)
                );
            }
        }
        drop(breakers);
        let unknown = self.unknown_categories.lock().expect("metrics lock");
        if !unknown.is_empty() {
            let _ = writeln!(
                w,
                "# HELP tensorlet_unknown_categories_total Served values of a categorical column that were a category the model did not learn (encoded as unknown)."
            );
            let _ = writeln!(w, "# TYPE tensorlet_unknown_categories_total counter");
            for ((m, v, c), n) in unknown.iter() {
                let _ = writeln!(
                    w,
                    "tensorlet_unknown_categories_total{{model=\"{}\",version=\"{}\",column=\"{}\"}} {n}",
                    escape(m),
                    escape(v),
                    escape(c)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record("iris", "1.0.0", 200, Duration::from_micros(300));
        m.record("iris", "1.0.0", 200, Duration::from_millis(3));
        m.record("iris", "1.0.0", 400, Duration::from_millis(1));
        m.shed();
        let _g = m.in_flight();
        let text = m.render(7);
        assert!(text.contains(
            "tensorlet_requests_total{model=\"iris\",version=\"1.0.0\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "tensorlet_request_errors_total{model=\"iris\",version=\"1.0.0\",status=\"400\"} 1"
        ));
        assert!(text.contains("le=\"0.0005\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains(
            "tensorlet_request_duration_seconds_count{model=\"iris\",version=\"1.0.0\"} 2"
        ));
        assert!(text.contains("tensorlet_requests_in_flight 1"));
        assert!(text.contains("tensorlet_requests_shed_total 1"));
        assert!(text.contains("tensorlet_instances_created_total 7"));
        assert_eq!(m.count("iris", 200), 2);
    }

    #[test]
    fn a_snapshot_holds_what_render_prints() {
        let m = Metrics::default();
        m.record("iris", "1.0.0", 200, Duration::from_micros(300));
        m.record("iris", "1.0.0", 200, Duration::from_millis(3));
        m.record("iris", "1.0.0", 503, Duration::from_millis(1));
        m.shed();
        let s = m.snapshot();
        assert_eq!(s.shed, 1);
        assert_eq!(s.in_flight, 0);
        let [v] = s.versions.as_slice() else {
            panic!("{s:?}")
        };
        assert_eq!((v.model.as_str(), v.version.as_str()), ("iris", "1.0.0"));
        assert_eq!(v.by_status, BTreeMap::from([(200, 2), (503, 1)]));
        assert_eq!(v.latency_count, 2);
        assert!((v.latency_sum - 0.0033).abs() < 1e-9);
        let cumulative: Vec<u64> = v.latency_buckets.iter().map(|b| b.1).collect();
        assert_eq!(cumulative, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(v.latency_buckets[2].0, 0.0005);
    }

    #[test]
    fn keeps_models_versions_and_statuses_apart_in_label_order() {
        let m = Metrics::default();
        for (model, version, status) in [
            ("iris", "2.0.0", 200),
            ("digits", "1.0.0", 500),
            ("iris", "1.0.0", 200),
            ("iris", "2.0.0", 200),
            ("digits", "1.0.0", 200),
            ("iris", "2.0.0", 400),
            ("iris", "3.0.0", 503),
        ] {
            m.record(model, version, status, Duration::from_millis(1));
        }
        assert_eq!(m.count("iris", 200), 3);
        assert_eq!(m.count("iris", 400), 1);
        assert_eq!(m.count("digits", 500), 1);
        assert_eq!(m.count("mnist", 200), 0);
        let text = m.render(0);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tensorlet_requests_total{"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"tensorlet_requests_total{model="digits",version="1.0.0",status="200"} 1"#,
                r#"tensorlet_requests_total{model="digits",version="1.0.0",status="500"} 1"#,
                r#"tensorlet_requests_total{model="iris",version="1.0.0",status="200"} 1"#,
                r#"tensorlet_requests_total{model="iris",version="2.0.0",status="200"} 2"#,
                r#"tensorlet_requests_total{model="iris",version="2.0.0",status="400"} 1"#,
                r#"tensorlet_requests_total{model="iris",version="3.0.0",status="503"} 1"#,
            ]
        );
        let errors = text
            .lines()
            .filter(|l| l.starts_with("tensorlet_request_errors_total{"))
            .count();
        assert_eq!(errors, 3);
        assert!(text.contains(
            r#"tensorlet_request_duration_seconds_count{model="iris",version="2.0.0"} 2"#
        ));
        assert!(text.contains(
            r#"tensorlet_request_duration_seconds_count{model="digits",version="1.0.0"} 1"#
        ));
        // No latency histogram for a version none of whose requests succeeded.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("tensorlet_request_duration") && l.contains("3.0.0")),
            "{text}"
        );
    }
}
