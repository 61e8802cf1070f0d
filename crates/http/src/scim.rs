//! SCIM 2.0 at `/scim/v2` (RFC 7644) for identity providers: discovery documents (public,
//! they describe no one), then `Users` and `Groups` with a SCIM bearer token. Handlers parse
//! the request, call `portcullis_core::scim` and answer `application/scim+json`; errors are
//! RFC 7644 error bodies (`ScimError` in `error.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::BodyExt;
use portcullis_core::Error;
use portcullis_core::scim::{Caller, Kind, Query as ScimQuery, fail, list_response, schema};
use serde_json::Value;

use crate::AppState;
use crate::auth::{Credentials, base_url, client_addr, credentials};
use crate::error::ScimError;

type St = State<Arc<AppState>>;
type ScimResult = Result<Response, ScimError>;

/// The largest request body (a group with thousands of members fits).
const MAX_BODY: usize = 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema_by_id))
        .route("/scim/v2/.search", post(search_all))
        .route("/scim/v2/{kind}", get(list).post(create))
        .route("/scim/v2/{kind}/{id}", get(read).put(replace).patch(modify).delete(remove).post(search))
        .route("/scim/v2/{kind}/{id}/{*rest}", any(not_found))
}

/// A caller with a SCIM token.
pub struct ScimCaller(Caller);

impl FromRequestParts<Arc<AppState>> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ScimError> {
        let client = client_addr(st, parts);
        st.catch_up().await?;
        match credentials(&parts.headers)? {
            Credentials::Bearer(t) => Ok(ScimCaller(st.scim.authenticate(&t, &client).await?)),
            _ => {
                Err(Error::Unauthenticated("SCIM takes a Bearer token an owner or the administrator created".into())
                    .into())
            }
        }
    }
}

fn scim_json(status: StatusCode, v: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/scim+json")], v.to_string()).into_response()
}

fn base(st: &AppState, headers: &HeaderMap) -> String {
    format!("{}/scim/v2", base_url(st, headers))
}

fn kind(name: &str) -> Result<Kind, ScimError> {
    match name {
        "Users" => Ok(Kind::User),
        "Groups" => Ok(Kind::Group),
        _ => Err(Error::NotFound(format!("no SCIM endpoint /{name}")).into()),
    }
}

/// A body: JSON, up to [`MAX_BODY`].
async fn body(req: Request) -> Result<Value, ScimError> {
    let bytes = match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Error::TooLarge(format!("the request body is larger than {MAX_BODY} bytes")).into());
        }
        Err(e) => return Err(Error::Invalid(format!("the request body could not be read: {e}")).into()),
    };
    serde_json::from_slice(&bytes).map_err(|e| fail("invalidSyntax", format!("the body is not valid JSON: {e}")).into())
}

fn split(v: Option<&String>) -> Vec<String> {
    v.map(|s| s.split(',').map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect()).unwrap_or_default()
}

fn int(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ScimError> {
    q.get(name)
        .map(|v| v.trim().parse().map_err(|_| fail("invalidValue", format!("{name} must be an integer")).into()))
        .transpose()
}

/// The query parameters of a list or read.
fn query(q: &HashMap<String, String>) -> Result<ScimQuery, ScimError> {
    Ok(ScimQuery {
        filter: q.get("filter").cloned(),
        start_index: int(q, "startIndex")?,
        count: int(q, "count")?,
        attributes: split(q.get("attributes")),
        excluded: split(q.get("excludedAttributes")),
    })
}

/// A SearchRequest body (`POST …/.search`).
fn search_query(v: &Value) -> Result<ScimQuery, ScimError> {
    let bad = |m: &str| -> ScimError { fail("invalidValue", m.to_owned()).into() };
    let list = |name: &str| -> Result<Vec<String>, ScimError> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad("attribute names are strings")))
                .collect(),
            Some(Value::String(s)) => Ok(split(Some(s))),
            Some(_) => Err(bad("attributes are a list of names")),
        }
    };
    let num = |name: &str| -> Result<Option<i64>, ScimError> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(n) => n.as_i64().map(Some).ok_or_else(|| bad(&format!("{name} must be an integer"))),
        }
    };
    let filter = match v.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(bad("filter must be a string")),
    };
    if !v.is_object() {
        return Err(fail("invalidSyntax", "a SearchRequest is a JSON object").into());
    }
    Ok(ScimQuery {
        filter,
        start_index: num("startIndex")?,
        count: num("count")?,
        attributes: list("attributes")?,
        excluded: list("excludedAttributes")?,
    })
}

