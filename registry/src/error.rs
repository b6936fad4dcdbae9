use std::path::PathBuf;

/// Errors of the registry. Messages are sentences for people: they name the
/// artifact, the key and the reason, and say what to do where there is
/// something to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A reference, name, version, alias or key name is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Nothing matches a reference.
    #[error("{0}")]
    NotFound(String),
    /// The version exists already; versions are immutable.
    #[error(
        "{artifact} is already published (manifest {digest}); versions are immutable, so \
         publish a new version instead"
    )]
    AlreadyExists {
        /// `ns/name@version`.
        artifact: String,
        /// The manifest digest of the existing version.
        digest: String,
    },
    /// Verification refused an artifact: unsigned, tampered, untrusted key or
    /// a key outside its namespace.
    #[error("refusing {artifact} (key {key_id}): {reason}")]
    Refused {
        /// `ns/name@version` (or what is known of it).
        artifact: String,
        /// The signing key's id, or `none`.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// A key file is missing, malformed or exists already.
    #[error("{0}")]
    Key(String),
    /// A stored record (a run's, a checkpoint's metrics) does not read back
    /// as what it should be: the database was damaged or edited.
    #[error("{0}")]
    Damaged(String),
    /// The audit log failed verification.
    #[error("audit log: {0}")]
    Audit(String),
    /// SQLite failed.
    #[error("registry database {}: {source}", .path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A remote registry was reached but the exchange failed: TLS (an
    /// untrusted, expired or misnamed certificate), an answer cut short or
    /// late, or an error status.
    #[error("remote registry {url}: {message}")]
    Remote {
        /// The registry's base URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// No connection to a remote registry could be made: refused, no route,
    /// the name does not resolve, or connecting timed out. The only remote
    /// failure after which a local cache may answer instead.
    #[error("remote registry {url} is unreachable: {message}")]
    Unreachable {
        /// The registry's base URL.
        url: String,
        /// Why no connection was made.
        message: String,
    },
}

impl RegistryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the error is a refusal by verification (signature, trust, digests).
    pub fn is_refusal(&self) -> bool {
        matches!(self, RegistryError::Refused { .. })
    }

    /// Whether a remote registry could not be reached at all (no connection);
    /// see [`RegistryError::Unreachable`].
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RegistryError::Unreachable { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
