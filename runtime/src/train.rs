//! The training loop: fit the preprocessor, then epochs of shuffled
//! mini-batches through the trainer, with validation after each epoch.
//!
//! Deterministic for a given pipeline, data and seed: the split, the shuffles
//! and the initialisation all come from the seed through [`tensorlet_gpu::rng`],
//! and the CPU backend is bit-for-bit reproducible.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tensorlet_gpu::{Device, Tensor, rng};
use tensorlet_registry::VerifiedComponent;

use crate::chain::{Chain, ChainStage};
use crate::data::{ColumnType, Dataset};
use crate::error::{PluginFailure, Result, RuntimeError};
use crate::metrics;
use crate::pipeline::{Keep, PluginSource, TrainingConfig};
use crate::plugin::{DataSpec, NamedTensors, Plugin, Task};
use crate::{Pipeline, Runtime};

/// One stage's loaded plugin, its verified component and its JSON config.
pub struct StagePlugin {
    /// The loaded plugin.
    pub plugin: Plugin,
    /// The component, as verified and loaded (saved with the model).
    pub component: VerifiedComponent,
    /// Configuration as a JSON object string.
    pub config: String,
}

/// Turns a stage's source into a verified component: registry verification
/// for `ref`, and for `path`/`bundled` only the explicit, audited
/// `allow_unsigned` of local development.
pub type Resolver<'a> = dyn Fn(&PluginSource) -> Result<VerifiedComponent> + 'a;

/// The loaded plugins of a pipeline.
pub struct PipelinePlugins {
    /// Fit and transform features, in order.
    pub preprocessors: Chain,
    /// Initialises and steps parameters; absent when the predictor brings
    /// its own weights.
    pub trainer: Option<StagePlugin>,
    /// Predicts class probabilities.
    pub predictor: StagePlugin,
}

impl PipelinePlugins {
    /// Loads the plugins of `pipeline` (two without a trainer; a `[model]`
    /// is loaded as both trainer and predictor); `resolve` turns a source
    /// into a verified component. A trainer plugin's config gets the
    /// pipeline's `learning_rate` (a `model`'s does not: the host applies
    /// it).
    pub fn load(
        pipeline: &Pipeline,
        rt: &Runtime,
        resolve: &Resolver<'_>,
    ) -> Result<PipelinePlugins> {
        let stage = |section: &str, s: &crate::pipeline::Stage, config: String| {
            let component = resolve(&s.source())?;
            let plugin = rt.load(&component)?;
            let name = component.name().to_string();
            let (ok, iface) = match section {
                "preprocessor" => (plugin.is_preprocessor(), "tensorlet:ml/preprocess"),
                "trainer" => (
                    plugin.is_trainer(),
                    "tensorlet:ml/train (or tensorlet:ml/forward)",
                ),
                "model" => (
                    plugin.is_model(),
                    "tensorlet:ml/forward@0.2.0 (world `model`)",
                ),
                _ => (
                    plugin.is_predictor(),
                    "tensorlet:ml/predict (or tensorlet:ml/forward)",
                ),
            };
            if !ok {
                return Err(RuntimeError::Load {
                    plugin: name,
                    message: format!(
                        "it is named as the pipeline's [{section}] but does not export {iface}"
                    ),
                });
            }
            Ok(StagePlugin {
                plugin,
                component,
                config,
            })
        };
        let preprocessors = Chain {
            stages: pipeline
                .preprocessor
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Ok(ChainStage {
                        stage: stage("preprocessor", s, s.config_json())?,
                        section: crate::pipeline::preprocessor_section(i),
                        columns: s.columns.clone(),
                    })
                })
                .collect::<Result<_>>()?,
        };
        if let Some(m) = &pipeline.model {
            let trainer = stage("model", m, m.config_json())?;
            let predictor = stage("model", m, m.config_json())?;
            return Ok(PipelinePlugins {
                preprocessors,
                trainer: Some(trainer),
                predictor,
            });
        }
        let trainer = match &pipeline.trainer {
            None => None,
            Some(t) => {
                let loaded = stage("trainer", t, t.config_json())?;
                if loaded.plugin.is_model() {
                    Some(loaded)
                } else {
                    let mut trainer_config = t.config.clone();
                    trainer_config.insert(
                        "learning_rate".into(),
                        toml::Value::Float(f64::from(pipeline.training.learning_rate)),
                    );
                    Some(StagePlugin {
                        config: serde_json::to_string(&trainer_config).expect("TOML table is JSON"),
                        ..loaded
                    })
                }
            }
        };
        let predictor = pipeline.predictor_stage();
        Ok(PipelinePlugins {
            preprocessors,
            trainer,
            predictor: stage("predictor", predictor, predictor.config_json())?,
        })
    }
}

