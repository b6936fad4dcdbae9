//! `tensorlet export <model> --wasi-http`: the exported component, served by
//! hosts other than `tensorlet serve`, answers like `tensorlet serve`.
//!
//! The demo trains and publishes the iris model; it is exported (signed), then
//! served by tensorlet's own wasmtime + wasmtime-wasi-http host
//! (`tensorlet serve-wasi-http`) and by `jco serve` (Node.js, from npm: a host
//! this project did not write), next to `tensorlet serve`. Labels must be
//! identical and probabilities within 1e-5; the error cases must answer with
//! the same status and `{"error": ...}` as `tensorlet serve`.
//!
//! A model whose preprocessing is a chain (the penguins pipeline: typed
//! columns, text categories and gaps) is exported and compared the same way.
//!
//! The jco tests need node and `plugins/js/node_modules` (`bash
//! plugins/build-polyglot.sh` installs them), so they are ignored by default
//! (`cargo test … -- --ignored` runs it) and fails, saying what to install,
//! when run without them. See `docs/testing.md`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::{fails, keygen, ok, publish_plugin, s, tensorlet};
use serde_json::{Value, json};
use tensorlet_runtime::export;

/// A home with the demo's signed iris model and its export.
struct Fixture {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    export: PathBuf,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    ok(&tensorlet(
        &home,
        &[
            "demo",
            "--device",
            "cpu",
            "--out",
            s(&home),
            "--only",
            "iris,digits",
        ],
    ));
    let export = home.join("iris.wasm");
    let out = ok(&tensorlet(
        &home,
        &[
            "export",
            "tensorlet/iris-model@0.1.0",
            "--wasi-http",
            "-o",
            s(&export),
            "--key",
            "demo",
        ],
    ));
    assert!(out.contains("signed by key"), "{out}");
    Fixture {
        _tmp: tmp,
        home,
        export,
    }
});

/// A home with the bundled penguins pipeline (imputer and one-hot encoder on
/// the island and sex, imputer and standardize on the measurements, each
/// `[[preprocessor]]` on its `columns`) trained on `data/penguins.csv`,
/// published as `acme/penguins-model@0.1.0`, and its signed export.
static PENGUINS: LazyLock<Fixture> = LazyLock::new(|| {
    published(
        "penguins",
        &[
            ("imputer", "imputer", "preprocessor"),
            ("one_hot", "one-hot", "preprocessor"),
            ("standardize", "standardize", "preprocessor"),
            ("mlp", "mlp", "trainer"),
        ],
    )
});

/// A home with the bundled diabetes pipeline (standardize, a linear model
/// trained on the mean squared error: a regression) trained on
/// `data/diabetes.csv`, published as `acme/diabetes-model@0.1.0`, and its
/// signed export.
static DIABETES: LazyLock<Fixture> = LazyLock::new(|| {
    published(
        "diabetes",
        &[
            ("standardize", "standardize", "preprocessor"),
            ("mlp", "mlp", "trainer"),
        ],
    )
});

