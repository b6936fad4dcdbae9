//! The pipeline file: which plugins, with what configuration, trained how.
//!
//! ```toml
//! [pipeline]
//! name = "iris"
//! description = "Softmax regression on Fisher's iris"
//!
//! [data]                       # optional
//! label = "species"            # default: the last column
//! class_names = ["setosa", "versicolor", "virginica"]
//!
//! [preprocessor]
//! bundled = "standardize"      # or: path = "plugins/standardize.wasm"
//!
//! [trainer]
//! bundled = "softmax-regression"
//! config = { l2 = 0.0 }        # any table; passed to the plugin as JSON
//!
//! [predictor]
//! bundled = "softmax-regression"
//!
//! [training]
//! epochs = 100
//! batch_size = 16
//! learning_rate = 0.1
//! seed = 42
//! validation_fraction = 0.2
//! keep = "best"              # or "last": which epoch becomes the model
//! ```
//!
//! Several preprocessors make a chain, each on the columns it names (as
//! scikit-learn's `ColumnTransformer` inside a `Pipeline`): a stage's output
//! columns take the place of its input columns, the others pass through, and
//! the next stage sees the result (see `docs/data.md`).
//!
//! ```toml
//! [[preprocessor]]
//! bundled = "imputer"
//! columns = ["sex"]
//! config = { strategy = "most_frequent" }
//!
//! [[preprocessor]]
//! bundled = "one-hot"
//! columns = ["island", "sex"]
//! ```
//!
//! A `model` plugin (only its forward pass; ABI 0.2) replaces `[trainer]` and
//! `[predictor]` with one `[model]` section, and the host trains it with the
//! optimizer and learning-rate schedule of `[training]`:
//!
//! ```toml
//! [model]
//! bundled = "mlp"
//! config = { hidden = [64] }
//!
//! [training]
//! learning_rate = 0.005
//! optimizer = "adam"           # or a table: [training.optimizer] name = "sgd", momentum = 0.9
//! schedule = "cosine"          # or a table: [training.schedule] name = "step", every_epochs = 10
//! ```
//!
//! Unknown keys are errors, so a typo never turns into a silent default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use tensorlet_gpu::optim::{LrSchedule, Optimizer, Rule, Schedule};

use crate::task::{HostTraining, Task};
use crate::{Error, Result};

/// A parsed, validated pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Name and description.
    pub pipeline: Meta,
    /// How to read the training data.
    #[serde(default)]
    pub data: DataConfig,
    /// The preprocessing plugins, in order: one `[preprocessor]` table or
    /// several `[[preprocessor]]` entries.
    #[serde(deserialize_with = "one_or_many", serialize_with = "table_when_one")]
    pub preprocessor: Vec<Stage>,
    /// The training plugin. Absent for a predictor that brings its own
    /// weights (an ONNX model through `wasi:nn`): training then only fits the
    /// preprocessor and evaluates the predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Stage>,
    /// The prediction plugin (absent when `model` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<Stage>,
    /// A `model` plugin, both trainer and predictor: the host differentiates
    /// its forward pass and applies `[training]`'s optimizer. Excludes
    /// `trainer` and `predictor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Stage>,
    /// Training hyper-parameters.
    #[serde(default)]
    pub training: TrainingConfig,
    /// The sandbox limits of every plugin call while training.
    #[serde(default, skip_serializing_if = "LimitsConfig::is_default")]
    pub limits: LimitsConfig,
}

/// `[limits]`: raises (or lowers) the sandbox limits of each plugin call
/// while training; `train --max-tensor-memory` and `--deadline` override
/// them. `serve_deadline` is the model's own deadline for each request's
/// plugin calls wherever it is served (recorded in `model.json`); a model
/// without one gets `serve --deadline`.
///
/// ```toml
/// [limits]
/// max_tensor_memory = "4 GiB"  # host tensors one call may hold (default 1 GiB)
/// deadline = "2m"              # wall time of one call (default 30 s)
/// serve_deadline = "250ms"     # wall time of a served request's calls
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The most host-tensor memory one call may hold: `"2 GiB"`, `"512 MiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tensor_memory: Option<String>,
    /// The wall-clock budget of one call: `"60s"`, `"2m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The wall-clock budget of a served request's plugin calls: `"250ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_deadline: Option<String>,
}

impl LimitsConfig {
    fn is_default(&self) -> bool {
        *self == LimitsConfig::default()
    }

