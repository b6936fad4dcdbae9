//! What several commands share: device choice, the state directory, the runtime.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::ValueEnum;
use tensorlet_gpu::{Device, Preference};
use tensorlet_registry::http::{ENV_CA_FILE, HttpClient, HttpSettings};
use tensorlet_runtime::{LimitOverrides, Limits, Runtime, RuntimeConfig};

/// Where tensors are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// A hardware GPU when there is one, else the CPU.
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// The GPU (wgpu) backend.
    Gpu,
}

/// Fault injection for tensorlet's own tests (`tests/device_loss.rs`), not a
/// setting: with it set to N, the GPU is lost as a driver reset would lose
/// it, at its N-th wait (0: at once).
const LOSE_GPU_AT_WAIT: &str = "__TENSORLET_TEST_LOSE_GPU_AT_WAIT";

/// The `--device` option of every command that computes.
#[derive(Clone, Debug, clap::Args)]
pub struct DeviceArgs {
    /// Where tensor math runs.
    #[arg(long, value_enum, env = "TENSORLET_DEVICE", default_value = "auto")]
    pub device: DeviceChoice,
}

impl DeviceChoice {
    /// The library's name for this choice.
    pub fn preference(self) -> Preference {
        match self {
            DeviceChoice::Auto => Preference::Auto,
            DeviceChoice::Cpu => Preference::Cpu,
            DeviceChoice::Gpu => Preference::Gpu,
        }
    }

    /// Opens the device: `auto` takes a hardware GPU or the CPU, `gpu` fails
    /// with what to install when there is no adapter.
    pub fn open(self) -> Result<Device> {
        let name = self.to_possible_value().map(|v| v.get_name().to_string());
        let device = Device::open(self.preference())
            .with_context(|| format!("--device {}", name.unwrap_or_default()))?;
        if let Some(at_wait) = std::env::var(LOSE_GPU_AT_WAIT)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            device.lose_device(at_wait);
        }
        Ok(device)
    }
}

impl DeviceArgs {
    /// Opens the chosen device.
    pub fn open(&self) -> Result<Device> {
        self.device.open()
    }
}

/// `$TENSORLET_HOME`, or `~/.tensorlet`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("TENSORLET_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".tensorlet")
}

/// The process's HTTP client (built once): the system's root certificates
/// plus the private CA in `TENSORLET_CA_FILE`. Every `http://` and
/// `https://` request of the CLI goes through it.
pub fn http_client() -> Result<HttpClient> {
    static CLIENT: OnceLock<Result<HttpClient, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| HttpClient::new(&HttpSettings::from_env()).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| anyhow::anyhow!("{ENV_CA_FILE}: {e}"))
}

/// The runtime, with the compiled-component cache under the state directory.
pub fn runtime(device: Device) -> Result<Runtime> {
    runtime_with(device, Limits::default())
}

/// [`runtime`] with these sandbox limits.
pub fn runtime_with(device: Device, limits: Limits) -> Result<Runtime> {
    let cache_dir = home().join("cache").join("components");
    Runtime::new(RuntimeConfig {
        device,
        cache_dir: Some(cache_dir),
        limits,
    })
    .context("cannot start the wasm runtime")
}

/// `--max-tensor-memory` and `--deadline`: the sandbox limits of each
/// plugin call, for the commands that run plugins for long.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LimitArgs {
    /// The most host-tensor memory one plugin call may hold (default 1 GiB):
    /// bytes, or a number and a unit (`512 MiB`, `4 GiB`). Overrides a
    /// pipeline's `[limits] max_tensor_memory`.
    #[arg(long, value_name = "SIZE", value_parser = tensorlet_runtime::parse_size)]
    pub max_tensor_memory: Option<usize>,
    /// The wall-clock budget of one plugin call (default 30 s): seconds, or
    /// `90s`, `2m`, `500ms`. Overrides a pipeline's `[limits] deadline`.
    #[arg(long, value_name = "DURATION", value_parser = tensorlet_runtime::parse_duration)]
    pub deadline: Option<std::time::Duration>,
    /// The most host-tensor memory all plugin calls of the process may hold
    /// at once (default: half the machine's memory); a call that would go
    /// over fails (503 when serving) instead of the process overcommitting.
    #[arg(long, value_name = "SIZE", value_parser = tensorlet_runtime::parse_size)]
    pub max_memory: Option<usize>,
}

impl LimitArgs {
    /// The limits given on the command line.
    pub fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            max_host_tensor_bytes: self.max_tensor_memory,
            max_total_host_tensor_bytes: self.max_memory,
            deadline: self.deadline,
        }
    }
}
