//! What the HTTP fronts of a model exported with `tensorlet export --wasi-http`
//! share: the Open Inference Protocol endpoints of `tensorlet serve` for one
//! model, behind whichever `wasi:http` binding a front crate adds
//! (`http-front`: WASI 0.2's `incoming-handler`; `spin-front`: `spin-sdk`'s
//! WASI 0.3 `handler`). The front It holds no model of
//! its own: `tensorlet export` composes it with the model's preprocessor and
//! predictor, a pure-Wasm `tensorlet:ml/tensor` and a generated component that
//! holds the model's `model.json`, params and fitted state (`model-data`).
//! A chain of preprocessors is composed as up to [`MAX_STAGES`] imports, and
//! the columns go through them as in the host's `runtime/src/chain.rs`.
//! Request parsing and response encoding are `tensorlet serve`'s own code
//! (the `tensorlet-oip` crate), so both answer alike.

use std::cell::OnceCell;
use std::rc::Rc;

use serde_json::{Value, json};

use tensorlet_oip as oip;

wit_bindgen::generate!({
    path: ["../../wit", "../../wit/export"],
    world: "tensorlet:exported/front@0.1.0",
    generate_all,
});

use tensorlet::exported::model_data;
use tensorlet::ml::tensor::{NamedTensor, Tensor};

/// Largest request body accepted (as `tensorlet serve`'s default).
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Largest batch accepted (as `tensorlet serve`'s default).
const MAX_BATCH: usize = 1024;
/// Most preprocessors a chain may have: the front's `preprocess` import and
/// `stage-2` … `stage-8` (`tensorlet export` refuses a longer chain).
const MAX_STAGES: usize = 8;

/// A preprocessor's `transform`, as each of the imports binds it.
type Transform = fn(&str, Vec<NamedTensor>, Tensor) -> Result<Tensor, String>;

/// The chain's imports, in order.
const TRANSFORMS: [Transform; MAX_STAGES] = [
    tensorlet::ml::preprocess::transform,
    stage_2::transform,
    stage_3::transform,
    stage_4::transform,
    stage_5::transform,
    stage_6::transform,
    stage_7::transform,
    stage_8::transform,
];

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
    /// The preprocessors, in order; at least one.
    stages: Vec<Stage>,
    predictor_config: String,
    /// Trained params as (name, shape, data), sorted by name as the host
    /// loads them.
    params: Vec<TensorData>,
}

/// One preprocessor of the chain.
struct Stage {
    /// The plugin's name, for messages.
    name: String,
    /// Its section: `preprocessor`, `preprocessor.2`…
    section: String,
    config: String,
    /// The columns it transforms, by name; all of them when `None`.
    columns: Option<Vec<String>>,
    /// Its fitted state, sorted by name (without the `<n>/` a longer chain
    /// stores it under).
    state: Vec<TensorData>,
}

