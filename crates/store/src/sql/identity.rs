//! Users, access tokens and sign-in failures (`IdentityStore`).

use portcullis_core::model::{AccessToken, AccountSource, LoginFailures, TokenKind, TokenScope, User};

/// A row of `users`.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    password_hash: String,
    is_admin: bool,
    created_at: i64,
    disabled: bool,
    #[sqlx(try_from = "String")]
    source: AccountSource,
    external_id: Option<String>,
}

pub(crate) fn user(r: UserRow) -> User {
    User {
        id: r.id,
        username: r.username,
        password_hash: r.password_hash,
        is_admin: r.is_admin,
        created_at: r.created_at,
        disabled: r.disabled,
        source: r.source,
        external_id: r.external_id,
    }
}

/// The columns of [`UserRow`], for `SELECT` and `RETURNING`.
macro_rules! user_cols {
    () => {
        "id, username, password_hash, is_admin, created_at, disabled, source, external_id"
    };
}

/// A row of `access_tokens` (without the hash).
#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: i64,
    user_id: i64,
    label: String,
    #[sqlx(try_from = "String")]
    kind: TokenKind,
    scope: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

pub(crate) fn token(r: TokenRow) -> AccessToken {
    AccessToken {
        id: r.id,
        user_id: r.user_id,
        label: r.label,
        kind: r.kind,
        scope: TokenScope::parse(&r.scope).unwrap_or(TokenScope::Read),
        created_at: r.created_at,
        expires_at: r.expires_at,
        last_used_at: r.last_used_at,
    }
}

macro_rules! token_cols {
    () => {
        "id, user_id, label, kind, scope, created_at, expires_at, last_used_at"
    };
}

/// The sign-in failures counted under one key.
#[derive(sqlx::FromRow)]
pub(crate) struct FailureRow {
    key: String,
    window_start: i64,
    failures: i64,
    last_at: i64,
}

pub(crate) fn failures(r: FailureRow) -> LoginFailures {
    LoginFailures { key: r.key, window_start: r.window_start, failures: r.failures, last_at: r.last_at }
}

macro_rules! identity_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::IdentityStore, $store, {
            async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool, now: i64) -> Result<User> {
                let mut tx = self.write.begin().await.map_err(db)?;
                if Self::name_taken(&mut tx, username).await? {
                    return Err(Error::Conflict(format!("the name {username} is taken")));
                }
                let r: UserRow = sqlx::query_as(concat!(
                    "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING ",
                    user_cols!()
                ))
                .bind(username)
                .bind(password_hash)
                .bind(is_admin)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(user(r))
            }

            async fn create_external_user(
                &self,
                username: &str,
                source: AccountSource,
                external_id: &str,
                now: i64,
            ) -> Result<User> {
                let mut tx = self.write.begin().await.map_err(db)?;
                if Self::name_taken(&mut tx, username).await? {
                    return Err(Error::Conflict(format!("the name {username} is taken")));
                }
                // "!" is no argon2 hash: no password ever matches it.
                let r: UserRow = sqlx::query_as(concat!(
                    "INSERT INTO users (username, password_hash, is_admin, created_at, source, external_id) \
                     VALUES ($1, '!', FALSE, $2, $3, $4) RETURNING ",
                    user_cols!()
                ))
                .bind(username)
                .bind(now)
                .bind(source.as_str())
                .bind(external_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(user(r))
            }

            async fn bind_external_id(&self, user_id: i64, external_id: &str) -> Result<bool> {
                let r = sqlx::query("UPDATE users SET external_id = $1 WHERE id = $2 AND external_id IS NULL")
                    .bind(external_id)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() == 1)
            }

            async fn external_user(&self, source: AccountSource, external_id: &str) -> Result<Option<User>> {
                let r: Option<UserRow> =
                    sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE source = $1 AND external_id = $2"))
                        .bind(source.as_str())
                        .bind(external_id)
                        .fetch_optional(&self.write)
                        .await
                        .map_err(db)?;
                Ok(r.map(user))
            }

            async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
                let r: Option<UserRow> = sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(user))
            }

            async fn list_users(&self) -> Result<Vec<User>> {
                let r: Vec<UserRow> = sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users ORDER BY username"))
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(user).collect())
            }

            async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn count_users(&self) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&self.read).await.map_err(db)?;
                Ok(n)
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
                let r: TokenRow = sqlx::query_as(concat!(
                    "INSERT INTO access_tokens (user_id, label, kind, token_hash, scope, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
                    token_cols!()
                ))
                .bind(user_id)
                .bind(label)
                .bind(kind.as_str())
                .bind(token_hash)
                .bind(scope.as_str())
                .bind(now)
                .bind(expires_at)
                .fetch_one(&self.write)
                .await
                .map_err(db)?;
                Ok(token(r))
            }

            async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenHolder>> {
                let r: Option<TokenRow> =
                    sqlx::query_as(concat!("SELECT ", token_cols!(), " FROM access_tokens WHERE token_hash = $1"))
                        .bind(token_hash)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                let Some(t) = r.map(token) else { return Ok(None) };
                let u: Option<UserRow> = sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
                    .bind(t.user_id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(u.map(|u| TokenHolder { token: t, user: user(u) }))
            }

            async fn list_tokens(&self, user_id: i64) -> Result<Vec<AccessToken>> {
                let r: Vec<TokenRow> =
                    sqlx::query_as(concat!("SELECT ", token_cols!(), " FROM access_tokens WHERE user_id = $1 ORDER BY id"))
                        .bind(user_id)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(token).collect())
            }

            async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
                let r = sqlx::query("DELETE FROM access_tokens WHERE id = $1 AND user_id = $2")
                    .bind(token_id)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn touch_token(&self, token_id: i64, now: i64) -> Result<()> {
                sqlx::query("UPDATE access_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(token_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn login_failures(&self, keys: &[String]) -> Result<Vec<LoginFailures>> {
                let mut out = Vec::new();
                let mut c = self.read.acquire().await.map_err(db)?;
                for key in keys {
                    let r: Option<FailureRow> =
                        sqlx::query_as("SELECT key, window_start, failures, last_at FROM login_failures WHERE key = $1")
                            .bind(key)
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(db)?;
                    out.extend(r.map(failures));
                }
                Ok(out)
            }

            async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO login_failures (key, window_start, failures, last_at) VALUES ($1, $2, 1, $2) ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN login_failures.window_start > $2 - $3 THEN login_failures.failures + 1 ELSE 1 END, \
                     window_start = CASE WHEN login_failures.window_start > $2 - $3 THEN login_failures.window_start ELSE $2 END, \
                     last_at = $2",
                )
                .bind(key)
                .bind(now)
                .bind(window)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn clear_login_failures(&self, key: &str, prefix: bool) -> Result<u64> {
                let r = if prefix {
                    sqlx::query("DELETE FROM login_failures WHERE substr(key, 1, length($1)) = $1")
                } else {
                    sqlx::query("DELETE FROM login_failures WHERE key = $1")
                }
                .bind(key)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool> {
                let r = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                    .bind(disabled)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_user(&self, user_id: i64) -> Result<bool> {
                let r = sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(&self.write).await.map_err(db)?;
                Ok(r.rows_affected() > 0)
            }
        });
    };
}
