//! Console sessions over HTTP: the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure`
//! under TLS), the `Console` extractor (signed-in user or a redirect to sign in), the `Posted`
//! extractor (a form with a valid CSRF token from this origin), sign-in and sign-out.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_core::Error;
use portcullis_core::authz::Principal;
use portcullis_core::sessions::SESSION_TTL_SECS;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Layout, UiError, UiResult, render};
use crate::AppState;
use crate::auth::client_addr;
use portcullis_core::identity::new_secret;

const COOKIE: &str = "pcl_session";
/// The sign-in form's own CSRF token, before there is a session (double-submitted).
const LOGIN_COOKIE: &str = "pcl_login";
const MAX_FORM: usize = 64 * 1024;

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct Console {
    pub who: Principal,
    pub csrf: String,
}

pub(super) fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn cookie_secret(parts: &Parts) -> Option<String> {
    cookie(parts, COOKIE)
}

impl FromRequestParts<Arc<AppState>> for Console {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, UiError> {
        let next = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        match console_of(st, parts).await? {
            Some(c) => Ok(c),
            None => Err(UiError::SignIn { next }),
        }
    }
}

/// The signed-in console user of a request, if any.
pub async fn console_of(st: &AppState, parts: &Parts) -> Result<Option<Console>, Error> {
    let Some(secret) = cookie_secret(parts) else { return Ok(None) };
    st.catch_up().await?;
    Ok(st.sessions.resolve(&secret).await?.map(|s| Console { who: s.principal, csrf: s.csrf }))
}

/// Forms may be posted only from pages of this server: when the browser names where the post
/// comes from (`Origin`, else `Referer`), it must be this host (a second line behind
/// `SameSite=Strict` and the CSRF tokens).
fn same_origin(parts: &Parts) -> Result<(), Error> {
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let from = |h: header::HeaderName| parts.headers.get(h).map(|v| v.to_str().unwrap_or("null").to_owned());
    let Some(source) = from(header::ORIGIN).or_else(|| from(header::REFERER)) else { return Ok(()) };
    let source_host = source.split_once("://").map(|(_, h)| h.split('/').next().unwrap_or("")).unwrap_or("null");
    if source_host == host { Ok(()) } else { Err(Error::Denied("cross-origin form posts are refused".into())) }
}

/// Equal without an early exit, so the comparison time does not tell how much matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A form posted by a signed-in user with the session's CSRF token.
pub struct Posted<T> {
    pub c: Console,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Posted<T> {
    type Rejection = UiError;

    async fn from_request(req: Request, st: &Arc<AppState>) -> Result<Self, UiError> {
        let (mut parts, body) = req.into_parts();
        same_origin(&parts)?;
        let c = Console::from_request_parts(&mut parts, st).await?;
        let bytes = form_bytes(&parts, body).await?;
        let fields: HashMap<String, String> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        if !fields.get("csrf").is_some_and(|t| same_secret(t, &c.csrf)) {
            return Err(Error::Denied(
                "this form has no valid CSRF token (it may be stale or come from another site); reload the page and try again"
                    .into(),
            )
            .into());
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| Error::Invalid(format!("invalid form: {e}")))?;
        Ok(Posted { c, form })
    }
}

async fn form_bytes(parts: &Parts, body: axum::body::Body) -> Result<axum::body::Bytes, Error> {
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(Error::Invalid("expected a form (application/x-www-form-urlencoded)".into()));
    }
    axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| Error::Invalid("the form is too large".into()))
}

/// Where to go after sign-in: only a path on this gateway (no open redirect). It must be an
/// absolute path (`/…`, never `//host` or `/\\host`, which browsers read as another site) of
/// visible ASCII — no control characters, spaces, backslashes or encoded ones, which browsers
/// strip or rewrite before they read the path — that parses as a request target's path and
/// query; anything else goes to `/`.
pub(super) fn safe_next(next: Option<&str>) -> String {
    fn local(n: &str) -> bool {
        let lower = n.to_ascii_lowercase();
        n.starts_with('/')
            && !n[1..].starts_with(['/', '\\'])
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
            && !["%2f", "%5c", "%0", "%1", "%7f", "%09", "%25"].iter().any(|e| lower.contains(e))
            && n.parse::<axum::http::uri::PathAndQuery>().is_ok()
    }
    match next {
        Some(n) if n.len() <= 2048 && local(n) => n.to_owned(),
        _ => "/".into(),
    }
}

pub(super) fn set_cookie(st: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if st.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .unwrap_or(HeaderValue::from_static(""))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    next: String,
    username: String,
    error: String,
    /// The form's CSRF token (also in the `pcl_login` cookie).
    csrf: String,
    /// The identity provider's name when single sign-on is configured.
    sso: String,
}

