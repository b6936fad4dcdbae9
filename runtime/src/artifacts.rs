//! Plugins, pipelines and models as registry artifacts.
//!
//! | kind | blobs | depends |
//! |---|---|---|
//! | preprocessor / trainer / predictor | `component` (and `graph:<name>`: ONNX models offered through `wasi:nn`) | — |
//! | pipeline | `pipeline.toml` (every stage a `ref`) | `preprocessor`, `trainer`, `predictor` |
//! | model | `model.json`, `params.safetensors`, `preprocessor.safetensors` | the three plugins, and `pipeline` when it came from the registry |
//!
//! A model's lineage records the pipeline reference, the dataset digest,
//! the seed and a run id. Loading goes through [`Registry::verify`] for the
//! artifact and every pin, so a model runs only if it and everything it was
//! built from verify against the local trust policy. [`publish`] turns a
//! file given to `tensorlet publish` into a manifest and its blobs.

pub mod publish;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tensorlet_registry::{
    COMPONENT, GRAPH_PREFIX, Kind, Manifest, Pin, Provenance, Registry, VerifiedArtifact,
    VerifiedComponent, digest,
};

use crate::error::{Result, RuntimeError};
use crate::model::{self, META, Model, ModelMeta, PARAMS, STATE};
use crate::pipeline::{heading, section_kind};
use crate::train::PipelinePlugins;
use crate::{Pipeline, Runtime};

/// The blob role of a pipeline's TOML.
pub const PIPELINE_TOML: &str = "pipeline.toml";

/// The pipeline sections, in order.
pub const STAGES: [&str; 3] = ["preprocessor", "trainer", "predictor"];

/// The interfaces (without version) of which a plugin kind or a pipeline
/// section needs one: a `model` plugin (`tensorlet:ml/forward`) trains and
/// predicts, so it may be published as a trainer or a predictor.
pub fn required_interface(kind_or_section: &str) -> Option<&'static [&'static str]> {
    match kind_or_section {
        "preprocessor" => Some(&["tensorlet:ml/preprocess"]),
        "trainer" => Some(&["tensorlet:ml/train", "tensorlet:ml/forward"]),
        "predictor" => Some(&["tensorlet:ml/predict", "tensorlet:ml/forward"]),
        "model" => Some(&["tensorlet:ml/forward"]),
        _ => None,
    }
}

fn exports_interface(exports: &[String], ifaces: &[&str]) -> bool {
    exports.iter().any(|e| {
        ifaces
            .iter()
            .any(|i| e == i || e.strip_prefix(i).is_some_and(|v| v.starts_with('@')))
    })
}

/// The kind a plugin is published as: what it exports (a `model`, which
/// trains and predicts, is published as a trainer).
pub fn kind_of(rt: &Runtime, name: &str, bytes: &[u8]) -> Result<Kind> {
    let info = rt.inspect(name, bytes)?;
    let has = |i: &str| info.exports.iter().any(|e| e.starts_with(i));
    Ok(
        if has("tensorlet:ml/train@") || has("tensorlet:ml/forward@") {
            Kind::Trainer
        } else if has("tensorlet:ml/preprocess@") {
            Kind::Preprocessor
        } else {
            Kind::Predictor
        },
    )
}

/// Checks that `bytes` is a component that exports the world `kind` names and
/// imports nothing the runtime does not provide, and returns an unsigned
/// manifest pinning it.
pub fn plugin_manifest(
    rt: &Runtime,
    name: &str,
    version: &str,
    kind: Kind,
    bytes: &[u8],
) -> Result<Manifest> {
    let mut m = Manifest::new(name, version, kind)?;
    let label = m.reference();
    let Some(iface) = required_interface(kind.as_str()) else {
        return Err(RuntimeError::Load {
            plugin: label,
            message: format!(
                "a .wasm component is published as a preprocessor, trainer or predictor, not as a {kind}"
            ),
        });
    };
    let info = rt.inspect(&label, bytes)?;
    if let Some(why) = info.unprovided {
        return Err(RuntimeError::Load {
            plugin: label,
            message: format!(
                "it imports something tensorlet does not provide ({why}); plugins may import only \
                 tensorlet:ml/tensor, wasi:nn and WASI 0.2"
            ),
        });
    }
    if !exports_interface(&info.exports, iface) {
        return Err(RuntimeError::Load {
            plugin: label,
            message: format!(
                "it is published as a {kind} but does not export {} (it exports: {}); build it \
                 for the {kind} world or publish it with the --kind it implements",
                iface.join(" or "),
                if info.exports.is_empty() {
                    "nothing".to_string()
                } else {
                    info.exports.join(", ")
                }
            ),
        });
    }
    m.blobs.insert(COMPONENT.into(), info.digest);
    m.config = json!({"exports": info.exports, "imports": info.imports});
    Ok(m)
}

