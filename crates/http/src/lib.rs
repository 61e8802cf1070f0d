//! HTTP surfaces of portcullis: the OCI distribution API (`/v2`), Docker token auth
//! (`/token`), the admin REST API (`/api/v1`), the web console (HTML at `/`) and ops
//! endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! Handlers are short: extract, call one service, map the result. Access to `/v2` is decided
//! once, from the parsed [`oci::Endpoint`], before any handler runs (see `v2.rs`). Domain
//! errors become wire errors in `error.rs`, one conversion per surface.

use std::sync::Arc;

use axum::Router;
use portcullis_core::iam::Iam;
use portcullis_core::identity::Identity;
use portcullis_core::metrics::Metrics;
use portcullis_core::orgs::Orgs;
use portcullis_core::ports::{BlobStore, MetaStore};
use portcullis_core::proxy::Proxy;
use portcullis_core::registry::Registry;
use portcullis_core::tokens::TokenIssuer;

mod access;
mod api;
mod auth;
mod error;
mod ops;
mod token;
mod ui;
mod v2;

/// Everything the handlers need, shared by all requests.
pub struct AppState {
    pub registry: Registry,
    pub proxy: Proxy,
    pub metrics: Arc<Metrics>,
    /// Whether anonymous callers may pull through the proxy.
    pub proxy_anonymous: bool,
    pub identity: Arc<Identity>,
    pub orgs: Arc<Orgs>,
    pub iam: Iam,
    pub sessions: portcullis_core::sessions::Sessions,
    pub audit: Arc<portcullis_core::audit::Audit>,
    pub tokens: TokenIssuer,
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Base URL clients reach us at (for the token realm); derived from `Host` when unset.
    pub public_url: Option<String>,
    /// Whether we serve TLS (for the realm URL when `public_url` is unset).
    pub tls: bool,
    /// Enforced sign-in: only members of these orgs may use `/v2` (empty: not enforced).
    pub allowed_orgs: Vec<String>,
    /// The database generation this replica's in-memory state reflects (see `catch_up`).
    pub generation: std::sync::atomic::AtomicI64,
    pub clock: Arc<dyn portcullis_core::clock::Clock>,
}

impl AppState {
    /// Reloads the directory, the policy and the token keys when the database changed since
    /// they were loaded (through any replica). The admin API, the console and `/token` call it
    /// before acting, so that a replica reads its own and the others' writes; a background task
    /// calls it four times a second for `/v2`, which never waits on the database for it.
    pub async fn catch_up(&self) -> portcullis_core::Result<()> {
        use std::sync::atomic::Ordering;
        let now = self.meta.generation().await?;
        if now == self.generation.load(Ordering::Acquire) {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = self.meta.signing_keys().await?.into_iter().map(|(_, k)| k).collect();
        self.identity.refresh_directory().await?;
        self.iam.refresh().await?;
        self.tokens.set_keys(&keys)?;
        self.generation.fetch_max(now, Ordering::AcqRel);
        Ok(())
    }
}

/// The whole application router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(v2::routes())
        .merge(token::routes())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn(ops::request_id_and_log))
        .with_state(state)
}

/// The OpenAPI document of `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");
