//! `tensorlet bench matmul|ops|train|instances|console|load|serve-native`: GFLOP/s of square
//! matmuls; of convolutions and batched matmuls against an im2col/sgemm
//! reference and (optionally) PyTorch; the time of a digits training epoch
//! (the MLP, and with `--cnn` the CNN) with the host's autodiff, with the
//! hand-written 0.1 trainer and (optionally) with PyTorch; the memory of a long
//! run (`instances` is in `bench_instances.rs`); the console's server time
//! (`bench_console.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use tensorlet_gpu::Device;
use tensorlet_runtime::bench::ops::{Op, OpsBench};
use tensorlet_runtime::bench::train::TrainBench;
use tensorlet_runtime::bench::{self, matmul::Matmul};

use crate::bundled::{EXAMPLES, LEGACY};
use crate::common::DeviceChoice;

/// Measure the tensor backends.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// GFLOP/s of square f32 matmuls: CPU backend, GPU backend, and the sgemm crate.
    Matmul(MatmulArgs),
    /// GFLOP/s of conv2d and batched matmul: CPU backend, GPU backend, an
    /// im2col/sgemm reference, and PyTorch (with --python).
    Ops(OpsArgs),
    /// Seconds per epoch of the bundled digits MLP: host autodiff, the
    /// hand-written ABI 0.1 trainer, and PyTorch (with --python); with
    /// --cnn also the bundled digits CNN.
    Train(TrainArgs),
    /// Cost of the fresh sandbox every request gets: store + instance creation.
    Instances(super::bench_instances::Args),
    /// Server time of the web console's pages with many runs and a long one.
    Console(super::bench_console::Args),
    /// Load a served model over HTTP or gRPC (the serving benchmarks' client).
    Load(super::bench_serving::LoadArgs),
    /// Serve bundled models natively, no Wasm (the serving benchmark's baseline).
    ServeNative(super::bench_serving::NativeArgs),
}

/// Which devices to measure: one, or by default the CPU and (if any) the GPU.
#[derive(Debug, clap::Args)]
pub struct Devices {
    /// Only this device (default: the CPU and, when there is one, the GPU).
    #[arg(long, value_enum, env = "TENSORLET_DEVICE")]
    pub device: Option<DeviceChoice>,
}

impl Devices {
    fn open(&self) -> Result<Vec<Device>> {
        bench::devices(self.device.map(DeviceChoice::preference))
    }
}

#[derive(Debug, clap::Args)]
pub struct MatmulArgs {
    #[command(flatten)]
    pub devices: Devices,
    /// Matrix sizes, comma-separated. Default 256,512,1024,2048,4096; on a
    /// software GPU (lavapipe) sizes above 512 are skipped unless listed here.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Minimum seconds of timed runs per cell.
    #[arg(long, default_value_t = 1.0)]
    pub min_time: f64,
}

#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    #[command(flatten)]
    pub devices: Devices,
    /// Convolutions to measure, `NxCxHxWxO` (input [N, C, H, W], O output
    /// channels, 3x3 kernel, padding 1) or `NxCxHxWxOxK` (odd KxK kernel,
    /// padding K/2), comma-separated or repeated. With --conv or --bmm only
    /// the ops given are measured (and a software GPU measures all of them).
    #[arg(long, value_delimiter = ',', value_parser = parse_conv)]
    pub conv: Vec<Op>,
    /// Batched matmuls to measure, `BxMxKxN` ([B, M, K] x [B, K, N]).
    #[arg(long, value_delimiter = ',', value_parser = parse_bmm)]
    pub bmm: Vec<Op>,
    /// Minimum seconds of timed runs per cell.
    #[arg(long, default_value_t = 0.5)]
    pub min_time: f64,
    /// A Python with PyTorch installed (`pip install torch`): the same ops in
    /// PyTorch on the CPU, with one thread and with all of them.
    #[arg(long)]
    pub python: Option<PathBuf>,
}

fn parse_conv(s: &str) -> Result<Op> {
    Op::conv(s)
}

fn parse_bmm(s: &str) -> Result<Op> {
    Op::matmul(s)
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub devices: Devices,
    /// Epochs to train; the first one includes warm-up (shader compilation).
    #[arg(long, default_value_t = 5)]
    pub epochs: u32,
    /// A Python with PyTorch installed (`pip install torch`): the same MLP is
    /// also trained in PyTorch on the CPU, with one thread and with all of them.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Also train the autodiff MLP on the CPU for this many steps while
    /// sampling the process's resident memory (the tape of each step must be
    /// freed when the step ends, so it stays flat).
    #[arg(long)]
    pub rss_steps: Option<u64>,
    /// Also train the bundled digits CNN (a second table: host autodiff on
    /// each device, and PyTorch with --python), for the same epochs. A
    /// software GPU (lavapipe) is skipped unless --device names it.
    #[arg(long)]
    pub cnn: bool,
}

pub fn execute(args: Args) -> Result<()> {
    match args.what {
        What::Matmul(a) => matmul(a),
        What::Ops(a) => ops(a),
        What::Train(a) => train(a),
        What::Instances(a) => super::bench_instances::execute(a),
        What::Console(a) => super::bench_console::execute(a),
        What::Load(a) => super::bench_serving::load(a),
        What::ServeNative(a) => super::bench_serving::serve_native(a),
    }
}

fn matmul(args: MatmulArgs) -> Result<()> {
    let plan = Matmul::new(args.sizes, args.min_time)?;
    plan.run(&args.devices.open()?, &mut crate::output::Stdout)
}

fn ops(args: OpsArgs) -> Result<()> {
    let given: Vec<Op> = args.conv.into_iter().chain(args.bmm).collect();
    let ops = (!given.is_empty()).then_some(given);
    let plan = OpsBench::new(ops, args.min_time, args.python)?;
    plan.run(&args.devices.open()?, &mut crate::output::Stdout)
}

/// Trains the bundled digits MLP with the host's autodiff and with the
/// hand-written 0.1 trainer on each device, and with PyTorch when
/// `--python` is given; with `--cnn`, the bundled digits CNN too.
fn train(args: TrainArgs) -> Result<()> {
    let ex = EXAMPLES
        .iter()
        .find(|e| e.name == "digits")
        .context("the digits example is bundled")?;
    let (_, legacy) = LEGACY
        .iter()
        .find(|(n, _)| *n == "mlp-v0.1")
        .context("the hand-written MLP is bundled")?;
    let cnn = if args.cnn {
        let ex = EXAMPLES
            .iter()
            .find(|e| e.name == "digits-cnn")
            .context("the digits CNN example is bundled")?;
        Some(ex.pipeline)
    } else {
        None
    };
    let bench = TrainBench {
        exe: std::env::current_exe().context("cannot find the tensorlet executable")?,
        pipeline: ex.pipeline,
        data: (ex.data, ex.data_file),
        legacy,
        epochs: args.epochs,
        python: args.python,
        rss_steps: args.rss_steps,
        cnn,
        cnn_on_software: args.devices.device.is_some(),
    };
    bench.check()?;
    bench.run(&args.devices.open()?, &mut crate::output::Stdout)
}
