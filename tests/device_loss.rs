#![recursion_limit = "256"]
//! A GPU lost in the middle of the work, on lavapipe (or any adapter): a
//! training run ends failed with its checkpoints kept and says how to go on
//! on the CPU; a server answers 503 naming the device, turns readiness off,
//! reopens the device and serves again. The loss is injected with wgpu's
//! `Device::destroy` (`Device::lose_device`; for the CLI, the variable
//! `__TENSORLET_TEST_LOSE_GPU_AT_WAIT`), which wgpu reports as it reports a
//! driver reset: through the device-lost callback.
//!
//! Both tests need a GPU adapter, so both are ignored by default (see
//! `docs/testing.md`). The serve test loses the process's GPU context, so it
//! is the only in-process GPU test of this binary.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tensorlet_runtime::gpu::{Device, Preference};
use tensorlet_runtime::model::Model;
use tensorlet_runtime::serve::{Deployment, NoEvents, ServeConfig, Server};
use tensorlet_runtime::{Runtime, RuntimeConfig};

const LOSE_AT_WAIT: &str = "__TENSORLET_TEST_LOSE_GPU_AT_WAIT";
const EPOCHS: u64 = 6;

fn gpu() -> Device {
    Device::open(Preference::Gpu)
        .unwrap_or_else(|e| panic!("no GPU adapter: {e} (lavapipe will do; see docs/testing.md)"))
}

/// The adapter's name as a `DeviceError` gives it: the device's name
/// without " via <backend>…".
fn adapter(dev: &Device) -> String {
    let name = dev.info().name;
    name.split(" via ").next().unwrap().to_string()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn train_args<'a>(model: &'a Path, device: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        pipeline_path(),
        "--data",
        data_path(),
        "--out",
        s(model),
        "--epochs",
        "6",
        "--allow-unsigned",
        "--device",
        device,
    ]
}

fn pipeline_path() -> &'static str {
    static P: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    P.get_or_init(|| pipeline("iris").display().to_string())
}

fn data_path() -> &'static str {
    static D: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    D.get_or_init(|| data("iris.csv").display().to_string())
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn a_training_run_whose_gpu_is_lost_fails_and_keeps_its_checkpoints() {
    let adapter = adapter(&gpu());
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let model = h.join("model");
    // An iris epoch waits for the GPU a few dozen times (a loss and a
    // gradient norm per step, validation, a checkpoint): lost in epoch 2-4.
    let out = tensorlet_env(h, &train_args(&model, "gpu"), &[(LOSE_AT_WAIT, "80")]);
    let err = fails(&out);
    assert!(!err.contains("panicked"), "{err}");
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no run id in: {err}"));
    assert!(
        err.contains(&format!("error: run {id} failed after ")),
        "{err}"
    );
    assert!(err.contains(&format!("`{adapter}` was lost")), "{err}");
    assert!(
        err.contains(&format!("tensorlet train --resume {id} --device cpu")),
        "{err}"
    );
    assert!(
        !model.join("model.json").exists(),
        "no model from a failed run"
    );

    // The run is recorded as failed, with the message, and the epochs done
    // before the loss are kept.
    let run = json(&ok(&tensorlet(h, &["runs", "show", &id, "--json"])));
    assert_eq!(run["status"], "failed", "{run}");
    let message = run["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("`{adapter}` was lost")),
        "{message}"
    );
    assert!(message.contains("--device cpu"), "{message}");
    let kept = run["epochs_done"].as_u64().unwrap();
    assert!((1..EPOCHS).contains(&kept), "{run}");
    assert_eq!(run["checkpoints"].as_array().unwrap().len() as u64, kept);

    // They are good checkpoints: the run continues from them on the CPU.
    let out = ok(&tensorlet(
        h,
        &["train", "--resume", &id, "--device", "cpu"],
    ));
    assert!(out.contains(&format!("run {id}")), "{out}");
    let run = json(&ok(&tensorlet(h, &["runs", "show", &id, "--json"])));
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["epochs_done"].as_u64(), Some(EPOCHS), "{run}");
    assert!(model.join("model.json").exists());
}

/// The server on a loopback port, on its own async runtime.
struct Running {
    addr: String,
    _rt: tokio::runtime::Runtime,
}

fn start(server: Arc<Server>) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    rt.spawn(async move {
        tensorlet_runtime::serve::run(server, listener, None, None, std::future::pending()).await
    });
    Running {
        addr: addr.to_string(),
        _rt: rt,
    }
}

fn infer(addr: &str) -> (u16, Value) {
    let body = json!({
        "inputs": [{
            "name": "input", "shape": [2, 4], "datatype": "FP32",
            "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
        }],
    });
    http(addr, "POST", "/v2/models/iris/infer", Some(&body))
}

fn metric(addr: &str, name: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn a_server_whose_gpu_is_lost_answers_503_and_recovers() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("model");
    ok(&tensorlet(home.path(), &train_args(&dir, "cpu")));

    let rt = Runtime::new(RuntimeConfig {
        device: gpu(),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let device = rt.device().clone();
    let adapter = adapter(&device);
    let model = Model::load(&rt, &dir, &unsigned_component).unwrap();
    let config = ServeConfig {
        // Long enough to see the server not ready before it reopens the GPU.
        reopen_delay: Duration::from_secs(2),
        ..ServeConfig::default()
    };
    let server = Arc::new(Server::new(device.clone(), config, Arc::new(NoEvents)));
    server
        .deploy(Deployment::new("iris", "1", "model", model))
        .unwrap();
    let run = start(server.clone());
    let a = run.addr.as_str();

    let (status, before) = infer(a);
    assert_eq!(status, 200, "{before}");
    assert_eq!(http(a, "GET", "/v2/health/ready", None).0, 200);

    // Lost at the next wait: the next request's read of its result.
    assert!(device.lose_device(1));
    let (status, body) = infer(a);
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("the GPU device `{adapter}` was lost")),
        "{error}"
    );
    assert!(!error.contains("panicked"), "{error}");

    // Not ready while it reopens the device; requests meanwhile get 503
    // without touching it.
    let (status, ready) = http(a, "GET", "/v2/health/ready", None);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    let reason = ready["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("`{adapter}` was lost")),
        "{reason}"
    );
    let (status, model_ready) = http(a, "GET", "/v2/models/iris/ready", None);
    assert_eq!((status, &model_ready["ready"]), (200, &json!(false)));
    let (status, body) = infer(a);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&format!(
            "`{adapter}` failed and the server is reopening it"
        )),
        "{body}"
    );
    assert!(server.recovering());

    // Then it is back, on a fresh context of the same adapter, with the
    // model's params uploaded again: the same answers as before the loss.
    let started = Instant::now();
    while http(a, "GET", "/v2/health/ready", None).0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not ready again after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    device.check().unwrap();
    for _ in 0..3 {
        let (status, after) = infer(a);
        assert_eq!(status, 200, "{after}");
        assert_eq!(after["outputs"], before["outputs"]);
    }
    let (_, model_ready) = http(a, "GET", "/v2/models/iris/ready", None);
    assert_eq!(model_ready["ready"], true);
    assert_eq!(metric(a, "tensorlet_device_failures_total"), "1");
    assert_eq!(metric(a, "tensorlet_device_recoveries_total"), "1");
}
