//! Identity: users, passwords (argon2id), access and refresh tokens (random secrets stored as
//! SHA-256 hashes, checked by one lookup), sign-in throttling, and the directory refresh.
//!
//! argon2 costs tens of milliseconds, so a verified (user, password) pair is remembered for a
//! minute and at most two verifications run at once; access tokens never touch argon2.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::audit::Audit;
use crate::authz::{Directory, Principal, Snapshot};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{AccessToken, TokenScope, User};
use crate::ports::MetaStore;

/// Prefix of personal access tokens.
pub const PAT_PREFIX: &str = "pcl_";
/// Prefix of refresh tokens handed out by `/token`.
pub const REFRESH_PREFIX: &str = "pcr_";
/// How long a refresh token lives.
pub const REFRESH_TTL_SECS: i64 = 90 * 24 * 3600;

const VERIFIED_TTL_SECS: i64 = 60;
const TOUCH_EVERY_SECS: i64 = 60;

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Storage(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Storage(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A valid argon2id hash of nothing in particular, verified against for unknown user names.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("portcullis-dummy").unwrap_or_default())
}

/// SHA-256 hex of a token secret: what is stored and looked up.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret with a recognisable prefix.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// Checks that a new password is acceptable.
pub fn check_password_strength(p: &str) -> Result<()> {
    if p.chars().count() < 8 {
        return Err(Error::Invalid("password must have at least 8 characters".into()));
    }
    Ok(())
}

/// Names no user or organization may take: Docker Hub's official namespace and our routes.
pub const RESERVED_NAMES: &[&str] =
    &["library", "v2", "api", "token", "healthz", "readyz", "metrics", "static", "login", "logout", "localhost"];

/// Checks a user or organization name: a single lower-case path component of 2 to 64
/// characters without `.` (a dotted first component would be read as a registry host).
pub fn check_account_name(n: &str) -> Result<()> {
    if n.len() < 2 || n.len() > 64 || n.contains('.') || !oci::name::is_valid_component(n) {
        return Err(Error::Invalid(format!(
            "invalid name {n:?}: 2-64 characters of a-z, 0-9, and single _ or - between them"
        )));
    }
    if RESERVED_NAMES.contains(&n) {
        return Err(Error::Conflict(format!("the name {n:?} is reserved")));
    }
    Ok(())
}

/// Refuses anyone but the instance administrator.
pub fn admin_only(who: &Principal, what: &str) -> Result<()> {
    if who.is_admin { Ok(()) } else { Err(Error::Denied(format!("only the instance administrator may {what}"))) }
}

/// Failed sign-ins counted per user and per client address in fixed windows. The counts live
/// in the database, so that an attacker who spreads attempts over replicas meets one limit.
pub struct LoginThrottle;

impl LoginThrottle {
    pub const WINDOW_SECS: i64 = 300;
    pub const MAX_PER_USER: u32 = 10;
    pub const MAX_PER_CLIENT: u32 = 30;

    fn keys(user: &str, client: &str) -> [String; 2] {
        [format!("u:{user}"), format!("c:{client}")]
    }

    /// Seconds to wait when a (key, window start, failures) row is over `max` at `now`.
    fn over(rows: &[(String, i64, i64)], key: &str, max: u32, now: i64) -> Option<u64> {
        let (_, start, count) = rows.iter().find(|r| r.0 == key)?;
        (now - start < Self::WINDOW_SECS && *count >= i64::from(max))
            .then(|| (start + Self::WINDOW_SECS - now).max(1) as u64)
    }

    /// `RateLimited` when the user or the client has failed too often recently.
    pub async fn check(meta: &dyn MetaStore, user: &str, client: &str, now: i64) -> Result<()> {
        let [u, c] = Self::keys(user, client);
        let rows = meta.login_failures(&u, &c).await?;
        match Self::over(&rows, &u, Self::MAX_PER_USER, now).max(Self::over(&rows, &c, Self::MAX_PER_CLIENT, now)) {
            Some(retry_after) => Err(Error::RateLimited { retry_after }),
            None => Ok(()),
        }
    }

    pub async fn record_failure(meta: &dyn MetaStore, user: &str, client: &str, now: i64) -> Result<()> {
        for key in Self::keys(user, client) {
            meta.record_login_failure(&key, now, Self::WINDOW_SECS).await?;
        }
        Ok(())
    }
}

/// What the first start did about the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// There were users already: nothing was done.
    HadUsers,
    /// `admin` was created, with this generated password when none was given.
    Created { generated: Option<String> },
}

/// The identity service.
pub struct Identity {
    meta: Arc<dyn MetaStore>,
    clock: Arc<dyn Clock>,
    audit: Arc<Audit>,
    directory: Directory,
    verified: Mutex<HashMap<String, i64>>,
    touched: Mutex<HashMap<i64, i64>>,
    argon_slots: Semaphore,
}

