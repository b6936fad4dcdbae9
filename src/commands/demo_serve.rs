//! The demo's last act: serve the published models over the Open Inference
//! Protocol, send a few real requests to itself, print the answers, and with
//! `--serve` stay up.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tensorlet_registry::Registry;
use tensorlet_runtime::serve::registry::served_name;
use tensorlet_runtime::serve::{Deployment, NoEvents, ServeConfig, Server};
use tensorlet_runtime::{Runtime, artifacts, data};

/// Serves `models` (registry reference, data file) on `addr`; sends two rows of
/// each data file to the server; keeps serving until Ctrl-C when `stay`.
pub fn run(
    rt: &Runtime,
    reg: &Registry,
    models: &[(String, PathBuf)],
    stay: bool,
    addr: &str,
) -> Result<()> {
    let server = Arc::new(Server::new(
        rt.device().clone(),
        ServeConfig::default(),
        Arc::new(NoEvents),
    ));
    for (reference, _) in models {
        let artifact = reg.verify_str(reference)?;
        let model = artifacts::load_model(rt, reg, &artifact)?;
        let version = artifact.manifest().version.to_string();
        server
            .deploy(Deployment::new(
                &served_name(reference),
                &version,
                reference,
                model,
            ))
            .map_err(anyhow::Error::msg)?;
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = crate::common::listen(&tokio, addr, "")?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio.spawn(tensorlet_runtime::serve::run(
        server,
        listener,
        None,
        async move {
            if stay {
                tensorlet_runtime::serve::shutdown_signal().await;
            } else {
                let _ = stop_rx.await;
            }
        },
    ));

    let http = crate::common::http_client()?;
    println!();
    println!("serving them at http://{local} (Open Inference Protocol V2):");
    for (reference, data_path) in models {
        let name = served_name(reference);
        let ds = data::load_labeled(data_path, None)?;
        let f = ds.features();
        let rows: Vec<Vec<f32>> = [0, ds.rows() - 1]
            .iter()
            .map(|&r| ds.x[r * f..(r + 1) * f].to_vec())
            .collect();
        let body = json!({
            "id": format!("demo-{name}"),
            "inputs": [{ "name": "input", "shape": [2, f], "datatype": "FP32", "data": rows }],
        });
        let url = format!("http://{local}/v2/models/{name}/infer");
        let answer = http
            .post(&url, "application/json", body.to_string().into_bytes())
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("POST {url}"))?;
        let reply: Value =
            serde_json::from_slice(&answer.body).context("the server's answer is not JSON")?;
        let labels = &reply["outputs"][0]["data"];
        let probs: Vec<f64> =
            serde_json::from_value(reply["outputs"][1]["data"].clone()).unwrap_or_default();
        let classes = probs.len() / 2;
        let top: Vec<String> = probs
            .chunks(classes.max(1))
            .map(|row| format!("{:.3}", row.iter().cloned().fold(0.0, f64::max)))
            .collect();
        println!(
            "  POST /v2/models/{name}/infer (rows 1 and {}): {} {} -> labels {labels}, top p [{}]",
            ds.rows(),
            reply["model_name"].as_str().unwrap_or("?"),
            reply["model_version"].as_str().unwrap_or("?"),
            top.join(", ")
        );
    }
    if stay {
        let (name, data_path) = (served_name(&models[0].0), &models[0].1);
        let ds = data::load_labeled(data_path, None)?;
        // Shortest decimal of each f32, so the command reads like the CSV.
        let row: Vec<f64> = ds.x[..ds.features()]
            .iter()
            .map(|v| v.to_string().parse().unwrap_or(f64::from(*v)))
            .collect();
        println!();
        println!("serving until Ctrl-C; try:");
        println!(
            "  curl -s http://{local}/v2/models/{name}/infer -d '{}'",
            json!({ "inputs": [{ "name": "input", "shape": [1, row.len()], "datatype": "FP32", "data": row }] })
        );
        println!("  curl -s http://{local}/v2/models   |   curl -s http://{local}/metrics");
    } else {
        let _ = stop_tx.send(());
    }
    tokio
        .block_on(task)
        .context("the server task failed")?
        .context("the server failed")?;
    Ok(())
}