/// Metrics of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean of the step losses of the epoch.
    pub train_loss: f32,
    /// The task's loss on the validation split (absent without one):
    /// cross-entropy (log-loss) for classification, mean squared error for
    /// regression.
    pub val_loss: Option<f32>,
    /// Accuracy on the validation split (classification with one).
    pub val_accuracy: Option<f32>,
    /// The task's other validation metrics: `f1_macro` and (two classes)
    /// `auc` for classification; `rmse`, `mae` and `r2` for regression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val_metrics: BTreeMap<String, f32>,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Hears about training progress; every method has a do-nothing default.
pub trait Observer {
    /// Training starts.
    fn start(&mut self, _epochs: u32, _steps_per_epoch: u64) {}
    /// Training continues after these completed epochs.
    fn resumed(&mut self, _completed: &[EpochMetrics]) {}
    /// A step finished with this batch loss.
    fn step(&mut self, _epoch: u32, _loss: f32) {}
    /// An epoch finished.
    fn epoch(&mut self, _metrics: &EpochMetrics) {}
    /// The preprocessor was fitted (not called when resuming). An error
    /// stops training.
    fn fitted(&mut self, _state: &NamedTensors) -> Result<()> {
        Ok(())
    }
    /// Something the person training should know (a preprocessor fitted on
    /// a sample, a pass over the data starting).
    fn note(&mut self, _message: &str) {}
    /// The params after an epoch, with its metrics: store a checkpoint here.
    /// Called after [`Observer::epoch`]; an error stops training.
    fn checkpoint(&mut self, _metrics: &EpochMetrics, _params: &NamedTensors) -> Result<()> {
        Ok(())
    }
    /// Polled between steps; `true` stops training with [`RuntimeError::Interrupted`].
    fn interrupted(&self) -> bool {
        false
    }
}

impl Observer for () {}

/// What training produced.
#[derive(Debug)]
pub struct TrainedModel {
    /// The preprocessor's fitted state.
    pub state: NamedTensors,
    /// The kept checkpoint's parameters (and optimizer state): see
    /// [`TrainingConfig::keep`].
    pub params: NamedTensors,
    /// The epoch whose parameters `params` are.
    pub epoch: u32,
    /// The final epoch's parameters.
    pub last_params: NamedTensors,
    /// Metrics per epoch.
    pub history: Vec<EpochMetrics>,
    /// Features per row after preprocessing.
    pub features: u32,
    /// Number of classes (regression: of targets).
    pub classes: u32,
    /// What was learned.
    pub task: Task,
    /// Rows in the training and validation splits.
    pub split: (usize, usize),
    /// The kept model's scores on the test split, when there is one.
    pub test: Option<TestScores>,
    /// Statistics of the input features over the data, when training
    /// computed them (streaming); else they come from the dataset in memory.
    pub feature_stats: Option<Vec<crate::model::FeatureStat>>,
}

/// A held-out test split's scores: reported, never used to select.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestScores {
    /// Rows in the test split.
    pub rows: usize,
    /// The task's loss and metrics, by the names `tensorlet eval` uses:
    /// `log_loss`, `accuracy`, `f1_macro`, `auc` (two classes); `mse`,
    /// `rmse`, `mae`, `r2`.
    pub metrics: BTreeMap<String, f32>,
}

impl TestScores {
    pub(crate) fn new(task: Task, rows: usize, e: Evaluation) -> Self {
        let loss = match task {
            Task::Classification => "log_loss",
            Task::Regression => "mse",
        };
        let mut metrics = e.metrics;
        metrics.insert(loss.to_string(), e.loss);
        if let Some(a) = e.accuracy {
            metrics.insert("accuracy".to_string(), a);
        }
        TestScores { rows, metrics }
    }
}

const TEST_STREAM: u64 = 0x7e57_0000_0000_0001;

/// Splits row indices into (test, validation, training): the test split
/// first (`test_fraction` of the rows, stratified, from its own stream of
/// the seed), then validation from the rest (`validation_fraction` of all
/// rows). Without a test split this is exactly [`stratified_split`].
pub fn three_way_split(strata: &[u32], cfg: &TrainingConfig) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    if cfg.test_fraction <= 0.0 {
        let (val, train) = stratified_split(strata, cfg.validation_fraction, cfg.seed);
        return (Vec::new(), val, train);
    }
    let (test, rest) = stratified_split(strata, cfg.test_fraction, cfg.seed ^ TEST_STREAM);
    let rest_strata: Vec<u32> = rest.iter().map(|&i| strata[i as usize]).collect();
    let fraction = cfg.validation_fraction / (1.0 - cfg.test_fraction);
    let (val, train) = stratified_split(&rest_strata, fraction, cfg.seed);
    let back = |ix: Vec<u32>| ix.into_iter().map(|i| rest[i as usize]).collect();
    (test, back(val), back(train))
}

