//! Organizations, teams, members, team repository permissions and repository settings, with
//! their rules: only owners (or the instance administrator) change an organization, any member
//! may look, the last owner cannot leave, and a repository's admins set its visibility.

use std::sync::Arc;

use oci::RepoName;
use serde::Serialize;

use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::identity::{Identity, check_account_name};
use crate::model::{AccountSource, OWNERS_TEAM, Org, Permission, Repo, RepoPermission, Team, User, Visibility};
use crate::ports::{ContentStore, IdentityStore, MetaStore, OrgStore};

/// A member of an organization and the teams they are in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Member {
    pub username: String,
    pub teams: Vec<String>,
    pub owner: bool,
    /// Where the account comes from (`local`, `oidc`, `ldap`).
    pub source: crate::model::AccountSource,
}

/// A tag of a hosted repository: its manifest's digest, type and size (config and layers of an
/// image; `None` for an index, which lists `platforms` manifests instead).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: Option<u64>,
    pub platforms: usize,
}

pub struct Orgs {
    store: Arc<dyn OrgStore>,
    /// Users, looked up by name when added to a team.
    users: Arc<dyn IdentityStore>,
    /// An org's repositories (listing, visibility, deletion).
    content: Arc<dyn ContentStore>,
    identity: Arc<Identity>,
    audit: Arc<crate::audit::Audit>,
    admins_only_create: bool,
    clock: Arc<dyn Clock>,
    manifests: Arc<crate::registry::HostedCache>,
}

fn not_found(org: &str) -> Error {
    Error::NotFound(format!("no organization {org}"))
}

