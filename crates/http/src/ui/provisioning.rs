//! An organization's provisioning page (owners): where its identity provider sends SCIM, how
//! groups are named, and the org's SCIM tokens — create (the secret is shown once), list,
//! revoke. The rules are the SCIM service's (`portcullis_core::scim`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{Console, Done, Layout, Posted, St, UiResult, done, format, ok};
use crate::auth::base_url;

pub struct ScimTokenView {
    id: i64,
    name: String,
    created_by: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "provisioning.html")]
struct ProvisioningPage {
    l: Layout,
    endpoint: String,
    tokens: Vec<ScimTokenView>,
    /// A token just created: its secret, shown this once.
    secret: String,
}

async fn render(
    st: &crate::AppState,
    c: &Console,
    org: &str,
    h: &HeaderMap,
    secret: String,
    done: Option<&str>,
) -> UiResult {
    let tokens = st
        .scim
        .list_tokens(&c.who, Some(org))
        .await?
        .into_iter()
        .map(|t| ScimTokenView {
            id: t.id,
            name: t.name,
            created_by: t.created_by,
            created: format::time(t.created_at),
            last_used: t.last_used_at.map(format::time).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let l = Layout::org(c, st, org, "Provisioning", "provisioning").with_notice(done);
    ok(&ProvisioningPage { l, endpoint: format!("{}/scim/v2", base_url(st, h)), tokens, secret })
}

pub async fn page(State(st): St, c: Console, h: HeaderMap, Path(org): Path<String>, Query(q): Query<Done>) -> UiResult {
    render(&st, &c, &org, &h, String::new(), q.done.as_deref()).await
}

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
}

pub async fn create(State(st): St, h: HeaderMap, Path(org): Path<String>, p: Posted<NewToken>) -> UiResult {
    let (_, secret) = st.scim.create_token(&p.c.who, Some(&org), &p.form.name).await?;
    render(&st, &p.c, &org, &h, secret, None).await
}

pub async fn revoke(State(st): St, Path((org, id)): Path<(String, i64)>, p: Posted<super::session::Empty>) -> UiResult {
    st.scim
        .list_tokens(&p.c.who, Some(&org))
        .await?
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| portcullis_core::Error::NotFound(format!("no SCIM token {id} in {org}")))?;
    st.scim.delete_token(&p.c.who, id).await?;
    done(&format!("/orgs/{org}/provisioning"), "scim-token-revoked")
}
