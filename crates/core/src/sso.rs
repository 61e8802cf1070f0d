//! Sign-in through the organization's identity provider (OIDC, LDAP): the account is made just
//! in time on the first sign-in and is known afterwards by the provider's stable id (never by
//! its name, so a provider user can never take over a local account that has the same name),
//! and its team memberships are brought in line with the provider's groups at every sign-in.
//!
//! Delegation is explicit: a group named `<org>:<team>` (Docker's convention) makes the user a
//! member of that team only when that org's owners delegated its teams to this provider
//! (`settings.directory.providers`; the team is created on first use), and `<org>:owners` makes
//! an owner only when the org opted into that as well (`settings.directory.owners`). A group
//! naming an org that did not delegate changes nothing and is audited (`directory.ignored`).
//!
//! An account the directory provisioned through SCIM is the one its user of the same name signs
//! in to (the provider both provisions and signs in; SCIM accounts have no password), and the
//! first sign-in binds it to that provider's subject: another subject with the same name is
//! refused from then on, so a rename at the provider never hands an account to someone else.
//! Only memberships the directory granted are ever removed; hand-made ones stay. Every sign-in
//! and every change is audited.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use policy::{Delegation, Provider};

use crate::audit::Audit;
use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::identity::{Identity, check_account_name};
use crate::model::{AccountSource, AuditEntry, User};
pub use crate::ports::ExternalIdentity;
use crate::ports::MetaStore;

/// The actor named in audit entries for changes the directory made.
pub const DIRECTORY_ACTOR: &str = "directory";

/// What a SCIM account's `external_id` holds once bound: the provider and its stable id.
fn scim_binding(ext: &ExternalIdentity) -> String {
    format!("{}:{}", ext.source.key(), ext.external_id)
}

/// Every org's delegation, read from the database (not a replica's snapshot, which may be a
/// moment behind an owner's withdrawal).
pub(crate) async fn delegations(meta: &dyn MetaStore) -> Result<HashMap<String, Delegation>> {
    let mut out = HashMap::new();
    for crate::model::OrgSettingsRow { org, settings: json } in meta.all_org_settings().await? {
        // Unreadable settings delegate nothing (fail closed).
        let d = serde_json::from_str::<policy::Settings>(&json).map(|s| s.directory).unwrap_or_default();
        out.insert(org, d);
    }
    Ok(out)
}

/// The provider whose groups manage `user`'s directory memberships: the account's source, or
/// for a SCIM account the provider it is bound to (none before its first sign-in).
pub fn provider_of(user: &User) -> Option<Provider> {
    match user.source {
        AccountSource::Oidc => Some(Provider::Oidc),
        AccountSource::Ldap => Some(Provider::Ldap),
        AccountSource::Scim => {
            user.external_id.as_deref().and_then(|b| b.split_once(':')).and_then(|(p, _)| Provider::from_key(p))
        }
        AccountSource::Local | AccountSource::Workload | AccountSource::Robot => None,
    }
}

pub struct Sso {
    /// The whole metadata port: a directory sign-in writes users, teams and memberships, and
    /// reads delegations, policy and SCIM ownership (five capabilities).
    meta: Arc<dyn MetaStore>,
    identity: Arc<Identity>,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
}

impl Sso {
    pub fn new(meta: Arc<dyn MetaStore>, identity: Arc<Identity>, audit: Arc<Audit>) -> Sso {
        Sso { meta, clock: identity.clock().clone(), identity, audit }
    }

    async fn audit_sign_in(&self, ext: &ExternalIdentity, client: &str, outcome: std::result::Result<(), &str>) {
        let (action, detail) = match outcome {
            Ok(()) => ("auth.success", serde_json::json!({ "method": ext.source })),
            Err(reason) => ("auth.failure", serde_json::json!({ "method": ext.source, "reason": reason })),
        };
        self.audit
            .record(AuditEntry {
                actor: ext.username.clone(),
                action: action.into(),
                client: Some(client.to_owned()),
                detail: Some(detail.to_string()),
                ..Default::default()
            })
            .await;
    }

    /// Records a sign-in the provider refused or that failed before an identity was known.
    pub async fn failed(&self, source: Provider, username: &str, client: &str, reason: &str) {
        let ext = ExternalIdentity { source, external_id: String::new(), username: username.into(), groups: vec![] };
        self.audit_sign_in(&ext, client, Err(reason)).await;
    }

