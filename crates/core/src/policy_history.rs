//! Policy history (an `impl Iam` block): every change of an org's settings, team rules or
//! exceptions appends a numbered version holding the whole policy after it, with its author and
//! a summary. Owners list versions, compare any two (a flat list of what changed), and restore
//! one: the restore is previewed against the last 30 days of pulls like any change, applied
//! only when confirmed if it would deny some of them, and is itself a new version.

use std::collections::BTreeMap;

use policy::{Exception, Settings, TeamSettings};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authz::Principal;
use crate::error::{Error, Result};
use crate::iam::{Iam, Preview};
use crate::model::PolicyVersion;

/// An exception as a version keeps it (without its id and creation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExceptionSpec {
    pub pattern: String,
    pub digest: Option<String>,
    pub team: Option<String>,
    pub expires_at: Option<i64>,
    pub reason: String,
}

impl ExceptionSpec {
    fn of(e: &Exception) -> ExceptionSpec {
        ExceptionSpec {
            pattern: e.pattern.clone(),
            digest: e.digest.clone(),
            team: e.team.clone(),
            expires_at: e.expires_at,
            reason: e.reason.clone(),
        }
    }

    /// A readable key for diffs: the pattern and what narrows it.
    fn key(&self) -> String {
        let mut k = self.pattern.clone();
        if let Some(t) = &self.team {
            k.push_str(&format!(" team={t}"));
        }
        if let Some(d) = &self.digest {
            k.push_str(&format!(" digest={d}"));
        }
        if let Some(e) = self.expires_at {
            k.push_str(&format!(" until={}", crate::clock::date(e)));
        }
        k
    }
}

/// An org's whole policy at one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyState {
    pub settings: Settings,
    pub teams: BTreeMap<String, TeamSettings>,
    pub exceptions: Vec<ExceptionSpec>,
}

/// One difference between two versions: a setting's path and its values (`null`: absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// What a restore did, or the pulls it would deny when not yet confirmed.
#[derive(Debug)]
pub enum Restored {
    Done { version: i64, skipped: Vec<String> },
    Unconfirmed(Preview),
}

/// `v` as path → leaf value (objects flattened with `.`; exceptions keyed by [`ExceptionSpec::key`]).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&p, x, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

fn flat(state: &PolicyState) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    flatten("settings", &serde_json::to_value(&state.settings).unwrap_or_default(), &mut out);
    for (team, t) in &state.teams {
        // A team rule only adds: a flag that is off is no rule at all.
        let mut rule = BTreeMap::new();
        flatten(&format!("teams.{team}"), &serde_json::to_value(t).unwrap_or_default(), &mut rule);
        out.extend(rule.into_iter().filter(|(_, v)| *v != Value::Bool(false)));
    }
    for e in &state.exceptions {
        out.insert(format!("exceptions.{}", e.key()), Value::String(e.reason.clone()));
    }
    out
}

/// What differs from `a` to `b`.
pub fn diff(a: &PolicyState, b: &PolicyState) -> Vec<Change> {
    let (fa, fb) = (flat(a), flat(b));
    let paths: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (x, y) = (fa.get(p).cloned().unwrap_or(Value::Null), fb.get(p).cloned().unwrap_or(Value::Null));
            (x != y).then(|| Change { path: p.clone(), before: x, after: y })
        })
        .collect()
}

impl Iam {
    /// The org's policy now.
    fn state_of(&self, org: &str) -> PolicyState {
        let snap = self.snapshot();
        let Some(p) = snap.orgs.get(org) else { return PolicyState::default() };
        let mut exceptions: Vec<ExceptionSpec> = p.exceptions.iter().map(ExceptionSpec::of).collect();
        exceptions.sort();
        PolicyState { settings: p.settings.clone(), teams: p.teams.clone().into_iter().collect(), exceptions }
    }

    /// Appends the org's policy now as its next version.
    pub(crate) async fn record_version(&self, who: &Principal, org_id: i64, org: &str, summary: &str) -> Result<i64> {
        let state = serde_json::to_string(&self.state_of(org)).map_err(|e| Error::storage_from("", e))?;
        self.meta.append_policy_version(org_id, &who.username, summary, &state, self.clock.now()).await
    }

    /// The org's versions, newest first (owners).
    pub async fn versions(&self, who: &Principal, org: &str) -> Result<Vec<PolicyVersion>> {
        let o = self.orgs.owned_to_see(who, org).await?;
        self.meta.policy_versions(o.id).await
    }

    /// The org's newest `limit` versions, each with what it changed from the one before
    /// (owners), from one read of the history.
    pub async fn versions_with_changes(
        &self,
        who: &Principal,
        org: &str,
        limit: usize,
    ) -> Result<Vec<(PolicyVersion, Vec<Change>)>> {
        let o = self.orgs.owned_to_see(who, org).await?;
        let all = self.meta.policy_versions(o.id).await?;
        let state = |v: &PolicyVersion| serde_json::from_str::<PolicyState>(&v.state).unwrap_or_default();
        let mut out = Vec::new();
        for (i, v) in all.iter().enumerate().take(limit) {
            let before = all.get(i + 1).map(state).unwrap_or_default();
            out.push((v.clone(), diff(&before, &state(v))));
        }
        Ok(out)
    }

