use std::path::PathBuf;
use std::time::Duration;

use crate::human_bytes;

/// What went wrong inside a plugin call. Every variant stops only that call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginFailure {
    /// The call ran past its deadline (an infinite loop, or just too slow).
    #[error("ran past its deadline of {0:?} and was stopped")]
    Deadline(Duration),
    /// Linear memory hit the cap.
    #[error("hit the memory limit of {} and was stopped", human_bytes(*.0))]
    Memory(usize),
    /// Host tensors held by the call went over the cap.
    #[error("held more than {} of host tensors and was stopped", human_bytes(*.0))]
    HostTensorMemory(usize),
    /// Its host tensors did not fit in a budget shared with other calls
    /// (the process's `--max-memory`, or a served model's share of it).
    #[error("could not hold more host tensors: {0}")]
    OverBudget(crate::budget::OverBudget),
    /// The wasm stack overflowed (unbounded recursion).
    #[error("overflowed its stack (limit {}) and was stopped", human_bytes(*.0))]
    Stack(usize),
    /// Any other trap, such as a panic; `stderr` holds what the plugin printed.
    #[error("trapped: {message}{}", stderr_suffix(.stderr))]
    Trap {
        /// The trap description.
        message: String,
        /// The tail of the plugin's stderr (a panic message, usually).
        stderr: String,
    },
    /// The plugin returned an error of its own.
    #[error("returned an error: {0}")]
    Error(String),
    /// The plugin returned something the host cannot accept.
    #[error("{0}")]
    BadOutput(String),
    /// The plugin returned a NaN or infinite value where the host needs a
    /// finite one (a prediction, a probability, a loss).
    #[error("{0}")]
    NonFinite(String),
    /// The component does not export an interface the call needs.
    #[error("does not export `{0}`")]
    MissingExport(String),
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(" (plugin stderr: {s})")
    }
}

/// Errors of the runtime library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The wasmtime engine could not be configured.
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    /// A component failed to compile or to link against the host.
    #[error("plugin `{plugin}` cannot be loaded: {message}")]
    Load {
        /// The plugin's name.
        plugin: String,
        /// Why.
        message: String,
    },
    /// A plugin call failed.
    #[error("plugin `{plugin}` {failure} (during {call})")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The call (`predict`, `step`, ...).
        call: &'static str,
        /// What happened.
        failure: PluginFailure,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A data file is malformed.
    #[error("{}{}: {message}", .path.display(), tensorlet_formats::location(*.line, *.column))]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A pipeline file is malformed.
    #[error("pipeline {}: {message}", .path.display())]
    Pipeline {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A saved model is malformed or does not fit the input.
    #[error("model {}: {message}", .path.display())]
    Model {
        /// The model directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor op on the host failed (a host-side bug or bad input data).
    #[error(transparent)]
    Tensor(#[from] tensorlet_gpu::TensorError),
    /// The device failed (a GPU was lost, ran out of memory or rejected
    /// work): the call that noticed it and any after it fail until
    /// [`tensorlet_gpu::Device::recover`].
    #[error(transparent)]
    Device(#[from] tensorlet_gpu::DeviceError),
    /// The registry refused or failed (verification, lookup, storage).
    #[error(transparent)]
    Registry(#[from] tensorlet_registry::RegistryError),
    /// Training was stopped before it finished.
    #[error("training was interrupted")]
    Interrupted,
}

impl RuntimeError {
    /// Whether the call failed for want of host tensor memory that other
    /// calls hold (retrying later may succeed).
    pub fn over_budget(&self) -> bool {
        matches!(
            self,
            RuntimeError::Plugin {
                failure: PluginFailure::OverBudget(_),
                ..
            }
        )
    }

    /// Whether a missing value in the input can be why this happened: a
    /// non-finite output, or a preprocessor that refused its input (an
    /// encoder that needs imputed values).
    pub fn may_come_from_missing_values(&self) -> bool {
        matches!(
            self,
            RuntimeError::Plugin {
                failure: PluginFailure::NonFinite(_),
                ..
            } | RuntimeError::Plugin {
                call: "transform",
                failure: PluginFailure::Error(_),
                ..
            }
        )
    }

    /// How to raise the sandbox limit a plugin hit, when it hit one that a
    /// setting raises (the deadline or the host-tensor memory).
    pub fn limit_hint(&self) -> Option<&'static str> {
        match self {
            RuntimeError::Plugin {
                failure: PluginFailure::Deadline(_),
                ..
            } => Some("--deadline (or the pipeline's [limits] deadline) raises the limit"),
            RuntimeError::Plugin {
                failure: PluginFailure::HostTensorMemory(_),
                ..
            } => Some(
                "--max-tensor-memory (or the pipeline's [limits] max_tensor_memory) raises the \
                 limit",
            ),
            RuntimeError::Plugin {
                failure: PluginFailure::OverBudget(_),
                ..
            } => Some("--max-memory raises the budget of the whole process"),
            _ => None,
        }
    }

    /// The device failure behind this error, if a failed device (rather than
    /// a plugin, the data or a file) is why it happened.
    pub fn device_error(&self) -> Option<&tensorlet_gpu::DeviceError> {
        match self {
            RuntimeError::Device(e) => Some(e),
            RuntimeError::Tensor(e) => e.device_error(),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl From<tensorlet_formats::Error> for RuntimeError {
    fn from(e: tensorlet_formats::Error) -> Self {
        use tensorlet_formats::Error as F;
        match e {
            F::Io { path, source } => RuntimeError::Io { path, source },
            F::Data {
                path,
                line,
                column,
                message,
            } => RuntimeError::Data {
                path,
                line,
                column,
                message,
            },
            F::Pipeline { path, message } => RuntimeError::Pipeline { path, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(failure: PluginFailure) -> RuntimeError {
        RuntimeError::Plugin {
            plugin: "iris".into(),
            call: "step",
            failure,
        }
    }

    #[test]
    fn the_limits_a_setting_raises_say_which_setting() {
        let deadline = plugin(PluginFailure::Deadline(Duration::from_secs(30)));
        assert_eq!(
            deadline.limit_hint(),
            Some("--deadline (or the pipeline's [limits] deadline) raises the limit")
        );
        let memory = plugin(PluginFailure::HostTensorMemory(1 << 30));
        assert_eq!(
            memory.limit_hint(),
            Some(
                "--max-tensor-memory (or the pipeline's [limits] max_tensor_memory) raises the \
                 limit"
            )
        );
        // Linear memory and the stack are fixed; nothing raises them.
        assert_eq!(plugin(PluginFailure::Memory(1 << 20)).limit_hint(), None);
        assert_eq!(RuntimeError::Interrupted.limit_hint(), None);
    }
}
