//! Operations endpoints (`/healthz`, `/readyz`, `/metrics`) and the request middleware that gives every
//! request an id (`x-request-id`, kept when the client sent a sane one) that every log line of
//! the request carries, fills `Host` from the HTTP/2 `:authority`, refuses at once what needs
//! the database while it cannot be reached (registry reads go on for a while on the last
//! snapshot, marked in the log and metrics), holds a write's answer until the other replicas
//! took it in, and logs one line per request without headers or credentials.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Ready when the database answers and the blob store can be read and written; what is wrong
/// is said (for the operator: readiness is not public information worth hiding).
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let (meta, blobs) = st.readiness().await;
    // (`ping` says at once what the database's health check found.)
    let problems: Vec<String> =
        [&meta, &blobs].into_iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    let body = serde_json::json!({ "database": meta.is_ok(), "blob_store": blobs.is_ok(), "problems": problems });
    let status = if meta.is_ok() && blobs.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// The process counters, then latency and failures of each storage backend by operation.
async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut body = st.metrics.render();
    body.push_str(&st.metrics.requests.render());
    body.push_str(&st.backend_stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// While the database cannot be reached, a request that needs it is refused at once with the
/// reason (503, in its surface's format) instead of waiting for a connection; health,
/// readiness and metrics still answer. Registry reads and `/token` go on for
/// `database.outage_grace_secs` (decided on the last snapshot, served from what is held in
/// memory and storage; what needs the database is refused at once by the store): `Ok(true)`.
fn database_down(st: &AppState, method: &Method, path: &str) -> Result<bool, Box<Response>> {
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Ok(false);
    }
    let Some(outage) = st.database_unreachable() else { return Ok(false) };
    let read = matches!(*method, Method::GET | Method::HEAD) && (path.starts_with("/v2") || path == "/token");
    let age = outage.since.elapsed();
    let why = if !read {
        outage.why
    } else if age <= st.outage_grace {
        return Ok(true);
    } else {
        format!(
            "{} for {} s, longer than the {} s pulls are decided on this replica's last policy",
            outage.why,
            age.as_secs(),
            st.outage_grace.as_secs()
        )
    };
    let e = portcullis_core::Error::Unavailable(why);
    Err(Box::new(if path.starts_with("/v2") || path == "/token" {
        crate::error::V2Error::from(e).into_response()
    } else if path.starts_with("/scim/") {
        crate::error::ScimError::from(e).into_response()
    } else if path.starts_with("/api/") || path.starts_with("/admission/") {
        crate::error::ApiError(e).into_response()
    } else {
        crate::ui::UiError::from(e).into_response()
    }))
}

/// Whether a successful request changed what replicas keep in memory, so that its client must
/// not be answered before every replica took the change in (`ClusterStore::settle`): writes
/// other than the steps of a blob upload and sign-ins.
fn settles(method: &Method, path: &str, status: StatusCode) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || !(status.is_success() || status.is_redirection())
    {
        return false;
    }
    !(path == "/token" || path.starts_with("/v2") && (*method == Method::POST || *method == Method::PATCH))
}

pub async fn request_id_and_log(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert("x-request-id", v);
    }
    // HTTP/2 carries the host in `:authority`; give every handler a `Host` header.
    if !req.headers().contains_key(header::HOST)
        && let Some(v) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let start = Instant::now();
    // Every line logged while handling the request carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let (mut resp, outage) = match database_down(&st, &method, &path) {
        Err(refused) => (*refused, false),
        Ok(outage) => {
            if outage {
                portcullis_core::metrics::Metrics::inc(&st.metrics.outage_requests);
            }
            let resp = tracing::Instrument::instrument(next.run(req), span).await;
            if settles(&method, &path, resp.status())
                && let Err(e) = st.settle().await
            {
                tracing::warn!(request_id = %id, error = %e, "cannot make sure the other replicas took in a change");
            }
            (resp, outage)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let micros = start.elapsed().as_micros() as u64;
    if outage {
        tracing::info!(target: "access", request_id = %id, %method, path, status = resp.status().as_u16(), micros, database_outage = true);
    } else {
        tracing::info!(target: "access", request_id = %id, %method, path, status = resp.status().as_u16(), micros);
    }
    resp
}