    /// Sets what it gives on `limits`; a value that does not parse is an
    /// error naming the key.
    pub fn apply(&self, limits: &mut crate::limits::Limits) -> Result<(), String> {
        if let Some(m) = &self.max_tensor_memory {
            limits.max_host_tensor_bytes = crate::limits::parse_size(m)
                .map_err(|e| format!("limits.max_tensor_memory: {e}"))?;
        }
        if let Some(d) = &self.deadline {
            limits.deadline =
                crate::limits::parse_duration(d).map_err(|e| format!("limits.deadline: {e}"))?;
        }
        self.serve_deadline()?;
        Ok(())
    }

    /// `serve_deadline`, parsed.
    pub fn serve_deadline(&self) -> Result<Option<std::time::Duration>, String> {
        self.serve_deadline
            .as_deref()
            .map(|d| {
                crate::limits::parse_duration(d).map_err(|e| format!("limits.serve_deadline: {e}"))
            })
            .transpose()
    }
}

/// `[pipeline]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// A short name, used for the model.
    pub name: String,
    /// The registry namespace it is published under (`tensorlet publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The version it is published as (semver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One line for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `[data]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The label column's name (the last column when absent), or for a
    /// regression with several targets their columns: `label = ["a", "b"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelColumns>,
    /// Names of the classes, by index. With text labels, their order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// What to learn: `classification` or `regression`; inferred from the
    /// label column when absent (see `docs/data.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// The feature columns, in order; every column but the label when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// Columns to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// Columns read as categories even when they hold numbers (codes, zip
    /// codes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical: Vec<String>,
    /// The CSV field delimiter, one character (`,` by default; a tab for
    /// `.tsv` files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
}

impl DataConfig {
    /// How to read the training data.
    pub fn options(&self) -> crate::data::Options {
        crate::data::Options {
            label: self.label.as_ref().map(|l| l.first().to_string()),
            more_targets: match &self.label {
                Some(LabelColumns::Several(names)) => names.iter().skip(1).cloned().collect(),
                _ => Vec::new(),
            },
            task: self.task,
            features: self.features.clone(),
            drop: self.drop.clone(),
            categorical: self.categorical.clone(),
            delimiter: self.delimiter.map(|c| c as u8),
            class_names: self.class_names.clone(),
        }
    }
}

/// `[data] label`: one column, or several regression targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelColumns {
    /// `label = "species"`.
    One(String),
    /// `label = ["y1", "y2"]`.
    Several(Vec<String>),
}

impl LabelColumns {
    /// The (first) label column.
    pub fn first(&self) -> &str {
        match self {
            LabelColumns::One(n) => n,
            LabelColumns::Several(n) => n.first().map_or("", String::as_str),
        }
    }
}

/// `[preprocessor]`, `[trainer]` or `[predictor]`: where the component comes
/// from (exactly one of `ref`, `path` and `bundled`) and its configuration.
/// `ref` names a signed registry artifact; `path` and `bundled` are for local
/// development and run only with `--allow-unsigned`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// A registry artifact: `ns/name@1.2.0`, `ns/name@alias`, `ns/name@sha256:…`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A component file, relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The name of a plugin built into the tensorlet binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundled: Option<String>,
    /// Configuration handed to the plugin as a JSON object.
    #[serde(default)]
    pub config: toml::Table,
    /// A preprocessor's input columns, by name, in the order it gets them;
    /// every column when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// Where a stage's component comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// A registry artifact reference.
    Registry(String),
    /// A file (already resolved against the pipeline's directory).
    Path(PathBuf),
    /// A plugin built into the binary.
    Bundled(String),
}

impl Stage {
    /// The component's source.
    pub fn source(&self) -> PluginSource {
        match (&self.reference, &self.path, &self.bundled) {
            (Some(r), _, _) => PluginSource::Registry(r.clone()),
            (None, Some(p), _) => PluginSource::Path(p.clone()),
            (None, None, Some(b)) => PluginSource::Bundled(b.clone()),
            (None, None, None) => unreachable!("validated by Pipeline::parse"),
        }
    }

    /// The configuration as a JSON object string.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("a TOML table is valid JSON")
    }
}

