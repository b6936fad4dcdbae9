//! What `tensorlet devices` shows: the GPU adapters this build finds and
//! what each `--device` choice opens.

use crate::Device;

/// Keeps GPU driver noise out of every command's output; call it first in a
/// program's `main`, before any thread starts.
///
/// Mesa's Vulkan drivers (lavapipe among them) connect to Wayland while wgpu
/// looks for adapters, and libwayland prints "error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment." when that variable is unset or
/// not an absolute path, as under cron, systemd services, containers and
/// `env -i`: `--device auto` on a machine without a GPU would print it on
/// every run. Pointing it at the temporary directory (only when it is unset
/// or invalid) lets that connection fail quietly, as it does on any machine
/// without a Wayland session; nothing else in tensorlet reads it.
///
/// # Safety
///
/// It may set an environment variable: no other thread may be running.
pub unsafe fn quiet_driver_probe() {
    #[cfg(all(unix, feature = "wgpu"))]
    {
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| std::path::Path::new(&d).is_absolute());
        if !valid {
            // SAFETY: the caller runs this before any other thread exists
            // that could read the environment concurrently.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
        }
    }
}

/// One adapter as `tensorlet devices` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// The graphics API: "vulkan", "metal", "dx12".
    pub backend: String,
    /// "discrete", "integrated", "virtual", "cpu" or "other".
    pub device_type: String,
    /// The driver and its version, when the adapter says.
    pub driver: String,
    /// A software rasteriser (lavapipe, llvmpipe, SwiftShader, WARP).
    pub software: bool,
}

/// The adapters found, best first, and what the device choices open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Whether this build has the wgpu backend.
    pub gpu_backend: bool,
    /// Every adapter found, best first.
    pub adapters: Vec<AdapterSummary>,
    /// The index of the adapter `--device auto` opens (never a software one).
    pub auto: Option<usize>,
    /// Why `--device gpu` fails when no adapter was found.
    pub no_adapter: String,
    /// The CPU backend's name.
    pub cpu: String,
}

impl Listing {
    /// Asks the drivers for their adapters (once).
    pub fn probe() -> Listing {
        #[cfg(feature = "wgpu")]
        let (adapters, auto) = crate::wgpu_backend::adapters();
        #[cfg(not(feature = "wgpu"))]
        let (adapters, auto) = (Vec::new(), None);
        // What `--device gpu` answers without probing the drivers again.
        #[cfg(feature = "wgpu")]
        let no_adapter = crate::wgpu_backend::GpuError::NoAdapter {
            software: Vec::new(),
        };
        #[cfg(not(feature = "wgpu"))]
        let no_adapter = crate::OpenError::NoGpuBackend;
        Listing {
            gpu_backend: cfg!(feature = "wgpu"),
            adapters,
            auto,
            no_adapter: no_adapter.to_string(),
            cpu: Device::cpu().info().name,
        }
    }

    /// What `--device auto` opens: `gpu: <adapter>` or `cpu: <backend>`.
    pub fn auto_pick(&self) -> String {
        match self.auto {
            Some(i) => format!("gpu: {}", self.adapters[i].name),
            None => format!("cpu: {}", self.cpu),
        }
    }

    /// The adapter `--device gpu` opens (a software one when it is all there is).
    pub fn gpu_pick(&self) -> Option<&str> {
        self.adapters.first().map(|a| a.name.as_str())
    }

