//! SQLite metadata store: WAL journal, foreign keys, busy timeout, one writer connection and a
//! small pool of readers. The queries are the shared ones of `sql.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::migrate::SQLITE_DIALECT;
use crate::sql::*;

pub struct SqliteMeta {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
    stats: BackendStats,
}

impl SqliteMeta {
    /// The embedded database is always there.
    fn unreachable_now(&self) -> Option<portcullis_core::ports::Outage> {
        None
    }

    /// This process is the database's only writer: nobody else to tell of changes.
    fn take_changes(&self) -> Option<tokio::sync::mpsc::Receiver<portcullis_core::ports::Change>> {
        None
    }

    async fn settle_writes(&self) -> Result<()> {
        Ok(())
    }

    async fn answer_settle(&self, _token: &str) -> Result<()> {
        Ok(())
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteMeta> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // No ping before each use: a connection to a local file does not go stale as a network
        // one does, and the ping is a round trip to the connection's worker thread per query.
        let pool = || SqlitePoolOptions::new().test_before_acquire(false);
        let write = pool().max_connections(1).connect_with(opts.clone()).await.map_err(db)?;
        let store = SqliteMeta {
            read: pool().max_connections(4).connect_with(opts.read_only(true)).await.map_err(db)?,
            write,
            stats: BackendStats::new("database", "sqlite"),
        };
        migrate!(store.write, SQLITE_DIALECT).await?;
        Ok(store)
    }
}

impl crate::measure::Guarded for SqliteMeta {}

meta_store!(SqliteMeta, Sqlite);

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_meta_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
        crate::testsuite::meta_suite(&store).await;
        // Reopening applies no migration twice and keeps the data.
        drop(store);
        let store = super::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
        assert!(portcullis_core::ports::IdentityStore::user_by_name(&store, "alice").await.unwrap().is_some());
    }
}
