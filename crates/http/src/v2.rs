//! The OCI distribution API. One route, `/v2/{*rest}`: parse the request into an [`Endpoint`],
//! ask the gate (`portcullis_core::gate`) — which decides everything about access before
//! anything is served or fetched —, dispatch the granted request to the content of its
//! repository (hosted or cached: one interface), and map the result to the wire.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use oci::endpoint::{Method, Page, parse};
use oci::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use oci::range::{ByteRange, RangeRequest, parse_content_range, parse_range};
use oci::{Endpoint, ErrorCode, RepoName};
use portcullis_core::content::{BlobSource, ServedManifest, UploadStart};
use portcullis_core::gate::{Ask, Grant};
use portcullis_core::ports::ByteStream;

use crate::AppState;
use crate::auth::{Credentials, credentials};
use crate::error::V2Error;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v2", any(handle)).route("/v2/", any(handle)).route("/v2/{*rest}", any(handle))
}

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

async fn handle(State(st): St, req: Request) -> Response {
    let started = std::time::Instant::now();
    // A request that does not parse is counted as `invalid`.
    let mut route = Endpoint::INVALID;
    let mut r = match dispatch(&st, req, &mut route).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    r.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    st.metrics.requests.observe(route, r.status().as_u16(), started.elapsed());
    r
}

