#![recursion_limit = "256"]
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
//! loop ([`train`]), saved models ([`model`]), recorded training runs
//! ([`run`]), scoring ([`eval`]), where artifacts come from ([`source`]),
//! following a central registry ([`fleet`]) and the server ([`serve`]).
//!
//! ```no_run
//! use tensorlet_runtime::{Runtime, RuntimeConfig, registry::Registry};
//! let rt = Runtime::new(RuntimeConfig::default())?;
//! let reg = Registry::open("/home/me/.tensorlet".as_ref())?;
//! // Verification (digests, signature, trust policy) is the only way to a
//! // component the runtime will compile.
//! let verified = reg.verify_str("acme/standardize@1.0.0")?;
//! let plugin = rt.load(&verified.component().expect("a plugin artifact"))?;
//! let x = rt.device().from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0])?;
//! let state = plugin.fit("{}", &x)?;
//! let _scaled = plugin.transform("{}", &state, &x)?;
//! # Ok::<(), tensorlet_runtime::RuntimeError>(())
//! ```

pub mod alloc;
pub mod artifacts;
pub mod bench;
pub mod budget;
pub mod chain;
pub mod demo;
mod engine;
mod error;
pub mod eval;
pub mod export;
pub mod fleet;
mod host;
pub mod lineage;
pub mod metrics;
pub mod model;
mod nn;
mod plugin;
pub mod report;
pub mod run;
pub mod serve;
pub mod source;
pub mod stream;
pub mod train;

pub use engine::{ComponentInfo, Runtime, RuntimeConfig, digest};
pub use error::{PluginFailure, Result, RuntimeError};
pub use plugin::{
    Abi, CallLimits, DataSpec, HostTraining, Mode, NamedTensors, Plugin, StepOutput, Task,
    instances_created,
};
pub use tensorlet_formats::limits::{
    LimitOverrides, Limits, human_bytes, parse_duration, parse_size,
};
pub use tensorlet_formats::{Pipeline, data, pipeline};
pub use tensorlet_gpu as gpu;
pub use tensorlet_registry as registry;

/// Generated bindings of the tensor interface, kept private. The host
/// implements `tensorlet:ml/tensor` of ABI 0.2 and of ABI 0.1 (for plugins
/// built before 0.2); both map the `tensor` resource to the same host type,
/// so one table and one tape serve either. The plugin interfaces a component
/// exports are called through typed functions found by name (`plugin.rs`),
/// one code path for both versions.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package tensorlet:host;

            world host {
                import tensorlet:ml/tensor@0.2.0;
            }
        ",
        world: "tensorlet:host/host",
        with: { "tensorlet:ml/tensor.tensor": tensorlet_gpu::autodiff::Var },
        imports: { default: trappable },
    });

    pub use tensorlet::ml::tensor;
}

/// `tensorlet:ml/tensor@0.1.0`, as plugins built for ABI 0.1 import it.
mod bindings_v01 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        inline: "
            package tensorlet:host;

            world host {
                import tensorlet:ml/tensor@0.1.0;
            }
        ",
        world: "tensorlet:host/host",
        with: { "tensorlet:ml/tensor.tensor": tensorlet_gpu::autodiff::Var },
        imports: { default: trappable },
    });

    pub use tensorlet::ml::tensor;
}