    /// The policy at version `n`; version 0 is the defaults, before any change.
    async fn version_state(&self, org_id: i64, org: &str, n: i64) -> Result<PolicyState> {
        if n == 0 {
            return Ok(PolicyState::default());
        }
        let v = self.meta.policy_versions(org_id).await?.into_iter().find(|v| v.version == n);
        let v = v.ok_or_else(|| Error::NotFound(format!("no version {n} of {org}'s policy")))?;
        serde_json::from_str(&v.state)
            .map_err(|e| Error::storage_from(format!("version {n} of {org} is unreadable"), e))
    }

    /// What changed from version `from` to version `to` (owners).
    pub async fn version_diff(&self, who: &Principal, org: &str, from: i64, to: i64) -> Result<Vec<Change>> {
        let o = self.orgs.owned_to_see(who, org).await?;
        let (a, b) = (self.version_state(o.id, org, from).await?, self.version_state(o.id, org, to).await?);
        Ok(diff(&a, &b))
    }

    /// Makes the org's policy what it was at version `n` (owners): previewed first; applied
    /// when no recent pull would be denied, or when `confirmed`. Exceptions for teams that no
    /// longer exist, or that have expired since, are not brought back (listed in `skipped`).
    pub async fn restore(&self, who: &Principal, org: &str, n: i64, confirmed: bool) -> Result<Restored> {
        let o = self.orgs.owned(who, org).await?;
        let target = self.version_state(o.id, org, n).await?;
        let now = self.clock.now();
        let teams: Vec<String> = self.meta.list_teams(o.id).await?.into_iter().map(|t| t.name).collect();
        let mut skipped = Vec::new();
        let wanted: Vec<ExceptionSpec> = target
            .exceptions
            .iter()
            .filter(|e| {
                let gone = e.team.as_ref().is_some_and(|t| !teams.contains(t));
                let expired = e.expires_at.is_some_and(|x| x <= now);
                if gone || expired {
                    skipped.push(format!("exception {} ({})", e.key(), if gone { "no such team" } else { "expired" }));
                }
                !gone && !expired
            })
            .cloned()
            .collect();
        let mut proposed = self.snapshot().orgs.get(org).cloned().unwrap_or_default();
        proposed.settings = target.settings.clone();
        proposed.teams =
            target.teams.iter().filter(|(t, _)| teams.contains(t)).map(|(t, s)| (t.clone(), s.clone())).collect();
        proposed.exceptions = wanted
            .iter()
            .map(|e| Exception {
                id: 0,
                pattern: e.pattern.clone(),
                digest: e.digest.clone(),
                team: e.team.clone(),
                expires_at: e.expires_at,
                reason: e.reason.clone(),
                created_by: who.username.clone(),
                created_at: now,
            })
            .collect();
        let preview = self.impact(org, proposed.clone()).await?;
        if !preview.would_deny.is_empty() && !confirmed {
            return Ok(Restored::Unconfirmed(preview));
        }
        self.store_settings(who, &o, target.settings.clone()).await?;
        for team in self.meta.list_teams(o.id).await? {
            let rule = target.teams.get(&team.name).filter(|t| !t.is_empty());
            let json = rule.map(serde_json::to_string).transpose().map_err(|e| Error::storage_from("", e))?;
            self.meta.put_team_settings(team.id, json.as_deref(), now).await?;
        }
        let current = self.snapshot().orgs.get(org).map(|p| p.exceptions.clone()).unwrap_or_default();
        for e in &current {
            if !wanted.contains(&ExceptionSpec::of(e)) {
                self.meta.delete_exception(o.id, e.id).await?;
            }
        }
        let kept: Vec<ExceptionSpec> = current.iter().map(ExceptionSpec::of).collect();
        for e in proposed.exceptions.iter().filter(|e| !kept.contains(&ExceptionSpec::of(e))) {
            self.meta.create_exception(o.id, e).await?;
        }
        self.refresh().await?;
        self.record_change(who, org, "policy.restore", serde_json::json!({ "version": n, "skipped": skipped })).await;
        let version = self.record_version(who, o.id, org, &format!("restored version {n}")).await?;
        Ok(Restored::Done { version, skipped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_each_changed_setting_team_rule_and_exception() {
        let mut a = PolicyState::default();
        let mut b = a.clone();
        b.settings.restricted_images.enabled = true;
        b.teams.insert(
            "platform".into(),
            TeamSettings { restricted_images: policy::TeamCategories { allow_community: true, ..Default::default() } },
        );
        let e = ExceptionSpec {
            pattern: "docker.io/x/y".into(),
            digest: None,
            team: Some("dev".into()),
            expires_at: None,
            reason: "r".into(),
        };
        b.exceptions.push(e.clone());
        let paths: Vec<String> = diff(&a, &b).into_iter().map(|c| c.path).collect();
        assert!(paths.contains(&"settings.restricted_images.enabled".to_owned()), "{paths:?}");
        assert!(paths.contains(&"teams.platform.restricted_images.allow_community".to_owned()), "{paths:?}");
        assert!(paths.contains(&"exceptions.docker.io/x/y team=dev".to_owned()), "{paths:?}");
        assert_eq!(paths.len(), 3, "what changed and nothing else: {paths:?}");
        a = b.clone();
        assert!(diff(&a, &b).is_empty());
    }
}
