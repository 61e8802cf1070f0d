//! `migrate-data`: copies an embedded instance (SQLite + filesystem) to PostgreSQL (and its
//! blobs to S3). Rows are copied table by table in foreign-key order with their ids, in
//! batches, with `ON CONFLICT DO NOTHING`, so an interrupted run can simply be run again;
//! identity sequences are moved past the copied ids. Blobs are hashed while they stream into
//! one multipart upload each and committed only when the digest matches. Afterwards every
//! table's row count and every recorded blob's presence and size are compared.

use futures_util::TryStreamExt;
use portcullis_core::error::{Error, Result};
use portcullis_core::ports::BlobStore;
use sqlx::{QueryBuilder, Row};

use crate::sql::db;
use crate::{PgMeta, SqliteMeta};

/// Column kinds: integer, text, bytes, boolean (an INTEGER 0/1 in SQLite).
#[derive(Clone, Copy)]
enum Kind {
    I,
    T,
    B,
    Z,
}
use Kind::*;

/// Tables in foreign-key order, with their columns. A test holds this list to the schema: every
/// table and column is here or in [`NOT_COPIED`].
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "users",
        &[
            ("id", I),
            ("username", T),
            ("password_hash", T),
            ("is_admin", Z),
            ("created_at", I),
            ("disabled", Z),
            ("source", T),
            ("external_id", T),
        ],
    ),
    ("orgs", &[("id", I), ("name", T), ("created_at", I)]),
    ("teams", &[("id", I), ("org_id", I), ("name", T), ("directory_managed", Z)]),
    ("team_members", &[("team_id", I), ("user_id", I), ("source", T)]),
    ("team_permissions", &[("team_id", I), ("repo_path", T), ("permission", T)]),
    (
        "access_tokens",
        &[
            ("id", I),
            ("user_id", I),
            ("label", T),
            ("kind", T),
            ("token_hash", T),
            ("scope", T),
            ("created_at", I),
            ("expires_at", I),
            ("last_used_at", I),
        ],
    ),
    ("repositories", &[("id", I), ("name", T), ("visibility", T), ("created_at", I)]),
    ("blobs", &[("digest", T), ("size", I), ("created_at", I), ("cached", I), ("last_used_at", I)]),
    ("repo_blobs", &[("repo_id", I), ("digest", T)]),
    (
        "manifests",
        &[
            ("repo_id", I),
            ("digest", T),
            ("media_type", T),
            ("content", B),
            ("size", I),
            ("artifact_type", T),
            ("subject", T),
            ("annotations", T),
            ("created_at", I),
        ],
    ),
    ("manifest_blobs", &[("repo_id", I), ("manifest_digest", T), ("blob_digest", T)]),
    ("tags", &[("repo_id", I), ("name", T), ("digest", T), ("updated_at", I)]),
    ("org_settings", &[("org_id", I), ("settings", T), ("updated_at", I)]),
    (
        "exceptions",
        &[
            ("id", I),
            ("org_id", I),
            ("pattern", T),
            ("digest", T),
            ("team", T),
            ("expires_at", I),
            ("reason", T),
            ("created_by", T),
            ("created_at", I),
        ],
    ),
    ("publisher_overrides", &[("namespace", T), ("badge", T), ("updated_by", T), ("updated_at", I)]),
    (
        "exception_requests",
        &[
            ("id", I),
            ("org_id", I),
            ("requester", T),
            ("image", T),
            ("digest", T),
            ("reason", T),
            ("status", T),
            ("created_at", I),
            ("decided_by", T),
            ("decided_at", I),
            ("note", T),
            ("exception_id", I),
            ("denial", T),
        ],
    ),
    ("signing_keys", &[("kid", T), ("pkcs8", B), ("created_at", I)]),
    (
        "scim_tokens",
        &[
            ("id", I),
            ("org_id", I),
            ("name", T),
            ("token_hash", T),
            ("created_by", T),
            ("created_at", I),
            ("last_used_at", I),
        ],
    ),
    ("scim_users", &[("user_id", I), ("org_id", I), ("attrs", T), ("updated_at", I)]),
    ("scim_groups", &[("team_id", I), ("attrs", T), ("updated_at", I)]),
    ("team_settings", &[("team_id", I), ("settings", T), ("updated_at", I)]),
    ("hub_badges", &[("namespace", T), ("badge", T), ("expires_at", I)]),
    ("workload_issuers", &[("name", T), ("issuer", T), ("document", T), ("created_by", T), ("created_at", I)]),
    (
        "policy_versions",
        &[("org_id", I), ("version", I), ("author", T), ("created_at", I), ("summary", T), ("state", T)],
    ),
    (
        "audit_log",
        &[
            ("id", I),
            ("at", I),
            ("org", T),
            ("actor", T),
            ("action", T),
            ("image", T),
            ("digest", T),
            ("category", T),
            ("rule", T),
            ("decision", T),
            ("client", T),
            ("user_agent", T),
            ("detail", T),
        ],
    ),
];

/// Tables that are not moved, and why (`migrate-data` says so).
pub const NOT_COPIED: &[(&str, &str)] = &[
    ("uploads", "uploads in progress: clients start them again"),
    ("sessions", "console sessions: users sign in again"),
    ("used_once", "used sign-in states: they expire within minutes"),
    ("login_failures", "sign-in throttling: counts expire within the hour"),
    ("leases", "replica leases: held by running processes"),
    ("generation", "the change counter replicas follow: the destination keeps its own"),
    ("schema_migrations", "the destination's migrations are its own"),
];

/// Tables whose `id` is an identity column.
const IDENTITY: &[&str] = &[
    "users",
    "orgs",
    "teams",
    "access_tokens",
    "repositories",
    "exceptions",
    "exception_requests",
    "audit_log",
    "scim_tokens",
];

