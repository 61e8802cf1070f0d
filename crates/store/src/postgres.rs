//! PostgreSQL metadata store, for several replicas sharing one database. One pool serves reads
//! and writes (PostgreSQL has no single-writer limit); the queries are the shared ones of
//! `sql.rs`; migrations (`migrations/postgres`, same numbering as SQLite, plus 18 of its own)
//! run under an advisory lock so that replicas starting together apply each one once. A health
//! check on a connection of its own asks the server four times a second; while it fails, the
//! store says why (`ClusterStore::unreachable`) and refuses every operation at once — and stops
//! waiting on those already waiting on a connection — rather than each waiting out the pool; it
//! clears by itself when the server answers again. What replicas commit is announced to the
//! others as it commits (`announce.rs`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::*;
use portcullis_core::ports::{Change, Outage};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::watch;

use crate::announce::Announcements;
use crate::measure::Guarded;
use crate::migrate::POSTGRES_DIALECT;
use crate::sql::*;

/// How often the health check asks, and how long it waits for an answer.
const HEALTH_EVERY: Duration = Duration::from_millis(250);
const HEALTH_WAIT: Duration = Duration::from_millis(700);

/// What the health check last found: why the server cannot be reached and since when, or
/// nothing.
struct Health {
    /// Whether `outage` holds one (read on every operation: no lock then); watched by
    /// operations waiting on the server and by the announcements' listener.
    down: watch::Sender<bool>,
    outage: std::sync::RwLock<Option<Outage>>,
}

pub struct PgMeta {
    health: Arc<Health>,
    announcements: Arc<Announcements>,
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
        let health = Arc::new(Health { down: watch::Sender::new(false), outage: Default::default() });
        tokio::spawn(watch_health(opts.clone(), Arc::downgrade(&health)));
        let store = PgMeta {
            announcements: Announcements::start(opts, health.down.subscribe()),
            health,
            write: pool.clone(),
            read: pool,
            stats: BackendStats::new("database", "postgres"),
        };
        migrate!(store.write, POSTGRES_DIALECT).await?;
        Ok(store)
    }

    fn unreachable_now(&self) -> Option<Outage> {
        if !*self.health.down.borrow() {
            return None;
        }
        self.health.outage.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn take_changes(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        self.announcements.take()
    }

    async fn settle_writes(&self) -> Result<()> {
        self.announcements.settle(&self.write).await
    }

    async fn answer_settle(&self, token: &str) -> Result<()> {
        self.announcements.settled(&self.write, token).await
    }
}

impl Guarded for PgMeta {
    /// Refused at once while the server cannot be reached; stops waiting when it stops
    /// answering meanwhile (a partition leaves a pooled connection waiting for minutes).
    async fn guarded<T: Send>(&self, op: impl Future<Output = Result<T>> + Send) -> Result<T> {
        if let Some(o) = self.unreachable_now() {
            return Err(Error::Unavailable(o.why));
        }
        let mut down = self.health.down.subscribe();
        tokio::select! {
            r = op => r,
            _ = down.wait_for(|d| *d) => Err(Error::Unavailable(match self.unreachable_now() {
                Some(o) => format!("{} (while the request waited for it)", o.why),
                None => "the database stopped answering while the request waited for it".into(),
            })),
        }
    }
}

/// The health check: `SELECT 1` on its own connection (a busy pool is not an outage), made
/// again when it broke; ends when the store is dropped.
async fn watch_health(opts: PgConnectOptions, health: std::sync::Weak<Health>) {
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
        let mut outage = health.outage.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&*outage, found) {
            (None, Some(why)) => {
                tracing::error!("{why}; requests that need it are refused until it answers");
                *outage = Some(Outage { why, since: Instant::now() });
            }
            (Some(o), Some(why)) => *outage = Some(Outage { why, since: o.since }),
            (Some(_), None) => {
                tracing::warn!("the database answers again");
                *outage = None;
            }
            (None, None) => {}
        }
        let is_down = outage.is_some();
        drop(outage);
        health.down.send_if_modified(|d| std::mem::replace(d, is_down) != is_down);
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
