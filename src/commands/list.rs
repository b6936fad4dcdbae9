//! `tensorlet list [--json]`

use anyhow::Result;
use tensorlet_runtime::report::listing::ArtifactTable;

use crate::artifacts::RegistryArgs;

/// List artifact versions in the registry.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Prints summaries as a table.
pub fn execute(args: Args) -> Result<()> {
    let all = match args.registry.remote()? {
        Some(remote) => remote.list()?,
        None => crate::artifacts::open()?.list()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        println!("the registry is empty; publish with `tensorlet publish`");
    } else {
        print!("{}", ArtifactTable(&all));
    }
    Ok(())
}
