//! `IdentityStore` of the in-memory adapter (as `store/src/sql/identity.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl IdentityStore for MemoryMeta {
    async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool, now: i64) -> Result<User> {
        self.with(|s| {
            if s.name_taken(username) {
                return Err(Error::Conflict(format!("the name {username} is taken")));
            }
            let id = s.id();
            let u = User {
                id,
                username: username.into(),
                password_hash: password_hash.into(),
                is_admin,
                created_at: now,
                disabled: false,
                source: AccountSource::Local,
                external_id: None,
            };
            s.users.insert(id, u.clone());
            s.changed();
            Ok(u)
        })
    }

    async fn create_external_user(
        &self,
        username: &str,
        source: AccountSource,
        external_id: &str,
        now: i64,
    ) -> Result<User> {
        self.with(|s| {
            if s.name_taken(username) {
                return Err(Error::Conflict(format!("the name {username} is taken")));
            }
            let key = (source, external_id.to_owned());
            if s.external.contains_key(&key) {
                return Err(Error::Conflict(format!("{source} account {external_id} exists")));
            }
            let id = s.id();
            let u = User {
                id,
                username: username.into(),
                password_hash: "!".into(),
                is_admin: false,
                created_at: now,
                disabled: false,
                source,
                external_id: Some(external_id.into()),
            };
            s.users.insert(id, u.clone());
            s.external.insert(key, id);
            s.changed();
            Ok(u)
        })
    }

    async fn bind_external_id(&self, user_id: i64, external_id: &str) -> Result<bool> {
        self.with(|s| match s.users.get_mut(&user_id) {
            Some(u) if u.external_id.is_none() => {
                u.external_id = Some(external_id.to_owned());
                let key = (u.source, external_id.to_owned());
                s.external.insert(key, user_id);
                s.changed();
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn external_user(&self, source: AccountSource, external_id: &str) -> Result<Option<User>> {
        self.with(|s| {
            let id = s.external.get(&(source, external_id.to_owned()));
            Ok(id.and_then(|id| s.users.get(id)).cloned())
        })
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.with(|s| Ok(s.users.values().find(|u| u.username == username).cloned()))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.with(|s| {
            let mut v: Vec<User> = s.users.values().cloned().collect();
            v.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(v)
        })
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
        self.with(|s| {
            if let Some(u) = s.users.get_mut(&user_id) {
                u.password_hash = password_hash.into();
                s.changed();
            }
            Ok(())
        })
    }

    async fn count_users(&self) -> Result<i64> {
        self.with(|s| Ok(s.users.len() as i64))
    }

    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        kind: TokenKind,
        token_hash: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<AccessToken> {
        self.with(|s| {
            if s.tokens.values().any(|(_, h)| h == token_hash) {
                return Err(Error::Conflict("already exists".into()));
            }
            let id = s.id();
            let t = AccessToken {
                id,
                user_id,
                label: label.into(),
                kind,
                scope,
                created_at: now,
                expires_at,
                last_used_at: None,
            };
            s.tokens.insert(id, (t.clone(), token_hash.into()));
            Ok(t)
        })
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenHolder>> {
        self.with(|s| {
            Ok(s.tokens
                .values()
                .find(|(_, h)| h == token_hash)
                .and_then(|(t, _)| Some(TokenHolder { token: t.clone(), user: s.user(t.user_id)? })))
        })
    }

    async fn list_tokens(&self, user_id: i64) -> Result<Vec<AccessToken>> {
        self.with(|s| Ok(s.tokens.values().filter(|(t, _)| t.user_id == user_id).map(|(t, _)| t.clone()).collect()))
    }

    async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
        self.with(|s| {
            if s.tokens.get(&token_id).is_some_and(|(t, _)| t.user_id == user_id) {
                s.tokens.remove(&token_id);
                return Ok(true);
            }
            Ok(false)
        })
    }

    async fn touch_token(&self, token_id: i64, now: i64) -> Result<()> {
        self.with(|s| {
            if let Some((t, _)) = s.tokens.get_mut(&token_id) {
                t.last_used_at = Some(now);
            }
            Ok(())
        })
    }

    async fn login_failures(&self, keys: &[String]) -> Result<Vec<LoginFailures>> {
        self.with(|s| {
            Ok(keys
                .iter()
                .filter_map(|k| {
                    s.failures.get(k).map(|(w, f, l)| LoginFailures {
                        key: k.clone(),
                        window_start: *w,
                        failures: *f,
                        last_at: *l,
                    })
                })
                .collect())
        })
    }

    async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<()> {
        self.with(|s| {
            let e = s.failures.entry(key.into()).or_insert((now, 0, now));
            if e.0 > now - window {
                e.1 += 1;
            } else {
                *e = (now, 1, now);
            }
            e.2 = now;
            Ok(())
        })
    }

    async fn clear_login_failures(&self, key: &str, prefix: bool) -> Result<u64> {
        self.with(|s| {
            let n = s.failures.len();
            s.failures.retain(|k, _| if prefix { !k.starts_with(key) } else { k != key });
            Ok((n - s.failures.len()) as u64)
        })
    }

    async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool> {
        self.with(|s| {
            let Some(u) = s.users.get_mut(&user_id) else { return Ok(false) };
            u.disabled = disabled;
            s.changed();
            Ok(true)
        })
    }

    async fn delete_user(&self, user_id: i64) -> Result<bool> {
        self.with(|s| {
            if s.users.remove(&user_id).is_none() {
                return Ok(false);
            }
            s.tokens.retain(|_, (t, _)| t.user_id != user_id);
            s.members.retain(|(_, u)| *u != user_id);
            s.sessions.retain(|_, (u, _, _)| *u != user_id);
            s.scim_users.remove(&user_id);
            s.changed();
            Ok(true)
        })
    }
}
