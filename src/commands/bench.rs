//! `tensorlet bench matmul|train|instances|console`: GFLOP/s of square matmuls; the
//! time of a digits training epoch with the host's autodiff, with the
//! hand-written 0.1 trainer and (optionally) with PyTorch; the memory of a long
//! run (`instances` is in `bench_instances.rs`); the console's server time
//! (`bench_console.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tensorlet_gpu::{Device, DeviceKind, bench};
use tensorlet_runtime::bench::{RssSamples, Timing, hand_written_pipeline, torch_run, train_run};

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
        match self.device {
            Some(choice) => Ok(vec![choice.open()?]),
            None => {
                let mut v = vec![Device::cpu()];
                match DeviceChoice::Gpu.open() {
                    Ok(d) => v.push(d),
                    Err(e) => eprintln!("not measuring a GPU: {e:#}"),
                }
                Ok(v)
            }
        }
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
    }
}

const DEFAULT_SIZES: &[usize] = &[256, 512, 1024, 2048, 4096];
/// Largest default size on a software GPU: lavapipe does well under 1 GFLOP/s.
const SOFTWARE_MAX: usize = 512;

fn matmul(args: MatmulArgs) -> Result<()> {
    anyhow::ensure!(
        args.min_time > 0.0 && args.min_time.is_finite(),
        "--min-time must be a positive number of seconds"
    );
    let min_time = Duration::from_secs_f64(args.min_time);
    let devices = args.devices.open()?;
    let explicit = args.sizes.is_some();
    let sizes = args.sizes.unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    anyhow::ensure!(
        sizes.iter().all(|&n| (1..=16384).contains(&n)),
        "--sizes must be between 1 and 16384"
    );
    println!(
        "square f32 matmul, GFLOP/s (2n^3 / mean wall time; inputs resident, warm-up excluded)"
    );
    for (i, d) in devices.iter().enumerate() {
        println!("  [{i}] {}", d.info());
    }
    println!("  [s] matrixmultiply::sgemm called directly (the CPU backend's kernel)");
    print!("{:>6}", "n");
    for i in 0..devices.len() {
        print!(" {:>12}", format!("[{i}]"));
    }
    println!(" {:>12}", "[s]");
    let mut crossover: Option<usize> = None;
    for &n in &sizes {
        print!("{n:>6}");
        let mut cpu_gflops = None;
        for d in &devices {
            if d.is_software() && n > SOFTWARE_MAX && !explicit {
                print!(" {:>12}", "skipped");
                continue;
            }
            let g = bench::matmul(d, n, min_time)?.gflops(n);
            match d.info().kind {
                DeviceKind::Cpu => cpu_gflops = Some(g),
                DeviceKind::Gpu => {
                    if crossover.is_none() && cpu_gflops.is_some_and(|c| g > c) {
                        crossover = Some(n);
                    }
                }
            }
            print!(" {g:>12.2}");
        }
        println!(" {:>12.2}", bench::reference_sgemm(n, min_time).gflops(n));
    }
    if devices.len() > 1 {
        match crossover {
            Some(n) => println!("the GPU backend is faster than the CPU backend from n = {n}"),
            None => println!("the CPU backend was faster at every size measured"),
        }
    }
    if devices.iter().any(Device::is_software) && !explicit {
        println!("(software GPU: sizes above {SOFTWARE_MAX} skipped; pass --sizes to force)");
    }
    Ok(())
}

/// The PyTorch twin of the bundled digits pipeline.
const TORCH_MLP: &str = include_str!("../../bench/torch_mlp.py");

