//! The admin REST API under `/api/v1` (JSON). Every handler authenticates with [`ApiUser`],
//! calls one service and maps the result; rules live in the services.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use http_body_util::BodyExt;
use portcullis_core::Error;
use portcullis_core::model::{Permission, TokenScope, Visibility};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::AppState;
use crate::auth::ApiUser;
use crate::error::ApiError;

type St = State<Arc<AppState>>;
type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{name}", axum::routing::patch(patch_user).delete(delete_user))
        .route("/api/v1/users/{name}/password", put(set_password))
        .route("/api/v1/users/{name}/throttle", delete(lift_throttle))
        .route("/api/v1/access-tokens", get(list_tokens).post(create_token))
        .route("/api/v1/access-tokens/{id}", delete(delete_token))
        .route("/api/v1/scim-tokens", get(list_scim_tokens).post(create_scim_token))
        .route("/api/v1/scim-tokens/{id}", delete(delete_scim_token))
        .route("/api/v1/orgs", get(list_orgs).post(create_org))
        .route("/api/v1/orgs/{org}", get(get_org))
        .route("/api/v1/orgs/{org}/members", get(members))
        .route("/api/v1/orgs/{org}/teams", get(teams).post(create_team))
        .route("/api/v1/orgs/{org}/teams/{team}", delete(delete_team).patch(update_team))
        .route("/api/v1/orgs/{org}/teams/{team}/members", get(team_members).post(add_member))
        .route("/api/v1/orgs/{org}/teams/{team}/members/{user}", delete(remove_member))
        .route("/api/v1/orgs/{org}/teams/{team}/permissions", get(team_permissions))
        .route("/api/v1/orgs/{org}/teams/{team}/permissions/{*repo}", put(set_permission).delete(revoke_permission))
        .route("/api/v1/orgs/{org}/teams/{team}/settings", get(get_team_settings).put(put_team_settings))
        .route("/api/v1/orgs/{org}/settings", get(get_settings).put(put_settings))
        .route("/api/v1/orgs/{org}/policy/versions", get(policy_versions))
        .route("/api/v1/orgs/{org}/policy/diff", get(policy_diff))
        .route("/api/v1/orgs/{org}/policy/versions/{id}/restore", axum::routing::post(restore_version))
        .route("/api/v1/orgs/{org}/exceptions", get(list_exceptions).post(add_exception))
        .route("/api/v1/orgs/{org}/robots", get(list_robots).post(create_robot))
        .route("/api/v1/orgs/{org}/robots/{name}", delete(delete_robot))
        .route("/api/v1/orgs/{org}/exceptions/{id}", delete(delete_exception))
        .route("/api/v1/orgs/{org}/exception-requests", get(list_requests).post(create_request))
        .route("/api/v1/orgs/{org}/exception-requests/{id}/approve", axum::routing::post(approve_request))
        .route("/api/v1/orgs/{org}/exception-requests/{id}/decline", axum::routing::post(decline_request))
        .route("/api/v1/orgs/{org}/audit", get(audit))
        .route("/api/v1/audit", get(audit_all))
        .route("/api/v1/orgs/{org}/check", get(check))
        .route("/api/v1/orgs/{org}/settings/preview", axum::routing::post(preview))
        .route("/api/v1/workload-issuers", get(list_workload_issuers).post(add_workload_issuer))
        .route("/api/v1/workload-issuers/{name}", delete(remove_workload_issuer))
        .route("/api/v1/publishers", get(publishers))
        .route("/api/v1/publishers/{namespace}", put(set_publisher).delete(delete_publisher))
        .route("/api/v1/repositories", get(repositories))
        .route("/api/v1/repositories/{*name}", axum::routing::patch(patch_repository).delete(delete_repository))
}

/// The largest request body the API reads (its largest documents are settings of a few KiB).
const MAX_BODY: usize = 256 * 1024;

/// A request body, read up to [`MAX_BODY`] (a larger one is a 413 in the API's JSON shape).
struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
        match limited.collect().await {
            Ok(b) => Ok(JsonBody(b.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError(Error::TooLarge(format!("the request body is larger than {MAX_BODY} bytes"))))
            }
            Err(e) => Err(ApiError(Error::Invalid(format!("the request body could not be read: {e}")))),
        }
    }
}

