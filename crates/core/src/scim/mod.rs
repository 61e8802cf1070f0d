//! SCIM 2.0 provisioning (RFC 7643/7644): an identity provider creates, changes, deactivates
//! and deletes accounts (`Users`) and teams (`Groups`, named `<org>:<team>`, Docker's
//! convention) with a bearer token an organization's owner or the administrator created.
//!
//! What a token reaches is its scope: an organization's token sees the accounts it provisioned
//! and that organization's teams; the administrator's token sees every account but the instance
//! administrators (so a directory can never lock out the break-glass account) and every team.
//! Accounts made here have no password: their people sign in through the identity provider
//! (OIDC or LDAP, which find them by name). `active: false` and DELETE end the account's console
//! sessions and revoke every access token at once; the gate refuses a disabled account's
//! registry tokens on the next request. Every change is audited with the token's name.
//!
//! `filter` parses filters and PATCH paths, `patch` applies PATCH operations to a resource's
//! JSON, `schema` is what the service publishes; `resources` writes users and groups.

pub mod filter;
pub mod patch;
mod resources;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::audit::Audit;
use crate::authz::Principal;
use crate::clock::{Clock, rfc3339};
use crate::error::{Error, Result};
use crate::identity::{Identity, LoginThrottle, admin_only, new_secret, token_hash};
use crate::model::{Org, ScimToken, Team, User};
use crate::ports::MetaStore;

/// Prefix of SCIM token secrets.
pub const SCIM_PREFIX: &str = "pcscim_";

/// A SCIM failure: the domain error and, when it says more than the status, the SCIM error
/// type (`invalidFilter`, `mutability`, …).
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub scim_type: Option<&'static str>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure { error, scim_type: None }
    }
}

/// A failure with its SCIM type; `Invalid` (400) unless the type says otherwise.
pub fn fail(scim_type: &'static str, msg: impl Into<String>) -> Failure {
    let m = msg.into();
    let error = if scim_type == "uniqueness" { Error::Conflict(m) } else { Error::Invalid(m) };
    Failure { error, scim_type: Some(scim_type) }
}

pub type ScimResult<T> = std::result::Result<T, Failure>;

/// The resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    /// The resource id of a user or team: ids are unique across both (RFC 7643 §3.1).
    pub fn id(self, n: i64) -> String {
        match self {
            Kind::User => format!("u{n}"),
            Kind::Group => format!("g{n}"),
        }
    }

    /// The user or team id of a resource id.
    pub fn parse_id(self, id: &str) -> Option<i64> {
        let prefix = if self == Kind::User { 'u' } else { 'g' };
        id.strip_prefix(prefix)?.parse().ok().filter(|n| *n > 0)
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
}

/// Who calls: a token, and the organization it is scoped to (`None`: the whole instance).
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: ScimToken,
    pub org: Option<Org>,
}

impl Caller {
    fn actor(&self) -> Principal {
        Principal { id: 0, username: format!("scim:{}", self.token.name), is_admin: false, scope: None }
    }
}

/// A list request: filter, 1-based page and which attributes to return.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

/// A page of a list: the ListResponse body.
pub fn list_response(total: usize, start: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST], "totalResults": total, "startIndex": start,
        "itemsPerPage": resources.len(), "Resources": resources,
    })
}

/// What one token can see, read at once.
struct World {
    users: Vec<User>,
    /// user id → (provisioning org, attributes)
    user_attrs: HashMap<i64, (Option<i64>, Value)>,
    /// visible teams with their org's name
    teams: Vec<(Team, String)>,
    group_attrs: HashMap<i64, Value>,
    /// (team id, user id)
    members: Vec<(i64, i64)>,
}

pub struct Scim {
    /// The whole metadata port: provisioning writes users, teams, memberships, sessions and its
    /// own SCIM records (four capabilities) in one pass.
    meta: Arc<dyn MetaStore>,
    identity: Arc<Identity>,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
}

impl Scim {
    pub fn new(meta: Arc<dyn MetaStore>, identity: Arc<Identity>, audit: Arc<Audit>) -> Scim {
        Scim { meta, clock: identity.clock().clone(), identity, audit }
    }

    /// The caller presenting `secret`; failures count against the address like bad access tokens.
    pub async fn authenticate(&self, secret: &str, client: &str) -> Result<Caller> {
        let now = self.clock.now();
        LoginThrottle::token(self.meta.as_ref(), client, now).await?;
        let token = match secret.starts_with(SCIM_PREFIX) {
            true => self.meta.use_scim_token(&token_hash(secret), now).await?,
            false => None,
        };
        let Some(token) = token else {
            LoginThrottle::token_failed(self.meta.as_ref(), client, now).await?;
            return Err(Error::Unauthenticated("invalid SCIM token".into()));
        };
        let org = match token.org_id {
            Some(id) => {
                Some(self.org_by_id(id).await?.ok_or_else(|| Error::Unauthenticated("invalid SCIM token".into()))?)
            }
            None => None,
        };
        Ok(Caller { token, org })
    }

