//! `tensorlet bench train`: the bundled digits MLP trained as a user trains
//! it (`tensorlet train` in a throwaway home) with the host's autodiff and
//! with the hand-written ABI 0.1 trainer on each device, with PyTorch when
//! a Python is given; optionally the bundled digits CNN the same way (a
//! second table), and a long run whose resident memory is sampled.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use tensorlet_gpu::{Device, DeviceKind};

use super::{RssSamples, Timing, hand_written_pipeline, torch_run, train_run};

/// The PyTorch twin of the bundled digits pipeline.
const TORCH_MLP: &str = include_str!("../../../bench/torch_mlp.py");
/// The PyTorch twin of the bundled digits CNN pipeline.
const TORCH_CNN: &str = include_str!("../../../bench/torch_cnn.py");
/// What both twins import: data, initialisation and training loop.
const TORCH_TRAIN: &str = include_str!("../../../bench/torch_train.py");

/// What `bench train` trains, and how.
#[derive(Clone, Debug)]
pub struct TrainBench<'a> {
    /// The `tensorlet` executable that trains.
    pub exe: PathBuf,
    /// The bundled digits pipeline's text.
    pub pipeline: &'a str,
    /// The digits data set (CSV) and its file name.
    pub data: (&'a str, &'a str),
    /// The hand-written ABI 0.1 MLP component.
    pub legacy: &'a [u8],
    /// Epochs per run (at least 1).
    pub epochs: u32,
    /// A Python with PyTorch, for the PyTorch twin.
    pub python: Option<PathBuf>,
    /// Steps of the long run whose memory is sampled.
    pub rss_steps: Option<u64>,
    /// The bundled digits CNN pipeline's text, when it is trained too.
    pub cnn: Option<&'a str>,
    /// Whether the CNN is trained on a software GPU (lavapipe: seconds an
    /// epoch) as well; otherwise its row says it was skipped.
    pub cnn_on_software: bool,
}