    /// Signs in the provider's user: finds or makes the account, refuses a disabled one, and
    /// brings its team memberships in line with `groups`.
    pub async fn sign_in(&self, ext: &ExternalIdentity, client: &str) -> Result<User> {
        let user = match self.meta.external_user(ext.source.into(), &ext.external_id).await? {
            Some(u) => u,
            // The directory provisioned this person through SCIM: bound to one subject.
            None if let Some(u) =
                self.meta.user_by_name(&ext.username).await?.filter(|u| u.source == AccountSource::Scim) =>
            {
                match self.bind_scim(ext, u).await {
                    Ok(u) => u,
                    Err(e) => {
                        self.audit_sign_in(ext, client, Err(&e.to_string())).await;
                        return Err(e);
                    }
                }
            }
            None => match self.create(ext).await {
                Ok(u) => u,
                Err(e) => {
                    self.audit_sign_in(ext, client, Err(&e.to_string())).await;
                    return Err(e);
                }
            },
        };
        if user.disabled {
            self.audit_sign_in(ext, client, Err("the account is disabled")).await;
            return Err(Error::Unauthenticated("this account is disabled; ask an administrator".into()));
        }
        self.sync_groups(&user, ext.source, &ext.groups).await?;
        self.audit_sign_in(&ExternalIdentity { username: user.username.clone(), ..ext.clone() }, client, Ok(())).await;
        Ok(user)
    }

    /// The SCIM account `u` for `ext`: bound to `ext`'s subject at the first sign-in, and
    /// refused to any other subject afterwards.
    async fn bind_scim(&self, ext: &ExternalIdentity, u: User) -> Result<User> {
        let bound = scim_binding(ext);
        let refused = || {
            Error::Unauthenticated(format!(
                "the account {} is bound to another identity at the provider; ask an administrator",
                u.username
            ))
        };
        match u.external_id.as_deref() {
            Some(b) if b == bound => Ok(u),
            Some(_) => Err(refused()),
            // Bound only if still unbound: of two first sign-ins at once, one wins.
            None if self.meta.bind_external_id(u.id, &bound).await? => {
                let actor = Principal { id: 0, username: DIRECTORY_ACTOR.into(), is_admin: false, scope: None };
                let detail = serde_json::json!({ "username": u.username, "source": ext.source });
                self.audit.change(&actor, None, "user.bind", detail).await;
                Ok(User { external_id: Some(bound), ..u })
            }
            None => Err(refused()),
        }
    }

