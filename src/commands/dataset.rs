//! `tensorlet dataset add <name> <file.csv>` and `tensorlet dataset list`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tensorlet_runtime::data;

/// Register datasets by digest, so that runs reference data by digest.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetCommand {
    /// Register a CSV file under a name: its digest and a snapshot are kept,
    /// and training with `--data <name>` refuses the file if it changed.
    Add {
        /// A name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// The CSV file (header row, label in the last column).
        file: PathBuf,
    },
    /// The registered datasets, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        DatasetCommand::Add { name, file } => {
            // Refuse what training would refuse, before registering it.
            let ds = data::load_labeled(&file, None)
                .with_context(|| format!("{} is not usable training data", file.display()))?;
            let (entry, added) = reg.datasets().add(&name, &file)?;
            if added {
                println!(
                    "registered dataset {} ({} rows, {} features, {} bytes) from {}",
                    entry.reference(),
                    ds.rows(),
                    ds.features(),
                    entry.size,
                    entry.path
                );
            } else {
                println!(
                    "dataset {} is already registered with this content",
                    entry.reference()
                );
            }
        }
        DatasetCommand::List { json } => {
            let all = reg.datasets().list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!(
                    "no datasets; register one with `tensorlet dataset add <name> <file.csv>`"
                );
            } else {
                println!(
                    "{:<20} {:<22} {:>10} {:<25} PATH",
                    "NAME", "DIGEST", "BYTES", "ADDED"
                );
                for d in &all {
                    println!(
                        "{:<20} {:<22} {:>10} {:<25} {}",
                        d.name,
                        &d.digest[..d.digest.len().min(22)],
                        d.size,
                        d.added,
                        d.path
                    );
                }
            }
        }
    }
    Ok(())
}
