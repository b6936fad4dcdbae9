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
//!
//! A loaded [`Model`] keeps its state and params on the runtime's device; on
//! a GPU it also keeps a host copy, so that [`Model::rebind`] can upload them
//! again after the GPU failed and was recovered.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tensorlet_gpu::{Device, DeviceKind, Tensor};
use tensorlet_registry::VerifiedComponent;

use crate::chain::{Chain, ChainStage};
use crate::data::Column;
use crate::error::{Result, RuntimeError};
use crate::pipeline::TrainingConfig;
use crate::plugin::{NamedTensors, Task};
use crate::train::{self, EpochMetrics, StagePlugin, TrainedModel};
use crate::{Pipeline, Runtime, digest};
pub use tensorlet_gpu::named::{from_safetensors, to_safetensors};

/// The value of `format` in `model.json`.
pub const FORMAT: &str = "tensorlet-model/1";
/// The params file (and blob role).
pub const PARAMS: &str = "params.safetensors";
/// The preprocessor-state file (and blob role).
pub const STATE: &str = "preprocessor.safetensors";
/// The metadata file (and blob role).
pub const META: &str = "model.json";

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
    /// A preprocessor's input columns (see [`crate::chain`]); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// The plugins of a saved model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// The (first) preprocessor.
    pub preprocessor: StageMeta,
    /// The preprocessors after the first, in order (a `[[preprocessor]]`
    /// chain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<StageMeta>,
    /// Trainer (absent when the predictor brings its own weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<StageMeta>,
    /// Predictor.
    pub predictor: StageMeta,
}

impl Stages {
    /// Every preprocessor, in order, with its section name.
    pub fn preprocessors(&self) -> Vec<(String, &StageMeta)> {
        std::iter::once(&self.preprocessor)
            .chain(&self.chain)
            .enumerate()
            .map(|(i, s)| (crate::pipeline::preprocessor_section(i), s))
            .collect()
    }

    /// Every stage, in order, with its section name: the preprocessors, the
    /// trainer (when there is one) and the predictor.
    pub fn all(&self) -> Vec<(String, &StageMeta)> {
        let mut v = self.preprocessors();
        if let Some(t) = &self.trainer {
            v.push(("trainer".into(), t));
        }
        v.push(("predictor".into(), &self.predictor));
        v
    }
}

/// Statistics of one input feature over the training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureStat {
    /// Mean.
    pub mean: f32,
    /// Population standard deviation.
    pub std: f32,
}

/// Per-feature mean and standard deviation of row-major data, over the
/// present values (a missing value, NaN, is left out; a column of nothing
/// but missing values has mean and std 0).
pub fn feature_stats(x: &[f32], features: usize) -> Vec<FeatureStat> {
    (0..features)
        .map(|c| {
            let col = || {
                x.iter()
                    .skip(c)
                    .step_by(features)
                    .filter(|v| !v.is_nan())
                    .map(|&v| f64::from(v))
            };
            let n = col().count().max(1) as f64;
            let mean = col().sum::<f64>() / n;
            let var = col().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            FeatureStat {
                mean: mean as f32,
                std: var.sqrt() as f32,
            }
        })
        .collect()
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
    /// The label column of the training data (regression: the first
    /// target's).
    pub label: String,
    /// A regression's target columns when there are several, in order (the
    /// first is `label`); absent for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// What it predicts: classes, or (regression) continuous targets.
    #[serde(default, skip_serializing_if = "is_classification")]
    pub task: Task,
    /// Number of classes (regression: of targets).
    pub classes: u32,
    /// Class names by index: learned from text labels, or as the pipeline
    /// declared them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// The input columns' types as training read them (categories in code
    /// order), so prediction input is encoded the same way. Absent in
    /// models from before typed columns: every input is numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<Column>>,
    /// The plugins.
    pub plugins: Stages,
    /// How it was trained.
    pub training: TrainingConfig,
    /// Rows used for training and validation.
    pub split: (usize, usize),
    /// The model's scores on the held-out test split (`test_fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<train::TestScores>,
    /// Metrics per epoch.
    pub metrics: Vec<EpochMetrics>,
    /// The epoch whose checkpoint the model is (absent: the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// Mean and standard deviation of each input feature in the training
    /// data, for drift detection when serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_stats: Option<Vec<FeatureStat>>,
    /// The deadline of a served request's plugin calls, from the
    /// pipeline's `[limits] serve_deadline` (absent: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_deadline: Option<String>,
    /// `sha256:` of `params.safetensors`.
    pub params_digest: String,
    /// `sha256:` of `preprocessor.safetensors`.
    pub state_digest: String,
}

