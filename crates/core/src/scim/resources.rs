//! Writing SCIM resources: users (accounts with no password, `source = scim`) and groups
//! (teams). POST creates, PUT replaces, PATCH applies its operations to the resource's JSON and
//! then replaces with the result, so one validation decides every change. What a resource
//! keeps beyond the account and the team (externalId, displayName, name, emails) is stored as
//! JSON; memberships are the teams' own, and a token changes only the memberships of the
//! accounts it can see.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Caller, Failure, Kind, Scim, ScimResult, World, fail, filter, patch, schema};
use crate::error::Error;
use crate::identity::check_account_name;
use crate::model::{OWNERS_TEAM, Team, User};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Name {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Email {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    primary: Option<bool>,
}

/// What a user resource keeps beyond its account.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserAttrs {
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Name>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    emails: Vec<Email>,
    /// Whether the provider set `active` (an account it never set it on shows none while enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<bool>,
}

/// A user resource as written (`serde(flatten)` would lose the path of a wrong type).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIn {
    user_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    active: Option<bool>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    name: Option<Name>,
    #[serde(default, deserialize_with = "nullable_list")]
    emails: Vec<Email>,
}

impl UserIn {
    fn attrs(&self) -> UserAttrs {
        UserAttrs {
            external_id: self.external_id.clone(),
            display_name: self.display_name.clone(),
            name: self.name.clone(),
            emails: self.emails.clone(),
            active: self.active,
        }
    }
}

/// What a group resource keeps beyond its team.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupAttrs<'a> {
    display_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct MemberIn {
    value: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupIn {
    display_name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default, deserialize_with = "nullable_list")]
    members: Vec<MemberIn>,
}

/// A boolean, or Entra ID's `"True"`/`"False"`.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(serde::de::Error::custom(format!("expected a boolean, not {v}"))),
    }
}

fn nullable_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Keys in their canonical case, without schema URNs, at every level.
fn canonical_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter().map(|(k, v)| (schema::canonical(filter::bare_name(&k)), canonical_keys(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(canonical_keys).collect()),
        v => v,
    }
}

/// Checks a POST or PUT body's `schemas` (the core schema, and only schemas known here) and
/// reads it as `T`.
fn read<T: serde::de::DeserializeOwned>(body: Value, core: &str) -> ScimResult<T> {
    let Value::Object(_) = body else { return Err(fail("invalidSyntax", "the body must be a JSON object")) };
    let schemas: Vec<String> = match filter::member(&body, "schemas") {
        Some(Value::Array(a)) => a.iter().map(|s| s.as_str().map(str::to_owned)).collect::<Option<_>>(),
        _ => None,
    }
    .ok_or_else(|| fail("invalidSyntax", format!("the body's schemas must list {core}")))?;
    if !schemas.iter().any(|s| s.eq_ignore_ascii_case(core)) {
        return Err(fail("invalidSyntax", format!("the body's schemas must list {core}")));
    }
    let known = [core, schema::ENTERPRISE_USER];
    if let Some(s) = schemas.iter().find(|s| !known.iter().any(|k| k.eq_ignore_ascii_case(s))) {
        return Err(fail("invalidSyntax", format!("unknown schema {s}")));
    }
    serde_path_to_error::deserialize(canonical_keys(body)).map_err(|e| {
        let path = e.path().to_string();
        fail("invalidValue", format!("{path}: {}", e.into_inner()))
    })
}

fn stored(attrs: &impl Serialize) -> String {
    serde_json::to_string(attrs).unwrap_or_else(|_| "{}".into())
}

