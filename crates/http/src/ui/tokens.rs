//! Personal access tokens (create — the secret is shown once —, list, revoke) and the instance
//! administrator's page (users).

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use portcullis_core::Error;
use portcullis_core::model::TokenScope;
use serde::Deserialize;

use super::{Console, Done, Layout, Posted, St, UiResult, done, format, ok};

pub struct TokenView {
    id: i64,
    label: String,
    scope: &'static str,
    created: String,
    expires: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    l: Layout,
    tokens: Vec<TokenView>,
    /// A token just created: its secret, shown this once, and where to use it.
    secret: String,
    registry: String,
}

async fn tokens_page(st: &crate::AppState, c: &Console, secret: String, registry: String) -> Result<TokensPage, Error> {
    let tokens = st
        .identity
        .list_tokens(&c.who)
        .await?
        .into_iter()
        .filter(|t| t.kind == portcullis_core::model::TokenKind::Pat)
        .map(|t| TokenView {
            id: t.id,
            label: t.label,
            scope: t.scope.as_str(),
            created: format::time(t.created_at),
            expires: t.expires_at.map(format::date).unwrap_or_else(|| "never".into()),
            last_used: t.last_used_at.map(format::time).unwrap_or_else(|| "never".into()),
        })
        .collect();
    Ok(TokensPage { l: Layout::new(c, "Access tokens", "tokens"), tokens, secret, registry })
}

pub async fn page(axum::extract::State(st): St, c: Console, Query(q): Query<Done>) -> UiResult {
    let mut p = tokens_page(&st, &c, String::new(), String::new()).await?;
    p.l = p.l.with_notice(q.done.as_deref());
    ok(&p)
}

#[derive(Deserialize)]
pub struct TokenForm {
    label: String,
    scope: String,
    #[serde(default)]
    days: String,
}

pub async fn create(axum::extract::State(st): St, headers: HeaderMap, p: Posted<TokenForm>) -> UiResult {
    let (c, f) = (p.c, p.form);
    let scope = TokenScope::parse(&f.scope)
        .ok_or_else(|| Error::Invalid(format!("unknown scope {:?}; use read or read-write", f.scope)))?;
    let days: i64 = match f.days.trim() {
        "" => 0,
        d => d.parse().map_err(|_| Error::Invalid(format!("invalid number of days {d:?}")))?,
    };
    let expires_at = (days > 0).then(|| st.clock.now() + days.min(3650) * 86_400);
    let (_, secret) = st.identity.create_pat(&c.who, f.label.trim(), scope, expires_at).await?;
    let registry = super::registry_host(&st, &headers);
    ok(&tokens_page(&st, &c, secret, registry).await?)
}

pub async fn revoke(axum::extract::State(st): St, Path(id): Path<i64>, p: Posted<super::session::Empty>) -> UiResult {
    st.identity.delete_token(&p.c.who, id).await?;
    done("/tokens", "revoked")
}

/// The administration pages are not there for anyone but the administrator: the services'
/// refusal shows as a missing page.
fn hidden(e: Error) -> Error {
    if matches!(e, Error::Denied(_)) { Error::NotFound("no such page".into()) } else { e }
}

pub struct UserView {
    username: String,
    admin: bool,
    disabled: bool,
    source: portcullis_core::model::AccountSource,
    /// The signed-in administrator (who does not act on their own account here).
    me: bool,
    created: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    l: Layout,
    users: Vec<UserView>,
    publishers: usize,
    issuers: Vec<super::workloads::IssuerView>,
}

pub async fn admin(axum::extract::State(st): St, c: Console, Query(q): Query<Done>) -> UiResult {
    let users = st
        .identity
        .list_users(&c.who)
        .await
        .map_err(hidden)?
        .into_iter()
        .map(|u| UserView {
            me: u.username == c.who.username,
            username: u.username,
            admin: u.is_admin,
            disabled: u.disabled,
            source: u.source,
            created: format::time(u.created_at),
        })
        .collect();
    let l = Layout::new(&c, "Administration", "admin").with_notice(q.done.as_deref());
    let issuers = super::workloads::issuer_views(st.workloads.issuers());
    ok(&AdminPage { l, users, publishers: st.iam.publishers().len(), issuers })
}

#[derive(Deserialize)]
pub struct UserForm {
    username: String,
    password: String,
    admin: Option<String>,
}

pub async fn create_user(axum::extract::State(st): St, p: Posted<UserForm>) -> UiResult {
    let f = p.form;
    st.identity.create_user(&p.c.who, f.username.trim(), &f.password, f.admin.is_some()).await.map_err(hidden)?;
    done("/admin", "user-created")
}

#[derive(Deserialize)]
pub struct UserActionForm {
    #[serde(default)]
    password: String,
}

/// The administrator acts on an account: `disable`, `enable`, `delete`, `password` (sets the
/// one given) or `throttle` (lifts the sign-in throttle).
pub async fn user_action(
    axum::extract::State(st): St,
    Path((name, action)): Path<(String, String)>,
    p: Posted<UserActionForm>,
) -> UiResult {
    let (who, id) = (&p.c.who, &st.identity);
    let key = match action.as_str() {
        "disable" => id.set_disabled(who, &name, true).await.map(|_| "user-disabled"),
        "enable" => id.set_disabled(who, &name, false).await.map(|_| "user-enabled"),
        "delete" => id.delete_user(who, &name).await.map(|_| "user-deleted"),
        "password" => id.set_password(who, &name, &p.form.password).await.map(|_| "password-reset"),
        "throttle" => id.lift_throttle(who, &name).await.map(|_| "throttle-lifted"),
        _ => Err(Error::NotFound("no such page".into())),
    }
    .map_err(hidden)?;
    done("/admin", key)
}
