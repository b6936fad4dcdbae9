//! Predictor: runs a standard ONNX model through `wasi:nn` (world
//! `tensorlet:ml/nn-predictor`).
//!
//! The model is not compiled into the plugin: it is a blob of the plugin's
//! signed artifact (`tensorlet publish … --graph model=file.onnx`), pinned by
//! digest, that the host offers by name; this plugin opens it with
//! `wasi:nn/graph.load-by-name`. Config (all optional):
//! - `graph`: the graph's name, default `"model"`;
//! - `input`: the model's input tensor, default `"input"` (FP32 `[batch, features]`);
//! - `output`: the output tensor, default `"probabilities"` (`[batch, classes]`);
//! - `softmax`: apply softmax to the output (for models that end in logits), default false.
//!
//! Params are not used: the weights are in the model.

use serde::Deserialize;
use tensorlet_sdk::{Config, Error, Params, Predictor, Result, Tensor, ensure};

/// `[predictor.config]`: an unknown key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    graph: String,
    input: String,
    output: String,
    softmax: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            graph: "model".into(),
            input: "input".into(),
            output: "probabilities".into(),
            softmax: false,
        }
    }
}

/// The standard wasi-nn guest bindings.
mod nn {
    wit_bindgen::generate!({
        path: "../../wit/deps/wasi-nn",
        world: "wasi:nn/ml",
    });
}

use nn::wasi::nn::{errors, graph, tensor as nn_tensor};

struct OnnxPredict;

fn nn_error(what: &str, e: errors::Error) -> Error {
    Error::msg(format!(
        "onnx-predict: wasi-nn {what} failed ({:?}): {}",
        e.code(),
        e.data()
    ))
}

impl Predictor for OnnxPredict {
    fn predict(config: &Config, _params: &Params, x: Tensor) -> Result<Tensor> {
        let Settings {
            graph: name,
            input,
            output,
            softmax,
        } = config.decode()?;
        let shape = x.shape();
        ensure!(
            shape.len() == 2,
            "onnx-predict: expected x of shape [batch, features], got {shape:?}"
        );

        let bytes: Vec<u8> = x.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect();
        let graph = graph::load_by_name(&name).map_err(|e| nn_error("load-by-name", e))?;
        let ctx = graph
            .init_execution_context()
            .map_err(|e| nn_error("init-execution-context", e))?;
        let t = nn_tensor::Tensor::new(&shape, nn_tensor::TensorType::Fp32, &bytes);
        let outputs = ctx
            .compute(vec![(input, t)])
            .map_err(|e| nn_error("compute", e))?;
        let names: Vec<String> = outputs.iter().map(|(n, _)| n.clone()).collect();
        let Some((_, out)) = outputs.into_iter().find(|(n, _)| *n == output) else {
            return Err(Error::msg(format!(
                "onnx-predict: the model has no output `{output}`; it has: {}",
                names.join(", ")
            )));
        };
        ensure!(
            out.ty() == nn_tensor::TensorType::Fp32,
            "onnx-predict: output `{output}` is {:?}, expected FP32",
            out.ty()
        );
        let values: Vec<f32> = out
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let probs = Tensor::from_list(&out.dimensions(), &values)?;
        if softmax { probs.softmax(1) } else { Ok(probs) }
    }
}

tensorlet_sdk::export_predictor!(OnnxPredict);