impl Model {
    /// Whether the input goes to the one preprocessor untouched (as the
    /// host's `Chain::is_plain`).
    fn is_plain(&self) -> bool {
        self.stages.len() == 1 && self.stages[0].columns.is_none()
    }
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

/// The members of `model.json` the front reads (here and in
/// `oip::ModelSpec::from_model_json`). The others, the training history
/// above all (most of the file), are skipped without building values: a
/// fresh instance loads the model on every request.
#[derive(serde::Deserialize, serde::Serialize)]
struct MetaRead {
    #[serde(skip_serializing_if = "Option::is_none")]
    feature_names: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class_names: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugins: Option<Value>,
}

fn load() -> Result<Model, String> {
    let info: Value = serde_json::from_str(&model_data::info())
        .map_err(|e| format!("the embedded model info is not JSON: {e}"))?;
    let meta: MetaRead = serde_json::from_slice(&model_data::meta())
        .map_err(|e| format!("the embedded model.json is not JSON: {e}"))?;
    let meta = serde_json::to_value(meta).expect("JSON values serialise");
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
    let stages = load_stages(
        &meta,
        decode_tensors("preprocessor state", &model_data::state())?,
    )?;
    Ok(Model {
        name: text(&info, "name")?,
        version: text(&info, "version")?,
        reference: text(&info, "reference")?,
        features,
        classes,
        spec: oip::ModelSpec::from_model_json(&meta),
        stages,
        predictor_config: meta["plugins"]["predictor"]["config"].to_string(),
        // The predictor gets the parameters without the optimizer's `opt.` state,
        // as in the host (see the WIT `predict` interface).
        params: decode_tensors("params", &model_data::params())?
            .into_iter()
            .filter(|(name, _, _)| !name.starts_with("opt."))
            .collect(),
    })
}

/// The preprocessors of `model.json` (`plugins.preprocessor`, then
/// `plugins.chain`), each with its share of the fitted `state`: in a chain of
/// more than one, stage `n`'s state is stored under `<n>/`.
fn load_stages(meta: &Value, state: Vec<TensorData>) -> Result<Vec<Stage>, String> {
    let plugins = &meta["plugins"];
    let chain = match &plugins["chain"] {
        Value::Null => &[][..],
        Value::Array(a) => &a[..],
        _ => return Err("the embedded model.json has a `plugins.chain` that is not a list".into()),
    };
    let metas: Vec<&Value> = std::iter::once(&plugins["preprocessor"])
        .chain(chain)
        .collect();
    if metas.len() > MAX_STAGES {
        return Err(format!(
            "the embedded model has {} preprocessors; an export composes at most {MAX_STAGES}",
            metas.len()
        ));
    }
    let several = metas.len() > 1;
    metas
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let columns = match &s["columns"] {
                Value::Null => None,
                c => Some(
                    serde_json::from_value(c.clone())
                        .map_err(|e| format!("the embedded model's preprocessor {}: {e}", i + 1))?,
                ),
            };
            let own = if several {
                let prefix = format!("{}/", i + 1);
                state
                    .iter()
                    .filter_map(|(n, shape, data)| {
                        n.strip_prefix(&prefix)
                            .map(|n| (n.to_string(), shape.clone(), data.clone()))
                    })
                    .collect()
            } else {
                state.clone()
            };
            Ok(Stage {
                name: s["name"].as_str().unwrap_or("preprocessor").to_string(),
                section: match i {
                    0 => "preprocessor".to_string(),
                    _ => format!("preprocessor.{}", i + 1),
                },
                config: s["config"].to_string(),
                columns,
                state: own,
            })
        })
        .collect()
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

/// The params entry that marks a regression for the forward-predict adapter
/// (`plugins/forward-predict`).
const REGRESSION_MARK: &str = "tensorlet:regression";

/// Why a batch got no answer.
enum Failure {
    /// A preprocessor returned an error: the host's `plugin `…` returned an
    /// error: … (during transform)`, which a missing value may cause.
    Transform(String),
    /// Anything else.
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Other(e)
    }
}

/// What the predictor answered for a batch.
enum Answer {
    /// Class index and probabilities per row.
    Classes(Vec<u32>, Vec<Vec<f32>>),
    /// Targets per row (a regression model).
    Targets(Vec<Vec<f32>>),
}

/// Runs stage `i` on `x` (`rows` rows) and checks that it kept the rows.
fn transform(m: &Model, i: usize, x: Tensor, rows: usize) -> Result<Tensor, Failure> {
    let s = &m.stages[i];
    let xt = TRANSFORMS[i](&s.config, named(&s.state)?, x).map_err(|e| {
        Failure::Transform(format!(
            "plugin `{}` returned an error: {e} (during transform)",
            s.name
        ))
    })?;
    match xt.shape()[..] {
        [r, _] if r as usize == rows => Ok(xt),
        ref shape => Err(Failure::Other(format!(
            "the preprocessor `{}` returned shape {shape:?} for {rows} rows; expected [{rows}, \
             features]",
            s.name
        ))),
    }
}

