//! `ScimStore` of the in-memory adapter (as `store/src/sql/scim.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl ScimStore for MemoryMeta {
    async fn create_scim_token(
        &self,
        org_id: Option<i64>,
        name: &str,
        token_hash: &str,
        created_by: &str,
        now: i64,
    ) -> Result<ScimToken> {
        self.with(|s| {
            if s.scim_tokens.values().any(|(_, h)| h == token_hash) {
                return Err(Error::Conflict("already exists".into()));
            }
            let id = s.id();
            let t = ScimToken {
                id,
                org_id,
                name: name.into(),
                created_by: created_by.into(),
                created_at: now,
                last_used_at: None,
            };
            s.scim_tokens.insert(id, (t.clone(), token_hash.into()));
            Ok(t)
        })
    }

    async fn use_scim_token(&self, token_hash: &str, now: i64) -> Result<Option<ScimToken>> {
        self.with(|s| {
            Ok(s.scim_tokens.values_mut().find(|(_, h)| h == token_hash).map(|(t, _)| {
                t.last_used_at = Some(now);
                t.clone()
            }))
        })
    }

    async fn list_scim_tokens(&self, org_id: Option<i64>) -> Result<Vec<ScimToken>> {
        self.with(|s| {
            Ok(s.scim_tokens
                .values()
                .filter(|(t, _)| org_id.is_none() || t.org_id == org_id)
                .map(|(t, _)| t.clone())
                .collect())
        })
    }

    async fn delete_scim_token(&self, id: i64) -> Result<bool> {
        self.with(|s| Ok(s.scim_tokens.remove(&id).is_some()))
    }

    async fn create_scim_user(
        &self,
        username: &str,
        org_id: Option<i64>,
        attrs: &str,
        disabled: bool,
        now: i64,
    ) -> Result<User> {
        self.with(|s| {
            if s.name_taken(username) {
                return Err(Error::Conflict(format!("the name {username} is taken")));
            }
            let id = s.id();
            let u = User {
                id,
                username: username.into(),
                password_hash: "!".into(),
                is_admin: false,
                created_at: now,
                disabled,
                source: AccountSource::Scim,
                external_id: None,
            };
            s.users.insert(id, u.clone());
            s.scim_users.insert(id, (org_id, attrs.into()));
            s.changed();
            Ok(u)
        })
    }

    async fn scim_users(&self) -> Result<Vec<ScimUserRow>> {
        self.with(|s| {
            Ok(s.scim_users
                .iter()
                .map(|(id, (org_id, attrs))| ScimUserRow { user_id: *id, org_id: *org_id, attrs: attrs.clone() })
                .collect())
        })
    }

    async fn put_scim_user(&self, user_id: i64, org_id: Option<i64>, attrs: &str, _now: i64) -> Result<()> {
        self.with(|s| {
            if s.users.contains_key(&user_id) {
                s.scim_users.insert(user_id, (org_id, attrs.into()));
            }
            Ok(())
        })
    }

    async fn scim_groups(&self) -> Result<Vec<ScimGroupRow>> {
        self.with(|s| Ok(s.scim_groups.iter().map(|(id, a)| ScimGroupRow { team_id: *id, attrs: a.clone() }).collect()))
    }

    async fn put_scim_group(&self, team_id: i64, attrs: &str, _now: i64) -> Result<()> {
        self.with(|s| {
            if s.teams.contains_key(&team_id) {
                s.scim_groups.insert(team_id, attrs.into());
            }
            Ok(())
        })
    }

    async fn delete_user_tokens(&self, user_id: i64) -> Result<u64> {
        self.with(|s| {
            let n = s.tokens.len();
            s.tokens.retain(|_, (t, _)| t.user_id != user_id);
            Ok((n - s.tokens.len()) as u64)
        })
    }
}
