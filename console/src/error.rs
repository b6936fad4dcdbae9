//! What a page can fail with, and the page a person then sees.
//!
//! The caller's mistakes (an unknown artifact, a malformed query, an action
//! this console does not allow) answer 4xx with a sentence and a way back; a
//! registry that cannot be opened answers 503 naming the path and the cause
//! (it is the person's own home, so the cause is theirs to fix); anything
//! else answers 500 without internal details, which go to the log.

use std::path::PathBuf;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tensorlet_runtime::registry::RegistryError;

use crate::pages::Layout;

/// Errors of the console's handlers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// No such artifact, run, dataset or page.
    #[error("{0}")]
    NotFound(String),
    /// A query parameter or form field is missing, unknown or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// An action this console does not allow (no key, not loopback, a
    /// cross-site request, a wrong token).
    #[error("{0}")]
    Forbidden(String),
    /// Verification refused what an action would have moved.
    #[error("{0}")]
    Refused(String),
    /// The registry in the home could not be opened.
    #[error("cannot open the registry in {}: {cause}", .home.display())]
    Unavailable {
        /// `$TENSORLET_HOME`.
        home: PathBuf,
        /// Why, as the registry said it.
        cause: String,
    },
    /// The page needs something this console was not started with (the
    /// local home for runs when artifacts come from a remote, a serving
    /// address).
    #[error("{0}")]
    Unsupported(String),
    /// A remote (registry or serve admin address) did not answer.
    #[error("{0}")]
    Remote(String),
    /// Anything else: logged, shown without details.
    #[error("{0}")]
    Internal(String),
}

impl From<RegistryError> for ConsoleError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(m) => ConsoleError::NotFound(m),
            RegistryError::Invalid(m) => ConsoleError::BadRequest(m),
            e @ RegistryError::Refused { .. } => ConsoleError::Refused(e.to_string()),
            e @ (RegistryError::Remote { .. } | RegistryError::Unreachable { .. }) => {
                ConsoleError::Remote(e.to_string())
            }
            other => ConsoleError::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> Self {
        ConsoleError::Internal(format!("template: {e}"))
    }
}

impl ConsoleError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Forbidden(_) | ConsoleError::Refused(_) => StatusCode::FORBIDDEN,
            ConsoleError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ConsoleError::Remote(_) => StatusCode::BAD_GATEWAY,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn heading(&self) -> &'static str {
        match self {
            ConsoleError::NotFound(_) => "Not found",
            ConsoleError::BadRequest(_) => "Bad request",
            ConsoleError::Forbidden(_) => "Not allowed",
            ConsoleError::Refused(_) => "Refused by verification",
            ConsoleError::Unavailable { .. } => "Registry unavailable",
            ConsoleError::Unsupported(_) => "Not available here",
            ConsoleError::Remote(_) => "Remote unavailable",
            ConsoleError::Internal(_) => "Internal error",
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    heading: &'static str,
    message: String,
    back: &'static str,
    back_label: &'static str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ConsoleError::Internal(m) => {
                tracing::error!("console: {m}");
                "The console failed to answer this page; the server's log says why.".to_string()
            }
            other => other.to_string(),
        };
        let (back, back_label) = match &self {
            ConsoleError::NotFound(m) if m.contains("run") => ("/runs", "Back to the runs"),
            ConsoleError::NotFound(m) if m.contains("dataset") => {
                ("/datasets", "Back to the datasets")
            }
            _ => ("/artifacts", "Back to the artifacts"),
        };
        let page = ErrorPage {
            layout: Layout::new(self.heading(), ""),
            status: status.as_u16(),
            heading: self.heading(),
            message,
            back,
            back_label,
        };
        let body = page.render().unwrap_or_else(|e| {
            tracing::error!("console: error page: {e}");
            format!("{status}")
        });
        crate::pages::html(status, body)
    }
}

/// Result alias of the handlers.
pub type Result<T, E = ConsoleError> = std::result::Result<T, E>;
