//! Forward-only schema migrations, embedded in the binary and applied at start. Each backend
//! has its own directory with the same numbering; one runner ([`migrate!`]) applies either set:
//! all pending migrations in one transaction (under an advisory lock on PostgreSQL, so that
//! replicas starting together apply each once), recorded in `schema_migrations`. A database
//! that a newer portcullis has migrated further is refused before anything is applied.

/// A backend's migrations and how its runner locks and records them.
pub(crate) struct Dialect {
    pub migrations: &'static [(i64, &'static str, &'static str)],
    /// Taken first inside the transaction (PostgreSQL's advisory lock), if any.
    pub lock: Option<&'static str>,
    pub create_table: &'static str,
}

pub(crate) const SQLITE_DIALECT: Dialect = Dialect {
    migrations: SQLITE,
    lock: None,
    create_table: "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
};

/// `pg_advisory_xact_lock` of an arbitrary constant naming the migration lock.
pub(crate) const POSTGRES_DIALECT: Dialect = Dialect {
    migrations: POSTGRES,
    lock: Some("SELECT pg_advisory_xact_lock(31634514500217191)"),
    create_table: "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
};

/// The error for a database migrated by a newer portcullis than this one.
pub(crate) fn too_new(found: i64, known: i64) -> portcullis_core::Error {
    portcullis_core::Error::Invalid(format!(
        "the database has schema version {found}, but this portcullis knows versions up to {known}: it was written by a \
         newer portcullis. Run that version (or newer), or restore a backup taken before the upgrade; nothing was changed"
    ))
}

/// Applies the pending migrations of `$dialect` through `$pool` (an expression evaluating to a
/// `Result<()>`).
macro_rules! migrate {
    ($pool:expr, $dialect:expr) => {
        async {
            let dialect: &$crate::migrate::Dialect = &$dialect;
            let mut tx = $pool.begin().await.map_err(db)?;
            if let Some(lock) = dialect.lock {
                sqlx::query(lock).execute(&mut *tx).await.map_err(db)?;
            }
            sqlx::query(dialect.create_table).execute(&mut *tx).await.map_err(db)?;
            let done: Vec<(i64,)> =
                sqlx::query_as("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await.map_err(db)?;
            let known = dialect.migrations.last().map(|m| m.0).unwrap_or(0);
            if let Some(found) = done.iter().map(|(v,)| *v).max().filter(|v| *v > known) {
                return Err($crate::migrate::too_new(found, known));
            }
            for (version, name, sql) in dialect.migrations {
                if done.iter().any(|(v,)| v == version) {
                    continue;
                }
                sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db)?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(version)
                    .bind(name)
                    .bind(portcullis_core::clock::system_now())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        }
    };
}

/// (version, name, SQL) of every SQLite migration, in order.
pub const SQLITE: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, "pull_through_cache", include_str!("../../../migrations/sqlite/0002_pull_through_cache.sql")),
    (3, "image_access_management", include_str!("../../../migrations/sqlite/0003_image_access_management.sql")),
    (4, "audit_log", include_str!("../../../migrations/sqlite/0004_audit_log.sql")),
    (5, "publisher_overrides", include_str!("../../../migrations/sqlite/0005_publisher_overrides.sql")),
    (6, "console", include_str!("../../../migrations/sqlite/0006_console.sql")),
    (7, "replicas", include_str!("../../../migrations/sqlite/0007_replicas.sql")),
    (8, "login_failures", include_str!("../../../migrations/sqlite/0008_login_failures.sql")),
    (9, "leases", include_str!("../../../migrations/sqlite/0009_leases.sql")),
    (10, "upload_hash_state", include_str!("../../../migrations/sqlite/0010_upload_hash_state.sql")),
    (11, "accounts", include_str!("../../../migrations/sqlite/0011_accounts.sql")),
    (12, "directory", include_str!("../../../migrations/sqlite/0012_directory.sql")),
    (13, "scim", include_str!("../../../migrations/sqlite/0013_scim.sql")),
    (14, "team_rules_and_history", include_str!("../../../migrations/sqlite/0014_team_rules_and_history.sql")),
    (15, "delegation", include_str!("../../../migrations/sqlite/0015_delegation.sql")),
    (16, "exception_ids", include_str!("../../../migrations/sqlite/0016_exception_ids.sql")),
    (17, "workload_issuers", include_str!("../../../migrations/sqlite/0017_workload_issuers.sql")),
];

/// The PostgreSQL migrations: the same versions, in PostgreSQL's dialect.
pub const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/postgres/0001_init.sql")),
    (2, "pull_through_cache", include_str!("../../../migrations/postgres/0002_pull_through_cache.sql")),
    (3, "image_access_management", include_str!("../../../migrations/postgres/0003_image_access_management.sql")),
    (4, "audit_log", include_str!("../../../migrations/postgres/0004_audit_log.sql")),
    (5, "publisher_overrides", include_str!("../../../migrations/postgres/0005_publisher_overrides.sql")),
    (6, "console", include_str!("../../../migrations/postgres/0006_console.sql")),
    (7, "replicas", include_str!("../../../migrations/postgres/0007_replicas.sql")),
    (8, "login_failures", include_str!("../../../migrations/postgres/0008_login_failures.sql")),
    (9, "leases", include_str!("../../../migrations/postgres/0009_leases.sql")),
    (10, "upload_hash_state", include_str!("../../../migrations/postgres/0010_upload_hash_state.sql")),
    (11, "accounts", include_str!("../../../migrations/postgres/0011_accounts.sql")),
    (12, "directory", include_str!("../../../migrations/postgres/0012_directory.sql")),
    (13, "scim", include_str!("../../../migrations/postgres/0013_scim.sql")),
    (14, "team_rules_and_history", include_str!("../../../migrations/postgres/0014_team_rules_and_history.sql")),
    (15, "delegation", include_str!("../../../migrations/postgres/0015_delegation.sql")),
    (16, "exception_ids", include_str!("../../../migrations/postgres/0016_exception_ids.sql")),
    (17, "workload_issuers", include_str!("../../../migrations/postgres/0017_workload_issuers.sql")),
    (18, "change_announcements", include_str!("../../../migrations/postgres/0018_change_announcements.sql")),
];