/// A home where the bundled pipeline `name`, its `plugins` (build stem,
/// bundled name, kind) published as `acme/<name>@1.0.0`, is trained on
/// `data/<name>.csv`, published as `acme/<name>-model@0.1.0` and exported
/// (signed) to `<home>/<name>.wasm`.
fn published(name: &str, plugins: &[(&str, &str, &str)]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let (_, public) = keygen(&home, "alice");
    ok(&tensorlet(
        &home,
        &["trust", "add", &public, "--namespace", "acme"],
    ));
    let mut text = std::fs::read_to_string(common::pipeline(name))
        .unwrap()
        .replace(
            &format!("name = \"{name}\""),
            &format!("name = \"{name}\"\nnamespace = \"acme\"\nversion = \"1.0.0\""),
        );
    for (stem, plugin, kind) in plugins {
        ok(&publish_plugin(
            &home,
            stem,
            &format!("acme/{plugin}"),
            kind,
            "alice",
        ));
        text = text.replace(
            &format!("bundled = \"{plugin}\""),
            &format!("ref = \"acme/{plugin}@1.0.0\""),
        );
    }
    let pipeline = home.join(format!("{name}.toml"));
    std::fs::write(&pipeline, text).unwrap();
    ok(&tensorlet(
        &home,
        &["publish", s(&pipeline), "--key", "alice"],
    ));
    // `digits-cnn` trains on digits.csv.
    let csv = common::data(&format!("{}.csv", name.split('-').next().unwrap()));
    let trained = ok(&tensorlet(
        &home,
        &[
            "train",
            &format!("acme/{name}"),
            "--data",
            s(&csv),
            "--key",
            "alice",
        ],
    ));
    let model = format!("acme/{name}-model@0.1.0");
    assert!(trained.contains(&model), "{trained}");
    let export = home.join(format!("{name}.wasm"));
    ok(&tensorlet(
        &home,
        &[
            "export",
            &model,
            "--wasi-http",
            "-o",
            s(&export),
            "--key",
            "alice",
        ],
    ));
    Fixture {
        _tmp: tmp,
        home,
        export,
    }
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    /// Stops the server's whole process group (`jco serve` runs the
    /// component in a child `node` process).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits until `addr` answers `/v2/health/live`.
fn start(mut cmd: Command, addr: String) -> Server {
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let server = Server { child, addr };
    let started = Instant::now();
    loop {
        let live = common::http::try_request("GET", &server.addr, "/v2/health/live", &[], b"");
        if live.is_ok_and(|r| r.status == 200) {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{cmd:?} did not answer on {} within 120 s",
            server.addr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `tensorlet serve` of `model`.
fn tensorlet_serve(home: &Path, model: &str) -> Server {
    let addr = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorlet"));
    cmd.args([
        "serve",
        "--addr",
        &addr,
        "--admin-addr",
        "off",
        "--grpc-addr",
        "off",
        "--model",
        model,
        "--device",
        "cpu",
    ])
    .env("TENSORLET_HOME", home);
    start(cmd, addr)
}

fn serve_wasi_http(home: &Path, component: &Path) -> Server {
    let addr = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorlet"));
    cmd.args(["serve-wasi-http", s(component), "--addr", &addr])
        .env("TENSORLET_HOME", home);
    start(cmd, addr)
}

fn request(
    method: &str,
    addr: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let r = common::http::request(method, addr, path, headers, body);
    (r.status, r.body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = request("GET", addr, path, b"", &[]);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post(addr: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (status, body) = request("POST", addr, path, body, &[]);
    (status, json_of(&body))
}

/// 150 iris rows, in batches of 30, as OIP requests.
fn iris_batches() -> Vec<Vec<u8>> {
    let csv = std::fs::read_to_string(common::data("iris.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(4).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 150);
    rows.chunks(30)
        .map(|chunk| {
            serde_json::to_vec(&json!({
                "id": "batch",
                "inputs": [{ "name": "input", "shape": [chunk.len(), 4], "datatype": "FP64",
                             "data": chunk }],
            }))
            .unwrap()
        })
        .collect()
}

/// (labels, probabilities) of every batch.
fn predictions(addr: &str) -> Vec<(Vec<u64>, Vec<f64>)> {
    iris_batches()
        .iter()
        .map(|b| {
            let (status, out) = post(addr, "/v2/models/iris-model/infer", b);
            assert_eq!(status, 200, "{out}");
            assert_eq!(out["id"], "batch");
            assert_eq!(out["model_name"], "iris-model");
            assert_eq!(out["model_version"], "0.1.0");
            let labels = out["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let probs = out["outputs"][1]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (labels, probs)
        })
        .collect()
}

/// The requests that must fail, and how.
fn error_cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let req = |v: Value| serde_json::to_vec(&v).unwrap();
    vec![
        (
            "bad JSON",
            "/v2/models/iris-model/infer",
            b"{\"inputs\": [".to_vec(),
        ),
        (
            "wrong shape",
            "/v2/models/iris-model/infer",
            req(
                json!({ "inputs": [{ "name": "input", "shape": [1, 3], "datatype": "FP32",
                                     "data": [1, 2, 3] }] }),
            ),
        ),
        (
            "too few values",
            "/v2/models/iris-model/infer",
            req(
                json!({ "inputs": [{ "name": "input", "shape": [2, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4] }] }),
            ),
        ),
        (
            "unknown model",
            "/v2/models/no-such-model/infer",
            req(
                json!({ "inputs": [{ "name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4] }] }),
            ),
        ),
        (
            "unknown version",
            "/v2/models/iris-model/versions/9.9.9/infer",
            req(
                json!({ "inputs": [{ "name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4] }] }),
            ),
        ),
    ]
}

/// Checks `export` against `reference` (tensorlet serve): predictions,
/// health and metadata endpoints, error cases and the binary extension.
fn assert_answers_like(export: &str, reference: &str) {
    let (want, got) = (predictions(reference), predictions(export));
    for ((wl, wp), (gl, gp)) in want.iter().zip(&got) {
        assert_eq!(gl, wl, "labels differ from tensorlet serve's");
        assert_eq!(gp.len(), wp.len());
        for (g, w) in gp.iter().zip(wp) {
            assert!(
                (g - w).abs() <= 1e-5,
                "probability {g} vs tensorlet serve's {w}"
            );
        }
    }
    // Not vacuous: the model separates the three classes.
    let labels: Vec<u64> = got.iter().flat_map(|(l, _)| l.clone()).collect();
    for class in 0..3 {
        assert!(labels.iter().filter(|&&l| l == class).count() > 40);
    }

    assert_eq!(
        get(export, "/v2/health/live"),
        (200, json!({ "live": true }))
    );
    assert_eq!(
        get(export, "/v2/health/ready"),
        (200, json!({ "ready": true }))
    );
    assert_eq!(
        get(export, "/v2/models/iris-model"),
        get(reference, "/v2/models/iris-model")
    );
    let (status, ready) = get(export, "/v2/models/iris-model/ready");
    assert_eq!((status, &ready["ready"]), (200, &json!(true)));

    for (what, path, body) in error_cases() {
        let (ws, wb) = post(reference, path, &body);
        let (gs, gb) = post(export, path, &body);
        assert!(ws >= 400, "{what}: tensorlet serve answered {ws}");
        assert_eq!(
            gs, ws,
            "{what}: status {gs} vs tensorlet serve's {ws}: {gb}"
        );
        assert_eq!(gb, wb, "{what}: body differs from tensorlet serve's");
    }
    let (status, body) = get(export, "/no/such/endpoint");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no such endpoint"));

    // Triton's binary tensor extension: FP32 rows in, binary probabilities out.
    let header = br#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}"#;
    let mut body = header.to_vec();
    for v in [6.7f32, 3.0, 5.2, 2.3] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let len = header.len().to_string();
    let extra = [("Inference-Header-Content-Length", len.as_str())];
    let (ws, wb) = request(
        "POST",
        reference,
        "/v2/models/iris-model/infer",
        &body,
        &extra,
    );
    let (gs, gb) = request("POST", export, "/v2/models/iris-model/infer", &body, &extra);
    assert_eq!((gs, ws), (200, 200));
    assert_eq!(gb.len(), wb.len());
    let tail = |b: &[u8]| -> Vec<f32> {
        b[b.len() - 12..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    for (g, w) in tail(&gb).iter().zip(tail(&wb)) {
        assert!((g - w).abs() <= 1e-5, "binary probability {g} vs {w}");
    }
}

#[test]
fn the_export_is_one_signed_component_that_names_its_model() {
    let f = &*FIXTURE;
    let bytes = std::fs::read(&f.export).unwrap();
    let info = export::inspect(&bytes).unwrap();
    assert_eq!(info.meta.model, "tensorlet/iris-model@0.1.0");
    assert_eq!(info.meta.served_name, "iris-model");
    // The lineage is the model's signed manifest digest, as the registry has it.
    let show = ok(&tensorlet(
        &f.home,
        &["verify", "tensorlet/iris-model@0.1.0"],
    ));
    assert!(
        show.contains(&info.meta.manifest_digest),
        "{show} does not name {}",
        info.meta.manifest_digest
    );
    let demo_key = ok(&tensorlet(&f.home, &["key", "export", "demo"]));
    let signer = info.signed_by.expect("signed with --key demo");
    assert!(demo_key.contains(&signer.to_string()), "{demo_key}");

    // One flipped byte anywhere before the signature is detected.
    let mut tampered = bytes.clone();
    let at = bytes.len() / 2;
    tampered[at] ^= 1;
    let err = export::inspect(&tampered).unwrap_err().to_string();
    assert!(
        err.contains("does not verify") || err.contains("section"),
        "{err}"
    );
    // Unsigned export: metadata only.
    let unsigned = f.home.join("unsigned.wasm");
    ok(&tensorlet(
        &f.home,
        &[
            "export",
            "tensorlet/iris-model",
            "--wasi-http",
            "-o",
            s(&unsigned),
        ],
    ));
    let u = export::inspect(&std::fs::read(&unsigned).unwrap()).unwrap();
    assert_eq!(u.signed_by, None);
    assert_eq!(u.meta.manifest_digest, info.meta.manifest_digest);
    let err = fails(&tensorlet(
        &f.home,
        &["serve-wasi-http", s(&unsigned), "--require-signed"],
    ));
    assert!(err.contains("not signed"), "{err}");
    // A signed export is refused by a node whose trust policy does not
    // list the signer.
    let stranger = tempfile::tempdir().unwrap();
    let err = fails(&tensorlet(
        stranger.path(),
        &["serve-wasi-http", s(&f.export), "--require-signed"],
    ));
    assert!(
        err.contains("which this node's trust policy does not list"),
        "{err}"
    );
}

#[test]
fn export_refuses_what_is_not_a_model() {
    let f = &*FIXTURE;
    let out = f.home.join("x.wasm");
    let err = fails(&tensorlet(
        &f.home,
        &[
            "export",
            "tensorlet/standardize@0.1.0",
            "--wasi-http",
            "-o",
            s(&out),
        ],
    ));
    assert!(err.contains("not a model"), "{err}");
    let err = fails(&tensorlet(
        &f.home,
        &["export", "tensorlet/iris-model", "-o", s(&out)],
    ));
    assert!(err.contains("--wasi-http"), "{err}");
    assert!(!out.exists());
}

#[test]
fn export_refuses_a_chain_longer_than_it_composes() {
    let f = &*FIXTURE;
    // Nine preprocessors: one more than an export composes.
    let mut text = String::from("[pipeline]\nname = \"long-chain\"\n[data]\nlabel = \"species\"\n");
    for i in 0..9 {
        let column = ["sepal_length", "sepal_width", "petal_length"][i % 3];
        text.push_str(&format!(
            "[[preprocessor]]\nref = \"tensorlet/standardize@0.1.0\"\ncolumns = [\"{column}\"]\n"
        ));
    }
    text.push_str("[model]\nref = \"tensorlet/softmax-regression@0.1.0\"\n");
    let pipeline = f.home.join("long-chain.toml");
    std::fs::write(&pipeline, text).unwrap();
    ok(&tensorlet(
        &f.home,
        &[
            "train",
            s(&pipeline),
            "--data",
            s(&common::data("iris.csv")),
            "--epochs",
            "1",
            "--key",
            "demo",
            "--model",
            "tensorlet/long-chain-model",
        ],
    ));
    let out = f.home.join("long-chain.wasm");
    let err = fails(&tensorlet(
        &f.home,
        &[
            "export",
            "tensorlet/long-chain-model",
            "--wasi-http",
            "-o",
            s(&out),
        ],
    ));
    assert!(
        err.contains("a chain of 9 preprocessors (`tensorlet/standardize@0.1.0 → ")
            && err.contains("composes at most 8")
            && err.contains("tensorlet serve"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn export_writes_a_spin_manifest_that_runs_the_component() {
    let f = &*FIXTURE;
    let app = f.home.join("spin-app");
    std::fs::create_dir_all(&app).unwrap();
    let component = app.join("iris.wasm");
    let manifest = app.join("spin.toml");
    // `export --wasi-http -o <component> --spin-toml <manifest>`.
    let export_with_manifest = |manifest: &Path| {
        ok(&tensorlet(
            &f.home,
            &[
                "export",
                "tensorlet/iris-model@0.1.0",
                "--wasi-http",
                "-o",
                s(&component),
                "--spin-toml",
                s(manifest),
            ],
        ))
    };
    let out = export_with_manifest(&manifest);
    assert!(out.contains("Spin application `iris-model`"), "{out}");
    let toml: toml::Table = std::fs::read_to_string(&manifest)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", manifest.display()));
    assert_eq!(toml["spin_manifest_version"].as_integer(), Some(2));
    assert_eq!(toml["application"]["name"].as_str(), Some("iris-model"));
    assert_eq!(toml["application"]["version"].as_str(), Some("0.1.0"));
    let triggers = toml["trigger"]["http"].as_array().unwrap();
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0]["route"].as_str(), Some("/..."));
    assert_eq!(triggers[0]["component"].as_str(), Some("iris-model"));
    let components = toml["component"].as_table().unwrap();
    assert_eq!(components.keys().collect::<Vec<_>>(), ["iris-model"]);
    let c = &components["iris-model"];
    // Relative to the manifest, so the directory can be pushed or moved whole.
    assert_eq!(c["source"].as_str(), Some("iris.wasm"));
    assert_eq!(
        c["allowed_outbound_hosts"].as_array().map(Vec::len),
        Some(0)
    );
    // The component it names is the export, with the one handler Spin's HTTP
    // trigger needs.
    let bytes = std::fs::read(app.join(c["source"].as_str().unwrap())).unwrap();
    assert_eq!(
        export::inspect(&bytes).unwrap().meta.model,
        "tensorlet/iris-model@0.1.0"
    );
    let handlers = export::spin::spin_handlers(&bytes).unwrap();
    assert!(
        matches!(&handlers[..], [h] if h.starts_with("wasi:http/incoming-handler@0.2.")),
        "{handlers:?}"
    );

    // A manifest outside the component's directory names it by absolute path.
    let elsewhere = f.home.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    export_with_manifest(&elsewhere.join("spin.toml"));
    let toml: toml::Table = std::fs::read_to_string(elsewhere.join("spin.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let source = toml["component"]["iris-model"]["source"].as_str().unwrap();
    assert_eq!(Path::new(source), component.canonicalize().unwrap());
}

#[test]
fn wasmtime_wasi_http_serves_the_export_like_tensorlet_serve() {
    let f = &*FIXTURE;
    let reference = tensorlet_serve(&f.home, "tensorlet/iris-model@0.1.0");
    let exported = serve_wasi_http(&f.home, &f.export);
    assert_answers_like(&exported.addr, &reference.addr);
}

#[test]
fn the_spin_sdk_front_answers_like_tensorlet_serve() {
    let f = &*FIXTURE;
    let app = f.home.join("spin-sdk-app");
    std::fs::create_dir_all(&app).unwrap();
    let component = app.join("iris.wasm");
    let manifest = app.join("spin.toml");
    ok(&tensorlet(
        &f.home,
        &[
            "export",
            "tensorlet/iris-model@0.1.0",
            "--wasi-http",
            "--front",
            "spin",
            "-o",
            s(&component),
            "--spin-toml",
            s(&manifest),
        ],
    ));
    // A Spin component of WASI 0.3: the one handler `spin-sdk`'s
    // `#[http_service]` exports, named in a manifest like the default's.
    let bytes = std::fs::read(&component).unwrap();
    let handlers = export::spin::spin_handlers(&bytes).unwrap();
    assert!(
        matches!(&handlers[..], [h] if h.starts_with("wasi:http/handler@0.3.")),
        "{handlers:?}"
    );
    let toml: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
    assert_eq!(
        toml["component"]["iris-model"]["source"].as_str(),
        Some("iris.wasm")
    );
    let reference = tensorlet_serve(&f.home, "tensorlet/iris-model@0.1.0");
    let exported = serve_wasi_http(&f.home, &component);
    assert_answers_like(&exported.addr, &reference.addr);
}

/// Whether `got` is `want` up to 1e-5 in each number.
fn close(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            (g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-5
        }
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| close(g, w))
        }
        (Value::Object(g), Value::Object(w)) => {
            g.len() == w.len() && g.iter().all(|(k, g)| w.get(k).is_some_and(|w| close(g, w)))
        }
        _ => got == want,
    }
}

/// The penguins table as requests with one input per column, as
/// tritonclient sends a table: the island and sex as BYTES, the
/// measurements as FP32, `NA` as null; 50 rows each. Also the species.
fn penguin_batches() -> (Vec<Value>, Vec<String>) {
    let csv = std::fs::read_to_string(common::data("penguins.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 344);
    let cell = |v: &str, text: bool| match (v, text) {
        ("NA", _) => Value::Null,
        (v, true) => json!(v),
        (v, false) => json!(v.parse::<f32>().unwrap()),
    };
    let batches = rows
        .chunks(50)
        .map(|chunk| {
            let inputs: Vec<Value> = [
                ("island", 1, "BYTES"),
                ("bill_length_mm", 2, "FP32"),
                ("bill_depth_mm", 3, "FP32"),
                ("flipper_length_mm", 4, "FP32"),
                ("body_mass_g", 5, "FP32"),
                ("sex", 6, "BYTES"),
            ]
            .into_iter()
            .map(|(name, at, datatype)| {
                let data: Vec<Value> = chunk
                    .iter()
                    .map(|r| cell(r[at], datatype == "BYTES"))
                    .collect();
                json!({ "name": name, "shape": [chunk.len()], "datatype": datatype, "data": data })
            })
            .collect();
            json!({ "id": "penguins", "inputs": inputs })
        })
        .collect();
    let species = rows.iter().map(|r| r[0].to_string()).collect();
    (batches, species)
}

/// Checks that `export` answers the penguins chain model like `reference`
/// (tensorlet serve): metadata, every row of the table (gaps included),
/// text categories the model never saw, and the requests it refuses.
fn assert_penguins_answer_like(export: &str, reference: &str) {
    const INFER: &str = "/v2/models/penguins-model/infer";
    assert_eq!(
        get(export, "/v2/models/penguins-model"),
        get(reference, "/v2/models/penguins-model")
    );
    let (batches, species) = penguin_batches();
    let mut classes = Vec::new();
    for body in &batches {
        let body = serde_json::to_vec(body).unwrap();
        let (ws, want) = post(reference, INFER, &body);
        let (gs, got) = post(export, INFER, &body);
        assert_eq!((gs, ws), (200, 200), "{got}\n{want}");
        assert!(close(&got, &want), "{got}\nvs tensorlet serve's\n{want}");
        assert_eq!(got["outputs"][2]["name"], "class");
        classes.extend(
            got["outputs"][2]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string()),
        );
    }
    // Not vacuous: the chain's columns reach the model as in training.
    let right = classes.iter().zip(&species).filter(|(c, s)| c == s).count();
    assert!(right >= 320, "{right} of 344 rows classified right");

    // A gap in the sex (the imputer fills it), an island the model never saw
    // (all zeros after the one-hot encoder).
    let number = |name: &str, v: [f32; 3]| json!({ "name": name, "shape": [3], "datatype": "FP32", "data": v });
    let request = json!({ "inputs": [
        { "name": "island", "shape": [3], "datatype": "BYTES", "data": ["Biscoe", "Torgersen", "Atlantis"] },
        number("bill_length_mm", [46.1, 39.1, 49.0]),
        number("bill_depth_mm", [13.2, 18.7, 19.5]),
        number("flipper_length_mm", [211.0, 181.0, 210.0]),
        number("body_mass_g", [4500.0, 3750.0, 3950.0]),
        { "name": "sex", "shape": [3], "datatype": "BYTES", "data": ["female", null, "male"] },
    ]});
    let body = serde_json::to_vec(&request).unwrap();
    let (ws, want) = post(reference, INFER, &body);
    let (gs, got) = post(export, INFER, &body);
    assert_eq!((gs, ws), (200, 200), "{got}\n{want}");
    assert!(close(&got, &want), "{got}\nvs tensorlet serve's\n{want}");
    assert_eq!(
        got["outputs"][2]["data"].as_array().unwrap()[..2],
        [json!("Gentoo"), json!("Adelie")]
    );

    // Refused alike: a gap the preprocessing does not fill (the island's
    // one-hot encoder needs a value), text for a number, a missing column.
    let mut gap = request.clone();
    gap["inputs"][0]["data"][1] = Value::Null;
    let mut text = request.clone();
    text["inputs"][1] = json!({ "name": "bill_length_mm", "shape": [3], "datatype": "BYTES",
                                "data": ["long", "short", "long"] });
    let mut missing = request.clone();
    missing["inputs"].as_array_mut().unwrap().remove(5);
    for (what, body) in [("gap", gap), ("text", text), ("missing column", missing)] {
        let body = serde_json::to_vec(&body).unwrap();
        let (ws, want) = post(reference, INFER, &body);
        let (gs, got) = post(export, INFER, &body);
        assert_eq!(ws, 400, "{what}: tensorlet serve answered {want}");
        assert_eq!((gs, &got), (ws, &want), "{what}");
    }
}

#[test]
fn a_chain_of_preprocessors_is_exported_and_answers_like_tensorlet_serve() {
    let f = &*PENGUINS;
    let info = export::inspect(&std::fs::read(&f.export).unwrap()).unwrap();
    assert_eq!(info.meta.model, "acme/penguins-model@0.1.0");
    // Every stage of the chain is named by its digest.
    for section in [
        "preprocessor",
        "preprocessor.2",
        "preprocessor.3",
        "preprocessor.4",
    ] {
        assert!(
            info.meta.digests.contains_key(section),
            "{section}: {:?}",
            info.meta.digests
        );
    }
    assert_eq!(
        info.meta.digests["preprocessor"],
        info.meta.digests["preprocessor.3"]
    );
    let reference = tensorlet_serve(&f.home, "acme/penguins-model@0.1.0");
    let exported = serve_wasi_http(&f.home, &f.export);
    assert_penguins_answer_like(&exported.addr, &reference.addr);
}

#[test]
fn a_regression_model_is_exported_and_answers_predictions_like_tensorlet_serve() {
    let f = &*DIABETES;
    let reference = tensorlet_serve(&f.home, "acme/diabetes-model@0.1.0");
    let exported = serve_wasi_http(&f.home, &f.export);
    assert_diabetes_answer_like(&exported.addr, &reference.addr);
}

/// Checks the diabetes export at `export` against `reference` (tensorlet
/// serve): FP32 `prediction` outputs for 25 rows, sent as one `input` tensor
/// and as one input per column.
fn assert_diabetes_answer_like(export: &str, reference: &str) {
    let csv = std::fs::read_to_string(common::data("diabetes.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .take(25)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let features = header.len() - 1;
    // The single `input` tensor, and one input per column.
    let whole = json!({ "inputs": [{ "name": "input", "shape": [rows.len(), features],
        "datatype": "FP64", "data": rows.iter().map(|r| &r[..features]).collect::<Vec<_>>() }] });
    let by_column = json!({ "inputs": (0..features).map(|c| json!({ "name": header[c],
        "shape": [rows.len()], "datatype": "FP64",
        "data": rows.iter().map(|r| r[c]).collect::<Vec<_>>() })).collect::<Vec<_>>() });
    for body in [whole, by_column] {
        let body = serde_json::to_vec(&body).unwrap();
        let path = "/v2/models/diabetes-model/infer";
        let (ws, want) = post(reference, path, &body);
        let (gs, got) = post(export, path, &body);
        assert_eq!((ws, gs), (200, 200), "{want} {got}");
        assert_eq!(want["outputs"][0]["name"], "prediction", "{want}");
        assert_eq!(got["outputs"][0]["name"], "prediction", "{got}");
        assert_eq!(got["outputs"][0]["datatype"], "FP32", "{got}");
        assert_eq!(got["outputs"][0]["shape"], json!([rows.len(), 1]), "{got}");
        let values = |v: &Value| -> Vec<f64> {
            v["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (w, g) = (values(&want), values(&got));
        assert_eq!(w.len(), rows.len());
        for (a, b) in g.iter().zip(&w) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{a} vs {b}: {got} {want}"
            );
        }
        // A linear model of the diabetes progression: values of its scale.
        assert!(w.iter().all(|v| (-50.0..450.0).contains(v)), "{w:?}");
    }
}

/// A home with the bundled digits CNN (standardize, the `cnn` model: conv2d,
/// max-pool2d and the dense head) trained on `data/digits.csv`, published as
/// `acme/digits-cnn-model@0.1.0`, and its signed export.
static DIGITS_CNN: LazyLock<Fixture> = LazyLock::new(|| {
    published(
        "digits-cnn",
        &[
            ("standardize", "standardize", "preprocessor"),
            ("cnn", "cnn", "trainer"),
        ],
    )
});

/// The exported CNN runs its convolutions and pooling on the pure-Wasm
/// `tensor-cpu` provider and answers 40 digits as `tensorlet serve` does.
#[test]
fn an_exported_cnn_answers_like_tensorlet_serve() {
    let f = &*DIGITS_CNN;
    let reference = tensorlet_serve(&f.home, "acme/digits-cnn-model@0.1.0");
    let exported = serve_wasi_http(&f.home, &f.export);
    let csv = std::fs::read_to_string(common::data("digits.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .take(40)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let body = json!({ "inputs": [{ "name": "input", "shape": [rows.len(), 64],
        "datatype": "FP64", "data": rows.iter().map(|r| &r[..64]).collect::<Vec<_>>() }] });
    let body = serde_json::to_vec(&body).unwrap();
    let path = "/v2/models/digits-cnn-model/infer";
    let (ws, want) = post(&reference.addr, path, &body);
    let (gs, got) = post(&exported.addr, path, &body);
    assert_eq!((ws, gs), (200, 200), "{want} {got}");
    let numbers = |v: &Value, i: usize| -> Vec<f64> {
        v["outputs"][i]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let outputs = want["outputs"].as_array().unwrap();
    assert!(!outputs.is_empty(), "{want}");
    for (i, t) in outputs.iter().enumerate() {
        assert_eq!(got["outputs"][i]["name"], t["name"], "{got}");
        assert_eq!(got["outputs"][i]["shape"], t["shape"], "{got}");
        let (w, g) = (numbers(&want, i), numbers(&got, i));
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= 1e-5, "{}: {a} vs {b}", t["name"]);
        }
    }
    // Not vacuous: the labels are the digits' own for nearly every row.
    let labels = outputs
        .iter()
        .position(|t| t["name"] == "label")
        .map(|i| numbers(&want, i))
        .expect("a label output");
    let right = labels
        .iter()
        .zip(&rows)
        .filter(|(l, r)| **l == r[64])
        .count();
    assert!(right >= 38, "{right}/40 digits right");
}

/// `jco` from `plugins/js/node_modules`, or why it cannot run.
fn jco() -> Result<PathBuf, String> {
    let jco = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/js/node_modules/.bin/jco");
    if Command::new("node").arg("--version").output().is_err() {
        return Err(
            "node is not installed; `bash plugins/build-polyglot.sh` installs it (see \
             docs/testing.md)"
                .into(),
        );
    }
    if !jco.exists() {
        return Err(format!(
            "{} is missing; run `bash plugins/build-polyglot.sh` (npm installs jco; see \
             docs/testing.md)",
            jco.display()
        ));
    }
    Ok(jco)
}

/// `jco serve` of `component`, transpiled into `jco_dir`.
fn jco_serve(component: &Path, jco_dir: &Path) -> Server {
    let jco = jco().unwrap_or_else(|why| panic!("{why}"));
    let port = free_addr().rsplit(':').next().unwrap().to_string();
    let mut cmd = Command::new(jco);
    cmd.args(["serve", "--port", &port, "--host", "127.0.0.1"])
        .arg("--jco-dir")
        .arg(jco_dir)
        .arg(component);
    start(cmd, format!("127.0.0.1:{port}"))
}

#[test]
#[ignore = "needs node and jco: bash plugins/build-polyglot.sh"]
fn jco_serve_serves_the_export_like_tensorlet_serve() {
    let f = &*FIXTURE;
    let reference = tensorlet_serve(&f.home, "tensorlet/iris-model@0.1.0");
    let exported = jco_serve(&f.export, &f.home.join("jco-out"));
    assert_answers_like(&exported.addr, &reference.addr);
}

#[test]
#[ignore = "needs node and jco: bash plugins/build-polyglot.sh"]
fn jco_serve_serves_an_exported_chain_like_tensorlet_serve() {
    let f = &*PENGUINS;
    let reference = tensorlet_serve(&f.home, "acme/penguins-model@0.1.0");
    let exported = jco_serve(&f.export, &f.home.join("jco-out"));
    assert_penguins_answer_like(&exported.addr, &reference.addr);
}

#[test]
#[ignore = "needs node and jco: bash plugins/build-polyglot.sh"]
fn jco_serve_serves_an_exported_regression_like_tensorlet_serve() {
    let f = &*DIABETES;
    let reference = tensorlet_serve(&f.home, "acme/diabetes-model@0.1.0");
    let exported = jco_serve(&f.export, &f.home.join("jco-out"));
    assert_diabetes_answer_like(&exported.addr, &reference.addr);
}
