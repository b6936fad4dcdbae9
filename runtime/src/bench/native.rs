//! `tensorlet bench serve-native`: the serving benchmark's baseline, what the
//! sandbox costs. The same prediction as `tensorlet serve` makes — the same
//! weights and fitted state, the same host tensor kernels in the same order —
//! computed natively in Rust, with no Wasm, behind the same stack: axum, the
//! same OIP parser and response encoder, the same batched response writes.
//! It has none of the server's admission, isolation or metrics, so it is the
//! upper bound the sandboxed server is measured against.
//!
//! It knows the bundled models' plugins only: a `standardize` preprocessor
//! (`(x - mean) / std`) and a `softmax-regression` or `mlp` predictor (dense
//! layers, ReLU between them, softmax over the classes).

use std::sync::Arc;

use anyhow::{Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tensorlet_gpu::{BinaryOp, Device, Tensor, UnaryOp};
use tensorlet_oip as oip;

use crate::model::Model;
use crate::plugin::Task;

/// A bundled model's prediction, computed natively.
pub struct NativeModel {
    name: String,
    version: String,
    spec: oip::ModelSpec,
    features: usize,
    class_names: Option<Vec<String>>,
    mean: Tensor,
    std: Tensor,
    /// (weights, bias) per dense layer.
    layers: Vec<(Tensor, Tensor)>,
}

impl NativeModel {
    /// `model`'s tensors, served as `name`; an error for a model that is not
    /// a bundled `standardize` + `softmax-regression`/`mlp` classifier.
    pub fn new(name: &str, version: &str, model: &Model) -> Result<NativeModel> {
        let unknown = || {
            format!(
                "model `{name}`: the native baseline computes only the bundled standardize + \
                 softmax-regression or mlp classifiers (as the demo's iris and digits models)"
            )
        };
        if model.meta.task != Task::Classification {
            bail!("{}", unknown());
        }
        let state = model.state();
        let params = model.params();
        let find = |named: &[(String, Tensor)], key: &str| {
            named.iter().find(|(n, _)| n == key).map(|(_, t)| t.clone())
        };
        let (Some(mean), Some(std)) = (find(&state, "mean"), find(&state, "std")) else {
            bail!("{}", unknown());
        };
        if state.len() != 2 {
            bail!("{}", unknown());
        }
        let layers = match (find(&params, "w"), find(&params, "b")) {
            (Some(w), Some(b)) => vec![(w, b)],
            _ => (0..)
                .map_while(|i| {
                    Some((
                        find(&params, &format!("w{i}"))?,
                        find(&params, &format!("b{i}"))?,
                    ))
                })
                .collect(),
        };
        if layers.is_empty() {
            bail!("{}", unknown());
        }
        let meta = serde_json::to_value(&model.meta)?;
        Ok(NativeModel {
            name: name.to_string(),
            version: version.to_string(),
            spec: oip::ModelSpec::from_model_json(&meta),
            features: model.meta.feature_names.len(),
            class_names: model.meta.class_names.clone(),
            mean,
            std,
            layers,
        })
    }

    /// Labels and class probabilities of `rows` rows of `x`, with the host
    /// kernels the plugins call, in their order.
    pub fn predict(
        &self,
        device: &Device,
        x: Vec<f32>,
        rows: usize,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let x = device.from_vec(&[rows as u32, self.features as u32], x)?;
        let centred = device.binary(BinaryOp::Sub, &x, &self.mean)?;
        let mut a = device.binary(BinaryOp::Div, &centred, &self.std)?;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let z = device.binary(BinaryOp::Add, &device.matmul(&a, w)?, b)?;
            a = if i + 1 < self.layers.len() {
                device.unary(UnaryOp::Relu, &z)?
            } else {
                z
            };
        }
        let p = device.to_vec(&device.softmax(&a, 1, false)?)?;
        let classes = p.len() / rows;
        let probabilities: Vec<Vec<f32>> = p.chunks(classes).map(<[f32]>::to_vec).collect();
        let labels = probabilities
            .iter()
            .map(|r| {
                let mut best = 0;
                for (i, v) in r.iter().enumerate() {
                    if *v > r[best] {
                        best = i;
                    }
                }
                best as u32
            })
            .collect();
        Ok((labels, probabilities))
    }
}

struct Native {
    device: Device,
    models: Vec<NativeModel>,
}

/// The baseline's router: `GET /v2/health/ready` and
/// `POST /v2/models/{m}/infer` for each of `models`.
pub fn app(device: Device, models: Vec<NativeModel>) -> Router {
    Router::new()
        .route("/v2/health/ready", get(|| async { "{\"ready\":true}" }))
        .route("/v2/models/{model}/infer", post(infer))
        .with_state(Arc::new(Native { device, models }))
}

async fn infer(
    State(n): State<Arc<Native>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fail = |status: StatusCode, m: String| {
        (status, serde_json::json!({ "error": m }).to_string()).into_response()
    };
    let Some(m) = n.models.iter().find(|m| m.name == model) else {
        return fail(StatusCode::NOT_FOUND, format!("no model `{model}`"));
    };
    let header_len = headers
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok());
    let spec = oip::InputSpec {
        features: m.features,
        max_batch: 1024,
    };
    let mut req = match oip::split_body(&body, header_len)
        .and_then(|(json, bin)| oip::parse_request_for(json, bin, spec, &m.spec))
    {
        Ok(r) => r,
        Err(oip::BadRequest(e)) => return fail(StatusCode::BAD_REQUEST, e),
    };
    let x = std::mem::take(&mut req.x);
    let (labels, probabilities) = match m.predict(&n.device, x, req.rows) {
        Ok(p) => p,
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let prediction = oip::Prediction::Classes {
        labels: &labels,
        probabilities: &probabilities,
        names: m.class_names.as_deref(),
    };
    let enc = oip::encode_prediction(&m.name, &m.version, &req, prediction);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        enc.json,
    )
        .into_response()
}
