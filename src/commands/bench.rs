//! `tensorlet bench matmul|train|instances`: GFLOP/s of square matmuls and the
//! time of a digits training epoch, per device (`instances` is in
//! `bench_instances.rs`).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tensorlet_runtime::gpu::{Device, DeviceKind, bench};

use crate::bundled::EXAMPLES;
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
    /// Seconds per epoch of the bundled digits MLP.
    Train(TrainArgs),
    /// Cost of the fresh sandbox every request gets: store + instance creation.
    Instances(super::bench_instances::Args),
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
    #[arg(long, default_value_t = 3)]
    pub epochs: u32,
}

pub fn execute(args: Args) -> Result<()> {
    match args.what {
        What::Matmul(a) => matmul(a),
        What::Train(a) => train(a),
        What::Instances(a) => super::bench_instances::execute(a),
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
            let g = bench::matmul(d, n, min_time).gflops(n);
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

/// Runs `tensorlet train` on the bundled digits pipeline in a throwaway home,
/// as a user would, and reads the per-epoch times from the saved model.
fn train(args: TrainArgs) -> Result<()> {
    anyhow::ensure!(args.epochs >= 1, "--epochs must be at least 1");
    let ex = EXAMPLES
        .iter()
        .find(|e| e.name == "digits")
        .context("the digits example is bundled")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = tmp.path().join(ex.data_file);
    let pipeline = tmp.path().join("digits.toml");
    std::fs::write(&data, ex.data).with_context(|| format!("cannot write {}", data.display()))?;
    std::fs::write(&pipeline, ex.pipeline)
        .with_context(|| format!("cannot write {}", pipeline.display()))?;
    let exe = std::env::current_exe().context("cannot find the tensorlet executable")?;
    let help = Command::new(&exe).args(["train", "--help"]).output()?;
    // Bundled plugins are unsigned: builds with signature checks need the flag.
    let unsigned = String::from_utf8_lossy(&help.stdout).contains("--allow-unsigned");
    let devices: Vec<Device> = args.devices.open()?;
    println!(
        "digits MLP (bundled pipeline), {} epochs; seconds per epoch, validation included",
        args.epochs
    );
    for device in devices {
        let info = device.info();
        let choice = match info.kind {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
        };
        let out = tmp.path().join(format!("model-{choice}"));
        let epochs = args.epochs.to_string();
        let mut cmd = Command::new(&exe);
        cmd.arg("train")
            .arg(&pipeline)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--epochs", &epochs, "--device", choice])
            .env("TENSORLET_HOME", tmp.path().join("home"));
        if unsigned {
            cmd.arg("--allow-unsigned");
        }
        let run = cmd.output().context("cannot run tensorlet train")?;
        anyhow::ensure!(
            run.status.success(),
            "tensorlet train on {info} failed:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let meta_path = out.join("model.json");
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&meta_path)
                .with_context(|| format!("cannot read {}", meta_path.display()))?,
        )?;
        let metrics = meta["metrics"]
            .as_array()
            .context("model.json has metrics")?;
        let secs: Vec<f64> = metrics
            .iter()
            .filter_map(|m| m["seconds"].as_f64())
            .collect();
        let accuracy = metrics
            .last()
            .and_then(|m| m["val_accuracy"].as_f64())
            .unwrap_or(f64::NAN);
        anyhow::ensure!(!secs.is_empty(), "model.json has no epoch times");
        let steady = if secs.len() > 1 {
            secs[1..].iter().sum::<f64>() / (secs.len() - 1) as f64
        } else {
            secs[0]
        };
        println!(
            "{info}: first epoch {:.3} s (includes warm-up), then {steady:.3} s per epoch; \
             validation accuracy {accuracy:.4}",
            secs[0]
        );
    }
    Ok(())
}
