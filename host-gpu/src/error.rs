use std::fmt;

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
            | TensorError::TooLarge { op, .. } => op,
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
        }
    }
}

impl std::error::Error for TensorError {}
