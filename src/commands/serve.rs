//! `tensorlet serve [--addr 127.0.0.1:8080] [--model ns/name@alias …]`

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tensorlet_console::serving::{self as console, DeployLog, Serving};
use tensorlet_runtime::fleet::{Follower, Upstream, production_models};
use tensorlet_runtime::serve::breaker::BreakerConfig;
use tensorlet_runtime::serve::registry::{
    AuditEvents, RegistrySource, Storage, Targets, Watch, deploy, movable,
};
use tensorlet_runtime::serve::{self, ServeConfig, Server, plan};

use crate::artifacts::{self, RegistryArgs};
use crate::common::{self, DeviceArgs, LimitArgs};

/// Serve model versions over HTTP and gRPC (Open Inference Protocol V2).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the public endpoint.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Address of the admin endpoint (POST /admin/deploy); keep it on loopback.
    /// `off` disables it.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_addr: String,
    /// Address of the OIP gRPC endpoint (inference.GRPCInferenceService).
    /// `off` disables it.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub grpc_addr: String,
    /// Model to serve, as `ns/name@alias`, `ns/name@1.2.0` or `ns/name`
    /// (repeatable). Served under its name without the namespace. Default:
    /// every model that has a `production` alias.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Also serve the models of an OCI image layout directory (KServe's
    /// /mnt/models; write one with `tensorlet push <ref>
    /// oci-layout:DIR/ns/name:version`): of each repository, the `production`
    /// tag or the highest version, verified against the trust policy and
    /// imported first. Refused artifacts stop the server with the reason.
    #[arg(long, value_name = "DIR", env = "TENSORLET_MODEL_DIR")]
    pub model_dir: Option<std::path::PathBuf>,
    /// Without --model-dir, also serve the model KServe's storageUri names,
    /// when it is a tensorlet artifact in an OCI registry
    /// (`oci://host/…/ns/name:tag`, pulled and verified first) or a layout
    /// directory (`file://DIR`).
    #[arg(long, value_name = "URI", env = "STORAGE_URI", hide_env_values = true)]
    pub storage_uri: Option<String>,
    /// Serve the one model under this name (KServe: the InferenceService's).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// How often aliases are checked for moves (seconds); a moved alias is
    /// loaded, verified, warmed and swapped in without dropping requests.
    #[arg(long, default_value_t = 2.0)]
    pub poll: f64,
    /// Follow a central registry (`https://host:7070`, `http://host:7070` or
    /// `oci://host:5000[/prefix]`):
    /// each poll asks it where the served aliases point (one small request),
    /// pulls and verifies against the local trust policy only what moved, and
    /// swaps it in; what this node does not trust is refused and reported.
    #[arg(long, conflicts_with = "registry")]
    pub follow: Option<String>,
    /// Largest batch per request, and per coalesced call (--batch-delay).
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// Adaptive batching: concurrent requests to one model are coalesced into
    /// one call of up to --max-batch rows (sharing its instances). `0`: what
    /// one round of a worker has ready, adding no wait; a wait such as `2ms`;
    /// `off`: fresh instances for every request.
    #[arg(long, value_name = "DELAY", default_value = "off")]
    pub batch_delay: String,
    /// Requests computed at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
    /// Requests of one model computed at once; more are answered 503 with
    /// Retry-After for that model only. Default: --max-concurrency divided
    /// by the number of models served.
    #[arg(long, value_name = "N")]
    pub model_concurrency: Option<usize>,
    /// Shed a model after this many of its requests in a row fail by its
    /// own doing (past the deadline, trapped, over a memory limit): its
    /// requests get 503 with Retry-After until a probe after --shed-for
    /// succeeds. 0 never sheds.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub shed_after: u32,
    /// How long a shed model is refused before one request probes it.
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = tensorlet_runtime::parse_duration)]
    pub shed_for: Duration,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body: usize,
    /// Send a finished response after the other requests ready on the same
    /// worker, back to back with theirs: under load this wakes a client once
    /// per round instead of once per response. `false` sends each at once.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub batch_writes: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = artifacts::open()?;
    let follower = match &args.follow {
        Some(u) => Some(Arc::new(Follower::new(
            Upstream::parse(u, common::http_client()?)?,
            artifacts::open()?,
        ))),
        None => None,
    };
    let mut given = args.models.clone();
    let storage = Storage {
        model_dir: args.model_dir.clone(),
        uri: args.storage_uri.clone(),
    };
    for reference in storage.import(&reg)? {
        eprintln!("verified {reference}");
        given.push(reference);
    }
    let mut by_name = plan::served(&given, || match &follower {
        Some(f) => Ok(f.upstream().production_models()?),
        None => Ok(production_models(reg.list()?)),
    })?;
    if let Some(name) = &args.model_name {
        by_name = plan::renamed(by_name, name)?;
    }

    let device = args.device.open()?;
    let mut limits = tensorlet_runtime::Limits::default();
    args.limits.overrides().apply(&mut limits);
    let rt = Arc::new(common::runtime_with(device.clone(), limits)?);
    let source = Arc::new(RegistrySource::new(
        rt.clone(),
        artifacts::open()?,
        args.registry.sources()?,
    ));
    let events = Arc::new(AuditEvents::new(
        artifacts::open()?,
        Box::new(|name, reference, error| {
            eprintln!("deploy of {reference} as `{name}` failed: {error}");
        }),
    ));
    let config = ServeConfig {
        max_body_bytes: args.max_body,
        max_batch: args.max_batch,
        batch_delay: serve::parse_batch_delay(&args.batch_delay)
            .map_err(|e| anyhow::anyhow!("--batch-delay: {e}"))?,
        max_concurrency: args.max_concurrency,
        model_concurrency: args.model_concurrency,
        breaker: BreakerConfig {
            failures: args.shed_after,
            cool_down: args.shed_for,
        },
        drain: Duration::from_millis(500),
        batch_writes: args.batch_writes,
        ..ServeConfig::default()
    };
    // The serving pages show the last deploys.
    let deploys = Arc::new(DeployLog::new(events.clone()));
    let server = Arc::new(Server::new(device, config, deploys.clone()).with_source(source.clone()));

    if let Some(f) = &follower {
        for reference in by_name.values() {
            let polled = f.poll(reference);
            if let Some(line) = plan::first_poll(reference, &f.upstream().url(), polled)? {
                eprintln!("{line}");
            }
        }
    }
    let mut targets = Targets::default();
    for (name, reference) in &by_name {
        match deploy(&server, &source, name, reference) {
            Ok(digest) => targets.deployed(name, &digest),
            Err(e) => eprintln!("cannot serve {reference}: {e}"),
        }
    }
    if targets.is_empty() {
        bail!("none of the models could be loaded (see the errors above)");
    }

    let tokio = serve::async_runtime()?;
    let listener = serve::listen(&tokio, &args.addr, "")?;
    // The serving pages on the admin address, beside the deploy endpoint.
    let admin = serve::listen_unless_off(&tokio, &args.admin_addr, " (admin)")?.map(|l| {
        let loopback = l.local_addr().is_ok_and(|a| a.ip().is_loopback());
        (
            l,
            console::app(Serving::new(server.clone(), deploys), loopback),
        )
    });
    let grpc = serve::listen_unless_off(&tokio, &args.grpc_addr, " (gRPC)")?;
    let addr = listener.local_addr()?;
    let admin_addr = admin.as_ref().map(|(a, _)| a.local_addr()).transpose()?;
    let grpc_addr = grpc.as_ref().map(|g| g.local_addr()).transpose()?;
    events.record(
        "serve.start",
        &addr.to_string(),
        json!({ "models": by_name }),
    );
    for line in plan::endpoints(addr, &server.deployed(), admin_addr, grpc_addr) {
        println!("{line}");
    }

    // Follow aliases: poll the registry, swap in what an alias points at now.
    let follow = movable(&by_name);
    let watching = (!follow.is_empty()).then(|| {
        Watch {
            server: server.clone(),
            source: source.clone(),
            follower: follower.clone(),
            follow,
            targets,
            poll: Duration::from_secs_f64(args.poll.max(0.05)),
            on_move: Box::new(|reference, digest| {
                println!("{reference} moved; deploying {digest}");
            }),
        }
        .start()
    });
    let result = tokio.block_on(serve::run(
        server.clone(),
        listener,
        admin,
        grpc,
        serve::shutdown_signal(),
    ));
    if let Some(w) = watching {
        w.stop();
    }
    events.record("serve.stop", &addr.to_string(), json!({}));
    println!("stopped");
    result.context("the server failed")
}
