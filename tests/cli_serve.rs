//! `tensorlet serve` as a process: serves the `production` alias from the
//! registry, follows alias moves with zero failed requests, never gets an
//! alias moved to a tampered artifact (`alias set` refuses it), refuses to
//! deploy one when the alias is moved behind the registry's back (the old
//! version keeps serving, the failure is reported), and stops gracefully on
//! SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::http;
use serde_json::{Value, json};

fn tensorlet(home: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args(args)
        .env("TENSORLET_HOME", home)
        .env("TENSORLET_DEVICE", "cpu")
        .output()
        .expect("run tensorlet");
    assert!(
        out.status.success(),
        "tensorlet {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// POSTs `body` (JSON, sent without a Content-Type, as tritonclient does)
/// and returns (status, JSON).
fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http::request("POST", addr, path, &[], &serde_json::to_vec(body).unwrap());
    (r.status, http::json_or_null(&r))
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    http::get(addr, path)
}

fn request() -> Value {
    json!({ "inputs": [{ "name": "input", "shape": [2, 4], "datatype": "FP64",
                         "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]] }] })
}

struct Serving {
    child: Child,
    addr: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn serve(home: &Path) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--grpc-addr",
            "off",
            "--poll",
            "0.2",
            // Each response written at once: the other tests that start
            // `tensorlet serve` keep the default, batched writes.
            "--batch-writes",
            "false",
            // Requests coalesced by adaptive batching (off by default),
            // across the alias moves and hot swaps below.
            "--batch-delay",
            "0",
        ])
        .env("TENSORLET_HOME", home)
        .env("TENSORLET_DEVICE", "cpu")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = common::served_addr(&mut child);
    Serving { child, addr }
}

fn files_newer_than(dir: &Path, t: SystemTime) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_newer_than(&p, t));
        } else if p.metadata().unwrap().modified().unwrap() > t {
            out.push(p);
        }
    }
    out
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_follows_the_production_alias_and_refuses_tampered_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let h = home.to_str().unwrap();
    tensorlet(home, &["demo", "--out", h, "--only", "iris,digits"]);
    tensorlet(
        home,
        &[
            "alias",
            "set",
            "tensorlet/iris-model",
            "production",
            "0.1.0",
        ],
    );

    let server = serve(home);
    let addr = server.addr.clone();
    let (status, out) = post(&addr, "/v2/models/iris-model/infer", &request());
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["model_version"], "0.1.0");
    assert_eq!(out["outputs"][0]["data"], json!([0, 2]));

    // Promotion under load: every request succeeds, and the new version arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let hammer = {
        let (stop, failures, addr) = (stop.clone(), failures.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if post(&addr, "/v2/models/iris-model/infer", &request()).0 != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            n
        })
    };
    let data = format!("{h}/iris.csv");
    tensorlet(
        home,
        &[
            "train",
            "tensorlet/iris",
            "--data",
            &data,
            "--key",
            "demo",
            "--epochs",
            "20",
        ],
    );
    tensorlet(
        home,
        &[
            "alias",
            "set",
            "tensorlet/iris-model",
            "production",
            "0.1.1",
        ],
    );
    wait_for("version 0.1.1", || {
        post(&addr, "/v2/models/iris-model/infer", &request()).1["model_version"] == "0.1.1"
    });
    stop.store(true, Ordering::Relaxed);
    let served = hammer.join().unwrap();
    assert!(served > 5);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );

    // A version whose stored blobs were tampered with cannot be aliased.
    let before = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    tensorlet(
        home,
        &[
            "train",
            "tensorlet/iris",
            "--data",
            &data,
            "--key",
            "demo",
            "--epochs",
            "5",
        ],
    );
    let fresh = files_newer_than(&home.join("blobs"), before);
    assert!(!fresh.is_empty(), "the new model's blobs");
    for f in &fresh {
        let mut bytes = std::fs::read(f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(f, bytes).unwrap();
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args([
            "alias",
            "set",
            "tensorlet/iris-model",
            "production",
            "0.1.2",
        ])
        .env("TENSORLET_HOME", home)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("refusing tensorlet/iris-model@0.1.2") && err.contains("was modified"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(600));
    let (_, ready) = get(&addr, "/v2/models/iris-model/ready");
    assert_eq!(ready["version"], "0.1.1", "{ready}");
    assert!(ready["deploy_error"].is_null(), "{ready}");

    // Moved behind the registry's back (an edit of the database): the server
    // refuses to deploy it, and the audit log does not account for the move.
    let db = rusqlite::Connection::open(home.join("registry.db")).unwrap();
    let point_at = |version: &str| {
        db.execute(
            "UPDATE aliases SET version = ?1 WHERE name = 'iris-model' AND alias = 'production'",
            [version],
        )
        .unwrap()
    };
    point_at("0.1.2");
    let verify = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args(["audit", "verify"])
        .env("TENSORLET_HOME", home)
        .output()
        .unwrap();
    assert!(!verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stderr).contains(
            "the index points tensorlet/iris-model@production at 0.1.2, but the audit log last \
             moved it to 0.1.1"
        ),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    wait_for("the deploy error", || {
        get(&addr, "/v2/models/iris-model/ready").1["deploy_error"].is_string()
    });
    let (_, ready) = get(&addr, "/v2/models/iris-model/ready");
    assert_eq!(
        ready["version"], "0.1.1",
        "the old version keeps serving: {ready}"
    );
    assert_eq!(
        post(&addr, "/v2/models/iris-model/infer", &request()).0,
        200
    );
    let log = String::from_utf8(tensorlet(home, &["audit", "log"]).stdout).unwrap();
    assert!(log.contains("alias.refused"), "{log}");
    assert!(log.contains("serve.deploy_failed"), "{log}");
    assert!(log.contains("serve.deploy"), "{log}");
    point_at("0.1.1");

    // Graceful stop on SIGTERM.
    let mut server = server;
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = String::from_utf8(tensorlet(home, &["audit", "log"]).stdout).unwrap();
    assert!(log.contains("serve.stop"), "{log}");
    assert!(log.contains("serve.invocations"), "{log}");
    tensorlet(home, &["audit", "verify"]);
}
