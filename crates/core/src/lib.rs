//! Services of the registry — the access gate, content (hosted and cached), identity, tokens,
//! organizations, Image Access Management, audit — and the ports they need (`ports`: metadata
//! by capability, blobs, upstream registries, the clock). Adapters in `portcullis-store` and
//! `portcullis-upstream` implement the ports; the HTTP layer calls the services. Layer rule:
//! handlers call services, services never call handlers, nothing here knows about HTTP, and
//! every access rule of a registry request lives in `gate`.

pub mod admission;
pub mod audit;
pub mod authz;
pub mod badges;
pub mod clock;
pub mod content;
pub mod error;
pub mod gate;
pub mod iam;
pub mod identity;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod metrics;
pub mod model;
pub mod orgs;
pub mod policy_history;
pub mod ports;
pub mod proxy;
pub mod purge;
pub mod registry;
pub mod remembered;
pub mod replica;
pub mod requests;
pub mod robots;
pub mod scim;
pub mod services;
pub mod sessions;
pub mod signatures;
pub mod sso;
pub mod team_rules;
pub mod tokens;
pub mod workloads;

pub use error::{Error, Result};
