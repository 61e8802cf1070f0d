//! The audit log and the activity chart of an org, for its owners.

use askama::Template;
use axum::extract::{Path, Query};
use portcullis_core::model::AuditQuery;
use serde::Deserialize;

use super::chart::{self, Day};
use super::{Console, Layout, St, UiResult, format, ok};
use portcullis_core::Error;

const PAGE: i64 = 50;

/// The filters as the form sends them (empty fields mean "any").
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    user: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    before: Option<i64>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Filters {
    fn query(&self) -> Result<AuditQuery, Error> {
        let date = |s: &str| -> Result<Option<i64>, Error> {
            match some(s) {
                None => Ok(None),
                Some(d) => format::parse_date(&d)
                    .map(Some)
                    .ok_or_else(|| Error::Invalid(format!("invalid date {d:?}; use YYYY-MM-DD"))),
            }
        };
        Ok(AuditQuery {
            actor: some(&self.user),
            image: some(&self.image),
            decision: some(&self.decision),
            category: some(&self.category),
            since: date(&self.from)?,
            until: date(&self.to)?.map(|t| t + 86_399),
            before: self.before,
            limit: Some(PAGE),
            ..Default::default()
        })
    }

    /// The query string of the next page.
    fn next(&self, before: i64) -> String {
        let f = [
            ("user", &self.user),
            ("image", &self.image),
            ("decision", &self.decision),
            ("category", &self.category),
            ("from", &self.from),
            ("to", &self.to),
        ];
        let mut q: Vec<String> =
            f.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", format::query_escape(v))).collect();
        q.push(format!("before={before}"));
        q.join("&")
    }
}

pub struct Row {
    time: String,
    actor: String,
    action: String,
    image: String,
    digest: String,
    short: String,
    decision: String,
    category: String,
    rule: String,
    detail: String,
}

/// An `<option>` of a filter.
pub struct Opt {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn options(all: &[(&'static str, &'static str)], current: &str) -> Vec<Opt> {
    all.iter().map(|(value, label)| Opt { value, label, selected: *value == current }).collect()
}

const DECISIONS: [(&str, &str); 4] =
    [("", "any"), ("allowed", "allowed"), ("denied", "denied"), ("would_deny", "would be denied (dry run)")];
const CATEGORIES: [(&str, &str); 7] = [
    ("", "any"),
    ("organization", "Organization"),
    ("official", "Docker Official"),
    ("verified_publisher", "Verified Publisher"),
    ("sponsored_oss", "Sponsored OSS"),
    ("community", "Community"),
    ("other_registry", "Other registry"),
];

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    f: Filters,
    decisions: Vec<Opt>,
    categories: Vec<Opt>,
    rows: Vec<Row>,
    next: String,
}

pub async fn log(
    axum::extract::State(st): St,
    c: Console,
    Path(org): Path<String>,
    Query(f): Query<Filters>,
) -> UiResult {
    st.orgs.owned(&c.who, &org).await?;
    let entries = st.audit.query(&org, &f.query()?).await?;
    let next = match entries.last() {
        Some(e) if entries.len() as i64 == PAGE => f.next(e.id),
        _ => String::new(),
    };
    let rows = entries
        .into_iter()
        .map(|e| Row {
            time: format::time(e.at),
            actor: if e.actor.is_empty() { "(anonymous)".into() } else { e.actor },
            action: e.action,
            image: e.image.unwrap_or_default(),
            short: e.digest.as_deref().map(format::short_digest).unwrap_or_default(),
            digest: e.digest.unwrap_or_default(),
            decision: e.decision.unwrap_or_default(),
            category: e.category.unwrap_or_default(),
            rule: e.rule.unwrap_or_default(),
            detail: e.detail.map(|d| d.chars().take(160).collect()).unwrap_or_default(),
        })
        .collect();
    let (decisions, categories) = (options(&DECISIONS, &f.decision), options(&CATEGORIES, &f.category));
    ok(&AuditPage { l: Layout::org(&c, &st, &org, "Audit log", "audit"), f, decisions, categories, rows, next })
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    l: Layout,
    svg: String,
    days: Vec<Day>,
}

const DAYS: i64 = 14;

pub async fn activity(axum::extract::State(st): St, c: Console, Path(org): Path<String>) -> UiResult {
    st.orgs.owned(&c.who, &org).await?;
    let rows = st.audit.activity(&org, DAYS).await?;
    let (svg, days) = chart::render(&rows, st.clock.now() / 86_400, DAYS);
    ok(&ActivityPage { l: Layout::org(&c, &st, &org, "Activity", "activity"), svg, days })
}
