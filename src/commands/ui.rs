//! `tensorlet ui [--addr 127.0.0.1:7080]`: the web console of `$TENSORLET_HOME`.

use anyhow::{Context, Result};
use tensorlet_console::{Console, ConsoleConfig};
use tensorlet_registry::http::HttpSettings;

use crate::artifacts::RegistryArgs;
use crate::common;

/// Serve the web console: artifacts, lineage, runs, datasets, audit log, serving.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Actions (promote, rollback, alias set, yank) are
    /// offered only on a loopback address.
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub addr: String,
    /// Offer actions on a non-loopback address too. Anyone who can reach the
    /// address can then move aliases and yank versions in this home.
    #[arg(long)]
    pub allow_remote_actions: bool,
    /// A `tensorlet serve` admin address (`http://127.0.0.1:8081`) whose
    /// serving state the Serving page shows.
    #[arg(long)]
    pub serving: Option<String>,
    /// Show a remote registry's artifacts (judged by the local trust
    /// policy); runs, datasets, lineage and the audit log stay the home's.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let tokio = tensorlet_runtime::serve::async_runtime()?;
    let listener = tensorlet_runtime::serve::listen(&tokio, &args.addr, " (console)")?;
    let addr = listener.local_addr()?;
    let mut config = ConsoleConfig::new(common::home(), addr);
    config.remote = args.registry.registry.clone().filter(|r| !r.is_empty());
    config.allow_remote_actions = args.allow_remote_actions;
    config.serving_url = args.serving.clone();
    config.http = HttpSettings::from_env();
    if let Some(line) = config.exposure() {
        eprintln!("{line}");
    }
    let console = Console::new(config);
    println!("console at http://{addr}/");
    tokio
        .block_on(async move {
            axum::serve(listener, tensorlet_console::app(console))
                .with_graceful_shutdown(tensorlet_runtime::serve::shutdown_signal())
                .await
        })
        .context("the console failed")
}
