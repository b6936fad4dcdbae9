//! A predictor written against the standard wasi-nn guest bindings runs an
//! ONNX model (a blob handed to the plugin, not compiled into it) on the
//! host's pure-Rust backend, and matches reference outputs computed
//! independently with NumPy (tests/data/make_iris_onnx.py).

mod common;

use std::path::Path;

use common::*;
use tensorlet_runtime::{Plugin, Runtime, RuntimeConfig};

fn data_file(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn onnx_plugin(rt: &Runtime) -> Plugin {
    load(rt, "onnx_predict")
        .with_graphs(&[("model".to_string(), data_file("iris-logreg.onnx"))])
        .unwrap()
}

#[test]
fn onnx_predictions_match_the_reference() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let p = onnx_plugin(&rt);
    assert!(p.is_predictor());
    assert_eq!(p.graph_names(), ["model"]);
    let expected: serde_json::Value =
        serde_json::from_slice(&data_file("iris-logreg.expected.json")).unwrap();
    let inputs: Vec<Vec<f32>> = serde_json::from_value(expected["inputs"].clone()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(expected["probabilities"].clone()).unwrap();
    let labels: Vec<usize> = serde_json::from_value(expected["labels"].clone()).unwrap();
    let dev = rt.device();

    // The whole batch, then single rows (a new input shape for the backend).
    let x = tensor(dev, &[inputs.len() as u32, 4], inputs.concat());
    let probs = dev.to_vec(&p.predict("{}", &vec![], &x).unwrap()).unwrap();
    for (r, row) in probs.chunks(3).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            assert!(
                (f64::from(v) - want[r][c]).abs() < 1e-5,
                "row {r} class {c}: {v} vs {}",
                want[r][c]
            );
        }
        assert_eq!(tensorlet_runtime::train::argmax(row), labels[r]);
    }
    for (r, input) in inputs.iter().enumerate().take(3) {
        let one = tensor(dev, &[1, 4], input.clone());
        let got = dev
            .to_vec(&p.predict("{}", &vec![], &one).unwrap())
            .unwrap();
        assert_eq!(
            got,
            probs[r * 3..r * 3 + 3],
            "row {r} alone vs in the batch"
        );
    }
}

#[test]
fn wasi_nn_errors_are_clear() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let p = onnx_plugin(&rt);
    let x = tensor(rt.device(), &[1, 4], vec![5.1, 3.5, 1.4, 0.2]);
    let e = p
        .predict(r#"{"graph":"missing"}"#, &vec![], &x)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("onnx-predict: wasi-nn load-by-name failed"),
        "{e}"
    );
    let e = p
        .predict(r#"{"output":"logits"}"#, &vec![], &x)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the model has no output `logits`; it has: probabilities"),
        "{e}"
    );
    let wide = tensor(rt.device(), &[1, 5], vec![1.0; 5]);
    let e = p.predict("{}", &vec![], &wide).unwrap_err().to_string();
    assert!(e.contains("wasi-nn compute failed"), "{e}");

    let e = load(&rt, "onnx_predict")
        .with_graphs(&[("model".to_string(), b"not onnx".to_vec())])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(
            "plugin `onnx_predict` cannot be loaded: graph `model` is not a usable ONNX model"
        ),
        "{e}"
    );
}

/// POSTs JSON over a real socket; returns (status, body).
fn post(addr: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = common::http::request(
        "POST",
        addr,
        path,
        &[("content-type", "application/json")],
        &serde_json::to_vec(body).unwrap(),
    );
    (r.status, common::http::json(&r))
}

