//! `tensorlet sync --from <http://… | oci://…> <ns/name>@<alias>…`

use anyhow::{Context, Result};
use tensorlet_registry::Reference;
use tensorlet_runtime::fleet::Upstream;

/// Pull what aliases point at in a central registry, verify it against the
/// local trust policy and cache it with the alias, so `tensorlet serve`
/// runs it afterwards with no network.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The central registry: a tensorlet registry (`http://host:7070`) or an
    /// OCI registry (`oci://host:5000[/prefix]`).
    #[arg(long)]
    pub from: String,
    /// What to sync: `ns/name@alias` (or `ns/name@1.2.0`); repeatable.
    #[arg(required = true)]
    pub references: Vec<String>,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let upstream = Upstream::parse(&args.from, crate::common::http_client()?)?;
    for r in &args.references {
        let reference = Reference::parse(r)?;
        let a = upstream
            .sync(&reg, &reference)
            .with_context(|| format!("cannot sync {r} from {}", upstream.url()))?;
        println!(
            "synced {r} -> {} ({}) from {}; cached in {}",
            a.reference(),
            a.digest(),
            upstream.url(),
            reg.home().display()
        );
    }
    Ok(())
}