impl TrainBench<'_> {
    /// Checks the options that need no device.
    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(self.epochs >= 1, "--epochs must be at least 1");
        Ok(())
    }

    /// Trains on each of `devices` (and in PyTorch), writing a row per run
    /// and how the times compare to `out`.
    pub fn run(&self, devices: &[Device], out: &mut dyn Write) -> Result<()> {
        self.check()?;
        let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
        let dir = tmp.path();
        let data = dir.join(self.data.1);
        std::fs::write(&data, self.data.0)
            .with_context(|| format!("cannot write {}", data.display()))?;
        let autodiff = dir.join("autodiff.toml");
        std::fs::write(&autodiff, self.pipeline)?;
        let wasm = dir.join("mlp-v01.wasm");
        std::fs::write(&wasm, self.legacy)?;
        let hand = dir.join("hand-written.toml");
        std::fs::write(&hand, hand_written_pipeline(self.pipeline, &wasm)?)?;

        writeln!(
            out,
            "digits MLP 64-64-10 (bundled pipeline: Adam, lr 0.005, batch 32), {} epochs; seconds \
             per epoch after the first (which includes warm-up), validation included",
            self.epochs
        )?;
        header(out)?;
        let mut cpu: Option<(f64, f64)> = None;
        for device in devices {
            let info = device.info();
            let choice = match info.kind {
                DeviceKind::Cpu => "cpu",
                DeviceKind::Gpu => "gpu",
            };
            let a = train_run(&self.exe, &autodiff, &data, dir, choice, self.epochs)?;
            let what = "tensorlet: model + host autodiff (ABI 0.2)";
            writeln!(out, "{}", row(what, &info.to_string(), &a))?;
            let h = train_run(&self.exe, &hand, &data, dir, choice, self.epochs)?;
            let what = "tensorlet: hand-written trainer (ABI 0.1)";
            writeln!(out, "{}", row(what, &info.to_string(), &h))?;
            if info.kind == DeviceKind::Cpu {
                cpu = Some((a.steady(), h.steady()));
            }
        }
        let torch = self.torch_rows(TORCH_MLP, "torch_mlp.py", &data, dir, out)?;
        let torch_one = torch.first().map(|(_, t)| *t);
        if self.python.is_none() {
            writeln!(
                out,
                "(PyTorch not measured: pass --python <a python with torch>, see bench/train.sh)"
            )?;
        }
        for line in ratios(cpu, torch_one) {
            writeln!(out, "{line}")?;
        }
        if let Some(cnn) = self.cnn {
            self.cnn_run(cnn, devices, &data, dir, out)?;
        }
        if let Some(steps) = self.rss_steps {
            self.rss_run(&autodiff, &data, dir, steps, out)?;
        }
        Ok(())
    }

    /// Trains `script` (a PyTorch twin, written to `dir` as `name`) on the
    /// CPU with one thread and with all of them, writing a row for each;
    /// returns (threads, steady seconds per epoch) of each. Nothing without
    /// `--python`.
    fn torch_rows(
        &self,
        script: &str,
        name: &str,
        data: &Path,
        dir: &Path,
        out: &mut dyn Write,
    ) -> Result<Vec<(usize, f64)>> {
        let Some(python) = &self.python else {
            return Ok(Vec::new());
        };
        let path = dir.join(name);
        std::fs::write(&path, script)?;
        std::fs::write(dir.join("torch_train.py"), TORCH_TRAIN)?;
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut steady = Vec::new();
        for threads in [1, all] {
            let (t, version) = torch_run(python, &path, data, self.epochs, threads)?;
            let s = if threads == 1 { "" } else { "s" };
            let what = format!("PyTorch {version}, {threads} thread{s}");
            writeln!(out, "{}", row(&what, "cpu", &t))?;
            steady.push((threads, t.steady()));
            if all == 1 {
                break;
            }
        }
        Ok(steady)
    }

    /// The second table: the bundled digits CNN (`pipeline`) trained with the
    /// host's autodiff on each device and by its PyTorch twin, and how the
    /// CPU times compare.
    fn cnn_run(
        &self,
        pipeline: &str,
        devices: &[Device],
        data: &Path,
        dir: &Path,
        out: &mut dyn Write,
    ) -> Result<()> {
        let path = dir.join("digits-cnn.toml");
        std::fs::write(&path, pipeline)?;
        writeln!(
            out,
            "\ndigits CNN (bundled digits-cnn pipeline: 1x8x8 images, conv 3x3 32 + ReLU + max-pool \
             2x2, conv 3x3 64 + ReLU + max-pool 2x2, dense 256-64-10; Adam, lr 0.002, batch 32), \
             {} epochs; seconds per epoch after the first (which includes warm-up), validation \
             included",
            self.epochs
        )?;
        header(out)?;
        let mut cpu = None;
        for device in devices {
            let info = device.info();
            let choice = match info.kind {
                DeviceKind::Cpu => "cpu",
                DeviceKind::Gpu => "gpu",
            };
            let what = "tensorlet: model + host autodiff (ABI 0.2)";
            if device.is_software() && !self.cnn_on_software {
                writeln!(
                    out,
                    "{what:<44} {:<40} skipped (a software GPU; --device gpu trains on it)",
                    info.to_string()
                )?;
                continue;
            }
            let t = train_run(&self.exe, &path, data, dir, choice, self.epochs)?;
            writeln!(out, "{}", row(what, &info.to_string(), &t))?;
            if info.kind == DeviceKind::Cpu {
                cpu = Some(t.steady());
            }
        }
        let torch = self.torch_rows(TORCH_CNN, "torch_cnn.py", data, dir, out)?;
        if self.python.is_none() {
            writeln!(
                out,
                "(PyTorch not measured: pass --python <a python with torch>, see bench/train.sh)"
            )?;
        }
        for line in cnn_ratios(cpu, &torch) {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// Trains the autodiff MLP on the CPU for at least `steps` steps,
    /// sampling the child's RSS every 25 ms, and writes it at a few points
    /// of the run.
    fn rss_run(
        &self,
        pipeline: &Path,
        data: &Path,
        home: &Path,
        steps: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        let ds = crate::data::load_labeled(data, Some("digit"))?;
        let (_, train) = crate::train::stratified_split(&ds.y, 0.2, 0);
        let (epochs, per_epoch) = rss_schedule(train.len(), steps);
        let log_path = home.join("rss-run.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(&self.exe)
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
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot run tensorlet train")?;
        let (samples, ok) = RssSamples::of(&mut child)?;
        if !ok {
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            anyhow::bail!("the long training run failed:\n{err}");
        }
        anyhow::ensure!(samples.0.len() >= 4, "the run was too short to sample");
        write!(out, "{}", rss_report(&samples, epochs, per_epoch))?;
        Ok(())
    }
}

/// The column names of the tables [`row`] fills.
fn header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<44} {:<40} {:>9} {:>9} {:>8}",
        "trainer", "device", "1st (s)", "s/epoch", "val acc"
    )
}

/// One row of the table: what trained, where, first and steady epoch
/// seconds, validation accuracy.
fn row(what: &str, device: &str, t: &Timing) -> String {
    format!(
        "{what:<44} {device:<40} {:>9.4} {:>9.4} {:>8.4}",
        t.seconds[0],
        t.steady(),
        t.accuracy
    )
}

/// How the host's autodiff compares on the CPU with the hand-written
/// trainer (`cpu`: their steady epoch times) and with one-thread PyTorch.
fn ratios(cpu: Option<(f64, f64)>, torch_one: Option<f64>) -> Vec<String> {
    let Some((a, h)) = cpu else {
        return Vec::new();
    };
    let mut lines = vec![format!(
        "on the cpu: host autodiff takes {:.2}x the hand-written trainer's epoch time",
        a / h
    )];
    if let Some(t) = torch_one {
        lines.push(format!(
            "on the cpu: host autodiff takes {:.2}x PyTorch's one-thread epoch time",
            a / t
        ));
    }
    lines
}