/// Runs the chain on `x` (`rows` rows of the model's features): each stage on
/// its columns of what the stages before it gave, its outputs in their place
/// (see [`Table`]).
fn preprocess(m: &Model, x: Vec<f32>, rows: usize) -> Result<Tensor, Failure> {
    let shape = [rows as u32, m.features.len() as u32];
    if m.is_plain() {
        return transform(m, 0, Tensor::from_list(&shape, &x)?, rows);
    }
    let mut table = Table {
        names: m.features.clone(),
        rows,
        values: x,
    };
    for (i, s) in m.stages.iter().enumerate() {
        let picked = table.pick(s)?;
        let input = Tensor::from_list(
            &[rows as u32, picked.len() as u32],
            &select(&table.values, table.names.len(), &picked),
        )?;
        let out = transform(m, i, input, rows)?;
        let width = out.shape()[1] as usize;
        table.replace(s, &picked, width, &out.to_list());
    }
    Ok(Tensor::from_list(
        &[rows as u32, table.names.len() as u32],
        &table.values,
    )?)
}

/// The columns between two stages, by name, with row-major values.
struct Table {
    names: Vec<String>,
    rows: usize,
    values: Vec<f32>,
}

impl Table {
    /// The indices of a stage's columns (all when it names none).
    fn pick(&self, s: &Stage) -> Result<Vec<usize>, String> {
        let Some(columns) = &s.columns else {
            return Ok((0..self.names.len()).collect());
        };
        columns
            .iter()
            .map(|c| {
                self.names.iter().position(|n| n == c).ok_or_else(|| {
                    format!(
                        "[{}] columns: `{c}` is not a column here; the columns at this stage are \
                         {}",
                        s.section,
                        self.names.join(", ")
                    )
                })
            })
            .collect()
    }

    /// Puts a stage's output (`width` columns) in place of its columns
    /// `picked`, at the position of the first of them. The outputs keep
    /// their inputs' names when the stage keeps the width, and are named
    /// `<section>:<n>` when it does not.
    fn replace(&mut self, s: &Stage, picked: &[usize], width: usize, out: &[f32]) {
        let out_names: Vec<String> = if width == picked.len() {
            picked.iter().map(|&c| self.names[c].clone()).collect()
        } else {
            (0..width).map(|j| format!("{}:{j}", s.section)).collect()
        };
        let old = self.names.len();
        let kept: Vec<usize> = (0..old).filter(|c| !picked.contains(c)).collect();
        let first = picked.iter().min().copied().unwrap_or(old);
        let (before, after) = kept.split_at(kept.iter().filter(|&&c| c < first).count());
        let mut names: Vec<String> = before.iter().map(|&c| self.names[c].clone()).collect();
        names.extend(out_names);
        names.extend(after.iter().map(|&c| self.names[c].clone()));
        let mut values = Vec::with_capacity(self.rows * names.len());
        for r in 0..self.rows {
            let row = &self.values[r * old..(r + 1) * old];
            values.extend(before.iter().map(|&c| row[c]));
            values.extend_from_slice(&out[r * width..(r + 1) * width]);
            values.extend(after.iter().map(|&c| row[c]));
        }
        self.names = names;
        self.values = values;
    }
}

/// Columns `picked` of row-major `values` that are `width` wide.
fn select(values: &[f32], width: usize, picked: &[usize]) -> Vec<f32> {
    let mut v = Vec::with_capacity(values.len() / width.max(1) * picked.len());
    for row in values.chunks_exact(width.max(1)) {
        v.extend(picked.iter().map(|&c| row[c]));
    }
    v
}

