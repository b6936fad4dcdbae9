//! `tensorlet serve [--addr 127.0.0.1:8080] [--model ns/name@alias …]`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tensorlet_console::serving::{DeployLog, Serving};
use tensorlet_runtime::Runtime;
use tensorlet_runtime::registry::{Kind, Reference, Registry, Selector};
use tensorlet_runtime::serve::{Deployment, ModelSource, ServeConfig, ServeEvents, Server};

use crate::artifacts::{self, RegistryArgs};
use crate::common::{self, DeviceArgs};

/// Serve model versions over HTTP (Open Inference Protocol V2).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the public endpoint.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Address of the admin endpoint (POST /admin/deploy); keep it on loopback.
    /// `off` disables it.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_addr: String,
    /// Model to serve, as `ns/name@alias`, `ns/name@1.2.0` or `ns/name`
    /// (repeatable). Served under its name without the namespace. Default:
    /// every model that has a `production` alias.
    #[arg(long = "model")]
    pub models: Vec<String>,
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
    /// Largest batch per request.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// Requests computed at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
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
}

/// The name a model is served under: `ns/name@x` -> `name`.
pub fn served_name(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    name.rsplit('/').next().unwrap_or(name).to_string()
}

/// Loads verified model artifacts from the registry (local, or remote + cache).
struct RegistrySource {
    rt: Arc<Runtime>,
    reg: Mutex<Registry>,
    remote: RegistryArgs,
}

impl RegistrySource {
    /// The manifest digest `reference` resolves to now (cheap: no blob reads).
    fn current(&self, reference: &str) -> Result<String, String> {
        let r = Reference::parse(reference).map_err(|e| e.to_string())?;
        let reg = self.reg.lock().expect("registry lock");
        if self.remote.registry.is_some() {
            // Pull what the alias points at now (verified against the local
            // trust policy), then read it locally.
            self.remote
                .fetch(&reg, reference)
                .map_err(|e| e.to_string())?;
        }
        reg.resolve(&r).map(|s| s.digest).map_err(|e| e.to_string())
    }
}

impl ModelSource for RegistrySource {
    fn load(&self, name: &str, reference: &str) -> Result<Deployment, String> {
        let reg = self.reg.lock().expect("registry lock");
        let artifact = self
            .remote
            .fetch(&reg, reference)
            .map_err(|e| format!("{e}"))?;
        if artifact.kind() != Kind::Model {
            return Err(format!(
                "{} is a {}, not a model",
                artifact.reference(),
                artifact.kind()
            ));
        }
        let model = tensorlet_runtime::artifacts::load_model(&self.rt, &reg, &artifact)
            .map_err(|e| format!("{e}"))?;
        let version = artifact.manifest().version.to_string();
        Ok(Deployment::new(
            name,
            &version,
            &artifact.reference(),
            model,
        ))
    }
}

/// Records serving events in the audit log.
struct AuditEvents {
    reg: Mutex<Registry>,
}

impl AuditEvents {
    fn record(&self, action: &str, subject: &str, detail: serde_json::Value) {
        if let Err(e) = self
            .reg
            .lock()
            .expect("registry lock")
            .record(action, subject, detail)
        {
            tracing::error!("cannot write the audit log: {e}");
        }
    }
}

impl ServeEvents for AuditEvents {
    fn loaded(&self, name: &str, version: &str, reference: &str) {
        self.record(
            "serve.deploy",
            reference,
            json!({ "model": name, "version": version }),
        );
    }

    fn unloaded(&self, name: &str, version: &str, reference: &str) {
        self.record(
            "serve.undeploy",
            reference,
            json!({ "model": name, "version": version }),
        );
    }

    fn deploy_failed(&self, name: &str, reference: &str, error: &str) {
        eprintln!("deploy of {reference} as `{name}` failed: {error}");
        self.record(
            "serve.deploy_failed",
            reference,
            json!({ "model": name, "error": error }),
        );
    }

