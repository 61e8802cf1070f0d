//! The workload rules on the *Org permissions* page: which workload identities (a cluster's
//! service accounts, CI jobs) are members of which of the org's teams; a form to add one and a
//! button to remove one. Saving goes through the settings, as the API's `workloads.rules` does:
//! the same checks (never `owners`, at least one claim, a trusted issuer, existing teams), the
//! policy history, and the withdrawal of the memberships the old rules made. Members see the
//! rules read-only.

use std::collections::BTreeMap;

use axum::extract::Path;
use policy::{WorkloadRule, Workloads};
use serde::Deserialize;

use super::{Posted, St, UiResult, done};
use portcullis_core::Error;

/// A rule as the page lists it.
pub struct RuleView {
    pub(super) n: usize,
    pub(super) issuer: String,
    /// `name = pattern`, one per claim.
    pub(super) claims: Vec<String>,
    pub(super) teams: String,
}

pub fn views(w: &Workloads) -> Vec<RuleView> {
    w.rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleView {
            n: i + 1,
            issuer: r.issuer.clone(),
            claims: r.claims.iter().map(|(k, v)| format!("{k} = {v}")).collect(),
            teams: r.teams.join(", "),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct RuleForm {
    issuer: String,
    /// `name=pattern` per line.
    claims: String,
    /// Team names, separated by commas or spaces.
    teams: String,
}

impl RuleForm {
    fn rule(&self) -> Result<WorkloadRule, Error> {
        let mut claims = BTreeMap::new();
        for line in self.claims.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::Invalid(format!("claim {line:?}: write name=pattern, such as namespace=ci-*")));
            };
            claims.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let teams = self.teams.split([',', ' ']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
        Ok(WorkloadRule { issuer: self.issuer.trim().to_owned(), claims, teams })
    }
}

pub async fn add(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<RuleForm>) -> UiResult {
    let mut rules = st.iam.settings(&p.c.who, &org).await?.workloads.rules;
    rules.push(p.form.rule()?);
    st.iam.set_settings(&p.c.who, &org, &serde_json::json!({ "workloads": { "rules": rules } })).await?;
    done(&format!("/orgs/{org}/permissions"), "workload-rule-added")
}

/// Removes rule `n` (counted from 1); the memberships it made end at once.
pub async fn delete(
    axum::extract::State(st): St,
    Path((org, n)): Path<(String, usize)>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    let mut rules = st.iam.settings(&p.c.who, &org).await?.workloads.rules;
    if n == 0 || n > rules.len() {
        return Err(Error::NotFound(format!("{org} has no workload rule {n}")).into());
    }
    rules.remove(n - 1);
    st.iam.set_settings(&p.c.who, &org, &serde_json::json!({ "workloads": { "rules": rules } })).await?;
    done(&format!("/orgs/{org}/permissions"), "workload-rule-removed")
}
