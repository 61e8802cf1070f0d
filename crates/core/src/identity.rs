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
use crate::metrics::Metrics;
use crate::model::{AccessToken, AccountSource, AuditEntry, LoginFailures, TokenHolder, TokenKind, TokenScope, User};
use crate::ports::{IdentityStore, MetaStore, OrgStore, SessionStore};
use policy::Provider;

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
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::storage_from("", e))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::storage_from("", e))
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

/// Names no user or organization may take: Docker Hub's official namespace, our routes, and the
/// user name registry clients sign in with a workload token under.
pub const RESERVED_NAMES: &[&str] = &[
    "library",
    "v2",
    "api",
    "token",
    "healthz",
    "readyz",
    "metrics",
    "static",
    "login",
    "logout",
    "localhost",
    crate::workloads::WORKLOAD_USER,
];

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

/// Sign-in throttling that an outsider cannot turn into a lock-out. The counts live in the
/// database, so that attempts spread over replicas meet one limit.
/// - A user at one address: after a few free failures (typos, clients retrying), growing delays
///   (1 s, 2 s, 4 s … 60 s); a success there clears them. Guessing from one address is slowed;
///   the user's own sign-in from any other address is untouched.
/// - One address, across users: at most [`MAX_PER_ADDRESS`](Self::MAX_PER_ADDRESS) failures
///   per window, then refused until the window ends.
/// - One user, across addresses: past [`SLOW_USER_AFTER`](Self::SLOW_USER_AFTER) failures per
///   window, each password check for that user waits a second — a distributed guess is slowed,
///   the right password is never refused.
/// - Access tokens are never throttled by password failures; invalid tokens have a per-address
///   limit of their own.
pub struct LoginThrottle;

/// What a password attempt must do first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Now,
    /// The user is under a distributed guess: answer after this long.
    Slow(std::time::Duration),
}

impl LoginThrottle {
    pub const WINDOW_SECS: i64 = 900;
    /// Failures of a user at an address before the delays start.
    pub const FREE_FAILURES: i64 = 3;
    pub const MAX_DELAY_SECS: i64 = 60;
    pub const MAX_PER_ADDRESS: i64 = 30;
    pub const SLOW_USER_AFTER: i64 = 100;
    pub const MAX_TOKEN_FAILURES_PER_ADDRESS: i64 = 30;

    fn pair(user: &str, addr: &str) -> String {
        format!("p:{user}\t{addr}")
    }

    /// Every key that names `user` (to lift their throttle).
    fn user_prefixes(user: &str) -> [String; 2] {
        [format!("p:{user}\t"), format!("u:{user}")]
    }

    /// The delay after `n` failures in a row: none for the first few, then 1, 2, 4 … seconds,
    /// at most a minute.
    pub fn delay(n: i64) -> i64 {
        let n = n - Self::FREE_FAILURES;
        if n <= 0 { 0 } else { (1i64 << (n - 1).min(16)).min(Self::MAX_DELAY_SECS) }
    }

