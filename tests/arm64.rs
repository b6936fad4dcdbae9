//! The arm64 edge build, run under user-mode emulation (`qemu-aarch64 -L
//! /usr/aarch64-linux-gnu`): it trains the bundled pipelines, publishes and
//! serves the models and answers Open Inference Protocol requests; a model
//! trained on x86-64 gives the same labels on arm64 with probabilities within
//! 1e-5; and the x86-64 compiled-component cache is never used by the arm64
//! engine. The emulator gives the process a 512 GiB address space, as arm64
//! kernels with 39-bit virtual addresses do, which the runtime must fit in.
//!
//! The arm64 binary is the edge build (docs/edge.md):
//! `cargo build --release --target aarch64-unknown-linux-gnu --no-default-features`.
//! The test looks for it in this build's target directory, or at
//! `TENSORLET_ARM64_BIN`. The tests need it, `qemu-aarch64` and the arm64
//! sysroot, so they are ignored by default (`cargo test … -- --ignored` runs
//! them; `.ci/run` builds the binary first) and fail, saying what to install,
//! when run without them. See `docs/testing.md`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use common::{RegistryServer, http, ok, s, tensorlet};
use serde_json::{Value, json};

/// Where Debian's `libc6-dev-arm64-cross` puts the arm64 loader and libc.
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// The emulated address space: 512 GiB, what arm64 kernels built with 39-bit
/// virtual addresses give a process (the runtime must fit in it).
const ADDRESS_SPACE: &str = "0x8000000000";

/// One emulated tensorlet at a time: qemu-user's bookkeeping of the
/// runtime's reserved (unused) address space costs host memory.
static EMULATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Largest difference allowed between x86-64 and arm64 probabilities.
const TOLERANCE: f64 = 1e-5;

/// The arm64 `tensorlet` and the emulator that runs it.
struct Arm64 {
    bin: PathBuf,
    qemu: PathBuf,
}

