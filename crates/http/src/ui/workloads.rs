//! The workload rules on the *Org permissions* page: which workload identities (a cluster's
//! service accounts, CI jobs) are members of which of the org's teams; a form to add one and a
//! button to remove one. Saving goes through the settings, as the API's `workloads.rules` does:
//! the same checks (never `owners`, at least one claim, a trusted issuer, existing teams), the
//! policy history, and the withdrawal of the memberships the old rules made. Members see the
//! rules read-only. On the *Administration* page, the trusted workload issuers: those of the
//! configuration and those the administrator added here (a form to add one, with its JWKS for
//! an issuer the gateway cannot reach, and a button to remove one).

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

/// An issuer as the administration page lists it.
pub struct IssuerView {
    pub(super) name: String,
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) algorithms: String,
    pub(super) lifetime: String,
    pub(super) keys: String,
    pub(super) added: bool,
}

pub fn issuer_views(list: Vec<portcullis_core::model::WorkloadIssuerView>) -> Vec<IssuerView> {
    list.into_iter()
        .map(|v| IssuerView {
            keys: format!("{} ({} held)", v.keys_from, v.keys_held),
            added: v.source == "api",
            name: v.issuer.name,
            issuer: v.issuer.issuer,
            audience: v.issuer.audience.unwrap_or_default(),
            algorithms: v.issuer.algorithms.join(", "),
            lifetime: super::format::duration(v.issuer.max_token_lifetime_secs.unwrap_or_default()),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct IssuerForm {
    name: String,
    issuer: String,
    #[serde(default)]
    audience: String,
    /// A JWKS document, or empty for discovery.
    #[serde(default)]
    jwks: String,
    rs256: Option<String>,
    es256: Option<String>,
    /// Hours.
    max_lifetime_hours: i64,
}

pub async fn add_issuer(axum::extract::State(st): St, p: Posted<IssuerForm>) -> UiResult {
    let f = p.form;
    let jwks = match f.jwks.trim() {
        "" => None,
        text => Some(
            serde_json::from_str(text).map_err(|e| Error::Invalid(format!("the JWKS is not a JSON document: {e}")))?,
        ),
    };
    let algorithms = [("RS256", &f.rs256), ("ES256", &f.es256)]
        .into_iter()
        .filter(|(_, on)| on.is_some())
        .map(|(a, _)| a.to_owned())
        .collect::<Vec<_>>();
    if algorithms.is_empty() {
        return Err(Error::Invalid("choose RS256, ES256 or both".into()).into());
    }
    let issuer = portcullis_core::model::WorkloadIssuer {
        name: f.name.trim().to_owned(),
        issuer: f.issuer.trim().to_owned(),
        audience: Some(f.audience.trim().to_owned()).filter(|a| !a.is_empty()),
        algorithms,
        max_token_lifetime_secs: Some(f.max_lifetime_hours.saturating_mul(3600)),
        jwks,
    };
    st.workloads.add_issuer(&p.c.who, issuer).await?;
    done("/admin", "issuer-added")
}

pub async fn remove_issuer(
    axum::extract::State(st): St,
    Path(name): Path<String>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    st.workloads.remove_issuer(&p.c.who, &name).await?;
    done("/admin", "issuer-removed")
}
