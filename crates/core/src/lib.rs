//! Services of the registry — push and pull, identity, tokens, organizations — and the ports
//! they need (`MetaStore`, `BlobStore`). Adapters in `portcullis-store` implement the ports;
//! the HTTP layer calls the services. Layer rule: handlers call services, services never call
//! handlers, and nothing here knows about HTTP.

pub mod audit;
pub mod authz;
pub mod clock;
pub mod error;
pub mod iam;
pub mod identity;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod metrics;
pub mod model;
pub mod orgs;
pub mod ports;
pub mod proxy;
pub mod purge;
pub mod registry;
pub mod requests;
pub mod sessions;
pub mod tokens;

pub use error::{Error, Result};
