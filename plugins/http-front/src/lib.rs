//! The HTTP front of a model exported with `tensorlet export --wasi-http`.
//!
//! A standard `wasi:http/incoming-handler` that answers the same Open Inference
//! Protocol endpoints as `tensorlet serve` for one model. It holds no model of
//! its own: `tensorlet export` composes it with the model's preprocessor and
//! predictor, a pure-Wasm `tensorlet:ml/tensor` and a generated component that
//! holds the model's `model.json`, params and fitted state (`model-data`).
//! Request parsing and response encoding are `tensorlet serve`'s own code
//! (the `tensorlet-oip` crate), so both answer alike.

use std::cell::OnceCell;
use std::io::{Read, Write};
use std::rc::Rc;

use serde_json::{Value, json};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

use tensorlet_oip as oip;

wit_bindgen::generate!({
    path: ["../../wit", "../../wit/export"],
    world: "tensorlet:exported/front@0.1.0",
    generate_all,
});

use tensorlet::exported::model_data;
use tensorlet::ml::tensor::{NamedTensor, Tensor};

/// Largest request body accepted (as `tensorlet serve`'s default).
const MAX_BODY_BYTES: usize = 4 << 20;
/// Largest batch accepted (as `tensorlet serve`'s default).
const MAX_BATCH: usize = 1024;

/// A named tensor's data: (name, shape, row-major values).
type TensorData = (String, Vec<u32>, Vec<f32>);

/// The embedded model, decoded once per instance.
struct Model {
    name: String,
    version: String,
    reference: String,
    features: Vec<String>,
    classes: usize,
    /// Its inputs and outputs in the protocol (columns, task, class names).
    spec: oip::ModelSpec,
    preprocessor_config: String,
    predictor_config: String,
    /// Fitted preprocessor state and trained params as (name, shape, data),
    /// sorted by name as the host loads them.
    state: Vec<TensorData>,
    params: Vec<TensorData>,
}

fn decode_tensors(what: &str, bytes: &[u8]) -> Result<Vec<TensorData>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("the embedded {what} is not valid safetensors: {e}"))?;
    let mut names = st.names();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let view = st.tensor(name).map_err(|e| e.to_string())?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "tensor `{name}` of the embedded {what} is {:?}, not F32",
                    view.dtype()
                ));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            let shape = view.shape().iter().map(|&d| d as u32).collect();
            Ok((name.to_string(), shape, data))
        })
        .collect()
}

fn load() -> Result<Model, String> {
    let info: Value = serde_json::from_str(&model_data::info())
        .map_err(|e| format!("the embedded model info is not JSON: {e}"))?;
    let meta: Value = serde_json::from_slice(&model_data::meta())
        .map_err(|e| format!("the embedded model.json is not JSON: {e}"))?;
    let text = |v: &Value, key: &str| -> Result<String, String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("the embedded model has no `{key}`"))
    };
    let features = meta["feature_names"]
        .as_array()
        .ok_or("the embedded model.json has no feature_names")?
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect();
    let classes = meta["classes"]
        .as_u64()
        .ok_or("the embedded model.json has no classes")? as usize;
    Ok(Model {
        name: text(&info, "name")?,
        version: text(&info, "version")?,
        reference: text(&info, "reference")?,
        features,
        classes,
        spec: oip::ModelSpec::from_model_json(&meta),
        preprocessor_config: meta["plugins"]["preprocessor"]["config"].to_string(),
        predictor_config: meta["plugins"]["predictor"]["config"].to_string(),
        state: decode_tensors("preprocessor state", &model_data::state())?,
        // The predictor gets the parameters without the optimizer's `opt.` state,
        // as in the host (see the WIT `predict` interface).
        params: decode_tensors("params", &model_data::params())?
            .into_iter()
            .filter(|(name, _, _)| !name.starts_with("opt."))
            .collect(),
    })
}

thread_local! {
    static MODEL: OnceCell<Result<Rc<Model>, String>> = const { OnceCell::new() };
}

fn model() -> Result<Rc<Model>, String> {
    MODEL.with(|m| m.get_or_init(|| load().map(Rc::new)).clone())
}

/// Fresh host handles for a list of named tensors (each call consumes them).
fn named(list: &[TensorData]) -> Result<Vec<NamedTensor>, String> {
    list.iter()
        .map(|(name, shape, data)| {
            Ok(NamedTensor {
                name: name.clone(),
                value: Tensor::from_list(shape, data)?,
            })
        })
        .collect()
}

