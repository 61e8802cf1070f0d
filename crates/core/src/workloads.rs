//! Workload sign-in: a workload identity token — a Kubernetes pod's service-account token, a CI
//! job's OIDC token — that the trusted issuer's adapter verified (`ports::WorkloadVerifier`:
//! signature, issuer, audience, times, lifetime) becomes the workload account
//! `<issuer name>:<subject>` (made on first use, source `workload`, no password), a member of
//! exactly the teams the organizations' workload rules map its claims to, at every sign-in.
//!
//! Rules: an organization's rules grant only that organization's teams, never `owners` (the
//! rules are checked when saved; a workload never bypasses the policy); a token that matches no
//! rule is refused with what did not match; a disabled workload account is refused; a workload
//! never gets a refresh or access token (that would outlive the token it showed). The account's
//! name cannot be taken by anyone else: account names have no `:`.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::audit::Audit;
use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::iam::Iam;
use crate::identity::{Identity, LoginThrottle};
use crate::model::{AccountSource, AuditEntry, TokenScope, User, WorkloadIssuer, WorkloadIssuerView};
use crate::ports::{MetaStore, WorkloadIdentity, WorkloadVerifier};

/// The user name registry clients send with a workload token as the password.
pub const WORKLOAD_USER: &str = "workload";

/// The most rules an organization may have.
pub const MAX_WORKLOAD_RULES: usize = 100;

/// The actor of the memberships a workload rule makes.
const RULES_ACTOR: &str = "workload rules";

pub struct Workloads {
    verifier: Option<Arc<dyn WorkloadVerifier>>,
    /// The whole metadata port: a sign-in writes users and memberships and reads orgs, teams and
    /// the sign-in throttle (four capabilities).
    meta: Arc<dyn MetaStore>,
    identity: Arc<Identity>,
    iam: Arc<Iam>,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
}

impl Workloads {
    pub fn new(
        verifier: Option<Arc<dyn WorkloadVerifier>>,
        meta: Arc<dyn MetaStore>,
        identity: Arc<Identity>,
        iam: Arc<Iam>,
        audit: Arc<Audit>,
        clock: Arc<dyn Clock>,
    ) -> Workloads {
        Workloads { verifier, meta, identity, iam, audit, clock }
    }

    /// Every trusted workload issuer (anyone signed in may list them: workload rules name them).
    pub fn issuers(&self) -> Vec<WorkloadIssuerView> {
        self.verifier.as_ref().map(|v| v.list()).unwrap_or_default()
    }

    /// Trusts one more issuer (the instance administrator only); every replica loads it.
    pub async fn add_issuer(&self, who: &Principal, issuer: WorkloadIssuer) -> Result<WorkloadIssuerView> {
        let v = self.administered(who)?;
        let i = v.check(issuer)?;
        let doc = serde_json::to_string(&i).map_err(|e| Error::Invalid(e.to_string()))?;
        self.meta.create_workload_issuer(&i.name, &i.issuer, &doc, &who.username, self.clock.now()).await?;
        let detail = serde_json::json!({ "name": i.name, "issuer": i.issuer, "audience": i.audience,
                                         "algorithms": i.algorithms, "keys": if i.jwks.is_some() { "inline" } else { "discovery" } });
        self.audit.change(who, None, "workload_issuer.add", detail).await;
        self.iam.refresh().await?;
        self.issuers()
            .into_iter()
            .find(|l| l.issuer.name == i.name)
            .ok_or_else(|| Error::Invalid(format!("workload issuer {} cannot be used", i.name)))
    }

    /// Stops trusting an issuer added at run time (the instance administrator only): its tokens
    /// are refused, and its workloads lose the memberships rules gave them at once, so registry
    /// tokens issued to them end too.
    pub async fn remove_issuer(&self, who: &Principal, name: &str) -> Result<()> {
        let v = self.administered(who)?;
        if v.list().iter().any(|l| l.issuer.name == name && l.source == "config") {
            return Err(Error::Conflict(format!(
                "workload issuer {name} is configured (auth.workload_issuers): remove it from the configuration"
            )));
        }
        if !self.meta.delete_workload_issuer(name).await? {
            return Err(Error::NotFound(format!("no workload issuer {name} was added")));
        }
        self.audit.change(who, None, "workload_issuer.remove", serde_json::json!({ "name": name })).await;
        self.iam.refresh().await?;
        let mut changed = false;
        for id in self.identity.directory().snapshot().workloads_of(name) {
            for team in self.meta.directory_memberships(id).await? {
                changed |= self.meta.remove_member(team, id).await?;
            }
        }
        if changed {
            self.identity.refresh_directory().await?;
        }
        Ok(())
    }

