//! The driver of `tensorlet bench console`: a home filled through the
//! registry's own calls (runs, per-epoch checkpoints, their ends) with
//! synthetic metrics, and each page requested through the console's router
//! in this process, so the time measured is the server's: registry reads,
//! rendering and the body, without a network.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tensorlet_registry::{
    Registry, RegistryError, RunData, RunDetails, RunEnd, RunHost, RunPipeline, RunPlugin,
    RunPlugins, RunResult,
};
use tower::ServiceExt;

use crate::{Console, ConsoleConfig};

/// What `tensorlet bench console` measures.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleBench {
    /// Recorded runs.
    pub runs: u32,
    /// Epochs of each of those runs.
    pub epochs: u32,
    /// Epochs of the one long run.
    pub long_epochs: u32,
    /// Requests per page (the first is not counted).
    pub repeat: u32,
}

/// Why the console bench stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Filling the home failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A page failed.
    #[error("{0}")]
    Page(String),
    /// The report could not be written.
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

impl ConsoleBench {
    /// Fills a home in `dir` with the runs (saying on `log` what it recorded
    /// and how long that took), then writes to `out` a table of each page's
    /// median and 95th-percentile server time and its size.
    pub fn run(
        &self,
        dir: &Path,
        log: &mut dyn Write,
        out: &mut dyn Write,
    ) -> Result<(), BenchError> {
        let reg = Registry::open(dir)?;
        let started = Instant::now();
        let mut ids = Vec::new();
        for i in 0..self.runs {
            ids.push(fill_run(&reg, i, self.epochs)?);
        }
        let long = fill_run(&reg, self.runs, self.long_epochs)?;
        drop(reg);
        writeln!(
            log,
            "recorded {} runs of {} epochs and one of {} epochs in {:.1} s",
            self.runs,
            self.epochs,
            self.long_epochs,
            started.elapsed().as_secs_f64()
        )?;
        let addr = ([127, 0, 0, 1], 7080).into();
        let app = crate::app(Console::new(ConsoleConfig::new(dir.to_path_buf(), addr)));
        let other = ids.first().cloned().unwrap_or_else(|| long.clone());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BenchError::Runtime)?;
        writeln!(
            out,
            "{:<42} {:>10} {:>10} {:>10}",
            "PAGE", "MEDIAN ms", "P95 ms", "BYTES"
        )?;
        for (what, uri) in pages(&other, &long) {
            let t = time_page(&rt, &app, &uri, self.repeat).map_err(BenchError::Page)?;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            writeln!(
                out,
                "{what:<42} {:>10.1} {:>10.1} {:>10}",
                ms(t.median),
                ms(t.p95),
                t.bytes
            )?;
        }
        Ok(())
    }
}

fn record(i: u32, lr: f64) -> RunDetails {
    let plugin = |artifact: &str, n: u32| RunPlugin {
        artifact: Some(artifact.into()),
        digest: format!("sha256:{n:064x}"),
        ..RunPlugin::default()
    };
    RunDetails {
        pipeline: RunPipeline {
            origin: "acme/iris".into(),
            version: Some("acme/iris@1.0.0".into()),
            digest: format!("sha256:{:064x}", 1),
            ..RunPipeline::default()
        },
        host: RunHost {
            hostname: format!("node-{}", i % 7),
            os: "linux".into(),
            arch: "x86_64".into(),
            cpu: "bench".into(),
            cpus: 2,
            device: "cpu (reference)".into(),
            pid: Some(1),
        },
        tensorlet_version: env!("CARGO_PKG_VERSION").into(),
        plugins: RunPlugins {
            preprocessor: plugin("acme/standardize@1.0.0", 2),
            trainer: Some(plugin("acme/softmax@1.0.0", 3)),
            predictor: plugin("acme/softmax@1.0.0", 3),
            ..RunPlugins::default()
        },
        config: json!({"epochs": 20, "batch_size": 16, "learning_rate": lr, "seed": i, "validation_fraction": 0.2}),
        dataset: RunData {
            digest: format!("sha256:{:064x}", 4),
            name: None,
            path: Some("iris.csv".into()),
        },
        seed: u64::from(i),
        ..RunDetails::default()
    }
}

/// Records completed run number `i` of `epochs` epochs with a falling loss;
/// returns its id.
pub fn fill_run(reg: &Registry, i: u32, epochs: u32) -> Result<String, RegistryError> {
    let lr = [0.1, 0.05, 0.01][i as usize % 3];
    let id = reg.runs().start("acme/iris@1.0.0", &record(i, lr))?;
    for e in 1..=epochs {
        let t = f64::from(e);
        let loss = 1.0 / (1.0 + lr * t) + 0.01 * ((t * 0.7 + f64::from(i)).sin());
        let metrics = json!({
            "epoch": e,
            "train_loss": loss,
            "val_loss": loss * 1.1,
            "val_accuracy": 1.0 - loss / 2.0,
            "seconds": 0.01,
        });
        reg.runs()
            .checkpoint(&id, e, format!("{id}/{e}").as_bytes(), &metrics)?;
    }
    let result = RunResult {
        dataset: format!("sha256:{:064x}", 4),
        seed: u64::from(i),
        epochs,
        epoch: epochs,
        ..RunResult::default()
    };
    reg.runs().end(
        &id,
        &RunEnd::Completed {
            model: None,
            result,
        },
    )?;
    Ok(id)
}