    async fn create(&self, ext: &ExternalIdentity) -> Result<User> {
        check_account_name(&ext.username).map_err(|_| {
            Error::Invalid(format!(
                "the identity provider's user name {:?} cannot be an account name here (lowercase letters, digits, \
                 '.', '_' and '-'); ask an administrator to map another claim",
                ext.username
            ))
        })?;
        let user = match self
            .meta
            .create_external_user(&ext.username, ext.source.into(), &ext.external_id, self.clock.now())
            .await
        {
            Err(Error::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "the name {} is taken here by an account that is not linked to this identity provider; an \
                     administrator can rename or delete it",
                    ext.username
                )));
            }
            r => r?,
        };
        let actor = Principal { id: 0, username: DIRECTORY_ACTOR.into(), is_admin: false, scope: None };
        let detail = serde_json::json!({ "username": user.username, "source": ext.source });
        self.audit.change(&actor, None, "user.create", detail).await;
        self.identity.refresh_directory().await?;
        Ok(user)
    }

    /// Makes the user's directory-granted memberships exactly those `groups` name among the
    /// teams their orgs delegated to `provider`.
    pub async fn sync_groups(&self, user: &User, provider: Provider, groups: &[String]) -> Result<()> {
        let actor = Principal { id: 0, username: DIRECTORY_ACTOR.into(), is_admin: false, scope: None };
        let delegations = delegations(self.meta.as_ref()).await?;
        let mut wanted = BTreeSet::new();
        let mut changed = false;
        for g in groups {
            let Some((org_name, team_name)) = g.split_once(':') else { continue };
            let Some(org) = self.meta.org_by_name(org_name).await? else { continue };
            if check_account_name(team_name).is_err() {
                tracing::warn!(group = %g, "a group names a team that cannot exist; ignored");
                continue;
            }
            if !delegations.get(org_name).is_some_and(|d| d.allows(provider, team_name)) {
                let reason = if delegations.get(org_name).is_some_and(|d| d.allows(provider, "any")) {
                    "the organization did not delegate its owners team to the directory"
                } else {
                    "the organization did not delegate its teams to this identity provider"
                };
                let detail = serde_json::json!({
                    "group": g, "username": user.username, "provider": provider, "reason": reason,
                });
                self.audit.change(&actor, Some(&org.name), "directory.ignored", detail).await;
                continue;
            }
            let team = match self.meta.team(org.id, team_name).await? {
                Some(t) => t,
                None => {
                    let t = self.meta.create_team(org.id, team_name).await?;
                    self.audit
                        .change(&actor, Some(&org.name), "team.create", serde_json::json!({ "team": team_name }))
                        .await;
                    t
                }
            };
            wanted.insert(team.id);
            if self.meta.add_directory_member(team.id, user.id).await? {
                changed = true;
                let detail = serde_json::json!({ "team": team_name, "username": user.username });
                self.audit.change(&actor, Some(&org.name), "team.member.add", detail).await;
            }
        }
        for team_id in self.meta.directory_memberships(user.id).await? {
            if wanted.contains(&team_id) {
                continue;
            }
            let Some((org, team)) = self.team_by_id(team_id).await? else { continue };
            changed |= self.remove_directory_member(&actor, &org, team_id, &team, user).await?;
        }
        if changed {
            self.identity.refresh_directory().await?;
        }
        Ok(())
    }

    /// Removes a membership the directory granted (audited); the last owner stays.
    async fn remove_directory_member(
        &self,
        actor: &Principal,
        org: &str,
        team_id: i64,
        team: &str,
        user: &User,
    ) -> Result<bool> {
        match self.meta.remove_member(team_id, user.id).await {
            Ok(removed) => {
                let detail = serde_json::json!({ "team": team, "username": user.username });
                self.audit.change(actor, Some(org), "team.member.remove", detail).await;
                Ok(removed)
            }
            Err(Error::Conflict(e)) => {
                tracing::warn!(org = %org, user = %user.username, "kept: {e}");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// After `org`'s delegation changed: removes the memberships the directory granted there
    /// that it no longer may (audited), so a withdrawal applies at once, not at the next sign-in.
    pub async fn withdraw(&self, org: &crate::model::Org, delegation: &Delegation) -> Result<()> {
        let actor = Principal { id: 0, username: DIRECTORY_ACTOR.into(), is_admin: false, scope: None };
        let mut changed = false;
        for team in self.meta.list_teams(org.id).await? {
            for user in self.meta.team_members(team.id).await? {
                // A workload's memberships are its org's workload rules', not a provider's.
                if user.source == AccountSource::Workload
                    || provider_of(&user).is_some_and(|p| delegation.allows(p, &team.name))
                    || !self.meta.directory_memberships(user.id).await?.contains(&team.id)
                {
                    continue;
                }
                changed |= self.remove_directory_member(&actor, &org.name, team.id, &team.name, &user).await?;
            }
        }
        if changed {
            self.identity.refresh_directory().await?;
        }
        Ok(())
    }

    /// (org name, team name) of a team id, from the directory snapshot's rows.
    async fn team_by_id(&self, team_id: i64) -> Result<Option<(String, String)>> {
        for org in self.meta.list_orgs().await? {
            if let Some(t) = self.meta.list_teams(org.id).await?.into_iter().find(|t| t.id == team_id) {
                return Ok(Some((org.name, t.name)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Directory;
    use crate::clock::SystemClock;
    use crate::memory::MemoryMeta;
    use crate::metrics::Metrics;
    use crate::ports::{AuditStore, IdentityStore, OrgStore, PolicyStore, ScimStore};

    async fn setup() -> (Arc<MemoryMeta>, Sso, Arc<Identity>) {
        let meta = Arc::new(MemoryMeta::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let audit = Arc::new(Audit::start(meta.clone(), 0, clock.clone()));
        let identity = Arc::new(Identity::new(
            meta.clone(),
            Directory::default(),
            clock,
            audit.clone(),
            Arc::new(Metrics::default()),
        ));
        let owner = meta.create_user("olivia", "x", false, 1).await.unwrap();
        meta.create_org("acme", owner.id, 1).await.unwrap();
        (meta.clone(), Sso::new(meta, identity.clone(), audit), identity)
    }

    fn ext(name: &str, groups: &[&str]) -> ExternalIdentity {
        ExternalIdentity {
            source: policy::Provider::Oidc,
            external_id: format!("https://idp.example|{name}-sub"),
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    async fn teams(meta: &MemoryMeta, user: &str) -> Vec<String> {
        let org = meta.org_by_name("acme").await.unwrap().unwrap();
        let mut out = vec![];
        for t in meta.list_teams(org.id).await.unwrap() {
            if meta.team_members(t.id).await.unwrap().iter().any(|u| u.username == user) {
                out.push(t.name);
            }
        }
        out
    }

    #[tokio::test]
    async fn accounts_are_made_once_and_known_by_the_providers_id() {
        let (meta, sso, _) = setup().await;
        let u = sso.sign_in(&ext("alice", &[]), "10.0.0.1").await.unwrap();
        assert_eq!((u.source.as_str(), u.is_admin), ("oidc", false));
        assert_eq!(sso.sign_in(&ext("alice", &[]), "10.0.0.1").await.unwrap().id, u.id, "the same account again");
        // the password sign-in can never match a directory account
        assert_eq!(meta.user_by_name("alice").await.unwrap().unwrap().password_hash, "!");
        // a provider user named like a local account is refused, never linked
        let e = sso.sign_in(&ext("olivia", &[]), "10.0.0.1").await.unwrap_err();
        assert!(matches!(e, Error::Conflict(ref m) if m.contains("not linked")), "{e}");
        // nor like an org; and a name that cannot be an account name is refused clearly
        assert!(matches!(sso.sign_in(&ext("acme", &[]), "x").await, Err(Error::Conflict(_))));
        assert!(matches!(sso.sign_in(&ext("Alice@Example.com", &[]), "x").await, Err(Error::Invalid(_))));
        // a disabled account cannot sign in through the provider either
        meta.set_user_disabled(u.id, true).await.unwrap();
        assert!(matches!(sso.sign_in(&ext("alice", &[]), "x").await, Err(Error::Unauthenticated(_))));
    }

    /// acme delegates its teams to `providers` (and its owners team with `owners`).
    async fn delegate(meta: &MemoryMeta, providers: &[&str], owners: bool) {
        let org = meta.org_by_name("acme").await.unwrap().unwrap();
        let s = serde_json::json!({ "directory": { "providers": providers, "owners": owners } });
        meta.put_org_settings(org.id, &s.to_string(), 1).await.unwrap();
    }

    #[tokio::test]
    async fn groups_bring_directory_memberships_in_line_and_leave_manual_ones() {
        let (meta, sso, identity) = setup().await;
        delegate(&meta, &["oidc"], true).await;
        let u = sso
            .sign_in(&ext("alice", &["acme:dev", "acme:ops", "other:dev", "no-colon", "acme:Bad Name"]), "x")
            .await
            .unwrap();
        assert_eq!(teams(&meta, "alice").await, ["dev", "ops"], "teams made on first use; unknown orgs ignored");
        assert!(identity.directory().snapshot().is_member("acme", u.id), "the authorization snapshot is refreshed");
        // an owner adds alice to `qa` by hand: the directory never removes that
        let org = meta.org_by_name("acme").await.unwrap().unwrap();
        let qa = meta.create_team(org.id, "qa").await.unwrap();
        meta.add_member(qa.id, u.id).await.unwrap();
        sso.sign_in(&ext("alice", &["acme:ops", "acme:owners"]), "x").await.unwrap();
        assert_eq!(teams(&meta, "alice").await, ["ops", "owners", "qa"]);
        // the provider drops every group: only the directory's memberships go
        sso.sign_in(&ext("alice", &[]), "x").await.unwrap();
        assert_eq!(teams(&meta, "alice").await, ["qa"]);
        // a group that names a hand-made membership does not make it the directory's
        sso.sign_in(&ext("alice", &["acme:qa"]), "x").await.unwrap();
        sso.sign_in(&ext("alice", &[]), "x").await.unwrap();
        assert_eq!(teams(&meta, "alice").await, ["qa"]);
    }

    #[tokio::test]
    async fn only_what_an_org_delegated_and_never_owners_without_the_opt_in() {
        let (meta, sso, identity) = setup().await;
        // acme delegated nothing: a group naming it changes nothing, and that is audited
        let u = sso.sign_in(&ext("mallory", &["acme:owners", "acme:dev"]), "x").await.unwrap();
        assert!(teams(&meta, "mallory").await.is_empty());
        assert!(!identity.directory().snapshot().is_member("acme", u.id));
        identity.refresh_directory().await.unwrap();
        let org = meta.org_by_name("acme").await.unwrap().unwrap();
        assert!(meta.team(org.id, "dev").await.unwrap().is_none(), "no team is made for an org that did not delegate");
        // delegated to LDAP only: an OIDC group still changes nothing
        delegate(&meta, &["ldap"], true).await;
        sso.sign_in(&ext("mallory", &["acme:owners", "acme:dev"]), "x").await.unwrap();
        assert!(teams(&meta, "mallory").await.is_empty());
        // delegated to OIDC without owners: the teams, never owners
        delegate(&meta, &["oidc"], false).await;
        sso.sign_in(&ext("mallory", &["acme:owners", "acme:dev"]), "x").await.unwrap();
        assert_eq!(teams(&meta, "mallory").await, ["dev"]);
        assert!(!identity.directory().snapshot().is_owner("acme", u.id));
        // with the opt-in, owners too
        delegate(&meta, &["oidc"], true).await;
        sso.sign_in(&ext("mallory", &["acme:owners", "acme:dev"]), "x").await.unwrap();
        assert_eq!(teams(&meta, "mallory").await, ["dev", "owners"]);
        // the org withdraws the owners opt-in: that membership goes at once, not at a sign-in
        delegate(&meta, &["oidc"], false).await;
        sso.withdraw(&org, &policy::Delegation { providers: vec![policy::Provider::Oidc], owners: false })
            .await
            .unwrap();
        assert_eq!(teams(&meta, "mallory").await, ["dev"]);
        assert!(!identity.directory().snapshot().is_owner("acme", u.id));
        // and withdraws everything: the directory's memberships go; the local owner stays
        sso.withdraw(&org, &policy::Delegation::default()).await.unwrap();
        assert!(teams(&meta, "mallory").await.is_empty());
        assert_eq!(teams(&meta, "olivia").await, ["owners"]);
        // ignored groups are audited, with why (the audit writer is a task: wait for it)
        let q = crate::model::AuditQuery { action: Some("directory.ignored".into()), ..Default::default() };
        let mut reasons = String::new();
        for _ in 0..100 {
            let log = meta.query_audit(Some("acme"), &q).await.unwrap();
            reasons = log.iter().filter_map(|e| e.detail.clone()).collect();
            if reasons.contains("did not delegate its owners") && reasons.contains("to this identity provider") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(reasons.contains("did not delegate its owners"), "{reasons}");
        assert!(reasons.contains("did not delegate its teams to this identity provider"), "{reasons}");
    }

    #[tokio::test]
    async fn a_scim_account_is_bound_to_its_first_subject() {
        let (meta, sso, _) = setup().await;
        let u = meta.create_scim_user("sam", None, "{}", false, 1).await.unwrap();
        let first = ext("sam", &[]);
        assert_eq!(sso.sign_in(&first, "x").await.unwrap().id, u.id, "the first sign-in binds the SCIM account");
        assert_eq!(sso.sign_in(&first, "x").await.unwrap().id, u.id, "and the same subject signs in again");
        let other = ExternalIdentity { external_id: "https://idp.example|someone-else".into(), ..first.clone() };
        let e = sso.sign_in(&other, "x").await.unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(ref m) if m.contains("bound to another identity")), "{e}");
        // the same subject through another provider is another identity too
        let ldap = ExternalIdentity { source: policy::Provider::Ldap, ..first };
        assert!(sso.sign_in(&ldap, "x").await.is_err());
    }
}
