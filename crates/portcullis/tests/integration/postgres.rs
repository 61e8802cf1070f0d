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

/// A TCP forwarder to PostgreSQL that can be cut, as by a network partition: while cut, bytes
/// stop flowing on its connections and new ones are accepted but never answered; when it is
/// mended, the frozen connections are closed (as a restarted server's are) and new ones flow.
struct Cut {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cut {
    async fn start(target: String) -> Cut {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let cs = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (target, mut watch) = (target.clone(), watch.clone());
                let h = tokio::spawn(async move {
                    let frozen = |w: &tokio::sync::watch::Receiver<bool>| *w.borrow();
                    if frozen(&watch) {
                        return std::future::pending().await;
                    }
                    let Ok(mut out) = tokio::net::TcpStream::connect(target).await else { return };
                    let (mut a, mut b) = ([0u8; 16384], [0u8; 16384]);
                    loop {
                        tokio::select! {
                            n = inbound.read(&mut a) => match n {
                                Ok(n) if n > 0 && out.write_all(&a[..n]).await.is_ok() => {}
                                _ => return,
                            },
                            n = out.read(&mut b) => match n {
                                Ok(n) if n > 0 && inbound.write_all(&b[..n]).await.is_ok() => {}
                                _ => return,
                            },
                            _ = watch.changed() => if frozen(&watch) {
                                return std::future::pending().await;
                            },
                        }
                    }
                });
                cs.lock().unwrap().push(h.abort_handle());
            }
        });
        Cut { port, cut, conns, task }
    }

    fn set(&self, cut: bool) {
        if !cut {
            self.conns.lock().unwrap().drain(..).for_each(|h| h.abort());
        }
        let _ = self.cut.send(cut);
    }

    /// `url` with its host's port replaced by this forwarder's.
    fn url(&self, url: &str) -> String {
        let (head, rest) = url.split_once('@').unwrap();
        let (host_port, path) = rest.split_once('/').unwrap();
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
        format!("{head}@{host}:{}/{path}", self.port)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.task.abort();
        self.conns.lock().unwrap().drain(..).for_each(|h| h.abort());
    }
}

/// `url`'s `host:port`.
fn authority(url: &str) -> String {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').unwrap().0.to_owned()
}

