//! `tensorlet bench load`: a bounded load generator for the serving
//! benchmarks, so that OIP over HTTP and over gRPC are loaded by the same
//! client code in one run. Over HTTP/1.1 each connection sends one request
//! after another (as wrk does); over gRPC `ModelInfer` calls are multiplexed
//! on a few HTTP/2 connections (as tritonclient's gRPC client sends them),
//! with the request's tensors in `raw_input_contents`. It runs on one thread,
//! for a fixed time, and reports the rate and latency percentiles.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::serve::grpc::proto;
use proto::grpc_inference_service_client::GrpcInferenceServiceClient;

/// The transport a load runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, one request at a time per connection.
    Http,
    /// gRPC, calls multiplexed on HTTP/2 connections.
    Grpc,
}

/// What to send, where, how hard and how long.
#[derive(Clone, Debug)]
pub struct Load {
    /// The server's address (`127.0.0.1:8080` for HTTP, `127.0.0.1:9000` for gRPC).
    pub addr: String,
    /// The model's name.
    pub model: String,
    /// The OIP request, as JSON (FP32 inputs; sent as such over HTTP, as
    /// `raw_input_contents` over gRPC).
    pub request: Value,
    /// The transport.
    pub protocol: Protocol,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// gRPC: the HTTP/2 connections the calls share (HTTP/1.1 has one per
    /// request in flight).
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
}

/// What a load measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Requests answered with success.
    pub ok: u64,
    /// Requests answered with an error (a non-200 status, a gRPC error).
    pub failed: u64,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Latency percentiles of the successful requests: 50th, 99th.
    pub p50: Duration,
    pub p99: Duration,
}

impl Report {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
}

/// Runs `load` on a single-threaded async runtime of its own.
pub fn run(load: &Load) -> Result<Report> {
    if load.concurrency == 0 || load.connections == 0 {
        bail!("give at least one request in flight and one connection");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drive(load))
}

/// Each in-flight slot's successes' latencies (µs) and failures.
type Tally = (Vec<u32>, u64);

async fn drive(load: &Load) -> Result<Report> {
    let started = Instant::now();
    let until = started + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    match load.protocol {
        Protocol::Http => {
            let path = format!("/v2/models/{}/infer", load.model);
            let body = Bytes::from(serde_json::to_vec(&load.request)?);
            for _ in 0..load.concurrency {
                let stream = tokio::net::TcpStream::connect(&load.addr)
                    .await
                    .with_context(|| format!("connecting to {}", load.addr))?;
                stream.set_nodelay(true)?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .context("HTTP/1.1 handshake")?;
                tokio::spawn(conn);
                let (path, body, host) = (path.clone(), body.clone(), load.addr.clone());
                tasks.spawn(http_slot(sender, host, path, body, until));
            }
        }
        Protocol::Grpc => {
            let request = infer_request(&load.model, &load.request)?;
            let mut clients = Vec::new();
            for _ in 0..load.connections {
                let endpoint =
                    tonic::transport::Endpoint::from_shared(format!("http://{}", load.addr))?
                        .tcp_nodelay(true);
                let channel = endpoint
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {} (gRPC)", load.addr))?;
                clients.push(GrpcInferenceServiceClient::new(channel));
            }
            for i in 0..load.concurrency {
                let client = clients[i % clients.len()].clone();
                tasks.spawn(grpc_slot(client, request.clone(), until));
            }
        }
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, f) = done.map_err(|e| anyhow!("a load task stopped: {e}"))??;
        latencies.extend(l);
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        Duration::from_micros(latencies.get(i).copied().unwrap_or(0).into())
    };
    Ok(Report {
        ok: latencies.len() as u64,
        failed,
        seconds,
        p50: at(0.50),
        p99: at(0.99),
    })
}

async fn http_slot(
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
    path: String,
    body: Bytes,
    until: Instant,
) -> Result<Tally> {
    let (mut latencies, mut failed) = (Vec::new(), 0);
    while Instant::now() < until {
        let request = http::Request::post(&path)
            .header(http::header::HOST, &host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))?;
        let sent = Instant::now();
        sender
            .ready()
            .await
            .context("the server closed the connection")?;
        let response = sender.send_request(request).await?;
        let ok = response.status() == http::StatusCode::OK;
        response.into_body().collect().await?;
        if ok {
            latencies.push(sent.elapsed().as_micros() as u32);
        } else {
            failed += 1;
        }
    }
    Ok((latencies, failed))
}

async fn grpc_slot(
    mut client: GrpcInferenceServiceClient<tonic::transport::Channel>,
    request: proto::ModelInferRequest,
    until: Instant,
) -> Result<Tally> {
    let (mut latencies, mut failed) = (Vec::new(), 0);
    while Instant::now() < until {
        let sent = Instant::now();
        match client.model_infer(request.clone()).await {
            Ok(_) => latencies.push(sent.elapsed().as_micros() as u32),
            Err(_) => failed += 1,
        }
    }
    Ok((latencies, failed))
}

/// The gRPC form of an OIP JSON request with FP32 inputs: each input's
/// values, flattened, as little-endian bytes in `raw_input_contents`.
pub fn infer_request(model: &str, request: &Value) -> Result<proto::ModelInferRequest> {
    let inputs = request["inputs"]
        .as_array()
        .ok_or_else(|| anyhow!("the request has no `inputs` array"))?;
    let mut out = proto::ModelInferRequest {
        model_name: model.to_string(),
        ..Default::default()
    };
    for input in inputs {
        let name = input["name"].as_str().unwrap_or_default().to_string();
        if input["datatype"] != "FP32" {
            bail!("input `{name}`: the load generator sends FP32 inputs only");
        }
        let shape = (input["shape"].as_array().into_iter().flatten())
            .map(|d| {
                d.as_i64()
                    .ok_or_else(|| anyhow!("input `{name}`: a bad shape"))
            })
            .collect::<Result<Vec<i64>>>()?;
        let mut values = Vec::new();
        flatten(&input["data"], &mut values)
            .with_context(|| format!("input `{name}`: data must be numbers"))?;
        out.raw_input_contents
            .push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        out.inputs
            .push(proto::model_infer_request::InferInputTensor {
                name,
                datatype: "FP32".into(),
                shape,
                ..Default::default()
            });
    }
    Ok(out)
}

fn flatten(v: &Value, out: &mut Vec<f32>) -> Result<()> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        Value::Number(n) => {
            out.push(n.as_f64().ok_or_else(|| anyhow!("{n} is not a number"))? as f32);
            Ok(())
        }
        other => bail!("{other} is not a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_request_becomes_raw_grpc_contents() {
        let json = serde_json::json!({ "inputs": [
            { "name": "input", "shape": [2, 2], "datatype": "FP32", "data": [[1.0, 2.5], [3.0, -4.0]] }
        ]});
        let r = infer_request("iris", &json).unwrap();
        assert_eq!(r.model_name, "iris");
        assert_eq!(r.inputs[0].shape, [2, 2]);
        let raw: Vec<f32> = r.raw_input_contents[0]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(raw, [1.0, 2.5, 3.0, -4.0]);
        let bad = serde_json::json!({ "inputs": [{ "name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"] }]});
        let e = infer_request("m", &bad).unwrap_err().to_string();
        assert!(e.contains("FP32 inputs only"), "{e}");
    }
}
