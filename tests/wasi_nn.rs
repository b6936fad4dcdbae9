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
    let probs = dev.to_vec(&p.predict("{}", &vec![], &x).unwrap());
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
        let got = dev.to_vec(&p.predict("{}", &vec![], &one).unwrap());
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
