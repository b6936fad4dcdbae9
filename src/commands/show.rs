//! `tensorlet show <ref> [--json] [--lineage]`

use anyhow::Result;
use tensorlet_registry::Reference;
use tensorlet_runtime::run::history::training_options;

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
        return super::lineage::print(&reg, &artifact, args.json);
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
    let m = &signed.manifest;
    println!("{} ({})", summary.reference(), summary.kind);
    println!("  digest   {}", summary.digest);
    println!("  key      {}", signed.key_id());
    println!("  created  {}", summary.created);
    if summary.yanked {
        println!("  yanked");
    }
    if !summary.aliases.is_empty() {
        println!("  aliases  {}", summary.aliases.join(", "));
    }
    for (role, d) in &m.blobs {
        println!("  blob     {role} {d}");
    }
    for (role, pin) in &m.depends {
        println!("  depends  {role} {} {}", pin.reference, pin.digest);
    }
    let mut config = m.config.clone();
    if config.get("training").is_some() {
        config["training"] = training_options(&config["training"]);
    }
    println!("  config   {config}");
    println!("  lineage  {}", m.lineage);
    println!(
        "(not verified here; run `tensorlet verify {}`)",
        summary.reference()
    );
    Ok(())
}
