//! The web console: server-rendered HTML (askama templates, checked at compile time) that works
//! without JavaScript. Handlers call the same services as `/api/v1`; rules live there. Every
//! page needs a session (`session.rs`); every form carries the session's CSRF token and is
//! refused when posted from another origin. Errors render as one HTML page (`UiError`).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use portcullis_core::Error;

use crate::AppState;
use crate::error::{public_message, status_of};

mod audit;
mod chart;
mod format;
mod history;
mod org;
mod permissions;
mod provisioning;
mod requests;
mod robots;
mod session;
mod signatures;
mod sso;
mod tokens;
mod workloads;

pub use format::query_escape;
pub use session::{Console, Posted};

type St = axum::extract::State<Arc<AppState>>;
type UiResult = Result<Response, UiError>;

/// The embedded stylesheet.
const CSS: &str = include_str!("../../static/console.css");

pub fn routes(st: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/orgs") }))
        .route("/static/console.css", get(css))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/auth/oidc/login", get(sso::login))
        .route("/auth/oidc/callback", get(sso::callback))
        .route("/orgs", get(org::list).post(org::create))
        .route("/orgs/{org}", get(org::overview))
        .route("/orgs/{org}/members", get(org::members))
        .route("/orgs/{org}/teams", post(org::create_team))
        .route("/orgs/{org}/directory", post(org::set_directory))
        .route("/orgs/{org}/teams/{team}/delete", post(org::delete_team))
        .route("/orgs/{org}/teams/{team}/members", post(org::add_member))
        .route("/orgs/{org}/teams/{team}/members/{user}/remove", post(org::remove_member))
        .route("/orgs/{org}/teams/{team}/permissions", post(org::set_permission))
        .route("/orgs/{org}/repositories", get(org::repositories))
        .route("/orgs/{org}/repositories/visibility", post(org::set_visibility))
        .route("/orgs/{org}/permissions", get(permissions::page).post(permissions::save))
        .route("/orgs/{org}/team-rules", post(permissions::set_team_rule))
        .route("/orgs/{org}/signature-rules", post(signatures::add))
        .route("/orgs/{org}/signature-rules/{n}/delete", post(signatures::delete))
        .route("/orgs/{org}/robots", post(robots::create))
        .route("/orgs/{org}/robots/{name}/delete", post(robots::delete))
        .route("/orgs/{org}/workload-rules", post(workloads::add))
        .route("/orgs/{org}/workload-rules/{n}/delete", post(workloads::delete))
        .route("/orgs/{org}/history", get(history::page))
        .route("/orgs/{org}/history/{n}/restore", post(history::restore))
        .route("/orgs/{org}/exceptions", post(permissions::add_exception))
        .route("/orgs/{org}/exceptions/{id}/delete", post(permissions::delete_exception))
        .route("/orgs/{org}/audit", get(audit::log))
        .route("/orgs/{org}/activity", get(audit::activity))
        .route("/orgs/{org}/requests", get(requests::page).post(requests::create))
        .route("/orgs/{org}/requests/{id}/approve", post(requests::approve))
        .route("/orgs/{org}/requests/{id}/decline", post(requests::decline))
        .route("/orgs/{org}/provisioning", get(provisioning::page).post(provisioning::create))
        .route("/orgs/{org}/provisioning/{id}/revoke", post(provisioning::revoke))
        .route("/tokens", get(tokens::page).post(tokens::create))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
        .route("/admin", get(tokens::admin).post(tokens::create_user))
        .route("/admin/users/{name}/{action}", post(tokens::user_action))
        .route("/admin/workload-issuers", post(workloads::add_issuer))
        .route("/admin/workload-issuers/{name}/delete", post(workloads::remove_issuer))
        .layer(axum::middleware::from_fn_with_state(st, error_pages))
        .layer(axum::middleware::map_response(security_headers))
}

/// What an error page says; the page itself is drawn by [`error_pages`], which knows who is
/// signed in.
#[derive(Debug, Clone)]
struct ErrorInfo {
    status: StatusCode,
    heading: &'static str,
    message: String,
}

/// Draws error pages with the navigation and "Sign out" of the signed-in user (and the org's
/// navigation when they belong to it), like every other page.
async fn error_pages(
    axum::extract::State(st): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let kept = axum::http::Request::from_parts(parts.clone(), ());
    let resp = next.run(axum::extract::Request::from_parts(parts, body)).await;
    let Some(info) = resp.extensions().get::<ErrorInfo>().cloned() else { return resp };
    let (parts, _) = kept.into_parts();
    let viewer = session::console_of(&st, &parts).await.ok().flatten();
    let l = match viewer {
        Some(c) => {
            let org = path.strip_prefix("/orgs/").and_then(|r| r.split('/').next()).unwrap_or("");
            let dir = st.identity.directory().snapshot();
            let mut l = if !org.is_empty() && (c.who.is_admin || dir.is_member(org, c.who.id)) {
                Layout::org(&c, &st, org, info.heading, "")
            } else {
                Layout::new(&c, info.heading, "")
            };
            l.title = info.heading.into();
            l
        }
        None => Layout { title: info.heading.into(), ..Default::default() },
    };
    render(info.status, &ErrorPage { l, status: info.status.as_u16(), heading: info.heading, message: info.message })
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

/// No framing, no foreign scripts or styles, no caching of pages that show private data.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cache-control", "no-store");
    r
}