/// What the predictor answered for a batch.
enum Answer {
    /// Class index and probabilities per row.
    Classes(Vec<u32>, Vec<Vec<f32>>),
    /// Targets per row (a regression model).
    Targets(Vec<Vec<f32>>),
}

/// Runs the preprocessor and the predictor on `rows` rows; the same checks as
/// `Model::predict` in the host.
fn predict(m: &Model, x: Vec<f32>, rows: usize) -> Result<Answer, String> {
    let x = Tensor::from_list(&[rows as u32, m.features.len() as u32], &x)?;
    let xt = tensorlet::ml::preprocess::transform(&m.preprocessor_config, named(&m.state)?, x)
        .map_err(|e| format!("plugin transform failed: {e}"))?;
    match xt.shape()[..] {
        [r, _] if r as usize == rows => {}
        ref s => {
            return Err(format!(
                "the preprocessor returned shape {s:?} for {rows} rows; expected [{rows}, features]"
            ));
        }
    }
    let out = tensorlet::ml::predict::predict(&m.predictor_config, named(&m.params)?, xt)
        .map_err(|e| format!("plugin predict failed: {e}"))?;
    let regression = matches!(m.spec.answer, oip::Answer::Targets { .. });
    let what = if regression {
        "predictions"
    } else {
        "probabilities"
    };
    let shape = out.shape();
    if shape != [rows as u32, m.classes as u32] {
        return Err(format!(
            "the predictor returned {what} of shape {shape:?} for {rows} rows; expected [{rows}, {}]",
            m.classes
        ));
    }
    let p = out.to_list();
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "the predictor returned a non-finite {} ({}) in row {}",
            if regression {
                "prediction"
            } else {
                "probability"
            },
            p[i],
            i / m.classes.max(1)
        ));
    }
    let rows_of: Vec<Vec<f32>> = p.chunks(m.classes.max(1)).map(<[f32]>::to_vec).collect();
    if regression {
        return Ok(Answer::Targets(rows_of));
    }
    let labels = rows_of
        .iter()
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect();
    Ok(Answer::Classes(labels, rows_of))
}

/// A response: status, content type, extra headers and body.
struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn ok(value: Value) -> Reply {
    status_json(200, value)
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    status_json(status, json!({ "error": message.into() }))
}

fn status_json(status: u16, value: Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: serde_json::to_vec(&value).expect("JSON serialises"),
    }
}

fn send(out: ResponseOutparam, reply: Reply) {
    let mut entries = vec![(
        "content-type".to_string(),
        reply.content_type.as_bytes().to_vec(),
    )];
    entries.extend(reply.headers);
    let headers = Fields::from_list(&entries).expect("valid response headers");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(reply.status)
        .expect("a valid status code");
    let body = response.body().expect("the body of a new response");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = body.write().expect("the stream of a new body");
        // The client may have gone away; nothing more can be done then.
        let _ = stream
            .write_all(&reply.body)
            .and_then(|()| Write::flush(&mut stream));
    }
    let _ = OutgoingBody::finish(body, None);
}