/// `[training]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the training split.
    pub epochs: u32,
    /// Rows per optimisation step.
    pub batch_size: u32,
    /// Step size, passed to the trainer as `learning_rate`.
    pub learning_rate: f32,
    /// Seeds the split, the shuffles and the initialisation.
    pub seed: u64,
    /// Share of rows held out for validation, in [0, 1).
    pub validation_fraction: f32,
    /// Share of rows held out as a test split, in [0, 1): scored once with
    /// the kept model and reported, never used to select it. Split off
    /// first, stratified like validation, from the seed.
    #[serde(skip_serializing_if = "is_zero")]
    pub test_fraction: f32,
    /// Which epoch's checkpoint becomes the model: `best` (lowest validation
    /// loss, the earliest on ties; the last without a validation split) or
    /// `last`.
    #[serde(skip_serializing_if = "Keep::is_best")]
    pub keep: Keep,
    /// The host's optimizer, for a `[model]` (default: Adam).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "name_or_table"
    )]
    pub optimizer: Option<OptimizerConfig>,
    /// The learning-rate schedule, for a `[model]` (default: constant).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "name_or_table"
    )]
    pub schedule: Option<ScheduleConfig>,
    /// Reads the data in chunks from disk on every epoch instead of loading
    /// it, so memory is bounded by the shuffle window, a chunk and the model,
    /// not by the file. The split is drawn per row from the seed (not
    /// stratified), the shuffle mixes rows within windows of `shuffle_rows`
    /// training rows, and preprocessors fit in streaming passes.
    #[serde(skip_serializing_if = "is_false")]
    pub stream: bool,
    /// Streaming: the training rows shuffled together (rounded up to a whole
    /// number of batches).
    #[serde(skip_serializing_if = "is_default_shuffle_rows")]
    pub shuffle_rows: u32,
    /// Streaming: the most training rows a preprocessor without
    /// `preprocess-stream` is fitted on (a seeded sample).
    #[serde(skip_serializing_if = "is_default_fit_sample_rows")]
    pub fit_sample_rows: u32,
}

/// [`TrainingConfig::shuffle_rows`] when not set.
pub const SHUFFLE_ROWS: u32 = 65_536;
/// [`TrainingConfig::fit_sample_rows`] when not set.
pub const FIT_SAMPLE_ROWS: u32 = 100_000;

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_default_shuffle_rows(v: &u32) -> bool {
    *v == SHUFFLE_ROWS
}

fn is_default_fit_sample_rows(v: &u32) -> bool {
    *v == FIT_SAMPLE_ROWS
}

/// `[training.optimizer]`, or `optimizer = "<name>"` with every default.
///
/// ```toml
/// [training.optimizer]
/// name = "sgd"            # sgd | adam (default) | adamw
/// momentum = 0.9          # sgd: default 0 (plain gradient descent)
/// nesterov = true         # sgd: default false
/// beta1 = 0.9             # adam, adamw: defaults 0.9, 0.999, 1e-8
/// beta2 = 0.999
/// eps = 1e-8
/// weight_decay = 1e-4     # default 0 (adamw: 0.01); L2 for sgd and adam, decoupled for adamw
/// clip_grad_norm = 1.0    # scale gradients to at most this global L2 norm (default: off)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// `sgd`, `adam` or `adamw`.
    pub name: OptimizerName,
    /// SGD momentum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f32>,
    /// SGD with Nesterov momentum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// Adam's first-moment decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f32>,
    /// Adam's second-moment decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f32>,
    /// Adam's denominator term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f32>,
    /// Weight decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f32>,
    /// The largest global gradient norm; larger gradients are scaled down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f32>,
}

/// The host's update rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd,
    /// Adam.
    #[default]
    Adam,
    /// Adam with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW,
}

/// `[training.schedule]`, or `schedule = "<name>"` with every default.
///
/// ```toml
/// [training.schedule]
/// name = "cosine"         # constant (default) | step | cosine
/// warmup_epochs = 1       # linear warm-up over these epochs (or warmup_steps); default 0
/// every_epochs = 10       # step: multiply the rate by gamma every this many epochs
/// gamma = 0.1             # step: default 0.1
/// min_lr = 0.0            # cosine: the rate it ends at (default 0)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `constant`, `step` or `cosine`.
    pub name: ScheduleName,
    /// Linear warm-up, in epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<u32>,
    /// Linear warm-up, in steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// Step decay period, in epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_epochs: Option<u32>,
    /// Step decay factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f32>,
    /// Cosine's final learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f32>,
}

/// The learning-rate schedules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    /// The same rate every step.
    #[default]
    Constant,
    /// Multiplied by `gamma` every `every_epochs`.
    Step,
    /// Cosine annealing from the rate to `min_lr` over the run.
    Cosine,
}

/// A `[training]` entry written either as a name (`optimizer = "sgd"`) or as
/// a table with `name` and settings.
trait NameOrTable: for<'de> Deserialize<'de> + Default {
    type Name: for<'de> Deserialize<'de>;
    /// Every default, with this name.
    fn named(name: Self::Name) -> Self;
}

