//! `tensorlet bench console`: the server time of the console's pages on a
//! registry with many runs and one very long run. The home is filled through
//! the registry's own calls (runs, per-epoch checkpoints, their ends) with
//! synthetic metrics; each page is then requested through the console's
//! router in this process, so the time is the server's: registry reads,
//! rendering and the body, without a network.

use std::time::{Duration, Instant};

use anyhow::Result;
use tensorlet_console::bench::{self, fill_run};
use tensorlet_console::{Console, ConsoleConfig};
use tensorlet_registry::Registry;

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
    let reg = Registry::open(dir.path())?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..args.runs {
        ids.push(fill_run(&reg, i, args.epochs)?);
    }
    let long = fill_run(&reg, args.runs, args.long_epochs)?;
    drop(reg);
    eprintln!(
        "recorded {} runs of {} epochs and one of {} epochs in {:.1} s",
        args.runs,
        args.epochs,
        args.long_epochs,
        started.elapsed().as_secs_f64()
    );

    let addr = "127.0.0.1:7080".parse()?;
    let app = tensorlet_console::app(Console::new(ConsoleConfig::new(
        dir.path().to_path_buf(),
        addr,
    )));
    let other = ids.first().cloned().unwrap_or_else(|| long.clone());
    let rt = crate::common::server_runtime()?;
    println!(
        "{:<42} {:>10} {:>10} {:>10}",
        "PAGE", "MEDIAN ms", "P95 ms", "BYTES"
    );
    for (what, uri) in bench::pages(&other, &long) {
        let t = bench::time_page(&rt, &app, &uri, args.repeat).map_err(anyhow::Error::msg)?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{what:<42} {:>10.1} {:>10.1} {:>10}",
            ms(t.median),
            ms(t.p95),
            t.bytes
        );
    }
    Ok(())
}
