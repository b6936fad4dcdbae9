//! Write tensorlet machine-learning plugins in Rust.
//!
//! A tensorlet plugin is a WebAssembly component (built for `wasm32-unknown-unknown`
//! with `wasm-component-ld` as the linker, or for `wasm32-wasip2`) that implements one
//! or more stages of a pipeline: a [`Preprocessor`], a [`Trainer`], a [`Predictor`].
//! It is a pure function of its inputs: the host keeps every piece of state (fitted
//! statistics, parameters, optimizer moments) as [`Params`] and hands it back on each
//! call, and every [`Tensor`] lives on the host (CPU or GPU), so a plugin only
//! describes the maths. Configuration arrives as a [`Config`].
//!
//! Implement the traits on a type and call the matching export macros once in the
//! plugin crate (`crate-type = ["cdylib"]`, built with
//! `cargo build --release --target wasm32-unknown-unknown`). This is a complete plugin, a
//! softmax regression trained by gradient descent:
//!
//! ```no_run
//! use tensorlet_sdk::{Config, DataSpec, Params, Predictor, Result, StepOutput, Tensor, Trainer};
//!
//! struct SoftmaxRegression;
//!
//! impl Trainer for SoftmaxRegression {
//!     fn init(_config: &Config, spec: DataSpec) -> Result<Params> {
//!         let w = Tensor::randn(&[spec.features, spec.classes], 0.0, 0.01, spec.seed)?;
//!         let b = Tensor::zeros(&[spec.classes])?;
//!         Ok(Params::new().with("w", w).with("b", b))
//!     }
//!
//!     fn step(config: &Config, p: Params, x: Tensor, y: Tensor, _step: u64) -> Result<StepOutput> {
//!         let lr = config.f32_or("learning_rate", 0.1)?;
//!         let (w, b) = (p.get("w")?, p.get("b")?);
//!         let logits = (&x.matmul(w)? + b)?; // [batch, classes]
//!         let onehot = y.one_hot(b.dim(0)?)?;
//!         // L = -mean_i sum_j onehot_ij * log_softmax(logits)_ij
//!         let loss = (&onehot * &logits.log_softmax(1)?)?.sum(1, false)?.mean(0, true)?;
//!         // dL/dlogits = (softmax - onehot) / batch
//!         let dz = (&logits.softmax(1)? - &onehot)? * (1.0 / x.dim(0)? as f32);
//!         let dw = x.t()?.matmul(&dz)?;
//!         let db = dz.sum(0, false)?;
//!         let params = Params::new()
//!             .with("w", (w - &(&dw * lr))?)
//!             .with("b", (b - &(&db * lr))?);
//!         Ok(StepOutput::new(params, -loss.item()?))
//!     }
//! }
//!
//! impl Predictor for SoftmaxRegression {
//!     fn predict(_config: &Config, p: &Params, x: Tensor) -> Result<Tensor> {
//!         (&x.matmul(p.get("w")?)? + p.get("b")?)?.softmax(1)
//!     }
//! }
//!
//! tensorlet_sdk::export_trainer!(SoftmaxRegression);
//! tensorlet_sdk::export_predictor!(SoftmaxRegression);
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
mod params;
mod plugin;
mod tensor;

pub use config::Config;
pub use error::{Error, Result};
pub use params::{Params, ParamsIter};
pub use plugin::{DataSpec, Predictor, Preprocessor, StepOutput, Trainer};
pub use serde_json;
pub use tensor::{ReduceOp, Tensor, UnaryOp};

/// The bindings wit-bindgen generates for the WIT `tensor` interface.
pub mod raw {
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

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::{Adapter, predictor, preprocessor, trainer};
}