impl NameOrTable for OptimizerConfig {
    type Name = OptimizerName;
    fn named(name: OptimizerName) -> Self {
        OptimizerConfig {
            name,
            ..Default::default()
        }
    }
}

impl NameOrTable for ScheduleConfig {
    type Name = ScheduleName;
    fn named(name: ScheduleName) -> Self {
        ScheduleConfig {
            name,
            ..Default::default()
        }
    }
}

fn name_or_table<'de, D: Deserializer<'de>, T: NameOrTable>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    struct Visit<T>(std::marker::PhantomData<T>);
    impl<'de, T: NameOrTable> serde::de::Visitor<'de> for Visit<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a name, or a table with `name` and settings")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<T, E> {
            let name = T::Name::deserialize(serde::de::value::StrDeserializer::<E>::new(s))?;
            Ok(T::named(name))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Visit(std::marker::PhantomData)).map(Some)
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// `[preprocessor]` (one table) or `[[preprocessor]]` (an array of them).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Stage>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Vec<Stage>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a [preprocessor] table, or [[preprocessor]] entries")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Vec<Stage>, A::Error> {
            Stage::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|s| vec![s])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            seq: A,
        ) -> std::result::Result<Vec<Stage>, A::Error> {
            Vec::<Stage>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(Visit)
}

/// Writes one preprocessor as a table, as most pipelines give it.
fn table_when_one<S: serde::Serializer>(
    stages: &[Stage],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match stages {
        [one] => one.serialize(s),
        many => many.serialize(s),
    }
}

/// The section name of the `i`th preprocessor (from 0): `preprocessor`,
/// then `preprocessor.2`, `preprocessor.3`… It names the stage in messages,
/// in run records and in a published artifact's pins.
pub fn preprocessor_section(i: usize) -> String {
    match i {
        0 => "preprocessor".to_string(),
        _ => format!("preprocessor.{}", i + 1),
    }
}

/// The kind of stage a section is: `preprocessor` for every stage of a
/// chain, else the section itself.
pub fn section_kind(section: &str) -> &str {
    if section.starts_with("preprocessor.") {
        "preprocessor"
    } else {
        section
    }
}

/// How messages name a section: `[trainer]`, `[preprocessor]`, and for
/// the later stages of a chain `[[preprocessor]] 2`.
pub fn heading(section: &str) -> String {
    match section.strip_prefix("preprocessor.") {
        Some(n) => format!("[[preprocessor]] {n}"),
        None => format!("[{section}]"),
    }
}

/// Which checkpoint of a run becomes the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The epoch with the lowest validation loss.
    #[default]
    Best,
    /// The final epoch.
    Last,
}

impl Keep {
    fn is_best(&self) -> bool {
        *self == Keep::Best
    }
}

impl std::str::FromStr for Keep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best" => Ok(Keep::Best),
            "last" => Ok(Keep::Last),
            _ => Err(format!(
                "`{s}` is not a checkpoint choice; use `best` or `last`"
            )),
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 10,
            batch_size: 32,
            learning_rate: 0.01,
            seed: 0,
            validation_fraction: 0.2,
            test_fraction: 0.0,
            keep: Keep::Best,
            optimizer: None,
            schedule: None,
            stream: false,
            shuffle_rows: SHUFFLE_ROWS,
            fit_sample_rows: FIT_SAMPLE_ROWS,
        }
    }
}

impl OptimizerConfig {
    /// The optimizer, with defaults filled in; a setting that does not apply
    /// to the rule, or a value out of range, is an error naming the key.
    pub fn resolve(&self) -> Result<Optimizer, String> {
        let key = |k: &str| format!("training.optimizer.{k}");
        let not_for = |k: &str, given: bool| {
            if given {
                Err(format!(
                    "{} does not apply to the `{}` optimizer",
                    key(k),
                    self.name.as_str()
                ))
            } else {
                Ok(())
            }
        };
        let rule = match self.name {
            OptimizerName::Sgd => {
                not_for("beta1", self.beta1.is_some())?;
                not_for("beta2", self.beta2.is_some())?;
                not_for("eps", self.eps.is_some())?;
                Rule::Sgd {
                    momentum: self.momentum.unwrap_or(0.0),
                    nesterov: self.nesterov.unwrap_or(false),
                }
            }
            OptimizerName::Adam | OptimizerName::AdamW => {
                not_for("momentum", self.momentum.is_some())?;
                not_for("nesterov", self.nesterov.is_some())?;
                let (beta1, beta2, eps) = (
                    self.beta1.unwrap_or(0.9),
                    self.beta2.unwrap_or(0.999),
                    self.eps.unwrap_or(1e-8),
                );
                if self.name == OptimizerName::Adam {
                    Rule::Adam { beta1, beta2, eps }
                } else {
                    Rule::AdamW { beta1, beta2, eps }
                }
            }
        };
        if self.nesterov == Some(true) && self.momentum.unwrap_or(0.0) == 0.0 {
            return Err(format!("{} needs a momentum above 0", key("nesterov")));
        }
        let default_decay = if self.name == OptimizerName::AdamW {
            0.01
        } else {
            0.0
        };
        let optimizer = Optimizer {
            rule,
            weight_decay: self.weight_decay.unwrap_or(default_decay),
            clip_grad_norm: self.clip_grad_norm,
        };
        optimizer
            .validate()
            .map_err(|e| format!("training.optimizer: {e}"))?;
        Ok(optimizer)
    }
}