/// A permutation of 0..n from `seed` (Fisher–Yates over the counter-based generator).
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng::word(seed, i as u32) as usize % (i + 1);
        p.swap(i, j);
    }
    p
}

const SPLIT_STREAM: u64 = 0x5157_4c17_0000_0001;

/// Splits row indices into (validation, training), stratified by label: each
/// class contributes `round(fraction × its rows)` rows to validation (at least
/// one row overall when `fraction > 0`), chosen in a seeded random order. Both
/// lists keep that random order.
pub fn stratified_split(labels: &[u32], fraction: f32, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let order = permutation(labels.len(), seed ^ SPLIT_STREAM);
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut quota = vec![0usize; classes];
    for &l in labels {
        quota[l as usize] += 1;
    }
    for q in &mut quota {
        *q = (*q as f64 * f64::from(fraction)).round() as usize;
    }
    if fraction > 0.0 && quota.iter().all(|&q| q == 0) && !labels.is_empty() {
        quota[labels[order[0] as usize] as usize] = 1;
    }
    let (mut val, mut train) = (Vec::new(), Vec::new());
    for i in order {
        let q = &mut quota[labels[i as usize] as usize];
        if *q > 0 {
            *q -= 1;
            val.push(i);
        } else {
            train.push(i);
        }
    }
    (val, train)
}

pub(crate) fn epoch_stream(seed: u64, epoch: u32) -> u64 {
    seed ^ (0xe90c_0000_0000_0000 | u64::from(epoch))
}

/// Checks a predictor's output: [rows, classes] and finite.
pub fn check_probabilities(
    plugin: &Plugin,
    device: &Device,
    probs: &Tensor,
    rows: usize,
    classes: u32,
) -> Result<Vec<f32>> {
    check_output(
        plugin,
        device,
        probs,
        rows,
        classes,
        ("probabilities", "probability", ""),
    )
}

/// Checks a regression predictor's output: [rows, targets] and finite.
pub fn check_predictions(
    plugin: &Plugin,
    device: &Device,
    out: &Tensor,
    rows: usize,
    targets: u32,
) -> Result<Vec<f32>> {
    let words = ("predictions", "prediction", "; try a lower learning rate");
    check_output(plugin, device, out, rows, targets, words)
}

/// A predictor's output as `[rows, width]` finite values; `words` name them
/// (plural, singular) and add a hint to the non-finite error.
fn check_output(
    plugin: &Plugin,
    device: &Device,
    out: &Tensor,
    rows: usize,
    width: u32,
    (plural, one, hint): (&str, &str, &str),
) -> Result<Vec<f32>> {
    let bad = |m: String| RuntimeError::Plugin {
        plugin: plugin.name().to_string(),
        call: "predict",
        failure: PluginFailure::BadOutput(m),
    };
    let non_finite = |m: String| RuntimeError::Plugin {
        plugin: plugin.name().to_string(),
        call: "predict",
        failure: PluginFailure::NonFinite(m),
    };
    if out.shape().dims() != [rows, width as usize] {
        return Err(bad(format!(
            "returned {plural} of shape {} for {rows} rows; expected [{rows}, {width}]",
            out.shape()
        )));
    }
    let v = device.to_vec(out)?;
    if let Some(i) = v.iter().position(|p| !p.is_finite()) {
        return Err(non_finite(format!(
            "returned a non-finite {one} ({}) in row {}{hint}",
            v[i],
            i / width.max(1) as usize
        )));
    }
    Ok(v)
}

/// A transform's output, checked to keep one row per input row.
pub fn check_transformed(stage: &StagePlugin, x: &Tensor, out: Tensor) -> Result<Tensor> {
    let rows = x.shape().dims()[0];
    match out.shape().dims() {
        [r, _] if *r == rows => Ok(out),
        _ => Err(RuntimeError::Plugin {
            plugin: stage.plugin.name().to_string(),
            call: "transform",
            failure: PluginFailure::BadOutput(format!(
                "returned shape {} for input {}; expected [{rows}, features]",
                out.shape(),
                x.shape()
            )),
        }),
    }
}

fn check_finite_params(
    plugin: &Plugin,
    device: &Device,
    params: &NamedTensors,
    epoch: u32,
) -> Result<()> {
    for (name, t) in params {
        if device.to_vec(t)?.iter().any(|v| !v.is_finite()) {
            return Err(RuntimeError::Plugin {
                plugin: plugin.name().to_string(),
                call: "step",
                failure: PluginFailure::BadOutput(format!(
                    "produced non-finite values in parameter `{name}` during epoch {epoch}; \
                     try a lower learning rate"
                )),
            });
        }
    }
    Ok(())
}