fn is_classification(t: &Task) -> bool {
    *t == Task::Classification
}

impl ModelMeta {
    /// The metrics of the epoch the model was taken from.
    pub fn kept_metrics(&self) -> Option<&EpochMetrics> {
        match self.epoch {
            Some(e) => self.metrics.iter().find(|m| m.epoch == e),
            None => self.metrics.last(),
        }
    }

    /// The label columns: the regression targets, or the one label.
    pub fn label_columns(&self) -> Vec<String> {
        self.targets
            .clone()
            .unwrap_or_else(|| vec![self.label.clone()])
    }

    /// The validation accuracy of the epoch the model was taken from.
    pub fn val_accuracy(&self) -> Option<f32> {
        self.kept_metrics().and_then(|m| m.val_accuracy)
    }
}

/// Parses and checks `model.json`.
pub fn parse_meta(bytes: &[u8]) -> Result<ModelMeta, String> {
    let meta: ModelMeta = serde_json::from_slice(bytes)
        .map_err(|e| format!("model.json is not valid model metadata: {e}"))?;
    if meta.format != FORMAT {
        return Err(format!(
            "model.json has format `{}`; this tensorlet reads `{FORMAT}`",
            meta.format
        ));
    }
    Ok(meta)
}

fn stage_meta(s: &StagePlugin) -> StageMeta {
    StageMeta {
        name: s.plugin.name().to_string(),
        digest: s.plugin.digest().to_string(),
        config: serde_json::from_str(&s.config).expect("stage config is JSON"),
        columns: None,
    }
}