    fn row<'a>(rows: &'a [LoginFailures], key: &str, now: i64) -> Option<&'a LoginFailures> {
        rows.iter().find(|r| r.key == key && now - r.window_start < Self::WINDOW_SECS)
    }

    /// Whether a password attempt for `user` from `addr` may go ahead, and how fast.
    pub async fn password(meta: &dyn IdentityStore, user: &str, addr: &str, now: i64) -> Result<Pace> {
        let (pair, a, u) = (Self::pair(user, addr), format!("a:{addr}"), format!("u:{user}"));
        let rows = meta.login_failures(&[pair.clone(), a.clone(), u.clone()]).await?;
        // Times are whole seconds: a delay of d seconds holds until d full seconds have passed.
        if let Some(r) = Self::row(&rows, &pair, now) {
            let delay = Self::delay(r.failures);
            if delay > 0 && now <= r.last_at + delay {
                return Err(Error::RateLimited { retry_after: (r.last_at + delay + 1 - now) as u64 });
            }
        }
        if let Some(r) = Self::row(&rows, &a, now).filter(|r| r.failures >= Self::MAX_PER_ADDRESS) {
            return Err(Error::RateLimited { retry_after: (r.window_start + Self::WINDOW_SECS - now).max(1) as u64 });
        }
        Ok(match Self::row(&rows, &u, now) {
            Some(r) if r.failures >= Self::SLOW_USER_AFTER => Pace::Slow(std::time::Duration::from_secs(1)),
            _ => Pace::Now,
        })
    }

    pub async fn password_failed(meta: &dyn IdentityStore, user: &str, addr: &str, now: i64) -> Result<()> {
        for key in [Self::pair(user, addr), format!("a:{addr}"), format!("u:{user}")] {
            meta.record_login_failure(&key, now, Self::WINDOW_SECS).await?;
        }
        Ok(())
    }

    /// A right password clears the delays of that user at that address.
    pub async fn password_worked(meta: &dyn IdentityStore, user: &str, addr: &str) -> Result<()> {
        meta.clear_login_failures(&Self::pair(user, addr), false).await.map(|_| ())
    }

    /// Whether a token may be checked for `addr` (invalid tokens only count against tokens).
    pub async fn token(meta: &dyn IdentityStore, addr: &str, now: i64) -> Result<()> {
        let key = format!("t:{addr}");
        let rows = meta.login_failures(std::slice::from_ref(&key)).await?;
        match Self::row(&rows, &key, now).filter(|r| r.failures >= Self::MAX_TOKEN_FAILURES_PER_ADDRESS) {
            Some(r) => {
                Err(Error::RateLimited { retry_after: (r.window_start + Self::WINDOW_SECS - now).max(1) as u64 })
            }
            None => Ok(()),
        }
    }

    pub async fn token_failed(meta: &dyn IdentityStore, addr: &str, now: i64) -> Result<()> {
        meta.record_login_failure(&format!("t:{addr}"), now, Self::WINDOW_SECS).await
    }

    /// Forgets every failure counted against `user` (the administrator lifts a throttle).
    pub async fn lift(meta: &dyn IdentityStore, user: &str) -> Result<u64> {
        let mut n = 0;
        for p in Self::user_prefixes(user) {
            n += meta.clear_login_failures(&p, true).await?;
        }
        Ok(n)
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
    users: Arc<dyn IdentityStore>,
    /// The directory's rows, loaded into its snapshot.
    directory_rows: Arc<dyn OrgStore>,
    /// Sessions, ended when a user is disabled or changes password.
    sessions: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    directory: Directory,
    verified: Mutex<HashMap<String, i64>>,
    touched: Mutex<HashMap<i64, i64>>,
    /// Sign-ins that worked lately, for a database outage.
    remembered: crate::remembered::Remembered,
    argon_slots: Semaphore,
    /// Orgs whose members must sign in through the identity provider (`sso_enforced`).
    sso_orgs: std::sync::RwLock<Arc<std::collections::HashSet<String>>>,
    /// Whether any org enforces single sign-on (the registry request path's one-load check).
    sso_any: std::sync::atomic::AtomicBool,
    /// The LDAP directory that checks passwords of accounts it holds, and the sign-in that
    /// makes their accounts and teams (set once at start when `[auth.ldap]` is configured).
    password_directory:
        std::sync::OnceLock<(Arc<dyn crate::ports::PasswordDirectory>, std::sync::Weak<crate::sso::Sso>)>,
}