const BATCH: usize = 500;

enum Val {
    I(Option<i64>),
    T(Option<String>),
    B(Option<Vec<u8>>),
    Z(Option<bool>),
}

/// What was copied and what the check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// (table, rows in the source, rows in the destination).
    pub tables: Vec<(String, i64, i64)>,
    pub blobs_copied: u64,
    pub blobs_present: u64,
    pub bytes_copied: u64,
}

fn value(r: &sqlx::sqlite::SqliteRow, i: usize, k: Kind) -> Result<Val> {
    Ok(match k {
        I => Val::I(r.try_get(i).map_err(db)?),
        T => Val::T(r.try_get(i).map_err(db)?),
        B => Val::B(r.try_get(i).map_err(db)?),
        Z => Val::Z(r.try_get::<Option<i64>, _>(i).map_err(db)?.map(|v| v != 0)),
    })
}

async fn insert(to: &PgMeta, table: &str, names: &str, batch: &mut Vec<Vec<Val>>) -> Result<()> {
    let mut qb: QueryBuilder<sqlx::Postgres> = QueryBuilder::new(format!("INSERT INTO {table} ({names}) "));
    qb.push_values(batch.drain(..), |mut b, row| {
        for v in row {
            match v {
                Val::I(x) => b.push_bind(x),
                Val::T(x) => b.push_bind(x),
                Val::B(x) => b.push_bind(x),
                Val::Z(x) => b.push_bind(x),
            };
        }
    });
    qb.push(" ON CONFLICT DO NOTHING");
    qb.build().execute(&to.write).await.map_err(db)?;
    Ok(())
}

/// Copies every table; `progress(table, rows so far)`. Returns (table, source rows, destination
/// rows) for each table.
pub async fn copy_metadata(
    from: &SqliteMeta,
    to: &PgMeta,
    mut progress: impl FnMut(&str, u64),
) -> Result<Vec<(String, i64, i64)>> {
    let mut out = Vec::new();
    for (table, cols) in TABLES {
        let names = cols.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
        // Table and column names are the constants above, never input.
        let select = sqlx::AssertSqlSafe(format!("SELECT {names} FROM {table}"));
        let mut rows = sqlx::query(select).fetch(&from.read);
        let mut batch = Vec::with_capacity(BATCH);
        let mut done = 0u64;
        while let Some(r) = rows.try_next().await.map_err(db)? {
            batch.push(cols.iter().enumerate().map(|(i, (_, k))| value(&r, i, *k)).collect::<Result<Vec<_>>>()?);
            if batch.len() == BATCH {
                insert(to, table, &names, &mut batch).await?;
                done += BATCH as u64;
                progress(table, done);
            }
        }
        done += batch.len() as u64;
        if !batch.is_empty() {
            insert(to, table, &names, &mut batch).await?;
        }
        progress(table, done);
        if IDENTITY.contains(table) {
            let next = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
            );
            sqlx::query(sqlx::AssertSqlSafe(next)).execute(&to.write).await.map_err(db)?;
        }
        let count = || sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let (src,): (i64,) = sqlx::query_as(count()).fetch_one(&from.read).await.map_err(db)?;
        let (dst,): (i64,) = sqlx::query_as(count()).fetch_one(&to.read).await.map_err(db)?;
        out.push((table.to_string(), src, dst));
    }
    Ok(out)
}

/// Copies the recorded blobs that `to` lacks, each verified against its digest
/// before it becomes visible. Returns (copied, already present, bytes copied).
pub async fn copy_blobs(
    recorded: &[portcullis_core::model::BlobRow],
    from: &dyn BlobStore,
    to: &crate::S3Blobs,
    mut progress: impl FnMut(usize, u64),
) -> Result<(u64, u64, u64)> {
    let (mut copied, mut present, mut bytes) = (0, 0, 0);
    for (i, portcullis_core::model::BlobRow { digest, size }) in recorded.iter().enumerate() {
        match to.stat(digest).await? {
            Some(s) if s == *size => present += 1,
            Some(s) => return Err(Error::Conflict(format!("{digest} has {s} bytes at the destination, not {size}"))),
            None => {
                let stream = from.read(digest, 0, *size).await?;
                bytes += to.put_verified(digest, stream).await?;
                copied += 1;
            }
        }
        progress(i + 1, bytes);
    }
    Ok((copied, present, bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{NOT_COPIED, TABLES};

    /// Every (table, column) a migrated SQLite database has: what `copy_metadata` reads.
    async fn schema() -> BTreeSet<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&store.read)
        .await
        .unwrap();
        rows.into_iter().collect()
    }

    #[tokio::test]
    async fn every_table_and_column_is_copied_or_left_on_purpose() {
        let schema = schema().await;
        let listed: BTreeSet<(String, String)> =
            TABLES.iter().flat_map(|(t, cols)| cols.iter().map(move |(c, _)| (t.to_string(), c.to_string()))).collect();
        let left: BTreeSet<&str> = NOT_COPIED.iter().map(|(t, _)| *t).collect();
        let forgotten: Vec<_> =
            schema.iter().filter(|(t, _)| !left.contains(t.as_str())).filter(|tc| !listed.contains(*tc)).collect();
        assert!(forgotten.is_empty(), "columns migrate-data would silently drop: {forgotten:?}");
        let unknown: Vec<_> = listed.difference(&schema).collect();
        assert!(unknown.is_empty(), "columns copied that the schema does not have: {unknown:?}");
        let tables: BTreeSet<&str> = schema.iter().map(|(t, _)| t.as_str()).collect();
        let stale: Vec<_> = left.difference(&tables).collect();
        assert!(stale.is_empty(), "tables left out that the schema does not have: {stale:?}");
    }
}
