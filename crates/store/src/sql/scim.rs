//! SCIM provisioning (`ScimStore`): tokens kept as hashes, and the SCIM attributes of the
//! users and teams an identity provider manages.

use portcullis_core::model::{ScimToken, ScimUserRow};

/// A row of `scim_tokens` (without the hash).
#[derive(sqlx::FromRow)]
pub(crate) struct ScimTokenRow {
    id: i64,
    org_id: Option<i64>,
    name: String,
    created_by: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

pub(crate) fn scim_token(r: ScimTokenRow) -> ScimToken {
    ScimToken {
        id: r.id,
        org_id: r.org_id,
        name: r.name,
        created_by: r.created_by,
        created_at: r.created_at,
        last_used_at: r.last_used_at,
    }
}

macro_rules! scim_token_cols {
    () => {
        "id, org_id, name, created_by, created_at, last_used_at"
    };
}

/// A row of `scim_users`.
#[derive(sqlx::FromRow)]
pub(crate) struct ScimUserDbRow {
    user_id: i64,
    org_id: Option<i64>,
    attrs: String,
}

pub(crate) fn scim_user(r: ScimUserDbRow) -> ScimUserRow {
    ScimUserRow { user_id: r.user_id, org_id: r.org_id, attrs: r.attrs }
}

macro_rules! scim_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::ScimStore, $store, {
            async fn create_scim_token(
                &self,
                org_id: Option<i64>,
                name: &str,
                token_hash: &str,
                created_by: &str,
                now: i64,
            ) -> Result<ScimToken> {
                let r: ScimTokenRow = sqlx::query_as(concat!(
                    "INSERT INTO scim_tokens (org_id, name, token_hash, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING ",
                    scim_token_cols!()
                ))
                .bind(org_id)
                .bind(name)
                .bind(token_hash)
                .bind(created_by)
                .bind(now)
                .fetch_one(&self.write)
                .await
                .map_err(db)?;
                Ok(scim_token(r))
            }

            async fn use_scim_token(&self, token_hash: &str, now: i64) -> Result<Option<ScimToken>> {
                let r: Option<ScimTokenRow> = sqlx::query_as(concat!(
                    "UPDATE scim_tokens SET last_used_at = $1 WHERE token_hash = $2 RETURNING ",
                    scim_token_cols!()
                ))
                .bind(now)
                .bind(token_hash)
                .fetch_optional(&self.write)
                .await
                .map_err(db)?;
                Ok(r.map(scim_token))
            }

            async fn list_scim_tokens(&self, org_id: Option<i64>) -> Result<Vec<ScimToken>> {
                let r: Vec<ScimTokenRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    scim_token_cols!(),
                    " FROM scim_tokens WHERE CAST($1 AS BIGINT) IS NULL OR org_id = $1 ORDER BY id"
                ))
                .bind(org_id)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(r.into_iter().map(scim_token).collect())
            }

            async fn delete_scim_token(&self, id: i64) -> Result<bool> {
                let r = sqlx::query("DELETE FROM scim_tokens WHERE id = $1")
                    .bind(id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn create_scim_user(
                &self,
                username: &str,
                org_id: Option<i64>,
                attrs: &str,
                disabled: bool,
                now: i64,
            ) -> Result<User> {
                let mut tx = self.write.begin().await.map_err(db)?;
                if Self::name_taken(&mut tx, username).await? {
                    return Err(Error::Conflict(format!("the name {username} is taken")));
                }
                // "!" is no argon2 hash: no password ever matches it.
                let r: UserRow = sqlx::query_as(concat!(
                    "INSERT INTO users (username, password_hash, is_admin, created_at, source, disabled) \
                     VALUES ($1, '!', FALSE, $2, 'scim', $3) RETURNING ",
                    user_cols!()
                ))
                .bind(username)
                .bind(now)
                .bind(disabled)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                let u = user(r);
                sqlx::query("INSERT INTO scim_users (user_id, org_id, attrs, updated_at) VALUES ($1, $2, $3, $4)")
                    .bind(u.id)
                    .bind(org_id)
                    .bind(attrs)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(u)
            }

            async fn scim_users(&self) -> Result<Vec<ScimUserRow>> {
                let r: Vec<ScimUserDbRow> =
                    sqlx::query_as("SELECT user_id, org_id, attrs FROM scim_users ORDER BY user_id")
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(scim_user).collect())
            }

            async fn put_scim_user(&self, user_id: i64, org_id: Option<i64>, attrs: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO scim_users (user_id, org_id, attrs, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id) DO UPDATE SET org_id = $2, attrs = $3, updated_at = $4",
                )
                .bind(user_id)
                .bind(org_id)
                .bind(attrs)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn scim_groups(&self) -> Result<Vec<ScimGroupRow>> {
                let r: Vec<(i64, String)> = sqlx::query_as("SELECT team_id, attrs FROM scim_groups ORDER BY team_id")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(team_id, attrs)| ScimGroupRow { team_id, attrs }).collect())
            }

            async fn put_scim_group(&self, team_id: i64, attrs: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO scim_groups (team_id, attrs, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (team_id) DO UPDATE SET attrs = $2, updated_at = $3",
                )
                .bind(team_id)
                .bind(attrs)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn delete_user_tokens(&self, user_id: i64) -> Result<u64> {
                let r = sqlx::query("DELETE FROM access_tokens WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected())
            }
        });
    };
}
