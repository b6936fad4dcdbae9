//! A predictor written against the standard wasi-nn guest bindings runs an
//! ONNX model (a blob handed to the plugin, not compiled into it) on the
//! host's pure-Rust backend, and matches reference outputs computed
//! independently with NumPy (tests/data/make_iris_onnx.py). The bundled
//! digits CNN, trained by tensorlet and exported as an ONNX graph with the
//! same weights, gives the same probabilities through that path as through
//! tensorlet's own `cnn` predictor.

mod common;

use std::path::Path;

use common::*;
use tensorlet_runtime::{NamedTensors, Plugin, Runtime, RuntimeConfig};

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

/// A trained model's tensor by name, as (shape, values) on the host.
fn named(dev: &tensorlet_runtime::gpu::Device, set: &NamedTensors, name: &str) -> Named {
    let t = set
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| {
            let names: Vec<&str> = set.iter().map(|(n, _)| n.as_str()).collect();
            panic!("no tensor `{name}`; the model has: {}", names.join(", "))
        });
    Named {
        name: name.to_string(),
        shape: t.shape().dims().iter().map(|&d| d as i64).collect(),
        values: dev.to_vec(t).unwrap(),
    }
}

/// A tensor that becomes an ONNX initializer.
struct Named {
    name: String,
    shape: Vec<i64>,
    values: Vec<f32>,
}