/// Runs the preprocessors and the predictor on `rows` rows; the same checks
/// as `Model::predict` in the host.
fn predict(m: &Model, x: Vec<f32>, rows: usize) -> Result<Answer, Failure> {
    let xt = preprocess(m, x, rows)?;
    let regression = matches!(m.spec.answer, oip::Answer::Targets { .. });
    let mut params = named(&m.params)?;
    if regression {
        // Tells the forward-predict adapter (a `model` plugin's predictor)
        // to return the outputs as they are, not their softmax; any other
        // predictor ignores the extra entry, as `predict` allows.
        params.push(NamedTensor {
            name: REGRESSION_MARK.to_string(),
            value: Tensor::from_list(&[1], &[1.0])?,
        });
    }
    let out = tensorlet::ml::predict::predict(&m.predictor_config, params, xt)
        .map_err(|e| format!("plugin predict failed: {e}"))?;
    let what = if regression {
        "predictions"
    } else {
        "probabilities"
    };
    let shape = out.shape();
    if shape != [rows as u32, m.classes as u32] {
        return Err(Failure::Other(format!(
            "the predictor returned {what} of shape {shape:?} for {rows} rows; expected [{rows}, {}]",
            m.classes
        )));
    }
    let p = out.to_list();
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        return Err(Failure::Other(format!(
            "the predictor returned a non-finite {} ({}) in row {}",
            if regression {
                "prediction"
            } else {
                "probability"
            },
            p[i],
            i / m.classes.max(1)
        )));
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
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `content-type`.
    pub content_type: &'static str,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

fn ok(value: Value) -> Reply {
    status_json(200, value)
}

/// A JSON `{"error": message}` reply.
pub fn error(status: u16, message: impl Into<String>) -> Reply {
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

fn infer(m: &Model, header_len: Option<&str>, bytes: &[u8]) -> Reply {
    let spec = oip::InputSpec {
        features: m.features.len(),
        max_batch: MAX_BATCH,
    };
    let mut parsed = match oip::split_body(bytes, header_len)
        .and_then(|(json, bin)| oip::parse_request_for(json, bin, spec, &m.spec))
    {
        Ok(r) => r,
        Err(oip::BadRequest(message)) => return error(400, message),
    };
    let x = std::mem::take(&mut parsed.x);
    let missing = x.iter().any(|v| v.is_nan());
    // As the host: a preprocessor's error or a non-finite output may come
    // from a missing value the preprocessing does not fill in.
    let answer = match predict(m, x, parsed.rows) {
        Ok(p) => p,
        Err(Failure::Transform(e)) if missing => {
            return error(400, format!("{}: {e}", oip::MISSING_NOT_FILLED));
        }
        Err(Failure::Other(e)) if missing && e.contains("non-finite") => {
            return error(400, format!("{}: {e}", oip::MISSING_NOT_FILLED));
        }
        Err(Failure::Transform(e) | Failure::Other(e)) => {
            return error(500, format!("inference failed: {e}"));
        }
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
        headers: vec![("inference-header-content-length", header_len)],
        body,
    }
}

/// What a request to `path` asks for.
pub enum Routed {
    /// The answer.
    Reply(Reply),
    /// An inference: the front reads the body and calls [`Infer::answer`].
    Infer(Infer),
}

/// An inference request routed to the model.
pub struct Infer(Rc<Model>);

impl Infer {
    /// The answer to the body `bytes`, whose JSON header is `header_len`
    /// bytes long (the `inference-header-content-length` header) when given.
    pub fn answer(&self, header_len: Option<&str>, bytes: &[u8]) -> Reply {
        infer(&self.0, header_len, bytes)
    }
}

/// Routes a request: `get`/`post` its method, `path` without the query.
pub fn route(get: bool, post: bool, path: &str) -> Routed {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (is_get, is_post) = (get, post);
    let method_not_allowed = |allowed: &str| error(405, format!("{path} answers {allowed} only"));
    let m = match model() {
        Ok(m) => m,
        Err(e) => {
            return Routed::Reply(error(
                500,
                format!("the exported model could not be loaded: {e}"),
            ));
        }
    };
    Routed::Reply(match segments[..] {
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
                Ok(()) => return Routed::Infer(Infer(m)),
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
    })
}