    /// The listing as `tensorlet devices --json` prints it.
    pub fn json(&self) -> serde_json::Value {
        let adapters: Vec<_> = self
            .adapters
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "backend": a.backend,
                    "device_type": a.device_type,
                    "driver": a.driver,
                    "software": a.software,
                })
            })
            .collect();
        serde_json::json!({
            "gpu_backend": self.gpu_backend,
            "adapters": adapters,
            "auto": self.auto_pick(),
            "auto_adapter": self.auto,
            "gpu": self.gpu_pick(),
        })
    }

    /// The listing as a table of adapters, then what each choice opens.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.gpu_backend {
            lines.push("this build has no GPU backend (built without the `gpu` feature)".into());
        } else if self.adapters.is_empty() {
            lines.push("no GPU adapters found".into());
        } else {
            lines.push(format!(
                "{:<3} {:<44} {:<8} {:<11} driver",
                "#", "adapter", "backend", "type"
            ));
            for (i, a) in self.adapters.iter().enumerate() {
                let kind = if a.software {
                    format!("{} (software)", a.device_type)
                } else {
                    a.device_type.clone()
                };
                let mark = if Some(i) == self.auto {
                    "  <- auto"
                } else {
                    ""
                };
                lines.push(format!(
                    "{i:<3} {:<44} {:<8} {:<11} {}{mark}",
                    a.name, a.backend, kind, a.driver
                ));
            }
        }
        lines.push(String::new());
        lines.push(format!("--device auto -> {}", self.auto_pick()));
        lines.push(match self.gpu_pick() {
            Some(name) => format!("--device gpu  -> {name}"),
            None => format!("--device gpu  -> unavailable: {}", self.no_adapter),
        });
        lines.push(format!("--device cpu  -> {}", self.cpu));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, device_type: &str, software: bool) -> AdapterSummary {
        AdapterSummary {
            name: name.into(),
            backend: "vulkan".into(),
            device_type: device_type.into(),
            driver: "drv 1.0".into(),
            software,
        }
    }

    fn listing(adapters: Vec<AdapterSummary>, auto: Option<usize>) -> Listing {
        Listing {
            gpu_backend: true,
            adapters,
            auto,
            no_adapter: "no GPU adapter".into(),
            cpu: "cpu-ref".into(),
        }
    }

    #[test]
    fn marks_the_adapter_auto_opens() {
        let l = listing(
            vec![
                adapter("Big GPU", "discrete", false),
                adapter("llvmpipe", "cpu", true),
            ],
            Some(0),
        );
        let lines = l.lines();
        assert_eq!(
            lines[0],
            format!("#   {:<44} backend  type        driver", "adapter")
        );
        assert_eq!(
            lines[1],
            format!(
                "0   {:<44} vulkan   discrete    drv 1.0  <- auto",
                "Big GPU"
            )
        );
        assert_eq!(
            lines[2],
            format!("1   {:<44} vulkan   cpu (software) drv 1.0", "llvmpipe")
        );
        assert_eq!(
            &lines[3..],
            [
                "",
                "--device auto -> gpu: Big GPU",
                "--device gpu  -> Big GPU",
                "--device cpu  -> cpu-ref"
            ]
        );
    }

    #[test]
    fn a_software_adapter_alone_is_gpu_but_not_auto() {
        let l = listing(vec![adapter("lavapipe", "cpu", true)], None);
        assert_eq!(l.auto_pick(), "cpu: cpu-ref");
        assert_eq!(l.gpu_pick(), Some("lavapipe"));
        assert!(!l.lines()[1].contains("<- auto"));
    }

    #[test]
    fn says_why_there_is_no_gpu() {
        let none = listing(Vec::new(), None);
        assert_eq!(none.lines()[0], "no GPU adapters found");
        assert_eq!(
            none.lines()[3],
            "--device gpu  -> unavailable: no GPU adapter"
        );
        let cpu_only = Listing {
            gpu_backend: false,
            ..none
        };
        assert_eq!(
            cpu_only.lines()[0],
            "this build has no GPU backend (built without the `gpu` feature)"
        );
    }

    #[test]
    fn the_json_names_every_adapter_and_each_pick() {
        let l = listing(
            vec![
                adapter("Big GPU", "discrete", false),
                adapter("llvmpipe", "cpu", true),
            ],
            Some(0),
        );
        let j = l.json();
        assert_eq!(j["adapters"].as_array().unwrap().len(), 2);
        assert_eq!(j["adapters"][1]["software"], true);
        assert_eq!(j["auto"], "gpu: Big GPU");
        assert_eq!(j["auto_adapter"], 0);
        assert_eq!(j["gpu"], "Big GPU");
        let none = listing(Vec::new(), None).json();
        assert_eq!(none["auto"], "cpu: cpu-ref");
        assert!(none["gpu"].is_null() && none["auto_adapter"].is_null());
    }
}