/// Where an interrupted run left off: the state it fitted and the params,
/// metrics and kept checkpoint of its completed epochs.
#[derive(Debug)]
pub struct Resume {
    /// The fitted preprocessor state.
    pub state: NamedTensors,
    /// The params after the last completed epoch.
    pub params: NamedTensors,
    /// Metrics of the completed epochs, in order (epochs 1..=n).
    pub history: Vec<EpochMetrics>,
    /// The params of the epoch with the lowest validation loss so far, if
    /// that is not the last one; `None` means the last one.
    pub best: Option<(u32, NamedTensors)>,
}

/// The epoch with the lowest validation loss (the earliest on ties), or
/// `None` when no epoch has one.
pub fn best_epoch(history: &[EpochMetrics]) -> Option<u32> {
    let mut best: Option<(u32, f32)> = None;
    for m in history {
        if let Some(l) = m.val_loss
            && best.is_none_or(|(_, b)| l < b)
        {
            best = Some((m.epoch, l));
        }
    }
    best.map(|(e, _)| e)
}

/// Trains a pipeline on a dataset.
pub fn train(
    device: &Device,
    plugins: &PipelinePlugins,
    data: &Dataset,
    cfg: &TrainingConfig,
    classes: u32,
    observer: &mut dyn Observer,
) -> Result<TrainedModel> {
    train_from(device, plugins, data, cfg, classes, observer, None)
}

/// Trains a pipeline on a dataset, from scratch or continuing after the
/// completed epochs of `resume`. A resumed run ends with exactly the params
/// an uninterrupted one would have: the split, each epoch's shuffle and the
/// step counter depend only on the seed and the epoch number.
pub fn train_from(
    device: &Device,
    plugins: &PipelinePlugins,
    data: &Dataset,
    cfg: &TrainingConfig,
    classes: u32,
    observer: &mut dyn Observer,
    resume: Option<Resume>,
) -> Result<TrainedModel> {
    cfg.validate().map_err(|m| RuntimeError::Data {
        path: data.path.clone(),
        line: None,
        column: None,
        message: m,
    })?;
    let n = data.rows();
    plugins.preprocessors.check_columns(&data.feature_names)?;
    check_encodable(data, &plugins.preprocessors)?;
    let task = data.task;
    // Classes are split stratified; regression rows as one stratum.
    let strata = match task {
        Task::Classification => std::borrow::Cow::Borrowed(&data.y),
        Task::Regression => std::borrow::Cow::Owned(vec![0; n]),
    };
    let (test_idx, val_idx, train_idx) = three_way_split(&strata, cfg);
    if train_idx.is_empty() {
        return Err(RuntimeError::Data {
            path: data.path.clone(),
            line: None,
            column: None,
            message: format!(
                "{n} rows are too few to hold out {} for validation and still train",
                val_idx.len()
            ),
        });
    }
    let (val_idx, train_idx) = (val_idx.as_slice(), train_idx.as_slice());
    let val_n = val_idx.len();

    let feats = data.features() as u32;
    let x_all = device.from_vec(&[n as u32, feats], data.x.clone())?;
    let labels = data.label_values();
    let y_all = match task {
        Task::Classification => device.from_vec(&[n as u32], labels.clone())?,
        Task::Regression => device.from_vec(&[n as u32, classes], labels.clone())?,
    };
    let width = label_width(task, classes);
    let x_train_raw = device.gather_rows(&x_all, train_idx)?;
    let y_train = device.gather_rows(&y_all, train_idx)?;
    let x_val_raw = device.gather_rows(&x_all, val_idx)?;
    let y_val = Labels::pick(task, &labels, width, val_idx);

    let pre = &plugins.preprocessors;
    let names = &data.feature_names;
    let (state, resumed) = match resume {
        Some(r) => (r.state.clone(), Some(r)),
        None => {
            let state = pre.fit(device, names, &x_train_raw)?;
            observer.fitted(&state)?;
            (state, None)
        }
    };
    let x_train = pre.transform(device, names, &state, &x_train_raw)?;
    let x_val = if val_n > 0 {
        Some(pre.transform(device, names, &state, &x_val_raw)?)
    } else {
        None
    };
    let features = x_train.shape().dims()[1] as u32;
    check_finite_features(device, pre, data, &x_train)?;
    // The test split, scored once with the params that are kept.
    let score_test = |params: &NamedTensors| -> Result<Option<TestScores>> {
        if test_idx.is_empty() {
            return Ok(None);
        }
        let x = pre.transform(
            device,
            names,
            &state,
            &device.gather_rows(&x_all, &test_idx)?,
        )?;
        let y = Labels::pick(task, &labels, width, &test_idx);
        let e = evaluate(device, &plugins.predictor, params, &x, &y, classes)?;
        Ok(Some(TestScores::new(task, test_idx.len(), e)))
    };

    let Some(_) = &plugins.trainer else {
        let mut trained = evaluate_only(
            device,
            plugins,
            state.clone(),
            (&x_train, &y_train, x_val.as_ref(), &y_val),
            classes,
            observer,
        )?;
        trained.test = score_test(&trained.params)?;
        return Ok(trained);
    };
    let mut batches = InMemory {
        device,
        predictor: &plugins.predictor,
        x_train: &x_train,
        y_train: &y_train,
        x_val: x_val.as_ref(),
        y_val: &y_val,
        classes,
        seed: cfg.seed,
        batch_size: cfg.batch_size as usize,
        test: &score_test,
    };
    let shape = Shape {
        features,
        classes,
        task,
        split: (train_idx.len(), val_n),
    };
    run_epochs(
        device,
        plugins,
        cfg,
        shape,
        (state.clone(), resumed),
        observer,
        &mut batches,
        &data.path,
    )
}

