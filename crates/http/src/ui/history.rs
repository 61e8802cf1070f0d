//! An organization's policy history (owners): each version with its author, time, summary and
//! what it changed from the one before, and a restore button that goes through the impact
//! preview like any change (shown first when the restore would deny recent pulls).

use askama::Template;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::{Console, Done, Layout, Posted, St, UiResult, done, format, ok};
use portcullis_core::policy_history::Restored;

/// How many versions the page shows (newest first).
const SHOWN: usize = 50;

pub struct ChangeView {
    path: String,
    before: String,
    after: String,
}

pub struct VersionView {
    version: i64,
    author: String,
    created: String,
    summary: String,
    changes: Vec<ChangeView>,
    latest: bool,
}

pub struct RestoreImpact {
    version: i64,
    considered: usize,
    /// (image, user, pulls)
    rows: Vec<(String, String, u64)>,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    l: Layout,
    versions: Vec<VersionView>,
    impact: Option<RestoreImpact>,
}

fn shown(v: &serde_json::Value) -> String {
    if v.is_null() { "—".into() } else { v.to_string() }
}

async fn render(
    st: &crate::AppState,
    c: &Console,
    org: &str,
    impact: Option<RestoreImpact>,
    notice: Option<&str>,
) -> UiResult {
    let all = st.iam.versions_with_changes(&c.who, org, SHOWN).await?;
    let latest = all.first().map(|(v, _)| v.version);
    let versions = all
        .into_iter()
        .map(|(v, changes)| VersionView {
            latest: Some(v.version) == latest,
            version: v.version,
            author: v.author,
            created: format::time(v.created_at),
            summary: v.summary,
            changes: changes
                .into_iter()
                .map(|ch| ChangeView { path: ch.path, before: shown(&ch.before), after: shown(&ch.after) })
                .collect(),
        })
        .collect();
    let l = Layout::org(c, st, org, "Policy history", "history").with_notice(notice);
    ok(&HistoryPage { l, versions, impact })
}

pub async fn page(State(st): St, c: Console, Path(org): Path<String>, Query(q): Query<Done>) -> UiResult {
    render(&st, &c, &org, None, q.done.as_deref()).await
}

#[derive(Deserialize)]
pub struct RestoreForm {
    confirmed: Option<String>,
}

pub async fn restore(State(st): St, Path((org, n)): Path<(String, i64)>, p: Posted<RestoreForm>) -> UiResult {
    match st.iam.restore(&p.c.who, &org, n, p.form.confirmed.is_some()).await? {
        Restored::Done { .. } => done(&format!("/orgs/{org}/history"), "restored"),
        Restored::Unconfirmed(preview) => {
            let rows = preview.would_deny.into_iter().map(|r| (r.image, r.user, r.pulls)).collect();
            let impact = RestoreImpact { version: n, considered: preview.pulls_considered, rows };
            render(&st, &p.c, &org, Some(impact), None).await
        }
    }
}
