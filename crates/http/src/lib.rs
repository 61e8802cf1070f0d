//! HTTP surfaces of portcullis: the OCI distribution API (`/v2`), Docker token auth
//! (`/token`), the admin REST API (`/api/v1`), SCIM provisioning (`/scim/v2`), Kubernetes
//! admission webhooks (`/admission`), the web console (HTML at `/`) and ops endpoints
//! (`/healthz`, `/readyz`, `/metrics`).
//!
//! Handlers are short: extract, call one service, map the result. Access to `/v2` is decided
//! by the gate in core (`portcullis_core::gate`), from the parsed [`oci::Endpoint`], before
//! anything is served (`v2.rs`: parse → gate → dispatch → map). Domain errors become wire
//! errors in `error.rs`, one conversion per surface.

use std::sync::Arc;

use axum::Router;

mod admission;
mod api;
mod auth;
mod error;
mod openapi;
mod ops;
mod scim;
mod state;
mod token;
mod ui;
mod v2;

pub use state::AppState;

/// The whole application router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(v2::routes())
        .merge(token::routes())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(scim::routes())
        .merge(admission::routes())
        .merge(ui::routes(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::request_id_and_log))
        .with_state(state)
}