/// Where the epochs' mini-batches and the evaluations come from: the
/// preprocessed splits in memory, or the file read in chunks
/// ([`crate::stream`]).
pub(crate) trait Batches {
    /// Calls `step` with each mini-batch of epoch `epoch` (1-based), in
    /// order: preprocessed features and their labels.
    fn epoch(
        &mut self,
        epoch: u32,
        step: &mut dyn FnMut(&Tensor, &Tensor) -> Result<()>,
    ) -> Result<()>;
    /// The predictor on the validation split with `params`, when there is one.
    fn validate(&mut self, params: &NamedTensors) -> Result<Option<Evaluation>>;
    /// The test split's scores with the kept `params`, when there is one.
    fn test(&mut self, params: &NamedTensors) -> Result<Option<TestScores>>;
}

/// The preprocessed splits in memory.
struct InMemory<'a> {
    device: &'a Device,
    predictor: &'a StagePlugin,
    x_train: &'a Tensor,
    y_train: &'a Tensor,
    x_val: Option<&'a Tensor>,
    y_val: &'a Labels,
    classes: u32,
    seed: u64,
    batch_size: usize,
    #[allow(clippy::type_complexity, reason = "one closure")]
    test: &'a dyn Fn(&NamedTensors) -> Result<Option<TestScores>>,
}

impl Batches for InMemory<'_> {
    fn epoch(
        &mut self,
        epoch: u32,
        step: &mut dyn FnMut(&Tensor, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let n = self.x_train.shape().dims()[0];
        let perm = permutation(n, epoch_stream(self.seed, epoch));
        for batch in perm.chunks(self.batch_size) {
            let xb = self.device.gather_rows(self.x_train, batch)?;
            let yb = self.device.gather_rows(self.y_train, batch)?;
            step(&xb, &yb)?;
        }
        Ok(())
    }

    fn validate(&mut self, params: &NamedTensors) -> Result<Option<Evaluation>> {
        self.x_val
            .map(|xv| {
                evaluate(
                    self.device,
                    self.predictor,
                    params,
                    xv,
                    self.y_val,
                    self.classes,
                )
            })
            .transpose()
    }

    fn test(&mut self, params: &NamedTensors) -> Result<Option<TestScores>> {
        (self.test)(params)
    }
}

/// What training learns the shape of: features after preprocessing,
/// classes (regression: targets), the task and the split's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub features: u32,
    pub classes: u32,
    pub task: Task,
    /// Rows in the training and validation splits.
    pub split: (usize, usize),
}