/// Adds models (`name`, ONNX bytes) to a plugin manifest as blobs
/// `graph:<name>`, pinned by digest like the component: the plugin opens them
/// through `wasi:nn` by name wherever the verified artifact is loaded. Each
/// must parse as an ONNX model, and the component must import `wasi:nn`.
/// Returns the blobs to publish, in order.
pub fn add_graphs(m: &mut Manifest, graphs: &[(String, Vec<u8>)]) -> Result<Vec<Vec<u8>>> {
    let label = m.reference();
    let bad = |message: String| RuntimeError::Load {
        plugin: label.clone(),
        message,
    };
    if graphs.is_empty() {
        return Ok(Vec::new());
    }
    let imports_nn = m.config["imports"].as_array().is_some_and(|i| {
        i.iter()
            .any(|v| v.as_str().is_some_and(|s| s.starts_with("wasi:nn/")))
    });
    if !imports_nn {
        return Err(bad(
            "it is published with --graph, but it does not import wasi:nn, so it could never \
             open the model; build it against the wasi:nn bindings (world nn-predictor)"
                .into(),
        ));
    }
    let mut names = Vec::new();
    let mut blobs = Vec::new();
    for (name, bytes) in graphs {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(bad(format!(
                "`{name}` is not a valid graph name: use letters, digits, `-` and `_`"
            )));
        }
        if names.contains(name) {
            return Err(bad(format!("graph `{name}` is given twice")));
        }
        crate::nn::load_onnx(bytes)
            .map_err(|e| bad(format!("graph `{name}` is not a usable ONNX model: {e}")))?;
        m.blobs
            .insert(format!("{GRAPH_PREFIX}{name}"), digest(bytes));
        names.push(name.clone());
        blobs.push(bytes.clone());
    }
    m.config["graphs"] = json!(names);
    Ok(blobs)
}

/// Builds a pipeline manifest and its TOML blob. Every stage must be a `ref`;
/// each is verified, checked to export its section's interface, and pinned
/// by manifest digest (the TOML names the exact version).
pub fn pipeline_manifest(
    rt: &Runtime,
    reg: &Registry,
    pipeline: &Pipeline,
    name: &str,
    version: &str,
) -> Result<(Manifest, Vec<u8>)> {
    let mut m = Manifest::new(name, version, Kind::Pipeline)?;
    let mut normalized = pipeline.clone();
    let origin = PathBuf::from(m.reference());
    for (section, stage) in normalized.stages_mut() {
        let (h, kind) = (heading(&section), section_kind(&section));
        let Some(r) = stage.reference.clone() else {
            return Err(RuntimeError::Pipeline {
                path: origin,
                message: format!(
                    "{h} uses `path` or `bundled`, which only local development may run; \
                     publish the plugin (`tensorlet publish plugin.wasm --name ns/x --version 1.0.0 \
                     --kind {kind} --key <key>`) and name it with `ref = \"ns/x@1.0.0\"`"
                ),
            });
        };
        let a = reg.verify_str(&r)?;
        let iface = required_interface(kind).expect("a stage");
        let component = a.component().ok_or_else(|| RuntimeError::Pipeline {
            path: origin.clone(),
            message: format!("{h} ref `{r}` is a {}, not a plugin", a.kind()),
        })?;
        let info = rt.inspect(component.name(), component.bytes())?;
        if !exports_interface(&info.exports, iface) {
            return Err(RuntimeError::Pipeline {
                path: origin,
                message: format!(
                    "{h} ref `{r}` ({}) does not export {}",
                    a.reference(),
                    iface.join(" or ")
                ),
            });
        }
        stage.reference = Some(a.reference());
        m.depends.insert(
            section.clone(),
            Pin {
                reference: a.reference(),
                digest: a.digest().to_string(),
            },
        );
    }
    let text = toml::to_string(&normalized).map_err(|e| RuntimeError::Pipeline {
        path: origin,
        message: format!("cannot write the pipeline as TOML: {e}"),
    })?;
    m.blobs
        .insert(PIPELINE_TOML.into(), digest(text.as_bytes()));
    m.config = json!({
        "description": pipeline.pipeline.description,
        "training": pipeline.training.to_json(),
    });
    Ok((m, text.into_bytes()))
}

/// Reads a verified pipeline artifact. Each stage's `ref` is replaced by its
/// pin (`ns/name@sha256:…`), so loading gets exactly the plugins that were
/// pinned when the pipeline was signed.
pub fn load_pipeline(artifact: &VerifiedArtifact) -> Result<Pipeline> {
    let origin = PathBuf::from(artifact.reference());
    let bad = |message: String| RuntimeError::Pipeline {
        path: origin.clone(),
        message,
    };
    if artifact.kind() != Kind::Pipeline {
        return Err(bad(format!("it is a {}, not a pipeline", artifact.kind())));
    }
    let text = artifact
        .blob(PIPELINE_TOML)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| bad(format!("it has no `{PIPELINE_TOML}` blob")))?;
    let mut p = Pipeline::parse(text, Path::new("."), &origin)?;
    for (section, stage) in p.stages_mut() {
        let pin = artifact
            .manifest()
            .depends
            .get(&section)
            .ok_or_else(|| bad(format!("it does not pin its {section}")))?;
        stage.reference = Some(pin.exact().to_string());
        stage.path = None;
        stage.bundled = None;
    }
    Ok(p)
}

