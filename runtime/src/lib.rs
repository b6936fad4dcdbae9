//! tensorlet's wasmtime host.
//!
//! A [`Runtime`] owns the one wasmtime engine of a process (pooling allocator,
//! epoch-based deadlines, memory and stack caps), links the host side of the
//! `tensorlet:ml/tensor` interface and a WASI 0.2 context that grants nothing,
//! and compiles each component once per content digest (cached on disk as a
//! precompiled artifact keyed by the engine's configuration). A loaded
//! [`Plugin`] is called through typed methods (`fit`, `transform`, `init`,
//! `step`, `predict`), each in a fresh instance. On top of that sit the
//! pipeline format ([`pipeline`]), CSV data loading ([`data`]), the training
//! loop ([`train`]) and saved models ([`model`]).
//!
//! ```no_run
//! use tensorlet_runtime::{Runtime, RuntimeConfig};
//! let rt = Runtime::new(RuntimeConfig::default())?;
//! let bytes = std::fs::read("standardize.wasm").unwrap();
//! let plugin = rt.load("standardize", &bytes)?;
//! let x = rt.device().from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0])?;
//! let state = plugin.fit("{}", &x)?;
//! let _scaled = plugin.transform("{}", &state, &x)?;
//! # Ok::<(), tensorlet_runtime::RuntimeError>(())
//! ```

pub mod data;
mod engine;
mod error;
mod host;
mod limits;
pub mod model;
pub mod pipeline;
mod plugin;
pub mod train;

pub use engine::{Runtime, RuntimeConfig, digest};
pub use error::{PluginFailure, Result, RuntimeError};
pub use limits::{Limits, human_bytes};
pub use pipeline::Pipeline;
pub use plugin::{DataSpec, NamedTensors, Plugin, StepOutput};
pub use tensorlet_gpu as gpu;

/// Generated bindings, kept private: the host world imports the tensor
/// interface and exports all three plugin interfaces, so one set of bindings
/// calls any plugin; a plugin exports the subset its kind needs.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package tensorlet:host;

            world host {
                import tensorlet:ml/tensor@0.1.0;
                export tensorlet:ml/preprocess@0.1.0;
                export tensorlet:ml/train@0.1.0;
                export tensorlet:ml/predict@0.1.0;
            }
        ",
        world: "tensorlet:host/host",
        with: { "tensorlet:ml/tensor.tensor": tensorlet_gpu::Tensor },
        imports: { default: trappable },
    });

    pub(crate) use tensorlet::ml::{tensor, types};
}
