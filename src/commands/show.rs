//! `tensorlet show <ref> [--json] [--lineage]`

use anyhow::Result;
use tensorlet_registry::Reference;
use tensorlet_runtime::lineage;
use tensorlet_runtime::report::ArtifactView;

use crate::artifacts::RegistryArgs;

/// Show an artifact version: its summary and its signed manifest (not
/// verified; `tensorlet verify` does that).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `ns/name`, `ns/name@1.2.0`, `ns/name@alias` or `ns/name@sha256:…`.
    pub reference: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print where a model came from, each link verified: model → run →
    /// pipeline → plugins (digest, signer) → dataset digest.
    #[arg(long)]
    pub lineage: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn execute(args: Args) -> Result<()> {
    if args.lineage {
        let reg = crate::artifacts::open()?;
        let artifact = args.registry.sources()?.fetch(&reg, &args.reference)?;
        let l = lineage::lineage(&reg, &artifact)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&l)?);
        } else {
            print!("{}", lineage::tree(&l));
        }
        return Ok(());
    }
    let r = Reference::parse(&args.reference)?;
    let (summary, signed) = match args.registry.remote()? {
        Some(remote) => remote.resolve(&r)?,
        None => crate::artifacts::open()?.show(&r)?,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"summary": summary, "manifest": signed})
            )?
        );
        return Ok(());
    }
    print!(
        "{}",
        ArtifactView {
            summary: &summary,
            signed: &signed
        }
    );
    Ok(())
}
