//! The OCI distribution API. One route, `/v2/{*rest}`, parsed once into an [`Endpoint`];
//! access is decided from the endpoint before dispatch, from the *current* directory and the
//! caller's token: the token must grant each required action and the caller must still be
//! permitted it now. Anonymous callers are challenged (401), signed-in callers without
//! permission are refused (403 `DENIED`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use oci::endpoint::{Method, Page, parse};
use oci::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use oci::range::{ByteRange, RangeRequest, parse_content_range, parse_range};
use oci::source::{Source, UpstreamRepo};
use oci::{Action, Endpoint, ErrorCode, RepoName};
use portcullis_core::authz::{Principal, Subject};
use portcullis_core::ports::ByteStream;
use portcullis_core::registry::UploadStart;
use portcullis_core::tokens::Claims;

use crate::AppState;
use crate::access;
use crate::auth::{Credentials, challenge, credentials};
use crate::error::V2Error;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v2", any(handle)).route("/v2/", any(handle)).route("/v2/{*rest}", any(handle))
}

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

async fn handle(State(st): St, req: Request) -> Response {
    let mut r = match dispatch(&st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    r.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    r
}

fn scope_of(ep: &Endpoint) -> Option<String> {
    let acc = ep.required_access();
    let (name, _) = acc.first()?;
    let actions: Vec<&str> = acc.iter().filter(|(n, _)| n == name).map(|(_, a)| a.as_str()).collect();
    Some(format!("repository:{name}:{}", actions.join(",")))
}

/// A policy denial, pointing to the console page where the member can request an exception.
fn denial(base: &str, d: &policy::Decision, image: &policy::Image) -> V2Error {
    let msg = match &d.org {
        Some(org) => format!(
            "{} Request one at {base}/orgs/{org}/requests?image={}",
            d.message,
            crate::ui::query_escape(&image.canonical())
        ),
        None => d.message.clone(),
    };
    V2Error::new(ErrorCode::Denied, msg)
}

/// Who is calling, from a verified bearer token.
fn caller(st: &AppState, headers: &HeaderMap, ep: &Endpoint) -> Result<Option<(Subject, Arc<Claims>)>, V2Error> {
    let scope = scope_of(ep);
    let challenge_err = |msg: &str, error: Option<&str>| {
        V2Error::new(ErrorCode::Unauthorized, msg).with_challenge(challenge(st, headers, scope.as_deref(), error))
    };
    let token = match credentials(headers) {
        Ok(Credentials::Bearer(t)) => t,
        Ok(_) | Err(_) => return Ok(None),
    };
    let claims =
        st.tokens.verify(&token, st.clock.now()).map_err(|e| challenge_err(&e.to_string(), Some("invalid_token")))?;
    if claims.sub.is_empty() {
        return Ok(Some((Subject::Anonymous, claims)));
    }
    let snap = st.identity.directory().snapshot();
    let (id, is_admin) = snap
        .user(&claims.sub)
        .ok_or_else(|| challenge_err("the token's account no longer exists", Some("invalid_token")))?;
    let p = Principal { id, username: claims.sub.clone(), is_admin, scope: None };
    Ok(Some((Subject::User(p), claims)))
}

/// Decides access for a parsed request. Returns the subject and where the repository lives.
fn authorize(
    st: &AppState,
    headers: &HeaderMap,
    ep: &mut Endpoint,
    ns: Option<&str>,
) -> Result<(Subject, Option<Source>), V2Error> {
    let who = caller(st, headers, ep)?;
    let scope = scope_of(ep);
    let unauthorized = |msg: &str, error: Option<&str>| {
        V2Error::new(ErrorCode::Unauthorized, msg).with_challenge(challenge(st, headers, scope.as_deref(), error))
    };
    let Some((subject, claims)) = who else {
        return Err(unauthorized("authentication required", None));
    };
    let snap = st.identity.directory().snapshot();
    if !st.allowed_orgs.is_empty() {
        let orgs = st.allowed_orgs.join(", ");
        match &subject {
            Subject::Anonymous => {
                return Err(unauthorized(
                    &format!("sign-in required: sign in with an account that is a member of {orgs}"),
                    None,
                ));
            }
            Subject::User(p) if !p.is_admin && !st.allowed_orgs.iter().any(|o| snap.is_member(o, p.id)) => {
                return Err(V2Error::new(
                    ErrorCode::Denied,
                    format!("{} is not a member of {orgs}: only members of {orgs} may use this registry", p.username),
                ));
            }
            Subject::User(_) => {}
        }
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    // A mount from a repository the caller may not pull silently becomes a plain upload.
    if let Endpoint::UploadStart { mount, .. } = ep
        && let Some(from) = mount.as_ref().and_then(|m| m.from.as_ref())
    {
        let pull = access::decide(st, &snap, &subject, from, None, host)
            .is_ok_and(|(src, a)| a.pull && matches!(src, Source::Hosted(_)));
        if !(pull && claims.grants(from.as_str(), "pull")) {
            *mount = None;
        }
    }
    let mut source = None;
    for (name, action) in ep.required_access() {
        let (src, actions) = access::decide(st, &snap, &subject, name, ns, host)?;
        if !actions.allows(action) {
            if let (Source::Upstream(u), Action::Push | Action::Delete) = (&src, action) {
                return Err(V2Error::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} is a pull-through cache of {}: push and delete are not supported there",
                        name, u.registry
                    ),
                ));
            }
            return Err(match subject {
                Subject::Anonymous => unauthorized(&format!("sign in to {} {name}", action.as_str()), None),
                Subject::User(ref p) => V2Error::new(
                    ErrorCode::Denied,
                    format!("{} may not {} {name}: {}", p.username, action.as_str(), why_denied(name, action)),
                ),
            });
        }
        if !claims.grants(name.as_str(), action.as_str()) {
            return Err(unauthorized(
                "the token does not grant this action; request a token with this scope",
                Some("insufficient_scope"),
            ));
        }
        if Some(name) == ep.repository() {
            source = Some(src);
        }
    }
    Ok((subject, source))
}

