//! The SQL both metadata stores share, one module per capability of the metadata port
//! (`identity`, `orgs`, `content`, `uploads`, `cache`, `policy`, `audit`, `sessions`,
//! `cluster`, `scim`). Each module holds its named row types and a macro implementing its port for a
//! store; [`meta_store!`] instantiates them all for SQLite and PostgreSQL (sqlx's query types are
//! per database, and a generic impl would need a bound for every column type). Queries use `$n`
//! placeholders, `ON CONFLICT`, `RETURNING` and `CAST`, which both engines read alike; each
//! schema (`migrations/{sqlite,postgres}`) makes the same columns decode to the same types.

use portcullis_core::error::{Error, Result};

#[macro_use]
mod audit;
#[macro_use]
mod cache;
#[macro_use]
mod cluster;
#[macro_use]
mod content;
#[macro_use]
mod identity;
#[macro_use]
mod orgs;
#[macro_use]
mod policy;
#[macro_use]
mod scim;
#[macro_use]
mod sessions;
#[macro_use]
mod uploads;

pub(crate) use audit::*;
pub(crate) use content::*;
pub(crate) use identity::*;
pub(crate) use orgs::*;
pub(crate) use policy::*;
pub(crate) use scim::*;
pub(crate) use sessions::*;
pub(crate) use uploads::*;

pub(crate) use oci::digest::Digest;
pub(crate) use oci::name::Tag;

/// A digest read back from the database; one that does not parse was written by something
/// else and is a database error, not a digest to serve.
pub(crate) fn stored_digest(s: String) -> Result<Digest> {
    s.parse().map_err(|_| {
        Error::Db(portcullis_core::error::Cause::from_error("", portcullis_core::model::UnknownValue("digest", s)))
    })
}

/// A database error as a domain error: unique violations are conflicts, the rest backend
/// failures.
pub(crate) fn db(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return Error::Conflict("already exists".into());
    }
    Error::Db(portcullis_core::error::Cause::from_error("", e))
}

/// Implements every metadata port for `$store` (a struct with `write` and `read` pools of
/// `$db` and a `stats` field).
macro_rules! meta_store {
    ($store:ident, $db:ty) => {
        impl $store {
            /// True when a user or an organization has the name (they share one namespace).
            async fn name_taken(tx: &mut Transaction<'_, $db>, name: &str) -> Result<bool> {
                let row =
                    sqlx::query("SELECT 1 FROM users WHERE username = $1 UNION ALL SELECT 1 FROM orgs WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db)?;
                Ok(row.is_some())
            }
        }

        impl portcullis_core::ports::Measured for $store {
            fn stats(&self) -> &portcullis_core::metrics::BackendStats {
                &self.stats
            }
        }

        impl portcullis_core::ports::MetaStore for $store {}

        identity_sql!($store, $db);
        orgs_sql!($store, $db);
        content_sql!($store, $db);
        uploads_sql!($store, $db);
        cache_sql!($store, $db);
        policy_sql!($store, $db);
        audit_sql!($store, $db);
        sessions_sql!($store, $db);
        cluster_sql!($store, $db);
        scim_sql!($store, $db);
    };
}
