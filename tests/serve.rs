#![recursion_limit = "256"]
//! The Open Inference Protocol server over real sockets: every endpoint, every
//! class of bad input, isolation of misbehaving plugins under concurrent load,
//! hot swap under load, graceful shutdown and overload.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tensorlet_runtime::model::Model;
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::serve::grpc::proto as grpc;
use tensorlet_runtime::serve::{Deployment, ModelSource, NoEvents, ServeConfig, Server};
use tensorlet_runtime::train::PipelinePlugins;
use tensorlet_runtime::{Pipeline, Runtime, data, model, train};

/// Trains iris with `trainer` and `predictor` (plugin stems) into `out`; a
/// model plugin as trainer is trained by the host with plain SGD.
fn train_iris(rt: &Runtime, trainer: &str, predictor: &str, epochs: u32, out: &Path) {
    let optimizer = if trainer == "misbehave" {
        ""
    } else {
        "optimizer = \"sgd\"\n"
    };
    let text = format!(
        "[pipeline]\nname = \"iris\"\n[data]\nlabel = \"species\"\n\
         [preprocessor]\npath = {:?}\n[trainer]\npath = {:?}\n[predictor]\npath = {:?}\n\
         [training]\nepochs = {epochs}\nbatch_size = 16\nlearning_rate = 0.1\n{optimizer}",
        plugin_path("standardize").display().to_string(),
        plugin_path(trainer).display().to_string(),
        plugin_path(predictor).display().to_string(),
    );
    train_pipeline(rt, &text, &data("iris.csv"), out);
}

/// Trains the pipeline `text` on `table` and saves the model in `out` (the
/// pipeline beside it); `path` and `bundled` plugins load unsigned from the
/// built plugins.
fn train_pipeline(rt: &Runtime, text: &str, table: &Path, out: &Path) {
    let file = out.with_extension("toml");
    std::fs::write(&file, text).unwrap();
    let pipeline = Pipeline::load(&file).unwrap();
    let ds = data::load(table, &pipeline.data.options()).unwrap();
    let resolve = |s: &PluginSource| match s {
        PluginSource::Path(p) => Ok((
            p.file_stem().unwrap().to_string_lossy().into_owned(),
            std::fs::read(p).unwrap(),
        )),
        PluginSource::Bundled(name) => Ok((
            name.clone(),
            std::fs::read(plugin_path(&name.replace('-', "_"))).unwrap(),
        )),
        other => panic!("unexpected {other:?}"),
    };
    let plugins = PipelinePlugins::load(&pipeline, rt, &unsigned_resolver(resolve)).unwrap();
    let trained = train::train(
        rt.device(),
        &plugins,
        &ds,
        &pipeline.training,
        ds.classes(),
        &mut (),
    )
    .unwrap();
    model::save(out, rt.device(), &pipeline, &plugins, &ds, &trained).unwrap();
}

fn load_model(rt: &Runtime, dir: &Path) -> Model {
    Model::load(rt, dir, &unsigned_component).unwrap()
}

struct Models {
    _tmp: tempfile::TempDir,
    good: PathBuf,
    other: PathBuf,
    misbehave: PathBuf,
}

fn models(rt: &Runtime) -> Models {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    let other = tmp.path().join("other");
    let misbehave = tmp.path().join("misbehave");
    train_iris(rt, "softmax_regression", "softmax_regression", 30, &good);
    train_iris(rt, "softmax_regression", "softmax_regression", 5, &other);
    train_iris(rt, "misbehave", "misbehave", 3, &misbehave);
    Models {
        _tmp: tmp,
        good,
        other,
        misbehave,
    }
}

/// A running server on an ephemeral loopback port.
struct Running {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    grpc_addr: SocketAddr,
    server: Arc<Server>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
    _rt: tokio::runtime::Runtime,
}

impl Running {
    fn start(server: Server) -> Running {
        Running::with_workers(server, 2)
    }