/// What every page shows around its content. Empty strings mean "none".
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub title: String,
    pub user: String,
    pub is_admin: bool,
    pub csrf: String,
    /// The org the page belongs to, and whether the viewer owns it.
    pub org: String,
    pub owner: bool,
    /// The current tab of the org's navigation, or of the top navigation.
    pub tab: &'static str,
    /// A fixed message after a successful form (chosen by key, never echoed from the URL).
    pub notice: &'static str,
    /// The page uses the whole width of the window (wide tables).
    pub wide: bool,
}

impl Layout {
    pub fn new(c: &Console, title: impl Into<String>, tab: &'static str) -> Layout {
        Layout {
            title: title.into(),
            user: c.who.username.clone(),
            is_admin: c.who.is_admin,
            csrf: c.csrf.clone(),
            tab,
            ..Default::default()
        }
    }

    /// A page of `org`, with the org navigation.
    pub fn org(c: &Console, st: &AppState, org: &str, title: &str, tab: &'static str) -> Layout {
        let owner = c.who.is_admin || st.identity.directory().snapshot().is_owner(org, c.who.id);
        Layout { org: org.to_owned(), owner, ..Layout::new(c, format!("{title} · {org}"), tab) }
    }

    pub fn with_notice(mut self, done: Option<&str>) -> Layout {
        self.notice = notice(done.unwrap_or(""));
        self
    }
}

/// The `?done=` of a page shown after a successful form.
#[derive(serde::Deserialize)]
pub struct Done {
    pub done: Option<String>,
}

/// Messages shown after a redirect, by the key in `?done=`.
fn notice(key: &str) -> &'static str {
    match key {
        "saved" => "Settings saved. They apply to the next pull.",
        "exception-added" => "Exception added.",
        "allowlist-added" => "Added to the repository allowlist.",
        "exception-deleted" => "Exception deleted.",
        "team-created" => "Team created.",
        "org-created" => "Organization created; you are its owner.",
        "directory-saved" => "Saved what the identity provider's groups may manage.",
        "team-rule-saved" => "Team rule saved. It applies to the next pull.",
        "signature-rule-added" => "Signature rule added. It applies to the next pull.",
        "signature-rule-removed" => "Signature rule removed.",
        "robot-deleted" => "Robot deleted; its token no longer works.",
        "workload-rule-added" => "Workload rule added. It applies at the workload's next sign-in.",
        "workload-rule-removed" => "Workload rule removed; the memberships it made have ended.",
        "restored" => "Version restored. It applies to the next pull.",
        "scim-token-revoked" => "SCIM token revoked: the identity provider can no longer use it.",
        "team-deleted" => "Team deleted.",
        "member-added" => "Member added.",
        "member-removed" => "Member removed.",
        "permission-set" => "Repository permission saved.",
        "requested" => "Request sent. The owners of the organization will see it here.",
        "approved" => "Request approved: the exception is in place.",
        "declined" => "Request declined.",
        "revoked" => "Token revoked.",
        "user-created" => "User created.",
        "issuer-added" => "Workload issuer added: org owners may now write workload rules for it.",
        "issuer-removed" => "Workload issuer removed: its tokens are refused and its workloads lost their memberships.",
        "user-disabled" => "User disabled: they cannot sign in, their sessions ended and their tokens are refused.",
        "user-enabled" => "User enabled again.",
        "user-deleted" => "User deleted.",
        "password-reset" => "Password set. The user's console sessions ended.",
        "throttle-lifted" => "Sign-in throttle lifted.",
        "visibility-set" => "Visibility changed.",
        _ => "",
    }
}

/// The host (and port) registry clients use for this server.
pub fn registry_host(st: &AppState, headers: &axum::http::HeaderMap) -> String {
    let base = crate::auth::base_url(st, headers);
    base.split_once("://").map(|(_, h)| h.to_owned()).unwrap_or(base)
}

/// Renders a page with a status.
pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the administrator can find it in the logs")
                .into_response()
        }
    }
}

pub fn ok(t: &impl Template) -> UiResult {
    Ok(render(StatusCode::OK, t))
}

/// After a successful form: back to a page (303, so a reload does not post again).
pub fn done(path: &str, key: &str) -> UiResult {
    let sep = if path.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!("{path}{sep}done={key}")).into_response())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    status: u16,
    heading: &'static str,
    message: String,
}

/// A console error: sign in first, or an error page.
#[derive(Debug)]
pub enum UiError {
    SignIn { next: String },
    Page(Error),
}

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        UiError::Page(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let e = match self {
            UiError::SignIn { next } => {
                return Redirect::to(&format!("/login?next={}", format::query_escape(&next))).into_response();
            }
            UiError::Page(Error::Unauthenticated(_)) => return Redirect::to("/login").into_response(),
            UiError::Page(e) => e,
        };
        let (status, _) = status_of(&e);
        let heading = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::BAD_REQUEST => "That did not work",
            StatusCode::CONFLICT => "That did not work",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            _ => "Something went wrong",
        };
        let message = public_message(&e, "console");
        let mut r = (status, Html(message.clone())).into_response();
        r.extensions_mut().insert(ErrorInfo { status, heading, message });
        r
    }
}