fn chain_meta(s: &ChainStage) -> StageMeta {
    StageMeta {
        columns: s.columns.clone(),
        ..stage_meta(&s.stage)
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
    let stages = plugins
        .preprocessors
        .plugins()
        .chain(&plugins.trainer)
        .chain([&plugins.predictor]);
    for s in stages {
        let hex = s.plugin.digest().trim_start_matches("sha256:");
        write(&components.join(format!("{hex}.wasm")), s.component.bytes())?;
    }
    let params = to_safetensors(device, &trained.params)?;
    let state = to_safetensors(device, &trained.state)?;
    write(&dir.join(PARAMS), &params)?;
    write(&dir.join(STATE), &state)?;
    let meta = ModelMeta {
        format: FORMAT.to_string(),
        name: pipeline.pipeline.name.clone(),
        description: pipeline.pipeline.description.clone(),
        tensorlet_version: env!("CARGO_PKG_VERSION").to_string(),
        feature_names: data.feature_names.clone(),
        label: data.label_name.clone(),
        targets: (data.target_names.len() > 1).then(|| data.target_names.clone()),
        task: trained.task,
        classes: trained.classes,
        class_names: data.class_names.clone(),
        schema: Some(data.schema.clone()),
        plugins: Stages {
            preprocessor: chain_meta(&plugins.preprocessors.stages[0]),
            chain: plugins.preprocessors.stages[1..]
                .iter()
                .map(chain_meta)
                .collect(),
            trainer: plugins.trainer.as_ref().map(stage_meta),
            predictor: stage_meta(&plugins.predictor),
        },
        training: pipeline.training.clone(),
        split: trained.split,
        test: trained.test.clone(),
        metrics: trained.history.clone(),
        epoch: Some(trained.epoch),
        feature_stats: Some(
            trained
                .feature_stats
                .clone()
                .unwrap_or_else(|| feature_stats(&data.x, data.features())),
        ),
        serve_deadline: pipeline.limits.serve_deadline.clone(),
        params_digest: digest(&params),
        state_digest: digest(&state),
    };
    let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
    write(&dir.join("model.json"), &json)?;
    Ok(meta)
}

/// A loaded model, ready to predict.
pub struct Model {
    /// Where it was loaded from (a directory, or a registry reference).
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: ModelMeta,
    /// The fitted state and trained params on the device, replaced by
    /// [`Model::rebind`].
    tensors: RwLock<Arc<Tensors>>,
    /// Host copies of them when the device is a GPU (on the CPU the tensors
    /// are host memory already).
    host: Option<Tensors>,
    preprocessors: Chain,
    predictor: StagePlugin,
}

/// A model's fitted state and trained params.
#[derive(Clone)]
struct Tensors {
    state: NamedTensors,
    params: NamedTensors,
}

/// Predictions for a batch of rows: classes with their probabilities, or
/// (regression) values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Predictions {
    /// Class index per row (empty for regression).
    pub labels: Vec<u32>,
    /// Class probabilities per row (empty for regression).
    pub probabilities: Vec<Vec<f32>>,
    /// Predicted targets per row (regression; empty for classification).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Vec<f32>>,
}

/// Turns a saved stage and its component bytes (already checked against the
/// digest in `model.json`) into a verified component: found verified in the
/// registry by digest, or let through by the audited `allow_unsigned`.
pub type ComponentFor<'a> = dyn Fn(&StageMeta, Vec<u8>) -> Result<VerifiedComponent> + 'a;