/// How the CNN's CPU epoch time (`cpu`) compares with PyTorch's with each
/// number of threads (`torch`: threads, seconds).
fn cnn_ratios(cpu: Option<f64>, torch: &[(usize, f64)]) -> Vec<String> {
    let Some(c) = cpu else {
        return Vec::new();
    };
    torch
        .iter()
        .map(|&(threads, t)| {
            let s = if threads == 1 { "" } else { "s" };
            format!(
                "on the cpu: the CNN takes {:.2}x PyTorch's epoch time with {threads} thread{s} \
                 ({:.2}x its speed)",
                c / t,
                t / c
            )
        })
        .collect()
}

/// Epochs (and steps per epoch, in batches of 32) that make at least
/// `steps` steps over `train_rows` rows.
fn rss_schedule(train_rows: usize, steps: u64) -> (u64, u64) {
    let per_epoch = (train_rows as u64).div_ceil(32);
    (steps.div_ceil(per_epoch), per_epoch)
}

/// The resident memory at a few points of the long run, its peak and growth.
fn rss_report(samples: &RssSamples, epochs: u64, per_epoch: u64) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut s = format!(
        "\nresident memory of `tensorlet train` over {} steps ({epochs} epochs x {per_epoch}), \
         host autodiff on the cpu:\n",
        epochs * per_epoch
    );
    for f in [0.1, 0.25, 0.5, 0.75, 1.0] {
        let (t, rss) = samples.at(f);
        s.push_str(&format!(
            "  at {t:>6.1} s ({:>3.0} % of the run): {:>7.1} MiB\n",
            f * 100.0,
            mib(rss)
        ));
    }
    let (first, last) = (samples.at(0.1).1, samples.at(1.0).1);
    s.push_str(&format!(
        "  peak {:.1} MiB; from 10 % to the end of the run: {:+.1} MiB\n",
        mib(samples.peak()),
        mib(last) - mib(first)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_ratios_read_as_the_table_says() {
        let t = Timing {
            seconds: vec![2.0, 1.0, 0.5],
            accuracy: 0.9375,
        };
        let r = row("tensorlet", "cpu", &t);
        assert_eq!(
            r.split_whitespace().collect::<Vec<_>>(),
            ["tensorlet", "cpu", "2.0000", "0.7500", "0.9375"]
        );
        assert_eq!(r.find("cpu"), Some(45));
        assert!(ratios(None, Some(1.0)).is_empty());
        assert_eq!(
            ratios(Some((3.0, 2.0)), Some(0.5)),
            [
                "on the cpu: host autodiff takes 1.50x the hand-written trainer's epoch time",
                "on the cpu: host autodiff takes 6.00x PyTorch's one-thread epoch time",
            ]
        );
        assert_eq!(ratios(Some((3.0, 2.0)), None).len(), 1);
        assert!(cnn_ratios(None, &[(1, 1.0)]).is_empty());
        assert_eq!(
            cnn_ratios(Some(0.5), &[(1, 1.0), (2, 0.25)]),
            [
                "on the cpu: the CNN takes 0.50x PyTorch's epoch time with 1 thread (2.00x its speed)",
                "on the cpu: the CNN takes 2.00x PyTorch's epoch time with 2 threads (0.50x its speed)",
            ]
        );
    }

    #[test]
    fn the_long_run_has_enough_epochs_and_reports_its_growth() {
        assert_eq!(rss_schedule(1437, 1000), (23, 45));
        assert_eq!(rss_schedule(64, 2), (1, 2));
        let mib = 1 << 20;
        let samples = RssSamples(
            (0..=10)
                .map(|i| (f64::from(i), (100 + i as u64) * mib))
                .collect(),
        );
        let text = rss_report(&samples, 23, 45);
        assert!(text.starts_with("\nresident memory of `tensorlet train` over 1035 steps (23 epochs x 45), host autodiff on the cpu:\n"), "{text}");
        assert!(
            text.contains("  at    1.0 s ( 10 % of the run):   101.0 MiB\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  peak 110.0 MiB; from 10 % to the end of the run: +9.0 MiB\n"),
            "{text}"
        );
    }

    #[test]
    fn zero_epochs_are_refused_before_anything_runs() {
        let b = TrainBench {
            exe: PathBuf::from("/nonexistent"),
            pipeline: "",
            data: ("", "d.csv"),
            legacy: &[],
            epochs: 0,
            python: None,
            rss_steps: None,
            cnn: None,
            cnn_on_software: false,
        };
        let e = b.run(&[], &mut Vec::new()).unwrap_err().to_string();
        assert_eq!(e, "--epochs must be at least 1");
    }
}