impl OptimizerName {
    /// The name as written in a pipeline.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerName::Sgd => "sgd",
            OptimizerName::Adam => "adam",
            OptimizerName::AdamW => "adamw",
        }
    }
}

impl ScheduleConfig {
    /// The schedule for a run of `epochs` epochs of `steps_per_epoch` steps
    /// from `base`; a setting that does not apply, or is out of range, is an
    /// error naming the key.
    pub fn resolve(
        &self,
        base: f32,
        epochs: u32,
        steps_per_epoch: u64,
    ) -> Result<LrSchedule, String> {
        let key = |k: &str| format!("training.schedule.{k}");
        let name = match self.name {
            ScheduleName::Constant => "constant",
            ScheduleName::Step => "step",
            ScheduleName::Cosine => "cosine",
        };
        let not_for = |k: &str, given: bool| {
            if given {
                Err(format!(
                    "{} does not apply to the `{name}` schedule",
                    key(k)
                ))
            } else {
                Ok(())
            }
        };
        let warmup_steps = match (self.warmup_epochs, self.warmup_steps) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "give {} or {}, not both",
                    key("warmup_epochs"),
                    key("warmup_steps")
                ));
            }
            (Some(e), None) => u64::from(e) * steps_per_epoch,
            (None, Some(s)) => s,
            (None, None) => 0,
        };
        let schedule = match self.name {
            ScheduleName::Constant => {
                not_for("every_epochs", self.every_epochs.is_some())?;
                not_for("gamma", self.gamma.is_some())?;
                not_for("min_lr", self.min_lr.is_some())?;
                Schedule::Constant
            }
            ScheduleName::Step => {
                not_for("min_lr", self.min_lr.is_some())?;
                let every = self
                    .every_epochs
                    .ok_or_else(|| format!("the `step` schedule needs {}", key("every_epochs")))?;
                if every == 0 {
                    return Err(format!("{} must be at least 1", key("every_epochs")));
                }
                let gamma = self.gamma.unwrap_or(0.1);
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(format!(
                        "{} must be a positive number, got {gamma}",
                        key("gamma")
                    ));
                }
                Schedule::Step {
                    every_steps: u64::from(every) * steps_per_epoch,
                    gamma,
                }
            }
            ScheduleName::Cosine => {
                not_for("every_epochs", self.every_epochs.is_some())?;
                not_for("gamma", self.gamma.is_some())?;
                let min_lr = self.min_lr.unwrap_or(0.0);
                if !(min_lr.is_finite() && (0.0..=base).contains(&min_lr)) {
                    return Err(format!(
                        "{} must be in [0, learning_rate = {base}], got {min_lr}",
                        key("min_lr")
                    ));
                }
                Schedule::Cosine {
                    total_steps: u64::from(epochs) * steps_per_epoch,
                    min_lr,
                }
            }
        };
        Ok(LrSchedule {
            base,
            schedule,
            warmup_steps,
        })
    }
}

