//! Robot accounts (Docker Hub's organization access tokens, Harbor's robots): an organization's
//! machine identities for what cannot present a workload token. A robot is the account
//! `robot$<org>+<name>` (source `robot`, no password; account names have no `$`, so no person
//! can take it), owned by its organization, a member of the teams its owners chose — never
//! `owners` — with one access token that must expire (pull, or pull and push where its teams
//! may), its last use shown, revocable by deleting the robot. Only the org's owners manage them;
//! a robot signs in at `/token` only, never to the API or the console.

use std::sync::Arc;

use serde::Serialize;

use crate::audit::Audit;
use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::identity::{Identity, check_account_name};
use crate::model::{AccountSource, OWNERS_TEAM, TokenKind, TokenScope};
use crate::orgs::Orgs;
use crate::ports::MetaStore;

/// The longest a robot's token may live.
pub const MAX_DAYS: i64 = 365;

/// The account name of robot `name` of `org`.
pub fn account(org: &str, name: &str) -> String {
    format!("robot${org}+{name}")
}

/// The organization of robot account `username`, if it is one.
pub fn org_of(username: &str) -> Option<&str> {
    username.strip_prefix("robot$").and_then(|r| r.split_once('+')).map(|(org, _)| org)
}

/// A robot as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Robot {
    pub name: String,
    /// What clients sign in with (`docker login -u 'robot$acme+ci'`).
    pub username: String,
    pub teams: Vec<String>,
    pub scope: TokenScope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

pub struct Robots {
    /// The whole metadata port: robots are users, memberships and tokens of an org (three
    /// capabilities).
    meta: Arc<dyn MetaStore>,
    identity: Arc<Identity>,
    orgs: Arc<Orgs>,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
}

impl Robots {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        identity: Arc<Identity>,
        orgs: Arc<Orgs>,
        audit: Arc<Audit>,
        clock: Arc<dyn Clock>,
    ) -> Robots {
        Robots { meta, identity, orgs, audit, clock }
    }

    /// Creates robot `name` of `org` in `teams` with a token of `scope` that expires in `days`
    /// (owners only); the token's secret is returned once.
    pub async fn create(
        &self,
        who: &Principal,
        org: &str,
        name: &str,
        teams: &[String],
        scope: TokenScope,
        days: i64,
    ) -> Result<(Robot, String)> {
        let o = self.orgs.owned(who, org).await?;
        check_account_name(name).map_err(|_| {
            Error::Invalid(format!(
                "invalid robot name {name:?}: 2-64 characters of a-z, 0-9, and single _ or - between them"
            ))
        })?;
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(Error::Invalid(format!("a robot's token expires in 1 to {MAX_DAYS} days")));
        }
        if teams.is_empty() {
            return Err(Error::Invalid("a robot is a member of at least one team".into()));
        }
        let mut team_ids = Vec::new();
        for t in teams {
            if t == OWNERS_TEAM {
                return Err(Error::Invalid("a robot is never an owner: name other teams".into()));
            }
            let team =
                self.meta.team(o.id, t).await?.ok_or_else(|| Error::Invalid(format!("{org} has no team {t:?}")))?;
            team_ids.push(team.id);
        }
        let username = account(org, name);
        let now = self.clock.now();
        let user = self.meta.create_external_user(&username, AccountSource::Robot, &username, now).await.map_err(
            |e| match e {
                Error::Conflict(_) => Error::Conflict(format!("{org} has a robot named {name} already")),
                e => e,
            },
        )?;
        for id in team_ids {
            self.meta.add_member(id, user.id).await?;
        }
        self.identity.refresh_directory().await?;
        let robot = Principal { id: user.id, username: username.clone(), is_admin: false, scope: None };
        let expires = now + days * 86_400;
        let (t, secret) = self.identity.create_token(&robot, "robot", TokenKind::Pat, scope, Some(expires)).await?;
        let detail = serde_json::json!({ "robot": username, "teams": teams, "scope": scope, "expires_at": expires });
        self.audit.change(who, Some(org), "robot.create", detail).await;
        let view = Robot {
            name: name.to_owned(),
            username,
            teams: teams.to_vec(),
            scope: t.scope,
            created_at: now,
            expires_at: t.expires_at,
            last_used_at: None,
        };
        Ok((view, secret))
    }

    /// The org's robots (owners only).
    pub async fn list(&self, who: &Principal, org: &str) -> Result<Vec<Robot>> {
        self.orgs.owned(who, org).await?;
        let prefix = account(org, "");
        let dir = self.identity.directory().snapshot();
        let mut out = Vec::new();
        for u in self.meta.list_users().await? {
            if u.source != AccountSource::Robot || !u.username.starts_with(&prefix) {
                continue;
            }
            let p = Principal { id: u.id, username: u.username.clone(), is_admin: false, scope: None };
            let token = self.identity.list_tokens(&p).await?.into_iter().next();
            let teams = dir.memberships(u.id).into_iter().filter(|m| m.org == org).flat_map(|m| m.teams).collect();
            out.push(Robot {
                name: u.username.strip_prefix(&prefix).unwrap_or(&u.username).to_owned(),
                username: u.username,
                teams,
                scope: token.as_ref().map(|t| t.scope).unwrap_or(TokenScope::Read),
                created_at: u.created_at,
                expires_at: token.as_ref().and_then(|t| t.expires_at),
                last_used_at: token.and_then(|t| t.last_used_at),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes robot `name` of `org` with its token and memberships (owners only).
    pub async fn delete(&self, who: &Principal, org: &str, name: &str) -> Result<()> {
        self.orgs.owned(who, org).await?;
        let username = account(org, name);
        let user = self
            .meta
            .user_by_name(&username)
            .await?
            .filter(|u| u.source == AccountSource::Robot)
            .ok_or_else(|| Error::NotFound(format!("{org} has no robot {name}")))?;
        self.meta.delete_user(user.id).await?;
        self.identity.refresh_directory().await?;
        self.audit.change(who, Some(org), "robot.delete", serde_json::json!({ "robot": username })).await;
        Ok(())
    }
}
