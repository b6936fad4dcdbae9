//! `tensorlet devices`: the GPU adapters wgpu finds, and what `--device auto` picks.

use anyhow::Result;
use tensorlet_gpu::listing::Listing;

/// List the GPU adapters (name, backend, device type) and which one `auto` picks.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> Result<()> {
    let listing = Listing::probe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing.json())?);
        return Ok(());
    }
    for line in listing.lines() {
        println!("{line}");
    }
    Ok(())
}
