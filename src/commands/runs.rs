//! `tensorlet runs list|show|compare|plot`: the recorded training runs.

use std::path::PathBuf;

use anyhow::Result;
use tensorlet_registry::Registry;
use tensorlet_registry::client::Remote;
use tensorlet_runtime::run::history::{LoadedRun, load, load_remote};
use tensorlet_runtime::run::report::{Comparison, RunList, RunView};

/// Inspect, compare and plot training runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RunsCommand,
    /// The runs recorded on this registry (`https://host:port`) by the
    /// trainers that train with `--registry` (central run tracking) instead
    /// of this home's. `TENSORLET_REGISTRY` is not read here: this home's
    /// runs stay the default.
    #[arg(long, global = true, value_name = "URL")]
    pub registry: Option<String>,
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
    let runs = match &args.registry {
        Some(url) => Runs::Remote(crate::artifacts::remote(url)?),
        None => Runs::Local(Box::new(crate::artifacts::open()?)),
    };
    match args.command {
        RunsCommand::List { json } => {
            let runs = runs.load(&runs.ids()?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&RunList(&runs).json())?);
            } else {
                print!("{}", RunList(&runs));
            }
        }
        RunsCommand::Show { run, json } => {
            let r = runs.load(&[run])?.remove(0);
            if json {
                println!("{}", serde_json::to_string_pretty(&RunView(&r).json()?)?);
            } else {
                print!("{}", RunView(&r));
            }
        }
        RunsCommand::Compare { runs: ids, json } => {
            let runs = runs.load(&ids)?;
            let c = Comparison::new(&runs);
            if json {
                println!("{}", serde_json::to_string_pretty(&c.json())?);
            } else {
                print!("{c}");
            }
        }
        RunsCommand::Plot { runs: ids, out } => {
            let series: Vec<_> = runs
                .load(&ids)?
                .into_iter()
                .map(|r| (r.record.id, r.history))
                .collect();
            tensorlet_console::plot::curves(&series, &out)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

/// Where the runs are read: this home, or a remote registry that tracks
/// the runs of remote trainers.
enum Runs {
    Local(Box<Registry>),
    Remote(Remote),
}

impl Runs {
    /// Every run's id, newest first.
    fn ids(&self) -> Result<Vec<String>> {
        let all = match self {
            Runs::Local(reg) => reg.runs().list()?,
            Runs::Remote(remote) => remote.runs()?,
        };
        Ok(all.into_iter().map(|r| r.id).collect())
    }

    /// The runs `ids` name, each with its checkpoints' metrics.
    fn load(&self, ids: &[String]) -> Result<Vec<LoadedRun>> {
        Ok(ids
            .iter()
            .map(|id| match self {
                Runs::Local(reg) => load(reg, id),
                Runs::Remote(remote) => load_remote(remote, id),
            })
            .collect::<Result<Vec<_>, _>>()?)
    }
}
