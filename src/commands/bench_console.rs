//! `tensorlet bench console`: the server time of the console's pages on a
//! registry with many runs and one very long run. The home is filled through
//! the registry's own calls (runs, per-epoch checkpoints, their ends) with
//! synthetic metrics; each page is then requested through the console's
//! router in this process, so the time is the server's: registry reads,
//! rendering and the body, without a network.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tensorlet_console::{Console, ConsoleConfig};
use tensorlet_runtime::registry::{
    Registry, RunData, RunDetails, RunEnd, RunHost, RunPipeline, RunPlugin, RunPlugins, RunResult,
};
use tower::ServiceExt;

/// Measure the console's server time per page.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recorded runs.
    #[arg(long, default_value_t = 1000)]
    pub runs: u32,
    /// Epochs of each of those runs.
    #[arg(long, default_value_t = 20)]
    pub epochs: u32,
    /// Epochs of the one long run.
    #[arg(long, default_value_t = 10_000)]
    pub long_epochs: u32,
    /// Requests per page (the first is not counted).
    #[arg(long, default_value_t = 20)]
    pub repeat: u32,
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

/// Records a completed run of `epochs` epochs with a falling loss.
fn fill_run(reg: &Registry, i: u32, epochs: u32) -> Result<String> {
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

pub fn execute(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = Registry::open(dir.path())?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..args.runs {
        ids.push(fill_run(&reg, i, args.epochs)?);
    }
    let long = fill_run(&reg, args.runs, args.long_epochs)?;
    drop(reg);
    eprintln!(
        "recorded {} runs of {} epochs and one of {} epochs in {:.1} s",
        args.runs,
        args.epochs,
        args.long_epochs,
        started.elapsed().as_secs_f64()
    );

    let addr = "127.0.0.1:7080".parse()?;
    let app = tensorlet_console::app(Console::new(ConsoleConfig::new(
        dir.path().to_path_buf(),
        addr,
    )));
    let other = ids.first().cloned().unwrap_or_else(|| long.clone());
    let pages = [
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
    ];
    let rt = crate::common::server_runtime()?;
    println!(
        "{:<42} {:>10} {:>10} {:>10}",
        "PAGE", "MEDIAN ms", "P95 ms", "BYTES"
    );
    for (what, uri) in pages {
        let mut times = Vec::new();
        let mut size = 0;
        for n in 0..=args.repeat {
            let req = axum::http::Request::get(&uri)
                .header("host", "127.0.0.1:7080")
                .body(axum::body::Body::empty())?;
            let t = Instant::now();
            let (status, body) = rt.block_on(async {
                let r = app.clone().oneshot(req).await?;
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), usize::MAX).await;
                Ok::<_, anyhow::Error>((status, body))
            })?;
            let elapsed = t.elapsed();
            let body = body.context("reading the body")?;
            anyhow::ensure!(status.is_success(), "{uri} answered {status}");
            size = body.len();
            if n > 0 {
                times.push(elapsed);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
        println!(
            "{what:<42} {:>10.1} {:>10.1} {size:>10}",
            ms(times[times.len() / 2]),
            ms(p95)
        );
    }
    Ok(())
}
