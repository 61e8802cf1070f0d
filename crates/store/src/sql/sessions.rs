//! Console sessions (`SessionStore`), kept under the hash of their secret.

use portcullis_core::model::{Session, User};

/// A session joined with its user.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: i64,
    username: String,
    password_hash: String,
    is_admin: bool,
    created_at: i64,
    disabled: bool,
    #[sqlx(try_from = "String")]
    source: portcullis_core::model::AccountSource,
    external_id: Option<String>,
    csrf: String,
    expires_at: i64,
}

pub(crate) fn session(r: SessionRow) -> Session {
    Session {
        user: User {
            id: r.id,
            username: r.username,
            password_hash: r.password_hash,
            is_admin: r.is_admin,
            created_at: r.created_at,
            disabled: r.disabled,
            source: r.source,
            external_id: r.external_id,
        },
        csrf: r.csrf,
        expires_at: r.expires_at,
    }
}

macro_rules! sessions_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::SessionStore, $store, {
            async fn create_session(&self, id_hash: &str, user_id: i64, csrf: &str, now: i64, expires_at: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id_hash)
                .bind(user_id)
                .bind(csrf)
                .bind(now)
                .bind(expires_at)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
                let r: Option<SessionRow> = sqlx::query_as(
                    "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at, u.disabled, u.source, u.external_id, s.csrf, s.expires_at \
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1 AND s.expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
                Ok(r.map(session))
            }

            async fn delete_session(&self, id_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn delete_user_sessions(&self, user_id: i64) -> Result<()> {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn prune_sessions(&self, now: i64) -> Result<u64> {
                let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn use_once(&self, key_hash: &str, now: i64, expires_at: i64) -> Result<bool> {
                sqlx::query("DELETE FROM used_once WHERE expires_at <= $1").bind(now).execute(&self.write).await.map_err(db)?;
                let r = sqlx::query("INSERT INTO used_once (key_hash, expires_at) VALUES ($1, $2) ON CONFLICT (key_hash) DO NOTHING")
                    .bind(key_hash)
                    .bind(expires_at)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() == 1)
            }
        });
    };
}