    fn administered(&self, who: &Principal) -> Result<&Arc<dyn WorkloadVerifier>> {
        if !who.is_admin {
            return Err(Error::Denied(
                "only the instance administrator may change the trusted workload issuers".into(),
            ));
        }
        self.verifier.as_ref().ok_or_else(|| Error::Invalid("workload identity is not available here".into()))
    }

    /// Signs a workload in with its identity token, from `client`.
    pub async fn sign_in(&self, token: &str, client: &str) -> Result<Principal> {
        let Some(verifier) = &self.verifier else {
            return Err(Error::Unauthenticated(
                "workload identity tokens are not accepted here: no issuer is trusted (auth.workload_issuers)".into(),
            ));
        };
        let now = self.clock.now();
        LoginThrottle::token(self.meta.as_ref(), client, now).await?;
        let w = match verifier.verify(token, now).await {
            Ok(w) => w,
            Err(Error::Unauthenticated(reason)) => {
                LoginThrottle::token_failed(self.meta.as_ref(), client, now).await?;
                self.refused("", client, serde_json::json!({ "method": "workload", "reason": reason })).await;
                return Err(Error::Unauthenticated(reason));
            }
            Err(e) => return Err(e),
        };
        self.admit(&w, client).await
    }

    /// The account of a verified workload identity (a token's, or a pod's service account the
    /// Kubernetes API server names at admission), a member of exactly the teams the rules give
    /// it; refused, with what did not match, when no rule does.
    pub async fn admit(&self, w: &WorkloadIdentity, client: &str) -> Result<Principal> {
        let username = format!("{}:{}", w.issuer, w.subject);
        let wanted = match rule_teams(&self.iam.snapshot(), &w.issuer, &w.subject, &w.claims) {
            Ok(t) => t,
            Err(reason) => {
                let detail = serde_json::json!({ "method": "workload", "reason": reason, "claims": w.claims });
                self.refused(&username, client, detail).await;
                return Err(Error::Unauthenticated(reason));
            }
        };
        // Nothing to write: the account is there and is a member of exactly these teams.
        let dir = self.identity.directory().snapshot();
        if let Some((id, _)) = dir.user(&username) {
            let have: BTreeSet<(String, String)> = dir
                .memberships(id)
                .into_iter()
                .flat_map(|m| m.teams.into_iter().map(move |t| (m.org.clone(), t)))
                .collect();
            if have == wanted {
                return Ok(principal(id, username));
            }
        }
        let user = self.account(w, &username).await?;
        if user.disabled {
            let reason = format!("the workload account {username} is disabled; ask an administrator");
            self.refused(&username, client, serde_json::json!({ "method": "workload", "reason": reason })).await;
            return Err(Error::Unauthenticated(reason));
        }
        self.sync(&user, &wanted).await?;
        Ok(principal(user.id, username))
    }

    /// The workload's account, made on its first sign-in.
    async fn account(&self, w: &WorkloadIdentity, username: &str) -> Result<User> {
        if let Some(u) = self.meta.external_user(AccountSource::Workload, username).await? {
            return Ok(u);
        }
        match self.meta.create_external_user(username, AccountSource::Workload, username, self.clock.now()).await {
            Ok(u) => {
                let detail = serde_json::json!({ "username": username, "source": "workload", "claims": w.claims });
                self.audit.change(&actor(), None, "user.create", detail).await;
                Ok(u)
            }
            // Two first sign-ins at once: the other made it.
            Err(Error::Conflict(_)) => self
                .meta
                .external_user(AccountSource::Workload, username)
                .await?
                .ok_or_else(|| Error::Conflict(format!("the name {username} is taken"))),
            Err(e) => Err(e),
        }
    }