/// The epochs of a run with a trainer: initialises (or resumes) the
/// params, takes the steps `batches` gives, validates after each epoch and
/// keeps the checkpoint `cfg.keep` says.
#[allow(clippy::too_many_arguments, reason = "the parts of a run")]
pub(crate) fn run_epochs(
    device: &Device,
    plugins: &PipelinePlugins,
    cfg: &TrainingConfig,
    shape: Shape,
    (state, resumed): (NamedTensors, Option<Resume>),
    observer: &mut dyn Observer,
    batches: &mut dyn Batches,
    path: &std::path::Path,
) -> Result<TrainedModel> {
    let Some(tr) = &plugins.trainer else {
        return Err(RuntimeError::Data {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: "this pipeline has no trainer to run epochs with".into(),
        });
    };
    let Shape {
        features,
        classes,
        task,
        split,
    } = shape;
    let train_n = split.0;
    let bs = cfg.batch_size as usize;
    let steps_per_epoch = train_n.div_ceil(bs) as u64;
    let config_error = |message: String| RuntimeError::Data {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message,
    };
    // A `model` plugin is trained by the host, with [training]'s optimizer;
    // a trainer plugin brings its own update.
    if task == Task::Regression && tr.plugin.abi() == crate::plugin::Abi::V0_1 {
        return Err(config_error(format!(
            "the trainer `{}` is built for tensorlet:ml@0.1.0, whose data-spec has no task; \
             regression needs a plugin built for tensorlet:ml@0.2.0 (rebuild it with a current \
             SDK)",
            tr.plugin.name()
        )));
    }
    let host = if tr.plugin.is_model() {
        let mut h = cfg.host_training(steps_per_epoch).map_err(config_error)?;
        h.task = task;
        Some(h)
    } else {
        if cfg.optimizer.is_some() || cfg.schedule.is_some() {
            return Err(config_error(format!(
                "[training] optimizer and schedule configure how the host trains a model \
                 plugin, but the trainer `{}` writes its own updates; remove them, or set \
                 the trainer's own settings in its config",
                tr.plugin.name()
            )));
        }
        None
    };
    let (mut params, mut history, mut best) = match resumed {
        Some(r) => {
            if r.history.len() > cfg.epochs as usize {
                return Err(RuntimeError::Data {
                    path: path.to_path_buf(),
                    line: None,
                    column: None,
                    message: format!(
                        "the run already completed {} epochs, more than the {} it is configured for",
                        r.history.len(),
                        cfg.epochs
                    ),
                });
            }
            let last = r.history.last().map_or(0, |m| m.epoch);
            let best = match (best_epoch(&r.history), r.best) {
                (Some(e), Some((be, p))) if e == be => Some((e, p)),
                (Some(e), _) if e == last => Some((e, r.params.clone())),
                (Some(e), _) => {
                    return Err(RuntimeError::Data {
                        path: path.to_path_buf(),
                        line: None,
                        column: None,
                        message: format!(
                            "resuming needs the params of epoch {e}, the best so far, and they were not given"
                        ),
                    });
                }
                (None, _) => None,
            };
            (r.params, r.history, best)
        }
        None => {
            let mut params = tr.plugin.init(
                &tr.config,
                DataSpec {
                    features,
                    outputs: classes,
                    task,
                    seed: cfg.seed,
                },
            )?;
            if let Some(h) = &host {
                let state = h.optimizer.init_state(device, &params)?;
                params.extend(state);
            }
            (params, Vec::with_capacity(cfg.epochs as usize), None)
        }
    };
    let mut best_loss = best
        .as_ref()
        .and_then(|(e, _)| history[*e as usize - 1].val_loss)
        .unwrap_or(f32::INFINITY);
    let done = history.len() as u32;
    observer.start(cfg.epochs, steps_per_epoch);
    if done > 0 {
        observer.resumed(&history);
    }
    let mut global_step = u64::from(done) * steps_per_epoch;
    for epoch in done + 1..=cfg.epochs {
        let started = Instant::now();
        let mut loss_sum = 0.0f64;
        batches.epoch(epoch, &mut |xb, yb| {
            if observer.interrupted() {
                return Err(RuntimeError::Interrupted);
            }
            let out = match &host {
                Some(h) => tr
                    .plugin
                    .learn(&tr.config, &params, xb, yb, global_step, h)?,
                None => tr.plugin.step(&tr.config, &params, xb, yb, global_step)?,
            };
            if let Some(norm) = out.grad_norm
                && !norm.is_finite()
            {
                return Err(RuntimeError::Plugin {
                    plugin: tr.plugin.name().to_string(),
                    call: "forward",
                    failure: PluginFailure::BadOutput(format!(
                        "gave non-finite gradients (global norm {norm}) at epoch {epoch}, step \
                         {global_step}; try a lower learning rate, or [training.optimizer] \
                         clip_grad_norm"
                    )),
                });
            }
            if !out.loss.is_finite() {
                return Err(RuntimeError::Plugin {
                    plugin: tr.plugin.name().to_string(),
                    call: "step",
                    failure: PluginFailure::BadOutput(format!(
                        "returned a non-finite loss ({}) at epoch {epoch}, step {global_step}; \
                         try a lower learning rate",
                        out.loss
                    )),
                });
            }
            params = out.params;
            loss_sum += f64::from(out.loss);
            global_step += 1;
            observer.step(epoch, out.loss);
            Ok(())
        })?;
        check_finite_params(&tr.plugin, device, &params, epoch)?;
        let val = batches.validate(&params)?;
        let m = EpochMetrics::new(
            epoch,
            (loss_sum / steps_per_epoch.max(1) as f64) as f32,
            val,
            started.elapsed().as_secs_f64(),
        );
        observer.epoch(&m);
        observer.checkpoint(&m, &params)?;
        // Strictly lower: the earliest epoch wins ties, as in `best_epoch`.
        if let Some(l) = m.val_loss
            && l < best_loss
        {
            best_loss = l;
            best = Some((epoch, params.clone()));
        }
        history.push(m);
    }
    let last_epoch = history.last().map_or(0, |m| m.epoch);
    let (epoch, kept) = match (cfg.keep, best) {
        (Keep::Best, Some((e, p))) => (e, p),
        _ => (last_epoch, params.clone()),
    };
    let test = batches.test(&kept)?;
    Ok(TrainedModel {
        state,
        params: kept,
        epoch,
        last_params: params,
        history,
        features,
        classes,
        task,
        split,
        test,
        feature_stats: None,
    })
}

