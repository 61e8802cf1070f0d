//! Two replicas on one PostgreSQL database and one S3 bucket, behind a local nginx load
//! balancer: skopeo pushes and pulls through the balancer (requests land on both), tokens of
//! one verify on the other (also after a key rotation), an owner's settings change through one
//! replica denies a member's next pull through the other as soon as the change is answered
//! (and no write through one is ever served stale by the other after its answer), a chunked upload split
//! across the replicas completes, ten concurrent cold pulls of one blob through both replicas make
//! one upstream fetch, failed sign-ins on both meet one limit, and when the replica serving a
//! cold pull is killed mid-transfer, the client's ranged retry is served by the other.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{ADMIN_PW, Server, pw, run, sha256, skopeo_pull};
use crate::upstreams::{FaultProxy, Registry};

/// nginx balancing round-robin over `backends`; its access log and the `X-Replica` response
/// header name the backend of each request.
struct Balancer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Balancer {
    async fn start(backends: &[String]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let servers: String = backends.iter().map(|b| format!("server {b} max_fails=1 fail_timeout=30s;\n")).collect();
        let d = dir.path().display();
        let conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             log_format up '$upstream_addr $request';\naccess_log {d}/access.log up;\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             upstream replicas {{\n{servers}}}\n\
             server {{ listen 127.0.0.1:{port};\n client_max_body_size 0;\n\
             location / {{ proxy_pass http://replicas; proxy_http_version 1.1; proxy_set_header Host $http_host;\n\
             proxy_request_buffering off; proxy_buffering off; proxy_next_upstream error timeout;\n\
             add_header X-Replica $upstream_addr always; }} }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf"), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx-light)");
        crate::support::wait_for_port(port, "nginx", 10).await;
        Balancer { child, port, dir }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The backends that served requests so far.
    fn backends_used(&self) -> std::collections::BTreeSet<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().filter_map(|l| l.split(' ').next()).filter(|a| a.starts_with("127.")).map(str::to_owned).collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_a_balancer_agree() {
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("layout"));
    let hub = Registry::start().await;
    hub.push(&layout.dir, "tiny", "library/tiny:1");
    hub.push(&layout.dir, "tiny", "someone/app:1");
    let layer: Vec<u8> = (0..6_000_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let big_layer = crate::proxy::upstream_image(&hub, "someone/big", "1", &layer).await;
    let huge: Vec<u8> = (0..32_000_000u32).map(|i| (i * 17 % 239) as u8).collect();
    let huge_layer = crate::proxy::upstream_image(&hub, "someone/huge", "1", &huge).await;
    let fp = FaultProxy::start(&hub).await;
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let ups = format!("[{{registry=\"docker.io\",url=\"http://{}\"}}]", fp.addr());
    let mut env = crate::support::scale_env(&db, &bucket);
    env.extend([("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW), ("PORTCULLIS_UPSTREAMS", ups.as_str())]);
    let a = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    let b = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    let lb = Balancer::start(&[a.addr(), b.addr()]).await;
    // users and the org through one replica, used through the other
    for u in ["alice", "bob"] {
        a.create_user(u).await;
    }
    b.create_org("acme", "alice").await;
    let ap = pw("alice");
    assert_eq!(a.api("POST", "/api/v1/orgs/acme/teams", ("alice", &ap), Some(json!({"name": "dev"}))).await.0, 201);
    let bob = json!({"username": "bob"});
    assert_eq!(b.api("POST", "/api/v1/orgs/acme/teams/dev/members", ("alice", &ap), Some(bob)).await.0, 201);

    // push and pull through the balancer: requests land on both replicas
    let creds = format!("alice:{ap}");
    let (ok, out) = crate::support::skopeo_push(&layout.dir, "multi", &lb.addr(), &creds, "acme/app:1");
    assert!(ok, "{out}");
    assert!(skopeo_pull(&lb.addr(), &creds, "acme/app:1", &work.path().join("p1")).0);
    assert_eq!(lb.backends_used().len(), 2, "both replicas served: {:?}", lb.backends_used());

    // a token from one replica works on the other, also after a key rotation
    let scope = ["repository:acme/app:pull,push"];
    let t = a.token(Some(("alice", &ap)), &scope).await;
    assert_eq!(b.req("GET", "/v2/acme/app/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    let mut rotate = crate::support::portcullis(a.dir.path());
    rotate.args(["admin", "rotate-key"]).envs(env.iter().copied());
    let (ok, out) = run(&mut rotate);
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t2 = b.token(Some(("alice", &ap)), &scope).await;
    let kid = |t: &str| {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<serde_json::Value>(&h).unwrap()["kid"].as_str().unwrap().to_owned()
    };
    assert_ne!(kid(&t), kid(&t2), "the new key signs");
    assert!(out.contains(&kid(&t2)), "{out}");
    for (s, tok) in [(&a, &t), (&a, &t2), (&b, &t)] {
        assert_eq!(s.req("GET", "/v2/acme/app/manifests/1", Some(tok)).await.send().await.unwrap().status(), 200);
    }

    // a settings change through one replica binds pulls through the other within a second
    let bob_creds = format!("bob:{}", pw("bob"));
    assert!(skopeo_pull(&b.addr(), &bob_creds, "someone/app:1", &work.path().join("p2")).0);
    let on = json!({"restricted_images": {"enabled": true}});
    assert_eq!(a.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(on)).await.0, 200);
    let (ok, out) = skopeo_pull(&b.addr(), &bob_creds, "someone/app:1", &work.path().join("p3"));
    assert!(!ok && out.contains("community image docker.io/someone/app is not allowed"), "{out}");

    // a workload issuer the administrator trusts through one replica signs workloads in at the
    // other, and stops there within a second when removed
    let issuer = crate::workloads::TestIssuer::start().await;
    let admin = ("admin", ADMIN_PW);
    let cluster = json!({"name": "cluster", "issuer": issuer.url, "jwks": issuer.jwks});
    assert_eq!(a.api("POST", "/api/v1/workload-issuers", admin, Some(cluster)).await.0, 201);
    let rule =
        json!({"workloads": {"rules": [{"issuer": "cluster", "claims": {"namespace": "ci-*"}, "teams": ["dev"]}]}});
    assert_eq!(b.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(rule)).await.0, 200);
    let jwt = issuer.sa_token("ci-web", "builder");
    let sign_in = |s: &Server| {
        let url = s.url("/token?service=portcullis&scope=repository:acme/app:pull");
        let jwt = jwt.clone();
        async move {
            let r = reqwest::Client::new().get(url).basic_auth("workload", Some(jwt)).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(sign_in(&b).await, 200);
    assert_eq!(b.api("DELETE", "/api/v1/workload-issuers/cluster", admin, None).await.0, 204);
    assert_eq!(sign_in(&a).await, 401);

    // a chunked upload split across the replicas completes
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256(&data);
    let t2 = a.token(Some(("alice", &ap)), &["repository:acme/chunked:pull,push"]).await;
    let r = a.req("POST", "/v2/acme/chunked/blobs/uploads/", Some(&t2)).await.send().await.unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = r.headers()["location"].to_str().unwrap().to_owned();
    let cut = [0, 1_000_000, 2_000_000, 3_000_000];
    for (i, w) in cut.windows(2).enumerate() {
        let s = if i % 2 == 0 { &b } else { &a };
        let r = s
            .req("PATCH", &loc, Some(&t2))
            .await
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(data[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i} on replica {}", if i % 2 == 0 { "b" } else { "a" });
        loc = r.headers()["location"].to_str().unwrap().to_owned();
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = a.req("PUT", &format!("{loc}{sep}digest={digest}"), Some(&t2)).await.send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(b.get_bytes(&format!("/v2/acme/chunked/blobs/{digest}"), &t2).await, data);
    for s in [&a, &b] {
        let m = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
        let op = |store: &str, backend: &str, op: &str| {
            format!("op_duration_seconds_count{{store=\"{store}\",backend=\"{backend}\",op=\"{op}\"}}")
        };
        assert!(m.contains(&op("database", "postgres", "set_upload_progress")), "{m}");
        assert!(m.contains(&op("blob_store", "s3", "upload_write")), "{m}");
        assert!(!m.contains("op=\"upload_read\""), "the hash state came from the database, no replica read back: {m}");
    }

    // concurrent cold pulls of one blob spread over both replicas: one upstream fetch
    let t = a.token(Some(("alice", &ap)), &["repository:someone/big:pull"]).await;
    assert_eq!(a.req("GET", "/v2/someone/big/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    let path = format!("/v2/someone/big/blobs/{big_layer}");
    let pulls = (0..10).map(|i| {
        let (s, t, path) = (if i % 2 == 0 { &a } else { &b }, t.clone(), path.clone());
        async move { s.get_bytes(&path, &t).await }
    });
    for body in futures_util::future::join_all(pulls).await {
        assert_eq!(sha256(&body), big_layer);
    }
    assert_eq!(fp.count("GET", &big_layer), 1, "one upstream GET for 10 pulls through 2 replicas");

    // failed sign-ins spread over both replicas meet one throttle
    for i in 0..4 {
        let s = if i % 2 == 0 { &a } else { &b };
        assert_eq!(s.api("GET", "/api/v1/me", ("bob", "not-his-password"), None).await.0, 401);
    }
    assert_eq!(b.api("GET", "/api/v1/me", ("bob", "not-his-password"), None).await.0, 429);
    assert_eq!(b.api("GET", "/api/v1/me", ("bob", &pw("bob")), None).await.0, 429);
    assert_eq!(a.api("GET", "/api/v1/me", ("bob", &pw("bob")), None).await.0, 429);

    // the replica serving a cold pull is killed mid-transfer: the client resumes with a Range
    // request (as docker and containerd do) and the other replica, once the dead one's fill
    // lease lapses, fetches the blob and serves the rest
    let t = a.token(Some(("alice", &ap)), &["repository:someone/huge:pull"]).await;
    assert_eq!(a.req("GET", "/v2/someone/huge/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    let url = format!("http://{}/v2/someone/huge/blobs/{huge_layer}", lb.addr());
    let client = reqwest::Client::new();
    let mut resp = client.get(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let serving = resp.headers()["x-replica"].to_str().unwrap().to_owned();
    let mut got = resp.chunk().await.unwrap().unwrap().to_vec();
    let (victim, survivor) = if serving == a.addr() { (a, b) } else { (b, a) };
    drop(victim);
    while let Ok(Some(c)) = resp.chunk().await {
        got.extend_from_slice(&c);
    }
    assert!(got.len() < huge.len(), "the transfer was cut ({} bytes)", got.len());
    let started = Instant::now();
    let range = format!("bytes={}-", got.len());
    let rest = client.get(&url).bearer_auth(&t).header("range", range).send().await.unwrap();
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.headers()["x-replica"].to_str().unwrap(), survivor.addr());
    got.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(sha256(&got), huge_layer, "the resumed pull is whole");
    assert!(started.elapsed() < Duration::from_secs(20), "resumed within the lease time: {:?}", started.elapsed());
    assert!(skopeo_pull(&lb.addr(), &creds, "acme/app:1", &work.path().join("p4")).0);
    assert!(skopeo_pull(&lb.addr(), &creds, "acme/app:1", &work.path().join("p5")).0);
}

/// What one replica answers after another replica's write was answered is never what the write
/// replaced — over many random interleavings of tag moves, manifest deletions, settings
/// changes and blob unlinks, each written through either replica and read through the other at
/// once (its memory warmed with the old answer just before), with tokens taken before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_never_serves_what_another_write_replaced() {
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let mut env = crate::support::scale_env(&db, &bucket);
    env.push(("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW));
    let a = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    let b = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    a.create_user("alice").await;
    crate::support::acme_with_member_bob(&a).await;
    let ap = pw("alice");
    let t = a.token(Some(("alice", &ap)), &["repository:acme/app:pull,push,delete"]).await;
    // bob's own repository, a community image to acme's policy
    let tb = a.token(Some(("bob", &pw("bob"))), &["repository:bob/tool:pull,push"]).await;
    crate::v2::push_image(&a, &tb, "bob/tool", "1", b"tool").await;
    let (_, layer, _) = crate::v2::push_image(&a, &t, "acme/app", "live", b"layer-0").await;
    let config = sha256(br#"{"architecture":"amd64","os":"linux"}"#);

    let status = |s, method, path: String, token| async move { send(s, method, &path, token).await };
    let put_live = |s, n| put_image(s, &t, "acme/app:live", &config, &layer, n);
    let digest_of = |r: &reqwest::Response| r.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    let mut live = Some(digest_of(&status(&a, "GET", "/v2/acme/app/manifests/live".into(), &t).await));
    let mut restricted = false;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut done = [0; 4];
    for n in 1..=48u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (w, r, names) = if seed & 1 == 0 { (&a, &b, "a→b") } else { (&b, &a, "b→a") };
        let op = (seed >> 1) % 4;
        done[op as usize] += 1;
        match op {
            0 => {
                // the tag moves
                let before = status(r, "GET", "/v2/acme/app/manifests/live".into(), &t).await;
                assert_eq!(before.status() == 200, live.is_some());
                let d = put_live(w, n).await;
                let after = status(r, "GET", "/v2/acme/app/manifests/live".into(), &t).await;
                assert_eq!(after.status(), 200, "step {n} ({names})");
                assert_eq!(digest_of(&after), d, "step {n} ({names}): the moved tag");
                live = Some(d);
            }
            1 => {
                // the manifest goes (and its tag with it)
                let d = match &live {
                    Some(d) => d.clone(),
                    None => put_live(w, n).await,
                };
                let path = format!("/v2/acme/app/manifests/{d}");
                assert_eq!(status(r, "GET", path.clone(), &t).await.status(), 200);
                assert_eq!(status(r, "GET", "/v2/acme/app/manifests/live".into(), &t).await.status(), 200);
                assert_eq!(status(w, "DELETE", path.clone(), &t).await.status(), 202);
                assert_eq!(status(r, "GET", path, &t).await.status(), 404, "step {n} ({names}): deleted");
                let tag = status(r, "GET", "/v2/acme/app/manifests/live".into(), &t).await;
                assert_eq!(tag.status(), 404, "step {n} ({names}): the deleted manifest's tag");
                live = None;
            }
            2 => {
                // the owner restricts community images, or lifts the restriction
                let pull = || status(r, "GET", "/v2/bob/tool/manifests/1".into(), &tb);
                assert_eq!(pull().await.status(), if restricted { 403 } else { 200 });
                restricted = !restricted;
                let body = json!({"restricted_images": {"enabled": restricted}});
                assert_eq!(w.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(body)).await.0, 200);
                let after = pull().await.status();
                assert_eq!(after, if restricted { 403 } else { 200 }, "step {n} ({names}): restricted {restricted}");
            }
            _ => {
                // a blob is unlinked from the repository
                let blob = crate::v2::push_blob(w, &t, "acme/app", format!("blob {n}").as_bytes()).await;
                let path = format!("/v2/acme/app/blobs/{blob}");
                assert_eq!(status(r, "GET", path.clone(), &t).await.status(), 200);
                assert_eq!(status(w, "DELETE", path.clone(), &t).await.status(), 202);
                assert_eq!(status(r, "GET", path, &t).await.status(), 404, "step {n} ({names}): unlinked");
            }
        }
    }
    assert!(done.iter().all(|d| *d >= 6), "every kind of write was tried: {done:?}");
}

async fn send(s: &Server, method: &str, path: &str, token: &str) -> reqwest::Response {
    s.req(method, path, Some(token)).await.send().await.unwrap()
}

/// Puts a manifest of `config` and `layer` (of `push_image`'s sizes) that `n` tells apart at
/// `repo:tag`; its digest.
async fn put_image(s: &Server, t: &str, name: &str, config: &str, layer: &str, n: u32) -> String {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let (repo, tag) = name.split_once(':').unwrap();
    let m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 7}],
        "annotations": {"n": n.to_string()},
    })
    .to_string();
    let r = s.req("PUT", &format!("/v2/{repo}/manifests/{tag}"), Some(t)).await;
    let r = r.header("content-type", MANIFEST).body(m.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    sha256(m.as_bytes())
}
