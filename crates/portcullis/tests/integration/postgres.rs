//! The server on PostgreSQL (`database.url`) and S3 (`s3.*`, moto standing in): real clients
//! push and pull, the console signs in, after a restart everything is still there — in
//! PostgreSQL and the bucket, not in the data directory — and `fsck` checks the bucket.

use std::process::Command;

use serde_json::json;

use crate::support::{ADMIN_PW, Server, pw, run};
use crate::web::Web;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_postgres_and_s3() {
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let env = [
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_DATABASE__URL", db.url.as_str()),
        ("PORTCULLIS_S3__BUCKET", bucket.bucket.as_str()),
        ("PORTCULLIS_S3__ENDPOINT", bucket.endpoint.as_str()),
        ("PORTCULLIS_S3__ACCESS_KEY_ID", "test"),
        ("PORTCULLIS_S3__SECRET_ACCESS_KEY", "test"),
        ("PORTCULLIS_S3__PATH_STYLE", "true"),
    ];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("layout"));
    let gw = s.addr();
    let creds = format!("alice:{}", pw("alice"));
    let (ok, out) = run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:multi", layout.dir.display()),
        &format!("docker://{gw}/acme/app:1"),
    ]));
    assert!(ok, "{out}");
    assert!(!s.dir.path().join("meta.db").exists(), "no SQLite file when PostgreSQL is configured");
    assert!(!s.dir.path().join("blobs").exists(), "no blob directory when S3 is configured");
    let alice = Web::sign_in(&s, "alice", &pw("alice")).await;
    assert!(alice.get("/orgs/acme/repositories").await.1.contains("index, 2 platforms"));

    // restart: the same data, from PostgreSQL
    let dir = s.kill();
    let s = Server::launch(dir, &env, None, "http").await;
    let inspect = |gw: &str| {
        run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{gw}/acme/app:1"),
        ]))
    };
    let (ok, raw) = inspect(&s.addr());
    assert!(ok, "{raw}");
    assert_eq!(crate::support::sha256(raw.trim_end().as_bytes()), layout.multi);
    let dst = work.path().join("pulled");
    assert!(crate::support::skopeo_pull(&s.addr(), &creds, "acme/app:1", &dst).0);
    let (st, tags) = s.api("GET", "/api/v1/orgs/acme", ("alice", &pw("alice")), None).await;
    assert_eq!((st, tags["name"].clone()), (200, json!("acme")));
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&mut c).await.unwrap();
    assert_eq!(users, 2, "admin and alice, in PostgreSQL");
    // fsck reads every blob back from the bucket
    let mut fsck = crate::support::portcullis(s.dir.path());
    fsck.arg("fsck").envs(env);
    let (ok, out) = run(&mut fsck);
    assert!(ok && out.contains("0 bad (0 missing)") && !out.contains("fsck: 0 blobs"), "{out}");
}
