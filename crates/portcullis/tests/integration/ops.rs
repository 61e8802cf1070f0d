//! Operations: TLS, graceful shutdown, first-start bootstrap, JSON logs without secrets,
//! sign-in throttling per client address, organization creation limited to administrators,
//! abandoned uploads purged by `gc`.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{ADMIN_PW, Server, pw, run, sha256};

#[tokio::test]
async fn serves_tls_with_rustls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let (ok, out) = run(&mut self_signed(&cert, &key));
    assert!(ok, "{out}");
    let env = [
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_TLS__CERT", cert.to_str().unwrap()),
        ("PORTCULLIS_TLS__KEY", key.to_str().unwrap()),
    ];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "https").await;
    let url = format!("https://127.0.0.1:{}/v2/", s.port);
    let (ok, out) = run(Command::new("curl").args(["-s", "-i", "--cacert", cert.to_str().unwrap(), &url]));
    assert!(ok && out.starts_with("HTTP/") && out.contains(" 401"), "{out}");
    assert!(out.contains(&format!("realm=\"https://127.0.0.1:{}/token\"", s.port)), "{out}");
    // the console's cookies (the sign-in form's token, then the session) are Secure under TLS
    let login = format!("https://127.0.0.1:{}/login", s.port);
    let jar = certs.path().join("cookies");
    let (ok, page) =
        run(Command::new("curl").args(["-s", "-i", "--cacert", cert.to_str().unwrap(), "-c"]).arg(&jar).arg(&login));
    let cookie = page.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(ok && cookie.contains("pcl_login=") && cookie.contains("; Secure"), "{page}");
    let token = crate::web::csrf_of(&page);
    let form = format!("username=admin&password={ADMIN_PW}&next=/orgs&csrf={token}");
    let (ok, out) = run(Command::new("curl")
        .args(["-s", "-i", "--cacert", cert.to_str().unwrap(), "-b"])
        .arg(&jar)
        .args(["-d", &form, &login]));
    let cookie = out.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(ok && cookie.contains("pcl_session=") && cookie.contains("; Secure"), "{out}");
    // skopeo through TLS with the test CA
    let ca_dir = certs.path().join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(&cert, ca_dir.join("ca.crt")).unwrap();
    let layout = crate::images::make(&certs.path().join("layout"));
    let creds = format!("admin:{ADMIN_PW}");
    let dest = format!("docker://127.0.0.1:{}/admin/tiny:1", s.port);
    let src = format!("oci:{}:tiny", layout.dir.display());
    let (ok, out) = run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-cert-dir",
        ca_dir.to_str().unwrap(),
        "--dest-creds",
        &creds,
        &src,
        &dest,
    ]));
    assert!(ok, "skopeo push over TLS: {out}");
    let repo = format!("docker://127.0.0.1:{}/admin/tiny", s.port);
    let (ok, out) = run(Command::new("skopeo").args([
        "list-tags",
        "--cert-dir",
        ca_dir.to_str().unwrap(),
        "--creds",
        &creds,
        &repo,
    ]));
    assert!(ok && out.contains("\"1\""), "{out}");
    let (ok, _) = run(Command::new("curl").args(["-s", &url]));
    assert!(!ok, "an untrusted certificate is refused by the client");
    // a renewed certificate is taken on SIGHUP, without a restart
    let old = certs.path().join("old.pem");
    std::fs::copy(&cert, &old).unwrap();
    let (ok, out) = run(&mut self_signed(&cert, &key));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("kill").args(["-HUP", &s.child.id().to_string()]));
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, out) = run(Command::new("curl").args(["-s", "-o", "/dev/null", "--cacert", cert.to_str().unwrap(), &url]));
    assert!(ok, "the new certificate is served: {out}");
    let (ok, _) = run(Command::new("curl").args(["-s", "-o", "/dev/null", "--cacert", old.to_str().unwrap(), &url]));
    assert!(!ok, "the old one is not");
}

/// `openssl` making a self-signed certificate for 127.0.0.1 into `cert` and `key`.
fn self_signed(cert: &std::path::Path, key: &std::path::Path) -> Command {
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
    ])
    .arg("-keyout")
    .arg(key)
    .arg("-out")
    .arg(cert);
    c
}

