//! `tensorlet pull oci://…/ns/name:<tag>` and `tensorlet pull <ref> --registry http://…`

use anyhow::{Result, bail};
use tensorlet_registry::Reference;
use tensorlet_registry::client;
use tensorlet_registry::oci::{self, OciReference};

use crate::artifacts::RegistryArgs;

/// Pull an artifact and everything it pins; verify it against the local
/// trust policy and cache it locally.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `oci://host[:port][/prefix]/ns/name:<version|alias>` (or `@sha256:…`),
    /// or `ns/name@…` together with --registry.
    pub source: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let (artifact, from) =
        if args.source.starts_with("oci://") || args.source.starts_with(oci::LAYOUT) {
            let r = OciReference::parse(&args.source)?;
            let selector = r.selected("pull")?;
            (
                oci::pull(&reg, &r.remote, &r.name, selector)?,
                r.to_string(),
            )
        } else {
            let Some(remote) = args.registry.remote()? else {
                bail!(
                    "pull from where? give an `oci://…` reference, or a tensorlet registry with \
                 --registry http://host:7070"
                );
            };
            let r = Reference::parse(&args.source)?;
            (client::pull(&reg, &remote, &r)?, remote.url().to_string())
        };
    println!(
        "pulled {} ({}) from {from}: signed by key {}, verified against the local trust policy",
        artifact.reference(),
        artifact.digest(),
        artifact.key_id()
    );
    Ok(())
}