impl Scim {
    fn visible_user<'a>(&self, w: &'a World, id: &str) -> ScimResult<&'a User> {
        let n = Kind::User.parse_id(id);
        w.users.iter().find(|u| Some(u.id) == n).ok_or_else(|| Error::NotFound(format!("no User {id}")).into())
    }

    fn visible_team<'a>(&self, w: &'a World, id: &str) -> ScimResult<&'a (Team, String)> {
        let n = Kind::Group.parse_id(id);
        w.teams.iter().find(|(t, _)| Some(t.id) == n).ok_or_else(|| Error::NotFound(format!("no Group {id}")).into())
    }

    async fn done(&self) -> ScimResult<()> {
        self.identity.refresh_directory().await?;
        Ok(())
    }

    /// POST: creates a user or a group.
    pub async fn create(&self, caller: &Caller, kind: Kind, base: &str, body: Value) -> ScimResult<Value> {
        let id = match kind {
            Kind::User => self.create_user(caller, read(body, schema::USER)?).await?,
            Kind::Group => self.create_group(caller, read(body, schema::GROUP)?).await?,
        };
        let w = self.world(caller).await?;
        self.find(&w, kind, base, &kind.id(id))
    }

    /// PUT: replaces a resource's attributes.
    pub async fn replace(&self, caller: &Caller, kind: Kind, base: &str, id: &str, body: Value) -> ScimResult<Value> {
        let w = self.world(caller).await?;
        match kind {
            Kind::User => self.replace_user(caller, &w, id, read(body, schema::USER)?, false).await?,
            Kind::Group => self.replace_group(caller, &w, id, read(body, schema::GROUP)?).await?,
        }
        let w = self.world(caller).await?;
        self.find(&w, kind, base, id)
    }

    /// PATCH: applies the operations to the resource, then replaces it with the result.
    pub async fn patch(&self, caller: &Caller, kind: Kind, base: &str, id: &str, body: Value) -> ScimResult<Value> {
        let listed = filter::member(&body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(schema::PATCH_OP))));
        if !listed {
            return Err(fail("invalidSyntax", format!("a PATCH body's schemas must list {}", schema::PATCH_OP)));
        }
        let w = self.world(caller).await?;
        let Value::Object(mut doc) = self.find(&w, kind, base, id)? else { unreachable!("resources are objects") };
        doc.remove("meta");
        let multi: &[&str] = match kind {
            Kind::User => &["emails"],
            Kind::Group => &["members"],
        };
        let had_active = doc.contains_key("active");
        patch::apply(&mut doc, &body, multi).map_err(|patch::PatchError(t, m)| fail(t, m))?;
        if kind == Kind::User && had_active && !doc.contains_key("active") {
            // An explicit `remove active` unassigns it: the account is as one provisioned
            // without it, enabled (unlike a PUT that leaves it out, which changes nothing).
            let input: UserIn = read(Value::Object(doc), schema::USER)?;
            self.replace_user(caller, &w, id, input, true).await?;
            let w = self.world(caller).await?;
            return self.find(&w, kind, base, id);
        }
        self.replace(caller, kind, base, id, Value::Object(doc)).await
    }

    /// DELETE: deletes an account (its tokens and sessions go with it) or a team.
    pub async fn delete(&self, caller: &Caller, kind: Kind, id: &str) -> ScimResult<()> {
        let w = self.world(caller).await?;
        let actor = caller.actor();
        match kind {
            Kind::User => {
                let u = self.visible_user(&w, id)?;
                if let Some(org) = self.identity.directory().snapshot().orgs_owned_only_by(u.id).first() {
                    return Err(Error::Conflict(format!(
                        "{} is the last owner of {org}; make someone else an owner first",
                        u.username
                    ))
                    .into());
                }
                self.meta.delete_user(u.id).await?;
                self.audit
                    .change(
                        &actor,
                        caller.org.as_ref().map(|o| o.name.as_str()),
                        "user.delete",
                        json!({ "username": u.username }),
                    )
                    .await;
            }
            Kind::Group => {
                let (t, org) = self.visible_team(&w, id)?;
                if t.name == OWNERS_TEAM {
                    return Err(fail("mutability", "the owners team cannot be deleted"));
                }
                self.meta.delete_team(t.id).await?;
                self.audit.change(&actor, Some(org), "team.delete", json!({ "team": t.name })).await;
            }
        }
        self.done().await
    }

    async fn create_user(&self, caller: &Caller, input: UserIn) -> ScimResult<i64> {
        let name = input.user_name.clone().ok_or_else(|| fail("invalidValue", "userName is required"))?;
        check_account_name(&name).map_err(|e| fail("invalidValue", format!("userName: {e}")))?;
        let active = input.active.unwrap_or(true);
        let org = caller.org.as_ref();
        let u = match self
            .meta
            .create_scim_user(&name, org.map(|o| o.id), &stored(&input.attrs()), !active, self.clock.now())
            .await
        {
            Err(Error::Conflict(_)) => return Err(fail("uniqueness", format!("the name {name} is taken here"))),
            r => r?,
        };
        let detail = json!({ "username": name, "source": "scim", "active": active });
        self.audit.change(&caller.actor(), org.map(|o| o.name.as_str()), "user.create", detail).await;
        self.done().await?;
        Ok(u.id)
    }

    /// Replaces a user's attributes; `unset_active`: `active` was removed (enable, show none).
    async fn replace_user(
        &self,
        caller: &Caller,
        w: &World,
        id: &str,
        input: UserIn,
        unset_active: bool,
    ) -> ScimResult<()> {
        let u = self.visible_user(w, id)?;
        match &input.user_name {
            Some(n) if n.eq_ignore_ascii_case(&u.username) => {}
            Some(n) => {
                return Err(fail(
                    "mutability",
                    format!("userName cannot change from {} to {n}: it is the account's namespace", u.username),
                ));
            }
            None => return Err(fail("invalidValue", "userName is required")),
        }
        let org = w.user_attrs.get(&u.id).and_then(|(o, _)| *o);
        self.meta.put_scim_user(u.id, org, &stored(&input.attrs()), self.clock.now()).await?;
        // An absent `active` leaves the account as it is: a PUT never re-enables by omission.
        if let Some(active) = input.active.or(unset_active.then_some(true))
            && active == u.disabled
        {
            self.set_active(caller, u, active).await?;
        }
        self.done().await
    }

    /// Enables or deactivates an account; deactivation ends its sessions and revokes its tokens.
    async fn set_active(&self, caller: &Caller, u: &User, active: bool) -> ScimResult<()> {
        self.meta.set_user_disabled(u.id, !active).await?;
        let org = caller.org.as_ref().map(|o| o.name.as_str());
        if active {
            self.audit.change(&caller.actor(), org, "user.enable", json!({ "username": u.username })).await;
        } else {
            self.meta.delete_user_sessions(u.id).await?;
            let revoked = self.meta.delete_user_tokens(u.id).await?;
            let detail = json!({ "username": u.username, "revoked_tokens": revoked });
            self.audit.change(&caller.actor(), org, "user.disable", detail).await;
        }
        Ok(())
    }

    /// The org and team a group's displayName names: `<org>:<team>`, or `<team>` of the token's org.
    async fn group_target(&self, caller: &Caller, display: &str) -> ScimResult<(crate::model::Org, String)> {
        let (org, team) = match (display.split_once(':'), &caller.org) {
            (Some((o, _)), Some(mine)) if o != mine.name => {
                return Err(fail("invalidValue", format!("this token provisions {} only, not {o}", mine.name)));
            }
            (Some((o, t)), _) => {
                let org = self
                    .meta
                    .org_by_name(o)
                    .await?
                    .ok_or_else(|| fail("invalidValue", format!("no organization {o}")))?;
                (org, t.to_owned())
            }
            (None, Some(mine)) => (mine.clone(), display.to_owned()),
            (None, None) => return Err(fail("invalidValue", format!("name the group <org>:<team>, not {display}"))),
        };
        check_account_name(&team).map_err(|e| fail("invalidValue", format!("the team in displayName: {e}")))?;
        Ok((org, team))
    }

    async fn create_group(&self, caller: &Caller, input: GroupIn) -> ScimResult<i64> {
        let display = input.display_name.clone().ok_or_else(|| fail("invalidValue", "displayName is required"))?;
        let (org, team) = self.group_target(caller, &display).await?;
        let w = self.world(caller).await?;
        let wanted = Self::wanted_members(&w, &input.members)?;
        let t = match self.meta.create_team(org.id, &team).await {
            Err(Error::Conflict(_)) => return Err(fail("uniqueness", format!("{org}:{team} exists", org = org.name))),
            r => r?,
        };
        self.audit.change(&caller.actor(), Some(&org.name), "team.create", json!({ "team": team })).await;
        let attrs = GroupAttrs { display_name: &display, external_id: input.external_id.as_deref() };
        self.meta.put_scim_group(t.id, &stored(&attrs), self.clock.now()).await?;
        self.sync_members(caller, &w, &t, &org.name, &wanted).await?;
        self.done().await?;
        Ok(t.id)
    }

    async fn replace_group(&self, caller: &Caller, w: &World, id: &str, input: GroupIn) -> ScimResult<()> {
        let (t, org) = self.visible_team(w, id)?;
        let current = Self::group_name(w, t, org);
        match &input.display_name {
            Some(d) if d.eq_ignore_ascii_case(&current) || *d == format!("{org}:{}", t.name) => {}
            Some(d) => return Err(fail("mutability", format!("displayName cannot change from {current} to {d}"))),
            None => return Err(fail("invalidValue", "displayName is required")),
        }
        let wanted = Self::wanted_members(w, &input.members)?;
        let attrs = GroupAttrs { display_name: &current, external_id: input.external_id.as_deref() };
        self.meta.put_scim_group(t.id, &stored(&attrs), self.clock.now()).await?;
        self.sync_members(caller, w, t, org, &wanted).await?;
        self.done().await
    }

    /// The account ids a members list names; each must be an account this token sees.
    fn wanted_members(w: &World, members: &[MemberIn]) -> ScimResult<Vec<i64>> {
        let mut out = Vec::new();
        for m in members {
            if m.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("Group")) {
                return Err(fail("invalidValue", "members are users: groups do not nest here"));
            }
            let id = Kind::User.parse_id(&m.value);
            let u = w.users.iter().find(|u| Some(u.id) == id);
            let u = u.ok_or_else(|| fail("invalidValue", format!("members: no User {}", m.value)))?;
            if !out.contains(&u.id) {
                out.push(u.id);
            }
        }
        Ok(out)
    }

    /// Makes the team's members among the accounts this token sees exactly `wanted`.
    async fn sync_members(&self, caller: &Caller, w: &World, t: &Team, org: &str, wanted: &[i64]) -> ScimResult<()> {
        let actor = caller.actor();
        // Nothing from outside makes an owner unless the org opted into exactly that.
        let adds = w.users.iter().any(|u| wanted.contains(&u.id) && !w.members.contains(&(t.id, u.id)));
        if t.name == OWNERS_TEAM
            && adds
            && !crate::sso::delegations(self.meta.as_ref()).await?.get(org).is_some_and(|d| d.owners)
        {
            return Err(fail(
                "mutability",
                format!(
                    "{org} did not let its directory make owners: an owner of {org} can turn on \
                     settings.directory.owners"
                ),
            ));
        }
        for u in &w.users {
            let (is, want) = (w.members.contains(&(t.id, u.id)), wanted.contains(&u.id));
            let detail = json!({ "team": t.name, "username": u.username });
            if want && !is {
                self.meta.add_member(t.id, u.id).await?;
                self.audit.change(&actor, Some(org), "team.member.add", detail).await;
            } else if is && !want {
                match self.meta.remove_member(t.id, u.id).await {
                    Err(Error::Conflict(m)) => return Err(Failure { error: Error::Conflict(m), scim_type: None }),
                    r => r?,
                };
                self.audit.change(&actor, Some(org), "team.member.remove", detail).await;
            }
        }
        Ok(())
    }
}
