//! Write tensorlet machine-learning plugins in Rust.
//!
//! A tensorlet plugin is a WebAssembly component (built for `wasm32-unknown-unknown`
//! with `wasm-component-ld` as the linker, or for `wasm32-wasip2`) that implements one
//! or more stages of a pipeline: a [`Preprocessor`], a [`Model`] (its forward pass
//! only: the host differentiates it and applies the optimizer), or a [`Trainer`] that
//! writes its own update and a [`Predictor`].
//! It is a pure function of its inputs: the host keeps every piece of state (fitted
//! statistics, parameters, optimizer moments) as [`Params`] and hands it back on each
//! call, and every [`Tensor`] lives on the host (CPU or GPU), so a plugin only
//! describes the maths. Configuration arrives as a [`Config`].
//!
//! Implement the traits on a type and call the matching export macros once in the
//! plugin crate (`crate-type = ["cdylib"]`, built with
//! `cargo build --release --target wasm32-unknown-unknown`). This is a complete plugin, a
//! softmax regression: its forward pass is all there is, because the host computes the
//! cross-entropy, its gradients and the optimizer's update (`[training]` in the
//! pipeline), and predicts with the softmax of the same forward pass:
//!
//! ```no_run
//! use tensorlet_sdk::{Config, DataSpec, Mode, Model, Params, Result, Tensor};
//!
//! struct SoftmaxRegression;
//!
//! impl Model for SoftmaxRegression {
//!     fn init(_config: &Config, spec: DataSpec) -> Result<Params> {
//!         let w = Tensor::randn(&[spec.features, spec.outputs], 0.0, 0.01, spec.seed)?;
//!         let b = Tensor::zeros(&[spec.outputs])?;
//!         Ok(Params::new().with("w", w).with("b", b))
//!     }
//!
//!     fn forward(_config: &Config, p: &Params, x: Tensor, _mode: Mode) -> Result<Tensor> {
//!         &x.matmul(p.get("w")?)? + p.get("b")? // logits [batch, classes]
//!     }
//! }
//!
//! tensorlet_sdk::export_model!(SoftmaxRegression);
//! ```
//!
//! A [`Trainer`] that writes its own update still gets its gradients from the host:
//!
//! ```no_run
//! # use tensorlet_sdk::{Config, Params, Result, StepOutput, Tensor};
//! # fn step(config: &Config, p: Params, x: Tensor, y: Tensor) -> Result<StepOutput> {
//! let lr = config.f32_or("learning_rate", 0.1)?;
//! let logits = (&x.matmul(p.get("w")?)? + p.get("b")?)?;
//! let onehot = y.one_hot(logits.dim(1)?)?;
//! let loss = -(&onehot * &logits.log_softmax(1)?)?.sum(1, false)?.mean(0, true)?;
//! let grads = loss.grad(&p)?; // dloss/dw and dloss/db, computed by the host
//! let mut next = Params::new();
//! for (name, value) in p.iter() {
//!     next.insert(name, (value - &(grads.get(name)? * lr))?);
//! }
//! Ok(StepOutput::new(next, loss.item()?))
//! # }
//! ```
//!
//! On `wasm32-unknown-unknown` the SDK brings what WASI's standard library would: a
//! global allocator (dlmalloc, starting in the module's initial memory; the default
//! `allocator` feature, off to bring your own) and a panic hook that writes the panic
//! message to `wasi:cli/stderr`, where the host finds it for its error report.
//!
//! Errors are [`Error`]s: a message for people that the host reports as the plugin's
//! error; a panic traps the component instead. The raw wit-bindgen bindings are in
//! [`raw`] for anything the wrappers do not cover.

#![deny(missing_docs)]

#[cfg(all(target_family = "wasm", target_os = "unknown"))]
mod bare;
mod bindings;
mod config;
mod error;
#[cfg(not(feature = "abi-v0-1"))]
mod nd;
mod params;
mod plugin;
mod tensor;

pub use config::Config;
pub use error::{Error, Result};
#[cfg(not(feature = "abi-v0-1"))]
pub use nd::{
    Activation, BatchNorm, BinaryOp, Conv1d, Conv2d, CrossEntropy, Dtype, Pool2d, Reduction,
    ScalarOp,
};
pub use params::{Params, ParamsIter};
pub use plugin::{DataSpec, Mode, Predictor, Preprocessor, StepOutput, Task, Trainer};
#[cfg(not(feature = "abi-v0-1"))]
pub use plugin::{Model, StreamingPreprocessor};
pub use serde_json;
pub use tensor::{ReduceOp, Tensor, UnaryOp};

/// The bindings wit-bindgen generates for the WIT `tensor` interface.
pub mod raw {
    #[cfg(not(feature = "abi-v0-1"))]
    pub use crate::bindings::imports::tensorlet::ml::tensor::{
        Activation, BinaryOp, Conv1dOptions, Conv2dOptions, Dtype, Pool2dOptions, Reduction,
        ScalarOp,
    };
    pub use crate::bindings::imports::tensorlet::ml::tensor::{
        NamedTensor, ReduceOp, Tensor, UnaryOp,
    };
}

