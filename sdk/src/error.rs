//! The SDK's error type: a sentence for people, which the host shows as the plugin's error.

use std::fmt;

/// An error a plugin returns to the host.
///
/// It carries a message written for people. Tensor ops that the host refuses (a shape
/// mismatch, say) come back as this type too, so `?` works on every SDK call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// This error with `context` put in front: `"{context}: {message}"`.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The host's errors arrive as WIT `string`s.
impl From<String> for Error {
    fn from(message: String) -> Error {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::msg(message)
    }
}

/// What goes back to the host as the WIT `string` error.
impl From<Error> for String {
    fn from(error: Error) -> String {
        error.message
    }
}

/// Returns early with an [`Error`] built like `format!`.
///
/// ```
/// fn check(features: u32) -> tensorlet_sdk::Result<()> {
///     if features == 0 {
///         tensorlet_sdk::bail!("need at least one feature, got {features}");
///     }
///     Ok(())
/// }
/// assert_eq!(check(0).unwrap_err().message(), "need at least one feature, got 0");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($arg)+)))
    };
}

/// Returns early with an [`Error`] built like `format!` unless the condition holds.
///
/// ```
/// fn check(rows: u32) -> tensorlet_sdk::Result<()> {
///     tensorlet_sdk::ensure!(rows > 0, "need at least one row");
///     Ok(())
/// }
/// assert!(check(0).is_err());
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::bail!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_with_strings() {
        let e: Error = String::from("shapes [2, 3] and [4] do not broadcast").into();
        assert_eq!(e.to_string(), "shapes [2, 3] and [4] do not broadcast");
        let back: String = e.context("step").into();
        assert_eq!(back, "step: shapes [2, 3] and [4] do not broadcast");
    }

    #[test]
    fn bail_formats_and_returns() {
        fn f(x: u32) -> Result<u32> {
            ensure!(x < 10, "x is {x}, want < 10");
            if x == 5 {
                bail!("five");
            }
            Ok(x)
        }
        assert_eq!(f(3), Ok(3));
        assert_eq!(f(5).unwrap_err().message(), "five");
        assert_eq!(f(12).unwrap_err().message(), "x is 12, want < 10");
    }
}