/// A pipeline without a trainer: its predictor brings its own weights, so
/// "training" fits the preprocessor (done by the caller) and evaluates the
/// predictor once, as epoch 1 with empty params.
fn evaluate_only(
    device: &Device,
    plugins: &PipelinePlugins,
    state: NamedTensors,
    (x_train, y_train, x_val, y_val): (&Tensor, &Tensor, Option<&Tensor>, &Labels),
    classes: u32,
    observer: &mut dyn Observer,
) -> Result<TrainedModel> {
    let started = Instant::now();
    observer.start(1, 1);
    let params: NamedTensors = Vec::new();
    let task = y_val.task();
    let width = label_width(task, classes);
    let y_train = Labels::pick(task, &device.to_vec(y_train)?, width, &all_rows(x_train));
    let train_loss = evaluate(
        device,
        &plugins.predictor,
        &params,
        x_train,
        &y_train,
        classes,
    )?
    .loss;
    let val = match x_val {
        Some(xv) => Some(evaluate(
            device,
            &plugins.predictor,
            &params,
            xv,
            y_val,
            classes,
        )?),
        None => None,
    };
    let m = EpochMetrics::new(1, train_loss, val, started.elapsed().as_secs_f64());
    observer.step(1, train_loss);
    observer.epoch(&m);
    observer.checkpoint(&m, &params)?;
    let features = x_train.shape().dims()[1] as u32;
    Ok(TrainedModel {
        state,
        params: params.clone(),
        epoch: 1,
        last_params: params,
        history: vec![m],
        features,
        classes,
        task,
        split: (y_train.len(), y_val.len()),
        test: None,
        feature_stats: None,
    })
}

fn all_rows(x: &Tensor) -> Vec<u32> {
    (0..x.shape().dims()[0] as u32).collect()
}

/// The predictor's loss and metrics on some preprocessed rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Log-loss (classification) or mean squared error (regression).
    pub loss: f32,
    /// Accuracy (classification).
    pub accuracy: Option<f32>,
    /// The other metrics (see [`EpochMetrics::val_metrics`]).
    pub metrics: BTreeMap<String, f32>,
}

impl EpochMetrics {
    /// An epoch's metrics from its mean training loss and its validation
    /// [`Evaluation`], if there was a validation split.
    pub fn new(epoch: u32, train_loss: f32, val: Option<Evaluation>, seconds: f64) -> Self {
        let (val_loss, val_accuracy, val_metrics) = match val {
            Some(e) => (Some(e.loss), e.accuracy, e.metrics),
            None => (None, None, BTreeMap::new()),
        };
        EpochMetrics {
            epoch,
            train_loss,
            val_loss,
            val_accuracy,
            val_metrics,
            seconds,
        }
    }
}

/// Evaluates the predictor on preprocessed rows: class probabilities
/// scored against classes, or predictions against regression targets.
pub fn evaluate(
    device: &Device,
    predictor: &StagePlugin,
    params: &NamedTensors,
    x: &Tensor,
    y: &Labels,
    classes: u32,
) -> Result<Evaluation> {
    let p = predicted(device, predictor, params, x, y.task(), classes)?;
    Ok(score(&p, y, classes))
}

/// The predictor's checked output for preprocessed rows `x`: class
/// probabilities or regression predictions, `[rows, classes]` row-major.
pub(crate) fn predicted(
    device: &Device,
    predictor: &StagePlugin,
    params: &NamedTensors,
    x: &Tensor,
    task: Task,
    classes: u32,
) -> Result<Vec<f32>> {
    let rows = x.shape().dims()[0];
    let out = predictor
        .plugin
        .predict_as(&predictor.config, params, x, task)?;
    match task {
        Task::Classification => check_probabilities(&predictor.plugin, device, &out, rows, classes),
        Task::Regression => check_predictions(&predictor.plugin, device, &out, rows, classes),
    }
}

/// The task's loss and metrics of predictions `p` (see [`predicted`]).
pub(crate) fn score(p: &[f32], y: &Labels, classes: u32) -> Evaluation {
    match y {
        Labels::Classes(y) => {
            let mut m = metrics::classification(p, y, classes as usize);
            let loss = m.remove("log_loss").unwrap_or(f32::NAN);
            let accuracy = m.remove("accuracy");
            Evaluation {
                loss,
                accuracy,
                metrics: m,
            }
        }
        Labels::Targets { values, width } => {
            let mut m = metrics::regression(p, values, *width);
            let loss = m.remove("mse").unwrap_or(f32::NAN);
            Evaluation {
                loss,
                accuracy: None,
                metrics: m,
            }
        }
    }
}

