//! `tensorlet bench matmul|train|instances|console|load|serve-native`: GFLOP/s of square matmuls; the
//! time of a digits training epoch with the host's autodiff, with the
//! hand-written 0.1 trainer and (optionally) with PyTorch; the memory of a long
//! run (`instances` is in `bench_instances.rs`); the console's server time
//! (`bench_console.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use tensorlet_gpu::Device;
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
    /// Seconds per epoch of the bundled digits MLP: host autodiff, the
    /// hand-written ABI 0.1 trainer, and PyTorch (with --python).
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
}

pub fn execute(args: Args) -> Result<()> {
    match args.what {
        What::Matmul(a) => matmul(a),
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

/// Trains the bundled digits MLP with the host's autodiff and with the
/// hand-written 0.1 trainer on each device, and with PyTorch when
/// `--python` is given.
fn train(args: TrainArgs) -> Result<()> {
    let ex = EXAMPLES
        .iter()
        .find(|e| e.name == "digits")
        .context("the digits example is bundled")?;
    let (_, legacy) = LEGACY
        .iter()
        .find(|(n, _)| *n == "mlp-v0.1")
        .context("the hand-written MLP is bundled")?;
    let bench = TrainBench {
        exe: std::env::current_exe().context("cannot find the tensorlet executable")?,
        pipeline: ex.pipeline,
        data: (ex.data, ex.data_file),
        legacy,
        epochs: args.epochs,
        python: args.python,
        rss_steps: args.rss_steps,
    };
    bench.check()?;
    bench.run(&args.devices.open()?, &mut crate::output::Stdout)
}