    async fn org_by_id(&self, id: i64) -> Result<Option<Org>> {
        Ok(self.meta.list_orgs().await?.into_iter().find(|o| o.id == id))
    }

    /// Checks that `who` may manage the SCIM tokens of `org` (its owners) or of the instance
    /// (the administrator); the org.
    async fn token_scope(&self, who: &Principal, org: Option<&str>) -> Result<Option<Org>> {
        match org {
            None => admin_only(who, "manage instance-wide SCIM tokens").map(|_| None),
            Some(name) => {
                let o = self.meta.org_by_name(name).await?.ok_or_else(|| Error::NotFound(format!("no org {name}")))?;
                let snap = self.identity.directory().snapshot();
                if who.is_admin || snap.is_owner(name, who.id) {
                    Ok(Some(o))
                } else if snap.is_member(name, who.id) {
                    Err(Error::Denied(format!("only owners of {name} manage its SCIM tokens")))
                } else {
                    Err(Error::NotFound(format!("no org {name}")))
                }
            }
        }
    }

    /// Creates a SCIM token; its secret is returned once.
    pub async fn create_token(&self, who: &Principal, org: Option<&str>, name: &str) -> Result<(ScimToken, String)> {
        let scope = self.token_scope(who, org).await?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(Error::Invalid("a SCIM token needs a name of 1 to 100 printable characters".into()));
        }
        let secret = new_secret(SCIM_PREFIX);
        let t = self
            .meta
            .create_scim_token(
                scope.as_ref().map(|o| o.id),
                name,
                &token_hash(&secret),
                &who.username,
                self.clock.now(),
            )
            .await?;
        self.audit.change(who, org, "scim.token.create", json!({ "id": t.id, "name": name })).await;
        Ok((t, secret))
    }

    /// The SCIM tokens of `org`, or of the instance (every token: administrator only).
    pub async fn list_tokens(&self, who: &Principal, org: Option<&str>) -> Result<Vec<ScimToken>> {
        let scope = self.token_scope(who, org).await?;
        self.meta.list_scim_tokens(scope.map(|o| o.id)).await
    }

    /// Deletes a SCIM token: its org's owners or the administrator.
    pub async fn delete_token(&self, who: &Principal, id: i64) -> Result<()> {
        let gone = || Error::NotFound(format!("no SCIM token {id}"));
        let t = self.meta.list_scim_tokens(None).await?.into_iter().find(|t| t.id == id).ok_or_else(gone)?;
        let org = match t.org_id {
            Some(o) => Some(self.org_by_id(o).await?.ok_or_else(gone)?.name),
            None => None,
        };
        match self.token_scope(who, org.as_deref()).await {
            Err(Error::NotFound(_)) | Err(Error::Denied(_)) if !who.is_admin => return Err(gone()),
            r => r?,
        };
        self.meta.delete_scim_token(id).await?;
        self.audit.change(who, org.as_deref(), "scim.token.delete", json!({ "id": id, "name": t.name })).await;
        Ok(())
    }

    async fn world(&self, caller: &Caller) -> Result<World> {
        let dir = self.meta.load_directory().await?;
        let scim_users = self.meta.scim_users().await?;
        let org_id = caller.org.as_ref().map(|o| o.id);
        let user_attrs: HashMap<i64, (Option<i64>, Value)> = scim_users
            .into_iter()
            .map(|r| (r.user_id, (r.org_id, serde_json::from_str(&r.attrs).unwrap_or_else(|_| json!({})))))
            .collect();
        let users = self
            .meta
            .list_users()
            .await?
            .into_iter()
            .filter(|u| match org_id {
                Some(o) => user_attrs.get(&u.id).is_some_and(|(p, _)| *p == Some(o)),
                None => !u.is_admin,
            })
            .collect();
        let org_names: HashMap<i64, String> = dir.orgs.into_iter().collect();
        let teams = dir
            .teams
            .into_iter()
            .filter(|(_, org, _)| org_id.is_none_or(|o| o == *org))
            .filter_map(|(id, org, name)| {
                let org_name = org_names.get(&org)?.clone();
                Some((Team { id, org_id: org, name, directory_managed: false }, org_name))
            })
            .collect();
        let group_attrs = self
            .meta
            .scim_groups()
            .await?
            .into_iter()
            .map(|g| (g.team_id, serde_json::from_str(&g.attrs).unwrap_or_else(|_| json!({}))))
            .collect();
        Ok(World { users, user_attrs, teams, group_attrs, members: dir.members })
    }

    fn user_doc(&self, w: &World, u: &User, base: &str) -> Value {
        let mut doc = w.user_attrs.get(&u.id).map(|(_, a)| a.clone()).unwrap_or_else(|| json!({}));
        let groups: Vec<Value> = w
            .teams
            .iter()
            .filter(|(t, _)| w.members.contains(&(t.id, u.id)))
            .map(|(t, org)| {
                let id = Kind::Group.id(t.id);
                json!({ "value": id, "$ref": format!("{base}/Groups/{id}"), "display": Self::group_name(w, t, org) })
            })
            .collect();
        doc["schemas"] = json!([schema::USER]);
        doc["id"] = json!(Kind::User.id(u.id));
        doc["userName"] = json!(u.username);
        // A disabled account always says so; an enabled one shows `active` unless the provider
        // provisioned it without (or removed) the attribute.
        if u.disabled || w.user_attrs.get(&u.id).is_none_or(|(_, a)| a.get("active").is_some()) {
            doc["active"] = json!(!u.disabled);
        }
        if !groups.is_empty() {
            doc["groups"] = Value::Array(groups);
        }
        doc["meta"] = json!({
            "resourceType": "User", "created": rfc3339(u.created_at), "lastModified": rfc3339(u.created_at),
            "location": format!("{base}/Users/{}", Kind::User.id(u.id)),
        });
        doc
    }

    fn group_name(w: &World, t: &Team, org: &str) -> String {
        w.group_attrs
            .get(&t.id)
            .and_then(|a| a.get("displayName"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("{org}:{}", t.name), str::to_owned)
    }

    fn group_doc(&self, w: &World, t: &Team, org: &str, base: &str) -> Value {
        let mut doc = w.group_attrs.get(&t.id).cloned().unwrap_or_else(|| json!({}));
        let members: Vec<Value> = w
            .users
            .iter()
            .filter(|u| w.members.contains(&(t.id, u.id)))
            .map(|u| json!({ "value": Kind::User.id(u.id), "$ref": format!("{base}/Users/{}", Kind::User.id(u.id)) }))
            .collect();
        doc["schemas"] = json!([schema::GROUP]);
        doc["id"] = json!(Kind::Group.id(t.id));
        doc["displayName"] = json!(Self::group_name(w, t, org));
        doc["members"] = Value::Array(members);
        doc["meta"] = json!({ "resourceType": "Group", "location": format!("{base}/Groups/{}", Kind::Group.id(t.id)) });
        doc
    }

    fn docs(&self, w: &World, kind: Kind, base: &str) -> Vec<Value> {
        match kind {
            Kind::User => w.users.iter().map(|u| self.user_doc(w, u, base)).collect(),
            Kind::Group => w.teams.iter().map(|(t, org)| self.group_doc(w, t, org, base)).collect(),
        }
    }

    /// Lists resources of `kinds` (both for a search at the root) matching the query.
    pub async fn list(&self, caller: &Caller, kinds: &[Kind], base: &str, q: &Query) -> ScimResult<Value> {
        let filter = match q.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => Some(filter::parse(f).map_err(|e| fail("invalidFilter", format!("filter: {e}")))?),
            None => None,
        };
        let w = self.world(caller).await?;
        let mut all: Vec<Value> = kinds.iter().flat_map(|k| self.docs(&w, *k, base)).collect();
        if let Some(f) = &filter {
            all.retain(|d| f.matches(d));
        }
        let total = all.len();
        let start = q.start_index.unwrap_or(1).max(1) as usize;
        let count = q.count.unwrap_or(schema::MAX_RESULTS as i64).clamp(0, schema::MAX_RESULTS as i64) as usize;
        let page = all.into_iter().skip(start - 1).take(count).map(|d| project(d, q)).collect();
        Ok(list_response(total, start, page))
    }

    /// One resource.
    pub async fn get(&self, caller: &Caller, kind: Kind, base: &str, id: &str, q: &Query) -> ScimResult<Value> {
        let w = self.world(caller).await?;
        Ok(project(self.find(&w, kind, base, id)?, q))
    }

    fn find(&self, w: &World, kind: Kind, base: &str, id: &str) -> ScimResult<Value> {
        let n = kind.parse_id(id);
        let doc = match kind {
            Kind::User => w.users.iter().find(|u| Some(u.id) == n).map(|u| self.user_doc(w, u, base)),
            Kind::Group => {
                w.teams.iter().find(|(t, _)| Some(t.id) == n).map(|(t, org)| self.group_doc(w, t, org, base))
            }
        };
        doc.ok_or_else(|| Error::NotFound(format!("no {} {id}", kind.endpoint().trim_end_matches('s'))).into())
    }
}

/// The attribute names of a query parameter, bare and lowercase (`name.givenName` → `name`).
fn names(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|a| filter::bare_name(a.trim()).split('.').next().unwrap_or_default().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

/// `doc` with only the requested attributes (`id` and `schemas` are always returned).
pub fn project(doc: Value, q: &Query) -> Value {
    let (keep, drop) = (names(&q.attributes), names(&q.excluded));
    let Value::Object(m) = doc else { return doc };
    let always = |k: &str| k == "id" || k == "schemas";
    Value::Object(
        m.into_iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                always(&k) || ((keep.is_empty() || keep.contains(&k)) && !drop.contains(&k))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
