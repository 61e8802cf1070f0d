//! SQLite metadata store: WAL journal, foreign keys, busy timeout, one writer connection and a
//! small pool of readers. The queries are the shared ones of `sql.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::migrate::SQLITE;
use crate::sql::*;

pub struct SqliteMeta {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
    stats: BackendStats,
}

impl SqliteMeta {
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
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await.map_err(db)?;
        let store = SqliteMeta {
            read: SqlitePoolOptions::new().max_connections(4).connect_with(opts.read_only(true)).await.map_err(db)?,
            write,
            stats: BackendStats::new("database", "sqlite"),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            .execute(&self.write)
            .await
            .map_err(db)?;
        for (version, name, sql) in SQLITE {
            let mut tx = self.write.begin().await.map_err(db)?;
            let done: Option<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(portcullis_core::now())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
        Ok(())
    }
}

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
        assert!(portcullis_core::ports::MetaStore::user_by_name(&store, "alice").await.unwrap().is_some());
    }
}
