//! `tensorlet dataset add <name> <file>`, `dataset show <name>` and
//! `dataset list`.

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
            if added {
                println!(
                    "registered dataset {} ({} rows, {} features, {} columns, {}, {} bytes) from {}",
                    entry.reference(),
                    schema.rows,
                    // With the label in the last column, as training reads
                    // it by default.
                    schema.columns.len().saturating_sub(1),
                    schema.columns.len(),
                    schema.format,
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
        DatasetCommand::Show { name, json } => {
            let entry = reg.datasets().get(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entry)?);
                return Ok(());
            }
            println!("dataset   {}", entry.reference());
            println!("path      {}", entry.path);
            println!("bytes     {}", entry.size);
            println!("added     {}", entry.added);
            let schema: Option<data::TableSchema> = entry
                .schema
                .as_ref()
                .and_then(|s| serde_json::from_value(s.clone()).ok());
            let Some(schema) = schema else {
                println!(
                    "columns   not recorded (registered by an older tensorlet; `tensorlet \
                     dataset add` it again to record them)"
                );
                return Ok(());
            };
            println!("format    {}", schema.format);
            println!("rows      {}", schema.rows);
            println!();
            println!(
                "{:<24} {:<12} {:>8}  CATEGORIES",
                "COLUMN", "TYPE", "MISSING"
            );
            for c in &schema.columns {
                let categories = match &c.kind {
                    data::ColumnType::Categorical { categories } => {
                        let shown: Vec<&str> =
                            categories.iter().take(8).map(String::as_str).collect();
                        let more = match categories.len() {
                            n if n >= data::SCHEMA_CATEGORIES => format!(", … ({n}+ in all)"),
                            n if n > 8 => format!(", … ({n} in all)"),
                            _ => String::new(),
                        };
                        format!("{}{more}", shown.join(", "))
                    }
                    _ => String::new(),
                };
                println!(
                    "{:<24} {:<12} {:>8}  {}",
                    c.name,
                    c.type_name(),
                    c.missing,
                    categories
                );
            }
        }
        DatasetCommand::List { json } => {
            let all = reg.datasets().list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no datasets; register one with `tensorlet dataset add <name> <file>`");
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