    /// A server whose async runtime has `workers` worker threads.
    fn with_workers(server: Server, workers: usize) -> Running {
        let server = Arc::new(server);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let bind = || {
            rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap()
        };
        let (listener, admin, grpc) = (bind(), bind(), bind());
        let addr = listener.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let s = server.clone();
        rt.spawn(async move {
            let admin = Some((admin, axum::Router::new()));
            tensorlet_runtime::serve::run(s, listener, admin, Some(grpc), async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
            let _ = done_tx.send(());
        });
        Running {
            addr,
            admin_addr,
            grpc_addr,
            server,
            stop: Some(stop_tx),
            done,
            _rt: rt,
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a connection of its own (through `common::http`).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let r = common::http::request(method, addr, path, headers, body);
    Reply {
        status: r.status,
        headers: r.headers.into_iter().collect(),
        body: r.body,
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, &[], b"")
}

fn infer(addr: SocketAddr, model: &str, body: &Value) -> Reply {
    http(
        addr,
        "POST",
        &format!("/v2/models/{model}/infer"),
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(body).unwrap(),
    )
}

const ROWS: [[f32; 4]; 3] = [
    [5.1, 3.5, 1.4, 0.2],
    [6.0, 2.7, 5.1, 1.6],
    [6.7, 3.0, 5.2, 2.3],
];

fn iris_request() -> Value {
    json!({
        "id": "req-1",
        "inputs": [{ "name": "input", "shape": [3, 4], "datatype": "FP32", "data": ROWS }],
    })
}

fn server(rt: &Runtime, config: ServeConfig) -> Server {
    Server::new(rt.device().clone(), config, Arc::new(NoEvents))
}

/// A server with the well-trained iris model deployed as `iris` 1.0.0.
fn iris_server(rt: &Runtime, m: &Models, config: ServeConfig) -> Server {
    let s = server(rt, config);
    let model = load_model(rt, &m.good);
    s.deploy(Deployment::new("iris", "1.0.0", "good", model))
        .unwrap();
    s
}

#[test]
fn endpoints_answer_as_the_protocol_says() {
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default());
    let direct = load_model(&rt, &m.good)
        .predict(rt.device(), ROWS.concat(), 3)
        .unwrap();
    let mut run = Running::start(s);
    let a = run.addr;

    assert_eq!(get(a, "/v2/health/live").json(), json!({ "live": true }));
    assert_eq!(get(a, "/v2/health/ready").json(), json!({ "ready": true }));
    assert_eq!(get(a, "/v2").json()["name"], "tensorlet");
    let list = get(a, "/v2/models").json();
    assert_eq!(list["models"][0]["name"], "iris");
    let meta = get(a, "/v2/models/iris").json();
    assert_eq!(meta["versions"], json!(["1.0.0"]));
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 4]));
    assert_eq!(meta["outputs"][1]["shape"], json!([-1, 3]));
    assert_eq!(get(a, "/v2/models/iris/versions/1.0.0").status, 200);
    assert_eq!(get(a, "/v2/models/iris/ready").json()["ready"], true);
    assert_eq!(
        get(a, "/v2/models/iris/versions/1.0.0/ready").json()["ready"],
        true
    );

    let r = infer(a, "iris", &iris_request());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let out = r.json();
    assert_eq!(out["model_name"], "iris");
    assert_eq!(out["model_version"], "1.0.0");
    assert_eq!(out["id"], "req-1");
    let labels: Vec<u32> = serde_json::from_value(out["outputs"][0]["data"].clone()).unwrap();
    let probs: Vec<f32> = serde_json::from_value(out["outputs"][1]["data"].clone()).unwrap();
    assert_eq!(labels, direct.labels);
    assert_eq!(labels, [0, 1, 2]);
    assert_eq!(probs, direct.probabilities.concat());

    let versioned = http(
        a,
        "POST",
        "/v2/models/iris/versions/1.0.0/infer",
        &[],
        &serde_json::to_vec(&iris_request()).unwrap(),
    );
    assert_eq!(
        versioned.status, 200,
        "no Content-Type, as tritonclient sends it"
    );

    // Triton's binary tensor data extension, both ways.
    let header = serde_json::to_vec(&json!({
        "inputs": [{ "name": "input", "shape": [3, 4], "datatype": "FP32",
                     "parameters": { "binary_data_size": 48 } }],
        "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true } }],
    }))
    .unwrap();
    let mut body = header.clone();
    body.extend(ROWS.concat().iter().flat_map(|v| v.to_le_bytes()));
    let len = header.len().to_string();
    let r = http(
        a,
        "POST",
        "/v2/models/iris/infer",
        &[("Inference-Header-Content-Length", &len)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let hlen: usize = r.headers["inference-header-content-length"]
        .parse()
        .unwrap();
    let doc: Value = serde_json::from_slice(&r.body[..hlen]).unwrap();
    assert_eq!(doc["outputs"][0]["parameters"]["binary_data_size"], 36);
    let bin: Vec<f32> = r.body[hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(bin, direct.probabilities.concat());

    // Unknown model, unknown version, unknown route: 404 with an error body.
    for path in ["/v2/models/nope", "/v2/models/iris/versions/9.9.9", "/v3"] {
        let r = get(a, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string(), "{path}");
    }
    assert_eq!(infer(a, "nope", &iris_request()).status, 404);

    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert!(
        metrics.contains(
            "tensorlet_requests_total{model=\"iris\",version=\"1.0.0\",status=\"200\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "tensorlet_request_duration_seconds_count{model=\"iris\",version=\"1.0.0\"} 3"
        )
    );
    assert!(metrics.contains("tensorlet_instances_created_total"));
    assert!(metrics.contains("tensorlet_model_drift_score{model=\"iris\",version=\"1.0.0\"}"));

    run.shutdown();
    run.done.recv_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn caller_mistakes_get_4xx_with_a_sentence_never_5xx() {
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let s = iris_server(
        &rt,
        &m,
        ServeConfig {
            max_body_bytes: 2048,
            max_batch: 8,
            ..ServeConfig::default()
        },
    );
    let mut run = Running::start(s);
    let a = run.addr;
    let post = |body: &[u8]| http(a, "POST", "/v2/models/iris/infer", &[], body);
    let input = |name: &str, shape: Value, dtype: &str, data: Value| {
        serde_json::to_vec(&json!({
            "inputs": [{ "name": name, "shape": shape, "datatype": dtype, "data": data }]
        }))
        .unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"inputs\": [".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "wrong shape",
            input("input", json!([1, 3]), "FP32", json!([1, 2, 3])),
            400,
            "4 features per row",
        ),
        (
            "wrong count",
            input("input", json!([1, 4]), "FP32", json!([1, 2, 3])),
            400,
            "needs 4",
        ),
        (
            "unknown datatype",
            input("input", json!([1, 4]), "FLOAT32", json!([1, 2, 3, 4])),
            400,
            "unknown datatype",
        ),
        (
            "unsupported datatype",
            input("input", json!([1, 4]), "BYTES", json!([1, 2, 3, 4])),
            400,
            "not supported",
        ),
        (
            "unknown input",
            input("x", json!([1, 4]), "FP32", json!([1, 2, 3, 4])),
            400,
            "unknown input `x`",
        ),
        (
            "too large a batch",
            input("input", json!([9, 4]), "FP32", json!(vec![1.0; 36])),
            400,
            "at most 8",
        ),
        (
            "not numbers",
            input("input", json!([1, 4]), "FP32", json!(["a", 2, 3, 4])),
            400,
            "only numbers",
        ),
        (
            "ragged rows whose count adds up",
            input(
                "input",
                json!([2, 4]),
                "FP32",
                json!([[5.1, 3.5, 1.4, 0.2, 6.7], [3.0, 5.2, 2.3]]),
            ),
            400,
            "input `input` row 0 has 5 values; shape [2, 4] needs 4 in every row",
        ),
        (
            // `\u0064ata` is `data` written with an escape: the one-pass
            // scan leaves such a request to the JSON value parse.
            "ragged rows, read through a JSON value",
            br#"{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","\u0064ata":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2],[2.3]]}]}"#.to_vec(),
            400,
            "input `input` row 1 has 3 values; shape [2, 4] needs 4 in every row",
        ),
        (
            "numbers beside rows",
            input("input", json!([2, 4]), "FP32", json!([[1, 2, 3, 4], 5, 6, 7, 8])),
            400,
            "input `input` data mixes numbers and rows",
        ),
        (
            "body too large",
            vec![b' '; 4096],
            413,
            "over this server's limit",
        ),
    ];
    for (what, body, status, needle) in cases {
        let r = post(&body);
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{what}: {msg}");
    }
    // A NaN can only arrive in binary data.
    let header = br#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let mut body = header.to_vec();
    for v in [1.0f32, f32::NAN, 3.0, 4.0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let len = header.len().to_string();
    let r = http(
        a,
        "POST",
        "/v2/models/iris/infer",
        &[("Inference-Header-Content-Length", &len)],
        &body,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not a finite number")
    );
    run.shutdown();
}

/// A copy of the misbehave model whose predictor runs with `config`.
fn misbehaving(m: &Models, name: &str, config: Value) -> PathBuf {
    misbehaving_with(m, name, config, |_| {})
}

/// [`misbehaving`], with its `model.json` changed by `edit` too.
fn misbehaving_with(
    m: &Models,
    name: &str,
    config: Value,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let dir = m.misbehave.with_file_name(name);
    copy_dir(&m.misbehave, &dir);
    let path = dir.join("model.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    meta["plugins"]["predictor"]["config"] = config;
    edit(&mut meta);
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    dir
}

/// Deploys the model in `dir` on `s` as `name`, version 1.
fn deploy_dir(s: &Server, rt: &Runtime, name: &str, dir: &Path) {
    s.deploy(Deployment::new(name, "1", name, load_model(rt, dir)))
        .unwrap();
}

/// Deploys as `name` the `misbehave` model misbehaving in `mode` on inputs
/// above 1000 (healthy otherwise, so it warms up).
fn deploy_hostile(s: &Server, rt: &Runtime, m: &Models, name: &str, mode: &str) {
    let dir = misbehaving(m, name, json!({ "mode": mode, "only_above": 1000.0 }));
    deploy_dir(s, rt, name, &dir);
}

/// A client sending iris requests until `stop`, each of which must
/// succeed; it returns how many it sent.
fn healthy_client(a: SocketAddr, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = infer(a, "iris", &iris_request());
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            n += 1;
        }
        n
    })
}

/// The value of an unlabelled metric on `/metrics`.
fn metric(a: SocketAddr, name: &str) -> f64 {
    let r = get(a, "/metrics");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

fn huge_request() -> Value {
    json!({ "inputs": [{ "name": "input", "shape": [1, 4], "datatype": "FP32",
                         "data": [1.0e6, 1.0, 1.0, 1.0] }] })
}

#[test]
fn a_misbehaving_model_fails_its_own_requests_while_others_keep_succeeding() {
    let rt = Runtime::new(tensorlet_runtime::RuntimeConfig {
        limits: tensorlet_runtime::Limits {
            // Long enough that filling the memory cap (page faults, on a CI
            // machine busy with the other clients) ends in the memory limit,
            // never in the deadline; short enough for the looping plugin.
            deadline: Duration::from_millis(1500),
            max_memory_bytes: 32 << 20,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default());
    // Each passes its warm-up (ordinary rows) and misbehaves on huge inputs.
    let bad = [
        ("bad-panic", "panic", "trapped"),
        ("bad-loop", "loop", "ran past its deadline"),
        ("bad-memory", "memory", "hit the memory limit"),
    ];
    for (name, mode, _) in bad {
        deploy_hostile(&s, &rt, &m, name, mode);
    }
    let mut run = Running::start(s);
    let a = run.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let ok_count = Arc::new(AtomicUsize::new(0));
    let good_clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok_count) = (stop.clone(), ok_count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = infer(a, "iris", &iris_request());
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    ok_count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let bad_clients: Vec<_> = bad
        .iter()
        .map(|&(name, _, needle)| {
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let r = infer(a, name, &huge_request());
                    assert_eq!(r.status, 500, "{name}");
                    let msg = r.json()["error"].as_str().unwrap().to_string();
                    assert!(msg.contains(needle), "{name}: {msg}");
                    assert!(msg.contains("plugin `misbehave`"), "{name}: {msg}");
                    // Ordinary requests to the same model still succeed.
                    assert_eq!(infer(a, name, &iris_request()).status, 200, "{name}");
                }
            })
        })
        .collect();
    for c in bad_clients {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for c in good_clients {
        c.join().unwrap();
    }
    assert!(
        ok_count.load(Ordering::Relaxed) >= 10,
        "{}",
        ok_count.load(Ordering::Relaxed)
    );
    assert_eq!(get(a, "/v2/health/ready").status, 200);
    run.shutdown();
    run.done.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// Predictions run inline on the async workers, on fibers that yield at
/// every epoch tick: with a single worker thread, a plugin looping until its
/// deadline must still leave that thread to everyone else's requests.
#[test]
fn a_looping_plugin_does_not_hold_the_only_worker() {
    let rt = Runtime::new(tensorlet_runtime::RuntimeConfig {
        limits: tensorlet_runtime::Limits {
            deadline: Duration::from_secs(4),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default());
    deploy_hostile(&s, &rt, &m, "bad-loop", "loop");
    let mut run = Running::with_workers(s, 1);
    let a = run.addr;

    let looped = Arc::new(AtomicBool::new(false));
    let bad: Vec<_> = (0..2)
        .map(|_| {
            let looped = looped.clone();
            std::thread::spawn(move || {
                let r = infer(a, "bad-loop", &huge_request());
                looped.store(true, Ordering::SeqCst);
                r
            })
        })
        .collect();
    // Wait until both looping requests are running (each holds an instance).
    let t0 = Instant::now();
    while metric(a, "tensorlet_requests_in_flight") < 2.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the looping requests never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..20 {
        let r = infer(a, "iris", &iris_request());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(get(a, "/v2/health/ready").status, 200);
    assert!(
        !looped.load(Ordering::SeqCst),
        "ordinary requests waited for the looping ones to hit their deadline"
    );
    for b in bad {
        let r = b.join().unwrap();
        assert_eq!(r.status, 500);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains("ran past its deadline"), "{msg}");
    }
    run.shutdown();
    run.done.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// Serving events as `kind model` lines, for assertions.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<String>>);

impl tensorlet_runtime::serve::ServeEvents for Recorded {
    fn shed(&self, name: &str, _version: &str, _reference: &str, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("shed {name}: {reason}"));
    }

    fn restored(&self, name: &str, _version: &str, _reference: &str) {
        self.0.lock().unwrap().push(format!("restored {name}"));
    }
}

/// A model whose requests keep running past their deadline, hammered at
/// full concurrency, is shed alone: the healthy model beside it never sees
/// a 503, the shed one answers 503 with the reason until a probe after the
/// cool-down succeeds.
#[test]
fn a_model_that_keeps_failing_is_shed_alone_and_probed_after_its_cool_down() {
    let rt = Runtime::new(tensorlet_runtime::RuntimeConfig {
        limits: tensorlet_runtime::Limits {
            deadline: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let m = models(&rt);
    let events = Arc::new(Recorded::default());
    let cool_down = Duration::from_secs(2);
    let s = Server::new(
        rt.device().clone(),
        ServeConfig {
            max_concurrency: 16,
            breaker: tensorlet_runtime::serve::breaker::BreakerConfig {
                failures: 3,
                cool_down,
            },
            ..ServeConfig::default()
        },
        events.clone(),
    );
    s.deploy(Deployment::new(
        "iris",
        "1.0.0",
        "good",
        load_model(&rt, &m.good),
    ))
    .unwrap();
    let dir = misbehaving_with(
        &m,
        "bad-loop",
        json!({ "mode": "loop", "only_above": 1000.0 }),
        |meta| meta["serve_deadline"] = json!("300ms"),
    );
    deploy_dir(&s, &rt, "bad-loop", &dir);
    let mut run = Running::start(s);
    let a = run.addr;

    // Its own deadline stops it, not the server's 30 s.
    let r = infer(a, "bad-loop", &huge_request());
    assert_eq!(r.status, 500);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("ran past its deadline of 300ms"), "{msg}");

    let stop = Arc::new(AtomicBool::new(false));
    // 16 clients, the whole server's capacity, on the looping model.
    let hammer: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(infer(a, "bad-loop", &huge_request()).status);
                }
                statuses
            })
        })
        .collect();
    let healthy = healthy_client(a, &stop);
    let t0 = Instant::now();
    let ready = |model: &str| get(a, &format!("/v2/models/{model}/ready")).json();
    while ready("bad-loop")["ready"] == true {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the looping model was never shed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Shed: refused at once with the reason, for that model only.
    let r = infer(a, "bad-loop", &iris_request());
    assert_eq!(r.status, 503);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("model `bad-loop` is shed for 2s after"),
        "{msg}"
    );
    assert!(msg.contains("ran past its deadline"), "{msg}");
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let reason = ready("bad-loop")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("is shed for 2s"), "{reason}");
    assert_eq!(ready("iris")["ready"], true);
    assert_eq!(get(a, "/v2/health/ready").status, 200);
    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert!(
        metrics.contains("tensorlet_model_shed{model=\"bad-loop\",version=\"1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tensorlet_model_shed{model=\"iris\",version=\"1.0.0\"} 0"));
    // The healthy model keeps answering while the hammering goes on.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let answered = healthy.join().unwrap();
    assert!(answered >= 10, "{answered}");
    for h in hammer {
        let statuses = h.join().unwrap();
        assert!(
            statuses.iter().all(|s| [500, 503].contains(s)),
            "{statuses:?}"
        );
    }

    // After the cool-down one request probes; an ordinary one succeeds and
    // the model serves again.
    std::thread::sleep(cool_down);
    let r = infer(a, "bad-loop", &iris_request());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(ready("bad-loop")["ready"], true);
    let events = events.0.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].starts_with("shed bad-loop: shed for 2s after"),
        "{events:?}"
    );
    assert_eq!(events[1], "restored bad-loop");
    run.shutdown();
    run.done.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// 64 concurrent requests to a model that hoards host tensors cannot take
/// the process past its budget (`--max-memory`): the hoarder is held to its
/// share and refused with 503 beyond it, the healthy model keeps succeeding,
/// and everything is given back after the burst.
#[test]
fn hoarding_requests_stay_within_the_memory_budget() {
    let budget = 256 << 20;
    let rt = Runtime::new(tensorlet_runtime::RuntimeConfig {
        limits: tensorlet_runtime::Limits {
            max_host_tensor_bytes: 64 << 20,
            max_total_host_tensor_bytes: budget,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default());
    deploy_hostile(&s, &rt, &m, "hoard", "host-memory");
    let mut run = Running::start(s);
    let a = run.addr;

    let held = |a| metric(a, "tensorlet_host_tensor_bytes");
    assert_eq!(
        metric(a, "tensorlet_host_tensor_budget_bytes"),
        budget as f64
    );
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = healthy_client(a, &stop);
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(held(a) as usize, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let burst: Vec<_> = (0..64)
        .map(|_| std::thread::spawn(move || infer(a, "hoard", &huge_request())))
        .collect();
    let replies: Vec<Reply> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(healthy.join().unwrap() >= 5);

    let mut over_budget = 0;
    for r in &replies {
        let msg = r.json()["error"].as_str().unwrap().to_string();
        match r.status {
            // Its own per-call cap.
            500 => assert!(
                msg.contains("held more than 64 MiB of host tensors"),
                "{msg}"
            ),
            // Its share of the budget, or its share of the concurrency.
            503 => {
                if msg.contains("not enough host tensor memory") {
                    assert!(
                        msg.contains("model `hoard`'s budget of host tensors past 128 MiB"),
                        "{msg}"
                    );
                    assert_eq!(r.headers["retry-after"], "1");
                    over_budget += 1;
                } else {
                    assert!(
                        msg.contains("at its share of the server's capacity"),
                        "{msg}"
                    );
                }
            }
            other => panic!("{other}: {msg}"),
        }
    }
    assert!(over_budget > 0, "no request was refused for memory");
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > 0 && peak <= budget, "{peak}");
    assert_eq!(held(a), 0.0, "everything is given back after the burst");
    run.shutdown();
    run.done.recv_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_version_that_fails_warm_up_leaves_the_old_one_serving() {
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default());
    let broken = misbehaving(&m, "broken", json!({ "mode": "panic" }));
    let e = s
        .deploy(Deployment::new(
            "iris",
            "2.0.0",
            "broken",
            load_model(&rt, &broken),
        ))
        .unwrap_err();
    assert!(e.contains("warm-up of broken failed"), "{e}");
    let mut run = Running::start(s);
    let ready = get(run.addr, "/v2/models/iris/ready").json();
    assert_eq!(ready["version"], "1.0.0");
    assert!(
        ready["deploy_error"]
            .as_str()
            .unwrap()
            .contains("panics as asked"),
        "{ready}"
    );
    let r = infer(run.addr, "iris", &iris_request());
    assert_eq!(r.json()["model_version"], "1.0.0");
    run.shutdown();
}

#[test]
fn hot_swap_under_load_drops_no_request() {
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default());
    let mut run = Running::start(s);
    let a = run.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut versions = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = infer(a, "iris", &iris_request());
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    versions.push(r.json()["model_version"].as_str().unwrap().to_string());
                }
                versions
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    run.server
        .deploy(Deployment::new(
            "iris",
            "2.0.0",
            "other",
            load_model(&rt, &m.other),
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    run.server
        .deploy(Deployment::new(
            "iris",
            "1.0.0",
            "good",
            load_model(&rt, &m.good),
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(seen.iter().any(|v| v == "2.0.0"), "the new version served");
    assert_eq!(seen.last().map(String::as_str), Some("1.0.0"));
    run.shutdown();
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight_and_overload_sheds() {
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let slow = misbehaving(&m, "slow", json!({ "mode": "slow" }));
    let s = server(
        &rt,
        ServeConfig {
            max_concurrency: 2,
            drain: Duration::from_millis(300),
            ..ServeConfig::default()
        },
    );
    s.deploy(Deployment::new("slow", "1", "slow", load_model(&rt, &slow)))
        .unwrap();
    let mut run = Running::start(s);
    let a = run.addr;

    // Overload: 6 concurrent slow requests against 2 slots.
    let burst: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || infer(a, "slow", &iris_request())))
        .collect();
    let replies: Vec<Reply> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let shed: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok + shed.len(), 6, "only 200s and 503s under overload");
    assert!(ok >= 2 && !shed.is_empty(), "{ok} ok, {} shed", shed.len());
    for r in &shed {
        assert_eq!(r.headers["retry-after"], "1");
        assert!(r.json()["error"].as_str().unwrap().contains("at capacity"));
    }
    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert!(metrics.contains(&format!("tensorlet_requests_shed_total {}", shed.len())));

    // Shutdown with a request in flight: it completes; readiness turns 503 first.
    let in_flight = std::thread::spawn(move || infer(a, "slow", &iris_request()));
    std::thread::sleep(Duration::from_millis(100));
    run.shutdown();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(get(a, "/v2/health/ready").status, 503);
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    run.done.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(TcpStream::connect(a).is_err(), "the listener is closed");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("components")).unwrap();
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        std::fs::copy(&entry, to.join(rel)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Loads model directories by path (the CLI's source loads registry artifacts).
struct Dirs(Arc<Runtime>);

impl ModelSource for Dirs {
    fn load(&self, name: &str, reference: &str) -> Result<Deployment, String> {
        let model = Model::load(&self.0, Path::new(reference), &unsigned_component)
            .map_err(|e| e.to_string())?;
        let version = format!("dir-{}", model.meta.metrics.len());
        Ok(Deployment::new(name, &version, reference, model))
    }
}

#[test]
fn the_admin_endpoint_deploys_refuses_and_undeploys() {
    let rt = Arc::new(Runtime::new(Default::default()).unwrap());
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default()).with_source(Arc::new(Dirs(rt.clone())));
    let mut run = Running::start(s);
    let (a, admin) = (run.addr, run.admin_addr);
    let deploy = |reference: &Path| {
        let body = json!({ "model": "iris", "reference": reference.display().to_string() });
        http(
            admin,
            "POST",
            "/admin/deploy",
            &[],
            &serde_json::to_vec(&body).unwrap(),
        )
    };

    // `other` was trained for 5 epochs: served as version "dir-5".
    let r = deploy(&m.other);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], "dir-5");
    assert_eq!(
        infer(a, "iris", &iris_request()).json()["model_version"],
        "dir-5"
    );

    // A reference that does not load is refused; the deployed version stays.
    let r = deploy(&m.other.with_file_name("missing"));
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("model.json"));
    let ready = get(a, "/v2/models/iris/ready").json();
    assert_eq!(ready["version"], "dir-5");
    assert!(
        ready["deploy_error"]
            .as_str()
            .unwrap()
            .contains("model.json"),
        "{ready}"
    );

    // The public port has no admin routes.
    assert_eq!(http(a, "POST", "/admin/deploy", &[], b"{}").status, 404);

    let r = http(admin, "DELETE", "/admin/models/iris", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(infer(a, "iris", &iris_request()).status, 404);
    assert_eq!(
        http(admin, "DELETE", "/admin/models/iris", &[], b"").status,
        404
    );
    run.shutdown();
}

#[test]
fn the_model_repository_extension_lists_loads_and_unloads() {
    let rt = Arc::new(Runtime::new(Default::default()).unwrap());
    let m = models(&rt);
    let s = iris_server(&rt, &m, ServeConfig::default()).with_source(Arc::new(Dirs(rt.clone())));
    let mut run = Running::start(s);
    let (a, admin) = (run.addr, run.admin_addr);
    let post = |path: &str, body: Value| {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        http(admin, "POST", path, &[], &bytes)
    };
    let index = |body: Value| {
        let r = post("/v2/repository/index", body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    };
    let with_reference =
        |p: &Path| json!({ "parameters": { "reference": p.display().to_string() } });

    assert_eq!(
        index(Value::Null),
        json!([{ "name": "iris", "version": "1.0.0", "state": "READY", "reason": "" }])
    );

    // Loaded from a reference (a model directory here; a registry reference
    // with the CLI's source), under a new name.
    let r = post(
        "/v2/repository/models/iris-5/load",
        with_reference(&m.other),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({ "name": "iris-5", "version": "dir-5", "state": "READY" })
    );
    assert_eq!(infer(a, "iris-5", &iris_request()).status, 200);

    // Unloaded: no longer served, listed as unavailable, not among the ready.
    let r = post("/v2/repository/models/iris-5/unload", json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(infer(a, "iris-5", &iris_request()).status, 404);
    assert_eq!(
        index(json!({})),
        json!([
            { "name": "iris", "version": "1.0.0", "state": "READY", "reason": "" },
            { "name": "iris-5", "state": "UNAVAILABLE", "reason": "unloaded" },
        ])
    );
    assert_eq!(
        index(json!({ "ready": true })),
        json!([{ "name": "iris", "version": "1.0.0", "state": "READY", "reason": "" }])
    );

    // Loaded again by name alone: from the reference it last came from.
    let r = post("/v2/repository/models/iris-5/load", Value::Null);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        infer(a, "iris-5", &iris_request()).json()["model_version"],
        "dir-5"
    );

    // A name the server never saw needs its reference.
    let r = post("/v2/repository/models/nope/load", json!({}));
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("\"parameters\": {\"reference\""),
        "{}",
        r.json()
    );
    // A reference that does not load: refused, and listed with the reason.
    let missing = m.other.with_file_name("missing");
    let r = post(
        "/v2/repository/models/broken/load",
        with_reference(&missing),
    );
    assert_eq!(r.status, 422);
    let listed = index(Value::Null);
    let broken = &listed.as_array().unwrap()[0];
    assert_eq!(
        (&broken["name"], &broken["state"]),
        (&json!("broken"), &json!("UNAVAILABLE"))
    );
    assert!(
        broken["reason"].as_str().unwrap().contains("model.json"),
        "{broken}"
    );

    // Malformed requests say what is wrong.
    for (path, body, says) in [
        ("/v2/repository/index", json!([1]), "JSON object"),
        (
            "/v2/repository/index",
            json!({ "ready": "yes" }),
            "`ready` must be true or false",
        ),
        (
            "/v2/repository/models/iris/load",
            json!({ "parameters": { "reference": 3 } }),
            "must be a string",
        ),
    ] {
        let r = post(path, body);
        assert_eq!(r.status, 400);
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{}",
            r.json()
        );
    }
    assert_eq!(
        post("/v2/repository/models/nope/unload", json!({})).status,
        404
    );
    // Only the admin address has the extension.
    assert_eq!(
        http(a, "POST", "/v2/repository/index", &[], b"{}").status,
        404
    );
    run.shutdown();
}

/// The iris request over gRPC: typed contents, or the same rows as raw bytes.
fn grpc_iris(raw: bool) -> grpc::ModelInferRequest {
    let rows: Vec<f32> = ROWS.concat();
    let mut input = grpc::model_infer_request::InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![3, 4],
        ..Default::default()
    };
    let mut raw_input_contents = Vec::new();
    if raw {
        raw_input_contents.push(rows.iter().flat_map(|v| v.to_le_bytes()).collect());
    } else {
        input.contents = Some(grpc::InferTensorContents {
            fp32_contents: rows,
            ..Default::default()
        });
    }
    grpc::ModelInferRequest {
        model_name: "iris".into(),
        id: "req-1".into(),
        inputs: vec![input],
        raw_input_contents,
        ..Default::default()
    }
}

