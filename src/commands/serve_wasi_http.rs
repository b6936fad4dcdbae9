//! `tensorlet serve-wasi-http <component.wasm> [--addr 127.0.0.1:8080]`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tensorlet_runtime::export::{self, host::HostLimits, host::WasiHttpHost};

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
        match &inspection {
            Err(e) => anyhow::bail!(
                "{} is refused (--require-signed): {e}",
                args.component.display()
            ),
            Ok(i) if i.signed_by.is_none() => anyhow::bail!(
                "{} is not signed and --require-signed is set; export it with `--key <name>`",
                args.component.display()
            ),
            Ok(i) => {
                let key = i.signed_by.as_ref().expect("checked");
                check_trusted(key.key_id().as_str(), &i.meta.model).with_context(|| {
                    format!("{} is refused (--require-signed)", args.component.display())
                })?;
            }
        }
    }
    let what = match inspection {
        Ok(i) => format!(
            "{} (model manifest {}), {}",
            i.meta.model,
            i.meta.manifest_digest,
            match &i.signed_by {
                Some(k) => format!("signed by key {}", k.key_id()),
                None => "unsigned".into(),
            }
        ),
        Err(_) => "a wasi:http component that is not a tensorlet export".into(),
    };
    let limits = HostLimits {
        deadline: Duration::from_secs_f64(args.deadline.max(0.01)),
        ..HostLimits::default()
    };
    let host = WasiHttpHost::new(&bytes, limits)
        .with_context(|| format!("cannot serve {}", args.component.display()))?;
    let tokio = crate::common::server_runtime()?;
    let listener = crate::common::listen(&tokio, &args.addr, "")?;
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

/// Whether the local trust policy lets `key_id` publish `model`'s namespace.
fn check_trusted(key_id: &str, model: &str) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let ns = model.split('/').next().unwrap_or_default();
    let Some(entry) = reg.trust_list()?.into_iter().find(|t| t.key_id == key_id) else {
        anyhow::bail!(
            "it is signed by key {key_id}, which this node's trust policy does not list; \
             `tensorlet trust add <public key> --namespace {ns}` trusts it"
        );
    };
    if !entry.namespaces.iter().any(|n| n == "*" || n == ns) {
        anyhow::bail!(
            "it is signed by key {key_id}, which this node trusts only for {}, not for `{ns}` \
             (the namespace of {model})",
            entry.namespaces.join(", ")
        );
    }
    Ok(())
}
