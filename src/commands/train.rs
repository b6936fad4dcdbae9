//! `tensorlet train <pipeline> --data <csv|dataset> [--key <key>] [--out <dir>]`
//! and `tensorlet train --resume <run>`.
//!
//! Every invocation is a recorded run (see `tensorlet runs`): the params
//! after each epoch are a checkpoint in the registry's blob store, the best
//! (or last) checkpoint becomes the model, and Ctrl-C or SIGTERM stops at the
//! next step, records the run as `interrupted` and keeps its checkpoints.
//! With `--registry` and `--key` the run is also recorded on that registry,
//! each change signed (central run tracking), and `--resume` fetches a run
//! this home lacks from it.
//! The arguments become a [`Plan`]; `tensorlet_runtime::run` does the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use tensorlet_runtime::pipeline::Keep;
use tensorlet_runtime::run::overrides::Overrides;
use tensorlet_runtime::run::plan::{self, Plan, Request};
use tensorlet_runtime::run::publish::PublishRequest;
use tensorlet_runtime::run::{Bar, summary};

use crate::artifacts::{RegistryArgs, UnsignedArgs};
use crate::common::{self, DeviceArgs, LimitArgs};

/// Train a pipeline on a CSV file or a registered dataset; record the run;
/// sign and publish the model to the registry (`--key`), and/or save it as a
/// directory (`--out`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline: a registry reference (`ns/name[@version|@alias]`) or a
    /// pipeline file (TOML).
    #[arg(required_unless_present = "resume")]
    pub pipeline: Option<String>,
    /// Training data: a CSV file with a header row (label in the last column,
    /// or `[data] label`), or a dataset registered with `tensorlet dataset
    /// add` (`name` or `name@sha256:…`).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<String>,
    /// Continue an interrupted (or failed) run from its last checkpoint, with
    /// its recorded pipeline, data and options; it ends with exactly the
    /// params an uninterrupted run would have.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["pipeline", "data"])]
    pub resume: Option<String>,
    /// Sign the model with this key and publish it to the registry.
    #[arg(long, env = "TENSORLET_KEY")]
    pub key: Option<String>,
    /// The model's artifact name; default `<namespace>/<pipeline name>-model`.
    #[arg(long)]
    pub model: Option<String>,
    /// The model's version; default the next patch version (`0.1.0` first).
    #[arg(long)]
    pub version: Option<String>,
    /// Also (or only) write the model to this directory (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override `[training] epochs`.
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Override `[training] batch_size`.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Override `[training] learning_rate`.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Override `[training] seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override `[training] keep`: which checkpoint becomes the model, `best`
    /// (lowest validation loss) or `last`.
    #[arg(long)]
    pub keep: Option<Keep>,
    /// Read the data from disk in chunks on every epoch instead of loading
    /// it (`[training] stream = true`): for data larger than memory.
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub unsigned: UnsignedArgs,
}

/// Exit status of an interrupted run (128 + SIGINT, as shells report Ctrl-C).
const EXIT_INTERRUPTED: i32 = 130;

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let stop = interrupt_flag()?;
    let started = Instant::now();
    let outcome =
        Plan::resolve(&reg, request(&args), || args.registry.sources()).and_then(|plan| {
            let limits = plan.limits(&args.limits.overrides())?;
            let rt = common::runtime_with(args.device.open()?, limits)?;
            let mut bar = Bar::new(&plan.pipeline.pipeline.name);
            plan.run(&rt, &reg, &mut bar, stop)
        });
    let outcome = match outcome {
        Err(e) if plan::interrupted(&e) => {
            eprintln!("{e:#}");
            std::process::exit(EXIT_INTERRUPTED);
        }
        other => other.map_err(plan::with_limit_hint)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    for line in summary::lines(&outcome, args.out.as_deref(), seconds) {
        println!("{line}");
    }
    Ok(())
}

/// What the arguments ask the run to be.
fn request(args: &Args) -> Request {
    Request {
        pipeline: args.pipeline.clone(),
        data: args.data.clone(),
        resume: args.resume.clone(),
        overrides: Overrides {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            seed: args.seed,
            keep: args.keep,
            stream: args.stream,
        },
        publish: PublishRequest {
            key: args.key.clone(),
            name: args.model.clone(),
            version: args.version.clone(),
            out: args.out.clone(),
        },
        allow_unsigned: args.unsigned.allow_unsigned,
    }
}

/// Ctrl-C and SIGTERM set the flag; training stops at the next step. A
/// second Ctrl-C exits at once.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, flag.clone())
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, flag.clone())
            .context("cannot install the signal handler")?;
    }
    Ok(flag)
}