/// The sign-in form with its CSRF token, and the cookie holding the same token.
pub(super) fn login_form(
    st: &AppState,
    status: StatusCode,
    next: String,
    username: String,
    error: String,
    token: Option<String>,
) -> Response {
    let csrf =
        token.filter(|t| t.len() == 48 && t.bytes().all(|b| b.is_ascii_hexdigit())).unwrap_or_else(|| new_secret(""));
    let l = Layout { title: "Sign in".into(), tab: "login", ..Default::default() };
    let sso = st.oidc.as_ref().map(|_| st.oidc_name.clone()).unwrap_or_default();
    let mut r = render(status, &LoginPage { l, next, username, error, csrf: csrf.clone(), sso });
    let secure = if st.tls { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(State(st): State<Arc<AppState>>, Query(q): Query<NextQuery>, mut parts: Parts) -> Response {
    let next = safe_next(q.next.as_deref());
    if Console::from_request_parts(&mut parts, &st).await.is_ok() {
        return Redirect::to(&next).into_response();
    }
    login_form(&st, StatusCode::OK, next, String::new(), String::new(), cookie(&parts, LOGIN_COOKIE))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

pub async fn login(State(st): State<Arc<AppState>>, req: Request) -> UiResult {
    let (parts, body) = req.into_parts();
    same_origin(&parts)?;
    let bytes = form_bytes(&parts, body).await?;
    let f: LoginForm =
        serde_urlencoded::from_bytes(&bytes).map_err(|e| Error::Invalid(format!("invalid form: {e}")))?;
    let next = safe_next(f.next.as_deref());
    // Login CSRF: the form's token must be the one its cookie holds (a page of this server
    // set both), so another site cannot sign a browser in to an account of its choosing.
    let token = cookie(&parts, LOGIN_COOKIE);
    if !token.as_deref().is_some_and(|t| !f.csrf.is_empty() && same_secret(t, &f.csrf)) {
        return Err(Error::Denied(
            "this sign-in form has no valid token (it may be stale or come from another site); reload the page and sign in again"
                .into(),
        )
        .into());
    }
    match st.sessions.sign_in(f.username.trim(), &f.password, &client_addr(&st, &parts)).await {
        Ok((secret, _)) => {
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().insert(header::SET_COOKIE, set_cookie(&st, &secret, SESSION_TTL_SECS));
            Ok(r)
        }
        Err(e @ (Error::Unauthenticated(_) | Error::RateLimited { .. } | Error::Throttled { .. })) => {
            let status = if matches!(e, Error::Unauthenticated(_)) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            Ok(login_form(&st, status, next, f.username, e.to_string(), token))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(State(st): State<Arc<AppState>>, parts: Parts, _p: Posted<Empty>) -> UiResult {
    if let Some(secret) = cookie_secret(&parts) {
        st.sessions.sign_out(&secret).await?;
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(&st, "", 0));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        for good in ["/orgs/acme", "/orgs/acme/permissions?tab=audit&n=2", "/", "/orgs/acme%20x", "/a:b@c"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        let bad = [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "\\\\evil",
            "evil",
            "",
            "/\t/evil.example",
            "/\t\t/evil.example",
            "/\n/evil.example",
            "/orgs\r\nSet-Cookie: x=y",
            "/\0/evil",
            "/ /evil.example",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "/%0d%0aLocation:%20https://evil",
            "/%252F/evil",
            "javascript:alert(1)",
            "/\u{00a0}/evil",
            "/\u{2028}/evil",
            "http:/evil.example",
            "//[::1]/x",
            "//user@evil.example",
            "/\x7f/evil",
        ];
        for b in bad {
            assert_eq!(safe_next(Some(b)), "/", "{b:?}");
        }
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(4000)))), "/", "too long");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn posts_come_from_this_host() {
        let parts = |headers: &[(&str, &str)]| {
            let mut b = axum::http::Request::builder().header("host", "gw.example:5000");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(same_origin(&parts(&[])).is_ok(), "nothing said: the tokens decide");
        assert!(same_origin(&parts(&[("origin", "https://gw.example:5000")])).is_ok());
        assert!(same_origin(&parts(&[("origin", "https://evil.example")])).is_err());
        assert!(same_origin(&parts(&[("origin", "null")])).is_err());
        assert!(same_origin(&parts(&[("referer", "https://gw.example:5000/orgs/acme")])).is_ok());
        assert!(same_origin(&parts(&[("referer", "https://evil.example/x")])).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
