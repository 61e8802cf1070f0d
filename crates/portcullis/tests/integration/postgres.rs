//! The server on PostgreSQL (`database.url`) and S3 (`s3.*`, moto standing in): real clients
//! push and pull, the console signs in, after a restart everything is still there — in
//! PostgreSQL and the bucket, not in the data directory — and `fsck` checks the bucket.

use serde_json::json;

use crate::support::{ADMIN_PW, Server, pw, run};
use crate::web::Web;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_postgres_and_s3() {
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let mut env = crate::support::scale_env(&db, &bucket);
    env.push(("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW));
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("layout"));
    let gw = s.addr();
    let creds = format!("alice:{}", pw("alice"));
    let (ok, out) = crate::support::skopeo_push(&layout.dir, "multi", &gw, &creds, "acme/app:1");
    assert!(ok, "{out}");
    assert!(!s.dir.path().join("meta.db").exists(), "no SQLite file when PostgreSQL is configured");
    assert!(!s.dir.path().join("blobs").exists(), "no blob directory when S3 is configured");
    let alice = Web::sign_in(&s, "alice", &pw("alice")).await;
    assert!(alice.get("/orgs/acme/repositories").await.1.contains("index, 2 platforms"));

    // restart: the same data, from PostgreSQL
    let dir = s.kill();
    let s = Server::launch(dir, &env, None, "http").await;
    let (ok, raw) = crate::support::skopeo_inspect_raw(&s.addr(), &creds, "acme/app:1");
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
    fsck.arg("fsck").envs(env.iter().copied());
    let (ok, out) = run(&mut fsck);
    assert!(ok && out.contains("0 bad (0 missing)") && !out.contains("fsck: 0 blobs"), "{out}");
}

/// `migrate-data` from a populated embedded instance: afterwards, on PostgreSQL + S3, every image
/// pulls identically, tokens and settings hold, and the audit log is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_data_moves_an_instance_to_postgres_and_s3() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    let (ap, bp) = (pw("alice"), pw("bob"));
    crate::support::acme_with_member_bob(s).await;
    let gw = s.addr();
    let creds = format!("alice:{ap}");
    let push = |src: &str, dst: &str, gw: &str| crate::support::skopeo_push(&e.layout.dir, src, gw, &creds, dst);
    assert!(push("multi", "acme/app:1", &gw).0);
    assert!(push("tiny", "acme/tool:2", &gw).0);
    let bob_creds = format!("bob:{bp}");
    assert!(crate::support::skopeo_pull(&gw, &bob_creds, "library/tiny:1", &e.work.path().join("a")).0);
    let on = json!({"restricted_images": {"enabled": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(on)).await.0, 200);
    let ex = json!({"pattern": "docker.io/someone/tool", "reason": "vetted"});
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/exceptions", ("alice", &ap), Some(ex)).await.0, 201);
    assert!(!crate::support::skopeo_pull(&gw, &bob_creds, "someone/app:1", &e.work.path().join("b")).0);
    let (_, pat) = s.api("POST", "/api/v1/access-tokens", ("bob", &bp), Some(json!({"label": "ci"}))).await;
    let pat = pat["token"].as_str().unwrap().to_owned();
    let inspect = |gw: &str, name: &str| crate::support::skopeo_inspect_raw(gw, &creds, name).1;
    let raw_before = [inspect(&gw, "acme/app:1"), inspect(&gw, "acme/tool:2")];
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let audit_before = s.api("GET", "/api/v1/orgs/acme/audit?limit=1000", ("alice", &ap), None).await.1;

    let dir = e.s.kill();
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    // The bucket's settings without the bucket (migrate-data names it).
    let scale = crate::support::scale_env(&db, &bucket);
    let s3: Vec<_> =
        scale.iter().copied().filter(|(k, _)| k.starts_with("PORTCULLIS_S3__") && !k.ends_with("BUCKET")).collect();
    let migrate = || {
        let mut c = crate::support::portcullis(&dir.path().join("unused"));
        c.args(["migrate-data", "--from"])
            .arg(dir.path())
            .args(["--to", &db.url, "--blobs-to", &format!("s3://{}", bucket.bucket)])
            .envs(s3.iter().copied());
        run(&mut c)
    };
    let (ok, out) = migrate();
    assert!(ok, "{out}");
    assert!(out.contains("audit_log: ") && out.contains("blobs: 4 copied and verified"), "{out}");
    let (ok, again) = migrate();
    assert!(ok && again.contains("blobs: 0 copied and verified") && again.contains("4 already there"), "{again}");

    // a new server on PostgreSQL + S3, with an empty data directory
    let ups = format!("[{{registry=\"docker.io\",url=\"http://{}\"}}]", e.fp.addr());
    let mut env = scale.clone();
    env.push(("PORTCULLIS_UPSTREAMS", ups.as_str()));
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    let gw = s.addr();
    let audit_after = s.api("GET", "/api/v1/orgs/acme/audit?limit=1000", ("alice", &ap), None).await.1;
    assert_eq!(audit_after, audit_before, "the audit log, complete");
    assert_eq!([inspect(&gw, "acme/app:1"), inspect(&gw, "acme/tool:2")], raw_before, "byte for byte");
    assert!(crate::support::skopeo_pull(&gw, &creds, "acme/app:1", &e.work.path().join("c")).0);
    let (st, me) = s.req("GET", "/api/v1/me", Some(&pat)).await.send().await.map(|r| (r.status(), r)).unwrap();
    assert_eq!(st, 200, "bob's access token still works");
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["username"], "bob");
    let (ok, out) = crate::support::skopeo_pull(&gw, &bob_creds, "someone/app:1", &e.work.path().join("d"));
    assert!(!ok && out.contains("not allowed for members of acme"), "settings still apply: {out}");
    let (_, ex) = s.api("GET", "/api/v1/orgs/acme/exceptions", ("alice", &ap), None).await;
    assert_eq!(ex[0]["pattern"], "docker.io/someone/tool");
    // new rows get new ids after the copied ones
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", ("alice", &ap), Some(json!({"name": "qa"}))).await.0, 201);
}

