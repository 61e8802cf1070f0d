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
    details: Vec<String>,
}

/// An entry's details as lines a person reads: for a settings change, each setting that
/// changed (`restricted_images.allow_community: false → true`); otherwise each field.
fn details(action: &str, detail: Option<&str>) -> Vec<String> {
    use serde_json::Value;
    fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            Value::Null => {}
            Value::Number(n) if prefix.ends_with("_at") => {
                out.push((prefix.to_owned(), n.as_i64().map(super::format::time).unwrap_or_else(|| n.to_string())))
            }
            Value::Array(a) if a.iter().all(Value::is_string) => {
                let items: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                out.push((prefix.to_owned(), if items.is_empty() { "(none)".into() } else { items.join(", ") }));
            }
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let Some(Ok(v)) = detail.map(serde_json::from_str::<Value>) else {
        return detail.map(|d| vec![d.chars().take(300).collect()]).unwrap_or_default();
    };
    if action == "settings.update"
        && let (Some(before), Some(after)) = (v.get("before"), v.get("after"))
    {
        let (mut b, mut a) = (vec![], vec![]);
        flatten("", before, &mut b);
        flatten("", after, &mut a);
        let old: std::collections::HashMap<_, _> = b.into_iter().collect();
        let changed: Vec<String> = a
            .into_iter()
            .filter(|(k, v)| old.get(k) != Some(v))
            .map(|(k, v)| format!("{k}: {} → {v}", old.get(&k).map(String::as_str).unwrap_or("(unset)")))
            .collect();
        return if changed.is_empty() { vec!["no change".into()] } else { changed };
    }
    let mut fields = vec![];
    flatten("", &v, &mut fields);
    fields.into_iter().map(|(k, v)| if k.is_empty() { v } else { format!("{k}: {v}") }).collect()
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
/// The category filter: any, or each category of the one table.
fn categories() -> Vec<(&'static str, &'static str)> {
    std::iter::once(("", "any")).chain(policy::Category::ALL.iter().map(|c| (c.key, c.short))).collect()
}

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
    st.orgs.owned_to_see(&c.who, &org).await?;
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
            image: e.image.unwrap_or_default(),
            short: e.digest.as_deref().map(format::short_digest).unwrap_or_default(),
            digest: e.digest.unwrap_or_default(),
            decision: e.decision.map(|d| d.as_str().to_owned()).unwrap_or_default(),
            category: e.category.map(|c| c.key).unwrap_or_default().to_owned(),
            rule: e.rule.map(|r| r.key()).unwrap_or_default().to_owned(),
            details: details(&e.action, e.detail.as_deref()),
            action: e.action,
        })
        .collect();
    let (decisions, categories) = (options(&DECISIONS, &f.decision), options(&categories(), &f.category));
    let l = Layout { wide: true, ..Layout::org(&c, &st, &org, "Audit log", "audit") };
    ok(&AuditPage { l, f, decisions, categories, rows, next })
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
    st.orgs.owned_to_see(&c.who, &org).await?;
    let rows = st.audit.activity(&org, DAYS).await?;
    let (svg, days) = chart::render(&rows, st.clock.now() / 86_400, DAYS);
    ok(&ActivityPage { l: Layout::org(&c, &st, &org, "Activity", "activity"), svg, days })
}

#[cfg(test)]
mod tests {
    use super::details;

    #[test]
    fn details_read_as_fields_and_settings_as_a_diff() {
        let change = r#"{"before":{"restricted_images":{"enabled":false,"mode":"enforce"},"docker_hub_namespaces":[]},"after":{"restricted_images":{"enabled":true,"mode":"enforce"},"docker_hub_namespaces":["acmecorp"]}}"#;
        assert_eq!(
            details("settings.update", Some(change)),
            ["docker_hub_namespaces: (none) → acmecorp", "restricted_images.enabled: false → true"]
        );
        assert_eq!(details("member.add", Some(r#"{"team":"dev","username":"bob"}"#)), ["team: dev", "username: bob"]);
        assert_eq!(
            details("exception.create", Some(r#"{"id":3,"expires_at":0,"team":null}"#)),
            ["expires_at: 1970-01-01 00:00 UTC", "id: 3"],
            "times as times, nothing for null"
        );
        assert_eq!(details("x", Some("not json")), ["not json"]);
        assert!(details("pull", None).is_empty());
    }
}
