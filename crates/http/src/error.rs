//! Domain errors to wire errors, once per surface: `V2Error` for the distribution API (spec
//! JSON, Bearer challenge on 401), `ApiError` for `/api/v1` (`{"error","message"}`),
//! `ScimError` for `/scim/v2` (RFC 7644 error bodies). Internal causes are logged here with the
//! request's id and replaced by a generic message.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci::{ErrorCode, WireError};
use portcullis_core::Error;
use portcullis_core::gate::Denial;

use crate::AppState;
use crate::auth::{base_url, challenge};

/// The challenge to send with a 401 on `/v2` (empty for other surfaces).
#[derive(Debug, Clone, Default)]
pub struct Challenge(pub String);

/// An error on the distribution API.
#[derive(Debug)]
pub struct V2Error {
    pub wire: WireError,
    pub challenge: Option<Challenge>,
    pub retry_after: Option<u64>,
    /// How many bytes at the end of the message must survive in the status line when the
    /// message is longer than it (the link where the member requests an exception); 0: none.
    pub keep_tail: usize,
}

/// The most a status line carries: ctr and Kubernetes events show this much of a denial.
const STATUS_LINE_MAX: usize = 300;

/// The reason phrase of a denial: printable ASCII, at most [`STATUS_LINE_MAX`] characters; the
/// last `keep_tail` bytes of the message (the request link) are kept and what comes before
/// them is shortened.
fn reason_phrase(message: &str, keep_tail: usize) -> String {
    let printable = |s: &str| s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect::<String>();
    let all = printable(message);
    if all.len() <= STATUS_LINE_MAX {
        return all;
    }
    let tail = message.len().checked_sub(keep_tail).and_then(|at| message.get(at..)).filter(|_| keep_tail > 0);
    match tail.map(printable).filter(|k| k.len() + 10 < STATUS_LINE_MAX && all.ends_with(k.as_str())) {
        Some(k) => {
            let head: String =
                all[..all.len() - k.len()].trim_end().chars().take(STATUS_LINE_MAX - k.len() - 5).collect();
            format!("{head}... {k}")
        }
        None => all.chars().take(STATUS_LINE_MAX).collect(),
    }
}

impl V2Error {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> V2Error {
        V2Error { wire: WireError::new(code, msg), challenge: None, retry_after: None, keep_tail: 0 }
    }

    pub fn with_challenge(mut self, c: Challenge) -> V2Error {
        self.challenge = Some(c);
        self
    }
}

impl V2Error {
    /// The gate's refusal on the wire: 401 with the Bearer challenge for what the request
    /// needs, 403 `DENIED` (a policy denial links to the console page where the member can
    /// request an exception), 405 `UNSUPPORTED`, `NAME_INVALID`, or 503 when the gate could not
    /// decide.
    pub fn denied(st: &AppState, headers: &HeaderMap, d: Denial) -> V2Error {
        match d {
            Denial::SignIn { message, scope, error } => V2Error::new(ErrorCode::Unauthorized, message)
                .with_challenge(challenge(st, headers, scope.as_deref(), error)),
            Denial::Forbidden(m) => V2Error::new(ErrorCode::Denied, m),
            Denial::Policy(p) => {
                let (decision, image) = (p.decision, p.image);
                // An exception waives a category, never a signature rule: no request link there.
                match &decision.org {
                    Some(org) if decision.exceptable() => {
                        let link = format!(
                            "Request one at {}/orgs/{org}/requests?image={}",
                            base_url(st, headers),
                            crate::ui::query_escape(&image.canonical())
                        );
                        let e = V2Error::new(ErrorCode::Denied, format!("{} {link}", decision.message));
                        V2Error { keep_tail: link.len(), ..e }
                    }
                    _ => V2Error::new(ErrorCode::Denied, decision.message),
                }
            }
            Denial::Unsupported(m) => V2Error::new(ErrorCode::Unsupported, m),
            Denial::Invalid(w) => V2Error::from(w),
            Denial::Unavailable(m) => V2Error::new(ErrorCode::Unavailable, m),
        }
    }
}

impl From<WireError> for V2Error {
    fn from(wire: WireError) -> Self {
        V2Error { wire, challenge: None, retry_after: None, keep_tail: 0 }
    }
}

