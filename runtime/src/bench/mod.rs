//! Drivers of `tensorlet bench matmul`, `ops`, `train`, `instances`, `load`
//! and `serve-native`: matmul throughput ([`matmul`]), convolutions and
//! batched matmuls against their references ([`ops`]), training runs timed as a user
//! runs them (the `tensorlet` executable in a throwaway home; [`train`]),
//! the PyTorch twin, resident-memory sampling, the cost of the fresh
//! sandbox each call gets ([`instances`]), the serving benchmarks' load
//! generator ([`load`]) and native baseline ([`native`]). The command opens
//! the devices; this measures and writes the tables.

pub mod instances;
pub mod load;
pub mod matmul;
pub mod native;
pub mod ops;
pub mod train;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tensorlet_gpu::{Device, Preference};

/// One measured training run: seconds of each epoch and the last validation accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Wall time of each epoch, the first included.
    pub seconds: Vec<f64>,
    /// Validation accuracy after the last epoch (NaN when not recorded).
    pub accuracy: f64,
}

impl Timing {
    /// Mean seconds per epoch after the first (which includes warm-up).
    pub fn steady(&self) -> f64 {
        if self.seconds.len() > 1 {
            self.seconds[1..].iter().sum::<f64>() / (self.seconds.len() - 1) as f64
        } else {
            self.seconds[0]
        }
    }

    /// The timing a saved model's `model.json` records.
    pub fn from_model(meta: &serde_json::Value) -> Result<Timing> {
        let metrics = meta["metrics"]
            .as_array()
            .context("model.json has metrics")?;
        let seconds: Vec<f64> = metrics
            .iter()
            .filter_map(|m| m["seconds"].as_f64())
            .collect();
        anyhow::ensure!(!seconds.is_empty(), "model.json has no epoch times");
        let accuracy = metrics
            .last()
            .and_then(|m| m["val_accuracy"].as_f64())
            .unwrap_or(f64::NAN);
        Ok(Timing { seconds, accuracy })
    }
}

/// The digits pipeline with the hand-written 0.1 MLP (`wasm`) as trainer and
/// predictor in place of the `[model]`: the same layers, Adam settings and
/// training.
pub fn hand_written_pipeline(bundled: &str, wasm: &Path) -> Result<String> {
    let mut p: toml::Table = toml::from_str(bundled).context("the bundled digits pipeline")?;
    let model = p
        .remove("model")
        .context("the digits pipeline has a [model]")?;
    let mut config = model
        .get("config")
        .and_then(|c| c.as_table())
        .cloned()
        .unwrap_or_default();
    let training = p
        .get_mut("training")
        .and_then(|t| t.as_table_mut())
        .context("the digits pipeline has [training]")?;
    let optimizer = training
        .remove("optimizer")
        .and_then(|o| o.as_str().map(str::to_string))
        .unwrap_or_else(|| "adam".into());
    config.insert("optimizer".into(), optimizer.into());
    let stage = |config: Option<&toml::Table>| {
        let mut t = toml::Table::new();
        t.insert("path".into(), wasm.display().to_string().into());
        if let Some(c) = config {
            t.insert("config".into(), c.clone().into());
        }
        toml::Value::Table(t)
    };
    p.insert("trainer".into(), stage(Some(&config)));
    p.insert("predictor".into(), stage(None));
    Ok(toml::to_string(&p)?)
}

/// `tensorlet train <pipeline>` run by `exe` in `home`, as a user runs it;
/// the timings come from the saved model's per-epoch metrics.
pub fn train_run(
    exe: &Path,
    pipeline: &Path,
    data: &Path,
    home: &Path,
    device: &str,
    epochs: u32,
) -> Result<Timing> {
    let out = home.join(format!(
        "model-{}",
        pipeline.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(exe)
        .arg("train")
        .arg(pipeline)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&out)
        .args([
            "--epochs",
            &epochs.to_string(),
            "--device",
            device,
            "--allow-unsigned",
        ])
        .env("TENSORLET_HOME", home.join("home"))
        .output()
        .context("cannot run tensorlet train")?;
    anyhow::ensure!(
        run.status.success(),
        "tensorlet train {} on {device} failed:\n{}",
        pipeline.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let meta_path = out.join("model.json");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&meta_path)
            .with_context(|| format!("cannot read {}", meta_path.display()))?,
    )?;
    Timing::from_model(&meta)
}

/// The PyTorch twin (`script`, run by `python`) with `threads` threads; also
/// returns torch's version.
pub fn torch_run(
    python: &Path,
    script: &Path,
    data: &Path,
    epochs: u32,
    threads: usize,
) -> Result<(Timing, String)> {
    let mut cmd = Command::new(python);
    cmd.arg(script).arg("--data").arg(data).args([
        "--epochs",
        &epochs.to_string(),
        "--threads",
        &threads.to_string(),
    ]);
    let what = format!("the PyTorch twin {}", script.display());
    let (v, seconds) = python_json(cmd, python, &what, "torch numpy")?;
    anyhow::ensure!(!seconds.is_empty(), "the PyTorch twin timed no epoch");
    let timing = Timing {
        seconds,
        accuracy: v["val_accuracy"].as_f64().unwrap_or(f64::NAN),
    };
    Ok((timing, v["torch"].as_str().unwrap_or("?").to_string()))
}