/// Trains the autodiff MLP on the CPU for at least `steps` steps, sampling the
/// child's RSS every 25 ms, and prints it at a few points of the run.
fn rss_run(pipeline: &Path, data: &Path, home: &Path, steps: u64) -> Result<()> {
    let ds = tensorlet_runtime::data::load_labeled(data, Some("digit"))?;
    let (_, train) = tensorlet_runtime::train::stratified_split(&ds.y, 0.2, 0);
    let per_epoch = (train.len() as u64).div_ceil(32);
    let epochs = steps.div_ceil(per_epoch);
    let log_path = home.join("rss-run.log");
    let log = std::fs::File::create(&log_path)?;
    let exe = std::env::current_exe().context("cannot find the tensorlet executable")?;
    let mut child = Command::new(&exe)
        .arg("train")
        .arg(pipeline)
        .arg("--data")
        .arg(data)
        .args([
            "--epochs",
            &epochs.to_string(),
            "--device",
            "cpu",
            "--allow-unsigned",
        ])
        .args(["--batch-size", "32", "--out"])
        .arg(home.join("model-rss"))
        .env("TENSORLET_HOME", home.join("home"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot run tensorlet train")?;
    let (samples, ok) = RssSamples::of(&mut child)?;
    if !ok {
        let err = std::fs::read_to_string(&log_path).unwrap_or_default();
        anyhow::bail!("the long training run failed:\n{err}");
    }
    anyhow::ensure!(samples.0.len() >= 4, "the run was too short to sample");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "\nresident memory of `tensorlet train` over {} steps ({epochs} epochs x {per_epoch}), host autodiff on the cpu:",
        epochs * per_epoch
    );
    for f in [0.1, 0.25, 0.5, 0.75, 1.0] {
        let (t, rss) = samples.at(f);
        println!(
            "  at {t:>6.1} s ({:>3.0} % of the run): {:>7.1} MiB",
            f * 100.0,
            mib(rss)
        );
    }
    let (first, last) = (samples.at(0.1).1, samples.at(1.0).1);
    println!(
        "  peak {:.1} MiB; from 10 % to the end of the run: {:+.1} MiB",
        mib(samples.peak()),
        mib(last) - mib(first)
    );
    Ok(())
}

/// Trains the bundled digits MLP as a user would (`tensorlet train` in a
/// throwaway home) with the host's autodiff and with the hand-written 0.1
/// trainer on each device, and with PyTorch when `--python` is given; prints
/// the seconds per epoch and the validation accuracy of each.
fn train(args: TrainArgs) -> Result<()> {
    anyhow::ensure!(args.epochs >= 1, "--epochs must be at least 1");
    let ex = EXAMPLES
        .iter()
        .find(|e| e.name == "digits")
        .context("the digits example is bundled")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = tmp.path();
    let data = dir.join(ex.data_file);
    std::fs::write(&data, ex.data).with_context(|| format!("cannot write {}", data.display()))?;
    let autodiff = dir.join("autodiff.toml");
    std::fs::write(&autodiff, ex.pipeline)?;
    let (_, legacy) = LEGACY
        .iter()
        .find(|(n, _)| *n == "mlp-v0.1")
        .context("the hand-written MLP is bundled")?;
    let wasm = dir.join("mlp-v01.wasm");
    std::fs::write(&wasm, legacy)?;
    let hand = dir.join("hand-written.toml");
    std::fs::write(&hand, hand_written_pipeline(ex.pipeline, &wasm)?)?;
    let exe = std::env::current_exe().context("cannot find the tensorlet executable")?;
    let devices: Vec<Device> = args.devices.open()?;

    println!(
        "digits MLP 64-64-10 (bundled pipeline: Adam, lr 0.005, batch 32), {} epochs; seconds \
         per epoch after the first (which includes warm-up), validation included",
        args.epochs
    );
    println!(
        "{:<44} {:<40} {:>9} {:>9} {:>8}",
        "trainer", "device", "1st (s)", "s/epoch", "val acc"
    );
    let row = |what: &str, device: &str, t: &Timing| {
        println!(
            "{what:<44} {device:<40} {:>9.4} {:>9.4} {:>8.4}",
            t.seconds[0],
            t.steady(),
            t.accuracy
        );
    };
    let mut cpu: Option<(f64, f64)> = None;
    for device in &devices {
        let info = device.info();
        let choice = match info.kind {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
        };
        let a = train_run(&exe, &autodiff, &data, dir, choice, args.epochs)?;
        row(
            "tensorlet: model + host autodiff (ABI 0.2)",
            &info.to_string(),
            &a,
        );
        let h = train_run(&exe, &hand, &data, dir, choice, args.epochs)?;
        row(
            "tensorlet: hand-written trainer (ABI 0.1)",
            &info.to_string(),
            &h,
        );
        if info.kind == DeviceKind::Cpu {
            cpu = Some((a.steady(), h.steady()));
        }
    }
    let mut torch_one = None;
    if let Some(python) = &args.python {
        let script = dir.join("torch_mlp.py");
        std::fs::write(&script, TORCH_MLP)?;
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        for threads in [1, all] {
            let (t, version) = torch_run(python, &script, &data, args.epochs, threads)?;
            row(
                &format!(
                    "PyTorch {version}, {threads} thread{}",
                    if threads == 1 { "" } else { "s" }
                ),
                "cpu",
                &t,
            );
            if threads == 1 {
                torch_one = Some(t.steady());
            }
            if all == 1 {
                break;
            }
        }
    } else {
        println!("(PyTorch not measured: pass --python <a python with torch>, see bench/train.sh)");
    }
    if let Some((a, h)) = cpu {
        println!(
            "on the cpu: host autodiff takes {:.2}x the hand-written trainer's epoch time",
            a / h
        );
        if let Some(t) = torch_one {
            println!(
                "on the cpu: host autodiff takes {:.2}x PyTorch's one-thread epoch time",
                a / t
            );
        }
    }
    if let Some(steps) = args.rss_steps {
        rss_run(&autodiff, &data, dir, steps)?;
    }
    Ok(())
}
