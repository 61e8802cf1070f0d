//! PostgreSQL metadata store, for several replicas sharing one database. One pool serves reads
//! and writes (PostgreSQL has no single-writer limit); the queries are the shared ones of
//! `sql.rs`; migrations (`migrations/postgres`, same numbering as SQLite) run under an advisory
//! lock so that replicas starting together apply each one once. A health check on a
//! connection of its own asks the server four times a second; while it fails, the store says
//! why (`ClusterStore::unreachable`) so that requests are refused at once rather than each
//! waiting out the pool, and it clears by itself when the server answers again.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::migrate::POSTGRES_DIALECT;
use crate::sql::*;

/// How often the health check asks, and how long it waits for an answer.
const HEALTH_EVERY: Duration = Duration::from_millis(250);
const HEALTH_WAIT: Duration = Duration::from_millis(700);

/// What the health check last found: why the server cannot be reached, or nothing.
#[derive(Default)]
struct Health {
    /// Whether `why` holds a reason (read on every request: no lock then).
    down: std::sync::atomic::AtomicBool,
    why: std::sync::RwLock<Option<String>>,
}

pub struct PgMeta {
    health: Arc<Health>,
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
            .connect_with(opts.clone())
            .await
            .map_err(db)?;
        let health = Arc::new(Health::default());
        tokio::spawn(watch(opts, Arc::downgrade(&health)));
        let store =
            PgMeta { health, write: pool.clone(), read: pool, stats: BackendStats::new("database", "postgres") };
        migrate!(store.write, POSTGRES_DIALECT).await?;
        Ok(store)
    }

    fn unreachable_now(&self) -> Option<String> {
        if !self.health.down.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.health.why.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The health check: `SELECT 1` on its own connection (a busy pool is not an outage), made
/// again when it broke; ends when the store is dropped.
async fn watch(opts: PgConnectOptions, health: std::sync::Weak<Health>) {
    use sqlx::Connection;
    let mut conn: Option<sqlx::PgConnection> = None;
    loop {
        tokio::time::sleep(HEALTH_EVERY).await;
        let Some(health) = health.upgrade() else { return };
        let asked = tokio::time::timeout(HEALTH_WAIT, async {
            if conn.is_none() {
                conn = Some(sqlx::PgConnection::connect_with(&opts).await?);
            }
            match conn.as_mut() {
                Some(c) => sqlx::query("SELECT 1").execute(c).await.map(|_| ()),
                None => Ok(()),
            }
        })
        .await;
        let found = match asked {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("the database cannot be reached: {e}")),
            Err(_) => Some(format!("the database did not answer within {} ms", HEALTH_WAIT.as_millis())),
        };
        if found.is_some() {
            conn = None;
        }
        let mut why = health.why.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&*why, &found) {
            (None, Some(w)) => tracing::error!("{w}; requests that need it are refused until it answers"),
            (Some(_), None) => tracing::warn!("the database answers again"),
            _ => {}
        }
        health.down.store(found.is_some(), std::sync::atomic::Ordering::Release);
        *why = found;
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
