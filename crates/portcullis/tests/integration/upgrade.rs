//! Upgrades: a data directory written at the first released schema (migration 0001 only), with
//! a user, an organization and an image, is upgraded by `serve` and serves the same bytes;
//! a database newer than the binary is refused with nothing changed.

use std::path::Path;
use std::str::FromStr;

use argon2::password_hash::{PasswordHasher, SaltString};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::images;
use crate::support::{Server, portcullis, pw, run, skopeo_pull};

async fn open(path: &Path) -> sqlx::SqlitePool {
    let opts = SqliteConnectOptions::from_str("sqlite://").unwrap().filename(path).create_if_missing(true);
    SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap()
}

/// Writes the schema of migration 0001 and, in its shape, user alice, org acme (alice in its
/// owners team) and the layout's `tiny` image as `acme/app:1`.
async fn first_release(dir: &Path, layout: &images::Layout) {
    let db = open(&dir.join("meta.db")).await;
    let (version, name, sql) = store::migrate::SQLITE[0];
    assert_eq!(version, 1);
    sqlx::raw_sql(sql).execute(&db).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO schema_migrations VALUES (?, ?, 1700000000)")
        .bind(version)
        .bind(name)
        .execute(&db)
        .await
        .unwrap();
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").unwrap();
    let hash = argon2::Argon2::default().hash_password(pw("alice").as_bytes(), &salt).unwrap().to_string();
    let blob = |d: &str| std::fs::read(layout.dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest = blob(&layout.tiny);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let parts = [m["config"]["digest"].as_str().unwrap(), m["layers"][0]["digest"].as_str().unwrap()];
    let mut script = format!(
        "INSERT INTO users VALUES (1, 'alice', '{hash}', 0, 1700000000);
         INSERT INTO orgs VALUES (1, 'acme', 1700000000);
         INSERT INTO teams VALUES (1, 1, 'owners');
         INSERT INTO team_members VALUES (1, 1);
         INSERT INTO repositories VALUES (1, 'acme/app', 'private', 1700000000);
         INSERT INTO tags VALUES (1, '1', '{}', 1700000000);",
        layout.tiny
    );
    for d in parts {
        let bytes = blob(d);
        let path = dir.join("blobs/sha256").join(&d[7..9]);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(&d[7..]), &bytes).unwrap();
        script.push_str(&format!(
            "INSERT INTO blobs VALUES ('{d}', {}, 1700000000);
             INSERT INTO repo_blobs VALUES (1, '{d}');
             INSERT INTO manifest_blobs VALUES (1, '{}', '{d}');",
            bytes.len(),
            layout.tiny
        ));
    }
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&db).await.unwrap();
    sqlx::query(
        "INSERT INTO manifests (repo_id, digest, media_type, content, size, created_at) VALUES (1, ?, ?, ?, ?, 1700000000)",
    )
    .bind(&layout.tiny)
    .bind("application/vnd.oci.image.manifest.v1+json")
    .bind(&manifest)
    .bind(manifest.len() as i64)
    .execute(&db)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(script)).execute(&db).await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn the_first_released_schema_upgrades_and_serves() {
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    let dir = tempfile::tempdir().unwrap();
    first_release(dir.path(), &layout).await;

    let s = Server::start_in(dir).await;
    let creds = format!("alice:{}", pw("alice"));
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull"]).await;
    let served = s.get_bytes("/v2/acme/app/manifests/1", &t).await;
    assert_eq!(served, std::fs::read(layout.dir.join("blobs/sha256").join(&layout.tiny[7..])).unwrap());
    // the org, its owner and its (new) default settings came through
    let (status, settings) = s.api("GET", "/api/v1/orgs/acme/settings", ("alice", &pw("alice")), None).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["restricted_images"]["enabled"], false, "{settings}");
    let pulled = work.path().join("pulled");
    let (ok, out) = skopeo_pull(&s.addr(), &creds, "acme/app:1", &pulled);
    assert!(ok, "{out}");
    let dir = s.kill();
    let (ok, out) = run(portcullis(dir.path()).arg("fsck"));
    assert!(ok, "{out}");

    // every migration is recorded once, and the newest is this binary's
    let db = open(&dir.path().join("meta.db")).await;
    let versions: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM schema_migrations ORDER BY version").fetch_all(&db).await.unwrap();
    let known: Vec<(i64,)> = store::migrate::SQLITE.iter().map(|m| (m.0,)).collect();
    assert_eq!(versions, known);

    // a database from a newer portcullis is refused before anything changes
    sqlx::query("INSERT INTO schema_migrations VALUES (9999, 'future', 1)").execute(&db).await.unwrap();
    db.close().await;
    let before = std::fs::read(dir.path().join("meta.db")).unwrap();
    let (ok, out) = run(portcullis(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!ok, "{out}");
    assert!(out.contains("schema version 9999") && out.contains("newer portcullis"), "{out}");
    assert_eq!(std::fs::read(dir.path().join("meta.db")).unwrap(), before, "nothing changed");
}
