//! `AppState`: what every handler shares — the services, and how clients reach this server.

use std::sync::Arc;

use portcullis_core::services::Services;

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
    /// The bearer token the Kubernetes API server presents to the admission webhooks
    /// (`[admission] token_file`).
    pub admission_token: Option<String>,
    /// How long pulls are decided on the last snapshot while the database cannot be reached
    /// (`database.outage_grace_secs`).
    pub outage_grace: std::time::Duration,
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
