//! `tensorlet train <pipeline> --data <csv|dataset> [--key <key>] [--out <dir>]`
//! and `tensorlet train --resume <run>`.
//!
//! Every invocation is a recorded run (see `tensorlet runs`): the params
//! after each epoch are a checkpoint in the registry's blob store, the best
//! (or last) checkpoint becomes the model, and Ctrl-C or SIGTERM stops at the
//! next step, records the run as `interrupted` and keeps its checkpoints.
//! The arguments become a [`Plan`]; `tensorlet_runtime::run` does the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tensorlet_registry::{Registry, RunRecord, VerifiedArtifact};
use tensorlet_runtime::RuntimeError;
use tensorlet_runtime::pipeline::{Keep, Pipeline};
use tensorlet_runtime::run::data::DataSource;
use tensorlet_runtime::run::overrides::Overrides;
use tensorlet_runtime::run::publish::{PublishAs, PublishRequest};
use tensorlet_runtime::run::resume::{Recorded, check_resumable};
use tensorlet_runtime::run::{Bar, Outcome, Run, summary};
use tensorlet_runtime::source::Sources;

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
        Plan::of(&reg, &args).and_then(|plan| plan.run(&reg, (&args.device, &args.limits), stop));
    let outcome = match outcome {
        Err(e) if is_interrupted(&e) => {
            eprintln!("{e:#}");
            std::process::exit(EXIT_INTERRUPTED);
        }
        other => other.map_err(common::with_limit_hint)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    for line in summary::lines(&outcome, args.out.as_deref(), seconds) {
        println!("{line}");
    }
    Ok(())
}

/// A run to make, resolved once from the arguments (and, when resuming,
/// from what the run recorded), with everything about its model checked.
struct Plan {
    /// The pipeline as named.
    origin: String,
    pipeline: Pipeline,
    artifact: Option<VerifiedArtifact>,
    data: DataSource,
    out: Option<PathBuf>,
    publish: Option<PublishAs>,
    sources: Sources,
    resume: Option<RunRecord>,
}

impl Plan {
    fn of(reg: &Registry, args: &Args) -> Result<Plan> {
        match &args.resume {
            Some(id) => Plan::resumed(reg, args, id),
            None => Plan::fresh(reg, args),
        }
    }

    fn overrides(args: &Args) -> Overrides {
        Overrides {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            seed: args.seed,
            keep: args.keep,
        }
    }

    fn request(args: &Args) -> PublishRequest {
        PublishRequest {
            key: args.key.clone(),
            name: args.model.clone(),
            version: args.version.clone(),
            out: args.out.clone(),
        }
    }

    fn fresh(reg: &Registry, args: &Args) -> Result<Plan> {
        let (Some(origin), Some(data)) = (&args.pipeline, &args.data) else {
            bail!("pass a pipeline and --data, or --resume <run>");
        };
        let sources = args
            .registry
            .sources()?
            .allow_unsigned(args.unsigned.allow_unsigned);
        let (mut pipeline, artifact) = sources.pipeline(reg, origin)?;
        Plan::overrides(args).apply(&mut pipeline.training)?;
        let publish = Plan::request(args).check(reg, &sources, &pipeline, artifact.as_ref())?;
        Ok(Plan {
            origin: origin.clone(),
            data: DataSource::open(reg, data)?,
            pipeline,
            artifact,
            out: args.out.clone(),
            publish,
            sources,
            resume: None,
        })
    }

    fn resumed(reg: &Registry, args: &Args, id: &str) -> Result<Plan> {
        let record = reg.runs().get(id)?;
        check_resumable(&record)?;
        Plan::overrides(args).refuse_on_resume()?;
        let sources = args.registry.sources()?;
        let recorded = Recorded::of(reg, &sources, &record)?;
        let sources =
            sources.allow_unsigned(args.unsigned.allow_unsigned || recorded.allow_unsigned);
        let request = Plan::request(args).or_recorded(&record.record);
        let publish = request.check(
            reg,
            &sources,
            &recorded.pipeline,
            recorded.artifact.as_ref(),
        )?;
        Ok(Plan {
            origin: recorded.origin,
            data: DataSource::from_record(reg, &record.record.dataset)?,
            pipeline: recorded.pipeline,
            artifact: recorded.artifact,
            out: request.out,
            publish,
            sources,
            resume: Some(record),
        })
    }

    /// Runs the plan with the sandbox limits of the pipeline's `[limits]`,
    /// overridden by the command line's.
    fn run(
        self,
        reg: &Registry,
        (device, given): (&DeviceArgs, &LimitArgs),
        stop: Arc<AtomicBool>,
    ) -> Result<Outcome> {
        let mut limits = tensorlet_runtime::Limits::default();
        self.pipeline
            .limits
            .apply(&mut limits)
            .map_err(anyhow::Error::msg)?;
        given.apply(&mut limits);
        let rt = common::runtime_with(device.open()?, limits)?;
        let run = Run {
            rt: &rt,
            reg,
            sources: &self.sources,
            origin: &self.origin,
            artifact: self.artifact.as_ref(),
            stop: Some(stop),
        };
        run.record(
            &self.pipeline,
            &self.data,
            self.out.as_deref(),
            self.publish.as_ref(),
            &mut Bar::new(&self.pipeline.pipeline.name),
            self.resume.as_ref(),
        )
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

fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::Interrupted)
        )
    })
}