impl Model {
    /// Loads a model directory, verifying every file against its digest;
    /// `component` decides whether each component may run (see [`ComponentFor`]).
    pub fn load(rt: &Runtime, dir: &Path, component: &ComponentFor<'_>) -> Result<Model> {
        let bad = |message: String| RuntimeError::Model {
            path: dir.to_path_buf(),
            message,
        };
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| RuntimeError::io(p, e));
        let meta_bytes = read(dir.join("model.json"))?;
        let meta = parse_meta(&meta_bytes).map_err(bad)?;
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
        let params = checked(PARAMS, &meta.params_digest)?;
        let state = checked(STATE, &meta.state_digest)?;
        let stage = |s: &StageMeta| -> Result<VerifiedComponent> {
            let file = format!("components/{}.wasm", s.digest.trim_start_matches("sha256:"));
            component(s, checked(&file, &s.digest)?)
        };
        let pre = meta
            .plugins
            .preprocessors()
            .into_iter()
            .map(|(_, s)| stage(s))
            .collect::<Result<Vec<_>>>()?;
        let pred = stage(&meta.plugins.predictor)?;
        Model::from_parts(rt, dir.to_path_buf(), meta, &params, &state, pre, pred)
    }

    /// Assembles a model from its verified parts, checking that the params,
    /// the state and the components (the preprocessors in order, then the
    /// predictor) are the ones `meta` pins. `origin` names the model in
    /// messages (a directory or a registry reference).
    pub fn from_parts(
        rt: &Runtime,
        origin: PathBuf,
        meta: ModelMeta,
        params: &[u8],
        state: &[u8],
        preprocessors: Vec<VerifiedComponent>,
        predictor: VerifiedComponent,
    ) -> Result<Model> {
        let bad = |message: String| RuntimeError::Model {
            path: origin.clone(),
            message,
        };
        for (what, got, want) in [
            (PARAMS, digest(params), &meta.params_digest),
            (STATE, digest(state), &meta.state_digest),
        ] {
            if &got != want {
                return Err(bad(format!(
                    "{what} has digest {got} but the model pins {want}"
                )));
            }
        }
        if let Some(d) = &meta.serve_deadline {
            crate::parse_duration(d).map_err(|e| bad(format!("serve_deadline: {e}")))?;
        }
        let pinned = meta.plugins.preprocessors();
        if pinned.len() != preprocessors.len() {
            return Err(bad(format!(
                "the model has {} preprocessors but {} were given",
                pinned.len(),
                preprocessors.len()
            )));
        }
        let pairs = pinned
            .iter()
            .map(|(_, s)| *s)
            .zip(&preprocessors)
            .chain([(&meta.plugins.predictor, &predictor)]);
        for (stage, c) in pairs {
            let got = digest(c.bytes());
            if got != stage.digest {
                return Err(bad(format!(
                    "plugin `{}` has digest {got} but the model pins {}",
                    stage.name, stage.digest
                )));
            }
        }
        let load = |device: &Device| -> Result<Tensors> {
            Ok(Tensors {
                params: from_safetensors(device, params)
                    .map_err(|e| bad(format!("{PARAMS}: {e}")))?,
                state: from_safetensors(device, state).map_err(|e| bad(format!("{STATE}: {e}")))?,
            })
        };
        let device = rt.device();
        let tensors = load(device)?;
        let host = match device.info().kind {
            DeviceKind::Cpu => None,
            DeviceKind::Gpu => Some(load(&Device::cpu())?),
        };
        let stage = |s: &StageMeta, component: VerifiedComponent| -> Result<StagePlugin> {
            Ok(StagePlugin {
                plugin: rt.load(&component)?,
                component,
                config: s.config.to_string(),
            })
        };
        let stages = pinned
            .into_iter()
            .zip(preprocessors)
            .map(|((section, s), component)| {
                Ok(ChainStage {
                    stage: stage(s, component)?,
                    section,
                    columns: s.columns.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            preprocessors: Chain { stages },
            predictor: stage(&meta.plugins.predictor, predictor)?,
            dir: origin,
            meta,
            tensors: RwLock::new(Arc::new(tensors)),
            host,
        })
    }

    fn tensors(&self) -> Arc<Tensors> {
        self.tensors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The preprocessor's fitted state, on the device.
    pub fn state(&self) -> NamedTensors {
        self.tensors().state.clone()
    }

    /// The trained parameters, on the device.
    pub fn params(&self) -> NamedTensors {
        self.tensors().params.clone()
    }

    /// Uploads the state and params to `device` again, from the host copies
    /// the model keeps when it was loaded on a GPU: after that GPU failed and
    /// `device` was recovered, the old ones are gone. Nothing to do for a
    /// model loaded on the CPU, whose tensors are host memory.
    pub fn rebind(&self, device: &Device) -> Result<()> {
        let Some(from) = &self.host else {
            return Ok(());
        };
        let upload = |named: &NamedTensors| -> Result<NamedTensors> {
            named
                .iter()
                .map(|(name, t)| {
                    let data = device.to_vec(t)?;
                    Ok((name.clone(), device.from_vec(&t.shape().to_u32(), data)?))
                })
                .collect()
        };
        let fresh = Tensors {
            state: upload(&from.state)?,
            params: upload(&from.params)?,
        };
        *self.tensors.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// The model whose every plugin call (preprocessors and predictor) has
    /// the limits of `call` instead of the runtime's.
    pub fn with_call_limits(mut self, call: &crate::CallLimits) -> Self {
        for stage in &mut self.preprocessors.stages {
            stage.stage.plugin = stage.stage.plugin.with_call_limits(call);
        }
        self.predictor.plugin = self.predictor.plugin.with_call_limits(call);
        self
    }

    /// The process's budget of host tensor memory its calls charge.
    pub fn process_budget(&self) -> std::sync::Arc<crate::budget::MemoryBudget> {
        self.predictor.plugin.process_budget()
    }

    /// The deadline the model asks for when served (`[limits]
    /// serve_deadline`; checked when the model was loaded).
    pub fn serve_deadline(&self) -> Option<std::time::Duration> {
        let text = self.meta.serve_deadline.as_deref()?;
        crate::parse_duration(text).ok()
    }

    /// Predicts `rows` rows of raw features (row-major).
    pub fn predict(&self, device: &Device, x: Vec<f32>, rows: usize) -> Result<Predictions> {
        let t = self.tensors();
        let x = self.input(device, x, rows)?;
        let xt = self
            .preprocessors
            .transform(device, &self.meta.feature_names, &t.state, &x)?;
        let probs = self.predictor.plugin.predict_as(
            &self.predictor.config,
            &t.params,
            &xt,
            self.meta.task,
        )?;
        self.predictions(device, &probs, rows)
    }

    /// [`Model::predict`] with the plugins driven by an async executor
    /// (`Plugin::transform_in` and `Plugin::predict_in`, in one store): the
    /// same instances, limits and checks; must be polled inside a tokio
    /// runtime. The host tensor ops run inline on the polling thread, so use
    /// it where they do not wait on a GPU.
    pub async fn predict_async(
        &self,
        device: &Device,
        x: Vec<f32>,
        rows: usize,
    ) -> Result<Predictions> {
        let t = self.tensors();
        let x = self.input(device, x, rows)?;
        // One store for the request: the preprocessor's and the predictor's
        // instances are both fresh, but share the store's set-up.
        let mut store = self.preprocessors.first().plugin.store();
        let xt = self
            .preprocessors
            .transform_in(&mut store, device, &self.meta.feature_names, &t.state, &x)
            .await?;
        let probs = self
            .predictor
            .plugin
            .predict_in(
                &mut store,
                &self.predictor.config,
                &t.params,
                &xt,
                self.meta.task,
            )
            .await?;
        self.predictions(device, &probs, rows)
    }

    /// The raw features as a `[rows, features]` tensor, checked against the
    /// model's feature count.
    fn input(&self, device: &Device, x: Vec<f32>, rows: usize) -> Result<Tensor> {
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
        Ok(device.from_vec(&[rows as u32, want as u32], x)?)
    }

    /// Labels and per-class probabilities from the predictor's output.
    fn predictions(&self, device: &Device, probs: &Tensor, rows: usize) -> Result<Predictions> {
        let classes = self.meta.classes;
        if self.meta.task == Task::Regression {
            let v = train::check_predictions(&self.predictor.plugin, device, probs, rows, classes)?;
            return Ok(Predictions {
                labels: vec![],
                probabilities: vec![],
                values: v.chunks(classes as usize).map(<[f32]>::to_vec).collect(),
            });
        }
        let p = train::check_probabilities(&self.predictor.plugin, device, probs, rows, classes)?;
        let probabilities: Vec<Vec<f32>> =
            p.chunks(classes as usize).map(<[f32]>::to_vec).collect();
        Ok(Predictions {
            labels: probabilities
                .iter()
                .map(|r| train::argmax(r) as u32)
                .collect(),
            probabilities,
            values: vec![],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_stats_leave_missing_values_out() {
        let x = [1.0, f32::NAN, 3.0, 4.0, f32::NAN, f32::NAN];
        let s = feature_stats(&x, 2);
        assert_eq!(
            s[0],
            FeatureStat {
                mean: 2.0,
                std: 1.0
            }
        );
        assert_eq!(
            s[1],
            FeatureStat {
                mean: 4.0,
                std: 0.0
            }
        );
        let none = feature_stats(&[f32::NAN, f32::NAN], 1);
        assert_eq!(
            none[0],
            FeatureStat {
                mean: 0.0,
                std: 0.0
            }
        );
    }
}