/// Reads the whole request body, refusing more than [`MAX_BODY_BYTES`].
fn read_body(req: &IncomingRequest) -> Result<Vec<u8>, Reply> {
    let body = req
        .consume()
        .map_err(|()| error(400, "the request body could not be read"))?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| error(400, "the request body could not be read"))?;
        stream
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(400, format!("the request body could not be read: {e}")))?;
    }
    drop(body);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(error(
            413,
            format!("the request body is over this server's limit of {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

fn find(m: &Model, name: &str, version: Option<&str>) -> Result<(), Reply> {
    if name != m.name {
        return Err(error(
            404,
            format!(
                "no model `{name}` is served here; served models: {}",
                m.name
            ),
        ));
    }
    match version {
        Some(v) if v != m.version => Err(error(
            404,
            format!(
                "model `{name}` has no version `{v}` here; it serves version {}",
                m.version
            ),
        )),
        _ => Ok(()),
    }
}

fn metadata(m: &Model) -> Value {
    oip::model_metadata(&m.name, &m.version, &m.features, &m.spec)
}

fn infer(m: &Model, req: &IncomingRequest) -> Reply {
    let bytes = match read_body(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let header_len = req
        .headers()
        .get("inference-header-content-length")
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let spec = oip::InputSpec {
        features: m.features.len(),
        max_batch: MAX_BATCH,
    };
    let mut parsed = match oip::split_body(&bytes, header_len.as_deref())
        .and_then(|(json, bin)| oip::parse_request_for(json, bin, spec, &m.spec))
    {
        Ok(r) => r,
        Err(oip::BadRequest(message)) => return error(400, message),
    };
    let x = std::mem::take(&mut parsed.x);
    let missing = x.iter().any(|v| v.is_nan());
    let answer = match predict(m, x, parsed.rows) {
        Ok(p) => p,
        Err(e) if missing && e.contains("non-finite") => {
            return error(400, format!("{}: {e}", oip::MISSING_NOT_FILLED));
        }
        Err(e) => return error(500, format!("inference failed: {e}")),
    };
    let names = match &m.spec.answer {
        oip::Answer::Classes { names, .. } => names.as_deref(),
        oip::Answer::Targets { .. } => None,
    };
    let prediction = match &answer {
        Answer::Classes(labels, probabilities) => oip::Prediction::Classes {
            labels,
            probabilities,
            names,
        },
        Answer::Targets(values) => oip::Prediction::Targets(values),
    };
    let enc = oip::encode_prediction(&m.name, &m.version, &parsed, prediction);
    if enc.binary.is_empty() {
        return Reply {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: enc.json,
        };
    }
    let header_len = enc.json.len().to_string();
    let mut body = enc.json;
    body.extend_from_slice(&enc.binary);
    Reply {
        status: 200,
        content_type: "application/octet-stream",
        headers: vec![(
            "inference-header-content-length".to_string(),
            header_len.into_bytes(),
        )],
        body,
    }
}

fn route(req: &IncomingRequest) -> Reply {
    let path_and_query = req.path_with_query().unwrap_or_else(|| "/".to_string());
    let path = path_and_query.split('?').next().unwrap_or("/");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_get = matches!(req.method(), Method::Get);
    let is_post = matches!(req.method(), Method::Post);
    let method_not_allowed = |allowed: &str| error(405, format!("{path} answers {allowed} only"));
    let m = match model() {
        Ok(m) => m,
        Err(e) => return error(500, format!("the exported model could not be loaded: {e}")),
    };
    match segments[..] {
        ["v2", "health", "live"] if is_get => ok(json!({ "live": true })),
        ["v2", "health", "ready"] if is_get => ok(json!({ "ready": true })),
        ["v2"] if is_get => ok(json!({
            "name": "tensorlet",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data", "model_repository_list"],
        })),
        ["v2", "models"] if is_get => ok(json!({ "models": [{
            "name": m.name,
            "versions": [m.version],
            "platform": "tensorlet",
            "reference": m.reference,
            "ready": true,
            "deploy_error": null,
        }]})),
        ["v2", "models", name] | ["v2", "models", name, "versions", _] if is_get => {
            match find(&m, name, segments.get(4).copied()) {
                Ok(()) => ok(metadata(&m)),
                Err(reply) => reply,
            }
        }
        ["v2", "models", name, "ready"] | ["v2", "models", name, "versions", _, "ready"]
            if is_get =>
        {
            match find(&m, name, (segments.len() == 6).then(|| segments[4])) {
                Ok(()) => ok(json!({
                    "name": m.name, "version": m.version, "ready": true, "deploy_error": null,
                })),
                Err(reply) => reply,
            }
        }
        ["v2", "models", name, "infer"] | ["v2", "models", name, "versions", _, "infer"]
            if is_post =>
        {
            match find(&m, name, (segments.len() == 6).then(|| segments[4])) {
                Ok(()) => infer(&m, req),
                Err(reply) => reply,
            }
        }
        ["v2", "models", _, "infer"] | ["v2", "models", _, "versions", _, "infer"] => {
            method_not_allowed("POST")
        }
        ["v2", ..] if !is_get => method_not_allowed("GET"),
        _ => error(
            404,
            "no such endpoint; see /v2, /v2/models, /v2/models/{model}/infer",
        ),
    }
}

struct Front;

impl wasip2::exports::http::incoming_handler::Guest for Front {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let reply = route(&request);
        drop(request);
        send(response_out, reply);
    }
}

wasip2::http::proxy::export!(Front);