#[tokio::test]
async fn sigterm_drains_running_downloads() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:alice/big:pull,push"]).await;
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let d = sha256(&big);
    let r = s
        .req("POST", &format!("/v2/alice/big/blobs/uploads/?digest={d}"), Some(&t))
        .await
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut resp = s.req("GET", &format!("/v2/alice/big/blobs/{d}"), Some(&t)).await.send().await.unwrap();
    let mut got = resp.chunk().await.unwrap().unwrap().to_vec();
    let (ok, out) = run(Command::new("kill").args(["-TERM", &s.child.id().to_string()]));
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // new connections are refused while the running download completes
    assert!(reqwest::Client::new().get(s.url("/healthz")).send().await.is_err());
    while let Some(c) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert_eq!(sha256(&got), d, "the whole blob arrived after SIGTERM");
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn first_start_prints_a_generated_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("stderr");
    let s = Server::launch(dir, &[], Some(&log), "http").await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("instance administrator")).expect(&text);
    let password = line.split("password ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    assert!(password.len() >= 16);
    assert_eq!(s.api("GET", "/api/v1/me", ("admin", &password), None).await.1["admin"], true);
    let dir = s.kill();
    let log2 = log_dir.path().join("stderr2");
    let _s = Server::launch(dir, &[], Some(&log2), "http").await;
    assert!(!std::fs::read_to_string(&log2).unwrap().contains("instance administrator"), "only on the first start");
}

