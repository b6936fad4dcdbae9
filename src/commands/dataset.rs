//! `tensorlet dataset add <name> <file>`, `dataset show <name>` and
//! `dataset list`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tensorlet_runtime::data;
use tensorlet_runtime::report::{self, DatasetList, DatasetView};

/// Register datasets by digest, so that runs reference data by digest.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetCommand {
    /// Register a table under a name: its digest, a snapshot and its
    /// columns' types are kept, and training with `--data <name>` refuses
    /// the file if it changed.
    Add {
        /// A name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// The table: CSV (a header row), Parquet (`.parquet`) or JSON lines
        /// (`.jsonl`).
        file: PathBuf,
    },
    /// A registered dataset and its columns.
    Show {
        /// `name` (its newest entry) or `name@sha256:…`.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
            // Refuse what no reader can read, before registering it.
            let schema = data::schema(&file, None)
                .with_context(|| format!("{} is not a readable table", file.display()))?;
            let recorded = serde_json::to_value(&schema)?;
            let (entry, added) = reg
                .datasets()
                .add_with_schema(&name, &file, Some(&recorded))?;
            println!("{}", report::dataset_added(&entry, &schema, added));
        }
        DatasetCommand::Show { name, json } => {
            let entry = reg.datasets().get(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entry)?);
            } else {
                print!("{}", DatasetView(&entry));
            }
        }
        DatasetCommand::List { json } => {
            let all = reg.datasets().list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", DatasetList(&all));
            }
        }
    }
    Ok(())
}