impl TrainingConfig {
    /// As a JSON value whose `f32`s keep their shortest form (`0.1`).
    /// `serde_json::to_value` widens an `f32` to the `f64` nearest it
    /// (`0.10000000149011612`); writing the text first keeps what was given.
    pub fn to_json(&self) -> serde_json::Value {
        let text = serde_json::to_string(self).expect("a training config serialises");
        serde_json::from_str(&text).expect("serde_json reads what it wrote")
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 {
            return Err("training.epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("training.batch_size must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "training.learning_rate must be a positive number, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(format!(
                "training.validation_fraction must be in [0, 1), got {}",
                self.validation_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(format!(
                "training.test_fraction must be in [0, 1), got {}",
                self.test_fraction
            ));
        }
        if self.validation_fraction + self.test_fraction >= 1.0 {
            return Err(format!(
                "training.validation_fraction ({}) and test_fraction ({}) leave no rows to \
                 train on; together they must stay below 1",
                self.validation_fraction, self.test_fraction
            ));
        }
        if self.shuffle_rows == 0 || self.fit_sample_rows == 0 {
            return Err(
                "training.shuffle_rows and training.fit_sample_rows must be at least 1".into(),
            );
        }
        if let Some(o) = &self.optimizer {
            o.resolve()?;
        }
        if let Some(s) = &self.schedule {
            s.resolve(self.learning_rate, self.epochs, 1)?;
        }
        Ok(())
    }

    /// How the host trains a `[model]` for a run with `steps_per_epoch`
    /// steps per epoch: the optimizer (Adam by default) and the schedule
    /// (constant by default) from `learning_rate`.
    pub fn host_training(&self, steps_per_epoch: u64) -> Result<HostTraining, String> {
        let optimizer = self.optimizer.clone().unwrap_or_default().resolve()?;
        let schedule = self.schedule.clone().unwrap_or_default().resolve(
            self.learning_rate,
            self.epochs,
            steps_per_epoch,
        )?;
        Ok(HostTraining {
            optimizer,
            schedule,
            task: Task::Classification,
        })
    }
}

impl Pipeline {
    /// The stages it has, in order, with their section names (see
    /// [`preprocessor_section`]).
    pub fn stages(&self) -> Vec<(String, &Stage)> {
        let mut v: Vec<(String, &Stage)> = self
            .preprocessor
            .iter()
            .enumerate()
            .map(|(i, s)| (preprocessor_section(i), s))
            .collect();
        for (name, stage) in [
            ("trainer", &self.trainer),
            ("predictor", &self.predictor),
            ("model", &self.model),
        ] {
            if let Some(s) = stage {
                v.push((name.to_string(), s));
            }
        }
        v
    }

    /// [`Pipeline::stages`], mutable.
    pub fn stages_mut(&mut self) -> Vec<(String, &mut Stage)> {
        let mut v: Vec<(String, &mut Stage)> = self
            .preprocessor
            .iter_mut()
            .enumerate()
            .map(|(i, s)| (preprocessor_section(i), s))
            .collect();
        for (name, stage) in [
            ("trainer", &mut self.trainer),
            ("predictor", &mut self.predictor),
            ("model", &mut self.model),
        ] {
            if let Some(s) = stage {
                v.push((name.to_string(), s));
            }
        }
        v
    }

    /// The stage that trains: `[trainer]`, or the `[model]`.
    pub fn trainer_stage(&self) -> Option<&Stage> {
        self.trainer.as_ref().or(self.model.as_ref())
    }

    /// The stage that predicts: `[predictor]`, or the `[model]`.
    pub fn predictor_stage(&self) -> &Stage {
        self.predictor
            .as_ref()
            .or(self.model.as_ref())
            .expect("validated by Pipeline::parse: [predictor] or [model]")
    }

    /// Reads and validates a pipeline file; `path` stages resolve against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Pipeline::parse(&text, base, path)
    }

