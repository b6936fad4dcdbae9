//! The traits a plugin implements, and the records the `train` interface passes.

use crate::{Config, Params, Result, Tensor};

/// Learns statistics from training data and applies them to any batch (the WIT
/// `preprocess` interface). Export an implementation with
/// [`export_preprocessor!`](crate::export_preprocessor).
pub trait Preprocessor {
    /// Fits on the training features `x` (`[rows, features]`) and returns the state that
    /// the host keeps and passes to [`Preprocessor::transform`].
    fn fit(config: &Config, x: Tensor) -> Result<Params>;

    /// Transforms a batch `x` with the fitted `state`; the output has one row per input
    /// row.
    fn transform(config: &Config, state: &Params, x: Tensor) -> Result<Tensor>;
}

/// A [`Preprocessor`] that can also fit one chunk of rows at a time, for
/// training that streams its data from disk (the WIT `preprocess-stream`
/// interface). Export it with
/// [`export_streaming_preprocessor!`](crate::export_streaming_preprocessor),
/// which exports `preprocess` too.
///
/// The host calls [`accumulate`](StreamingPreprocessor::accumulate) for each
/// chunk of training rows, in order, starting from empty `partial` params, then
/// [`finish`](StreamingPreprocessor::finish) once; the result is the state
/// [`Preprocessor::transform`] takes. Keep `partial` small (sums, counts,
/// extremes): the host holds it between chunks. [`Params::put_wide`] stores
/// f64 running sums without losing precision to f32.
#[cfg(not(feature = "abi-v0-1"))]
pub trait StreamingPreprocessor: Preprocessor {
    /// Folds chunk `x` (`[rows, features]`) into `partial` and returns it.
    fn accumulate(config: &Config, partial: Params, x: Tensor) -> Result<Params>;

    /// The fitted state from the partial state of every chunk.
    fn finish(config: &Config, partial: Params) -> Result<Params>;
}

/// A model that is only its forward pass (the WIT `forward` interface, world
/// `model`): the host computes the loss of its outputs, the gradients with
/// respect to its parameters and the optimizer's update, and the same forward
/// pass predicts. Export an implementation with
/// [`export_model!`](crate::export_model); a pipeline names it as `[model]`.
#[cfg(not(feature = "abi-v0-1"))]
pub trait Model {
    /// Initial parameters for data described by `spec`. Names must not start with
    /// `opt.` (the host optimizer's state).
    fn init(config: &Config, spec: DataSpec) -> Result<Params>;

    /// The outputs for a batch `x` (`[batch, features]`): for classification one
    /// logit per class, `[batch, spec.outputs]` (the host applies softmax); for
    /// regression the predictions. In [`Mode::Train`] the host differentiates
    /// the loss of what this returns with respect to `params`.
    fn forward(config: &Config, params: &Params, x: Tensor, mode: Mode) -> Result<Tensor>;
}

/// Whether [`Model::forward`] runs for training or for prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: the parameters are watched and the loss differentiated.
    Train,
    /// Prediction.
    Eval,
}

/// Initialises parameters and takes optimisation steps (the WIT `train` interface):
/// a trainer that writes its own update (its parameters are watched, so
/// [`Tensor::grad`](crate::Tensor::grad) gives their gradients). Export an
/// implementation with [`export_trainer!`](crate::export_trainer).
pub trait Trainer {
    /// Initial parameters, and optimizer state if any, for data described by `spec`.
    /// Name optimizer state `opt.…` (Adam's `opt.m.w0`, say): the host passes those
    /// entries back to [`Trainer::step`] but not to [`Predictor::predict`].
    fn init(config: &Config, spec: DataSpec) -> Result<Params>;

    /// One step on a mini-batch: `x` is `[batch, features]`, `y` is `[batch]` class
    /// indices as f32 (classification) or `[batch, outputs]` targets (regression),
    /// `step` counts steps from 0 across the whole run. Returns the complete new
    /// state and the mean loss of the batch at the incoming `params`.
    fn step(config: &Config, params: Params, x: Tensor, y: Tensor, step: u64)
    -> Result<StepOutput>;
}

/// Turns a batch into class probabilities (the WIT `predict` interface). Export an
/// implementation with [`export_predictor!`](crate::export_predictor).
pub trait Predictor {
    /// Class probabilities `[batch, classes]` for `x` (`[batch, features]`), each row
    /// summing to 1. `params` is the trainer's state without the optimizer's `opt.…`
    /// entries; ignore entries you do not need.
    fn predict(config: &Config, params: &Params, x: Tensor) -> Result<Tensor>;
}

/// What the host tells a trainer or model about the data before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSpec {
    /// Number of input features per row (after preprocessing).
    pub features: u32,
    /// Classification: the number of classes (labels are `0..outputs`);
    /// regression: the number of targets.
    pub outputs: u32,
    /// What the labels are.
    pub task: Task,
    /// Seed for parameter initialisation.
    pub seed: u64,
}

/// What is learned from the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// A class per row.
    Classification,
    /// Continuous targets.
    Regression,
}

/// The result of one [`Trainer::step`].
#[derive(Debug)]
pub struct StepOutput {
    /// The complete new state: parameters and optimizer state.
    pub params: Params,
    /// Mean training loss of the batch, at the parameters the step was given (before
    /// the update).
    pub loss: f32,
}

impl StepOutput {
    /// The new state and the loss before the update.
    pub fn new(params: Params, loss: f32) -> StepOutput {
        StepOutput { params, loss }
    }
}