/// Derives an independent seed for stream `stream` from `seed` (SplitMix64), so that,
/// say, each layer's initial weights get their own seed from one `DataSpec::seed`.
///
/// ```
/// use tensorlet_sdk::derive_seed;
/// assert_ne!(derive_seed(7, 0), derive_seed(7, 1));
/// assert_ne!(derive_seed(7, 1), derive_seed(8, 0));
/// assert_eq!(derive_seed(7, 1), derive_seed(7, 1));
/// ```
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed.wrapping_add(stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Exports a [`Preprocessor`] implementation as the plugin's `tensorlet:ml/preprocess`
/// interface. Call it once, at the top level of the plugin crate.
///
/// ```no_run
/// use tensorlet_sdk::{Config, Params, Preprocessor, Result, Tensor};
///
/// /// Centres each column on its training mean.
/// struct Centre;
///
/// impl Preprocessor for Centre {
///     fn fit(_config: &Config, x: Tensor) -> Result<Params> {
///         Ok(Params::new().with("mean", x.mean(0, false)?))
///     }
///     fn transform(_config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
///         &x - state.get("mean")?
///     }
/// }
///
/// tensorlet_sdk::export_preprocessor!(Centre);
/// ```
#[macro_export]
macro_rules! export_preprocessor {
    ($ty:ty) => {
        const _: () = {
            type __TensorletPreprocessor = $crate::__private::Adapter<$ty>;
            $crate::__private::preprocessor::export_world!(
                __TensorletPreprocessor with_types_in $crate::__private::preprocessor
            );
        };
    };
}

/// Exports a [`StreamingPreprocessor`] implementation as the plugin's
/// `tensorlet:ml/preprocess` and `tensorlet:ml/preprocess-stream` interfaces
/// (world `streaming-preprocessor`). Call it once, at the top level of the
/// plugin crate, instead of [`export_preprocessor!`].
///
/// ```no_run
/// use tensorlet_sdk::{Config, Params, Preprocessor, Result, StreamingPreprocessor, Tensor};
///
/// /// Centres each column on its training mean.
/// struct Centre;
///
/// impl Preprocessor for Centre {
///     fn fit(_config: &Config, x: Tensor) -> Result<Params> {
///         Ok(Params::new().with("mean", x.mean(0, false)?))
///     }
///     fn transform(_config: &Config, state: &Params, x: Tensor) -> Result<Tensor> {
///         &x - state.get("mean")?
///     }
/// }
///
/// impl StreamingPreprocessor for Centre {
///     fn accumulate(_config: &Config, mut partial: Params, x: Tensor) -> Result<Params> {
///         let cols = x.dim(1)? as usize;
///         let mut sums = partial.wide("sum").unwrap_or_else(|_| vec![0.0; cols + 1]);
///         for row in x.to_vec().chunks(cols) {
///             for (s, v) in sums.iter_mut().zip(row) {
///                 *s += f64::from(*v);
///             }
///             sums[cols] += 1.0; // the row count, last
///         }
///         partial.put_wide("sum", &sums)?;
///         Ok(partial)
///     }
///     fn finish(_config: &Config, partial: Params) -> Result<Params> {
///         let sums = partial.wide("sum")?;
///         let (n, cols) = (sums[sums.len() - 1], sums.len() - 1);
///         let mean: Vec<f32> = sums[..cols].iter().map(|s| (s / n) as f32).collect();
///         Ok(Params::new().with("mean", Tensor::from_list(&[cols as u32], &mean)?))
///     }
/// }
///
/// tensorlet_sdk::export_streaming_preprocessor!(Centre);
/// ```
#[cfg(not(feature = "abi-v0-1"))]
#[macro_export]
macro_rules! export_streaming_preprocessor {
    ($ty:ty) => {
        $crate::export_preprocessor!($ty);
        const _: () = {
            type __TensorletStream = $crate::__private::Adapter<$ty>;
            $crate::__private::stream::export_world!(
                __TensorletStream with_types_in $crate::__private::stream
            );
        };
    };
}

/// Exports a [`Trainer`] implementation as the plugin's `tensorlet:ml/train` interface.
/// Call it once, at the top level of the plugin crate; a plugin that also predicts
/// calls [`export_predictor!`] too.
///
/// See the crate documentation for a complete trainer.
#[macro_export]
macro_rules! export_trainer {
    ($ty:ty) => {
        const _: () = {
            type __TensorletTrainer = $crate::__private::Adapter<$ty>;
            $crate::__private::trainer::export_world!(
                __TensorletTrainer with_types_in $crate::__private::trainer
            );
        };
    };
}

/// Exports a [`Predictor`] implementation as the plugin's `tensorlet:ml/predict`
/// interface. Call it once, at the top level of the plugin crate.
///
/// ```no_run
/// use tensorlet_sdk::{Config, Params, Predictor, Result, Tensor};
///
/// /// Always predicts the class distribution stored as `prior` ([classes]).
/// struct Prior;
///
/// impl Predictor for Prior {
///     fn predict(_config: &Config, params: &Params, x: Tensor) -> Result<Tensor> {
///         let zeros = Tensor::zeros(&[x.dim(0)?, 1])?; // [batch, 1]
///         &zeros + params.get("prior")? // broadcasts to [batch, classes]
///     }
/// }
///
/// tensorlet_sdk::export_predictor!(Prior);
/// ```
#[macro_export]
macro_rules! export_predictor {
    ($ty:ty) => {
        const _: () = {
            type __TensorletPredictor = $crate::__private::Adapter<$ty>;
            $crate::__private::predictor::export_world!(
                __TensorletPredictor with_types_in $crate::__private::predictor
            );
        };
    };
}

/// Exports a [`Model`] implementation as the plugin's `tensorlet:ml/forward`
/// interface (world `model`). Call it once, at the top level of the plugin crate.
///
/// See the crate documentation for a complete model.
#[cfg(not(feature = "abi-v0-1"))]
#[macro_export]
macro_rules! export_model {
    ($ty:ty) => {
        const _: () = {
            type __TensorletModel = $crate::__private::Adapter<$ty>;
            $crate::__private::model::export_world!(
                __TensorletModel with_types_in $crate::__private::model
            );
        };
    };
}

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::{Adapter, predictor, preprocessor, trainer};
    #[cfg(not(feature = "abi-v0-1"))]
    pub use crate::bindings::{model, stream};
}