/// Parse → gate → serve → map; `route` is set to the endpoint's name once parsed.
async fn dispatch(st: &AppState, req: Request, route: &mut &'static str) -> Result<Response, V2Error> {
    let method = Method::parse(req.method().as_str());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let endpoint = parse(method, &path, &query)?;
    *route = endpoint.name();
    let ns = oci::endpoint::query_pairs(&query).into_iter().find(|(k, _)| k == "ns").map(|(_, v)| v);
    let headers = req.headers();
    let bearer = match credentials(headers) {
        Ok(Credentials::Bearer(t)) => Some(t),
        _ => None,
    };
    let caller = st.gate.caller(bearer.as_deref(), &endpoint).map_err(|d| V2Error::denied(st, headers, d))?;
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let client = crate::auth::client_ip(&st.trusted_proxies, headers, peer);
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let ask = Ask { endpoint, ns: ns.as_deref(), host: host.as_deref(), client: &client, agent: &agent };
    let grant = st.gate.decide(&caller, ask).await.map_err(|d| V2Error::denied(st, req.headers(), d))?;
    let mut response = serve(st, req, &grant).await?;
    if let Some(why) = &grant.would_deny {
        let text = format!("299 portcullis \"dry run, would be denied: {}\"", why.replace('"', "'"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().insert(header::WARNING, v);
        }
    }
    Ok(response)
}

/// Serves a granted request from its repository's content (hosted or cached).
async fn serve(st: &AppState, req: Request, grant: &Grant) -> Result<Response, V2Error> {
    let source = match (&grant.endpoint, &grant.source) {
        (Endpoint::Base, _) => return Ok(json(StatusCode::OK, serde_json::json!({}), "application/json")),
        (Endpoint::Catalog { page }, _) => {
            let (repos, more) = st.gate.catalog(&grant.subject, page);
            let r = json(StatusCode::OK, serde_json::json!({ "repositories": repos }), "application/json");
            return Ok(with_link(r, "/v2/_catalog", page, repos.last(), more));
        }
        (_, Some(source)) => source,
        (_, None) => return Err(V2Error::new(ErrorCode::NameUnknown, "unknown repository")),
    };
    let content = st.contents.of(source);
    match &grant.endpoint {
        Endpoint::Base | Endpoint::Catalog { .. } => {
            Err(V2Error::new(ErrorCode::Unsupported, "not a repository route"))
        }
        Endpoint::Tags { name, page } => {
            let p = content.tags(source, page).await?;
            let r =
                json(StatusCode::OK, serde_json::json!({ "name": name.as_str(), "tags": p.tags }), "application/json");
            // An upstream may page without being asked to: carry on with pages of the same size.
            let paged = Page { n: page.n.or(Some(p.tags.len())), last: None };
            Ok(mark_stale(with_link(r, &format!("/v2/{name}/tags/list"), &paged, p.tags.last(), p.more), p.stale))
        }
        Endpoint::Manifest { method: Method::Put, name, reference } => {
            let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = http_body_util::Limited::new(req.into_body(), MAX_MANIFEST_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    V2Error::new(
                        ErrorCode::ManifestInvalid,
                        format!("manifest body unreadable or larger than {MAX_MANIFEST_BYTES} bytes"),
                    )
                })?
                .to_bytes();
            let pushed = content.put_manifest(source, reference, ct.as_deref(), body).await?;
            let mut b = Response::builder()
                .status(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/manifests/{}", pushed.digest))
                .header("docker-content-digest", pushed.digest.to_string())
                .header(header::CONTENT_LENGTH, "0");
            if let Some(s) = pushed.subject {
                b = b.header("oci-subject", s.to_string());
            }
            Ok(built(b.body(Body::empty())))
        }
        Endpoint::Manifest { method: Method::Delete, reference, .. } => {
            content.delete_manifest(source, reference).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Endpoint::Manifest { method, .. } => {
            // What the gate decided on, audited as served.
            let m = st.gate.manifest(grant).await?;
            Ok(mark_stale(manifest_response(*method, &m), m.stale))
        }
        Endpoint::Blob { method: Method::Delete, digest, .. } => {
            content.delete_blob(source, digest).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Endpoint::Blob { method, digest, .. } => match st.contents.blob(source, digest, *method).await? {
            BlobSource::Redirect { url, .. } => Ok(redirect(&url, digest)),
            blob => {
                let range = range_of(&req);
                let size = blob.size();
                blob_response(range.as_deref(), *method, digest, size, |r| content.read(blob, digest, r)).await
            }
        },
        Endpoint::UploadStart { name, digest, mount } => {
            let started = content.start_upload(source, digest.as_ref(), mount.as_ref(), body_stream(req)).await?;
            Ok(match started {
                UploadStart::Created(d) => blob_created(name, &d),
                UploadStart::Session { id, size } => upload_response(StatusCode::ACCEPTED, name, &id, size),
            })
        }
        Endpoint::Upload { method: Method::Get, name, id, .. } => {
            let size = content.upload_status(source, id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, name, id, size))
        }
        Endpoint::Upload { method: Method::Patch, name, id, .. } => {
            let range = content_range(&req)?;
            let size = content.append_upload(source, id, range, body_stream(req)).await?;
            Ok(upload_response(StatusCode::ACCEPTED, name, id, size))
        }
        Endpoint::Upload { method: Method::Put, name, id, digest } => {
            let digest = digest
                .as_ref()
                .ok_or_else(|| V2Error::new(ErrorCode::DigestInvalid, "the digest query parameter is required"))?;
            let range = content_range(&req)?;
            let d = content.finish_upload(source, id, digest, range, body_stream(req)).await?;
            Ok(blob_created(name, &d))
        }
        Endpoint::Upload { id, .. } => {
            content.cancel_upload(source, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Endpoint::Referrers { artifact_type, digest, .. } => {
            let refs = content.referrers(source, digest, artifact_type.as_deref()).await?;
            Ok(mark_stale(referrers_response(refs.list, artifact_type.is_some()), refs.stale))
        }
    }
}

/// A chunk's `Content-Range` (where it starts), when the client sent one.
fn content_range(req: &Request) -> Result<Option<ByteRange>, V2Error> {
    match req.headers().get(header::CONTENT_RANGE) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_content_range)
            .map(Some)
            .ok_or_else(|| V2Error::new(ErrorCode::RangeInvalid, "malformed Content-Range")),
    }
}

fn body_stream(req: Request) -> ByteStream {
    Box::pin(TryStreamExt::map_err(req.into_body().into_data_stream(), std::io::Error::other))
}

fn range_header(size: u64) -> String {
    if size == 0 { "0-0".into() } else { format!("0-{}", size - 1) }
}

fn upload_response(status: StatusCode, name: &RepoName, id: &str, size: u64) -> Response {
    built(
        Response::builder()
            .status(status)
            .header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
            .header(header::RANGE, range_header(size))
            .header("docker-upload-uuid", id)
            .header(header::CONTENT_LENGTH, "0")
            .body(Body::empty()),
    )
}

fn blob_created(name: &RepoName, digest: &oci::Digest) -> Response {
    built(
        Response::builder()
            .status(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
            .header("docker-content-digest", digest.to_string())
            .header(header::CONTENT_LENGTH, "0")
            .body(Body::empty()),
    )
}

/// A response built from its parts, or — when a part cannot be a header (a stored media type
/// with a control character, say) — a 500 that says so: never a 200 with an empty body.
fn built(r: Result<Response, axum::http::Error>) -> Response {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a response could not be built; answered 500");
        let body =
            r#"{"errors":[{"code":"UNKNOWN","message":"internal error; the administrator can find it in the logs"}]}"#;
        (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    })
}

fn json(status: StatusCode, v: serde_json::Value, content_type: &str) -> Response {
    (status, [(header::CONTENT_TYPE, content_type.to_owned())], v.to_string()).into_response()
}

fn with_link(mut r: Response, path: &str, page: &Page, last: Option<&String>, more: bool) -> Response {
    if let (true, Some(last), Some(n)) = (more, last, page.n)
        && let Ok(v) = HeaderValue::from_str(&format!("<{path}?n={n}&last={last}>; rel=\"next\""))
    {
        r.headers_mut().insert(header::LINK, v);
    }
    r
}

/// The referrers index of a manifest (already filtered when `filtered`).
fn referrers_response(refs: Vec<portcullis_core::model::Referrer>, filtered: bool) -> Response {
    let manifests: Vec<serde_json::Value> = refs
        .into_iter()
        .map(|r| {
            let mut d = serde_json::json!({ "mediaType": r.media_type, "digest": r.digest, "size": r.size });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = t.into();
            }
            if let Some(a) = r.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok()) {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut r = json(StatusCode::OK, body, OCI_INDEX);
    if filtered {
        r.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    r
}

/// Marks a response served from the cache while the upstream is failing.
fn mark_stale(mut r: Response, stale: bool) -> Response {
    if stale {
        r.headers_mut().insert(
            header::WARNING,
            HeaderValue::from_static("110 - \"Response is stale: the upstream registry is unavailable\""),
        );
    }
    r
}

/// A 307 to a presigned URL of the blob (S3 with `s3.redirect`).
fn redirect(url: &str, digest: &oci::Digest) -> Response {
    built(
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header("docker-content-digest", digest.to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty()),
    )
}

fn range_of(req: &Request) -> Option<String> {
    req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A blob GET/HEAD response (200, 206 or 416) whose body `open` streams.
async fn blob_response<F, Fut>(
    range_hdr: Option<&str>,
    method: Method,
    digest: &oci::Digest,
    size: u64,
    open: F,
) -> Result<Response, V2Error>
where
    F: FnOnce(ByteRange) -> Fut,
    Fut: Future<Output = portcullis_core::Result<ByteStream>>,
{
    let (status, range) = match parse_range(range_hdr, size) {
        RangeRequest::Full => (StatusCode::OK, ByteRange { start: 0, end: size.saturating_sub(1) }),
        RangeRequest::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeRequest::Unsatisfiable => {
            let mut r =
                V2Error::new(ErrorCode::RangeInvalid, format!("range not satisfiable for a blob of {size} bytes"))
                    .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let len = if size == 0 { 0 } else { range.len() };
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", range.start, range.end));
    }
    let body = if method == Method::Head || len == 0 { Body::empty() } else { Body::from_stream(open(range).await?) };
    Ok(built(b.body(body)))
}

fn manifest_response(method: Method, m: &ServedManifest) -> Response {
    let b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, m.media_type.as_str())
        .header(header::CONTENT_LENGTH, m.content.len())
        .header("docker-content-digest", m.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", m.digest));
    let body = if method == Method::Head { Body::empty() } else { Body::from(m.content.clone()) };
    built(b.body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_that_cannot_be_built_fails_closed() {
        let m = ServedManifest {
            digest: format!("sha256:{}", "a".repeat(64)).parse().unwrap(),
            media_type: "application/vnd.oci.image.manifest.v1+json\nX-Injected: 1".into(),
            content: bytes::Bytes::from_static(b"{}"),
            stale: false,
        };
        let r = manifest_response(Method::Get, &m);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "never a 200 with an empty body");
        assert!(r.headers().get("x-injected").is_none());
        let ok = ServedManifest { media_type: "application/vnd.oci.image.manifest.v1+json".into(), ..m };
        let r = manifest_response(Method::Get, &ok);
        assert_eq!((r.status(), r.headers()["content-length"].to_str().unwrap()), (StatusCode::OK, "2"));
    }
}
