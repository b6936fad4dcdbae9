//! A trained model on disk: everything needed to predict, content-addressed.
//!
//! ```text
//! <dir>/model.json               metadata: pipeline, plugins (digest, config), metrics
//! <dir>/params.safetensors       the trainer's parameters (and optimizer state)
//! <dir>/preprocessor.safetensors the preprocessor's fitted state
//! <dir>/components/<hex>.wasm    each plugin component, named by its sha256
//! ```
//!
//! Loading recomputes every digest and refuses a directory whose files do not
//! match its metadata. The params file is byte-identical for identical runs.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use tensorlet_gpu::Device;

use crate::error::{Result, RuntimeError};
use crate::pipeline::TrainingConfig;
use crate::plugin::NamedTensors;
use crate::train::{self, EpochMetrics, StagePlugin, TrainedModel};
use crate::{Pipeline, Runtime, digest};

/// The value of `format` in `model.json`.
pub const FORMAT: &str = "tensorlet-model/1";
const PARAMS: &str = "params.safetensors";
const STATE: &str = "preprocessor.safetensors";

/// One plugin of a saved model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageMeta {
    /// The name it was loaded under.
    pub name: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Its configuration.
    pub config: serde_json::Value,
}

/// The plugins of a saved model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// Preprocessor.
    pub preprocessor: StageMeta,
    /// Trainer.
    pub trainer: StageMeta,
    /// Predictor.
    pub predictor: StageMeta,
}

/// `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// The pipeline's name.
    pub name: String,
    /// The pipeline's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The tensorlet version that trained it.
    pub tensorlet_version: String,
    /// Input feature names, in order.
    pub feature_names: Vec<String>,
    /// The label column of the training data.
    pub label: String,
    /// Number of classes.
    pub classes: u32,
    /// Class names, when the pipeline gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// The plugins.
    pub plugins: Stages,
    /// How it was trained.
    pub training: TrainingConfig,
    /// Rows used for training and validation.
    pub split: (usize, usize),
    /// Metrics per epoch.
    pub metrics: Vec<EpochMetrics>,
    /// `sha256:` of `params.safetensors`.
    pub params_digest: String,
    /// `sha256:` of `preprocessor.safetensors`.
    pub state_digest: String,
}

impl ModelMeta {
    /// The last epoch's validation accuracy.
    pub fn val_accuracy(&self) -> Option<f32> {
        self.metrics.last().and_then(|m| m.val_accuracy)
    }
}

/// Serialises named tensors as safetensors, sorted by name (deterministic).
pub fn to_safetensors(device: &Device, named: &NamedTensors) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(n, t)| {
            let bytes = device
                .to_vec(t)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (n.clone(), t.shape().dims().to_vec(), bytes)
        })
        .collect();
    let views = data.iter().map(|(n, shape, bytes)| {
        (
            n.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes match"),
        )
    });
    safetensors::serialize(views, None).expect("f32 tensors serialise")
}

/// Reads safetensors written by [`to_safetensors`], sorted by name.
pub fn from_safetensors(device: &Device, bytes: &[u8]) -> Result<NamedTensors, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut names = st.names();
    names.sort();
    for name in names {
        let view = st.tensor(name).map_err(|e| e.to_string())?;
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor `{name}` is {:?}, not F32", view.dtype()));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let shape: Vec<u32> = view.shape().iter().map(|&d| d as u32).collect();
        let t = device.from_vec(&shape, data).map_err(|e| e.to_string())?;
        out.push((name.to_string(), t));
    }
    Ok(out)
}

fn stage_meta(s: &StagePlugin) -> StageMeta {
    StageMeta {
        name: s.plugin.name().to_string(),
        digest: s.plugin.digest().to_string(),
        config: serde_json::from_str(&s.config).expect("stage config is JSON"),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| RuntimeError::io(path, e))
}