/// The pages measured, (what, URI), given one run of the list and the long run.
pub fn pages(other: &str, long: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "runs list (first 100 of all, by start)",
            "/runs".to_string(),
        ),
        (
            "runs list sorted by best val_loss",
            "/runs?sort=best".to_string(),
        ),
        ("a run of the list", format!("/runs/{other}")),
        ("the long run (charts downsampled)", format!("/runs/{long}")),
        (
            "the long run, zoomed to 1,000 epochs",
            format!("/runs/{long}/curves.json?chart=loss&from=4000&to=4999"),
        ),
        (
            "compare the long run with another",
            format!("/runs/compare?run={long}&run={other}"),
        ),
        ("audit log (verified)", "/audit".to_string()),
    ]
}

/// Server times of one page.
#[derive(Clone, Debug, PartialEq)]
pub struct PageTime {
    /// The median request.
    pub median: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The body's size.
    pub bytes: usize,
}

/// The median and 95th percentile of `times` (not empty).
pub fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    (times[times.len() / 2], p95)
}

/// Requests `uri` of `app` (a console's router) `repeat + 1` times on `rt`,
/// the first not counted; an error says what failed.
pub fn time_page(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    uri: &str,
    repeat: u32,
) -> Result<PageTime, String> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for n in 0..=repeat {
        let req = axum::http::Request::get(uri)
            .header("host", "127.0.0.1:7080")
            .body(axum::body::Body::empty())
            .map_err(|e| format!("{uri}: {e}"))?;
        let t = Instant::now();
        let (status, body) = rt.block_on(async {
            let r = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), usize::MAX).await;
            Ok::<_, String>((status, body))
        })?;
        let elapsed = t.elapsed();
        let body = body.map_err(|e| format!("reading the body: {e}"))?;
        if !status.is_success() {
            return Err(format!("{uri} answered {status}"));
        }
        bytes = body.len();
        if n > 0 {
            times.push(elapsed);
        }
    }
    let (median, p95) = percentiles(times);
    Ok(PageTime { median, p95, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_request_times() {
        let ms = |v: u64| Duration::from_millis(v);
        let times: Vec<Duration> = (1..=20).rev().map(ms).collect();
        assert_eq!(percentiles(times), (ms(11), ms(20)));
        assert_eq!(percentiles(vec![ms(3)]), (ms(3), ms(3)));
    }

    #[test]
    fn a_filled_run_has_its_epochs_and_is_completed() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let id = fill_run(&reg, 4, 3).unwrap();
        let run = reg.runs().get(&id).unwrap();
        assert_eq!(run.status, tensorlet_registry::RunStatus::Completed);
        assert_eq!(run.record.config["learning_rate"], json!(0.05));
        let cps = reg.runs().checkpoints::<serde_json::Value>(&id).unwrap();
        assert_eq!(cps.iter().map(|c| c.epoch).collect::<Vec<_>>(), [1, 2, 3]);
        let loss = |c: &tensorlet_registry::Checkpoint<serde_json::Value>| {
            c.metrics["train_loss"].as_f64().unwrap()
        };
        assert!(loss(&cps[2]) < loss(&cps[0]), "the loss falls");
    }

    #[test]
    fn the_bench_times_every_page_of_a_filled_home() {
        let home = tempfile::tempdir().unwrap();
        let (mut log, mut out) = (Vec::new(), Vec::new());
        let bench = ConsoleBench {
            runs: 2,
            epochs: 2,
            long_epochs: 5,
            repeat: 1,
        };
        bench.run(home.path(), &mut log, &mut out).unwrap();
        let log = String::from_utf8(log).unwrap();
        assert!(
            log.starts_with("recorded 2 runs of 2 epochs and one of 5 epochs in "),
            "{log}"
        );
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1 + pages("a", "b").len(), "{out}");
        assert!(
            lines[0].starts_with("PAGE ") && lines[0].ends_with("BYTES"),
            "{out}"
        );
        for (line, (what, _)) in lines[1..].iter().zip(pages("a", "b")) {
            assert!(line.starts_with(what), "{line}");
            let bytes: usize = line.split_whitespace().last().unwrap().parse().unwrap();
            assert!(bytes > 0, "{line}");
        }
        assert_eq!(
            Registry::open(home.path())
                .unwrap()
                .runs()
                .list()
                .unwrap()
                .len(),
            3
        );
    }
}
