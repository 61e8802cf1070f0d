//! Forward-only schema migrations, embedded in the binary and applied at start. Each backend
//! has its own directory with the same numbering.

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
];