/// The next version for a new model of `name`: `0.1.0` for the first, then
/// the highest existing version with its patch number raised.
pub fn next_version(reg: &Registry, name: &str) -> Result<String> {
    Ok(match reg.versions(name)?.pop() {
        None => "0.1.0".into(),
        Some(v) => semver::Version::new(v.major, v.minor, v.patch + 1).to_string(),
    })
}

/// Builds a model manifest and its blobs from a saved model directory and
/// the plugins it was trained with (which must be signed artifacts).
pub fn model_manifest(
    name: &str,
    version: &str,
    dir: &Path,
    plugins: &PipelinePlugins,
    pipeline: Option<&VerifiedArtifact>,
    lineage: Value,
) -> Result<(Manifest, Vec<Vec<u8>>)> {
    let mut m = Manifest::new(name, version, Kind::Model)?;
    let stages = plugins
        .preprocessors
        .stages
        .iter()
        .map(|c| (c.section.clone(), &c.stage))
        .chain(plugins.trainer.iter().map(|t| ("trainer".to_string(), t)))
        .chain([("predictor".to_string(), &plugins.predictor)]);
    for (section, s) in stages {
        match s.component.provenance() {
            Provenance::Signed {
                artifact,
                manifest_digest,
                ..
            } => {
                m.depends.insert(
                    section.clone(),
                    Pin {
                        reference: artifact.clone(),
                        digest: manifest_digest.clone(),
                    },
                );
            }
            _ => {
                return Err(RuntimeError::Model {
                    path: PathBuf::from(m.reference()),
                    message: format!(
                        "its {section} `{}` was loaded unsigned (--allow-unsigned), so the model \
                         cannot be published; publish the plugins and name them with `ref`",
                        s.component.name()
                    ),
                });
            }
        }
    }
    if let Some(p) = pipeline {
        m.depends.insert(
            "pipeline".into(),
            Pin {
                reference: p.reference(),
                digest: p.digest().to_string(),
            },
        );
    }
    let mut blobs = Vec::new();
    for file in [META, PARAMS, STATE] {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(path, e))?;
        m.blobs.insert(file.to_string(), digest(&bytes));
        blobs.push(bytes);
    }
    let meta = model::parse_meta(&blobs[0]).map_err(|message| RuntimeError::Model {
        path: dir.to_path_buf(),
        message,
    })?;
    m.config = json!({
        "features": meta.feature_names,
        "classes": meta.classes,
        "class_names": meta.class_names,
        "val_accuracy": meta.val_accuracy(),
        "training": meta.training.to_json(),
    });
    m.lineage = lineage;
    Ok((m, blobs))
}

/// Loads a verified model artifact: its metadata, params and state, and the
/// preprocessor and predictor it pins, each verified in `reg`. Audited as
/// `model.load`.
pub fn load_model(rt: &Runtime, reg: &Registry, artifact: &VerifiedArtifact) -> Result<Model> {
    let origin = PathBuf::from(artifact.reference());
    let bad = |message: String| RuntimeError::Model {
        path: origin.clone(),
        message,
    };
    if artifact.kind() != Kind::Model {
        return Err(bad(format!("it is a {}, not a model", artifact.kind())));
    }
    let blob = |role: &str| {
        artifact
            .blob(role)
            .ok_or_else(|| bad(format!("it has no `{role}` blob")))
    };
    let meta: ModelMeta = model::parse_meta(blob(META)?).map_err(&bad)?;
    let component = |section: &str| -> Result<VerifiedComponent> {
        let pin = artifact
            .manifest()
            .depends
            .get(section)
            .ok_or_else(|| bad(format!("it does not pin its {section}")))?;
        reg.verify_pin(pin)?
            .component()
            .ok_or_else(|| bad(format!("its {section} {} is not a plugin", pin.reference)))
    };
    let preprocessors = meta
        .plugins
        .preprocessors()
        .iter()
        .map(|(section, _)| component(section))
        .collect::<Result<Vec<_>>>()?;
    let model = Model::from_parts(
        rt,
        origin.clone(),
        meta,
        blob(PARAMS)?,
        blob(STATE)?,
        preprocessors,
        component("predictor")?,
    )?;
    reg.record(
        "model.load",
        &artifact.reference(),
        json!({"digest": artifact.digest(), "key_id": artifact.key_id()}),
    )?;
    Ok(model)
}
