//! PostgreSQL metadata store, for several replicas sharing one database. One pool serves reads
//! and writes (PostgreSQL has no single-writer limit); the queries are the shared ones of
//! `sql.rs`; migrations (`migrations/postgres`, same numbering as SQLite) run under an advisory
//! lock so that replicas starting together apply each one once.

use std::str::FromStr;
use std::time::Duration;

use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::migrate::POSTGRES_DIALECT;
use crate::sql::*;

pub struct PgMeta {
    pub(crate) write: PgPool,
    pub(crate) read: PgPool,
    stats: BackendStats,
}

impl PgMeta {
    /// Connects (`postgres://user:password@host:port/db?sslmode=...`) with at most
    /// `max_connections`, and applies pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<PgMeta> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| Error::Invalid(format!("invalid database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(db)?;
        let store = PgMeta { write: pool.clone(), read: pool, stats: BackendStats::new("database", "postgres") };
        migrate!(store.write, POSTGRES_DIALECT).await?;
        Ok(store)
    }
}

meta_store!(PgMeta, Postgres);

#[cfg(test)]
mod tests {
    use crate::testsuite::TestDatabase;

    #[tokio::test]
    async fn passes_the_meta_suite() {
        let db = TestDatabase::create().await;
        let store = super::PgMeta::open(&db.url, 5).await.unwrap();
        crate::testsuite::meta_suite(&store).await;
        // Reopening applies no migration twice and keeps the data; replicas starting together
        // apply each migration once.
        drop(store);
        let (a, b) = tokio::join!(super::PgMeta::open(&db.url, 2), super::PgMeta::open(&db.url, 2));
        let (a, _b) = (a.unwrap(), b.unwrap());
        assert!(portcullis_core::ports::IdentityStore::user_by_name(&a, "alice").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn connects_over_verified_tls_only_with_the_right_ca() {
        let db = TestDatabase::create().await;
        let store = super::PgMeta::open(&db.url, 1).await.unwrap();
        let (ssl,): (bool,) = sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&store.read)
            .await
            .unwrap();
        assert!(ssl, "the connection is encrypted");
        // the server's certificate is not trusted without the test CA
        let untrusted = db.url.split('?').next().unwrap().to_owned() + "?sslmode=verify-full";
        let err = super::PgMeta::open(&untrusted, 1).await.err().expect("refused");
        assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    }
}
