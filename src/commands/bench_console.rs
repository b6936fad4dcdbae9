//! `tensorlet bench console`: the server time of the console's pages on a
//! registry with many runs and one very long run. The home is filled through
//! the registry's own calls (runs, per-epoch checkpoints, their ends) with
//! synthetic metrics; each page is then requested through the console's
//! router in this process, so the time is the server's: registry reads,
//! rendering and the body, without a network.

use anyhow::Result;
use tensorlet_console::bench::ConsoleBench;

/// Measure the console's server time per page.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recorded runs.
    #[arg(long, default_value_t = 1000)]
    pub runs: u32,
    /// Epochs of each of those runs.
    #[arg(long, default_value_t = 20)]
    pub epochs: u32,
    /// Epochs of the one long run.
    #[arg(long, default_value_t = 10_000)]
    pub long_epochs: u32,
    /// Requests per page (the first is not counted).
    #[arg(long, default_value_t = 20)]
    pub repeat: u32,
}

pub fn execute(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bench = ConsoleBench {
        runs: args.runs,
        epochs: args.epochs,
        long_epochs: args.long_epochs,
        repeat: args.repeat,
    };
    bench.run(
        dir.path(),
        &mut std::io::stderr(),
        &mut crate::output::Stdout,
    )?;
    Ok(())
}
