//! `tensorlet push <ref> oci://<host>/<prefix>/<ns>/<name>[:<version>] [--alias <alias>…]`

use anyhow::{Context, Result};
use tensorlet_registry::oci::{self, OciReference};
use tensorlet_registry::{Reference, Selector};

/// Push a verified artifact, and everything it pins, to an OCI registry.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The local artifact: `ns/name@1.2.0`, `ns/name@alias`, `ns/name`.
    pub reference: String,
    /// Where to: `oci://host[:port][/prefix]/ns/name[:<version>]`. The
    /// repository ends in the artifact's name (its dependencies go beside it,
    /// each in its own repository); the tag is its semantic version.
    pub destination: String,
    /// Also point this alias tag (`production`, …) at it; repeatable.
    /// Followers (`tensorlet serve --follow oci://…`) pick the move up.
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let reference = Reference::parse(&args.reference)?;
    let dest = OciReference::parse(&args.destination)?;
    let summary = reg
        .resolve(&reference)
        .with_context(|| format!("cannot push {reference}"))?;
    dest.check_push(&summary.name, &summary.version)?;
    let pinned = Reference {
        name: summary.name.clone(),
        selector: Selector::Digest(summary.digest.clone()),
    };
    let pushed = oci::push(&reg, &dest.remote, &pinned, &args.aliases)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&pushed)?);
        return Ok(());
    }
    for (location, uploaded) in &pushed.artifacts {
        let what = if *uploaded { "pushed" } else { "present" };
        println!("{what:<8} {location}");
    }
    println!(
        "{} is at {} ({}), tagged {}",
        pushed.reference,
        pushed.location,
        pushed.oci_digest,
        pushed.tags.join(", ")
    );
    Ok(())
}