    fn invocations(&self, counts: &[(String, String, u64)]) {
        for (model, version, n) in counts {
            self.record(
                "serve.invocations",
                model,
                json!({ "version": version, "count": n }),
            );
        }
    }
}

/// Every model with a `production` alias.
fn production_models(reg: &Registry) -> Result<Vec<String>> {
    let mut names: Vec<String> = reg
        .list()?
        .into_iter()
        .filter(|a| a.kind == Kind::Model && a.aliases.iter().any(|x| x == "production"))
        .map(|a| format!("{}@production", a.name))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

pub fn execute(args: Args) -> Result<()> {
    let reg = artifacts::open()?;
    let follower = match &args.follow {
        Some(u) => Some(Arc::new(crate::fleet::Follower::new(
            crate::fleet::Upstream::parse(u)?,
            artifacts::open()?,
        ))),
        None => None,
    };
    let targets = if args.models.is_empty() {
        let found = match &follower {
            Some(f) => f.upstream().production_models()?,
            None => production_models(&reg)?,
        };
        if found.is_empty() {
            bail!(
                "no model has a `production` alias; name models with --model ns/name@alias, \
                 or promote one with `tensorlet alias set <ns/name> production <version>`"
            );
        }
        found
    } else {
        args.models.clone()
    };
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for t in &targets {
        Reference::parse(t).with_context(|| format!("--model {t}"))?;
        if let Some(other) = by_name.insert(served_name(t), t.clone()) {
            bail!(
                "{t} and {other} would both be served as `{}`; serve them from separate servers",
                served_name(t)
            );
        }
    }

    let device = args.device.open()?;
    let rt = Arc::new(common::runtime(device.clone())?);
    let source = Arc::new(RegistrySource {
        rt: rt.clone(),
        reg: Mutex::new(artifacts::open()?),
        remote: args.registry.clone(),
    });
    let events = Arc::new(AuditEvents {
        reg: Mutex::new(artifacts::open()?),
    });
    let config = ServeConfig {
        max_body_bytes: args.max_body,
        max_batch: args.max_batch,
        max_concurrency: args.max_concurrency,
        drain: Duration::from_millis(500),
        batch_writes: args.batch_writes,
        ..ServeConfig::default()
    };
    // The serving pages on the admin address show the last deploys.
    let deploys = Arc::new(DeployLog::new(events.clone()));
    let server = Arc::new(Server::new(device, config, deploys.clone()).with_source(source.clone()));

    if let Some(f) = &follower {
        for reference in by_name.values() {
            crate::fleet::report_initial(f, reference)?;
        }
    }
    let mut deployed: BTreeMap<String, String> = BTreeMap::new();
    for (name, reference) in &by_name {
        match deploy(&server, &source, name, reference) {
            Ok(digest) => {
                deployed.insert(name.clone(), digest);
            }
            Err(e) => eprintln!("cannot serve {reference}: {e}"),
        }
    }
    if deployed.is_empty() {
        bail!("none of the models could be loaded (see the errors above)");
    }

    let tokio = crate::common::server_runtime()?;
    let listener = crate::common::listen(&tokio, &args.addr, "")?;
    let admin = if args.admin_addr == "off" {
        None
    } else {
        let l = crate::common::listen(&tokio, &args.admin_addr, " (admin)")?;
        let loopback = l.local_addr()?.ip().is_loopback();
        let pages =
            tensorlet_console::serving::app(Serving::new(server.clone(), deploys), loopback);
        let app = tensorlet_runtime::serve::admin_app(server.clone()).merge(pages);
        Some((l, app))
    };
    let addr = listener.local_addr()?;
    events.record(
        "serve.start",
        &addr.to_string(),
        json!({ "models": by_name }),
    );
    for (name, version) in server.deployed() {
        println!("serving {name} {version} at http://{addr}/v2/models/{name}/infer");
    }
    if let Some((a, _)) = &admin {
        let a = a.local_addr()?;
        println!("admin endpoint at http://{a}/admin/deploy");
        println!("serving console at http://{a}/serving");
    }

    // Follow aliases: poll the registry, swap in what an alias points at now.
    let follow: Vec<(String, String)> = by_name
        .iter()
        .filter(|(_, r)| {
            Reference::parse(r).is_ok_and(|r| !matches!(r.selector, Selector::Version(_)))
        })
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = (!follow.is_empty()).then(|| {
        let (server, source, stop) = (server.clone(), source.clone(), stop.clone());
        let poll = Duration::from_secs_f64(args.poll.max(0.05));
        let follower = follower.clone();
        std::thread::spawn(move || {
            let follower = follower.as_deref();
            watch(
                &server,
                &source,
                follower,
                &follow,
                &mut deployed,
                poll,
                &stop,
            );
        })
    });

    // The admin address (deploy endpoint and serving pages) closes after
    // the public one has drained.
    let (stop_admin, admin_stop) = tokio::sync::watch::channel(false);
    let admin_task = admin.map(|(l, app)| {
        let mut stop = admin_stop.clone();
        tokio.spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    });
    let result = tokio.block_on(tensorlet_runtime::serve::run(
        server.clone(),
        listener,
        None,
        tensorlet_runtime::serve::shutdown_signal(),
    ));
    let _ = stop_admin.send(true);
    if let Some(t) = admin_task {
        let _ = tokio.block_on(t);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    events.record("serve.stop", &addr.to_string(), json!({}));
    println!("stopped");
    result.context("the server failed")
}

/// Loads (verifying) and deploys (warming) what `reference` points at now;
/// returns its manifest digest. Failures are recorded for the ready endpoint,
/// the log and the audit log, and leave the current version serving.
fn deploy(
    server: &Server,
    source: &RegistrySource,
    name: &str,
    reference: &str,
) -> Result<String, String> {
    let recorded = |e: String| {
        server.record_failure(name, reference, &e);
        e
    };
    let digest = source.current(reference).map_err(recorded)?;
    let d = source.load(name, reference).map_err(recorded)?;
    // A failed warm-up is recorded by the server itself.
    server.deploy(d)?;
    Ok(digest)
}

/// Polls each followed reference; deploys what it resolves to when that changes.
/// Failures back off (up to 30 s) and leave the current version serving.
fn watch(
    server: &Server,
    source: &RegistrySource,
    follower: Option<&crate::fleet::Follower>,
    follow: &[(String, String)],
    deployed: &mut BTreeMap<String, String>,
    poll: Duration,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut backoff = poll;
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(backoff.min(Duration::from_millis(200)));
        let mut slept = Duration::from_millis(200);
        while slept < backoff && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            slept += Duration::from_millis(200);
        }
        let mut trouble = false;
        for (name, reference) in follow {
            if let Some(f) = follower {
                match f.poll(reference) {
                    Ok(crate::fleet::Followed::Refused(e)) => {
                        // Logged and audited (serve.deploy_failed); the
                        // current version keeps serving.
                        server.record_failure(name, reference, &e);
                    }
                    Ok(_) => {}
                    Err(e) if e.is_unreachable() => {
                        tracing::warn!("cannot follow {reference}: {e}");
                        trouble = true;
                    }
                    Err(e) => {
                        // Not an outage: TLS, an HTTP error or a missing
                        // reference, which retrying alone will not fix.
                        tracing::error!("cannot follow {reference}: {e}");
                        trouble = true;
                    }
                }
            }
            let digest = match source.current(reference) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("cannot resolve {reference}: {e}");
                    trouble = true;
                    continue;
                }
            };
            if deployed.get(name) == Some(&digest) || failed.get(name) == Some(&digest) {
                continue;
            }
            println!("{reference} moved; deploying {digest}");
            match deploy(server, source, name, reference) {
                Ok(_) => {
                    deployed.insert(name.clone(), digest);
                    failed.remove(name);
                }
                Err(_) => {
                    failed.insert(name.clone(), digest);
                    trouble = true;
                }
            }
        }
        backoff = if trouble {
            (backoff * 2).min(Duration::from_secs(30))
        } else {
            poll
        };
    }
}