impl JsonBody {
    /// The body as `T`, which must be written as one JSON object: serde would also take a
    /// struct from an array and a defaulted one from `null`, and an endpoint must never read a
    /// malformed request as "reset everything".
    fn object<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let invalid = |m: String| ApiError(Error::Invalid(m));
        let value: serde_json::Value =
            serde_json::from_slice(&self.0).map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(invalid(format!("the body must be a JSON object, not {}", kind(&value))));
        }
        serde_json::from_value(value).map_err(|e| invalid(format!("invalid body: {e}")))
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn ok(v: serde_json::Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

fn created(v: serde_json::Value) -> ApiResult {
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::DOCUMENT.as_str()).into_response()
}

async fn me(u: ApiUser) -> ApiResult {
    ok(json!({ "username": u.0.username, "admin": u.0.is_admin, "scope": u.0.scope.map(|s| s.as_str()) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn create_user(State(st): St, u: ApiUser, b: JsonBody) -> ApiResult {
    let n: NewUser = b.object()?;
    let user = st.identity.create_user(&u.0, &n.username, &n.password, n.admin).await?;
    created(json!(user))
}

async fn list_users(State(st): St, u: ApiUser) -> ApiResult {
    ok(json!(st.identity.list_users(&u.0).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    disabled: bool,
}

async fn patch_user(State(st): St, u: ApiUser, Path(name): Path<String>, b: JsonBody) -> ApiResult {
    let p: UserPatch = b.object()?;
    st.identity.set_disabled(&u.0, &name, p.disabled).await?;
    ok(json!({ "username": name, "disabled": p.disabled }))
}

async fn delete_user(State(st): St, u: ApiUser, Path(name): Path<String>) -> ApiResult {
    st.identity.delete_user(&u.0, &name).await?;
    no_content()
}

async fn lift_throttle(State(st): St, u: ApiUser, Path(name): Path<String>) -> ApiResult {
    let cleared = st.identity.lift_throttle(&u.0, &name).await?;
    ok(json!({ "username": name, "cleared": cleared }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(State(st): St, u: ApiUser, Path(name): Path<String>, b: JsonBody) -> ApiResult {
    let p: NewPassword = b.object()?;
    st.identity.set_password(&u.0, &name, &p.password).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    label: String,
    /// `read` or `read-write` (the answer's word too).
    #[serde(default)]
    scope: Option<String>,
    /// The earlier one-element list form of `scope`, still read.
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

async fn create_token(State(st): St, u: ApiUser, b: JsonBody) -> ApiResult {
    let n: NewToken = b.object()?;
    let named = match (n.scope.as_deref(), n.scopes.as_slice()) {
        (s, []) => s,
        (None, [s]) => Some(s.as_str()),
        _ => return Err(ApiError(Error::Invalid("give one scope: \"scope\": \"read\" or \"read-write\"".into()))),
    };
    let scope = match named {
        None => TokenScope::ReadWrite,
        Some(s) => TokenScope::parse(s)
            .ok_or_else(|| ApiError(Error::Invalid(format!("unknown scope {s:?}; use read or read-write"))))?,
    };
    let (t, secret) = st.identity.create_pat(&u.0, &n.label, scope, n.expires_at).await?;
    let mut v = json!(t);
    v["token"] = secret.into();
    created(v)
}

async fn list_tokens(State(st): St, u: ApiUser) -> ApiResult {
    ok(json!(st.identity.list_tokens(&u.0).await?))
}

async fn delete_token(State(st): St, u: ApiUser, Path(id): Path<i64>) -> ApiResult {
    st.identity.delete_token(&u.0, id).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewScimToken {
    name: String,
    /// The organization the token provisions; none: the whole instance (administrator only).
    #[serde(default)]
    org: Option<String>,
}

#[derive(Deserialize)]
struct OrgParam {
    org: Option<String>,
}

async fn create_scim_token(State(st): St, u: ApiUser, b: JsonBody) -> ApiResult {
    let n: NewScimToken = b.object()?;
    let (t, secret) = st.scim.create_token(&u.0, n.org.as_deref(), &n.name).await?;
    let mut v = json!(t);
    v["org"] = json!(n.org);
    v["token"] = secret.into();
    created(v)
}

async fn list_scim_tokens(State(st): St, u: ApiUser, Query(p): Query<OrgParam>) -> ApiResult {
    ok(json!(st.scim.list_tokens(&u.0, p.org.as_deref()).await?))
}

async fn delete_scim_token(State(st): St, u: ApiUser, Path(id): Path<i64>) -> ApiResult {
    st.scim.delete_token(&u.0, id).await?;
    no_content()
}

async fn create_org(State(st): St, u: ApiUser, b: JsonBody) -> ApiResult {
    let n: Named = b.object()?;
    created(json!(st.orgs.create(&u.0, &n.name).await?))
}

async fn list_orgs(State(st): St, u: ApiUser) -> ApiResult {
    ok(json!(st.orgs.list(&u.0).await?))
}

async fn get_org(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    let o = st.orgs.visible(&u.0, &org).await?;
    let teams = st.orgs.teams(&u.0, &org).await?;
    ok(json!({ "id": o.id, "name": o.name, "created_at": o.created_at, "teams": teams }))
}

async fn members(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.orgs.members(&u.0, &org).await?))
}

async fn teams(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.orgs.teams(&u.0, &org).await?))
}

async fn create_team(State(st): St, u: ApiUser, Path(org): Path<String>, b: JsonBody) -> ApiResult {
    let n: Named = b.object()?;
    created(json!(st.orgs.create_team(&u.0, &org, &n.name).await?))
}

async fn delete_team(State(st): St, u: ApiUser, Path((org, team)): Path<(String, String)>) -> ApiResult {
    st.orgs.delete_team(&u.0, &org, &team).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamChange {
    directory_managed: bool,
}

async fn update_team(State(st): St, u: ApiUser, Path((org, team)): Path<(String, String)>, b: JsonBody) -> ApiResult {
    let c: TeamChange = b.object()?;
    ok(json!(st.orgs.set_directory_managed(&u.0, &org, &team, c.directory_managed).await?))
}

async fn team_members(State(st): St, u: ApiUser, Path((org, team)): Path<(String, String)>) -> ApiResult {
    ok(json!(st.orgs.team_members(&u.0, &org, &team).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    username: String,
}

async fn add_member(State(st): St, u: ApiUser, Path((org, team)): Path<(String, String)>, b: JsonBody) -> ApiResult {
    let n: NewMember = b.object()?;
    let added = st.orgs.add_member(&u.0, &org, &team, &n.username).await?;
    let v = json!({ "username": n.username, "team": team });
    if added { created(v) } else { ok(v) }
}

async fn remove_member(
    State(st): St,
    u: ApiUser,
    Path((org, team, user)): Path<(String, String, String)>,
) -> ApiResult {
    st.orgs.remove_member(&u.0, &org, &team, &user).await?;
    no_content()
}

async fn team_permissions(State(st): St, u: ApiUser, Path((org, team)): Path<(String, String)>) -> ApiResult {
    let perms: Vec<_> = st
        .orgs
        .team_permissions(&u.0, &org, &team)
        .await?
        .into_iter()
        .map(|p| json!({ "repository": p.repo, "permission": p.permission }))
        .collect();
    ok(json!(perms))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPermission {
    permission: String,
}

async fn set_permission(
    State(st): St,
    u: ApiUser,
    Path((org, team, repo)): Path<(String, String, String)>,
    b: JsonBody,
) -> ApiResult {
    let n: NewPermission = b.object()?;
    let p = Permission::parse(&n.permission).ok_or_else(|| {
        ApiError(Error::Invalid(format!("unknown permission {:?}; use read, write or admin", n.permission)))
    })?;
    st.orgs.set_permission(&u.0, &org, &team, &repo, Some(p)).await?;
    ok(json!({ "repository": repo, "team": team, "permission": p }))
}

async fn revoke_permission(
    State(st): St,
    u: ApiUser,
    Path((org, team, repo)): Path<(String, String, String)>,
) -> ApiResult {
    st.orgs.set_permission(&u.0, &org, &team, &repo, None).await?;
    no_content()
}

#[derive(Deserialize)]
struct RepoQuery {
    namespace: Option<String>,
}

async fn repositories(State(st): St, u: ApiUser, Query(q): Query<RepoQuery>) -> ApiResult {
    ok(json!(st.orgs.repositories(&u.0, q.namespace.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoPatch {
    visibility: String,
}

async fn patch_repository(State(st): St, u: ApiUser, Path(name): Path<String>, b: JsonBody) -> ApiResult {
    let p: RepoPatch = b.object()?;
    let v = Visibility::parse(&p.visibility).ok_or_else(|| {
        ApiError(Error::Invalid(format!("unknown visibility {:?}; use public or private", p.visibility)))
    })?;
    st.iam.set_visibility(&u.0, &name, v).await?;
    ok(json!({ "name": name, "visibility": v }))
}

async fn delete_repository(State(st): St, u: ApiUser, Path(name): Path<String>) -> ApiResult {
    st.orgs.delete_repository(&u.0, &name).await?;
    no_content()
}

async fn get_settings(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.iam.settings(&u.0, &org).await?))
}

async fn put_settings(State(st): St, u: ApiUser, Path(org): Path<String>, b: JsonBody) -> ApiResult {
    let changes: serde_json::Value = b.object()?;
    ok(json!(st.iam.set_settings(&u.0, &org, &changes).await?))
}

async fn get_team_settings(State(st): St, u: ApiUser, Path((org, team)): Path<(String, String)>) -> ApiResult {
    ok(json!(st.iam.team_settings(&u.0, &org, &team).await?))
}

async fn put_team_settings(
    State(st): St,
    u: ApiUser,
    Path((org, team)): Path<(String, String)>,
    b: JsonBody,
) -> ApiResult {
    let body: serde_json::Value = b.object()?;
    ok(json!(st.iam.set_team_settings(&u.0, &org, &team, &body).await?))
}

async fn policy_versions(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.iam.versions(&u.0, &org).await?))
}

#[derive(Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
}

async fn policy_diff(State(st): St, u: ApiUser, Path(org): Path<String>, Query(q): Query<DiffQuery>) -> ApiResult {
    ok(json!({ "from": q.from, "to": q.to, "changes": st.iam.version_diff(&u.0, &org, q.from, q.to).await? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    /// Restore even though the preview shows recent pulls it would deny.
    #[serde(default)]
    confirmed: bool,
}

async fn restore_version(State(st): St, u: ApiUser, Path((org, n)): Path<(String, i64)>, b: JsonBody) -> ApiResult {
    let r: RestoreBody = b.object()?;
    match st.iam.restore(&u.0, &org, n, r.confirmed).await? {
        portcullis_core::policy_history::Restored::Done { version, skipped } => {
            ok(json!({ "restored": n, "version": version, "skipped": skipped }))
        }
        portcullis_core::policy_history::Restored::Unconfirmed(preview) => Ok((
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": "conflict",
                "message": format!("restoring version {n} would deny recent pulls; send {{\"confirmed\": true}} to restore anyway"),
                "preview": preview,
            })),
        )
            .into_response()),
    }
}

async fn list_exceptions(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.iam.exceptions(&u.0, &org).await?))
}

async fn add_exception(State(st): St, u: ApiUser, Path(org): Path<String>, b: JsonBody) -> ApiResult {
    let n: portcullis_core::iam::NewException = b.object()?;
    created(json!(st.iam.add_exception(&u.0, &org, n).await?))
}

async fn delete_exception(State(st): St, u: ApiUser, Path((org, id)): Path<(String, i64)>) -> ApiResult {
    st.iam.delete_exception(&u.0, &org, id).await?;
    no_content()
}

async fn list_requests(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.iam.exception_requests(&u.0, &org).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    image: String,
    reason: String,
}

async fn create_request(State(st): St, u: ApiUser, Path(org): Path<String>, b: JsonBody) -> ApiResult {
    let n: NewRequest = b.object()?;
    created(json!(st.iam.request_exception(&u.0, &org, &n.image, &n.reason).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ApprovalBody {
    pin_digest: bool,
    digest: Option<String>,
    expires_at: Option<i64>,
    team: Option<String>,
    note: Option<String>,
}

async fn approve_request(State(st): St, u: ApiUser, Path((org, id)): Path<(String, i64)>, b: JsonBody) -> ApiResult {
    let a: ApprovalBody = if b.0.is_empty() { ApprovalBody::default() } else { b.object()? };
    let a = portcullis_core::requests::Approval {
        pin_digest: a.pin_digest,
        digest: a.digest,
        expires_at: a.expires_at,
        team: a.team,
        note: a.note,
    };
    ok(json!(st.iam.approve_request(&u.0, &org, id, a).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decline {
    note: String,
}

async fn decline_request(State(st): St, u: ApiUser, Path((org, id)): Path<(String, i64)>, b: JsonBody) -> ApiResult {
    let d: Decline = b.object()?;
    ok(json!(st.iam.decline_request(&u.0, &org, id, &d.note).await?))
}

async fn audit(
    State(st): St,
    u: ApiUser,
    Path(org): Path<String>,
    Query(q): Query<portcullis_core::model::AuditQuery>,
) -> ApiResult {
    st.orgs.owned_to_see(&u.0, &org).await?;
    ok(json!(st.audit.query(&org, &q).await?))
}

#[derive(Deserialize)]
struct CheckQuery {
    user: String,
    image: String,
}

async fn check(State(st): St, u: ApiUser, Path(org): Path<String>, Query(q): Query<CheckQuery>) -> ApiResult {
    ok(json!(st.gate.check(&u.0, &org, &q.user, &q.image).await?))
}

async fn preview(State(st): St, u: ApiUser, Path(org): Path<String>, b: JsonBody) -> ApiResult {
    let changes: serde_json::Value = b.object()?;
    ok(json!(st.iam.preview(&u.0, &org, &changes).await?))
}

async fn publishers(State(st): St, _u: ApiUser) -> ApiResult {
    let list: Vec<_> = st.iam.publishers().into_iter().map(|(ns, b)| json!({ "namespace": ns, "badge": b })).collect();
    ok(json!(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBadge {
    badge: String,
}

async fn set_publisher(State(st): St, u: ApiUser, Path(ns): Path<String>, b: JsonBody) -> ApiResult {
    let n: NewBadge = b.object()?;
    st.iam.set_publisher(&u.0, &ns, Some(&n.badge)).await?;
    ok(json!({ "namespace": ns, "badge": n.badge }))
}

async fn delete_publisher(State(st): St, u: ApiUser, Path(ns): Path<String>) -> ApiResult {
    st.iam.set_publisher(&u.0, &ns, None).await?;
    no_content()
}

async fn audit_all(State(st): St, u: ApiUser, Query(q): Query<portcullis_core::model::AuditQuery>) -> ApiResult {
    ok(json!(st.audit.query_all(&u.0, &q).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    teams: Vec<String>,
    /// `read` (pull) or `read-write` (pull and push where its teams may).
    #[serde(default = "read_scope")]
    scope: TokenScope,
    /// Required: a robot's token always expires.
    expires_in_days: i64,
}

fn read_scope() -> TokenScope {
    TokenScope::Read
}

async fn list_robots(State(st): St, u: ApiUser, Path(org): Path<String>) -> ApiResult {
    ok(json!(st.robots.list(&u.0, &org).await?))
}

async fn create_robot(State(st): St, u: ApiUser, Path(org): Path<String>, b: JsonBody) -> ApiResult {
    let n: NewRobot = b.object()?;
    let (robot, token) = st.robots.create(&u.0, &org, &n.name, &n.teams, n.scope, n.expires_in_days).await?;
    let mut v = json!(robot);
    v["token"] = token.into();
    created(v)
}

async fn list_workload_issuers(State(st): St, _u: ApiUser) -> ApiResult {
    ok(json!(st.workloads.issuers()))
}

async fn add_workload_issuer(State(st): St, u: ApiUser, b: JsonBody) -> ApiResult {
    let issuer = b.object()?;
    created(json!(st.workloads.add_issuer(&u.0, issuer).await?))
}

async fn remove_workload_issuer(State(st): St, u: ApiUser, Path(name): Path<String>) -> ApiResult {
    st.workloads.remove_issuer(&u.0, &name).await?;
    no_content()
}

async fn delete_robot(State(st): St, u: ApiUser, Path((org, name)): Path<(String, String)>) -> ApiResult {
    st.robots.delete(&u.0, &org, &name).await?;
    no_content()
}
