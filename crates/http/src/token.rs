//! Docker token authentication: `GET /token` (Basic or anonymous, repeated `scope`,
//! `offline_token`) and `POST /token` (OAuth2 `password` and `refresh_token` grants, as
//! containerd uses). Granted actions are those requested that the caller is permitted now.
//! A workload signs in with its identity token as the password of the user `workload`
//! (`core::workloads`); it gets no refresh token, which would outlive the token it showed.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oci::endpoint::query_pairs;
use oci::{Action, RepoName};
use portcullis_core::Error;
use portcullis_core::authz::{Principal, Subject};
use portcullis_core::model::TokenScope;
use portcullis_core::tokens::{ResourceAccess, parse_scope};
use portcullis_core::workloads::WORKLOAD_USER;

use crate::AppState;
use crate::auth::{Credentials, client_addr, credentials};

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/token", get(get_token).post(post_token))
}

/// Token endpoint errors: the distribution error JSON with the right status.
struct TokenError(Error);

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        // A sign-in that cannot succeed as asked (a name conflict, throttling) is the caller's
        // to fix: never a 503, which clients retry and monitoring pages on.
        let (status, code) = match &self.0 {
            Error::Unauthenticated(_) | Error::Conflict(_) | Error::NotFound(_) => {
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            }
            Error::RateLimited { .. } | Error::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            Error::Invalid(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            Error::Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        };
        let msg = if self.0.is_internal() {
            tracing::error!(error = %self.0, "internal error on /token");
            "internal error".to_owned()
        } else {
            self.0.to_string()
        };
        let body = serde_json::json!({ "errors": [{ "code": code, "message": msg }], "error": code.to_lowercase(), "error_description": msg });
        let mut r = (status, axum::Json(body)).into_response();
        if let Error::RateLimited { retry_after } = self.0 {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        r
    }
}

impl From<Error> for TokenError {
    fn from(e: Error) -> Self {
        TokenError(e)
    }
}

/// The access to grant `subject` for the requested scopes.
fn grant(st: &AppState, subject: &Subject, scopes: &[String]) -> Vec<ResourceAccess> {
    let mut out: Vec<ResourceAccess> = Vec::new();
    for s in scopes.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()) {
        let Some(req) = parse_scope(s) else { continue };
        match req.kind.as_str() {
            "repository" => {
                let Ok(name) = req.name.parse::<RepoName>() else { continue };
                let permitted = st.gate.grantable(subject, &name);
                let mut actions: Vec<String> = req
                    .actions
                    .iter()
                    .filter_map(|a| {
                        let wanted: Vec<Action> = if a == "*" {
                            vec![Action::Pull, Action::Push, Action::Delete]
                        } else {
                            Action::parse(a).into_iter().collect()
                        };
                        let ok: Vec<String> = wanted
                            .into_iter()
                            .filter(|w| permitted.allows(*w))
                            .map(|w| w.as_str().to_owned())
                            .collect();
                        (!ok.is_empty()).then_some(ok)
                    })
                    .flatten()
                    .collect();
                actions.sort();
                actions.dedup();
                match out.iter_mut().find(|a| a.kind == "repository" && a.name == req.name) {
                    Some(existing) => {
                        existing.actions.extend(actions);
                        existing.actions.sort();
                        existing.actions.dedup();
                    }
                    None => out.push(ResourceAccess { kind: "repository".into(), name: req.name, actions }),
                }
            }
            "registry" if req.name == "catalog" && matches!(subject, Subject::User(_)) => {
                out.push(ResourceAccess { kind: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] });
            }
            _ => {}
        }
    }
    out
}

async fn issue(
    st: &AppState,
    principal: Option<&Principal>,
    scopes: &[String],
    offline: bool,
) -> Result<serde_json::Value, Error> {
    st.catch_up().await?;
    let subject = principal.map(|p| Subject::User(p.clone())).unwrap_or(Subject::Anonymous);
    let access = grant(st, &subject, scopes);
    let now = st.clock.now();
    let token = st.tokens.issue(subject.name(), access, now)?;
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": st.tokens.ttl_secs(),
        "issued_at": portcullis_core::clock::rfc3339(now),
        "token_type": "Bearer",
    });
    if let (true, Some(p)) = (offline, principal) {
        let scope = p.scope.unwrap_or(TokenScope::ReadWrite);
        let expires = Some(now + portcullis_core::identity::REFRESH_TTL_SECS);
        let (_, secret) = st
            .identity
            .create_token(
                p,
                "refresh token (registry login)",
                portcullis_core::model::TokenKind::Refresh,
                scope,
                expires,
            )
            .await?;
        body["refresh_token"] = secret.into();
    }
    Ok(body)
}

async fn get_token(State(st): St, parts: Parts) -> Result<Response, TokenError> {
    let q = query_pairs(parts.uri.query().unwrap_or(""));
    let scopes: Vec<String> = q.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    let offline = q.iter().any(|(k, v)| k == "offline_token" && v == "true");
    let (principal, offline) = match credentials(&parts.headers)? {
        Credentials::Basic(u, p) if u == WORKLOAD_USER => {
            (Some(st.workloads.sign_in(&p, &client_addr(&st, &parts)).await?), false)
        }
        Credentials::Basic(u, p) => (Some(st.identity.authenticate(&u, &p, &client_addr(&st, &parts)).await?), offline),
        Credentials::Bearer(_) | Credentials::None => (None, offline),
    };
    Ok(axum::Json(issue(&st, principal.as_ref(), &scopes, offline).await?).into_response())
}

async fn post_token(State(st): St, parts: Parts, body: Bytes) -> Result<Response, TokenError> {
    let form = query_pairs(std::str::from_utf8(&body).map_err(|_| Error::Invalid("form body is not UTF-8".into()))?);
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let client = client_addr(&st, &parts);
    let mut offline = get("access_type") == Some("offline");
    let principal = match get("grant_type") {
        Some("password") if get("username") == Some(WORKLOAD_USER) => {
            offline = false;
            st.workloads.sign_in(get("password").unwrap_or(""), &client).await?
        }
        Some("password") => {
            let (u, p) = (get("username").unwrap_or(""), get("password").unwrap_or(""));
            st.identity.authenticate(u, p, &client).await?
        }
        Some("refresh_token") => st.identity.authenticate_token(get("refresh_token").unwrap_or(""), &client).await?,
        other => return Err(Error::Invalid(format!("unsupported grant_type {other:?}")).into()),
    };
    let scopes: Vec<String> = form.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    let mut out = issue(&st, Some(&principal), &scopes, offline).await?;
    if let Some(o) = out.as_object_mut() {
        o.remove("token");
        o.insert("scope".into(), scopes.join(" ").into());
    }
    Ok(axum::Json(out).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        use portcullis_core::clock::rfc3339;
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
