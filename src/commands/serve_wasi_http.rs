//! `tensorlet serve-wasi-http <component.wasm> [--addr 127.0.0.1:8080]`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tensorlet_runtime::export::{self, host::HostLimits, host::WasiHttpHost, trust};

/// Serve a wasi:http component (such as one made by `tensorlet export
/// --wasi-http`) with wasmtime and wasmtime-wasi-http, as `wasmtime serve` does.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component.
    pub component: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Wall-clock budget of one request, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub deadline: f64,
    /// Refuse a component that is not a tensorlet export signed by a key that
    /// this node's trust policy allows for the model's namespace.
    #[arg(long)]
    pub require_signed: bool,
}

pub fn execute(args: Args) -> Result<()> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let inspection = export::inspect(&bytes);
    if args.require_signed {
        trust::require_signed(&args.component, &inspection, || {
            Ok(crate::artifacts::open()?.trust_list()?)
        })?;
    }
    let what = trust::describe(&inspection);
    let limits = HostLimits {
        deadline: Duration::from_secs_f64(args.deadline.max(0.01)),
        ..HostLimits::default()
    };
    let host = WasiHttpHost::new(&bytes, limits)
        .with_context(|| format!("cannot serve {}", args.component.display()))?;
    let tokio = tensorlet_runtime::serve::async_runtime()?;
    let listener = tensorlet_runtime::serve::listen(&tokio, &args.addr, "")?;
    println!(
        "serving {} ({what}) at http://{}",
        args.component.display(),
        listener.local_addr()?
    );
    tokio.block_on(host.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    Ok(())
}