impl Identity {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        directory: Directory,
        clock: Arc<dyn Clock>,
        audit: Arc<Audit>,
        metrics: Arc<Metrics>,
    ) -> Identity {
        Identity {
            users: meta.clone(),
            directory_rows: meta.clone(),
            sessions: meta,
            clock,
            audit,
            metrics,
            directory,
            verified: Mutex::default(),
            touched: Mutex::default(),
            remembered: Default::default(),
            argon_slots: Semaphore::new(2),
            sso_orgs: Default::default(),
            sso_any: Default::default(),
            password_directory: std::sync::OnceLock::new(),
        }
    }

    /// Passwords of names the directory holds (and that are no local account) are checked by
    /// `dir`; `sso` makes their accounts and team memberships.
    pub(crate) fn set_password_directory(
        &self,
        dir: Arc<dyn crate::ports::PasswordDirectory>,
        sso: &Arc<crate::sso::Sso>,
    ) {
        let _ = self.password_directory.set((dir, Arc::downgrade(sso)));
    }

    /// Signs in a name the password directory holds: its answer (remembered for a minute like a
    /// verified password), then the account and its teams brought in line.
    async fn authenticate_directory(
        &self,
        username: &str,
        password: &str,
        client: &str,
        now: i64,
    ) -> Result<Principal> {
        let Some((dir, sso)) = self.password_directory.get() else {
            return Err(Error::Unauthenticated("invalid username or password".into()));
        };
        let key = token_hash(&format!("directory\0{username}\0{password}"));
        let cached = self.verified.lock().ok().and_then(|m| m.get(&key).copied()).is_some_and(|exp| exp > now);
        if cached
            && let Some(u) = self.users.user_by_name(username).await?
            && crate::sso::provider_of(&u) == Some(Provider::Ldap)
            && !u.disabled
        {
            return Ok(Self::principal(&u, None));
        }
        match dir.verify(username, password).await {
            Ok(Some(ext)) => {
                let sso = sso.upgrade().ok_or_else(|| Error::Unavailable("shutting down".into()))?;
                let user = sso.sign_in(&ext, client).await?;
                LoginThrottle::password_worked(self.users.as_ref(), username, client).await?;
                if let Ok(mut m) = self.verified.lock() {
                    m.insert(key, now + VERIFIED_TTL_SECS);
                }
                Ok(Self::principal(&user, None))
            }
            Ok(None) => {
                LoginThrottle::password_failed(self.users.as_ref(), username, client, now).await?;
                Err(self.failed("ldap", username, client, "the directory refused the name or password").await)
            }
            Err(e) => {
                self.audit_auth("auth.failure", username, client, "ldap", &e.to_string()).await;
                Err(e)
            }
        }
    }

    /// The orgs that enforce single sign-on (from their settings; `Iam` keeps this current).
    pub fn set_sso_enforced(&self, orgs: std::collections::HashSet<String>) {
        self.sso_any.store(!orgs.is_empty(), std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut g) = self.sso_orgs.write() {
            *g = Arc::new(orgs);
        }
    }

    /// Refuses a local account's password or token when an org it belongs to enforces single
    /// sign-on. The instance administrator keeps a break-glass password; accounts of the
    /// identity provider have no password here and their tokens were made in SSO sessions.
    fn sso_check(&self, user: &User) -> Result<()> {
        self.sso_refusal(user.id, user.is_admin, user.source == AccountSource::Local)
    }

    /// [`Identity::sso_check`] of an account the authorization snapshot knows by name: for
    /// what was issued before an org turned enforcement on (console sessions, registry tokens),
    /// so that it ends at the next request.
    pub fn sso_check_name(&self, username: &str) -> Result<()> {
        let snap = self.directory.snapshot();
        match snap.user(username) {
            Some((id, is_admin)) => self.sso_refusal(id, is_admin, snap.is_local(username)),
            None => Ok(()),
        }
    }

    /// Whether any org enforces single sign-on now (one atomic load: the common answer is no).
    pub fn sso_enforced_anywhere(&self) -> bool {
        self.sso_any.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refuses a local account (not the administrator) that belongs to an org enforcing single
    /// sign-on.
    pub fn sso_refusal(&self, user_id: i64, is_admin: bool, local: bool) -> Result<()> {
        if is_admin || !local || !self.sso_enforced_anywhere() {
            return Ok(());
        }
        let orgs = self.sso_orgs.read().map(|g| g.clone()).unwrap_or_default();
        if orgs.is_empty() {
            return Ok(());
        }
        let snap = self.directory.snapshot();
        let mut enforcing: Vec<&String> = orgs.iter().filter(|o| snap.is_member(o, user_id)).collect();
        enforcing.sort();
        match enforcing.first() {
            None => Ok(()),
            Some(org) => Err(Error::Unauthenticated(format!(
                "{org} requires single sign-on: sign in to the console through its identity provider, and use an \
                 access token made there; this account's password and tokens are not accepted"
            ))),
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
        let rows = self.directory_rows.load_directory().await?;
        self.directory.replace(Snapshot::build(rows));
        self.remembered.forget_all();
        Ok(())
    }

    fn principal(user: &User, scope: Option<TokenScope>) -> Principal {
        Principal { id: user.id, username: user.username.clone(), is_admin: user.is_admin, scope }
    }

    /// Signs in with a username and a password or access token. `client` is the caller's
    /// address, for throttling. Failures and throttling are audited and counted. While the
    /// database cannot be reached, a sign-in that worked lately works again with the same
    /// secret (see [`crate::remembered`]).
    pub async fn authenticate(&self, username: &str, secret: &str, client: &str) -> Result<Principal> {
        // Account names are lower case: `Alice` is `alice` (as on Docker Hub), for the password,
        // the directory and the throttle alike.
        let username = &username.to_ascii_lowercase();
        let now = self.clock.now();
        match self.authenticate_online(username, secret, client).await {
            Ok(p) => {
                self.remembered.remember(username, secret, &p, now);
                Ok(p)
            }
            Err(Error::Unavailable(why)) => match self.remembered.recall(username, secret, client, now) {
                Some(p) => {
                    tracing::info!(user = %p.username, "signed in as lately, while the database cannot be reached");
                    Ok(p)
                }
                None => Err(Error::Unavailable(why)),
            },
            Err(e) => Err(e),
        }
    }

    async fn authenticate_online(&self, username: &str, secret: &str, client: &str) -> Result<Principal> {
        if secret.starts_with(PAT_PREFIX) {
            let p = self.authenticate_token(secret, client).await?;
            if p.username != *username {
                return Err(self.failed("token", username, client, "the token belongs to another user").await);
            }
            return Ok(p);
        }
        let now = self.clock.now();
        match LoginThrottle::password(self.users.as_ref(), username, client, now).await {
            Ok(Pace::Now) => {}
            Ok(Pace::Slow(d)) => tokio::time::sleep(d).await,
            Err(e) => {
                Metrics::inc(&self.metrics.signin_throttled);
                self.audit_auth("auth.throttled", username, client, "password", &e.to_string()).await;
                return Err(e);
            }
        }
        // The directory checks the passwords of the names it holds: its own accounts, SCIM
        // accounts not bound to another provider, and names no account has yet.
        if self.password_directory.get().is_some()
            && self.users.user_by_name(username).await?.is_none_or(|u| {
                crate::sso::provider_of(&u) == Some(Provider::Ldap)
                    || u.source == AccountSource::Scim && u.external_id.is_none()
            })
        {
            return self.authenticate_directory(username, secret, client, now).await;
        }
        match self.check_password(username, secret, now).await {
            Ok((p, user)) => {
                LoginThrottle::password_worked(self.users.as_ref(), username, client).await?;
                self.sso_allowed(&user, client, "password").await?;
                Ok(p)
            }
            Err(e @ Error::Unauthenticated(_)) => {
                LoginThrottle::password_failed(self.users.as_ref(), username, client, now).await?;
                Err(self.failed("password", username, client, &e.to_string()).await)
            }
            Err(e) => Err(e),
        }
    }

    /// Signs in with a bare token (API `Bearer <token>`, OAuth2 refresh grant).
    pub async fn authenticate_token(&self, secret: &str, client: &str) -> Result<Principal> {
        let now = self.clock.now();
        if let Err(e) = LoginThrottle::token(self.users.as_ref(), client, now).await {
            Metrics::inc(&self.metrics.signin_throttled);
            self.audit_auth("auth.throttled", "", client, "token", &e.to_string()).await;
            return Err(e);
        }
        match self.check_token(secret, now).await {
            Ok((p, user)) => {
                self.sso_allowed(&user, client, "token").await?;
                Ok(p)
            }
            Err(e @ Error::Unauthenticated(_)) => {
                LoginThrottle::token_failed(self.users.as_ref(), client, now).await?;
                Err(self.failed("token", "", client, &e.to_string()).await)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Identity::sso_check`], audited when it refuses.
    async fn sso_allowed(&self, user: &User, client: &str, method: &str) -> Result<()> {
        if let Err(e) = self.sso_check(user) {
            self.audit_auth("auth.failure", &user.username, client, method, &e.to_string()).await;
            return Err(e);
        }
        Ok(())
    }

    /// Audits and counts a failed sign-in; the error to answer with.
    async fn failed(&self, method: &str, username: &str, client: &str, reason: &str) -> Error {
        Metrics::inc(&self.metrics.signin_failures);
        self.audit_auth("auth.failure", username, client, method, reason).await;
        Error::Unauthenticated(if method == "token" {
            "invalid or expired token".into()
        } else {
            "invalid username or password".into()
        })
    }

    /// Audits an interactive sign-in that worked (the console's; the directory's are audited by
    /// `sso`). Registry clients' token requests are counted in metrics, not audited one by one.
    pub async fn signed_in(&self, username: &str, client: &str, method: &str) {
        self.audit
            .record(AuditEntry {
                actor: username.to_owned(),
                action: "auth.success".into(),
                client: Some(client.to_owned()),
                detail: Some(serde_json::json!({ "method": method }).to_string()),
                ..Default::default()
            })
            .await;
    }

    async fn audit_auth(&self, action: &str, username: &str, client: &str, method: &str, reason: &str) {
        self.audit
            .record(AuditEntry {
                actor: username.to_owned(),
                action: action.to_owned(),
                client: Some(client.to_owned()),
                detail: Some(serde_json::json!({ "method": method, "reason": reason }).to_string()),
                ..Default::default()
            })
            .await;
    }

    async fn check_password(&self, username: &str, password: &str, now: i64) -> Result<(Principal, User)> {
        let bad = || Error::Unauthenticated("invalid username or password".into());
        let Some(user) = self.users.user_by_name(username).await? else {
            // Spend comparable time so that unknown names are not told apart by timing.
            let _slot = self.argon_slots.acquire().await;
            let _ = tokio::task::spawn_blocking(|| verify_password("x", dummy_hash())).await;
            return Err(bad());
        };
        let key = token_hash(&format!("{}\0{}\0{}", user.username, password, user.password_hash));
        let cached = self.verified.lock().ok().and_then(|m| m.get(&key).copied()).is_some_and(|exp| exp > now);
        if !cached {
            let _slot = self.argon_slots.acquire().await.map_err(|e| Error::storage_from("", e))?;
            let (p, h) = (password.to_owned(), user.password_hash.clone());
            let ok = tokio::task::spawn_blocking(move || verify_password(&p, &h))
                .await
                .map_err(|e| Error::storage_from("", e))?;
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
        if user.disabled {
            // Said only to someone who knows the password.
            return Err(Error::Unauthenticated("this account is disabled; ask the administrator".into()));
        }
        Ok((Self::principal(&user, None), user))
    }

    async fn check_token(&self, secret: &str, now: i64) -> Result<(Principal, User)> {
        let bad = || Error::Unauthenticated("invalid or expired token".into());
        let Some(TokenHolder { token, user }) = self.users.token_by_hash(&token_hash(secret)).await? else {
            return Err(bad());
        };
        if token.expires_at.is_some_and(|e| e <= now) || user.disabled {
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
            self.users.touch_token(token.id, now).await?;
        }
        Ok((Self::principal(&user, Some(token.scope)), user))
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
        let u = self.users.create_user(username, &hash, is_admin, self.clock.now()).await?;
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
            self.users.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
        self.users.set_password(user.id, &hash_password(password)?).await?;
        // A new password signs the user out of every console session.
        self.sessions.delete_user_sessions(user.id).await
    }

    /// Creates an access token; the secret is returned once and only its hash is kept.
    pub async fn create_token(
        &self,
        user: &Principal,
        label: &str,
        kind: TokenKind,
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
        let prefix = match kind {
            TokenKind::Refresh => REFRESH_PREFIX,
            TokenKind::Pat => PAT_PREFIX,
        };
        let secret = new_secret(prefix);
        let t = self.users.create_token(user.id, label, kind, &token_hash(&secret), scope, expires_at, now).await?;
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
        let (t, secret) = self.create_token(who, label, TokenKind::Pat, scope, expires_at).await?;
        self.audit
            .change(who, None, "token.create", serde_json::json!({ "id": t.id, "label": t.label, "scope": t.scope }))
            .await;
        Ok((t, secret))
    }

    pub async fn list_tokens(&self, user: &Principal) -> Result<Vec<AccessToken>> {
        self.users.list_tokens(user.id).await
    }

    /// Revokes one of `user`'s tokens (audited).
    pub async fn delete_token(&self, user: &Principal, id: i64) -> Result<()> {
        if !self.users.delete_token(user.id, id).await? {
            return Err(Error::NotFound(format!("no token {id}")));
        }
        self.audit.change(user, None, "token.delete", serde_json::json!({ "id": id })).await;
        Ok(())
    }

    async fn user(&self, username: &str) -> Result<User> {
        self.users.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("no user {username}")))
    }

    /// Disables (or enables again) an account: a disabled user cannot sign in, their console
    /// sessions end and their tokens are refused. Administrator only, never oneself.
    pub async fn set_disabled(&self, who: &Principal, username: &str, disabled: bool) -> Result<()> {
        admin_only(who, "disable or enable users")?;
        if username == who.username {
            return Err(Error::Conflict("you cannot disable your own account".into()));
        }
        let user = self.user(username).await?;
        self.users.set_user_disabled(user.id, disabled).await?;
        if disabled {
            self.sessions.delete_user_sessions(user.id).await?;
        }
        self.refresh_directory().await?;
        let action = if disabled { "user.disable" } else { "user.enable" };
        self.audit.change(who, None, action, serde_json::json!({ "username": username })).await;
        Ok(())
    }

    /// Deletes an account with its tokens, sessions and memberships. Administrator only, never
    /// oneself, never an organization's last owner.
    pub async fn delete_user(&self, who: &Principal, username: &str) -> Result<()> {
        admin_only(who, "delete users")?;
        if username == who.username {
            return Err(Error::Conflict("you cannot delete your own account".into()));
        }
        let user = self.user(username).await?;
        if let Some(org) = self.directory.snapshot().orgs_owned_only_by(user.id).first() {
            return Err(Error::Conflict(format!(
                "{username} is the last owner of {org}; make someone else an owner first"
            )));
        }
        self.users.delete_user(user.id).await?;
        self.refresh_directory().await?;
        self.audit.change(who, None, "user.delete", serde_json::json!({ "username": username })).await;
        Ok(())
    }

    /// Lifts the sign-in throttle of a user (every address). Administrator only.
    pub async fn lift_throttle(&self, who: &Principal, username: &str) -> Result<u64> {
        admin_only(who, "lift sign-in throttles")?;
        self.user(username).await?;
        let n = LoginThrottle::lift(self.users.as_ref(), username).await?;
        self.audit
            .change(who, None, "user.throttle.lift", serde_json::json!({ "username": username, "cleared": n }))
            .await;
        Ok(n)
    }

    /// Every user (instance administrator only).
    pub async fn list_users(&self, who: &Principal) -> Result<Vec<User>> {
        admin_only(who, "list users")?;
        self.users.list_users().await
    }

    /// Creates the instance administrator `admin` when there are no users yet, with `password`
    /// or a generated one.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<Bootstrap> {
        if self.users.count_users().await? > 0 {
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

    #[tokio::test]
    async fn throttling_slows_guessing_without_locking_anyone_out() {
        use crate::memory::MemoryMeta;
        let m = MemoryMeta::new();
        let mut t = 10_000;
        // guessing bob's password from one address: 1, 2, 4 … 60 s between attempts
        let mut waits = vec![];
        for _ in 0..12 {
            LoginThrottle::password_failed(&m, "bob", "6.6.6.6", t).await.unwrap();
            let wait = match LoginThrottle::password(&m, "bob", "6.6.6.6", t).await {
                Err(Error::RateLimited { retry_after }) => retry_after - 1,
                Ok(_) => 0,
                Err(e) => panic!("{e}"),
            };
            waits.push(wait);
            t += wait as i64 + 1;
            assert_eq!(LoginThrottle::password(&m, "bob", "6.6.6.6", t).await.unwrap(), Pace::Now, "after the wait");
        }
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60], "a few typos are free");
        // bob himself, from his own address, is not held back
        assert_eq!(LoginThrottle::password(&m, "bob", "10.0.0.7", t).await.unwrap(), Pace::Now);
        // and a success clears the delays at that address
        LoginThrottle::password_worked(&m, "bob", "6.6.6.6").await.unwrap();
        LoginThrottle::password_failed(&m, "bob", "6.6.6.6", t).await.unwrap();
        assert_eq!(LoginThrottle::password(&m, "bob", "6.6.6.6", t).await.unwrap(), Pace::Now);
        // one address trying many users meets a limit across users
        for i in 0..LoginThrottle::MAX_PER_ADDRESS {
            LoginThrottle::password_failed(&m, &format!("user{i}"), "7.7.7.7", t).await.unwrap();
        }
        assert!(LoginThrottle::password(&m, "carol", "7.7.7.7", t).await.is_err(), "any user from there");
        assert!(LoginThrottle::token(&m, "7.7.7.7", t).await.is_ok(), "tokens are not throttled by passwords");
        // a distributed guess of one user only slows that user's checks down
        for i in 0..LoginThrottle::SLOW_USER_AFTER {
            LoginThrottle::password_failed(&m, "dave", &format!("10.1.{}.{}", i / 250, i % 250), t).await.unwrap();
        }
        assert!(matches!(LoginThrottle::password(&m, "dave", "192.0.2.1", t).await, Ok(Pace::Slow(_))));
        // invalid tokens have their own per-address limit
        for _ in 0..LoginThrottle::MAX_TOKEN_FAILURES_PER_ADDRESS {
            LoginThrottle::token_failed(&m, "8.8.8.8", t).await.unwrap();
        }
        assert!(LoginThrottle::token(&m, "8.8.8.8", t).await.is_err());
        assert!(
            LoginThrottle::password(&m, "erin", "8.8.8.8", t).await.is_ok(),
            "passwords are not throttled by tokens"
        );
        // the administrator lifts a user's throttle everywhere
        assert!(LoginThrottle::lift(&m, "dave").await.unwrap() > 0);
        assert_eq!(LoginThrottle::password(&m, "dave", "192.0.2.1", t).await.unwrap(), Pace::Now);
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
