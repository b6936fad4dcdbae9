//! `tensorlet bench load` and `tensorlet bench serve-native`: the serving
//! benchmarks' load generator (HTTP and gRPC alike) and native baseline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tensorlet_gpu::Device;
use tensorlet_runtime::bench::load::{self, Load, Protocol};
use tensorlet_runtime::bench::native::{self, NativeModel};
use tensorlet_runtime::serve::{self, batch::BatchedListener, plan};

use crate::artifacts::RegistryArgs;
use crate::common;

/// Load a served model with one OIP request, over HTTP or gRPC, and print
/// `req/s p50 p99 failed`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The server's address (`127.0.0.1:8080`; gRPC: `127.0.0.1:9000`).
    #[arg(long)]
    pub addr: String,
    /// The model's name on the server.
    #[arg(long)]
    pub model: String,
    /// The OIP request, a JSON file with FP32 inputs.
    #[arg(long)]
    pub body: PathBuf,
    /// Send over gRPC (`ModelInfer`, raw contents) instead of HTTP.
    #[arg(long)]
    pub grpc: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// gRPC: HTTP/2 connections the calls share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = tensorlet_runtime::parse_duration)]
    pub duration: Duration,
}

pub fn load(args: LoadArgs) -> Result<()> {
    let text =
        std::fs::read(&args.body).with_context(|| format!("reading {}", args.body.display()))?;
    let report = load::run(&Load {
        addr: args.addr,
        model: args.model,
        request: serde_json::from_slice(&text).context("the body is not JSON")?,
        protocol: if args.grpc {
            Protocol::Grpc
        } else {
            Protocol::Http
        },
        concurrency: args.concurrency,
        connections: args.connections,
        duration: args.duration,
    })?;
    let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1e3);
    println!(
        "{:.2} {} {} {}",
        report.rate(),
        ms(report.p50),
        ms(report.p99),
        report.failed
    );
    Ok(())
}

/// Serve bundled models natively (no Wasm) behind the same HTTP stack: the
/// serving benchmark's baseline.
#[derive(Debug, clap::Args)]
pub struct NativeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Model to serve (`ns/name@version`, repeatable): a bundled standardize +
    /// softmax-regression or mlp classifier.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn serve_native(args: NativeArgs) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let rt = common::runtime(Device::cpu())?;
    let mut models = Vec::new();
    for (name, reference) in plan::served(&args.models, || Ok(vec![]))? {
        let model = args.registry.sources()?.model(&rt, &reg, &reference)?;
        let version = reference.rsplit_once('@').map_or("latest", |(_, v)| v);
        models.push(NativeModel::new(&name, version, &model)?);
    }
    let app = native::app(rt.device().clone(), models);
    serve::async_runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        eprintln!("serving natively on http://{}", args.addr);
        axum::serve(BatchedListener::new(listener, true), app).await?;
        Ok(())
    })
}