#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("stderr");
    let env = [("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW), ("PORTCULLIS_LOG__LEVEL", "info")];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, Some(&log), "http").await;
    let r = s.req("GET", "/v2/", None).await.header("x-request-id", "plain-7").send().await.unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("plain-7"), "the request was logged: {text}");
    assert!(!text.contains('\u{1b}'), "no ANSI escape in a file: {text:?}");
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_no_secrets() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("stderr");
    let env = [
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_LOG__FORMAT", "json"),
        ("PORTCULLIS_LOG__LEVEL", "info"),
    ];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, Some(&log), "http").await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:alice/x:pull"]).await;
    let r =
        s.req("GET", "/v2/alice/x/tags/list", Some(&t)).await.header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["fields"]["request_id"] == "trace-42" && l["fields"]["status"] == 404), "{text}");
    for secret in [ADMIN_PW, &pw("alice"), &t] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn throttles_per_client_address_and_limits_org_creation() {
    let env = [("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW), ("PORTCULLIS_AUTH__ORG_CREATION", "admins")];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    s.create_user("alice").await;
    let (st, b) = s.api("POST", "/api/v1/orgs", ("alice", &pw("alice")), Some(json!({"name": "acme"}))).await;
    assert_eq!(st, 403, "{b}");
    assert_eq!(s.admin("POST", "/api/v1/orgs", Some(json!({"name": "acme"}))).await.0, 201);
    // 30 failures with different user names from one address lock the address
    for i in 0..30 {
        let r = s.http.get(s.url("/token")).basic_auth(format!("guess{i}"), Some("x")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = s.http.get(s.url("/token")).basic_auth("alice", Some(pw("alice"))).send().await.unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn enforced_sign_in_admits_only_members_of_allowed_orgs() {
    let env = [("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW), ("PORTCULLIS_AUTH__ALLOWED_ORGS", "[\"acme\"]")];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    for u in ["alice", "carol"] {
        s.create_user(u).await;
    }
    s.create_org("acme", "alice").await;
    let anon = s.token(None, &[]).await;
    let r = s.req("GET", "/v2/", Some(&anon)).await.send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("member of acme"));
    let carol = s.token(Some(("carol", &pw("carol"))), &[]).await;
    let r = s.req("GET", "/v2/", Some(&carol)).await.send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("only members of acme"));
    let alice = s.token(Some(("alice", &pw("alice"))), &[]).await;
    assert_eq!(s.req("GET", "/v2/", Some(&alice)).await.send().await.unwrap().status(), 200);
    let (ok, out) = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("carol:{}", pw("carol")),
        &format!("docker://{}/carol/x:1", s.addr()),
    ]));
    assert!(!ok && out.contains("only members of acme"), "skopeo says: {out}");
}

/// Uploads a client never finished are purged by `gc` once untouched long enough (a day by
/// default), from the disk and from the database.
#[tokio::test]
async fn gc_purges_abandoned_uploads() {
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull,push"]).await;
    let mut locations = Vec::new();
    for body in [&b"abc"[..], &b""[..]] {
        let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        if !body.is_empty() {
            let r = s.req("PATCH", &loc, Some(&t)).await.body(body.to_vec()).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }
        locations.push(loc);
    }
    let dir = s.kill();
    let uploads = || std::fs::read_dir(dir.path().join("uploads")).unwrap().count();
    assert_eq!(uploads(), 2);
    let (ok, out) = run(crate::support::portcullis(dir.path()).arg("gc"));
    assert!(ok && out.contains("gc: 0 abandoned uploads purged"), "{out}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (ok, out) = run(crate::support::portcullis(dir.path()).args(["gc", "--uploads-older-than", "1"]));
    assert!(ok && out.contains("gc: 2 abandoned uploads purged"), "{out}");
    assert_eq!(uploads(), 0);
    let s = Server::start_in(dir).await;
    for loc in locations {
        let r = s.req("GET", &loc, Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 404, "{loc}");
        assert!(r.text().await.unwrap().contains("BLOB_UPLOAD_UNKNOWN"));
    }
}

/// A password attempt as `user` from `addr` (as a trusted proxy reports it).
async fn sign_in_from(s: &Server, user: &str, password: &str, addr: &str) -> u16 {
    let r = s.http.get(s.url("/api/v1/me")).basic_auth(user, Some(password)).header("x-forwarded-for", addr);
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn guessing_a_password_never_locks_its_owner_out() {
    let env = [("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW), ("PORTCULLIS_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]")];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await;
    s.create_user("bob").await;
    let (_, t) = s.api("POST", "/api/v1/access-tokens", ("bob", &pw("bob")), Some(json!({"label": "ci"}))).await;
    let token = t["token"].as_str().unwrap().to_owned();
    // an outsider guesses from 6.6.6.6: past a few failures each makes the next attempt there
    // wait longer
    for i in 0..4 {
        assert_eq!(sign_in_from(&s, "bob", &format!("guess-{i}"), "6.6.6.6").await, 401);
    }
    assert_eq!(sign_in_from(&s, "bob", "guess-4", "6.6.6.6").await, 429);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sign_in_from(&s, "bob", "guess-5", "6.6.6.6").await, 401);
    assert_eq!(sign_in_from(&s, "bob", &pw("bob"), "6.6.6.6").await, 429, "the guessing address waits 2 s now");
    // bob from his own address, with his password or his token, is not held back
    assert_eq!(sign_in_from(&s, "bob", &pw("bob"), "10.0.0.7").await, 200);
    let r = s.http.get(s.url("/token")).basic_auth("bob", Some(&token)).header("x-forwarded-for", "6.6.6.6");
    assert_eq!(r.send().await.unwrap().status(), 200, "tokens are not throttled by password failures");
    // the failures are audited with the client's address, and counted
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, log) = s.admin("GET", "/api/v1/audit?action=auth.failure", None).await;
    let failures = log.as_array().unwrap();
    assert_eq!(failures.len(), 5, "{log}");
    assert!(failures.iter().all(|e| e["actor"] == "bob" && e["client"] == "6.6.6.6"), "{log}");
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_signin_failures_total 5"), "{metrics}");
    assert!(metrics.contains("portcullis_signin_throttled_total 2"), "{metrics}");
    // the administrator lifts the throttle
    assert_eq!(s.admin("DELETE", "/api/v1/users/bob/throttle", None).await.0, 200);
    assert_eq!(sign_in_from(&s, "bob", &pw("bob"), "6.6.6.6").await, 200);
    // without a trusted proxy, X-Forwarded-For is the client's own claim and is ignored
    let plain = Server::start().await;
    plain.create_user("bob").await;
    for i in 0..4 {
        assert_eq!(sign_in_from(&plain, "bob", &format!("guess-{i}"), "6.6.6.6").await, 401);
    }
    assert_eq!(sign_in_from(&plain, "bob", &pw("bob"), "10.0.0.7").await, 429, "both came from 127.0.0.1");
}

#[tokio::test]
async fn the_administrator_disables_and_deletes_users() {
    let s = Server::start().await;
    for u in ["alice", "bob"] {
        s.create_user(u).await;
    }
    s.create_org("acme", "alice").await;
    let bob = ("bob", pw("bob"));
    let (_, t) = s.api("POST", "/api/v1/access-tokens", (bob.0, &bob.1), Some(json!({"label": "ci"}))).await;
    let token = t["token"].as_str().unwrap().to_owned();
    let jwt = s.token(Some((bob.0, &bob.1)), &["repository:bob/app:pull"]).await;
    // only the administrator
    let (st, _) = s.api("PATCH", "/api/v1/users/bob", ("alice", &pw("alice")), Some(json!({"disabled": true}))).await;
    assert_eq!(st, 403);
    assert_eq!(s.admin("PATCH", "/api/v1/users/admin", Some(json!({"disabled": true}))).await.0, 409, "not oneself");
    // disabled: password, access token and registry token all refused at once
    assert_eq!(s.admin("PATCH", "/api/v1/users/bob", Some(json!({"disabled": true}))).await.0, 200);
    assert_eq!(s.api("GET", "/api/v1/me", (bob.0, &bob.1), None).await.0, 401);
    assert_eq!(s.api("GET", "/api/v1/me", (bob.0, &token), None).await.0, 401);
    let r = s.req("GET", "/v2/bob/app/tags/list", Some(&jwt)).await.send().await.unwrap();
    assert_eq!(r.status(), 401, "the next registry request is refused");
    assert_eq!(
        s.admin("POST", "/api/v1/users", Some(json!({"username": "bob", "password": "x-password-9"}))).await.0,
        409,
        "the name stays taken"
    );
    // enabled again
    assert_eq!(s.admin("PATCH", "/api/v1/users/bob", Some(json!({"disabled": false}))).await.0, 200);
    assert_eq!(s.api("GET", "/api/v1/me", (bob.0, &token), None).await.0, 200);
    // deleted; the last owner of an org is not
    assert_eq!(s.admin("DELETE", "/api/v1/users/alice", None).await.0, 409);
    assert_eq!(s.admin("DELETE", "/api/v1/users/bob", None).await.0, 204);
    assert_eq!(s.api("GET", "/api/v1/me", (bob.0, &token), None).await.0, 401);
    assert_eq!(s.admin("DELETE", "/api/v1/users/bob", None).await.0, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, log) = s.admin("GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["user.disable", "user.enable", "user.delete"] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
}

/// `/metrics` counts registry API requests by endpoint (the route vocabulary) and status class,
/// with a latency histogram, as skopeo's pull makes them.
#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_status() {
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull,push"]).await;
    crate::v2::push_image(&s, &t, "acme/app", "1", b"a layer").await;
    for _ in 0..3 {
        assert_eq!(s.req("GET", "/v2/acme/app/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    }
    assert_eq!(s.req("GET", "/v2/acme/app/manifests/nope", Some(&t)).await.send().await.unwrap().status(), 404);
    assert_eq!(s.req("GET", "/v2/acme/app/manifests/1", None).await.send().await.unwrap().status(), 401);
    assert_eq!(s.req("GET", "/v2/Bad..Name/manifests/1", None).await.send().await.unwrap().status(), 400);
    let m = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |series: &str| {
        m.lines().find(|l| l.starts_with(series)).and_then(|l| l.split_whitespace().last()).unwrap_or("").to_owned()
    };
    assert_eq!(value("portcullis_http_requests_total{endpoint=\"manifest_get\",status=\"2xx\"}"), "3", "{m}");
    assert_eq!(value("portcullis_http_requests_total{endpoint=\"manifest_get\",status=\"4xx\"}"), "2", "{m}");
    assert_eq!(value("portcullis_http_requests_total{endpoint=\"manifest_put\",status=\"2xx\"}"), "1", "{m}");
    assert_eq!(value("portcullis_http_requests_total{endpoint=\"upload_start\",status=\"2xx\"}"), "2", "{m}");
    assert_eq!(value("portcullis_http_requests_total{endpoint=\"invalid\",status=\"4xx\"}"), "1", "{m}");
    let count = "portcullis_http_request_duration_seconds_count{endpoint=\"manifest_get\",status=\"2xx\"}";
    assert_eq!(value(count), "3", "{m}");
    assert_eq!(
        value("portcullis_http_request_duration_seconds_bucket{endpoint=\"manifest_get\",status=\"2xx\",le=\"+Inf\"}"),
        "3"
    );
}