    /// Parses pipeline text; `origin` names it in errors.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self> {
        let err = |message: String| Error::Pipeline {
            path: origin.to_path_buf(),
            message,
        };
        let mut p: Pipeline = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        match (&p.model, &p.trainer, &p.predictor) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(err(
                    "[model] is both the trainer and the predictor; remove [trainer] and \
                     [predictor], or replace [model] with them"
                        .into(),
                ));
            }
            (None, _, None) => {
                return Err(err(
                    "needs a [predictor] (with an optional [trainer]), or a [model]".into(),
                ));
            }
            _ => {}
        }
        if p.preprocessor.is_empty() {
            return Err(err(
                "needs at least one [[preprocessor]] (`bundled = \"passthrough\"` leaves the \
                 features as they are)"
                    .into(),
            ));
        }
        for (section, stage) in p.stages_mut() {
            let h = heading(&section);
            if let Some(columns) = &stage.columns {
                if !section.starts_with("preprocessor") {
                    return Err(err(format!(
                        "{h} columns: only a preprocessor selects columns; the \
                         {h} gets every column the preprocessors give"
                    )));
                }
                if columns.is_empty() {
                    return Err(err(format!(
                        "{h} columns is empty; name the columns it transforms, or leave \
                         `columns` out for every column"
                    )));
                }
                let mut seen = std::collections::BTreeSet::new();
                if let Some(twice) = columns.iter().find(|c| !seen.insert(c.as_str())) {
                    return Err(err(format!("{h} columns names `{twice}` twice")));
                }
            }
            let given = [
                stage.reference.is_some(),
                stage.path.is_some(),
                stage.bundled.is_some(),
            ];
            match given.iter().filter(|g| **g).count() {
                0 => {
                    return Err(err(format!(
                        "{h} needs `ref = \"ns/name@1.0.0\"` (a registry artifact), or \
                         for local development `path = \"plugin.wasm\"` or `bundled = \"<name>\"`"
                    )));
                }
                1 => {}
                _ if stage.reference.is_none() => {
                    return Err(err(format!(
                        "{h} gives both `path` and `bundled`; keep one"
                    )));
                }
                _ => {
                    return Err(err(format!(
                        "{h} gives `ref` and also `path` or `bundled`; keep one"
                    )));
                }
            }
            if let Some(r) = &stage.reference {
                tensorlet_registry::Reference::parse(r)
                    .map_err(|e| err(format!("{h} ref: {e}")))?;
            }
            if let Some(rel) = &stage.path {
                stage.path = Some(base.join(rel));
            }
        }
        if p.pipeline.name.trim().is_empty() {
            return Err(err("[pipeline] name must not be empty".into()));
        }
        p.training.validate().map_err(err)?;
        p.limits
            .apply(&mut crate::limits::Limits::default())
            .map_err(err)?;
        if matches!(&p.data.label, Some(LabelColumns::Several(n)) if n.is_empty()) {
            return Err(err(
                "[data] label is an empty list; name the label column (or the regression \
                 targets' columns)"
                    .into(),
            ));
        }
        if let Some(d) = p.data.delimiter
            && (!d.is_ascii() || d == '"' || d == '\n' || d == '\r')
        {
            return Err(err(format!(
                "[data] delimiter {d:?} must be one ASCII character other than a quote or a \
                 line break (`,`, `;`, `\\t`, `|`)"
            )));
        }
        if p.trainer_stage().is_none() {
            // Without a trainer, training is one evaluation pass.
            p.training.epochs = 1;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_json_keeps_the_shortest_f32_form() {
        let t = TrainingConfig {
            learning_rate: 0.1,
            validation_fraction: 0.3,
            ..TrainingConfig::default()
        };
        let v = t.to_json();
        assert_eq!(v["learning_rate"].to_string(), "0.1");
        assert_eq!(v["validation_fraction"].to_string(), "0.3");
        // What the plain conversion gives, and what the record used to hold.
        let widened = serde_json::to_value(&t).unwrap();
        assert_eq!(widened["learning_rate"].to_string(), "0.10000000149011612");
        // Either form reads back as the same config.
        assert_eq!(serde_json::from_value::<TrainingConfig>(v).unwrap(), t);
        assert_eq!(
            serde_json::from_value::<TrainingConfig>(widened).unwrap(),
            t
        );
    }

    const MINIMAL: &str = r#"
        [pipeline]
        name = "t"
        [preprocessor]
        bundled = "standardize"
        [trainer]
        path = "m.wasm"
        config = { hidden = [8, 4], optimizer = "adam" }
        [predictor]
        bundled = "mlp"
    "#;

    #[test]
    fn parses_and_resolves_paths() {
        let p = Pipeline::parse(MINIMAL, Path::new("/x"), Path::new("p.toml")).unwrap();
        assert_eq!(
            p.trainer.as_ref().unwrap().source(),
            PluginSource::Path("/x/m.wasm".into())
        );
        assert_eq!(
            p.preprocessor[0].source(),
            PluginSource::Bundled("standardize".into())
        );
        assert_eq!(
            p.trainer.as_ref().unwrap().config_json(),
            r#"{"hidden":[8,4],"optimizer":"adam"}"#
        );
        assert_eq!(p.training, TrainingConfig::default());
    }

    #[test]
    fn registry_refs_are_a_third_source() {
        let text = MINIMAL.replace("bundled = \"mlp\"", "ref = \"acme/mlp@1.0.0\"");
        let p = Pipeline::parse(&text, Path::new("."), Path::new("p.toml")).unwrap();
        assert_eq!(
            p.predictor_stage().source(),
            PluginSource::Registry("acme/mlp@1.0.0".into())
        );
        let both = MINIMAL.replace("bundled = \"mlp\"", "bundled = \"mlp\"\nref = \"acme/mlp\"");
        let e = Pipeline::parse(&both, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("gives `ref` and also"), "{e}");
        let bad = MINIMAL.replace("bundled = \"mlp\"", "ref = \"mlp\"");
        let e = Pipeline::parse(&bad, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("[predictor] ref: `mlp` is not an artifact reference"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let typo = MINIMAL.replace("[predictor]", "[predictor]\nbundeld = \"x\"");
        let e = Pipeline::parse(&typo, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `bundeld`"), "{e}");

        let both = MINIMAL.replace("bundled = \"mlp\"", "bundled = \"mlp\"\npath = \"a.wasm\"");
        let e = Pipeline::parse(&both, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("both `path` and `bundled`"), "{e}");

        let lr = format!("{MINIMAL}\n[training]\nlearning_rate = -1.0\n");
        let e = Pipeline::parse(&lr, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string().contains("learning_rate must be a positive"),
            "{e}"
        );
    }

    #[test]
    fn preprocessors_chain_with_columns() {
        let chain = MINIMAL.replace(
            "[preprocessor]\n        bundled = \"standardize\"",
            "[[preprocessor]]\nbundled = \"imputer\"\ncolumns = [\"a\", \"b\"]\n\
             [[preprocessor]]\nbundled = \"one-hot\"\ncolumns = [\"c\"]\n\
             [[preprocessor]]\nbundled = \"standardize\"\n",
        );
        let p = Pipeline::parse(&chain, Path::new("."), Path::new("p.toml")).unwrap();
        assert_eq!(p.preprocessor.len(), 3);
        assert_eq!(
            p.preprocessor[0].columns.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert_eq!(p.preprocessor[2].columns, None);
        let sections: Vec<String> = p.stages().into_iter().map(|(s, _)| s).collect();
        assert_eq!(
            sections,
            [
                "preprocessor",
                "preprocessor.2",
                "preprocessor.3",
                "trainer",
                "predictor"
            ]
        );
        assert_eq!(heading("preprocessor.3"), "[[preprocessor]] 3");
        assert_eq!(heading("trainer"), "[trainer]");

        // Written back, a chain stays an array and one stage stays a table.
        let again: Pipeline = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(again.preprocessor, p.preprocessor);
        let one = Pipeline::parse(MINIMAL, Path::new("."), Path::new("p.toml")).unwrap();
        let text = toml::to_string(&one).unwrap();
        assert!(text.contains("[preprocessor]\n"), "{text}");

        let twice = chain.replace("[\"c\"]", "[\"c\", \"c\"]");
        let e = Pipeline::parse(&twice, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("[[preprocessor]] 2 columns names `c` twice"),
            "{e}"
        );
        let empty = chain.replace("[\"c\"]", "[]");
        let e = Pipeline::parse(&empty, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("columns is empty"), "{e}");
        let on_model = MINIMAL.replace("[predictor]", "[predictor]\ncolumns = [\"a\"]");
        let e = Pipeline::parse(&on_model, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("[predictor] columns: only a preprocessor selects columns"),
            "{e}"
        );
        let typo = chain.replace("columns = [\"c\"]", "colums = [\"c\"]");
        let e = Pipeline::parse(&typo, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `colums`"), "{e}");
    }

    #[test]
    fn limits_are_read_with_units() {
        let text =
            format!("{MINIMAL}\n[limits]\nmax_tensor_memory = \"2 GiB\"\ndeadline = \"90s\"\n");
        let p = Pipeline::parse(&text, Path::new("."), Path::new("p.toml")).unwrap();
        let mut l = crate::limits::Limits::default();
        p.limits.apply(&mut l).unwrap();
        assert_eq!(l.max_host_tensor_bytes, 2 << 30);
        assert_eq!(l.deadline, std::time::Duration::from_secs(90));
        assert_eq!(p.limits.serve_deadline(), Ok(None));
        let served = format!("{text}serve_deadline = \"250ms\"\n");
        let p = Pipeline::parse(&served, Path::new("."), Path::new("p.toml")).unwrap();
        assert_eq!(
            p.limits.serve_deadline(),
            Ok(Some(std::time::Duration::from_millis(250)))
        );
        let e = Pipeline::parse(
            &served.replace("250ms", "0"),
            Path::new("."),
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("limits.serve_deadline: `0` leaves no time"),
            "{e}"
        );
        let bad = text.replace("90s", "soon");
        let e = Pipeline::parse(&bad, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("limits.deadline: `soon` is not a duration"),
            "{e}"
        );
    }
}
