//! `tensorlet list [--json]`

use anyhow::Result;
use tensorlet_registry::ArtifactSummary;

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
pub fn print_table(all: &[ArtifactSummary]) {
    println!(
        "{:<40} {:<12} {:<19} {:<16} STATUS",
        "ARTIFACT", "KIND", "DIGEST", "KEY"
    );
    for a in all {
        let mut status = Vec::new();
        if a.yanked {
            status.push("yanked".to_string());
        }
        if !a.aliases.is_empty() {
            status.push(format!("@{}", a.aliases.join(" @")));
        }
        println!(
            "{:<40} {:<12} {:<19} {:<16} {}",
            a.reference(),
            a.kind.as_str(),
            &a.digest[..a.digest.len().min(19)],
            a.key_id,
            status.join(" ")
        );
    }
}

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
        print_table(&all);
    }
    Ok(())
}
