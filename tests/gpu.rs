//! The CLI on the GPU backend: `devices`, the demo on the GPU (training accuracy
//! against the CPU), `TENSORLET_DEVICE`, and `auto` skipping software devices.
//! Without a hardware GPU these run on lavapipe. The ones that need an adapter
//! are ignored by default (`cargo test … -- --ignored` runs them) and fail,
//! saying what to install, when run without one. See `docs/testing.md`.

use std::path::Path;
use std::process::{Command, Output};

fn tensorlet(home: &Path, args: &[&str], device_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorlet"));
    cmd.args(args)
        .env("TENSORLET_HOME", home)
        .env_remove("TENSORLET_DEVICE");
    if let Some(d) = device_env {
        cmd.env("TENSORLET_DEVICE", d);
    }
    cmd.output().expect("run tensorlet")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tensorlet failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `tensorlet devices --json`; a test that runs where there is no adapter at
/// all fails with what to install.
fn adapters(home: &Path) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&ok(&tensorlet(home, &["devices", "--json"], None))).unwrap();
    let found = json["adapters"].as_array().is_some_and(|a| !a.is_empty());
    assert!(
        found,
        "no GPU adapter: install a Vulkan driver (`apt-get install mesa-vulkan-drivers \
         libvulkan1` gives the lavapipe software device; see docs/testing.md): {json}"
    );
    json
}

/// The validation accuracy of each example on a demo's output.
fn accuracies(stdout: &str) -> Vec<(String, f32)> {
    stdout
        .lines()
        .filter(|l| l.contains("validation accuracy"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w[3].parse().unwrap())
        })
        .collect()
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn devices_lists_the_adapters_and_the_auto_choice() {
    let home = tempfile::tempdir().unwrap();
    let json = adapters(home.path());
    let list = json["adapters"].as_array().unwrap();
    for a in list {
        assert!(!a["name"].as_str().unwrap().is_empty(), "{a}");
        assert!(
            ["vulkan", "metal", "dx12"].contains(&a["backend"].as_str().unwrap()),
            "{a}"
        );
    }
    // `auto` names a hardware adapter, or the CPU when there are only software ones.
    match json["auto_adapter"].as_u64() {
        Some(i) => assert_eq!(list[i as usize]["software"], false, "{json}"),
        None => {
            assert!(list.iter().all(|a| a["software"] == true), "{json}");
            assert!(json["auto"].as_str().unwrap().starts_with("cpu"), "{json}");
        }
    }
    let table = ok(&tensorlet(home.path(), &["devices"], None));
    assert!(table.contains(list[0]["name"].as_str().unwrap()), "{table}");
    assert!(table.contains("--device auto -> "), "{table}");
    if list.iter().any(|a| a["software"] == true) {
        assert!(table.contains("(software)"), "{table}");
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn demo_on_the_gpu_matches_the_cpu_accuracy() {
    let home = tempfile::tempdir().unwrap();
    let json = adapters(home.path());
    // TENSORLET_DEVICE=gpu is the same as --device gpu.
    // The MLPs; the CNN has its own, shorter check below (a software GPU
    // takes minutes over its 30 epochs).
    let gpu = ok(&tensorlet(
        home.path(),
        &["demo", "--only", "iris,digits"],
        Some("gpu"),
    ));
    assert!(gpu.starts_with("tensorlet demo on gpu ("), "{gpu}");
    assert!(
        gpu.contains(json["adapters"][0]["name"].as_str().unwrap()),
        "{gpu}"
    );
    let cpu = ok(&tensorlet(
        home.path(),
        &["demo", "--device", "cpu", "--only", "iris,digits"],
        None,
    ));
    let (g, c) = (accuracies(&gpu), accuracies(&cpu));
    assert_eq!(g.len(), 2, "{gpu}");
    assert_eq!(c.len(), 2, "{cpu}");
    for ((name, ga), (_, ca)) in g.iter().zip(&c) {
        assert!(*ga >= 0.95, "{name} on the GPU: {ga}\n{gpu}");
        // Same seed, same data: only f32 rounding differs, which may flip a
        // row or two (iris: 30 held-out rows; digits: 359).
        let tolerance = if name == "iris" { 0.034 } else { 0.02 };
        assert!(
            (ga - ca).abs() <= tolerance,
            "{name}: gpu {ga} vs cpu {ca}\n{gpu}\n{cpu}"
        );
    }
}

/// The digits CNN (conv2d, max-pool2d and their gradients as WGSL kernels)
/// trained for a few epochs on the GPU reaches the CPU's accuracy ± 0.01.
#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn the_cnn_trains_on_the_gpu_to_the_cpu_accuracy() {
    let home = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pipeline = root.join("plugins/pipelines/digits-cnn.toml");
    let data = root.join("data/digits.csv");
    let train = |device: &str| {
        let out = home.path().join(device);
        let text = ok(&tensorlet(
            home.path(),
            &[
                "train",
                pipeline.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--allow-unsigned",
                "--epochs",
                "4",
                "--out",
                out.to_str().unwrap(),
                "--device",
                device,
            ],
            None,
        ));
        let line = text
            .lines()
            .find(|l| l.contains("validation accuracy"))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string();
        let acc: f32 = line
            .split_whitespace()
            .skip_while(|w| *w != "accuracy")
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        acc
    };
    let (g, c) = (train("gpu"), train("cpu"));
    assert!(c >= 0.9, "cpu {c}");
    assert!((g - c).abs() <= 0.01, "gpu {g} vs cpu {c}");
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn auto_never_picks_a_software_gpu() {
    let home = tempfile::tempdir().unwrap();
    let json = adapters(home.path());
    if json["auto_adapter"].is_null() {
        let out = ok(&tensorlet(
            home.path(),
            &[
                "bench",
                "matmul",
                "--device",
                "auto",
                "--sizes",
                "16",
                "--min-time",
                "0.01",
            ],
            None,
        ));
        assert!(out.contains("[0] cpu ("), "{out}");
        let out = ok(&tensorlet(
            home.path(),
            &["bench", "matmul", "--sizes", "16", "--min-time", "0.01"],
            Some("gpu"),
        ));
        assert!(out.contains("[0] gpu ("), "{out}");
    } else {
        eprintln!("a hardware GPU is present: nothing to check about software adapters");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn gpu_without_an_adapter_says_what_to_install() {
    let home = tempfile::tempdir().unwrap();
    // Only Metal, which Linux does not have: no adapter at all.
    let out = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args(["demo", "--device", "gpu"])
        .env("TENSORLET_HOME", home.path())
        .env("WGPU_BACKEND", "metal")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: --device gpu"), "{err}");
    assert!(err.contains("no GPU adapter found"), "{err}");
    assert!(
        err.contains("apt-get install mesa-vulkan-drivers libvulkan1"),
        "{err}"
    );
    // `auto` falls back to the CPU instead.
    let out = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args([
            "bench",
            "matmul",
            "--device",
            "auto",
            "--sizes",
            "8",
            "--min-time",
            "0.01",
        ])
        .env("TENSORLET_HOME", home.path())
        .env("WGPU_BACKEND", "metal")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("[0] cpu ("),
        "{stdout}"
    );
}