impl Orgs {
    /// `admins_only_create` limits organization creation to instance administrators.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        identity: Arc<Identity>,
        audit: Arc<crate::audit::Audit>,
        admins_only_create: bool,
        manifests: Arc<crate::registry::HostedCache>,
    ) -> Orgs {
        let clock = identity.clock().clone();
        Orgs {
            store: meta.clone(),
            users: meta.clone(),
            content: meta,
            clock,
            identity,
            audit,
            admins_only_create,
            manifests,
        }
    }

    async fn changed(&self, who: &Principal, org: &str, action: &str, detail: serde_json::Value) {
        self.audit.change(who, Some(org), action, detail).await;
    }

    /// The org, when `who` may see it (a member or the administrator); else `NotFound`.
    pub async fn visible(&self, who: &Principal, name: &str) -> Result<Org> {
        let org = self.store.org_by_name(name).await?.ok_or_else(|| not_found(name))?;
        let snap = self.identity.directory().snapshot();
        if who.is_admin || snap.is_member(name, who.id) { Ok(org) } else { Err(not_found(name)) }
    }

    /// The org, when `who` owns it (or is the administrator); members get `Denied`.
    pub async fn owned(&self, who: &Principal, name: &str) -> Result<Org> {
        let org = self.visible(who, name).await?;
        let snap = self.identity.directory().snapshot();
        if who.is_admin || snap.is_owner(name, who.id) {
            Ok(org)
        } else {
            Err(Error::Denied(format!("only owners of {name} can change it")))
        }
    }

    /// The org, when `who` owns it (or is the administrator), for pages and data only owners
    /// see (the audit log, activity); members are told so.
    pub async fn owned_to_see(&self, who: &Principal, name: &str) -> Result<Org> {
        self.owned(who, name).await.map_err(|e| match e {
            Error::Denied(_) => Error::Denied(format!("only owners of {name} can see this")),
            e => e,
        })
    }

    /// Whether `who` may create organizations here (`auth.org_creation`).
    pub fn may_create(&self, who: &Principal) -> bool {
        !self.admins_only_create || who.is_admin
    }

    pub async fn create(&self, who: &Principal, name: &str) -> Result<Org> {
        if self.admins_only_create && !who.is_admin {
            return Err(Error::Denied("only the instance administrator may create organizations here".into()));
        }
        check_account_name(name)?;
        let org = self.store.create_org(name, who.id, self.clock.now()).await?;
        self.identity.refresh_directory().await?;
        self.changed(who, name, "org.create", serde_json::json!({ "name": name })).await;
        Ok(org)
    }

    /// Organizations `who` belongs to (all of them for the administrator).
    pub async fn list(&self, who: &Principal) -> Result<Vec<Org>> {
        let snap = self.identity.directory().snapshot();
        Ok(self
            .store
            .list_orgs()
            .await?
            .into_iter()
            .filter(|o| who.is_admin || snap.is_member(&o.name, who.id))
            .collect())
    }

    pub async fn members(&self, who: &Principal, org: &str) -> Result<Vec<Member>> {
        let o = self.visible(who, org).await?;
        let mut out: Vec<Member> = Vec::new();
        for team in self.store.list_teams(o.id).await? {
            for u in self.store.team_members(team.id).await? {
                match out.iter_mut().find(|m| m.username == u.username) {
                    Some(m) => m.teams.push(team.name.clone()),
                    None => out.push(Member {
                        username: u.username,
                        teams: vec![team.name.clone()],
                        owner: false,
                        source: u.source,
                    }),
                }
            }
        }
        for m in &mut out {
            m.owner = m.teams.iter().any(|t| t == OWNERS_TEAM);
            m.teams.sort();
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    pub async fn teams(&self, who: &Principal, org: &str) -> Result<Vec<Team>> {
        let o = self.visible(who, org).await?;
        self.store.list_teams(o.id).await
    }

    pub async fn create_team(&self, who: &Principal, org: &str, team: &str) -> Result<Team> {
        let o = self.owned(who, org).await?;
        check_account_name(team).map_err(|_| Error::Invalid(format!("invalid team name {team:?}")))?;
        let t = self.store.create_team(o.id, team).await?;
        self.changed(who, org, "team.create", serde_json::json!({ "team": team })).await;
        Ok(t)
    }

    async fn team_of(&self, org: &Org, team: &str) -> Result<Team> {
        self.store.team(org.id, team).await?.ok_or_else(|| Error::NotFound(format!("no team {team} in {}", org.name)))
    }

    pub async fn delete_team(&self, who: &Principal, org: &str, team: &str) -> Result<()> {
        let o = self.owned(who, org).await?;
        if team == OWNERS_TEAM {
            return Err(Error::Conflict("the owners team cannot be deleted".into()));
        }
        let t = self.team_of(&o, team).await?;
        self.store.delete_team(t.id).await?;
        self.identity.refresh_directory().await?;
        self.changed(who, org, "team.delete", serde_json::json!({ "team": team })).await;
        Ok(())
    }

    pub async fn team_members(&self, who: &Principal, org: &str, team: &str) -> Result<Vec<User>> {
        let o = self.visible(who, org).await?;
        let t = self.team_of(&o, team).await?;
        self.store.team_members(t.id).await
    }

    async fn user(&self, username: &str) -> Result<User> {
        self.users.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("no user {username}")))
    }

    /// Refuses a hand edit of a directory-managed team's members.
    fn hand_edit(t: &Team, org: &str) -> Result<()> {
        if t.directory_managed {
            return Err(Error::Conflict(format!(
                "the members of {org}/{} come from the identity provider (the team is directory-managed): change \
                 the group {org}:{} there",
                t.name, t.name
            )));
        }
        Ok(())
    }

    /// Marks a team's members as the directory's alone, or hands them back to owners (owners only).
    pub async fn set_directory_managed(&self, who: &Principal, org: &str, team: &str, managed: bool) -> Result<Team> {
        let o = self.owned(who, org).await?;
        let mut t = self.team_of(&o, team).await?;
        self.store.set_directory_managed(t.id, managed).await?;
        t.directory_managed = managed;
        let detail = serde_json::json!({ "team": team, "directory_managed": managed });
        self.changed(who, org, "team.directory_managed", detail).await;
        Ok(t)
    }

    /// Adds a user to a team; true when newly added.
    pub async fn add_member(&self, who: &Principal, org: &str, team: &str, username: &str) -> Result<bool> {
        let o = self.owned(who, org).await?;
        let t = self.team_of(&o, team).await?;
        Self::hand_edit(&t, org)?;
        let u = self.user(username).await?;
        if matches!(u.source, AccountSource::Robot | AccountSource::Workload) && team == OWNERS_TEAM {
            return Err(Error::Invalid(format!("{username} is a {} account: never an owner", u.source)));
        }
        if u.source == AccountSource::Robot && crate::robots::org_of(username) != Some(org) {
            return Err(Error::Invalid(format!("{username} is a robot of another organization")));
        }
        let added = self.store.add_member(t.id, u.id).await?;
        self.identity.refresh_directory().await?;
        if added {
            self.changed(who, org, "member.add", serde_json::json!({ "team": team, "username": username })).await;
        }
        Ok(added)
    }

    pub async fn remove_member(&self, who: &Principal, org: &str, team: &str, username: &str) -> Result<()> {
        let o = self.owned(who, org).await?;
        let t = self.team_of(&o, team).await?;
        Self::hand_edit(&t, org)?;
        let u = self.user(username).await?;
        if !self.store.remove_member(t.id, u.id).await? {
            return Err(Error::NotFound(format!("{username} is not in {org}/{team}")));
        }
        self.identity.refresh_directory().await?;
        self.changed(who, org, "member.remove", serde_json::json!({ "team": team, "username": username })).await;
        Ok(())
    }

    /// Grants (or with `None` revokes) a team's permission on `repo_path` inside the org.
    pub async fn set_permission(
        &self,
        who: &Principal,
        org: &str,
        team: &str,
        repo_path: &str,
        p: Option<Permission>,
    ) -> Result<()> {
        let o = self.owned(who, org).await?;
        format!("{org}/{repo_path}")
            .parse::<RepoName>()
            .map_err(|_| Error::Invalid(format!("invalid repository name {repo_path:?}")))?;
        let t = self.team_of(&o, team).await?;
        self.store.set_permission(t.id, repo_path, p).await?;
        self.identity.refresh_directory().await?;
        let detail = serde_json::json!({ "team": team, "repository": repo_path, "permission": p });
        self.changed(who, org, "permission.set", detail).await;
        Ok(())
    }

    pub async fn team_permissions(&self, who: &Principal, org: &str, team: &str) -> Result<Vec<RepoPermission>> {
        let o = self.visible(who, org).await?;
        let t = self.team_of(&o, team).await?;
        self.store.team_permissions(t.id).await
    }

    /// Repositories `who` may pull, optionally only those of one namespace.
    pub async fn repositories(&self, who: &Principal, namespace: Option<&str>) -> Result<Vec<Repo>> {
        let snap = self.identity.directory().snapshot();
        let subject = crate::authz::Subject::User(who.clone());
        Ok(self
            .content
            .list_repos()
            .await?
            .into_iter()
            .filter(|r| namespace.is_none_or(|ns| r.name.split('/').next() == Some(ns)))
            .filter(|r| r.name.parse::<RepoName>().is_ok_and(|n| snap.permitted(&subject, &n).pull))
            .collect())
    }

    /// Whether `who` may delete from repository `repo` (what the console offers).
    pub fn may_delete(&self, who: &Principal, repo: &str) -> bool {
        let snap = self.identity.directory().snapshot();
        repo.parse().is_ok_and(|n| snap.permitted(&crate::authz::Subject::User(who.clone()), &n).delete)
    }

    /// Tags of a repository `who` may pull (at most 1000), with what they point to.
    pub async fn tags(&self, who: &Principal, repo: &str) -> Result<Vec<TagInfo>> {
        let none = || Error::NotFound(format!("no repository {repo}"));
        let name: RepoName = repo.parse().map_err(|_| none())?;
        let snap = self.identity.directory().snapshot();
        if !snap.permitted(&crate::authz::Subject::User(who.clone()), &name).pull {
            return Err(none());
        }
        let r = self.content.repo(repo).await?.ok_or_else(none)?;
        let mut out = Vec::new();
        for tag in self.content.list_tags(r.id, None, Some(1000)).await? {
            let Ok(parsed_tag) = tag.parse::<oci::name::Tag>() else { continue };
            let Some(m) = self.content.manifest_by_tag(r.id, &parsed_tag).await? else { continue };
            let parsed = oci::manifest::Manifest::parse(&m.content, Some(&m.media_type)).ok();
            let (size, platforms) = match &parsed {
                Some(p) if p.kind == oci::manifest::ManifestKind::Index => (None, p.manifests.len()),
                Some(p) => (Some(p.config.iter().chain(&p.layers).map(|d| d.size).sum()), 1),
                None => (None, 0),
            };
            out.push(TagInfo { tag, digest: m.digest, media_type: m.media_type, size, platforms });
        }
        Ok(out)
    }

    pub(crate) async fn admin_of_repo(&self, who: &Principal, repo: &str) -> Result<RepoName> {
        let name: RepoName = repo.parse().map_err(|_| Error::Invalid(format!("invalid repository name {repo:?}")))?;
        let snap = self.identity.directory().snapshot();
        let acts = snap.permitted(&crate::authz::Subject::User(who.clone()), &name);
        if snap.repo(repo).is_none() || !acts.pull {
            return Err(Error::NotFound(format!("no repository {repo}")));
        }
        if !acts.delete {
            return Err(Error::Denied(format!("admin permission on {repo} is required")));
        }
        Ok(name)
    }

    pub async fn set_visibility(&self, who: &Principal, repo: &str, v: Visibility) -> Result<()> {
        self.admin_of_repo(who, repo).await?;
        self.content.set_visibility(repo, v).await?;
        self.identity.refresh_directory().await
    }

    pub async fn delete_repository(&self, who: &Principal, repo: &str) -> Result<()> {
        self.admin_of_repo(who, repo).await?;
        let deleted = self.content.delete_repo(repo).await;
        // Its id may be given to the next repository created: nothing of it is served again.
        self.manifests.invalidate();
        deleted?;
        self.identity.refresh_directory().await
    }
}
