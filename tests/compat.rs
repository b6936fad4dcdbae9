//! Plugins built for the previous plugin ABI, `tensorlet:ml@0.1.0`, keep
//! working: `mlp_v01` is the hand-written MLP trainer and predictor built from
//! today's sources against `wit/v0.1.0` (the SDK's `abi-v0-1` feature). It
//! loads, trains, predicts and serves, from a pipeline file and as signed
//! registry artifacts, next to plugins built for 0.2.

mod common;

use common::*;
use serde_json::json;
use tensorlet_runtime::{Abi, DataSpec, Task};

#[test]
fn a_0_1_component_loads_as_what_it_exports() {
    let rt = tight_runtime();
    let legacy = load(&rt, "mlp_v01");
    assert_eq!(legacy.abi(), Abi::V0_1);
    assert!(legacy.is_trainer() && legacy.is_predictor());
    assert!(!legacy.is_model() && !legacy.is_preprocessor());
    let current = load(&rt, "mlp");
    assert_eq!(current.abi(), Abi::V0_2);
    assert!(current.is_model() && current.is_trainer() && current.is_predictor());
}

#[test]
fn a_0_1_trainer_steps_and_predicts_through_the_host() {
    let rt = tight_runtime();
    let p = load(&rt, "mlp_v01");
    let dev = rt.device();
    let spec = DataSpec {
        features: 4,
        outputs: 3,
        task: Task::Classification,
        seed: 3,
    };
    let config = r#"{"hidden":[8],"optimizer":"adam","learning_rate":0.05}"#;
    let mut params = p.init(config, spec).unwrap();
    // Adam's moments come back as optimizer state, as the 0.1 trainer keeps them.
    assert!(params.iter().any(|(n, _)| n == "opt.m.w0"), "{params:?}");
    let (x, y) = batch(dev, 24, 4, 3);
    let first = p.step(config, &params, &x, &y, 0).unwrap().loss;
    let mut last = first;
    for step in 0..40 {
        let out = p.step(config, &params, &x, &y, step).unwrap();
        assert!(
            out.grad_norm.is_none(),
            "the plugin computes its own gradients"
        );
        params = out.params;
        last = out.loss;
    }
    assert!(last < first * 0.8, "loss {first} -> {last}");
    let probs = dev
        .to_vec(&p.predict(config, &params, &x).unwrap())
        .unwrap();
    assert_eq!(probs.len(), 24 * 3);
    for row in probs.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
}

/// A pipeline mixing a 0.2 preprocessor (bundled `standardize`) with the 0.1
/// MLP trains from a file, predicts, and serves over OIP.
#[test]
fn a_0_1_pipeline_trains_predicts_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::copy(plugin_path("mlp_v01"), dir.join("mlp_v01.wasm")).unwrap();
    let pipeline = dir.join("digits-v01.toml");
    std::fs::write(
        &pipeline,
        "[pipeline]\nname = \"digits-v01\"\n[data]\nlabel = \"digit\"\n\
         [preprocessor]\nbundled = \"standardize\"\n\
         [trainer]\npath = \"mlp_v01.wasm\"\nconfig = { hidden = [32], optimizer = \"adam\" }\n\
         [predictor]\npath = \"mlp_v01.wasm\"\n\
         [training]\nepochs = 4\nbatch_size = 32\nlearning_rate = 0.005\n",
    )
    .unwrap();
    let home = dir.join("home");
    let model = dir.join("model");
    let out = ok(&tensorlet(
        &home,
        &[
            "train",
            s(&pipeline),
            "--data",
            s(&data("digits.csv")),
            "--out",
            s(&model),
            "--allow-unsigned",
            "--device",
            "cpu",
        ],
    ));
    let acc: f32 = out
        .lines()
        .find_map(|l| l.split("validation accuracy ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no val_acc in {out}"))
        .parse()
        .unwrap();
    assert!(acc >= 0.9, "validation accuracy {acc}: {out}");
    let predicted = ok(&tensorlet(
        &home,
        &[
            "predict",
            s(&model),
            "--input",
            s(&data("digits.csv")),
            "--allow-unsigned",
        ],
    ));
    let labels: Vec<&str> = predicted.lines().collect();
    assert_eq!(labels.len(), 1797, "{predicted}");
}

/// Published as signed artifacts, the 0.1 plugin is pinned by a published
/// pipeline, trained from the registry into a model version, and served.
#[test]
fn published_0_1_artifacts_train_and_serve_from_the_registry() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (_, public) = keygen(h, "alice");
    ok(&tensorlet(
        h,
        &["trust", "add", &public, "--namespace", "acme"],
    ));
    ok(&publish_plugin(
        h,
        "standardize",
        "acme/standardize",
        "preprocessor",
        "alice",
    ));
    ok(&publish_plugin(
        h,
        "mlp_v01",
        "acme/mlp-v01",
        "trainer",
        "alice",
    ));
    let p = h.join("digits.toml");
    std::fs::write(
        &p,
        "[pipeline]\nname = \"digits\"\nnamespace = \"acme\"\nversion = \"1.0.0\"\n\
         [data]\nlabel = \"digit\"\n\
         [preprocessor]\nref = \"acme/standardize@1.0.0\"\n\
         [trainer]\nref = \"acme/mlp-v01@1.0.0\"\nconfig = { hidden = [32] }\n\
         [predictor]\nref = \"acme/mlp-v01@1.0.0\"\n\
         [training]\nepochs = 3\nbatch_size = 32\nlearning_rate = 0.005\n",
    )
    .unwrap();
    ok(&tensorlet(h, &["publish", s(&p), "--key", "alice"]));
    let out = ok(&tensorlet(
        h,
        &[
            "train",
            "acme/digits",
            "--data",
            s(&data("digits.csv")),
            "--key",
            "alice",
        ],
    ));
    assert!(out.contains("acme/digits-model@0.1.0"), "{out}");
    ok(&tensorlet(
        h,
        &["alias", "set", "acme/digits-model", "production", "0.1.0"],
    ));

    let server = Server::start(h, &["acme/digits-model@production"]);
    let zeros = vec![0.0; 64];
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v2/models/digits-model/infer",
        Some(
            &json!({"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32",
                                  "data": [zeros.clone(), zeros]}]}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    let labels = outputs.iter().find(|o| o["name"] == "label").unwrap();
    assert_eq!(labels["shape"], json!([2]), "{body}");
}