fn why_denied(name: &RepoName, action: Action) -> String {
    match action {
        Action::Pull => format!("the repository does not exist or is private to {}", name.namespace()),
        Action::Push => format!("no write permission in namespace {}", name.namespace()),
        Action::Delete => format!("no admin permission on {name}"),
    }
}

fn body_stream(req: Request) -> ByteStream {
    Box::pin(TryStreamExt::map_err(req.into_body().into_data_stream(), std::io::Error::other))
}

fn range_header(size: u64) -> String {
    if size == 0 { "0-0".into() } else { format!("0-{}", size - 1) }
}

fn upload_response(status: StatusCode, name: &RepoName, id: &str, size: u64) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
        .header(header::RANGE, range_header(size))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .unwrap_or_default()
}

fn blob_created(name: &RepoName, digest: &oci::Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .unwrap_or_default()
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

async fn dispatch(st: &AppState, req: Request) -> Result<Response, V2Error> {
    let method = Method::parse(req.method().as_str());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut ep = parse(method, &path, &query)?;
    let ns = oci::endpoint::query_pairs(&query).into_iter().find(|(k, _)| k == "ns").map(|(_, v)| v);
    let (subject, source) = authorize(st, req.headers(), &mut ep, ns.as_deref())?;
    let Some(mut image) = pull_image(&ep, source.as_ref()) else {
        return dispatch_source(st, req, ep, source, &subject).await;
    };
    let is_manifest = matches!(ep, Endpoint::Manifest { .. });
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut decision = st.iam.decide(&subject, &image);
    let base = crate::auth::base_url(st, req.headers());
    let outcome = match decision.effect {
        policy::Effect::Deny => match pinned(st, &subject, &image, &ep, source.as_ref()).await {
            // A manifest by tag: serve it only if the digest it resolves to is allowed.
            Pinned::ByTag => {
                let r = dispatch_source(st, req, ep, source, &subject).await?;
                let digest = r.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let d = st.iam.decide(&subject, &policy::Image { digest, ..image.clone() });
                if d.effect == policy::Effect::Deny {
                    Err(denial(&base, &d, &image))
                } else {
                    decision = d;
                    Ok(r)
                }
            }
            Pinned::Part(d) => {
                decision = d;
                dispatch_source(st, req, ep, source, &subject).await
            }
            Pinned::No => {
                tracing::info!(user = subject.name(), image = %image.canonical(), org = ?decision.org, rule = %decision.rule, "pull denied");
                Err(denial(&base, &decision, &image))
            }
        },
        _ => dispatch_source(st, req, ep, source, &subject).await,
    };
    if is_manifest {
        if let Ok(r) = &outcome {
            image.digest = r.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        }
        if outcome.is_ok() || decision.effect == policy::Effect::Deny {
            for e in st.iam.pull_entries(&subject, &image, &decision, &client, &agent) {
                st.audit.record(e).await;
            }
        }
    }
    let mut response = outcome?;
    if decision.effect == policy::Effect::WouldDeny {
        let text = format!("299 portcullis \"dry run, would be denied: {}\"", decision.message.replace('"', "'"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().insert(header::WARNING, v);
        }
    }
    Ok(response)
}

/// Serves a request from where its repository lives.
async fn dispatch_source(
    st: &AppState,
    req: Request,
    ep: Endpoint,
    source: Option<Source>,
    subject: &Subject,
) -> Result<Response, V2Error> {
    match source {
        Some(Source::Upstream(up)) => proxied(st, req, ep, up).await,
        _ => hosted(st, req, ep, subject).await,
    }
}

/// How a denied pull may still be allowed by a digest-pinned exception.
enum Pinned {
    No,
    /// A manifest by tag: decide again with the digest it resolves to.
    ByTag,
    /// A child manifest or blob of a pinned manifest that is allowed: this decision.
    Part(policy::Decision),
}

/// Looks for a pinned manifest, allowed with its own digest, that contains what is asked for.
async fn pinned(
    st: &AppState,
    subject: &Subject,
    image: &policy::Image,
    ep: &Endpoint,
    source: Option<&Source>,
) -> Pinned {
    let pins = st.iam.pinned_digests(subject, image);
    if pins.is_empty() {
        return Pinned::No;
    }
    let wanted = match ep {
        Endpoint::Manifest { reference: oci::Reference::Tag(_), .. } => return Pinned::ByTag,
        Endpoint::Manifest { reference: oci::Reference::Digest(d), .. } | Endpoint::Blob { digest: d, .. } => {
            d.to_string()
        }
        _ => return Pinned::No,
    };
    let Some(source) = source else { return Pinned::No };
    for pin in pins {
        let d = st.iam.decide(subject, &policy::Image { digest: Some(pin.clone()), ..image.clone() });
        if d.effect == policy::Effect::Deny {
            continue;
        }
        if contains(st, source, &pin, &wanted, 2).await {
            return Pinned::Part(d);
        }
    }
    Pinned::No
}

/// True when manifest `root` (of the source's repository) is `wanted` or references it, through
/// at most `depth` levels of index.
async fn contains(st: &AppState, source: &Source, root: &str, wanted: &str, depth: u8) -> bool {
    if root == wanted {
        return true;
    }
    let Ok(digest) = root.parse::<oci::Digest>() else { return false };
    let reference = oci::Reference::Digest(digest);
    let served = match source {
        Source::Hosted(n) => st.registry.manifest(n, &reference).await.ok(),
        Source::Upstream(u) => st.proxy.manifest(u, &reference).await.ok().map(|(m, _)| m),
    };
    let Some(m) = served.and_then(|m| oci::Manifest::parse(&m.content, Some(&m.media_type)).ok()) else { return false };
    if m.blob_references().any(|d| d.digest.to_string() == wanted) {
        return true;
    }
    if depth == 0 {
        return false;
    }
    for child in &m.manifests {
        if Box::pin(contains(st, source, &child.digest.to_string(), wanted, depth - 1)).await {
            return true;
        }
    }
    false
}

/// The image a read (manifest, blob, tags list, referrers) is about, for Image Access Management.
fn pull_image(ep: &Endpoint, source: Option<&Source>) -> Option<policy::Image> {
    let digest = match ep {
        Endpoint::Manifest { method: Method::Get | Method::Head, reference, .. } => match reference {
            oci::Reference::Digest(d) => Some(d.to_string()),
            oci::Reference::Tag(_) => None,
        },
        Endpoint::Blob { method: Method::Get | Method::Head, .. }
        | Endpoint::Tags { .. }
        | Endpoint::Referrers { .. } => None,
        _ => return None,
    };
    Some(match source? {
        Source::Hosted(n) => policy::Image { registry: None, path: n.to_string(), digest },
        Source::Upstream(u) => policy::Image { registry: Some(u.registry.clone()), path: u.path.to_string(), digest },
    })
}

/// Requests for repositories hosted here.
async fn hosted(st: &AppState, req: Request, ep: Endpoint, subject: &Subject) -> Result<Response, V2Error> {
    let reg = &st.registry;
    match ep {
        Endpoint::Base => Ok(json(StatusCode::OK, serde_json::json!({}), "application/json")),
        Endpoint::Catalog { page } => {
            let (repos, more) = reg.catalog(subject, &page);
            let r = json(StatusCode::OK, serde_json::json!({ "repositories": repos }), "application/json");
            Ok(with_link(r, "/v2/_catalog", &page, repos.last(), more))
        }
        Endpoint::Tags { name, page } => {
            let (tags, more) = reg.tags(&name, &page).await?;
            let r =
                json(StatusCode::OK, serde_json::json!({ "name": name.as_str(), "tags": tags }), "application/json");
            Ok(with_link(r, &format!("/v2/{name}/tags/list"), &page, tags.last(), more))
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
            let pushed = reg.put_manifest(&name, &reference, ct.as_deref(), body).await?;
            let mut b = Response::builder()
                .status(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/manifests/{}", pushed.digest))
                .header("docker-content-digest", pushed.digest.to_string())
                .header(header::CONTENT_LENGTH, "0");
            if let Some(s) = pushed.subject {
                b = b.header("oci-subject", s.to_string());
            }
            Ok(b.body(Body::empty()).unwrap_or_default())
        }
        Endpoint::Manifest { method: Method::Delete, name, reference } => {
            reg.delete_manifest(&name, &reference).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Endpoint::Manifest { method, name, reference } => {
            Ok(manifest_response(method, reg.manifest(&name, &reference).await?))
        }
        Endpoint::Blob { method: Method::Delete, name, digest } => {
            reg.delete_blob(&name, &digest).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Endpoint::Blob { method, name, digest } => {
            let size = reg.blob(&name, &digest).await?;
            if let Some(r) = redirect(st, method, &digest).await? {
                return Ok(r);
            }
            let range = range_of(&req);
            blob_response(range.as_deref(), method, &digest, size, |r| reg.read_blob(&digest, r)).await
        }
        Endpoint::UploadStart { name, digest, mount } => {
            let started = reg.start_upload(&name, digest.as_ref(), mount.as_ref(), body_stream(req)).await?;
            Ok(match started {
                UploadStart::Created(d) => blob_created(&name, &d),
                UploadStart::Session { id, size } => upload_response(StatusCode::ACCEPTED, &name, &id, size),
            })
        }
        Endpoint::Upload { method: Method::Get, name, id, .. } => {
            let size = reg.upload_status(&name, &id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &name, &id, size))
        }
        Endpoint::Upload { method: Method::Patch, name, id, .. } => {
            let range = match req.headers().get(header::CONTENT_RANGE) {
                None => None,
                Some(v) => Some(
                    v.to_str()
                        .ok()
                        .and_then(parse_content_range)
                        .ok_or_else(|| V2Error::new(ErrorCode::RangeInvalid, "malformed Content-Range"))?,
                ),
            };
            let size = reg.append_upload(&name, &id, range, body_stream(req)).await?;
            Ok(upload_response(StatusCode::ACCEPTED, &name, &id, size))
        }
        Endpoint::Upload { method: Method::Put, name, id, digest } => {
            let digest = digest
                .ok_or_else(|| V2Error::new(ErrorCode::DigestInvalid, "the digest query parameter is required"))?;
            let d = reg.finish_upload(&name, &id, &digest, body_stream(req)).await?;
            Ok(blob_created(&name, &d))
        }
        Endpoint::Upload { name, id, .. } => {
            reg.cancel_upload(&name, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Endpoint::Referrers { name, digest, artifact_type } => {
            let refs = reg.referrers(&name, &digest, artifact_type.as_deref()).await?;
            Ok(referrers_response(refs, artifact_type.is_some()))
        }
    }
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

/// A 307 to a presigned URL of the blob, when the blob store hands those out (S3 with
/// `s3.redirect`) and this is a GET. Access has been decided before this is asked.
async fn redirect(st: &AppState, method: Method, digest: &oci::Digest) -> Result<Option<Response>, V2Error> {
    if method != Method::Get {
        return Ok(None);
    }
    let Some(to) = st.blobs.redirect_url(&digest.to_string()).await? else { return Ok(None) };
    let r = Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, to)
        .header("docker-content-digest", digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(|e| V2Error::from(portcullis_core::Error::Storage(format!("redirect: {e}"))))?;
    Ok(Some(r))
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
    Ok(b.body(body).unwrap_or_default())
}

fn manifest_response(method: Method, m: portcullis_core::registry::ServedManifest) -> Response {
    let b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, m.media_type)
        .header(header::CONTENT_LENGTH, m.content.len())
        .header("docker-content-digest", &m.digest)
        .header(header::ETAG, format!("\"{}\"", m.digest));
    let body = if method == Method::Head { Body::empty() } else { Body::from(m.content) };
    b.body(body).unwrap_or_default()
}

/// Requests for images of other registries, served through the pull-through cache.
async fn proxied(st: &AppState, req: Request, ep: Endpoint, up: UpstreamRepo) -> Result<Response, V2Error> {
    match ep {
        Endpoint::Manifest { method: method @ (Method::Get | Method::Head), reference, .. } => {
            let (m, stale) = st.proxy.manifest(&up, &reference).await?;
            Ok(mark_stale(manifest_response(method, m), stale))
        }
        Endpoint::Blob { method: method @ (Method::Get | Method::Head), digest, .. } => {
            let source = st.proxy.blob(&up, &digest).await?;
            if source.is_stored()
                && let Some(r) = redirect(st, method, &digest).await?
            {
                return Ok(r);
            }
            let size = source.size;
            let range = range_of(&req);
            blob_response(range.as_deref(), method, &digest, size, |r| st.proxy.read(source, &digest, r)).await
        }
        Endpoint::Tags { name, page } => {
            let p = st.proxy.tags(&up, &page).await?;
            let body = serde_json::json!({ "name": name.as_str(), "tags": p.tags });
            let r = json(StatusCode::OK, body, "application/json");
            // An upstream may page without being asked to: carry on with pages of the same size.
            let paged = Page { n: page.n.or(Some(p.tags.len())), last: None };
            Ok(mark_stale(with_link(r, &format!("/v2/{name}/tags/list"), &paged, p.tags.last(), p.more), p.stale))
        }
        Endpoint::Referrers { digest, artifact_type, .. } => {
            match st.proxy.referrers(&up, &digest, artifact_type.as_deref()).await? {
                (Some(refs), stale) => Ok(mark_stale(referrers_response(refs, artifact_type.is_some()), stale)),
                (None, _) => Err(V2Error::new(
                    ErrorCode::ManifestUnknown,
                    format!(
                        "upstream registry {} has no referrers API; look for the tag {}-{} instead",
                        up.registry,
                        digest.algorithm().as_str(),
                        digest.hex()
                    ),
                )),
            }
        }
        _ => Err(V2Error::new(
            ErrorCode::Unsupported,
            format!(
                "{} is a pull-through cache of {}: push and delete are not supported there",
                up.canonical(),
                up.registry
            ),
        )),
    }
}