impl Identity {
    pub fn new(meta: Arc<dyn MetaStore>, directory: Directory, clock: Arc<dyn Clock>, audit: Arc<Audit>) -> Identity {
        Identity {
            meta,
            clock,
            audit,
            directory,
            verified: Mutex::default(),
            touched: Mutex::default(),
            argon_slots: Semaphore::new(2),
        }
    }

    /// The clock every service shares.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Reloads the authorization snapshot; call after any write to users, orgs, teams or repos.
    pub async fn refresh_directory(&self) -> Result<()> {
        let rows = self.meta.load_directory().await?;
        self.directory.replace(Snapshot::build(rows));
        Ok(())
    }

    fn principal(user: &User, scope: Option<TokenScope>) -> Principal {
        Principal { id: user.id, username: user.username.clone(), is_admin: user.is_admin, scope }
    }

    /// Signs in with a username and a password or access token. `client` is the caller's
    /// address, for throttling.
    pub async fn authenticate(&self, username: &str, secret: &str, client: &str) -> Result<Principal> {
        let now = self.clock.now();
        LoginThrottle::check(self.meta.as_ref(), username, client, now).await?;
        let result = if secret.starts_with(PAT_PREFIX) {
            self.check_token(secret, now).await.and_then(|p| {
                if p.username == username {
                    Ok(p)
                } else {
                    Err(Error::Unauthenticated("invalid username or token".into()))
                }
            })
        } else {
            self.check_password(username, secret, now).await
        };
        if matches!(result, Err(Error::Unauthenticated(_))) {
            LoginThrottle::record_failure(self.meta.as_ref(), username, client, now).await?;
        }
        result
    }

    /// Signs in with a bare token (API `Bearer <token>`, OAuth2 refresh grant).
    pub async fn authenticate_token(&self, secret: &str, client: &str) -> Result<Principal> {
        let now = self.clock.now();
        LoginThrottle::check(self.meta.as_ref(), "", client, now).await?;
        let r = self.check_token(secret, now).await;
        if matches!(r, Err(Error::Unauthenticated(_))) {
            LoginThrottle::record_failure(self.meta.as_ref(), "", client, now).await?;
        }
        r
    }

    async fn check_password(&self, username: &str, password: &str, now: i64) -> Result<Principal> {
        let bad = || Error::Unauthenticated("invalid username or password".into());
        let Some(user) = self.meta.user_by_name(username).await? else {
            // Spend comparable time so that unknown names are not told apart by timing.
            let _slot = self.argon_slots.acquire().await;
            let _ = tokio::task::spawn_blocking(|| verify_password("x", dummy_hash())).await;
            return Err(bad());
        };
        let key = token_hash(&format!("{}\0{}\0{}", user.username, password, user.password_hash));
        let cached = self.verified.lock().ok().and_then(|m| m.get(&key).copied()).is_some_and(|exp| exp > now);
        if !cached {
            let _slot = self.argon_slots.acquire().await.map_err(|e| Error::Storage(e.to_string()))?;
            let (p, h) = (password.to_owned(), user.password_hash.clone());
            let ok = tokio::task::spawn_blocking(move || verify_password(&p, &h))
                .await
                .map_err(|e| Error::Storage(e.to_string()))?;
            if !ok {
                return Err(bad());
            }
            if let Ok(mut m) = self.verified.lock() {
                if m.len() > 10_000 {
                    m.retain(|_, exp| *exp > now);
                }
                m.insert(key, now + VERIFIED_TTL_SECS);
            }
        }
        Ok(Self::principal(&user, None))
    }

    async fn check_token(&self, secret: &str, now: i64) -> Result<Principal> {
        let bad = || Error::Unauthenticated("invalid or expired token".into());
        let Some((token, user)) = self.meta.token_by_hash(&token_hash(secret)).await? else {
            return Err(bad());
        };
        if token.expires_at.is_some_and(|e| e <= now) {
            return Err(bad());
        }
        let due = self
            .touched
            .lock()
            .map(|mut m| {
                let last = m.get(&token.id).copied().unwrap_or(0);
                let due = now - last >= TOUCH_EVERY_SECS;
                if due {
                    m.insert(token.id, now);
                }
                due
            })
            .unwrap_or(false);
        if due {
            self.meta.touch_token(token.id, now).await?;
        }
        Ok(Self::principal(&user, Some(token.scope)))
    }

    /// Creates a user (instance administrator only).
    pub async fn create_user(&self, who: &Principal, username: &str, password: &str, is_admin: bool) -> Result<User> {
        admin_only(who, "create users")?;
        let u = self.add_user(username, password, is_admin).await?;
        self.audit
            .change(who, None, "user.create", serde_json::json!({ "username": u.username, "admin": is_admin }))
            .await;
        Ok(u)
    }

    async fn add_user(&self, username: &str, password: &str, is_admin: bool) -> Result<User> {
        check_account_name(username)?;
        check_password_strength(password)?;
        let hash = hash_password(password)?;
        let u = self.meta.create_user(username, &hash, is_admin, self.clock.now()).await?;
        self.refresh_directory().await?;
        Ok(u)
    }

