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
    Storage(#[source] Cause),
    #[error("database error: {0}")]
    Db(#[source] Cause),
}

/// What an internal failure was, and the error that caused it when there is one: kept, so that
/// code asks the cause (an `io::ErrorKind`, say) instead of matching message text. Its text
/// includes the cause's, because logs print an error's text, not its chain.
#[derive(Debug)]
pub struct Cause {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    pub fn new(context: impl Into<String>) -> Cause {
        Cause { context: context.into(), source: None }
    }

    /// `source`, with `context` (may be empty) saying what was being done.
    pub fn from_error(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause { context: context.into(), source: Some(Box::new(source)) }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.source, self.context.is_empty()) {
            (Some(e), true) => write!(f, "{e}"),
            (Some(e), false) => write!(f, "{}: {e}", self.context),
            (None, _) => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    pub fn registry(code: ErrorCode, msg: impl Into<String>) -> Self {
        Error::Registry(code, msg.into())
    }

    /// A failure of the blob store, the file system or the process itself.
    pub fn storage(context: impl Into<String>) -> Self {
        Error::Storage(Cause::new(context))
    }

    /// A storage failure caused by `e`, while doing `context` (may be empty).
    pub fn storage_from(context: impl Into<String>, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Storage(Cause::from_error(context, e))
    }

    /// A failure of the database.
    pub fn db(context: impl Into<String>) -> Self {
        Error::Db(Cause::new(context))
    }

    /// A failure of the storage backend itself (not an answer such as "already exists"): its
    /// cause is internal, logged and never shown to clients, and it counts as a backend failure.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Db(_))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::storage_from("", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_keeps_its_cause() {
        let e = Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        let cause = std::error::Error::source(&e).and_then(|c| c.source());
        let kind = cause.and_then(|c| c.downcast_ref::<std::io::Error>()).map(|io| io.kind());
        assert_eq!(kind, Some(std::io::ErrorKind::NotFound), "asked of the cause, not of the text");
        assert!(e.is_internal());
        let e = Error::storage_from("reading blob x", std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "storage error: reading blob x: disk on fire", "the log line has the cause");
        assert_eq!(Error::db("poisoned").to_string(), "database error: poisoned");
    }
}
