//! The demo's last act: serve the published models over the Open Inference
//! Protocol, send a few real requests to itself, write the answers, and
//! when asked stay up until Ctrl-C.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tensorlet_registry::Registry;
use tensorlet_registry::http::HttpClient;

use super::Trained;
use crate::serve::registry::served_name;
use crate::serve::{Deployment, NoEvents, ServeConfig, Server};
use crate::{Runtime, artifacts, data};

/// Serves `models` on `addr`, sends the first and last rows of each data
/// file through `http`, and keeps serving until Ctrl-C when `stay`.
pub fn serve(
    rt: &Runtime,
    reg: &Registry,
    models: &[Trained],
    (stay, addr): (bool, &str),
    http: &HttpClient,
    out: &mut dyn Write,
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
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio.spawn(crate::serve::run(
        server,
        listener,
        None,
        None,
        async move {
            if stay {
                crate::serve::shutdown_signal().await;
            } else {
                let _ = stop_rx.await;
            }
        },
    ));

    writeln!(out)?;
    writeln!(
        out,
        "serving them at http://{local} (Open Inference Protocol V2):"
    )?;
    for (reference, data_path) in models {
        let name = served_name(reference);
        let ds = data::load_labeled(data_path, None)?;
        let f = ds.features();
        let rows: Vec<Vec<f32>> = [0, ds.rows() - 1]
            .iter()
            .map(|&r| ds.x[r * f..(r + 1) * f].to_vec())
            .collect();
        let url = format!("http://{local}/v2/models/{name}/infer");
        let answer = http
            .post(
                &url,
                "application/json",
                request(&name, &rows).to_string().into_bytes(),
            )
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("POST {url}"))?;
        let reply: Value =
            serde_json::from_slice(&answer.body).context("the server's answer is not JSON")?;
        writeln!(out, "{}", answered(&name, ds.rows(), &reply))?;
    }
    if stay {
        let (name, data_path) = (served_name(&models[0].0), &models[0].1);
        let ds = data::load_labeled(data_path, None)?;
        writeln!(out)?;
        writeln!(out, "serving until Ctrl-C; try:")?;
        writeln!(
            out,
            "  curl -s http://{local}/v2/models/{name}/infer -d '{}'",
            one_row(&ds.x[..ds.features()])
        )?;
        writeln!(
            out,
            "  curl -s http://{local}/v2/models   |   curl -s http://{local}/metrics"
        )?;
    } else {
        let _ = stop_tx.send(());
    }
    tokio
        .block_on(task)
        .context("the server task failed")?
        .context("the server failed")?;
    Ok(())
}

/// An inference request for `rows` of the model served as `name`.
fn request(name: &str, rows: &[Vec<f32>]) -> Value {
    let f = rows.first().map_or(0, Vec::len);
    json!({
        "id": format!("demo-{name}"),
        "inputs": [{ "name": "input", "shape": [rows.len(), f], "datatype": "FP32", "data": rows }],
    })
}

/// What the server answered for rows 1 and `rows` of a file: the model and
/// version that answered, the labels and each row's top probability.
fn answered(name: &str, rows: usize, reply: &Value) -> String {
    let labels = &reply["outputs"][0]["data"];
    let probs: Vec<f64> =
        serde_json::from_value(reply["outputs"][1]["data"].clone()).unwrap_or_default();
    let classes = probs.len() / 2;
    let top: Vec<String> = probs
        .chunks(classes.max(1))
        .map(|row| format!("{:.3}", row.iter().cloned().fold(0.0, f64::max)))
        .collect();
    format!(
        "  POST /v2/models/{name}/infer (rows 1 and {rows}): {} {} -> labels {labels}, top p [{}]",
        reply["model_name"].as_str().unwrap_or("?"),
        reply["model_version"].as_str().unwrap_or("?"),
        top.join(", ")
    )
}

/// A one-row request body, each value in the shortest decimal of its `f32`
/// so the command reads like the CSV.
fn one_row(x: &[f32]) -> Value {
    let row: Vec<f64> = x
        .iter()
        .map(|v| v.to_string().parse().unwrap_or(f64::from(*v)))
        .collect();
    json!({ "inputs": [{ "name": "input", "shape": [1, row.len()], "datatype": "FP32", "data": row }] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_read_as_the_demo_prints_them() {
        let req = request("iris", &[vec![5.1, 3.5], vec![6.7, 3.0]]);
        assert_eq!(req["id"], json!("demo-iris"));
        assert_eq!(req["inputs"][0]["shape"], json!([2, 2]));
        let reply = json!({
            "model_name": "iris-model", "model_version": "0.1.0",
            "outputs": [{"data": [0, 2]}, {"data": [0.9, 0.05, 0.05, 0.1, 0.2, 0.7]}],
        });
        assert_eq!(
            answered("iris-model", 150, &reply),
            "  POST /v2/models/iris-model/infer (rows 1 and 150): iris-model 0.1.0 -> labels \
             [0,2], top p [0.900, 0.700]"
        );
        assert!(answered("x", 2, &json!({})).contains(": ? ? -> labels null, top p []"));
        assert_eq!(
            one_row(&[5.1, 0.2]),
            json!({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                               "data": [5.1, 0.2]}]})
        );
    }
}
