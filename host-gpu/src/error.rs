use std::fmt;

/// Why work on a device failed after the device was opened: the GPU was
/// lost, ran out of memory, or rejected work.
///
/// Ops on a failed device do not fail: they give tensors that hold this
/// error, and reading one ([`crate::Device::to_vec`]) returns it, so a failure
/// surfaces where results are read. It is sticky: every later read on the
/// device fails the same way until [`crate::Device::recover`] opens it again.
/// The CPU backend never fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The device was lost: the driver reset it (after a hang or a timeout),
    /// the GPU fell off the bus, or the device was destroyed.
    #[error(
        "the GPU device `{adapter}` was lost ({reason}); the tensors on it are gone. Retry; \
         if it happens again, use --device cpu"
    )]
    Lost {
        /// The adapter's name.
        adapter: String,
        /// Why, as the driver or wgpu put it.
        reason: String,
    },
    /// The device ran out of memory.
    #[error(
        "the GPU device `{adapter}` ran out of memory ({message}); use smaller batches or \
         --device cpu"
    )]
    OutOfMemory {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// wgpu or the driver rejected work: a bug in tensorlet's GPU backend or
    /// in the driver.
    #[error(
        "the GPU device `{adapter}` rejected work ({message}); this is a bug in tensorlet's \
         GPU backend or in the driver, please report it; use --device cpu meanwhile"
    )]
    Rejected {
        /// The adapter's name.
        adapter: String,
        /// wgpu's or the driver's message.
        message: String,
    },
}

impl DeviceError {
    /// The name of the adapter that failed.
    pub fn adapter(&self) -> &str {
        match self {
            DeviceError::Lost { adapter, .. }
            | DeviceError::OutOfMemory { adapter, .. }
            | DeviceError::Rejected { adapter, .. } => adapter,
        }
    }

    /// Whether the device was lost (rather than failing one piece of work).
    pub fn is_lost(&self) -> bool {
        matches!(self, DeviceError::Lost { .. })
    }
}

/// Why an op refused its arguments. The message names the op and the shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorError {
    /// The shapes of the operands do not fit the op.
    Shape {
        /// The op that refused.
        op: &'static str,
        /// What was wrong, with the shapes involved.
        message: String,
    },
    /// A non-shape argument (an axis, an index, a count) is out of range.
    Argument {
        /// The op that refused.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// An operand's element type is not one the op takes (arithmetic on an
    /// i64 tensor, f32 indices).
    DType {
        /// The op that refused.
        op: &'static str,
        /// What was wrong, with the element types involved.
        message: String,
    },
    /// The tensor would exceed [`crate::MAX_ELEMENTS`] or [`crate::MAX_DIMS`].
    TooLarge {
        /// The op that refused.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The op had to read an operand (to check it) and the device has failed.
    Device {
        /// The op that could not read its operand.
        op: &'static str,
        /// How the device failed.
        error: DeviceError,
    },
}

impl TensorError {
    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        TensorError::Shape {
            op,
            message: message.into(),
        }
    }

    pub(crate) fn argument(op: &'static str, message: impl Into<String>) -> Self {
        TensorError::Argument {
            op,
            message: message.into(),
        }
    }

    pub(crate) fn dtype(op: &'static str, message: impl Into<String>) -> Self {
        TensorError::DType {
            op,
            message: message.into(),
        }
    }

    pub(crate) fn too_large(op: &'static str, message: impl Into<String>) -> Self {
        TensorError::TooLarge {
            op,
            message: message.into(),
        }
    }

    /// The op that refused.
    pub fn op(&self) -> &'static str {
        match self {
            TensorError::Shape { op, .. }
            | TensorError::Argument { op, .. }
            | TensorError::DType { op, .. }
            | TensorError::TooLarge { op, .. }
            | TensorError::Device { op, .. } => op,
        }
    }

    /// The device failure behind this error, when a failed device (not the
    /// arguments) is the reason.
    pub fn device_error(&self) -> Option<&DeviceError> {
        match self {
            TensorError::Device { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorError::Shape { op, message }
            | TensorError::Argument { op, message }
            | TensorError::DType { op, message }
            | TensorError::TooLarge { op, message } => write!(f, "{op}: {message}"),
            TensorError::Device { op, error } => write!(f, "{op}: {error}"),
        }
    }
}

impl std::error::Error for TensorError {}
