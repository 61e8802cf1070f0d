//! Exception requests: a member asks for an exception for an image they were denied (the
//! registry's denial message links here with the image filled in); owners approve — optionally
//! pinned to the denied digest, with an expiry — or decline; both see the status.

use askama::Template;
use axum::extract::{Path, Query};
use portcullis_core::requests::Approval;
use serde::Deserialize;

use super::{Console, Layout, Posted, St, UiResult, done, format, ok};

pub struct RequestView {
    id: i64,
    requester: String,
    image: String,
    digest: String,
    short: String,
    reason: String,
    status: String,
    created: String,
    decided: String,
    note: String,
    /// What the requester was told when denied.
    denial: String,
    /// The team an approval is for by default: the requester's (other than owners).
    team: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    l: Layout,
    image: String,
    requests: Vec<RequestView>,
    teams: Vec<String>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    image: Option<String>,
    done: Option<String>,
}

pub async fn page(
    axum::extract::State(st): St,
    c: Console,
    Path(org): Path<String>,
    Query(q): Query<PageQuery>,
) -> UiResult {
    let dir = st.identity.directory().snapshot();
    let team_of = |user: &str| -> String {
        let Some((id, _)) = dir.user(user) else { return String::new() };
        let m = dir.memberships(id).into_iter().find(|m| m.org == org);
        m.and_then(|m| m.teams.into_iter().find(|t| t != portcullis_core::model::OWNERS_TEAM)).unwrap_or_default()
    };
    let requests = st
        .iam
        .exception_requests(&c.who, &org)
        .await?
        .into_iter()
        .map(|r| RequestView {
            team: team_of(&r.requester),
            denial: r.denial.unwrap_or_default(),
            id: r.id,
            requester: r.requester,
            image: r.image,
            short: r.digest.as_deref().map(format::short_digest).unwrap_or_default(),
            digest: r.digest.unwrap_or_default(),
            reason: r.reason,
            status: r.status,
            created: format::time(r.created_at),
            decided: match (r.decided_by, r.decided_at) {
                (Some(by), Some(at)) => format!("by {by}, {}", format::time(at)),
                _ => String::new(),
            },
            note: r.note.unwrap_or_default(),
        })
        .collect();
    let teams = st.orgs.teams(&c.who, &org).await?.into_iter().map(|t| t.name).collect();
    let l = Layout::org(&c, &st, &org, "Exception requests", "requests").with_notice(q.done.as_deref());
    ok(&RequestsPage { l, image: q.image.unwrap_or_default(), requests, teams })
}

#[derive(Deserialize)]
pub struct RequestForm {
    image: String,
    reason: String,
}

pub async fn create(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<RequestForm>) -> UiResult {
    st.iam.request_exception(&p.c.who, &org, &p.form.image, &p.form.reason).await?;
    done(&format!("/orgs/{org}/requests"), "requested")
}

#[derive(Deserialize)]
pub struct ApproveForm {
    pin: Option<String>,
    /// A digest to pin to, when the request has none.
    #[serde(default)]
    digest: String,
    /// Days until the exception expires; empty or 0 for never.
    #[serde(default)]
    days: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    note: String,
}

pub async fn approve(
    axum::extract::State(st): St,
    Path((org, id)): Path<(String, i64)>,
    p: Posted<ApproveForm>,
) -> UiResult {
    let f = p.form;
    let days: i64 = match f.days.trim() {
        "" => 0,
        d => d.parse().map_err(|_| portcullis_core::Error::Invalid(format!("invalid number of days {d:?}")))?,
    };
    let a = Approval {
        pin_digest: f.pin.is_some(),
        digest: Some(f.digest.trim().to_owned()).filter(|d| !d.is_empty()),
        expires_at: (days > 0).then(|| st.clock.now() + days.min(3650) * 86_400),
        team: Some(f.team),
        note: Some(f.note),
    };
    st.iam.approve_request(&p.c.who, &org, id, a).await?;
    done(&format!("/orgs/{org}/requests"), "approved")
}

#[derive(Deserialize)]
pub struct DeclineForm {
    note: String,
}

pub async fn decline(
    axum::extract::State(st): St,
    Path((org, id)): Path<(String, i64)>,
    p: Posted<DeclineForm>,
) -> UiResult {
    st.iam.decline_request(&p.c.who, &org, id, &p.form.note).await?;
    done(&format!("/orgs/{org}/requests"), "declined")
}
