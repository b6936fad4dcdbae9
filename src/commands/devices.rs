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
        let adapters: Vec<_> = listing
            .adapters
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "backend": a.backend,
                    "device_type": a.device_type,
                    "driver": a.driver,
                    "software": a.software,
                })
            })
            .collect();
        let json = serde_json::json!({
            "gpu_backend": listing.gpu_backend,
            "adapters": adapters,
            "auto": listing.auto_pick(),
            "auto_adapter": listing.auto,
            "gpu": listing.gpu_pick(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    for line in listing.lines() {
        println!("{line}");
    }
    Ok(())
}
