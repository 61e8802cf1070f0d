//! Console sign-in sessions. A session is a random secret in an `HttpOnly` cookie; the store
//! keeps only its SHA-256 with the user and the CSRF token of the session's forms, so replicas
//! share sessions and a leaked database row cannot be replayed. Sign-in goes through the same
//! throttled password check as the API, and accepts passwords only: an access token (perhaps
//! read-only) must not open a console that can change everything.

use std::sync::Arc;

use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::identity::{Identity, PAT_PREFIX, REFRESH_PREFIX, new_secret, token_hash};
use crate::ports::SessionStore;

/// How long a console session lasts.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// Prefix of session secrets.
const SESSION_PREFIX: &str = "pcs_";

/// A signed-in console user and the CSRF token their forms must carry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub principal: Principal,
    pub csrf: String,
}

pub struct Sessions {
    store: Arc<dyn SessionStore>,
    identity: Arc<Identity>,
    clock: Arc<dyn Clock>,
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, identity: Arc<Identity>) -> Sessions {
        Sessions { store, clock: identity.clock().clone(), identity }
    }

    /// Checks the password and opens a session; returns the cookie secret.
    pub async fn sign_in(&self, username: &str, password: &str, client: &str) -> Result<(String, SignedIn)> {
        if password.starts_with(PAT_PREFIX) || password.starts_with(REFRESH_PREFIX) {
            return Err(Error::Unauthenticated(
                "sign in with your password; access tokens are for registry clients and the API".into(),
            ));
        }
        let principal = self.identity.authenticate(username, password, client).await?;
        self.identity.signed_in(&principal.username, client, "console password").await;
        self.open(principal).await
    }

    /// Opens a session for someone the identity provider signed in (`core::sso`).
    pub async fn open_for(&self, user: &crate::model::User) -> Result<(String, SignedIn)> {
        let principal =
            Principal { id: user.id, username: user.username.clone(), is_admin: user.is_admin, scope: None };
        self.open(principal).await
    }

    async fn open(&self, principal: Principal) -> Result<(String, SignedIn)> {
        let now = self.clock.now();
        let (secret, csrf) = (new_secret(SESSION_PREFIX), new_secret(""));
        self.store.prune_sessions(now).await?;
        self.store.create_session(&token_hash(&secret), principal.id, &csrf, now, now + SESSION_TTL_SECS).await?;
        Ok((secret, SignedIn { principal, csrf }))
    }

    /// The session with this secret, if it is open.
    pub async fn resolve(&self, secret: &str) -> Result<Option<SignedIn>> {
        if !secret.starts_with(SESSION_PREFIX) {
            return Ok(None);
        }
        let hash = token_hash(secret);
        let Some(s) = self.store.session(&hash, self.clock.now()).await?.filter(|s| !s.user.disabled) else {
            return Ok(None);
        };
        // A local account's session ends once an org of theirs enforces single sign-on.
        if self.identity.sso_check_name(&s.user.username).is_err() {
            self.store.delete_session(&hash).await?;
            return Ok(None);
        }
        Ok(Some(SignedIn {
            principal: Principal { id: s.user.id, username: s.user.username, is_admin: s.user.is_admin, scope: None },
            csrf: s.csrf,
        }))
    }

    /// True the first time `value` (a sign-in state) is presented before `expires_at`; false
    /// on every later use, on any replica (the store remembers its hash until then).
    pub async fn first_use(&self, value: &str, expires_at: i64) -> Result<bool> {
        self.store.use_once(&token_hash(value), self.clock.now(), expires_at).await
    }

    pub async fn sign_out(&self, secret: &str) -> Result<()> {
        self.store.delete_session(&token_hash(secret)).await
    }
}
