//! HTTP surfaces of portcullis: the OCI distribution API (`/v2`), Docker token auth
//! (`/token`), the admin REST API (`/api/v1`), SCIM provisioning (`/scim/v2`), the web console
//! (HTML at `/`) and ops endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! Handlers are short: extract, call one service, map the result. Access to `/v2` is decided
//! by the gate in core (`portcullis_core::gate`), from the parsed [`oci::Endpoint`], before
//! anything is served (`v2.rs`: parse → gate → dispatch → map). Domain errors become wire
//! errors in `error.rs`, one conversion per surface.

use std::sync::Arc;

use axum::Router;
use portcullis_core::services::Services;

mod api;
mod auth;
mod error;
mod ops;
mod scim;
mod token;
mod ui;
mod v2;

/// Everything the handlers need, shared by all requests: the services, and how clients reach
/// this server.
pub struct AppState {
    pub core: Services,
    /// Base URL clients reach us at (for the token realm); derived from `Host` when unset.
    pub public_url: Option<String>,
    /// Whether we serve TLS (for the realm URL when `public_url` is unset).
    pub tls: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The OpenID provider for console sign-in (`[auth.oidc]`), and its name on the button.
    pub oidc: Option<Arc<idp::oidc::Oidc>>,
    pub oidc_name: String,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.core
    }
}

impl AppState {
    /// Catches up with changes made through other replicas (see `portcullis_core::replica`);
    /// the admin API, the console and `/token` call it before acting.
    pub async fn catch_up(&self) -> portcullis_core::Result<()> {
        self.replica.catch_up().await
    }
}

/// The whole application router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(v2::routes())
        .merge(token::routes())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(scim::routes())
        .merge(ui::routes(state.clone()))
        .layer(axum::middleware::from_fn(ops::request_id_and_log))
        .with_state(state)
}

/// The OpenAPI document of `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");
