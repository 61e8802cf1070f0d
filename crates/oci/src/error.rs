//! The one table of distribution wire error codes: each code, its HTTP status and default
//! message. Every v2 error response is built from this table.

use serde::Serialize;

/// Error codes of the OCI distribution spec (plus distribution's `UNAVAILABLE`,
/// `RANGE_INVALID` and `PAGINATION_NUMBER_INVALID`, which clients understand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    Toomanyrequests,
    Unavailable,
    RangeInvalid,
    PaginationNumberInvalid,
    TagInvalid,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::Toomanyrequests,
        ErrorCode::Unavailable,
        ErrorCode::RangeInvalid,
        ErrorCode::PaginationNumberInvalid,
        ErrorCode::TagInvalid,
    ];

    /// (status, wire code, default message)
    fn entry(self) -> (u16, &'static str, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => (404, "BLOB_UNKNOWN", "blob unknown to registry"),
            BlobUploadInvalid => (400, "BLOB_UPLOAD_INVALID", "blob upload invalid"),
            BlobUploadUnknown => (404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
            DigestInvalid => (400, "DIGEST_INVALID", "provided digest did not match uploaded content"),
            ManifestBlobUnknown => {
                (404, "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry")
            }
            ManifestInvalid => (400, "MANIFEST_INVALID", "manifest invalid"),
            ManifestUnknown => (404, "MANIFEST_UNKNOWN", "manifest unknown to registry"),
            NameInvalid => (400, "NAME_INVALID", "invalid repository name"),
            NameUnknown => (404, "NAME_UNKNOWN", "repository name not known to registry"),
            SizeInvalid => (400, "SIZE_INVALID", "provided length did not match content length"),
            Unauthorized => (401, "UNAUTHORIZED", "authentication required"),
            Denied => (403, "DENIED", "requested access to the resource is denied"),
            Unsupported => (405, "UNSUPPORTED", "the operation is unsupported"),
            Toomanyrequests => (429, "TOOMANYREQUESTS", "too many requests"),
            Unavailable => (503, "UNAVAILABLE", "service unavailable"),
            RangeInvalid => (416, "RANGE_INVALID", "invalid content range"),
            PaginationNumberInvalid => (400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested"),
            TagInvalid => (400, "TAG_INVALID", "manifest tag did not match URI"),
        }
    }

    pub fn status(self) -> u16 {
        self.entry().0
    }

    pub fn as_str(self) -> &'static str {
        self.entry().1
    }

    pub fn default_message(self) -> &'static str {
        self.entry().2
    }
}

/// One error as sent on the wire: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into(), detail: None }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body for this error.
    pub fn to_json(&self) -> Vec<u8> {
        let mut e = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        serde_json::to_vec(&serde_json::json!({ "errors": [e] })).unwrap_or_default()
    }
}

impl From<ErrorCode> for WireError {
    fn from(code: ErrorCode) -> Self {
        WireError::new(code, code.default_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str(), "serde name matches wire name");
            assert!((400..600).contains(&code.status()));
            assert!(!code.default_message().is_empty());
        }
        assert_eq!(ErrorCode::DigestInvalid.status(), 400);
        assert_eq!(ErrorCode::Denied.status(), 403);
    }

    #[test]
    fn body_shape() {
        let e = WireError::new(ErrorCode::NameUnknown, "no such repo").to_json();
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "no such repo");
    }
}
