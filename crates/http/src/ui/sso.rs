//! Console sign-in through the OpenID provider (`[auth.oidc]`): `/auth/oidc/login` sends the
//! browser to the provider with a fresh `state`, `nonce` and PKCE challenge, sealed (signed by
//! the token keys, so any replica can read it back) in a short-lived `HttpOnly` cookie;
//! `/auth/oidc/callback` checks them, lets `idp::oidc` verify the ID token, and `core::sso`
//! make the account and its teams, then opens a session. A failure shows the sign-in page with
//! the reason (never a session); a provider that cannot be reached, a 503 with the same page, so
//! the administrator can still sign in with a password.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use idp::oidc::{LoginState, OidcError};
use portcullis_core::Error;
use portcullis_core::sso::ExternalIdentity;
use serde::{Deserialize, Serialize};

use super::session::{cookie, login_form, safe_next, set_cookie};
use crate::AppState;
use crate::auth::client_addr;

const STATE_COOKIE: &str = "pcl_oidc";
/// The audience of the sealed sign-in state (never a registry token's).
const STATE_AUDIENCE: &str = "portcullis-oidc-state";
/// How long a sign-in at the provider may take.
const STATE_TTL_SECS: i64 = 600;

#[derive(Serialize, Deserialize)]
struct Pending {
    login: LoginState,
    next: String,
}

fn state_cookie(st: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if st.tls { "; Secure" } else { "" };
    // Lax: the provider's redirect back is a top-level navigation from another site.
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

fn failed(st: &AppState, status: StatusCode, next: String, message: String) -> Response {
    let mut r = login_form(st, status, next, String::new(), message, None);
    r.headers_mut().append(header::SET_COOKIE, state_cookie(st, "", 0));
    r
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login(State(st): State<Arc<AppState>>, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    let Some(oidc) = st.oidc.as_ref() else {
        return failed(&st, StatusCode::NOT_FOUND, next, "single sign-on is not configured here".into());
    };
    match oidc.begin().await {
        Ok((url, login)) => {
            let pending = Pending { login, next };
            match st.tokens.seal(STATE_AUDIENCE, &pending, st.clock.now(), STATE_TTL_SECS) {
                Ok(sealed) => {
                    let mut r = Redirect::to(&url).into_response();
                    r.headers_mut().insert(header::SET_COOKIE, state_cookie(&st, &sealed, STATE_TTL_SECS));
                    r
                }
                Err(e) => failed(&st, StatusCode::INTERNAL_SERVER_ERROR, pending.next, e.to_string()),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "OIDC sign-in cannot start");
            failed(&st, StatusCode::SERVICE_UNAVAILABLE, next, format!("Single sign-on failed: {e}. Try again later."))
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(State(st): State<Arc<AppState>>, Query(q): Query<CallbackQuery>, parts: Parts) -> Response {
    let client = client_addr(&st, &parts);
    let Some(oidc) = st.oidc.as_ref() else {
        return failed(&st, StatusCode::NOT_FOUND, "/".into(), "single sign-on is not configured here".into());
    };
    let sealed = cookie(&parts, STATE_COOKIE).unwrap_or_default();
    let pending: Pending = match st.tokens.unseal(STATE_AUDIENCE, &sealed, st.clock.now()) {
        Ok(p) => p,
        Err(_) => {
            st.sso.failed(policy::Provider::Oidc, "", &client, "no valid sign-in state in the browser").await;
            return failed(
                &st,
                StatusCode::BAD_REQUEST,
                "/".into(),
                "This sign-in expired or was started in another browser. Sign in again.".into(),
            );
        }
    };
    let next = pending.next.clone();
    // A sign-in state is good for one callback: a replay (of a code the provider would accept
    // twice, or of a refused answer) is refused here, on every replica.
    match st.sessions.first_use(&sealed, st.clock.now() + STATE_TTL_SECS).await {
        Ok(true) => {}
        Ok(false) => {
            st.sso
                .failed(policy::Provider::Oidc, "", &client, "a sign-in state used before (a replayed callback)")
                .await;
            return failed(&st, StatusCode::BAD_REQUEST, next, "This sign-in was already used. Sign in again.".into());
        }
        Err(e) => {
            let why = crate::error::public_message(&e, "console");
            return failed(&st, StatusCode::SERVICE_UNAVAILABLE, next, format!("Single sign-on failed: {why}"));
        }
    }
    if let Some(e) = q.error {
        let why = q.error_description.unwrap_or(e);
        st.sso.failed(policy::Provider::Oidc, "", &client, &format!("the provider said: {why}")).await;
        return failed(
            &st,
            StatusCode::UNAUTHORIZED,
            next,
            format!("The identity provider did not sign you in: {why}"),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return failed(&st, StatusCode::BAD_REQUEST, next, "the provider's answer has no code or state".into());
    };
    let claims = match oidc.finish(&code, &state, &pending.login).await {
        Ok(c) => c,
        Err(e) => {
            let status = match e {
                OidcError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                OidcError::Refused(_) => StatusCode::UNAUTHORIZED,
            };
            st.sso.failed(policy::Provider::Oidc, "", &client, &e.to_string()).await;
            return failed(&st, status, next, format!("Single sign-on failed: {e}"));
        }
    };
    let ext = ExternalIdentity {
        source: policy::Provider::Oidc,
        external_id: format!("{}|{}", claims.issuer, claims.subject),
        username: claims.username.to_ascii_lowercase(),
        groups: claims.groups,
    };
    let user = match st.sso.sign_in(&ext, &client).await {
        Ok(u) => u,
        Err(e @ (Error::Unauthenticated(_) | Error::Conflict(_) | Error::Invalid(_) | Error::Denied(_))) => {
            return failed(&st, StatusCode::FORBIDDEN, next, format!("Single sign-on failed: {e}"));
        }
        Err(e) => return failed(&st, StatusCode::INTERNAL_SERVER_ERROR, next, e.to_string()),
    };
    match st.sessions.open_for(&user).await {
        Ok((secret, _)) => {
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&st, &secret, portcullis_core::sessions::SESSION_TTL_SECS));
            r.headers_mut().append(header::SET_COOKIE, state_cookie(&st, "", 0));
            r
        }
        Err(e) => failed(&st, StatusCode::INTERNAL_SERVER_ERROR, next, e.to_string()),
    }
}
