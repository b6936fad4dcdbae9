//! `tensorlet runs list|show|compare|plot`: the recorded training runs.

use std::path::PathBuf;

use anyhow::Result;
use tensorlet_registry::Registry;
use tensorlet_runtime::run::history::{LoadedRun, load};
use tensorlet_runtime::run::report::{Comparison, RunList, RunView};

/// Inspect, compare and plot training runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Every run, newest first: id, pipeline, status, best metric, start.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run: what it recorded and a table of its epochs.
    Show {
        /// Run id (or a prefix of it that only it has).
        run: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs side by side: options, data, plugins and metrics; rows that
    /// differ are marked with `*`.
    Compare {
        /// Two or more run ids.
        #[arg(num_args = 2.., required = true)]
        runs: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Loss and accuracy curves of runs as a PNG or SVG image.
    Plot {
        /// One or more run ids.
        #[arg(num_args = 1.., required = true)]
        runs: Vec<String>,
        /// The image to write: `.png` or `.svg`.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        RunsCommand::List { json } => {
            let ids: Vec<String> = reg.runs().list()?.into_iter().map(|r| r.id).collect();
            let runs = loaded(&reg, &ids)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&RunList(&runs).json())?);
            } else {
                print!("{}", RunList(&runs));
            }
        }
        RunsCommand::Show { run, json } => {
            let r = load(&reg, &run)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&RunView(&r).json()?)?);
            } else {
                print!("{}", RunView(&r));
            }
        }
        RunsCommand::Compare { runs, json } => {
            let runs = loaded(&reg, &runs)?;
            let c = Comparison::new(&runs);
            if json {
                println!("{}", serde_json::to_string_pretty(&c.json())?);
            } else {
                print!("{c}");
            }
        }
        RunsCommand::Plot { runs, out } => {
            let series: Vec<_> = loaded(&reg, &runs)?
                .into_iter()
                .map(|r| (r.record.id, r.history))
                .collect();
            tensorlet_console::plot::curves(&series, &out)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

/// The runs `ids` name, each with its checkpoints' metrics.
fn loaded(reg: &Registry, ids: &[String]) -> Result<Vec<LoadedRun>> {
    Ok(ids
        .iter()
        .map(|id| load(reg, id))
        .collect::<Result<Vec<_>, _>>()?)
}