async fn service_provider_config(State(st): St, h: HeaderMap) -> Response {
    scim_json(StatusCode::OK, &schema::service_provider_config(&base(&st, &h)))
}

async fn resource_types(State(st): St, h: HeaderMap) -> Response {
    let all = schema::resource_types(&base(&st, &h));
    scim_json(StatusCode::OK, &list_response(all.len(), 1, all))
}

async fn resource_type(State(st): St, h: HeaderMap, Path(id): Path<String>) -> ScimResult {
    let found = schema::resource_types(&base(&st, &h)).into_iter().find(|r| r["id"] == id.as_str());
    Ok(scim_json(StatusCode::OK, &found.ok_or_else(|| Error::NotFound(format!("no resource type {id}")))?))
}

async fn schemas(State(st): St, h: HeaderMap) -> Response {
    let all = schema::schemas(&base(&st, &h));
    scim_json(StatusCode::OK, &list_response(all.len(), 1, all))
}

async fn schema_by_id(State(st): St, h: HeaderMap, Path(id): Path<String>) -> ScimResult {
    let found = schema::schemas(&base(&st, &h)).into_iter().find(|s| s["id"] == id.as_str());
    Ok(scim_json(StatusCode::OK, &found.ok_or_else(|| Error::NotFound(format!("no schema {id}")))?))
}

async fn list(
    State(st): St,
    c: ScimCaller,
    h: HeaderMap,
    Path(k): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let kind = kind(&k)?;
    Ok(scim_json(StatusCode::OK, &st.scim.list(&c.0, &[kind], &base(&st, &h), &query(&q)?).await?))
}

async fn search_all(State(st): St, c: ScimCaller, req: Request) -> ScimResult {
    let b = base(&st, req.headers());
    let q = search_query(&body(req).await?)?;
    Ok(scim_json(StatusCode::OK, &st.scim.list(&c.0, &[Kind::User, Kind::Group], &b, &q).await?))
}

async fn search(State(st): St, c: ScimCaller, Path((k, id)): Path<(String, String)>, req: Request) -> ScimResult {
    let kind = kind(&k)?;
    if id != ".search" {
        return Err(Error::NotFound(format!("no SCIM endpoint /{k}/{id} for POST")).into());
    }
    let b = base(&st, req.headers());
    let q = search_query(&body(req).await?)?;
    Ok(scim_json(StatusCode::OK, &st.scim.list(&c.0, &[kind], &b, &q).await?))
}

async fn create(State(st): St, c: ScimCaller, Path(k): Path<String>, req: Request) -> ScimResult {
    let kind = kind(&k)?;
    let b = base(&st, req.headers());
    let v = st.scim.create(&c.0, kind, &b, body(req).await?).await?;
    let mut r = scim_json(StatusCode::CREATED, &v);
    if let Some(loc) = v["meta"]["location"].as_str().and_then(|l| HeaderValue::from_str(l).ok()) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

async fn read(
    State(st): St,
    c: ScimCaller,
    h: HeaderMap,
    Path((k, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let kind = kind(&k)?;
    Ok(scim_json(StatusCode::OK, &st.scim.get(&c.0, kind, &base(&st, &h), &id, &query(&q)?).await?))
}

async fn replace(State(st): St, c: ScimCaller, Path((k, id)): Path<(String, String)>, req: Request) -> ScimResult {
    let kind = kind(&k)?;
    let b = base(&st, req.headers());
    Ok(scim_json(StatusCode::OK, &st.scim.replace(&c.0, kind, &b, &id, body(req).await?).await?))
}

async fn modify(State(st): St, c: ScimCaller, Path((k, id)): Path<(String, String)>, req: Request) -> ScimResult {
    let kind = kind(&k)?;
    let b = base(&st, req.headers());
    Ok(scim_json(StatusCode::OK, &st.scim.patch(&c.0, kind, &b, &id, body(req).await?).await?))
}

async fn remove(State(st): St, c: ScimCaller, Path((k, id)): Path<(String, String)>) -> ScimResult {
    st.scim.delete(&c.0, kind(&k)?, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn not_found() -> ScimError {
    Error::NotFound("no such SCIM endpoint".into()).into()
}