#[test]
fn grpc_answers_what_http_answers() {
    use grpc::grpc_inference_service_client::GrpcInferenceServiceClient as Client;
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let mut run = Running::start(iris_server(&rt, &m, ServeConfig::default()));
    let (a, g) = (run.addr, run.grpc_addr);
    let over_http = infer(a, "iris", &iris_request()).json();
    let labels: Vec<i64> = serde_json::from_value(over_http["outputs"][0]["data"].clone()).unwrap();
    let probabilities: Vec<f32> =
        serde_json::from_value(over_http["outputs"][1]["data"].clone()).unwrap();
    let http_error = |model: &str, body: &Value| {
        let r = infer(a, model, body);
        (r.status, r.json()["error"].as_str().unwrap().to_string())
    };
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client.block_on(async {
        let mut c = Client::connect(format!("http://{g}")).await.unwrap();
        assert!(
            c.server_live(grpc::ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        assert!(
            c.server_ready(grpc::ServerReadyRequest {})
                .await
                .unwrap()
                .into_inner()
                .ready
        );
        let meta = c
            .server_metadata(grpc::ServerMetadataRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(meta.name, "tensorlet");
        assert!(meta.extensions.contains(&"binary_tensor_data".to_string()));
        let model = grpc::ModelMetadataRequest {
            name: "iris".into(),
            version: String::new(),
        };
        let mm = c.model_metadata(model).await.unwrap().into_inner();
        assert_eq!(
            (mm.name.as_str(), mm.versions.as_slice()),
            ("iris", &["1.0.0".to_string()][..])
        );
        assert_eq!(
            (
                mm.inputs[0].name.as_str(),
                mm.inputs[0].datatype.as_str(),
                &mm.inputs[0].shape[..]
            ),
            ("input", "FP32", &[-1, 4][..])
        );
        let ready = grpc::ModelReadyRequest {
            name: "iris".into(),
            version: "1.0.0".into(),
        };
        assert!(c.model_ready(ready).await.unwrap().into_inner().ready);

        // Typed contents and raw contents give HTTP's answer, as raw outputs.
        for raw in [false, true] {
            let r = c.model_infer(grpc_iris(raw)).await.unwrap().into_inner();
            assert_eq!(
                (
                    r.model_name.as_str(),
                    r.model_version.as_str(),
                    r.id.as_str()
                ),
                ("iris", "1.0.0", "req-1")
            );
            let names: Vec<_> = r
                .outputs
                .iter()
                .map(|o| (o.name.as_str(), o.datatype.as_str(), o.shape.clone()))
                .collect();
            assert_eq!(
                names,
                [
                    ("label", "INT64", vec![3]),
                    ("probabilities", "FP32", vec![3, 3])
                ]
            );
            let got_labels: Vec<i64> = r.raw_output_contents[0]
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let got_p: Vec<f32> = r.raw_output_contents[1]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(
                (got_labels.as_slice(), got_p.as_slice()),
                (labels.as_slice(), probabilities.as_slice())
            );
        }

        // Refusals: HTTP's sentence, as the matching status.
        let mut unknown = grpc_iris(false);
        unknown.model_name = "nope".into();
        let e = c.model_infer(unknown).await.unwrap_err();
        assert_eq!(e.code(), grpc::Code::NotFound);
        assert_eq!(
            (404, e.message().to_string()),
            http_error("nope", &iris_request())
        );

        let mut wrong = grpc_iris(false);
        wrong.inputs[0].shape = vec![4, 4];
        let e = c.model_infer(wrong).await.unwrap_err();
        assert_eq!(e.code(), grpc::Code::InvalidArgument);
        let mut body = iris_request();
        body["inputs"][0]["shape"] = json!([4, 4]);
        assert_eq!((400, e.message().to_string()), http_error("iris", &body));

        let mut two = grpc_iris(true);
        two.raw_input_contents.push(vec![0; 4]);
        let e = c.model_infer(two).await.unwrap_err();
        assert_eq!(e.code(), grpc::Code::InvalidArgument);
        assert!(
            e.message()
                .contains("raw_input_contents has 2 entries for 1 inputs"),
            "{e}"
        );
    });
    // The requests are counted with HTTP's.
    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert!(
        metrics
            .contains(r#"tensorlet_requests_total{model="iris",version="1.0.0",status="200"} 3"#),
        "{metrics}"
    );
    run.shutdown();
}

#[test]
#[ignore = "needs tritonclient[grpc] and kserve from PyPI: bash tests/clients/install.sh"]
fn python_grpc_clients_get_http_s_answer() {
    let python = common::venv::python();
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    let mut run = Running::start(iris_server(&rt, &m, ServeConfig::default()));
    let over_http = infer(run.addr, "iris", &iris_request()).json();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oip_grpc.py");
    let call = |client: &str| -> Value {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args([client, &run.grpc_addr.to_string(), "iris"])
            .arg(serde_json::to_string(&ROWS).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{client}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let got = json!({ "triton": call("triton"), "kserve": call("kserve") });
    let labels = &over_http["outputs"][0]["data"];
    let probabilities: Vec<f32> =
        serde_json::from_value(over_http["outputs"][1]["data"].clone()).unwrap();
    for client in ["triton", "kserve"] {
        let g = &got[client];
        assert_eq!(
            (&g["live"], &g["ready"], &g["model_ready"]),
            (&json!(true), &json!(true), &json!(true)),
            "{client}: {g}"
        );
        assert_eq!(&g["label"], labels, "{client}");
        let p: Vec<f32> = g["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(p, probabilities, "{client}");
        assert_eq!(g["id"], format!("{client}-1"));
    }
    assert_eq!(got["triton"]["server"], "tensorlet");
    assert_eq!(got["triton"]["inputs"][0]["name"], "input");
    assert_eq!(got["triton"]["unknown_model"], "StatusCode.NOT_FOUND");
    run.shutdown();
}

/// Reads one HTTP/1.1 response (with a Content-Length) off a kept-alive
/// connection. Raw on purpose: the test that uses it pipelines requests on
/// one connection, which no HTTP client library does.
fn read_reply(r: &mut impl std::io::BufRead) -> Reply {
    let mut status = 0;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status == 0 {
            status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        } else if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

fn infer_bytes(id: &str, rows: usize) -> Vec<u8> {
    let data: Vec<[f32; 4]> = (0..rows).map(|i| ROWS[i % ROWS.len()]).collect();
    let body = serde_json::to_vec(&json!({
        "id": id,
        "inputs": [{ "name": "input", "shape": [rows, 4], "datatype": "FP32", "data": data }],
    }))
    .unwrap();
    let mut req = format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

#[test]
fn responses_arrive_whole_and_in_order_with_batched_writes_or_without() {
    let rt = Runtime::new(Default::default()).unwrap();
    let m = models(&rt);
    for batch_writes in [true, false] {
        let config = ServeConfig {
            batch_writes,
            ..ServeConfig::default()
        };
        let mut run = Running::start(iris_server(&rt, &m, config));
        let a = run.addr;

        // Pipelined on one kept-alive connection, read only after a pause: a
        // large response (1024 rows) between two small ones, in order, whole.
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut pipelined = infer_bytes("first", 1);
        pipelined.extend(infer_bytes("large", 1024));
        pipelined.extend(infer_bytes("last", 2));
        s.write_all(&pipelined).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut r = std::io::BufReader::new(s);
        for (id, rows) in [("first", 1), ("large", 1024), ("last", 2)] {
            let reply = read_reply(&mut r);
            assert_eq!(
                reply.status,
                200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            let v = reply.json();
            assert_eq!(v["id"], id, "batch_writes={batch_writes}");
            let labels = &v["outputs"][0];
            assert_eq!(labels["shape"], json!([rows]), "{labels}");
            assert_eq!(labels["data"].as_array().unwrap().len(), rows);
        }

        // Many kept-alive connections at once, each answered with its own id.
        let clients: Vec<_> = (0..16)
            .map(|c| {
                std::thread::spawn(move || {
                    let s = TcpStream::connect(a).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let mut r = std::io::BufReader::new(s);
                    for i in 0..25 {
                        let id = format!("c{c}-{i}");
                        w.write_all(&infer_bytes(&id, 1 + i % 3)).unwrap();
                        let reply = read_reply(&mut r);
                        assert_eq!(reply.status, 200);
                        assert_eq!(reply.json()["id"], id.as_str());
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        run.shutdown();
        run.done.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}

/// Trains a pipeline of `[preprocessor]` and `[model]` plugins (stems) on a
/// bundled table into `out`, reading `[data]` as `data` says.
fn train_table(rt: &Runtime, csv: &str, data: &str, pre: &str, model_plugin: &str, out: &Path) {
    let text = format!(
        "[pipeline]\nname = \"t\"\n[data]\n{data}\n[preprocessor]\npath = {:?}\n\
         [model]\npath = {:?}\nconfig = {{ hidden = [] }}\n\
         [training]\nepochs = 40\nbatch_size = 32\nlearning_rate = 0.05\noptimizer = \"adam\"\n",
        plugin_path(pre).display().to_string(),
        plugin_path(model_plugin).display().to_string(),
    );
    train_pipeline(rt, &text, &common::data(csv), out);
}

/// A request with one input per column, `columns[i]` holding `values[i]`.
fn per_column(columns: &[&str], datatype: &str, values: &[Vec<Value>]) -> Value {
    let inputs: Vec<Value> = columns
        .iter()
        .zip(values)
        .map(|(c, v)| json!({ "name": c, "shape": [v.len()], "datatype": datatype, "data": v }))
        .collect();
    json!({ "inputs": inputs })
}

#[test]
fn tables_are_served_by_column_with_class_names_and_regression_predictions() {
    let rt = Runtime::new(Default::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (diabetes, cancer) = (tmp.path().join("diabetes"), tmp.path().join("cancer"));
    train_table(
        &rt,
        "diabetes.csv",
        "label = \"progression\"\ntask = \"regression\"",
        "standardize",
        "mlp",
        &diabetes,
    );
    train_table(
        &rt,
        "breast_cancer.csv",
        "label = \"diagnosis\"",
        "standardize",
        "mlp",
        &cancer,
    );
    let s = server(&rt, ServeConfig::default());
    for (name, dir) in [("diabetes", &diabetes), ("cancer", &cancer)] {
        s.deploy(Deployment::new(name, "1.0.0", name, load_model(&rt, dir)))
            .unwrap();
    }
    let run = Running::start(s);
    let a = run.addr;

    // Regression: a `prediction` output, the same whichever way the rows come.
    let meta = get(a, "/v2/models/diabetes").json();
    assert_eq!(
        meta["outputs"],
        json!([{ "name": "prediction", "datatype": "FP32", "shape": [-1, 1] }])
    );
    let columns: Vec<String> = meta["inputs"][0]["parameters"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(columns[..3], ["age", "sex", "bmi"]);
    let rows: [[f32; 10]; 2] = [
        [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0],
        [48.0, 1.0, 21.6, 87.0, 183.0, 103.2, 70.0, 3.0, 3.8918, 69.0],
    ];
    let direct = load_model(&rt, &diabetes)
        .predict(rt.device(), rows.concat(), 2)
        .unwrap();
    let single = infer(
        a,
        "diabetes",
        &json!({ "inputs": [{ "name": "input", "shape": [2, 10], "datatype": "FP32", "data": rows }] }),
    );
    assert_eq!(
        single.status,
        200,
        "{}",
        String::from_utf8_lossy(&single.body)
    );
    let by_column: Vec<Vec<Value>> = (0..10)
        .map(|c| rows.iter().map(|r| json!(r[c])).collect())
        .collect();
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let split = infer(a, "diabetes", &per_column(&names, "FP64", &by_column));
    assert_eq!(
        split.status,
        200,
        "{}",
        String::from_utf8_lossy(&split.body)
    );
    for r in [&single, &split] {
        let out = &r.json()["outputs"][0];
        assert_eq!(out["name"], "prediction");
        assert_eq!(out["shape"], json!([2, 1]));
        let got: Vec<f32> = serde_json::from_value(out["data"].clone()).unwrap();
        assert_eq!(got, direct.values.concat());
    }
    // A missing value that the model's preprocessing does not fill in.
    let mut gap = by_column.clone();
    gap[2][1] = Value::Null;
    let r = infer(a, "diabetes", &per_column(&names, "FP64", &gap));
    assert_eq!(r.status, 400);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.starts_with("the request has a missing value (null), which this model's preprocessing does not fill in"), "{e}");
    let r = infer(
        a,
        "diabetes",
        &per_column(&names[..9], "FP64", &by_column[..9]),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("the request has no input for column `s6`"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // Text labels: a BYTES `class` output after the label and probabilities,
    // in binary as tritonclient asks for it.
    let meta = get(a, "/v2/models/cancer").json();
    assert_eq!(
        meta["outputs"][2],
        json!({ "name": "class", "datatype": "BYTES", "shape": [-1] })
    );
    let text = std::fs::read_to_string(common::data("breast_cancer.csv")).unwrap();
    let row: Vec<f32> = text
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .take(30)
        .map(|v| v.parse().unwrap())
        .collect();
    let want = load_model(&rt, &cancer)
        .predict(rt.device(), row.clone(), 1)
        .unwrap();
    let header = serde_json::to_vec(&json!({
        "inputs": [{ "name": "input", "shape": [1, 30], "datatype": "FP32",
                     "parameters": { "binary_data_size": 120 } }],
        "outputs": [{ "name": "class", "parameters": { "binary_data": true } }, { "name": "label" }],
    }))
    .unwrap();
    let mut body = header.clone();
    body.extend(row.iter().flat_map(|v| v.to_le_bytes()));
    let len = header.len().to_string();
    let r = http(
        a,
        "POST",
        "/v2/models/cancer/infer",
        &[("Inference-Header-Content-Length", &len)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let hlen: usize = r.headers["inference-header-content-length"]
        .parse()
        .unwrap();
    let doc: Value = serde_json::from_slice(&r.body[..hlen]).unwrap();
    assert_eq!(doc["outputs"][1]["data"], json!([want.labels[0]]));
    let class = ["benign", "malignant"][want.labels[0] as usize];
    let mut bytes = (class.len() as u32).to_le_bytes().to_vec();
    bytes.extend(class.as_bytes());
    assert_eq!(&r.body[hlen..], &bytes[..]);
    assert_eq!(
        doc["outputs"][0]["parameters"]["binary_data_size"],
        bytes.len()
    );
}

/// The bundled penguins pipeline trained on `data/penguins.csv`: the
/// directory that holds the model (under the returned temporary directory).
fn train_penguins(rt: &Runtime) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("penguins");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("plugins/pipelines/penguins.toml")).unwrap();
    train_pipeline(rt, &text, &root.join("data/penguins.csv"), &dir);
    (tmp, dir)
}

#[test]
fn a_mixed_table_is_served_with_text_categories_and_gaps() {
    // The penguins pipeline: a chain of imputers, a one-hot encoder and
    // standardize, each on its columns.
    let rt = Runtime::new(Default::default()).unwrap();
    let (_tmp, dir) = train_penguins(&rt);
    let s = server(&rt, ServeConfig::default());
    s.deploy(Deployment::new(
        "penguins",
        "1.0.0",
        "penguins",
        load_model(&rt, &dir),
    ))
    .unwrap();
    let run = Running::start(s);
    let a = run.addr;

    let meta = get(a, "/v2/models/penguins").json();
    let island = &meta["inputs"][0];
    assert_eq!(island["name"], "island");
    assert_eq!(island["datatype"], "BYTES");
    assert_eq!(
        island["parameters"]["categories"],
        json!(["Biscoe", "Dream", "Torgersen"])
    );

    // Text categories as tritonclient sends them (BYTES), a gap the imputer
    // fills (null) and an island the model never saw (all zeros after the
    // one-hot encoder; counted in /metrics).
    let number = |name: &str, v: [f32; 3]| json!({ "name": name, "shape": [3], "datatype": "FP32", "data": v });
    let request = json!({ "inputs": [
        { "name": "island", "shape": [3], "datatype": "BYTES", "data": ["Biscoe", "Torgersen", "Atlantis"] },
        number("bill_length_mm", [46.1, 39.1, 49.0]),
        number("bill_depth_mm", [13.2, 18.7, 19.5]),
        number("flipper_length_mm", [211.0, 181.0, 210.0]),
        number("body_mass_g", [4500.0, 3750.0, 3950.0]),
        { "name": "sex", "shape": [3], "datatype": "BYTES", "data": ["female", null, "male"] },
    ]});
    let r = infer(a, "penguins", &request);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    // The same as the model predicts from the encoded rows: categories as
    // their codes (-1 unknown), the gap as NaN.
    let x = vec![
        0.0,
        46.1,
        13.2,
        211.0,
        4500.0,
        0.0, //
        2.0,
        39.1,
        18.7,
        181.0,
        3750.0,
        f32::NAN, //
        -1.0,
        49.0,
        19.5,
        210.0,
        3950.0,
        1.0,
    ];
    let want = load_model(&rt, &dir).predict(rt.device(), x, 3).unwrap();
    assert_eq!(doc["outputs"][0]["data"], json!(want.labels));
    let probs: Vec<f32> = serde_json::from_value(doc["outputs"][1]["data"].clone()).unwrap();
    assert_eq!(probs, want.probabilities.concat());
    let names = ["Adelie", "Chinstrap", "Gentoo"];
    let classes: Vec<&str> = want.labels.iter().map(|&l| names[l as usize]).collect();
    assert_eq!(doc["outputs"][2]["data"], json!(classes));
    // A Gentoo's measurements from Biscoe, an Adelie's from Torgersen.
    assert_eq!(classes[..2], ["Gentoo", "Adelie"]);

    // A gap in a column whose preprocessing does not fill it (the one-hot
    // encoder of `island` needs a value): the caller's to fix, a 400.
    let mut gap = request.clone();
    gap["inputs"][0]["data"][1] = Value::Null;
    let r = infer(a, "penguins", &gap);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.starts_with("the request has a missing value (null)") && e.contains("one-hot"),
        "{e}"
    );

    let metrics = String::from_utf8(get(a, "/metrics").body).unwrap();
    // Both requests sent `Atlantis`.
    for (column, n) in [("island", 2), ("sex", 0)] {
        let line = format!(
            "tensorlet_unknown_categories_total{{model=\"penguins\",version=\"1.0.0\",column=\"{column}\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

/// Sends every body in `bodies` to `model` at once, one connection each.
fn infer_all_at_once(a: SocketAddr, model: &'static str, bodies: Vec<Value>) -> Vec<Reply> {
    let start = Arc::new(std::sync::Barrier::new(bodies.len()));
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                infer(a, model, &body)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_requests_are_batched_and_answered_each_as_alone() {
    let rt = Runtime::new(Default::default()).unwrap();
    let (_tmp, dir) = train_penguins(&rt);
    let m = models(&rt);
    // A long delay, so that requests sent together share a call.
    let s = server(
        &rt,
        ServeConfig {
            batch_delay: Some(Duration::from_millis(100)),
            ..ServeConfig::default()
        },
    );
    deploy_dir(&s, &rt, "penguins", &dir);
    deploy_hostile(&s, &rt, &m, "hostile", "panic");
    let run = Running::start(s);
    let a = run.addr;

    // Requests of 1 to 3 rows, each different; the fourth has a gap its
    // preprocessing cannot fill (the island's one-hot encoder needs one).
    let islands = ["Biscoe", "Dream", "Torgersen"];
    let request = |i: usize| {
        let rows = 1 + i % 3;
        let island: Vec<Value> = (0..rows)
            .map(|r| match (i, r) {
                (3, 0) => Value::Null,
                _ => json!(islands[(i + r) % 3]),
            })
            .collect();
        let number = |name: &str, base: f32, step: f32| {
            let v: Vec<f32> = (0..rows)
                .map(|r| base + step * (i * 3 + r) as f32)
                .collect();
            json!({ "name": name, "shape": [rows], "datatype": "FP32", "data": v })
        };
        let sex: Vec<&str> = (0..rows).map(|r| ["female", "male"][(i + r) % 2]).collect();
        json!({ "inputs": [
            { "name": "island", "shape": [rows], "datatype": "BYTES", "data": island },
            number("bill_length_mm", 36.0, 0.7),
            number("bill_depth_mm", 14.0, 0.2),
            number("flipper_length_mm", 180.0, 1.5),
            number("body_mass_g", 3300.0, 60.0),
            { "name": "sex", "shape": [rows], "datatype": "BYTES", "data": sex },
        ]})
    };
    let bodies: Vec<Value> = (0..10).map(request).collect();
    let replies = infer_all_at_once(a, "penguins", bodies.clone());
    let model = load_model(&rt, &dir);
    for (i, (body, r)) in bodies.iter().zip(&replies).enumerate() {
        if i == 3 {
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                e.starts_with("the request has a missing value (null)"),
                "{e}"
            );
            continue;
        }
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        // What the model predicts from this request's rows alone, to the bit.
        let inputs = body["inputs"].as_array().unwrap();
        let rows = inputs[0]["shape"][0].as_u64().unwrap() as usize;
        let mut x = Vec::new();
        for row in 0..rows {
            let code = |v: &Value| {
                let s = v.as_str().unwrap();
                islands.iter().position(|i| *i == s).unwrap() as f32
            };
            x.push(code(&inputs[0]["data"][row]));
            for c in &inputs[1..5] {
                x.push(c["data"][row].as_f64().unwrap() as f32);
            }
            x.push(f32::from(inputs[5]["data"][row] == "male"));
        }
        let want = model.predict(rt.device(), x, rows).unwrap();
        let doc = r.json();
        assert_eq!(doc["outputs"][0]["data"], json!(want.labels), "request {i}");
        let probs: Vec<f32> = serde_json::from_value(doc["outputs"][1]["data"].clone()).unwrap();
        assert_eq!(probs, want.probabilities.concat(), "request {i}");
    }
    let (batches, batched) = (
        metric(a, "tensorlet_batches_total"),
        metric(a, "tensorlet_batched_requests_total"),
    );
    assert_eq!(batched, 10.0, "every request went through a batch");
    assert!(batches < batched, "{batches} calls for {batched} requests");

    // A request that traps the plugin fails alone; its batch's others succeed.
    let mut bodies = vec![iris_request(); 6];
    bodies.insert(2, huge_request());
    let replies = infer_all_at_once(a, "hostile", bodies);
    for (i, r) in replies.iter().enumerate() {
        let want = if i == 2 { 500 } else { 200 };
        assert_eq!(r.status, want, "{i}: {}", String::from_utf8_lossy(&r.body));
    }
    assert!(
        replies[2].json()["error"]
            .as_str()
            .unwrap()
            .contains("trapped"),
        "{}",
        String::from_utf8_lossy(&replies[2].body)
    );
    assert!(metric(a, "tensorlet_batches_total") < metric(a, "tensorlet_batched_requests_total"));
}
