//! The domain error: what went wrong, without HTTP types. The HTTP layer converts it once per
//! surface; internal causes (`Storage`, `Db`) are logged there and never sent to clients.

use oci::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A distribution-protocol error with its spec code (BLOB_UNKNOWN, MANIFEST_INVALID, ...).
    #[error("{1}")]
    Registry(ErrorCode, String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// A request body larger than the endpoint accepts.
    #[error("{0}")]
    TooLarge(String),
    #[error("too many failed sign-ins; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// An upstream registry asked us to slow down; passed on to the client.
    #[error("upstream registry is rate limiting: {message}")]
    Throttled { retry_after: Option<u64>, message: String },
    /// An upstream registry is unreachable or failing.
    #[error("{0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("database error: {0}")]
    Db(String),
}

impl Error {
    pub fn registry(code: ErrorCode, msg: impl Into<String>) -> Self {
        Error::Registry(code, msg.into())
    }

    /// A failure of the storage backend itself (not an answer such as "already exists"): its
    /// cause is internal, logged and never shown to clients, and it counts as a backend failure.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Db(_))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}