/// Runs a PyTorch benchmark script (`cmd`, run by `python`; `what` names it
/// in errors, `packages` what it needs from pip) and reads the JSON object
/// it prints, with the list of `seconds` it timed.
pub(crate) fn python_json(
    mut cmd: Command,
    python: &Path,
    what: &str,
    packages: &str,
) -> Result<(serde_json::Value, Vec<f64>)> {
    let run = cmd
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    anyhow::ensure!(
        run.status.success(),
        "{what} failed ({} needs `pip install {packages}`):\n{}",
        python.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run.stdout).with_context(|| format!("{what}'s output"))?;
    let seconds = v["seconds"]
        .as_array()
        .with_context(|| format!("{what} printed no `seconds`"))?
        .iter()
        .filter_map(|s| s.as_f64())
        .collect();
    Ok((v, seconds))
}

/// Resident memory in bytes, from the text of `/proc/<pid>/status`.
pub fn vm_rss(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resident memory of a process, from /proc (Linux), in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Resident memory over a run: (seconds since start, bytes) samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RssSamples(pub Vec<(f64, u64)>);

impl RssSamples {
    /// Runs `child` to its end, sampling its resident memory every 25 ms;
    /// `Ok(false)` when it failed.
    pub fn of(child: &mut std::process::Child) -> Result<(RssSamples, bool)> {
        let started = Instant::now();
        let mut samples = Vec::new();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((RssSamples(samples), status.success()));
            }
            if let Some(rss) = rss_of(child.id()) {
                samples.push((started.elapsed().as_secs_f64(), rss));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The sample at fraction `f` (0 to 1) of the run.
    pub fn at(&self, f: f64) -> (f64, u64) {
        self.0[((self.0.len() - 1) as f64 * f) as usize]
    }

    /// The largest sample.
    pub fn peak(&self) -> u64 {
        self.0.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// The devices a bench measures: the one `only` names, else the CPU and,
/// when one opens, the GPU (saying on stderr why not).
pub fn devices(only: Option<Preference>) -> Result<Vec<Device>> {
    if let Some(p) = only {
        let name = format!("{p:?}").to_lowercase();
        return Ok(vec![
            Device::open(p).with_context(|| format!("--device {name}"))?,
        ]);
    }
    let mut v = vec![Device::cpu()];
    match Device::open(Preference::Gpu) {
        Ok(d) => v.push(d),
        Err(e) => eprintln!("not measuring a GPU: {e}"),
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_epoch_time_leaves_out_the_warm_up() {
        let t = Timing {
            seconds: vec![5.0, 1.0, 2.0, 3.0],
            accuracy: 0.9,
        };
        assert_eq!(t.steady(), 2.0);
        let one = Timing {
            seconds: vec![4.0],
            accuracy: 0.9,
        };
        assert_eq!(one.steady(), 4.0);
    }

    #[test]
    fn timings_come_from_the_models_metrics() {
        let meta = serde_json::json!({"metrics": [
            {"epoch": 1, "seconds": 2.5, "val_accuracy": 0.5},
            {"epoch": 2, "seconds": 1.5, "val_accuracy": 0.75},
        ]});
        let t = Timing::from_model(&meta).unwrap();
        assert_eq!((t.seconds, t.accuracy), (vec![2.5, 1.5], 0.75));
        assert!(Timing::from_model(&serde_json::json!({"metrics": []})).is_err());
    }

    #[test]
    fn the_hand_written_pipeline_replaces_the_model_with_the_01_mlp() {
        let digits = r#"
            [pipeline]
            name = "digits"
            [preprocessor]
            bundled = "standardize"
            [model]
            bundled = "mlp"
            config = { hidden = [64] }
            [training]
            epochs = 5
            optimizer = "adam"
        "#;
        let out = hand_written_pipeline(digits, Path::new("/tmp/mlp.wasm")).unwrap();
        let p: toml::Table = toml::from_str(&out).unwrap();
        assert!(p.get("model").is_none());
        assert!(p["training"].get("optimizer").is_none());
        assert_eq!(p["trainer"]["path"].as_str(), Some("/tmp/mlp.wasm"));
        assert_eq!(p["trainer"]["config"]["optimizer"].as_str(), Some("adam"));
        assert_eq!(p["trainer"]["config"]["hidden"][0].as_integer(), Some(64));
        assert_eq!(p["predictor"]["path"].as_str(), Some("/tmp/mlp.wasm"));
        assert!(p["predictor"].get("config").is_none());
        assert_eq!(p["preprocessor"]["bundled"].as_str(), Some("standardize"));
    }

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        assert_eq!(
            vm_rss("Name:\ttensorlet\nVmRSS:\t   2048 kB\nThreads:\t4\n"),
            Some(2048 * 1024)
        );
        assert_eq!(vm_rss("Name:\tx\n"), None);
        assert!(rss_of(std::process::id()).is_some_and(|b| b > 0));
        let s = RssSamples(vec![(0.0, 10), (1.0, 30), (2.0, 20)]);
        assert_eq!((s.at(0.0), s.at(1.0), s.peak()), ((0.0, 10), (2.0, 20), 30));
    }

    #[test]
    fn a_named_device_is_the_only_one_measured() {
        let only = devices(Some(Preference::Cpu)).unwrap();
        assert_eq!(only.len(), 1);
        let cpu = |d: &Device| matches!(d.info().kind, tensorlet_gpu::DeviceKind::Cpu);
        assert!(cpu(&only[0]));
        let all = devices(None).unwrap();
        assert!(cpu(&all[0]) && all.len() <= 2);
    }
}