/// PostgreSQL goes away while the gateway runs: within a second `/readyz` says so; pulls of
/// what the replica holds go on, decided on its last snapshot (a pull it denied stays denied),
/// audited once the database is back, and refused when the outage outlasts
/// `database.outage_grace_secs`; requests that need the database are refused at once with the
/// reason (not after the pool's 10 s); when it is back, everything works again with no manual
/// step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_said_at_once_and_recovered_from_by_itself() {
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let cut = Cut::start(authority(&db.url)).await;
    let url = cut.url(&db.url);
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("layout"));
    let hub = crate::upstreams::Registry::start().await;
    hub.push(&layout.dir, "tiny", "library/tiny:1");
    let ups = format!("[{{registry=\"docker.io\",url=\"http://{}\"}}]", hub.addr());
    let mut env = crate::support::scale_env(&db, &bucket);
    env.retain(|(k, _)| *k != "PORTCULLIS_DATABASE__URL");
    env.extend([
        ("PORTCULLIS_DATABASE__URL", url.as_str()),
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_DATABASE__OUTAGE_GRACE_SECS", "6"),
        ("PORTCULLIS_UPSTREAMS", ups.as_str()),
    ]);
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    s.create_user("alice").await;
    crate::support::acme_with_member_bob(&s).await;
    let (gw, creds) = (s.addr(), format!("alice:{}", pw("alice")));
    assert!(crate::support::skopeo_push(&layout.dir, "tiny", &gw, &creds, "acme/app:1").0);
    // bob's own repository is a community image, which acme restricts
    assert!(crate::support::skopeo_push(&layout.dir, "tiny", &gw, &format!("bob:{}", pw("bob")), "bob/tool:1").0);
    let on = serde_json::json!({"restricted_images": {"enabled": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &pw("alice")), Some(on)).await.0, 200);
    // pulled before the outage (so held), with tokens taken before it; the cached image twice
    // (the first pull fills the cache, the second is served from it)
    assert!(crate::support::skopeo_pull(&gw, &creds, "acme/app:1", &work.path().join("p0")).0);
    for i in 0..2 {
        let (ok, out) = crate::support::skopeo_pull(&gw, &creds, "library/tiny:1", &work.path().join(format!("h{i}")));
        assert!(ok, "{out}");
    }
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull"]).await;
    let tb = s.token(Some(("bob", &pw("bob"))), &["repository:bob/tool:pull"]).await;
    let server = &s;
    let get = move |path: String, token: String| async move {
        server.req("GET", &path, Some(&token)).await.send().await.unwrap()
    };
    let manifest = get("/v2/acme/app/manifests/1".into(), t.clone()).await;
    assert_eq!(manifest.status(), 200);
    let digest = manifest.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    let body: serde_json::Value = manifest.json().await.unwrap();
    let layer = body["layers"][0]["digest"].as_str().unwrap().to_owned();
    let layer_bytes = s.get_bytes(&format!("/v2/acme/app/blobs/{layer}"), &t).await;
    assert_eq!(get("/v2/bob/tool/manifests/1".into(), tb.clone()).await.status(), 403);
    let ready = || async { s.http.get(s.url("/readyz")).send().await.unwrap() };
    assert_eq!(ready().await.status(), 200);

    cut.set(true);
    let started = std::time::Instant::now();
    loop {
        let r = ready().await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        // the health check's finding (before it, the pool's own failure may show)
        if status == 503 && body["problems"][0].as_str().unwrap_or_default().contains("the database") {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "/readyz did not notice: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // (about a second: a check every 250 ms that waits 700 ms; generous for a loaded machine)
    let noticed = started.elapsed();
    assert!(noticed < std::time::Duration::from_secs(3), "noticed after {noticed:?}");
    eprintln!("the outage was noticed after {noticed:?}");
    // what the replica holds is still pulled, decided on its last snapshot
    let r = get("/v2/acme/app/manifests/1".into(), t.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(s.get_bytes(&format!("/v2/acme/app/blobs/{layer}"), &t).await, layer_bytes);
    let r = get("/v2/bob/tool/manifests/1".into(), tb.clone()).await;
    assert_eq!(r.status(), 403, "the last snapshot's denial stands");
    // real clients, which sign in for every pull: a sign-in that worked lately works again, and
    // the hosted and the cached image are pulled whole
    for (image, dst) in [("acme/app:1", "o1"), ("library/tiny:1", "o2")] {
        let (ok, out) = crate::support::skopeo_pull(&gw, &creds, image, &work.path().join(dst));
        assert!(ok, "{image} through the outage: {out}");
    }
    let (ok, out) =
        crate::support::skopeo_pull(&gw, &format!("alice:{}", "wrong"), "acme/app:1", &work.path().join("o3"));
    assert!(!ok && out.contains("503"), "an unknown secret is not signed in: {out}");
    // what it does not hold is refused at once, with the reason
    let asked = std::time::Instant::now();
    let r = get(format!("/v2/acme/app/manifests/sha256:{}", "0".repeat(64)), t.clone()).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("the database"));
    // writes and sign-ins that need the database: refused at once, each surface in its own format
    let (st, v) = s.api("GET", "/api/v1/orgs/acme", ("alice", &pw("alice")), None).await;
    assert!(st == 503 && v["message"].as_str().unwrap().contains("the database"), "{st} {v}");
    let r = s.http.get(s.url("/token?service=portcullis")).basic_auth("bob", Some(pw("alice"))).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("UNAVAILABLE"));
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(3),
        "took {:?} (the pool would wait 10 s)",
        asked.elapsed()
    );
    let (ok, out) = crate::support::skopeo_push(&layout.dir, "tiny", &gw, &creds, "acme/app:2");
    assert!(!ok && out.contains("503"), "{out}");
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200, "the process is alive");
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let served = metrics.lines().find_map(|l| l.strip_prefix("portcullis_database_outage_requests_total ")).unwrap();
    assert!(served.parse::<u64>().unwrap() >= 3, "{served}");
    // past the grace, the last snapshot is no longer trusted
    let past = std::time::Duration::from_millis(6_500) + noticed;
    tokio::time::sleep(past.saturating_sub(started.elapsed())).await;
    let r = get("/v2/acme/app/manifests/1".into(), t.clone()).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("longer than the 6 s"));

    // back: ready again, and pushes and pulls work with no manual step
    cut.set(false);
    let started = std::time::Instant::now();
    while ready().await.status() != 200 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "/readyz did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ok, out) = crate::support::skopeo_push(&layout.dir, "tiny", &gw, &creds, "acme/app:2");
    assert!(ok, "{out}");
    assert!(crate::support::skopeo_pull(&gw, &creds, "acme/app:1", &work.path().join("p")).0);
    // the pulls decided through the outage were held and audited once it ended: bob's denial
    // before it and the one during it
    let denials = || async {
        let (_, log) = s.admin("GET", "/api/v1/audit?action=pull", None).await;
        log.as_array().unwrap().iter().filter(|e| e["actor"] == "bob" && e["decision"] == "denied").count()
    };
    let started = std::time::Instant::now();
    while denials().await < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the outage's denial was not audited");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