impl From<Error> for V2Error {
    fn from(e: Error) -> Self {
        let (code, msg) = match &e {
            Error::Registry(code, msg) => (*code, msg.clone()),
            Error::NotFound(m) => (ErrorCode::NameUnknown, m.clone()),
            Error::Unauthenticated(m) => (ErrorCode::Unauthorized, m.clone()),
            Error::Denied(m) => (ErrorCode::Denied, m.clone()),
            Error::Invalid(m) | Error::Conflict(m) => (ErrorCode::Unsupported, m.clone()),
            Error::TooLarge(m) => (ErrorCode::SizeInvalid, m.clone()),
            Error::RateLimited { .. } | Error::Throttled { .. } => (ErrorCode::Toomanyrequests, e.to_string()),
            Error::Unavailable(m) => (ErrorCode::Unavailable, m.clone()),
            Error::Storage(_) | Error::Db(_) => {
                tracing::error!(error = %e, "internal error on the distribution API");
                (ErrorCode::Unavailable, "internal error; the administrator can find it in the logs".to_owned())
            }
        };
        let retry_after = match e {
            Error::RateLimited { retry_after } => Some(retry_after),
            Error::Throttled { retry_after, .. } => retry_after,
            _ => None,
        };
        V2Error { wire: WireError::new(code, msg), challenge: None, retry_after, keep_tail: 0 }
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.wire.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.wire.code.as_str(), message = %self.wire.message, "request failed");
        }
        let mut r = (status, [(header::CONTENT_TYPE, "application/json")], self.wire.to_json()).into_response();
        // Some clients (containerd, hence Kubernetes events; skopeo and podman for a manifest)
        // show only the status line of a failed pull: carry the reason of a denial or of an
        // unavailable upstream there too (HTTP/1 reason phrase).
        if matches!(self.wire.code, ErrorCode::Denied | ErrorCode::Unavailable) {
            let phrase = reason_phrase(&self.wire.message, self.keep_tail);
            if let Ok(p) = hyper::ext::ReasonPhrase::try_from(phrase.into_bytes()) {
                r.extensions_mut().insert(p);
            }
        }
        if let Some(Challenge(c)) = self.challenge
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The HTTP status of a domain error and its short name, for the API and the console.
pub fn status_of(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::Registry(code, _) => {
            (StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST), code.as_str())
        }
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Error::Denied(_) => (StatusCode::FORBIDDEN, "denied"),
        Error::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        Error::RateLimited { .. } | Error::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::Storage(_) | Error::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// What a user may be told about an error: internal causes are logged and replaced.
pub fn public_message(e: &Error, surface: &str) -> String {
    if e.is_internal() {
        tracing::error!(error = %e, surface, "internal error");
        "internal error; the administrator can find it in the logs".to_owned()
    } else {
        e.to_string()
    }
}

/// An error on the admin API.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let (status, kind) = status_of(&e);
        let message = public_message(&e, "admin API");
        let mut r = (status, axum::Json(serde_json::json!({ "error": kind, "message": message }))).into_response();
        match e {
            Error::Unauthenticated(_) => {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis\""));
            }
            Error::RateLimited { retry_after } => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        r
    }
}

/// An error on SCIM (`/scim/v2`): RFC 7644's error body, with `scimType` for a 400 or 409.
#[derive(Debug)]
pub struct ScimError(pub portcullis_core::scim::Failure);

impl From<Error> for ScimError {
    fn from(e: Error) -> Self {
        ScimError(e.into())
    }
}

impl From<portcullis_core::scim::Failure> for ScimError {
    fn from(f: portcullis_core::scim::Failure) -> Self {
        ScimError(f)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let portcullis_core::scim::Failure { error, scim_type } = self.0;
        let (status, _) = status_of(&error);
        let scim_type = scim_type.or(match status {
            StatusCode::BAD_REQUEST => Some("invalidValue"),
            StatusCode::CONFLICT => Some("uniqueness"),
            _ => None,
        });
        let mut body = serde_json::json!({
            "schemas": [portcullis_core::scim::schema::ERROR],
            "status": status.as_u16().to_string(),
            "detail": public_message(&error, "SCIM"),
        });
        if let Some(t) = scim_type {
            body["scimType"] = t.into();
        }
        let mut r = (status, [(header::CONTENT_TYPE, "application/scim+json")], body.to_string()).into_response();
        match error {
            Error::Unauthenticated(_) => {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis SCIM\""));
            }
            Error::RateLimited { retry_after } => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_link_survives_a_long_denial_in_the_status_line() {
        let link = "Request one at https://gw.example.com/orgs/acme/requests?image=docker.io%2Fsomeone%2Fapp";
        let short = format!("Image Access Management: community image is not allowed. {link}");
        assert_eq!(reason_phrase(&short, link.len()), short, "short enough: unchanged");
        let long = format!("Image Access Management: {} is not allowed. {link}", "x".repeat(400));
        let phrase = reason_phrase(&long, link.len());
        assert!(phrase.len() <= STATUS_LINE_MAX && phrase.ends_with(link), "{phrase}");
        assert!(phrase.starts_with("Image Access Management: xxx") && phrase.contains("... Request"), "{phrase}");
        // without a link to keep, the status line is the first 300 printable characters
        let plain = reason_phrase(&format!("caf\u{e9} {}", "y".repeat(400)), 0);
        assert!(plain.len() == STATUS_LINE_MAX && plain.starts_with("caf y"), "{plain}");
    }
}