/// Refuses categorical feature columns that no preprocessor names: a
/// category's code is an index, not a quantity, so a stage must encode it
/// (`one-hot`, `ordinal`) rather than scale it with the numbers.
pub(crate) fn check_encodable(data: &Dataset, chain: &Chain) -> Result<()> {
    let named = |c: &str| {
        chain.stages.iter().any(|s| {
            s.columns
                .as_ref()
                .is_some_and(|cols| cols.iter().any(|n| n == c))
        })
    };
    let cats: Vec<&str> = data
        .schema
        .iter()
        .filter(|c| matches!(c.kind, ColumnType::Categorical { .. }) && !named(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    if cats.is_empty() {
        return Ok(());
    }
    let (s, them) = if cats.len() > 1 {
        ("s", "them")
    } else {
        ("", "it")
    };
    Err(RuntimeError::Data {
        path: data.path.clone(),
        line: None,
        column: None,
        message: format!(
            "column{s} `{}` hold{} text (categories), and no preprocessor names {them} in its \
             `columns`; encode {them} with a stage such as\n\n  [[preprocessor]]\n  bundled = \
             \"one-hot\"\n  columns = [\"{}\"]\n\nor leave {them} out with [data] drop",
            cats.join("`, `"),
            if cats.len() > 1 { "" } else { "s" },
            cats.join("\", \""),
        ),
    })
}

/// Refuses preprocessed features that are not finite: missing values that no
/// stage filled in.
pub(crate) fn check_finite_features(
    device: &Device,
    pre: &Chain,
    data: &Dataset,
    x: &Tensor,
) -> Result<()> {
    let width = x.shape().dims()[1];
    let v = device.to_vec(x)?;
    let Some(i) = v.iter().position(|f| !f.is_finite()) else {
        return Ok(());
    };
    let col = i % width.max(1);
    let missing: Vec<String> = data
        .schema
        .iter()
        .filter(|c| c.missing > 0)
        .map(|c| format!("`{}` ({})", c.name, c.missing))
        .collect();
    let named = if pre.is_plain() && width == data.features() {
        format!("column `{}`", data.feature_names[col])
    } else {
        format!("output column {col}")
    };
    Err(RuntimeError::Data {
        path: data.path.clone(),
        line: None,
        column: None,
        message: if missing.is_empty() {
            format!(
                "the preprocessing `{}` gave a non-finite value ({}) in {named}",
                pre.describe(),
                v[i]
            )
        } else {
            format!(
                "after the preprocessing `{}`, {named} still holds a missing value; missing \
                 values by column: {}; fill them in (an `imputer` stage), or leave those \
                 columns out with [data] drop",
                pre.describe(),
                missing.join(", ")
            )
        },
    })
}

/// Label values per row: 1 (a class index) for classification, the number
/// of targets for regression.
pub(crate) fn label_width(task: Task, classes: u32) -> usize {
    match task {
        Task::Classification => 1,
        Task::Regression => classes as usize,
    }
}

/// Index of the first largest value.
pub use metrics::argmax;
pub use tensorlet_formats::task::Labels;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_permutations() {
        let a = permutation(100, 1);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, permutation(100, 1));
        assert_ne!(a, permutation(100, 2));
        assert!(permutation(0, 1).is_empty());
    }

    #[test]
    fn a_test_split_comes_first_and_is_disjoint() {
        let labels: Vec<u32> = (0..100).map(|i| if i < 60 { 0 } else { 1 }).collect();
        let cfg = TrainingConfig {
            validation_fraction: 0.2,
            test_fraction: 0.1,
            seed: 5,
            ..TrainingConfig::default()
        };
        let (test, val, train) = three_way_split(&labels, &cfg);
        assert_eq!((test.len(), val.len(), train.len()), (10, 20, 70));
        // Stratified: 60 % of each split is class 0.
        let zeros = |ix: &[u32]| ix.iter().filter(|&&i| labels[i as usize] == 0).count();
        assert_eq!((zeros(&test), zeros(&val)), (6, 12));
        let mut all: Vec<u32> = test.iter().chain(&val).chain(&train).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Without a test split, the split is the one runs always had.
        let plain = TrainingConfig {
            test_fraction: 0.0,
            ..cfg.clone()
        };
        let (none, v, t) = three_way_split(&labels, &plain);
        assert!(none.is_empty());
        assert_eq!((v, t), stratified_split(&labels, 0.2, 5));
    }

    #[test]
    fn split_is_stratified_and_complete() {
        let labels: Vec<u32> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let (val, train) = stratified_split(&labels, 0.25, 3);
        assert_eq!(val.len(), 25);
        assert_eq!(val.iter().filter(|&&i| labels[i as usize] == 1).count(), 5);
        let mut all: Vec<u32> = val.iter().chain(&train).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(stratified_split(&labels, 0.25, 3), (val, train));
        let (v, t) = stratified_split(&[0, 1], 0.1, 1);
        assert_eq!((v.len(), t.len()), (1, 1));
        assert!(stratified_split(&labels, 0.0, 1).0.is_empty());
    }
}