#[test]
fn an_onnx_model_in_a_signed_plugin_artifact_is_trained_on_published_and_served() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (_, public) = keygen(h, "alice");
    ok(&tensorlet(
        h,
        &["trust", "add", &public, "--namespace", "acme"],
    ));
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iris-logreg.onnx");
    let graph = format!("model={}", s(&onnx));
    let publish = |stem: &str, name: &str, kind: &str, extra: &[&str]| {
        publish_plugin_with(h, stem, name, kind, "alice", extra)
    };
    ok(&publish(
        "passthrough",
        "acme/passthrough",
        "preprocessor",
        &[],
    ));
    // The model is a blob of the predictor's signed artifact.
    let out = ok(&publish(
        "onnx_predict",
        "acme/iris-logreg",
        "predictor",
        &["--graph", &graph],
    ));
    assert!(out.contains("published acme/iris-logreg@1.0.0"), "{out}");
    let shown = ok(&tensorlet(h, &["show", "acme/iris-logreg@1.0.0", "--json"]));
    let m: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let onnx_digest = tensorlet_runtime::digest(&std::fs::read(&onnx).unwrap());
    assert_eq!(
        m["manifest"]["manifest"]["blobs"]["graph:model"],
        onnx_digest.as_str()
    );

    // Refusals: a plugin that cannot open models, a file that is not ONNX.
    let err = fails(&publish(
        "standardize",
        "acme/std",
        "preprocessor",
        &["--graph", &graph],
    ));
    assert!(err.contains("does not import wasi:nn"), "{err}");
    let csv = data("iris.csv");
    let not_onnx = format!("model={}", s(&csv));
    let err = fails(&publish(
        "onnx_predict",
        "acme/bad",
        "predictor",
        &["--graph", &not_onnx],
    ));
    assert!(
        err.contains("graph `model` is not a usable ONNX model"),
        "{err}"
    );
    let err = fails(&publish(
        "onnx_predict",
        "acme/bad",
        "predictor",
        &["--graph", "model"],
    ));
    assert!(err.contains("--graph takes NAME=FILE"), "{err}");

    // A pipeline without a trainer: the predictor brings its own weights.
    let p = h.join("iris-onnx.toml");
    std::fs::write(
        &p,
        "[pipeline]\nname = \"iris-onnx\"\nnamespace = \"acme\"\nversion = \"1.0.0\"\n\
         [data]\nlabel = \"species\"\n\
         [preprocessor]\nref = \"acme/passthrough@1.0.0\"\n\
         [predictor]\nref = \"acme/iris-logreg@1.0.0\"\n",
    )
    .unwrap();
    ok(&tensorlet(h, &["publish", s(&p), "--key", "alice"]));
    let out = ok(&tensorlet(
        h,
        &[
            "train",
            "acme/iris-onnx",
            "--data",
            s(&csv),
            "--key",
            "alice",
        ],
    ));
    assert!(
        out.contains("published acme/iris-onnx-model@0.1.0"),
        "{out}"
    );
    let acc: f64 = out
        .split("validation accuracy ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc >= 0.9, "{out}");
    let lineage = ok(&tensorlet(
        h,
        &["show", "acme/iris-onnx-model@0.1.0", "--lineage", "--json"],
    ));
    let l: serde_json::Value = serde_json::from_str(&lineage).unwrap();
    assert_eq!(
        l["plugins"]["predictor"]["reference"],
        "acme/iris-logreg@1.0.0"
    );
    assert!(l["plugins"]["trainer"].is_null(), "{l}");

    // predict and serve answer with the reference outputs.
    let expected: serde_json::Value =
        serde_json::from_slice(&data_file("iris-logreg.expected.json")).unwrap();
    let inputs: Vec<Vec<f32>> = serde_json::from_value(expected["inputs"].clone()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(expected["probabilities"].clone()).unwrap();
    let rows = h.join("rows.json");
    std::fs::write(&rows, serde_json::to_vec(&inputs).unwrap()).unwrap();
    let out = ok(&tensorlet(
        h,
        &[
            "predict",
            "acme/iris-onnx-model",
            "--input",
            s(&rows),
            "--json",
        ],
    ));
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    let close = |got: &[f64]| {
        for (r, w) in want.iter().enumerate() {
            for c in 0..3 {
                let g = got[r * 3 + c];
                assert!(
                    (g - w[c]).abs() < 1e-5,
                    "row {r} class {c}: {g} vs {}",
                    w[c]
                );
            }
        }
    };
    let flat: Vec<f64> = got
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    close(&flat);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args([
            "serve",
            "--model",
            "acme/iris-onnx-model@0.1.0",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--grpc-addr",
            "off",
        ])
        .env("TENSORLET_HOME", h)
        .env("TENSORLET_DEVICE", "cpu")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = served_addr(&mut child);
    let body = serde_json::json!({"inputs": [{
        "name": "input", "shape": [inputs.len(), 4], "datatype": "FP32", "data": inputs.concat(),
    }]});
    let (status, reply) = post(&addr, "/v2/models/iris-onnx-model/infer", &body);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{reply}");
    let outputs = reply["outputs"].as_array().unwrap();
    let probs = outputs
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap_or_else(|| panic!("no probabilities in {reply}"));
    let flat: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    close(&flat);
}