    /// Makes the memberships the rules manage exactly `wanted` (a team a rule names that does
    /// not exist grants nothing); memberships an owner gave by hand stay.
    async fn sync(&self, user: &User, wanted: &BTreeSet<(String, String)>) -> Result<()> {
        let mut keep = BTreeSet::new();
        let mut changed = false;
        for (org_name, team_name) in wanted {
            let Some(org) = self.meta.org_by_name(org_name).await? else { continue };
            let Some(team) = self.meta.team(org.id, team_name).await? else {
                tracing::warn!(org = %org_name, team = %team_name, "a workload rule names a team that does not exist");
                continue;
            };
            keep.insert(team.id);
            if self.meta.add_directory_member(team.id, user.id).await? {
                changed = true;
                let detail = serde_json::json!({ "team": team_name, "username": user.username });
                self.audit.change(&actor(), Some(org_name), "team.member.add", detail).await;
            }
        }
        for team_id in self.meta.directory_memberships(user.id).await? {
            if keep.contains(&team_id) {
                continue;
            }
            if self.meta.remove_member(team_id, user.id).await? {
                changed = true;
                let detail = serde_json::json!({ "team_id": team_id, "username": user.username });
                self.audit.change(&actor(), None, "team.member.remove", detail).await;
            }
        }
        if changed {
            self.identity.refresh_directory().await?;
        }
        Ok(())
    }

    async fn refused(&self, username: &str, client: &str, detail: serde_json::Value) {
        self.audit
            .record(AuditEntry {
                actor: username.to_owned(),
                action: "auth.failure".into(),
                client: Some(client.to_owned()),
                detail: Some(detail.to_string()),
                ..Default::default()
            })
            .await;
    }
}

/// The (org, team) pairs the orgs' workload rules give a token of `issuer` about `subject` with
/// `claims`, or why none does (the first three rules that did not match, and what they wanted).
pub(crate) fn rule_teams(
    snap: &policy::Snapshot,
    issuer: &str,
    subject: &str,
    claims: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<BTreeSet<(String, String)>, String> {
    let mut wanted = BTreeSet::new();
    let mut misses = Vec::new();
    let mut orgs: Vec<_> = snap.orgs.iter().collect();
    orgs.sort_by(|a, b| a.0.cmp(b.0));
    for (org, policy) in orgs {
        for (i, r) in policy.settings.workloads.rules.iter().enumerate().filter(|(_, r)| r.issuer == issuer) {
            match r.mismatch(claims) {
                None => wanted.extend(r.teams.iter().map(|t| (org.clone(), t.clone()))),
                Some((name, pattern, value)) => misses.push(format!(
                    "{org}'s rule {} wants {name} {pattern:?}, the token has {}",
                    i + 1,
                    value.map(|v| format!("{v:?}")).unwrap_or_else(|| "none".into())
                )),
            }
        }
    }
    if !wanted.is_empty() {
        return Ok(wanted);
    }
    let why = if misses.is_empty() {
        "no organization has a workload rule for this issuer".to_owned()
    } else {
        misses.truncate(3);
        misses.join("; ")
    };
    Err(format!("the workload token of issuer {issuer} (subject {subject}) matches no workload rule: {why}"))
}

/// After `org`'s workload rules changed: its teams lose the members rules made there, who get
/// back what the new rules give at their next sign-in (a narrowed rule applies at once).
pub(crate) async fn withdraw(meta: &dyn MetaStore, identity: &Identity, org: &crate::model::Org) -> Result<()> {
    let mut changed = false;
    for team in meta.list_teams(org.id).await? {
        for user in meta.team_members(team.id).await? {
            if user.source == AccountSource::Workload && meta.directory_memberships(user.id).await?.contains(&team.id) {
                changed |= meta.remove_member(team.id, user.id).await?;
            }
        }
    }
    if changed {
        identity.refresh_directory().await?;
    }
    Ok(())
}

fn principal(id: i64, username: String) -> Principal {
    Principal { id, username, is_admin: false, scope: Some(TokenScope::ReadWrite) }
}

fn actor() -> Principal {
    Principal { id: 0, username: RULES_ACTOR.into(), is_admin: false, scope: None }
}