    /// Changes a password: one's own (signed in with a password, not a token) or, for the
    /// administrator, anyone's. Every console session of the user ends.
    pub async fn set_password(&self, who: &Principal, username: &str, password: &str) -> Result<()> {
        if who.username != username && !who.is_admin {
            return Err(Error::Denied("you may only change your own password".into()));
        }
        if who.scope.is_some() {
            return Err(Error::Denied("sign in with a password, not an access token, to change a password".into()));
        }
        self.reset_password(username, password).await?;
        self.audit.change(who, None, "user.password", serde_json::json!({ "username": username })).await;
        Ok(())
    }

    /// Sets a password with no signed-in principal: the operator on the server's host
    /// (`portcullis admin reset-password`), never reachable from the network.
    pub async fn reset_password(&self, username: &str, password: &str) -> Result<()> {
        check_password_strength(password)?;
        let user =
            self.meta.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
        self.meta.set_password(user.id, &hash_password(password)?).await?;
        // A new password signs the user out of every console session.
        self.meta.delete_user_sessions(user.id).await
    }

    /// Creates an access token; the secret is returned once and only its hash is kept.
    pub async fn create_token(
        &self,
        user: &Principal,
        label: &str,
        kind: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
    ) -> Result<(AccessToken, String)> {
        let label = label.trim();
        if label.is_empty() || label.len() > 100 {
            return Err(Error::Invalid("label must have 1 to 100 characters".into()));
        }
        // A read-only credential cannot mint a read-write token.
        let scope = if user.scope == Some(TokenScope::Read) { TokenScope::Read } else { scope };
        let now = self.clock.now();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Invalid("expiry must be in the future".into()));
        }
        let prefix = if kind == "refresh" { REFRESH_PREFIX } else { PAT_PREFIX };
        let secret = new_secret(prefix);
        let t = self.meta.create_token(user.id, label, kind, &token_hash(&secret), scope, expires_at, now).await?;
        Ok((t, secret))
    }

    /// Creates a personal access token for `who` (audited); the secret is returned once.
    pub async fn create_pat(
        &self,
        who: &Principal,
        label: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
    ) -> Result<(AccessToken, String)> {
        let (t, secret) = self.create_token(who, label, "pat", scope, expires_at).await?;
        self.audit
            .change(who, None, "token.create", serde_json::json!({ "id": t.id, "label": t.label, "scope": t.scope }))
            .await;
        Ok((t, secret))
    }

    pub async fn list_tokens(&self, user: &Principal) -> Result<Vec<AccessToken>> {
        self.meta.list_tokens(user.id).await
    }

    /// Revokes one of `user`'s tokens (audited).
    pub async fn delete_token(&self, user: &Principal, id: i64) -> Result<()> {
        if !self.meta.delete_token(user.id, id).await? {
            return Err(Error::NotFound(format!("no token {id}")));
        }
        self.audit.change(user, None, "token.delete", serde_json::json!({ "id": id })).await;
        Ok(())
    }

    /// Every user (instance administrator only).
    pub async fn list_users(&self, who: &Principal) -> Result<Vec<User>> {
        admin_only(who, "list users")?;
        self.meta.list_users().await
    }

    /// Creates the instance administrator `admin` when there are no users yet, with `password`
    /// or a generated one.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<Bootstrap> {
        if self.meta.count_users().await? > 0 {
            return Ok(Bootstrap::HadUsers);
        }
        let generated = password.is_none().then(|| new_secret("")[..24].to_owned());
        let pw = password.map(str::to_owned).or(generated.clone()).unwrap_or_default();
        match self.add_user("admin", &pw, true).await {
            // Another replica starting at the same time made it.
            Err(Error::Conflict(_)) => Ok(Bootstrap::HadUsers),
            r => r.map(|_| Bootstrap::Created { generated }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn throttle_windows() {
        let rows = vec![("u:bob".to_string(), 1000, 10), ("c:1.2.3.4".to_string(), 1000, 29)];
        let over = |key: &str, max: u32, now: i64| LoginThrottle::over(&rows, key, max, now);
        assert_eq!(over("u:bob", LoginThrottle::MAX_PER_USER, 1001), Some(299));
        assert_eq!(over("u:bob", LoginThrottle::MAX_PER_USER, 1000 + LoginThrottle::WINDOW_SECS), None, "expired");
        assert_eq!(over("c:1.2.3.4", LoginThrottle::MAX_PER_CLIENT, 1001), None, "one more allowed");
        assert_eq!(over("u:alice", LoginThrottle::MAX_PER_USER, 1001), None);
    }

    #[test]
    fn names() {
        assert!(check_account_name("acme").is_ok());
        assert!(check_account_name("a").is_err());
        assert!(check_account_name("Acme").is_err());
        assert!(check_account_name("a/b").is_err());
        assert!(check_account_name("docker.io").is_err());
        assert!(matches!(check_account_name("library"), Err(Error::Conflict(_))));
        assert!(check_password_strength("short").is_err());
        assert!(new_secret(PAT_PREFIX).starts_with(PAT_PREFIX));
        assert_eq!(token_hash("x").len(), 64);
    }
}
