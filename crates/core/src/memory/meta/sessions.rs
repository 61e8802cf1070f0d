//! `SessionStore` of the in-memory adapter (as `store/src/sql/sessions.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl SessionStore for MemoryMeta {
    async fn create_session(&self, id_hash: &str, user_id: i64, csrf: &str, _now: i64, expires_at: i64) -> Result<()> {
        self.with(|s| {
            s.sessions.insert(id_hash.into(), (user_id, csrf.into(), expires_at));
            Ok(())
        })
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
        self.with(|s| {
            Ok(s.sessions
                .get(id_hash)
                .filter(|(_, _, exp)| *exp > now)
                .and_then(|(u, csrf, exp)| Some(Session { user: s.user(*u)?, csrf: csrf.clone(), expires_at: *exp })))
        })
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.with(|s| {
            s.sessions.remove(id_hash);
            Ok(())
        })
    }

    async fn delete_user_sessions(&self, user_id: i64) -> Result<()> {
        self.with(|s| {
            s.sessions.retain(|_, (u, _, _)| *u != user_id);
            Ok(())
        })
    }

    async fn prune_sessions(&self, now: i64) -> Result<u64> {
        self.with(|s| {
            let n = s.sessions.len();
            s.sessions.retain(|_, (_, _, exp)| *exp > now);
            Ok((n - s.sessions.len()) as u64)
        })
    }

    async fn use_once(&self, key_hash: &str, now: i64, expires_at: i64) -> Result<bool> {
        self.with(|s| {
            s.used_once.retain(|_, exp| *exp > now);
            Ok(s.used_once.insert(key_hash.to_owned(), expires_at).is_none())
        })
    }
}