/// Saves a trained model into `dir` (created if needed) and returns its metadata.
pub fn save(
    dir: &Path,
    device: &Device,
    pipeline: &Pipeline,
    plugins: &train::PipelinePlugins,
    data: &crate::data::Dataset,
    trained: &TrainedModel,
) -> Result<ModelMeta> {
    let components = dir.join("components");
    std::fs::create_dir_all(&components).map_err(|e| RuntimeError::io(&components, e))?;
    for s in [&plugins.preprocessor, &plugins.trainer, &plugins.predictor] {
        let hex = s.plugin.digest().trim_start_matches("sha256:");
        write(&components.join(format!("{hex}.wasm")), &s.bytes)?;
    }
    let params = to_safetensors(device, &trained.params);
    let state = to_safetensors(device, &trained.state);
    write(&dir.join(PARAMS), &params)?;
    write(&dir.join(STATE), &state)?;
    let meta = ModelMeta {
        format: FORMAT.to_string(),
        name: pipeline.pipeline.name.clone(),
        description: pipeline.pipeline.description.clone(),
        tensorlet_version: env!("CARGO_PKG_VERSION").to_string(),
        feature_names: data.feature_names.clone(),
        label: data.label_name.clone(),
        classes: trained.classes,
        class_names: pipeline.data.class_names.clone(),
        plugins: Stages {
            preprocessor: stage_meta(&plugins.preprocessor),
            trainer: stage_meta(&plugins.trainer),
            predictor: stage_meta(&plugins.predictor),
        },
        training: pipeline.training.clone(),
        split: trained.split,
        metrics: trained.history.clone(),
        params_digest: digest(&params),
        state_digest: digest(&state),
    };
    let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
    write(&dir.join("model.json"), &json)?;
    Ok(meta)
}

/// A loaded model, ready to predict.
pub struct Model {
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: ModelMeta,
    /// Fitted preprocessor state.
    pub state: NamedTensors,
    /// Trained parameters.
    pub params: NamedTensors,
    preprocessor: StagePlugin,
    predictor: StagePlugin,
}

/// Predictions for a batch of rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Predictions {
    /// Class index per row.
    pub labels: Vec<u32>,
    /// Class probabilities per row.
    pub probabilities: Vec<Vec<f32>>,
}

impl Model {
    /// Loads a model directory, verifying every file against its digest.
    pub fn load(rt: &Runtime, dir: &Path) -> Result<Model> {
        let bad = |message: String| RuntimeError::Model {
            path: dir.to_path_buf(),
            message,
        };
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| RuntimeError::io(p, e));
        let meta_bytes = read(dir.join("model.json"))?;
        let meta: ModelMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|e| bad(format!("model.json is not valid model metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "model.json has format `{}`; this tensorlet reads `{FORMAT}`",
                meta.format
            )));
        }
        let checked = |file: &str, want: &str| -> Result<Vec<u8>> {
            let bytes = read(dir.join(file))?;
            let got = digest(&bytes);
            if got != want {
                return Err(bad(format!(
                    "{file} has digest {got} but model.json pins {want}; the file was modified"
                )));
            }
            Ok(bytes)
        };
        let device = rt.device();
        let params = from_safetensors(device, &checked(PARAMS, &meta.params_digest)?)
            .map_err(|e| bad(format!("{PARAMS}: {e}")))?;
        let state = from_safetensors(device, &checked(STATE, &meta.state_digest)?)
            .map_err(|e| bad(format!("{STATE}: {e}")))?;
        let stage = |s: &StageMeta| -> Result<StagePlugin> {
            let file = format!("components/{}.wasm", s.digest.trim_start_matches("sha256:"));
            let bytes = checked(&file, &s.digest)?;
            Ok(StagePlugin {
                plugin: rt.load(&s.name, &bytes)?,
                bytes,
                config: s.config.to_string(),
            })
        };
        Ok(Model {
            preprocessor: stage(&meta.plugins.preprocessor)?,
            predictor: stage(&meta.plugins.predictor)?,
            dir: dir.to_path_buf(),
            meta,
            state,
            params,
        })
    }

    /// Predicts `rows` rows of raw features (row-major).
    pub fn predict(&self, device: &Device, x: Vec<f32>, rows: usize) -> Result<Predictions> {
        let want = self.meta.feature_names.len();
        if rows == 0 || x.len() != rows * want {
            return Err(RuntimeError::Model {
                path: self.dir.clone(),
                message: format!(
                    "the model takes {want} features per row ({}); the input has {} values in {rows} rows",
                    self.meta.feature_names.join(", "),
                    x.len()
                ),
            });
        }
        let x = device.from_vec(&[rows as u32, want as u32], x)?;
        let xt = train::transform(&self.preprocessor, &self.state, &x)?;
        let probs = self
            .predictor
            .plugin
            .predict(&self.predictor.config, &self.params, &xt)?;
        let classes = self.meta.classes;
        let p = train::check_probabilities(&self.predictor.plugin, device, &probs, rows, classes)?;
        let probabilities: Vec<Vec<f32>> =
            p.chunks(classes as usize).map(<[f32]>::to_vec).collect();
        Ok(Predictions {
            labels: probabilities
                .iter()
                .map(|r| train::argmax(r) as u32)
                .collect(),
            probabilities,
        })
    }

    /// The class name of a label, or the label itself.
    pub fn class_name(&self, label: u32) -> String {
        self.meta
            .class_names
            .as_ref()
            .and_then(|n| n.get(label as usize).cloned())
            .unwrap_or_else(|| label.to_string())
    }
}