/// An exporter for the bundled `cnn` model (plugins/cnn), built with the
/// ONNX protobuf types of tract-onnx: raw pixel rows `input` [N, c·h·w] →
/// (x − mean) / std with the fitted `standardize` state → [N, c, h, w] →
/// per conv layer Conv 3×3 (pads 1) → Relu → MaxPool 2×2 → Flatten → per
/// dense layer MatMul → Add (→ Relu but the last) → Softmax →
/// `probabilities` [N, classes]. Opset 13.
mod cnn_onnx {
    use super::Named;
    use prost::Message;
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
    };

    fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        }
    }

    fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: values.to_vec(),
            ..Default::default()
        }
    }

    fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i: value,
            ..Default::default()
        }
    }

    fn floats(t: &Named) -> TensorProto {
        assert_eq!(
            t.shape.iter().product::<i64>() as usize,
            t.values.len(),
            "{}: shape {:?}",
            t.name,
            t.shape
        );
        TensorProto {
            name: t.name.clone(),
            dims: t.shape.clone(),
            data_type: DataType::Float as i32,
            float_data: t.values.clone(),
            ..Default::default()
        }
    }

    fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: Some(TensorShapeProto { dim: dims }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn dim(value: dimension::Value) -> Dimension {
        Dimension {
            value: Some(value),
            ..Default::default()
        }
    }

    /// The ONNX bytes. `conv` and `dense` hold each layer's (weight, bias)
    /// in order, `image` is `[channels, height, width]` of a row.
    pub fn export(
        mean: &Named,
        std: &Named,
        image: [i64; 3],
        conv: &[(Named, Named)],
        dense: &[(Named, Named)],
    ) -> Vec<u8> {
        let features = image.iter().product::<i64>();
        let classes = dense.last().expect("a dense layer").0.shape[1];
        let mut inits = vec![floats(mean), floats(std)];
        let image_shape = TensorProto {
            name: "image_shape".into(),
            dims: vec![4],
            data_type: DataType::Int64 as i32,
            int64_data: vec![-1, image[0], image[1], image[2]],
            ..Default::default()
        };
        inits.push(image_shape);
        let mut nodes = vec![
            node("Sub", &["input", &mean.name], "centred", vec![]),
            node("Div", &["centred", &std.name], "scaled", vec![]),
            node("Reshape", &["scaled", "image_shape"], "image", vec![]),
        ];
        let mut a = "image".to_string();
        for (i, (w, b)) in conv.iter().enumerate() {
            assert_eq!(w.shape[2..], [3, 3], "{}: a 3×3 kernel", w.name);
            inits.extend([floats(w), floats(b)]);
            let attrs = vec![
                ints("kernel_shape", &[3, 3]),
                ints("pads", &[1, 1, 1, 1]),
                ints("strides", &[1, 1]),
                ints("dilations", &[1, 1]),
                int("group", 1),
            ];
            let (c, r, p) = (
                format!("conv{i}"),
                format!("conv{i}.relu"),
                format!("conv{i}.pool"),
            );
            nodes.push(node("Conv", &[&a, &w.name, &b.name], &c, attrs));
            nodes.push(node("Relu", &[&c], &r, vec![]));
            let pool = vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];
            nodes.push(node("MaxPool", &[&r], &p, pool));
            a = p;
        }
        nodes.push(node("Flatten", &[&a], "flat", vec![int("axis", 1)]));
        a = "flat".into();
        for (j, (w, b)) in dense.iter().enumerate() {
            inits.extend([floats(w), floats(b)]);
            let (m, z) = (format!("fc{j}.matmul"), format!("fc{j}"));
            nodes.push(node("MatMul", &[&a, &w.name], &m, vec![]));
            nodes.push(node("Add", &[&m, &b.name], &z, vec![]));
            a = z;
            if j + 1 < dense.len() {
                let r = format!("fc{j}.relu");
                nodes.push(node("Relu", &[&a], &r, vec![]));
                a = r;
            }
        }
        nodes.push(node(
            "Softmax",
            &[&a],
            "probabilities",
            vec![int("axis", 1)],
        ));
        let batch = || dim(dimension::Value::DimParam("N".into()));
        let graph = GraphProto {
            name: "digits-cnn".into(),
            node: nodes,
            initializer: inits,
            input: vec![value_info(
                "input",
                vec![batch(), dim(dimension::Value::DimValue(features))],
            )],
            output: vec![value_info(
                "probabilities",
                vec![batch(), dim(dimension::Value::DimValue(classes))],
            )],
            ..Default::default()
        };
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "tensorlet tests/wasi_nn.rs".into(),
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// ONNX parity: the digits CNN trained by tensorlet, exported with the same
/// weights (and the fitted standardize state) as an ONNX graph, gives the
/// same class probabilities through the wasi-nn predictor (`onnx-predict`,
/// tract) as tensorlet's own `cnn` predictor, on every row of the data set.
#[test]
fn a_trained_cnn_exported_to_onnx_predicts_the_same_through_wasi_nn() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let dir = h.join("digits-cnn");
    let digits = common::data("digits.csv");
    let out = ok(&tensorlet(
        h,
        &[
            "train",
            s(&pipeline("digits-cnn")),
            "--data",
            s(&digits),
            "--out",
            s(&dir),
            "--device",
            "cpu",
            "--allow-unsigned",
        ],
    ));
    assert!(out.contains("trained digits-cnn"), "{out}");

    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dev = rt.device();
    let model = tensorlet_runtime::model::Model::load(&rt, &dir, &unsigned_component).unwrap();
    let plugins = &model.meta.plugins;
    assert_eq!(plugins.preprocessor.name, "standardize", "{plugins:?}");
    assert!(plugins.chain.is_empty(), "{plugins:?}");
    assert_eq!(plugins.predictor.name, "cnn", "{plugins:?}");

    // The exporter knows this architecture: conv and dense layers, no batch
    // norm (the optimizer's `opt.` moments are saved too; the forward pass
    // does not read them).
    let params = model.params();
    let names: Vec<&str> = params
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.starts_with("opt."))
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("conv") || n.starts_with("fc")),
        "params the exporter does not know: {names:?}"
    );
    let layers = |kind: &str| {
        (0..)
            .take_while(|i| names.contains(&format!("{kind}{i}.w").as_str()))
            .map(|i| {
                (
                    named(dev, &params, &format!("{kind}{i}.w")),
                    named(dev, &params, &format!("{kind}{i}.b")),
                )
            })
            .collect::<Vec<_>>()
    };
    let (conv, dense) = (layers("conv"), layers("fc"));
    assert_eq!(2 * (conv.len() + dense.len()), names.len(), "{names:?}");
    let image: [i64; 3] = serde_json::from_value(plugins.predictor.config["image"].clone())
        .unwrap_or_else(|e| panic!("{e}: {}", plugins.predictor.config));
    let state = model.state();
    let onnx = cnn_onnx::export(
        &named(dev, &state, "mean"),
        &named(dev, &state, "std"),
        image,
        &conv,
        &dense,
    );
    let graph = load(&rt, "onnx_predict")
        .with_graphs(&[("model".to_string(), onnx)])
        .unwrap();

    // Every row: raw pixels in, through both.
    let ds = tensorlet_runtime::data::load_labeled(&digits, Some(&model.meta.label)).unwrap();
    let (rows, features) = (ds.rows(), ds.features());
    assert_eq!(features as i64, image.iter().product::<i64>());
    let ours = model.predict(dev, ds.x.clone(), rows).unwrap();
    let x = tensor(dev, &[rows as u32, features as u32], ds.x.clone());
    let theirs = dev
        .to_vec(&graph.predict("{}", &vec![], &x).unwrap())
        .unwrap();
    let classes = model.meta.classes as usize;
    assert_eq!(theirs.len(), rows * classes);
    let mut worst = 0.0f32;
    for (r, (want, got)) in ours
        .probabilities
        .iter()
        .zip(theirs.chunks(classes))
        .enumerate()
    {
        for (c, (w, g)) in want.iter().zip(got).enumerate() {
            assert!(
                (w - g).abs() <= 1e-5,
                "row {r} class {c}: tensorlet {w}, ONNX through wasi-nn {g}"
            );
            worst = worst.max((w - g).abs());
        }
    }
    // Trained, not near-uniform: the comparison is of confident answers.
    let right = ours
        .labels
        .iter()
        .zip(&ds.y)
        .filter(|(l, y)| l == y)
        .count();
    assert!(
        right as f64 / rows as f64 > 0.95,
        "{right} of {rows} rows right"
    );
    eprintln!("{rows} rows, {classes} classes: largest difference {worst:e}");
}