/// With `s3.redirect`, blob GETs answer 307 to a presigned bucket URL — after the access
/// decision, so someone without access gets the refusal, never a URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_gets_redirect_to_presigned_bucket_urls_after_the_decision() {
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let mut env = crate::support::scale_env(&db, &bucket);
    env.extend([
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_S3__REDIRECT", "true"),
        ("PORTCULLIS_S3__REDIRECT_TTL_SECS", "120"),
    ]);
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    for u in ["alice", "carol"] {
        s.create_user(u).await;
    }
    s.create_org("acme", "alice").await;
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("layout"));
    let creds = format!("alice:{}", pw("alice"));
    let (ok, out) = crate::support::skopeo_push(&layout.dir, "tiny", &s.addr(), &creds, "acme/app:1");
    assert!(ok, "{out}");
    // a real client follows the redirects to the bucket
    let (ok, out) = crate::support::skopeo_pull(&s.addr(), &creds, "acme/app:1", &work.path().join("pulled"));
    assert!(ok, "{out}");

    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let path = format!("/v2/acme/app/blobs/{}", layout.tiny_layer);
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull"]).await;
    let r = no_follow.get(s.url(&path)).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["docker-content-digest"], layout.tiny_layer.as_str());
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    let hex = &layout.tiny_layer["sha256:".len()..];
    assert!(to.starts_with(&format!("{}/{}/blobs/sha256/{hex}?", bucket.endpoint, bucket.bucket)), "{to}");
    assert!(to.contains("X-Amz-Signature=") && to.contains("X-Amz-Expires=120"), "{to}");
    let body = reqwest::get(&to).await.unwrap().bytes().await.unwrap();
    assert_eq!(crate::support::sha256(&body), layout.tiny_layer, "the URL serves the blob, without our token");
    // HEAD is answered here
    let r = no_follow.head(s.url(&path)).bearer_auth(&t).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["content-length"].to_str().unwrap()),
        (200, body.len().to_string().as_str())
    );
    // no access, no URL
    let tc = s.token(Some(("carol", &pw("carol"))), &["repository:acme/app:pull"]).await;
    let r = no_follow.get(s.url(&path)).bearer_auth(&tc).send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 401 | 403 | 404), "{}", r.status());
    assert!(r.headers().get("location").is_none());
    let r = no_follow.get(s.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
