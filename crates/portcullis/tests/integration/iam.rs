//! Image Access Management end to end: settings through the API, real skopeo pulls through the
//! gateway from a local registry standing in for Docker Hub, the denial as the client prints it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::proxy::setup;
use crate::support::{eventually, pw, run, skopeo_pull};

const DENIAL: &str = "Image Access Management: community image docker.io/someone/app is not allowed for members of acme. Ask an owner of acme for an exception.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restrictions_bind_members_on_every_request() {
    let e = setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    for u in ["bob", "carol"] {
        s.create_user(u).await;
    }
    s.create_org("acme", "alice").await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let (alice, bob) = (("alice", ap.as_str()), ("bob", bp.as_str()));
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "dev"}))).await.0, 201);
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", alice, Some(json!({"username": "bob"}))).await.0,
        201
    );
    let creds = |u: &str| format!("{u}:{}", pw(u));
    let dst = |n: &str| e.work.path().join(n);
    // off by default: everything pulls
    let (_, settings) = s.api("GET", "/api/v1/orgs/acme/settings", bob, None).await;
    assert_eq!(settings["restricted_images"]["enabled"], false);
    assert!(skopeo_pull(&gw, &creds("bob"), "someone/app:1", &dst("b0")).0);
    // Docker Hub's exact object turns it on; members only read
    let hub_json = json!({"restricted_images": {"enabled": true, "allow_official_images": true, "allow_verified_publishers": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", bob, Some(hub_json.clone())).await.0, 403);
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/settings", ("carol", &pw("carol")), Some(hub_json.clone())).await.0,
        404
    );
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(json!({"restricted_images": {"enabeld": true}})))
            .await
            .0,
        400
    );
    let (st, v) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(hub_json)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restricted_images"]["allow_community"], false);
    // the member: official allowed, community denied with the message skopeo prints
    assert!(skopeo_pull(&gw, &creds("bob"), "library/tiny:1", &dst("b1")).0);
    let (ok, out) = skopeo_pull(&gw, &creds("bob"), "someone/app:1", &dst("b2"));
    assert!(!ok && out.contains(DENIAL), "skopeo says: {out}");
    // owners bypass their own org's restrictions; non-members are not bound
    assert!(skopeo_pull(&gw, &creds("alice"), "someone/app:1", &dst("a1")).0);
    assert!(skopeo_pull(&gw, &creds("carol"), "someone/app:1", &dst("c1")).0);
    // by digest and direct blob GETs are denied too, with the same token as before
    let t = s.token(Some(bob), &["repository:someone/app:pull"]).await;
    let r = s.req("GET", &format!("/v2/someone/app/manifests/{}", e.layout.tiny), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 403);
    let full = format!("{DENIAL} Request one at http://{gw}/orgs/acme/requests?image=docker.io/someone/app");
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0], json!({"code": "DENIED", "message": full}));
    let r =
        s.req("GET", &format!("/v2/someone/app/blobs/{}", e.layout.tiny_layer), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 403);
    // a flip applies to the very next request, whatever tokens were issued
    let mut on = json!({"restricted_images": {"enabled": true, "allow_community": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on.clone())).await.0, 200);
    assert_eq!(s.req("GET", "/v2/someone/app/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    on["restricted_images"]["allow_community"] = json!(false);
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on.clone())).await.0, 200);
    assert_eq!(s.req("GET", "/v2/someone/app/manifests/1", Some(&t)).await.send().await.unwrap().status(), 403);
    // dry run: served, with a warning
    on["restricted_images"]["mode"] = json!("dry_run");
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on.clone())).await.0, 200);
    let r = s.req("GET", "/v2/someone/app/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let w = r.headers()["warning"].to_str().unwrap().to_owned();
    assert!(w.starts_with("299 ") && w.contains("would be denied"), "{w}");
    on["restricted_images"]["mode"] = json!("enforce");
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on)).await.0, 200);
    // exceptions: a namespace pattern, then one that expires
    let (st, ex) = s
        .api(
            "POST",
            "/api/v1/orgs/acme/exceptions",
            alice,
            Some(json!({"pattern": "index.docker.io/someone/*", "reason": "vetted"})),
        )
        .await;
    assert_eq!(st, 201, "{ex}");
    assert_eq!(ex["pattern"], "docker.io/someone/*");
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/exceptions", bob, Some(json!({"pattern": "docker.io/x/y", "reason": "r"})))
            .await
            .0,
        403
    );
    assert!(skopeo_pull(&gw, &creds("bob"), "someone/app:1", &dst("b3")).0);
    let id = ex["id"].as_i64().unwrap();
    assert_eq!(s.api("DELETE", &format!("/api/v1/orgs/acme/exceptions/{id}"), alice, None).await.0, 204);
    let soon = pcore_now() + 2;
    let (st, _) = s
        .api(
            "POST",
            "/api/v1/orgs/acme/exceptions",
            alice,
            Some(json!({"pattern": "docker.io/someone/app", "reason": "briefly", "expires_at": soon})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(s.req("GET", "/v2/someone/app/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.req("GET", "/v2/someone/app/manifests/1", Some(&t)).await.send().await.unwrap().status(),
        403,
        "expired"
    );
    // images hosted here in another namespace are community images for acme's members
    let l = format!("oci:{}:tiny", e.layout.dir.display());
    let (ok, out) = run(std::process::Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds("carol"),
        &l,
        &format!("docker://{gw}/carol/tool:1"),
    ]));
    assert!(ok, "{out}");
    let (ok, out) = skopeo_pull(&gw, &creds("bob"), "carol/tool:1", &dst("b4"));
    assert!(!ok && out.contains("community image carol/tool"), "{out}");
    let ct = s.token(Some(bob), &["repository:carol/tool:pull"]).await;
    let r = s.req("GET", "/v2/carol/tool/tags/list", Some(&ct)).await.send().await.unwrap();
    assert_eq!(r.status(), 403, "tags lists are decided too");
    let r = s.req("GET", &format!("/v2/carol/tool/referrers/{}", e.layout.tiny), Some(&ct)).await.send().await.unwrap();
    assert_eq!(r.status(), 403, "and referrers");
    // Registry Access Management binds owners too
    let ram = json!({"registry_access": {"enabled": true, "allowed_registries": ["docker.io"]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(ram)).await.0, 200);
    let (ok, out) = skopeo_pull(&gw, &creds("alice"), "ghcr.io/owner/tool:1", &dst("a2"));
    assert!(
        !ok && out.contains("Registry Access Management: registry ghcr.io is not allowed for members of acme"),
        "{out}"
    );
    assert!(skopeo_pull(&gw, &creds("carol"), "ghcr.io/owner/tool:1", &dst("c2")).0);
    // the audit log: every manifest pull decision and every change, for owners
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.api("GET", "/api/v1/orgs/acme/audit", bob, None).await.0, 403);
    let (st, denied) = s
        .api("GET", "/api/v1/orgs/acme/audit?decision=denied&actor=bob&image=docker.io/someone/app", alice, None)
        .await;
    assert_eq!(st, 200, "{denied}");
    let d = &denied[0];
    assert_eq!(
        (d["action"].as_str(), d["category"].as_str(), d["rule"].as_str()),
        (Some("pull"), Some("community"), Some("category"))
    );
    assert!(denied.as_array().unwrap().iter().any(|e| e["user_agent"].as_str().unwrap_or("").contains("skopeo")));
    assert!(denied.as_array().unwrap().iter().all(|e| e["client"] == "127.0.0.1"), "the client address is recorded");
    // the last denial came after the tag was cached here: it records the digest the tag named,
    // for an exception pinned to it (the first, of a tag never seen here, asked nothing upstream)
    assert!(denied[0]["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{denied}");
    let (_, excepted) = s
        .api("GET", "/api/v1/orgs/acme/audit?decision=allowed&actor=bob&image=docker.io/someone/app", alice, None)
        .await;
    let named = |e: &Value| -> Option<i64> {
        let detail: Value = serde_json::from_str(e["detail"].as_str()?).ok()?;
        detail["exception"].as_i64()
    };
    let by_exception: Vec<&Value> = excepted.as_array().unwrap().iter().filter(|e| e["rule"] == "exception").collect();
    assert!(by_exception.iter().any(|e| named(e) == Some(id)), "a pull an exception allowed names it: {excepted}");
    assert!(by_exception.iter().all(|e| e["category"] == "community" && named(e).is_some()), "{excepted}");
    let (_, deleted) = s.api("GET", "/api/v1/orgs/acme/audit?action=exception.delete", alice, None).await;
    let detail: Value = serde_json::from_str(deleted[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        (detail["id"].as_i64(), detail["pattern"].as_str()),
        (Some(id), Some("docker.io/someone/*")),
        "{deleted}"
    );
    let add = || {
        s.api("POST", "/api/v1/orgs/acme/exceptions", alice, Some(json!({"pattern": "docker.io/z/*", "reason": "n"})))
    };
    let last = add().await.1["id"].as_i64().unwrap();
    assert_eq!(s.api("DELETE", &format!("/api/v1/orgs/acme/exceptions/{last}"), alice, None).await.0, 204);
    let next = add().await.1["id"].as_i64().unwrap();
    assert!(next > last, "an id is never given again, even the last one deleted: {next} after {last}");
    let (_, allowed) = s.api("GET", "/api/v1/orgs/acme/audit?decision=allowed&actor=bob&limit=500", alice, None).await;
    let official = allowed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["image"] == "docker.io/library/tiny")
        .expect("allowed pulls are logged");
    assert_eq!(official["category"], "official");
    assert!(official["digest"].as_str().unwrap().starts_with("sha256:"), "the digest served is recorded");
    let (_, would) = s.api("GET", "/api/v1/orgs/acme/audit?decision=would_deny", alice, None).await;
    assert!(!would.as_array().unwrap().is_empty(), "dry-run pulls are logged as would_deny");
    let (_, changes) = s.api("GET", "/api/v1/orgs/acme/audit?action=settings.update&limit=1", alice, None).await;
    let detail: Value = serde_json::from_str(changes[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(changes[0]["actor"], "alice");
    assert!(detail["before"].is_object() && detail["after"]["registry_access"]["enabled"] == true, "{detail}");
    let (_, page) =
        s.api("GET", &format!("/api/v1/orgs/acme/audit?limit=2&before={}", changes[0]["id"]), alice, None).await;
    assert!(page.as_array().unwrap().iter().all(|e| e["id"].as_i64() < changes[0]["id"].as_i64()), "cursor paging");
    let (_, members) = s.api("GET", "/api/v1/orgs/acme/audit?action=member.add", alice, None).await;
    assert_eq!(members[0]["detail"].as_str().map(|d| d.contains("\"bob\"")), Some(true), "{members}");
    let (_, teams) = s.api("GET", "/api/v1/orgs/acme/audit?action=team.create", alice, None).await;
    assert_eq!(teams.as_array().unwrap().len(), 1);
    let too_many: Vec<String> = (0..101).map(|i| format!("r{i}.example.com")).collect();
    let (st, _) = s
        .api(
            "PUT",
            "/api/v1/orgs/acme/settings",
            alice,
            Some(json!({"registry_access": {"enabled": true, "allowed_registries": too_many}})),
        )
        .await;
    assert_eq!(st, 400);
}

fn pcore_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_explains_and_preview_lists_the_pulls_a_change_would_deny() {
    let e = setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    crate::support::acme_with_member_bob(s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let (alice, bob) = (("alice", ap.as_str()), ("bob", bp.as_str()));
    // history: bob pulls an official and a community image while nothing is restricted
    let creds = format!("bob:{bp}");
    assert!(skopeo_pull(&gw, &creds, "library/tiny:1", &e.work.path().join("1")).0);
    assert!(skopeo_pull(&gw, &creds, "someone/app:1", &e.work.path().join("2")).0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let proposed = json!({"restricted_images": {"enabled": true}});
    let (st, p) = s.api("POST", "/api/v1/orgs/acme/settings/preview", alice, Some(proposed.clone())).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(
        p["would_deny"],
        json!([{"image": "docker.io/someone/app", "user": "bob", "pulls": 1, "message": DENIAL}])
    );
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/settings/preview", bob, Some(proposed.clone())).await.0, 403);
    // nothing changed by the preview; then the change, and check explains it
    let (_, c) = s.api("GET", "/api/v1/orgs/acme/check?user=bob&image=someone/app:1", alice, None).await;
    assert_eq!(c["effect"], "allow");
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(proposed.clone())).await.0, 200);
    // a pull denied when it happened is not counted as newly denied by the same change
    assert!(!skopeo_pull(&gw, &creds, "someone/app:1", &e.work.path().join("3")).0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, p) = s.api("POST", "/api/v1/orgs/acme/settings/preview", alice, Some(proposed.clone())).await;
    assert_eq!(p["already_denied"], 1, "{p}");
    assert_eq!(p["would_deny"], json!([]), "the change is in force already: it denies nothing more: {p}");
    // a change is shown what it denies itself: allowing community images again and taking the
    // official ones away denies the official pull, not the community one
    let swap = json!({"restricted_images": {"enabled": true, "allow_community": true, "allow_official_images": false}});
    let (_, p) = s.api("POST", "/api/v1/orgs/acme/settings/preview", alice, Some(swap)).await;
    assert_eq!(p["would_deny"].as_array().map(|r| r.len()), Some(1), "{p}");
    assert_eq!(p["would_deny"][0]["image"], "docker.io/library/tiny", "{p}");
    let (st, c) = s.api("GET", "/api/v1/orgs/acme/check?user=bob&image=someone/app:1", alice, None).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!((c["image"].as_str(), c["effect"].as_str()), (Some("docker.io/someone/app"), Some("deny")));
    assert_eq!(c["orgs"][0]["category"], "community");
    assert_eq!(c["orgs"][0]["outcome"], "deny (category)");
    let (_, c) = s.api("GET", "/api/v1/orgs/acme/check?user=alice&image=someone/app", alice, None).await;
    assert_eq!(c["orgs"][0]["outcome"], "allow (owner bypass)");
    assert_eq!(
        s.api("GET", "/api/v1/orgs/acme/check?user=alice&image=alpine", bob, None).await.0,
        403,
        "members check only themselves"
    );
    let (_, c) = s.api("GET", "/api/v1/orgs/acme/check?user=bob&image=alpine", bob, None).await;
    assert_eq!((c["image"].as_str(), c["effect"].as_str()), (Some("docker.io/library/alpine"), Some("allow")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_pinned_exceptions_allow_exactly_the_pinned_image() {
    let e = setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    crate::support::acme_with_member_bob(s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let alice = ("alice", ap.as_str());
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(json!({"restricted_images": {"enabled": true}})))
            .await
            .0,
        200
    );
    e.hub.push(&e.layout.dir, "multi", "someone/app:multi");
    let creds = format!("bob:{bp}");
    let pin = |digest: &str| json!({"pattern": "docker.io/someone/app", "digest": digest, "reason": "pinned release"});
    // pinned to the single-arch image: its tag pulls (manifest and blobs), another tag does not
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/exceptions", alice, Some(pin(&e.layout.tiny))).await.0, 201);
    let (ok, out) = skopeo_pull(&gw, &creds, "someone/app:1", &e.work.path().join("p1"));
    assert!(ok, "pinned image by tag: {out}");
    let (ok, out) = skopeo_pull(&gw, &creds, "someone/app:multi", &e.work.path().join("p2"));
    assert!(!ok && out.contains("community image docker.io/someone/app"), "{out}");
    // pinned to the index: all platforms, through the child manifests to their blobs
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/exceptions", alice, Some(pin(&e.layout.multi))).await.0, 201);
    let dst = format!("oci:{}/p3:x", e.work.path().display());
    let (ok, out) = run(std::process::Command::new("skopeo").args([
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{gw}/someone/app:multi"),
        &dst,
    ]));
    assert!(ok, "pinned index: {out}");
    // a blob that no pinned manifest references stays denied
    let other = e.hub.push_blob("someone/app", b"unrelated layer").await;
    let t = s.token(Some(("bob", &bp)), &["repository:someone/app:pull"]).await;
    let r = s.req("GET", &format!("/v2/someone/app/blobs/{other}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_cli_drives_the_policy_api() {
    let s = crate::support::Server::start().await;
    s.create_user("bob").await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let cli = |user: &str, password: &str, args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        run(crate::support::portcullis(dir.path())
            .env("PORTCULLIS_CLIENT__SERVER", s.url(""))
            .env("PORTCULLIS_CLIENT__USERNAME", user)
            .env("PORTCULLIS_CLIENT__PASSWORD", password)
            .args(args))
    };
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", ("alice", &ap), Some(json!({"name": "dev"}))).await.0, 201);
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", ("alice", &ap), Some(json!({"username": "bob"}))).await.0,
        201
    );
    let (ok, out) = cli("alice", &ap, &["org", "settings", "set", "acme", r#"{"restricted_images":{"enabled":true}}"#]);
    assert!(ok && out.contains("\"enabled\": true"), "{out}");
    let (ok, out) =
        cli("bob", &pw("bob"), &["org", "settings", "set", "acme", r#"{"restricted_images":{"enabled":false}}"#]);
    assert!(!ok && out.contains("403") && out.contains("only owners of acme"), "{out}");
    let (ok, out) = cli("bob", &pw("bob"), &["org", "settings", "get", "acme"]);
    assert!(ok && out.contains("allow_community"), "{out}");
    let (ok, out) = cli("alice", &ap, &["check", "acme", "bob", "someone/app:1"]);
    assert!(
        !ok && out.starts_with("bob may not pull docker.io/someone/app:1: Image Access Management: community image"),
        "{out}"
    );
    let (ok, out) =
        cli("alice", &ap, &["org", "exceptions", "add", "acme", "docker.io/someone/*", "--reason", "vetted"]);
    assert!(ok && out.contains("\"pattern\": \"docker.io/someone/*\""), "{out}");
    let (ok, out) = cli("alice", &ap, &["check", "--json", "acme", "bob", "someone/app:1"]);
    assert!(ok && out.contains("\"effect\": \"allow\""), "{out}");
    let (ok, out) = cli("alice", &ap, &["org", "exceptions", "list", "acme"]);
    assert!(ok && out.contains("vetted"), "{out}");
    let (ok, out) = cli("admin", crate::support::ADMIN_PW, &["publishers", "set", "someone", "verified_publisher"]);
    assert!(ok, "{out}");
    let (ok, out) = cli("alice", &ap, &["publishers", "list"]);
    assert!(ok && out.contains("\"someone\""), "{out}");
    let (ok, out) =
        cli("alice", &ap, &["org", "settings", "preview", "acme", r#"{"restricted_images":{"enabled":true}}"#]);
    assert!(ok && out.contains("would_deny"), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, out) = cli("alice", &ap, &["org", "audit", "acme", "--limit", "5"]);
    assert!(ok && out.contains("exception.create"), "{out}");
    let (ok, out) = cli("alice", "wrong-password", &["org", "settings", "get", "acme"]);
    assert!(!ok && out.contains("401"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_sync_reads_a_search_api_page_by_page() {
    // a local stand-in for Docker Hub's search API: 150 verified publishers in 2 pages, 1 OSS
    let app = axum::Router::new().route(
        "/api/search/v4",
        axum::routing::get(|q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
            let from: usize = q.get("from").and_then(|f| f.parse().ok()).unwrap_or(0);
            let size: usize = q.get("size").and_then(|f| f.parse().ok()).unwrap_or(25);
            let (total, make): (usize, fn(usize) -> Value) = match q.get("badges").map(String::as_str) {
                Some("verified_publisher") => {
                    (150, |i| json!({"id": format!("vendor{i}/app"), "publisher": {"id": format!("vendor{i}")}}))
                }
                _ => (1, |_| json!({"name": "oss-project/tool"})),
            };
            let results: Vec<Value> = (from..total.min(from + size)).map(make).collect();
            axum::Json(json!({"total": total, "results": results}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = crate::support::Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(crate::support::portcullis(dir.path())
        .env("PORTCULLIS_CLIENT__SERVER", s.url(""))
        .env("PORTCULLIS_CLIENT__USERNAME", "admin")
        .env("PORTCULLIS_CLIENT__PASSWORD", crate::support::ADMIN_PW)
        .args(["publishers", "sync", "--url", &hub]));
    assert!(ok && out.contains("151 namespaces") && out.contains("verified_publisher: 150/150"), "{out}");
    let (_, list) = s.admin("GET", "/api/v1/publishers", None).await;
    let list = list.as_array().unwrap();
    assert!(list.contains(&json!({"namespace": "vendor149", "badge": "verified_publisher"})));
    assert!(list.contains(&json!({"namespace": "oss-project", "badge": "open_source"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_category_and_the_denial_as_ctr_and_podman_print_it() {
    let e = setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    crate::support::acme_with_member_bob(s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let alice = ("alice", ap.as_str());
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/own", alice, Some(json!({"permission": "read"}))).await.0,
        200
    );
    let l = format!("oci:{}:tiny", e.layout.dir.display());
    let (ok, out) = run(std::process::Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("alice:{ap}"),
        &l,
        &format!("docker://{gw}/acme/own:1"),
    ]));
    assert!(ok, "{out}");
    // every category, restricted then allowed one switch at a time
    let cases = [
        ("acme/own:1", "organization", None),
        ("library/tiny:1", "official", Some("allow_official_images")),
        ("bitnami/redis:1", "verified_publisher", Some("allow_verified_publishers")),
        ("prom/prometheus:1", "sponsored_oss", Some("allow_sponsored_oss")),
        ("someone/app:1", "community", Some("allow_community")),
        ("ghcr.io/owner/tool:1", "other_registry", None),
    ];
    // a change names what it changes: "everything off" names every switch
    let all_off = json!({"restricted_images": {"enabled": true, "allow_official_images": false, "allow_verified_publishers": false, "allow_sponsored_oss": false, "allow_community": false}});
    for (image, category, switch) in cases {
        assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(all_off.clone())).await.0, 200);
        let (_, c) = s.api("GET", &format!("/api/v1/orgs/acme/check?user=bob&image={image}"), alice, None).await;
        assert_eq!(c["orgs"][0]["category"], category, "{image}: {c}");
        let expected = if switch.is_some() { "deny" } else { "allow" };
        assert_eq!(c["effect"], expected, "{image} with everything restricted");
        if let Some(sw) = switch {
            let mut on = all_off.clone();
            on["restricted_images"][sw] = json!(true);
            assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on)).await.0, 200);
            let (_, c) = s.api("GET", &format!("/api/v1/orgs/acme/check?user=bob&image={image}"), alice, None).await;
            assert_eq!(c["effect"], "allow", "{image} with {sw}");
        }
    }
    // bob pulls his org's own image with a real client while everything else is restricted
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(all_off)).await.0, 200);
    assert!(skopeo_pull(&gw, &format!("bob:{bp}"), "acme/own:1", &e.work.path().join("own")).0);
    // what ctr and podman print for a denied pull, through the files client-config writes
    let generated = e.work.path().join("generated");
    let (ok, out) = run(crate::support::portcullis(e.work.path())
        .args(["client-config", "--gateway", &format!("http://{gw}"), "--out"])
        .arg(&generated));
    assert!(ok, "{out}");
    let sock = std::env::var("CONTAINERD_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/containerd/containerd.sock".into());
    let (ok, ctr_out) = run(std::process::Command::new("ctr")
        .args(["--address", &sock, "--namespace", &format!("pcl-iam-{}", s.port), "images", "pull", "--hosts-dir"])
        .arg(generated.join("containerd/certs.d"))
        .args(["--user", &format!("bob:{bp}"), "docker.io/someone/app:1"]));
    // ctr prints only the status line; the gateway puts the reason there
    assert!(!ok && ctr_out.contains(&format!("403 {DENIAL}")), "ctr says: {ctr_out}");
    let auth = e.work.path().join("auth.json");
    {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("bob:{bp}"));
        std::fs::write(&auth, json!({"auths": {gw.clone(): {"auth": b64}}}).to_string()).unwrap();
    }
    let (ok, podman_out) = run(crate::support::podman(&e.work.path().join("pd"))
        .env("CONTAINERS_REGISTRIES_CONF", generated.join("podman/registries.conf"))
        .args(["pull", "-q", "--authfile", auth.to_str().unwrap(), "docker.io/someone/app:1"]));
    assert!(!ok && podman_out.contains(&format!("denied: {DENIAL}")), "podman says: {podman_out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_pull_costs_the_gateway_nothing() {
    let e = setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    crate::support::acme_with_member_bob(s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let on = json!({"restricted_images": {"enabled": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(on)).await.0, 200);
    // by tag with skopeo, then by digest and a blob with the same token
    let (ok, out) = skopeo_pull(&gw, &format!("bob:{bp}"), "someone/app:1", &e.work.path().join("b"));
    assert!(!ok && out.contains(DENIAL), "{out}");
    let t = s.token(Some(("bob", &bp)), &["repository:someone/app:pull"]).await;
    for path in [format!("manifests/{}", e.layout.tiny), format!("blobs/{}", e.layout.tiny_layer)] {
        let r = s.req("GET", &format!("/v2/someone/app/{path}"), Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(e.fp.count("GET", "someone/app") + e.fp.count("HEAD", "someone/app"), 0, "nothing asked upstream");
    // nothing cached: no repository, no blob
    let (_, repos) = s.admin("GET", "/api/v1/repositories", None).await;
    assert!(!repos.to_string().contains("someone/app"), "{repos}");
    assert!(!crate::proxy::blob_file(s, &e.layout.tiny_layer).exists());
    // the owner's pull goes upstream: the counter counts
    assert!(skopeo_pull(&gw, &format!("alice:{ap}"), "someone/app:1", &e.work.path().join("a")).0);
    assert!(e.fp.count("GET", "someone/app") > 0);
    eventually("the owner's pull is cached", || crate::proxy::blob_file(s, &e.layout.tiny_layer).exists()).await;
}

#[tokio::test]
async fn a_settings_body_changes_only_what_it_names() {
    let s = crate::support::Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());
    let ram = json!({"registry_access": {"enabled": true, "allowed_registries": ["docker.io", "ghcr.io"]}, "docker_hub_namespaces": ["acmecorp"]});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(ram)).await.0, 200);
    // Docker Hub's body, through the CLI, changes Image Access Management and nothing else
    let dir = tempfile::tempdir().unwrap();
    let hub =
        r#"{"restricted_images":{"enabled":true,"allow_official_images":true,"allow_verified_publishers":false}}"#;
    let (ok, out) = run(crate::support::portcullis(dir.path())
        .env("PORTCULLIS_CLIENT__SERVER", s.url(""))
        .env("PORTCULLIS_CLIENT__USERNAME", "alice")
        .env("PORTCULLIS_CLIENT__PASSWORD", &ap)
        .args(["org", "settings", "set", "acme", hub]));
    assert!(ok, "{out}");
    let (_, v) = s.api("GET", "/api/v1/orgs/acme/settings", alice, None).await;
    assert_eq!(v["registry_access"], json!({"enabled": true, "allowed_registries": ["docker.io", "ghcr.io"]}), "{v}");
    assert_eq!(v["docker_hub_namespaces"], json!(["acmecorp"]));
    assert_eq!(
        (v["restricted_images"]["enabled"].as_bool(), v["restricted_images"]["allow_verified_publishers"].as_bool()),
        (Some(true), Some(false))
    );
    // a field not named stays; to reset one, name it
    let (_, v2) = s
        .api("PUT", "/api/v1/orgs/acme/settings", alice, Some(json!({"restricted_images": {"mode": "dry_run"}})))
        .await;
    assert_eq!(
        (v2["restricted_images"]["enabled"].as_bool(), v2["restricted_images"]["mode"].as_str()),
        (Some(true), Some("dry_run"))
    );
    // anything but an object is refused and changes nothing
    for bad in [
        json!([]),
        json!(null),
        json!(1),
        json!("x"),
        json!({"restricted_images": []}),
        json!({"registry_access": {"enabled": "yes"}}),
    ] {
        let (st, e) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(bad.clone())).await;
        assert_eq!((st, e["error"].as_str()), (400, Some("invalid")), "{bad}: {e}");
    }
    assert_eq!(s.api("GET", "/api/v1/orgs/acme/settings", alice, None).await.1, v2, "unchanged");
}

/// Namespace access control and disabled public repositories, with skopeo: a member's push to
/// their personal namespace is refused with the reason while pushes to the org go on; an org's
/// repository cannot be made public, and the setting cannot be turned on while one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_access_control_and_no_public_repositories() {
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("layout"));
    let s = crate::support::Server::start().await;
    s.create_user("alice").await;
    crate::support::acme_with_member_bob(&s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let (alice, bob) = (("alice", ap.as_str()), ("bob", bp.as_str()));
    let (st, _) =
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", alice, Some(json!({"permission": "write"}))).await;
    assert!(st == 200 || st == 204);
    let push = |creds: &str, name: &str| crate::support::skopeo_push(&layout.dir, "tiny", &s.addr(), creds, name);
    let bob_creds = format!("bob:{bp}");
    assert!(push(&bob_creds, "bob/tool:1").0, "personal pushes work by default");

    let on = json!({"restrict_personal_namespaces": true});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", bob, Some(on.clone())).await.0, 403, "owners only");
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on)).await.0, 200);
    let (_, seen) = s.api("GET", "/api/v1/orgs/acme/settings", bob, None).await;
    assert_eq!(seen["restrict_personal_namespaces"], true, "members see it");
    let (ok, out) = push(&bob_creds, "bob/tool:2");
    assert!(!ok && out.contains("namespace access control"), "{out}");
    assert!(push(&bob_creds, "acme/app:1").0, "the org's repositories take bob's pushes");
    assert!(push(&format!("admin:{}", crate::support::ADMIN_PW), "admin/x:1").0, "the administrator is not bound");
    let work2 = tempfile::tempdir().unwrap();
    assert!(skopeo_pull(&s.addr(), &bob_creds, "bob/tool:1", &work2.path().join("p")).0, "pulls stay");

    // an org restricting community images: bob's personal repositories are community images to
    // it (pulling them is denied, with the reason), yet a push there does not fail on the upload
    // protocol's existence checks (HEAD of the blobs)
    let restrict = json!({"restricted_images": {"enabled": true}, "restrict_personal_namespaces": false});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(restrict)).await.0, 200);
    let (ok, out) = push(&bob_creds, "bob/tool:3");
    assert!(ok, "{out}");
    let (ok, out) = skopeo_pull(&s.addr(), &bob_creds, "bob/tool:3", &work2.path().join("p3"));
    assert!(!ok && out.contains("Image Access Management: community image bob/tool is not allowed"), "{out}");
    let t = s.token(Some(bob), &["repository:bob/tool:pull"]).await;
    let r = s.req("GET", "/v2/bob/tool/manifests/3", Some(&t)).await.send().await.unwrap();
    let manifest = r.headers().get("docker-content-digest").map(|d| d.to_str().unwrap().to_owned());
    assert_eq!((r.status().as_u16(), manifest), (403, None), "no content, nor the tag's digest");
    // the check is passed to those who may push, with a token that grants it: a pull-only
    // token of bob's gets the policy's refusal
    let ta = s.token(Some(("admin", crate::support::ADMIN_PW)), &["repository:bob/tool:pull"]).await;
    let m: Value =
        s.req("GET", "/v2/bob/tool/manifests/3", Some(&ta)).await.send().await.unwrap().json().await.unwrap();
    let layer = format!("/v2/bob/tool/blobs/{}", m["layers"][0]["digest"].as_str().unwrap());
    let r = s.req("HEAD", &layer, Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 403);
    let tp = s.token(Some(bob), &["repository:bob/tool:pull,push"]).await;
    assert_eq!(s.req("HEAD", &layer, Some(&tp)).await.send().await.unwrap().status(), 200);
    let off = json!({"restricted_images": {"enabled": false}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(off)).await.0, 200);

    // public repositories: acme/app made public, then the setting is refused until it is private
    let public = json!({"visibility": "public"});
    assert_eq!(s.api("PATCH", "/api/v1/repositories/acme/app", alice, Some(public.clone())).await.0, 200);
    let off = json!({"disable_public_repositories": true});
    let (st, e) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(off.clone())).await;
    assert_eq!(st, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains("acme/app"), "{e}");
    let private = json!({"visibility": "private"});
    assert_eq!(s.api("PATCH", "/api/v1/repositories/acme/app", alice, Some(private)).await.0, 200);
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(off)).await.0, 200);
    let (st, e) = s.api("PATCH", "/api/v1/repositories/acme/app", alice, Some(public.clone())).await;
    assert_eq!(st, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains("disables public repositories"), "{e}");
    let (_, repos) = s.admin("GET", "/api/v1/repositories", None).await;
    let app = repos.as_array().unwrap().iter().find(|r| r["name"] == "acme/app").unwrap().clone();
    assert_eq!(app["visibility"], "private", "{app}");
    assert_eq!(
        s.api("PATCH", "/api/v1/repositories/acme/app", bob, Some(public)).await.0,
        403,
        "bob may not change it at all"
    );
    // personal repositories are not the org's: bob's stays as it is
    let (st, _) = s.api("PATCH", "/api/v1/repositories/bob/tool", bob, Some(json!({"visibility": "public"}))).await;
    assert_eq!(st, 200);
}

/// Team rules and the policy history, with skopeo through the gateway: a member of team
/// `platform` pulls a community image the rest of the org cannot; `check` names the team rule;
/// every change is a version; restoring the version before the rule is previewed (carol's pull
/// would be denied), applied once confirmed, and bites on the next pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_rules_widen_and_the_policy_history_restores() {
    let e = setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    for u in ["bob", "carol"] {
        s.create_user(u).await;
    }
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());
    for (team, user) in [("dev", "bob"), ("platform", "carol")] {
        assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": team}))).await.0, 201);
        let m = json!({"username": user});
        assert_eq!(s.api("POST", &format!("/api/v1/orgs/acme/teams/{team}/members"), alice, Some(m)).await.0, 201);
    }
    let creds = |u: &str| format!("{u}:{}", pw(u));
    let dst = |n: &str| e.work.path().join(n);
    let on = json!({"restricted_images": {"enabled": true, "allow_official_images": true, "allow_verified_publishers": false}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(on)).await.0, 200);
    for u in ["bob", "carol"] {
        let (ok, out) = skopeo_pull(&gw, &creds(u), "someone/app:1", &dst(&format!("{u}0")));
        assert!(!ok && out.contains(DENIAL), "{u}: {out}");
    }

    // platform's own rule allows community images: carol pulls, bob still cannot
    let rule = json!({"restricted_images": {"allow_community": true}});
    let bob = ("bob", pw("bob"));
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/platform/settings", (bob.0, &bob.1), Some(rule.clone())).await.0,
        403
    );
    let (st, v) = s
        .api(
            "PUT",
            "/api/v1/orgs/acme/teams/platform/settings",
            alice,
            Some(json!({"restricted_images": {"allow_everything": true}})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/teams/platform/settings", alice, Some(rule)).await.0, 200);
    let (_, seen) = s.api("GET", "/api/v1/orgs/acme/teams/platform/settings", (bob.0, &bob.1), None).await;
    assert_eq!(seen["restricted_images"]["allow_community"], true, "members read team rules");
    let (ok, out) = skopeo_pull(&gw, &creds("carol"), "someone/app:1", &dst("c1"));
    assert!(ok, "{out}");
    let (ok, out) = skopeo_pull(&gw, &creds("bob"), "someone/app:1", &dst("b1"));
    assert!(!ok && out.contains(DENIAL), "{out}");
    let (_, check) = s.api("GET", "/api/v1/orgs/acme/check?user=carol&image=someone/app:1", alice, None).await;
    assert!(check.to_string().contains("\"team_rule\":\"platform\""), "{check}");

    // two versions so far, and their difference
    let (_, versions) = s.api("GET", "/api/v1/orgs/acme/policy/versions", alice, None).await;
    let list: Vec<(i64, String)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["author"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(list, [(2, "alice".to_owned()), (1, "alice".to_owned())], "{versions}");
    assert_eq!(s.api("GET", "/api/v1/orgs/acme/policy/versions", (bob.0, &bob.1), None).await.0, 403);
    let (_, d) = s.api("GET", "/api/v1/orgs/acme/policy/diff?from=1&to=2", alice, None).await;
    let change = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "teams.platform.restricted_images.allow_community");
    assert_eq!(change.map(|c| (&c["before"], &c["after"])), Some((&Value::Null, &json!(true))), "{d}");

    // restoring version 1 would deny carol's pull: previewed, then confirmed
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, v) = s.api("POST", "/api/v1/orgs/acme/policy/versions/1/restore", alice, Some(json!({}))).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["preview"]["would_deny"].to_string().contains("carol"), "{v}");
    let (st, v) =
        s.api("POST", "/api/v1/orgs/acme/policy/versions/1/restore", alice, Some(json!({"confirmed": true}))).await;
    assert_eq!((st, v["version"].as_i64()), (200, Some(3)), "{v}");
    let (ok, out) = skopeo_pull(&gw, &creds("carol"), "someone/app:1", &dst("c2"));
    assert!(!ok && out.contains(DENIAL), "the restored policy decides the next pull: {out}");
    // and back to version 2: nothing it would deny, so no confirmation
    let (st, v) = s.api("POST", "/api/v1/orgs/acme/policy/versions/2/restore", alice, Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    assert!(skopeo_pull(&gw, &creds("carol"), "someone/app:1", &dst("c3")).0);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/policy/versions/99/restore", alice, Some(json!({}))).await.0, 404);
}