impl Arm64 {
    /// Finds both; a test that runs without them fails with what to install.
    fn find() -> Arm64 {
        // <target>/release/tensorlet -> <target>/aarch64-unknown-linux-gnu/release/tensorlet
        let beside = Path::new(env!("CARGO_BIN_EXE_tensorlet"))
            .parent()
            .and_then(Path::parent)
            .map(|t| t.join("aarch64-unknown-linux-gnu/release/tensorlet"));
        let bin = std::env::var_os("TENSORLET_ARM64_BIN")
            .filter(|b| !b.is_empty())
            .map(PathBuf::from)
            .or(beside)
            .expect("the target directory");
        let qemu = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("qemu-aarch64"))
                .find(|p| p.is_file())
        });
        let problem = if !bin.is_file() {
            Some(format!(
                "no arm64 tensorlet at {}; build it with `cargo build --release --target \
                 aarch64-unknown-linux-gnu --no-default-features` (needs `rustup target add \
                 aarch64-unknown-linux-gnu` and the Debian packages gcc-aarch64-linux-gnu and \
                 libc6-dev-arm64-cross), or point TENSORLET_ARM64_BIN at one",
                bin.display()
            ))
        } else if qemu.is_none() || !Path::new(SYSROOT).join("lib").is_dir() {
            Some(format!(
                "qemu-aarch64 (Debian package qemu-user) or the arm64 sysroot {SYSROOT} \
                 (libc6-dev-arm64-cross) is missing"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            panic!("{message} (see docs/testing.md)");
        }
        Arm64 {
            bin,
            qemu: qemu.unwrap(),
        }
    }

    fn command(&self, home: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(["-R", ADDRESS_SPACE, "-L", SYSROOT])
            .arg(&self.bin)
            .args(args)
            .env("TENSORLET_HOME", home)
            .env_remove("TENSORLET_DEVICE")
            .env_remove("TENSORLET_REGISTRY")
            .env_remove("TENSORLET_KEY");
        cmd
    }

    /// Runs the arm64 binary to completion; asserts success, returns stdout.
    fn run(&self, home: &Path, args: &[&str]) -> String {
        let out: Output = self.command(home, args).output().expect("run qemu-aarch64");
        assert!(
            out.status.success(),
            "arm64 tensorlet {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// One row's prediction from `tensorlet predict --json`.
#[derive(Debug)]
struct Row {
    label: u64,
    probabilities: Vec<f64>,
}

fn rows(json: &str) -> Vec<Row> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Row {
            label: r["label"].as_u64().unwrap(),
            probabilities: floats(&r["probabilities"]),
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Asserts equal labels and probabilities within `tol`; returns the largest difference.
fn same_predictions(what: &str, a: &[Row], b: &[Row], tol: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: row counts");
    let mut worst = 0.0f64;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.label, y.label, "{what}: row {i} labels differ");
        assert_eq!(
            x.probabilities.len(),
            y.probabilities.len(),
            "{what}: row {i}"
        );
        for (p, q) in x.probabilities.iter().zip(&y.probabilities) {
            worst = worst.max((p - q).abs());
        }
    }
    assert!(
        worst <= tol,
        "{what}: probabilities differ by up to {worst:e} (allowed {tol:e})"
    );
    worst
}

/// Copies a directory tree (a registry home).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The compiled-component cache: file name -> bytes.
fn cache_files(home: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = home.join("cache/components");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Writes `n` rows of a bundled data set (header included) and returns the path.
fn first_and_last_rows(home: &Path, csv: &str) -> PathBuf {
    let text = std::fs::read_to_string(home.join(csv)).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let picked = [lines[0], lines[1], lines[lines.len() - 1]].join("\n");
    let path = home.join(format!("picked-{csv}"));
    std::fs::write(&path, picked + "\n").unwrap();
    path
}

/// The feature values of a CSV written by [`first_and_last_rows`] (label dropped).
fn features(csv: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[..cells.len() - 1]
                .iter()
                .map(|c| c.trim().parse().unwrap())
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs the arm64 build and qemu-user: see docs/testing.md"]
fn a_model_trained_on_x86_64_gives_the_same_predictions_on_arm64() {
    let arm = Arm64::find();
    let _one_at_a_time = EMULATOR.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let x86_home = tmp.path().join("x86");
    let arm_home = tmp.path().join("arm64");
    ok(&tensorlet(
        &x86_home,
        &[
            "demo",
            "--out",
            s(&x86_home),
            "--device",
            "cpu",
            "--only",
            "iris,digits",
        ],
    ));
    // The edge workflow: copy the state (registry, keys, compiled cache) over.
    copy_tree(&x86_home, &arm_home);
    let x86_cache = cache_files(&arm_home);
    assert!(!x86_cache.is_empty(), "the demo compiled components");

    for (model, csv) in [
        ("tensorlet/iris-model@0.1.0", "iris.csv"),
        ("tensorlet/digits-model@0.1.0", "digits.csv"),
    ] {
        let args = |home: &Path| {
            [
                "predict".to_string(),
                model.to_string(),
                "--input".into(),
                home.join(csv).display().to_string(),
                "--json".into(),
                "--device".into(),
                "cpu".into(),
            ]
        };
        let x86_args = args(&x86_home);
        let x86 = rows(&ok(&tensorlet(
            &x86_home,
            &x86_args.iter().map(String::as_str).collect::<Vec<_>>(),
        )));
        let arm_args = args(&arm_home);
        let arm = rows(&arm.run(
            &arm_home,
            &arm_args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        assert!(x86.len() > 100, "{model}: the whole data set was predicted");
        let worst = same_predictions(model, &x86, &arm, TOLERANCE);
        eprintln!(
            "{model}: {} rows, same labels, largest probability difference {worst:e}",
            x86.len()
        );
    }

    // The arm64 engine compiled its own code under its own engine key, for
    // the same component digests, and left every x86-64 file untouched.
    let after = cache_files(&arm_home);
    let key = |name: &str| {
        name.split_once('-')
            .map(|(d, e)| (d.to_string(), e.to_string()))
    };
    let x86_keys: Vec<(String, String)> = x86_cache.iter().filter_map(|(n, _)| key(n)).collect();
    for (name, bytes) in &x86_cache {
        assert!(
            after.iter().any(|(n, b)| n == name && b == bytes),
            "{name} changed"
        );
    }
    let arm_files: Vec<&String> = after
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !x86_cache.iter().any(|(x, _)| x == *n))
        .collect();
    assert!(!arm_files.is_empty(), "the arm64 run compiled nothing");
    for name in arm_files {
        let (digest, engine) = key(name).unwrap();
        assert!(
            x86_keys.iter().all(|(_, e)| *e != engine),
            "{name} has the x86-64 engine key"
        );
        assert!(
            x86_keys.iter().any(|(d, _)| *d == digest),
            "{name} is not a component the x86-64 run compiled"
        );
    }
}

/// A server running under qemu; killed when dropped.
struct Serving {
    child: Child,
    addr: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tensorlet serve` (arm64) on a free loopback port, plus `args`.
fn serve(arm: &Arm64, home: &Path, args: &[&str]) -> Serving {
    let mut all = vec![
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "off",
        "--grpc-addr",
        "off",
        "--device",
        "cpu",
    ];
    all.extend_from_slice(args);
    let mut child = arm
        .command(home, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = common::served_addr(&mut child);
    Serving { child, addr }
}

/// The OIP output `name` of an infer response.
fn output<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no output {name}: {reply}"))
}

/// OIP infer response -> rows (labels and probabilities, row-major).
fn oip_rows(reply: &Value) -> Vec<Row> {
    let labels = floats(&output(reply, "label")["data"]);
    let probs = output(reply, "probabilities");
    let flat = floats(&probs["data"]);
    let classes = probs["shape"][1].as_u64().unwrap() as usize;
    labels
        .iter()
        .zip(flat.chunks(classes))
        .map(|(l, p)| Row {
            label: *l as u64,
            probabilities: p.to_vec(),
        })
        .collect()
}

#[test]
#[ignore = "needs the arm64 build and qemu-user: see docs/testing.md"]
fn arm64_trains_publishes_and_serves_the_bundled_pipelines() {
    let arm = Arm64::find();
    let _one_at_a_time = EMULATOR.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("arm64");
    let h = s(&home);

    // Sign and publish the bundled plugins and pipelines, train both models
    // from the registry, publish them, verify the audit log: all on arm64.
    let demo = arm.run(
        &home,
        &[
            "demo",
            "--out",
            h,
            "--device",
            "cpu",
            "--only",
            "iris,digits",
        ],
    );
    assert!(demo.contains("audit log OK"), "{demo}");
    // Training is bit-for-bit the same as on x86-64: same weights, same digests.
    let x86_home = tmp.path().join("x86");
    ok(&tensorlet(
        &x86_home,
        &[
            "demo",
            "--out",
            s(&x86_home),
            "--device",
            "cpu",
            "--only",
            "iris,digits",
        ],
    ));
    for model in ["tensorlet/iris-model@0.1.0", "tensorlet/digits-model@0.1.0"] {
        let blobs = |home: &Path| {
            let show: Value =
                serde_json::from_str(&ok(&tensorlet(home, &["show", model, "--json"]))).unwrap();
            let b = &show["manifest"]["manifest"]["blobs"];
            (
                b["params.safetensors"].clone(),
                b["preprocessor.safetensors"].clone(),
            )
        };
        let (arm_blobs, x86_blobs) = (blobs(&home), blobs(&x86_home));
        assert!(arm_blobs.0.is_string(), "{model}: {arm_blobs:?}");
        assert_eq!(
            arm_blobs, x86_blobs,
            "{model}: arm64 and x86-64 trained differently"
        );
    }
    // Train the published iris pipeline again (a short run) and publish it.
    let data = home.join("iris.csv");
    arm.run(
        &home,
        &[
            "train",
            "tensorlet/iris",
            "--data",
            s(&data),
            "--key",
            "demo",
            "--epochs",
            "20",
            "--device",
            "cpu",
        ],
    );
    arm.run(
        &home,
        &[
            "alias",
            "set",
            "tensorlet/iris-model",
            "production",
            "0.1.1",
        ],
    );
    arm.run(
        &home,
        &[
            "alias",
            "set",
            "tensorlet/digits-model",
            "production",
            "0.1.0",
        ],
    );
    // The artifacts signed on arm64 verify on x86-64.
    let verified = ok(&tensorlet(&home, &["verify", "tensorlet/iris-model@0.1.1"]));
    assert!(verified.contains("0.1.1"), "{verified}");

    let started = Instant::now();
    let server = serve(&arm, &home, &[]);
    eprintln!("arm64 serve ready (emulated) in {:?}", started.elapsed());
    let (status, live) = http(&server.addr, "GET", "/v2/health/ready", None);
    assert_eq!(status, 200, "{live}");

    for (model, csv, version) in [
        ("iris-model", "iris.csv", "0.1.1"),
        ("digits-model", "digits.csv", "0.1.0"),
    ] {
        let picked = first_and_last_rows(&home, csv);
        let x = features(&picked);
        let request = json!({ "inputs": [{
            "name": "input",
            "shape": [x.len(), x[0].len()],
            "datatype": "FP32",
            "data": x,
        }] });
        let (status, reply) = http(
            &server.addr,
            "POST",
            &format!("/v2/models/{model}/infer"),
            Some(&request),
        );
        assert_eq!(status, 200, "{model}: {reply}");
        assert_eq!(reply["model_name"], model, "{reply}");
        assert_eq!(reply["model_version"], version, "{reply}");
        let served = oip_rows(&reply);
        // The same rows through `tensorlet predict` (x86-64, same artifact).
        let reference = format!("tensorlet/{model}@{version}");
        let predicted = rows(&ok(&tensorlet(
            &home,
            &[
                "predict",
                &reference,
                "--input",
                s(&picked),
                "--json",
                "--device",
                "cpu",
            ],
        )));
        assert_eq!(served.len(), 2, "{model}: {reply}");
        same_predictions(model, &served, &predicted, TOLERANCE);
        // The first row of each data set is class 0, the last is not.
        assert_eq!(served[0].label, 0, "{model}: {reply}");
        assert_ne!(served[1].label, 0, "{model}: {reply}");
    }

    // A caller's mistake is a 4xx with a sentence, under emulation too.
    let (status, reply) = http(
        &server.addr,
        "POST",
        "/v2/models/iris-model/infer",
        Some(&json!({ "inputs": [{ "name": "input", "shape": [1, 3],
                                   "datatype": "FP32", "data": [1.0, 2.0, 3.0] }] })),
    );
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].is_string(), "{reply}");
}

#[test]
#[ignore = "needs the arm64 build and qemu-user: see docs/testing.md"]
fn an_arm64_device_pulls_verified_models_and_serves_them_offline() {
    let arm = Arm64::find();
    let _one_at_a_time = EMULATOR.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    // The central registry (x86-64): the demo's signed plugins, pipelines and models.
    let hub = tmp.path().join("hub");
    ok(&tensorlet(
        &hub,
        &[
            "demo",
            "--out",
            s(&hub),
            "--device",
            "cpu",
            "--only",
            "iris,digits",
        ],
    ));
    let public = ok(&tensorlet(&hub, &["key", "export", "demo"]))
        .lines()
        .last()
        .unwrap()
        .to_string();
    let server = RegistryServer::start(&hub, &[]);
    let model = "tensorlet/iris-model@0.1.0";

    // A device that trusts nobody refuses what the registry sends.
    let stranger = tmp.path().join("stranger");
    let out = arm
        .command(&stranger, &["verify", model, "--registry", &server.url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an untrusted artifact was accepted");
    assert!(
        err.contains("refusing") && err.contains("not in this trust policy"),
        "{err}"
    );

    // The device: only the publisher's public key, trusted for its namespace.
    let device = tmp.path().join("device");
    arm.run(
        &device,
        &["trust", "add", &public, "--namespace", "tensorlet"],
    );
    let pulled = arm.run(&device, &["verify", model, "--registry", &server.url]);
    assert!(pulled.starts_with(&format!("OK {model}")), "{pulled}");
    assert!(
        !device.join("keys/demo.key").exists(),
        "no private key travels"
    );
    drop(server);

    // Offline: the cache answers, over OIP, as x86-64 predicts.
    let picked = first_and_last_rows(&hub, "iris.csv");
    let x = features(&picked);
    let serving = serve(&arm, &device, &["--model", model]);
    let request = json!({ "inputs": [{
        "name": "input", "shape": [x.len(), x[0].len()], "datatype": "FP32", "data": x,
    }] });
    let (status, reply) = http(
        &serving.addr,
        "POST",
        "/v2/models/iris-model/infer",
        Some(&request),
    );
    assert_eq!(status, 200, "{reply}");
    let predicted = rows(&ok(&tensorlet(
        &hub,
        &[
            "predict",
            model,
            "--input",
            s(&picked),
            "--json",
            "--device",
            "cpu",
        ],
    )));
    same_predictions(
        "offline arm64 serve",
        &oip_rows(&reply),
        &predicted,
        TOLERANCE,
    );
}

/// Epochs of the digits CNN in [`the_digits_cnn_trains_to_the_same_bits_on_arm64`]:
/// fewer than its pipeline's 30, for the emulator's sake.
const CNN_EPOCHS: &str = "3";

/// `tensorlet train` of the bundled digits CNN pipeline file (conv, pooling,
/// Adam) into `home/model`; returns its run's checkpoint digests (one per
/// epoch) and the saved model's `model.json`.
fn train_cnn(home: &Path, train: impl FnOnce(&[&str]) -> String) -> (Vec<String>, Value) {
    let pipeline = common::pipeline("digits-cnn");
    let digits = common::data("digits.csv");
    let model = home.join("model");
    let out = train(&[
        "train",
        s(&pipeline),
        "--data",
        s(&digits),
        "--out",
        s(&model),
        "--epochs",
        CNN_EPOCHS,
        "--allow-unsigned",
        "--device",
        "cpu",
    ]);
    assert!(out.contains("trained digits-cnn"), "{out}");
    let runs: Value =
        serde_json::from_str(&ok(&tensorlet(home, &["runs", "list", "--json"]))).unwrap();
    let id = runs[0]["id"].as_str().unwrap_or_else(|| panic!("{runs}"));
    let run: Value =
        serde_json::from_str(&ok(&tensorlet(home, &["runs", "show", id, "--json"]))).unwrap();
    let checkpoints = run["checkpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{run}"))
        .iter()
        .map(|c| c["params"].as_str().unwrap().to_string())
        .collect();
    let meta = serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    (checkpoints, meta)
}

#[test]
#[ignore = "needs the arm64 build and qemu-user: see docs/testing.md"]
fn the_digits_cnn_trains_to_the_same_bits_on_arm64() {
    let arm = Arm64::find();
    let _one_at_a_time = EMULATOR.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (x86_home, arm_home) = (tmp.path().join("x86"), tmp.path().join("arm64"));
    let (x86, x86_meta) = train_cnn(&x86_home, |args| ok(&tensorlet(&x86_home, args)));
    let started = Instant::now();
    let (arm64, arm_meta) = train_cnn(&arm_home, |args| arm.run(&arm_home, args));
    eprintln!(
        "digits CNN, {CNN_EPOCHS} epochs on arm64 (emulated) in {:?}",
        started.elapsed()
    );
    assert_eq!(x86.len().to_string(), CNN_EPOCHS, "a checkpoint per epoch");
    for (epoch, (a, b)) in x86.iter().zip(&arm64).enumerate() {
        assert_eq!(
            a,
            b,
            "the params after epoch {} differ between x86-64 and arm64",
            epoch + 1
        );
    }
    assert_eq!(x86.len(), arm64.len());
    for key in ["params_digest", "state_digest", "epoch"] {
        assert!(!x86_meta[key].is_null(), "{key}: {x86_meta}");
        assert_eq!(x86_meta[key], arm_meta[key], "{key}");
    }

    // The x86-64 model predicts every row the same on arm64.
    let (model, digits) = (x86_home.join("model"), common::data("digits.csv"));
    let predict = [
        "predict",
        s(&model),
        "--input",
        s(&digits),
        "--json",
        "--allow-unsigned",
        "--device",
        "cpu",
    ];
    let want = rows(&ok(&tensorlet(&x86_home, &predict)));
    let got = rows(&arm.run(&arm_home, &predict));
    assert!(want.len() > 1000, "the whole data set was predicted");
    let worst = same_predictions("digits CNN", &want, &got, TOLERANCE);
    eprintln!(
        "digits CNN: {} rows, same labels, largest probability difference {worst:e}",
        want.len()
    );
}
