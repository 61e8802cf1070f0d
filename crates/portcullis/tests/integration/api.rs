//! The admin API: every endpoint, its permissions and its errors.

use serde_json::{Value, json};

use crate::support::{ADMIN_PW, Server, acme_with_member_bob, pw};

#[tokio::test]
async fn users_tokens_and_rate_limits() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let a = ("alice", pw("alice"));
    let alice = (a.0, a.1.as_str());
    // only the administrator creates users; names and passwords are checked
    assert_eq!(
        s.api("POST", "/api/v1/users", alice, Some(json!({"username": "eve", "password": "longenough"}))).await.0,
        403
    );
    assert_eq!(
        s.admin("POST", "/api/v1/users", Some(json!({"username": "Eve", "password": "longenough"}))).await.0,
        400
    );
    assert_eq!(s.admin("POST", "/api/v1/users", Some(json!({"username": "eve", "password": "short"}))).await.0, 400);
    assert_eq!(
        s.admin("POST", "/api/v1/users", Some(json!({"username": "library", "password": "longenough"}))).await.0,
        409
    );
    assert_eq!(
        s.admin("POST", "/api/v1/users", Some(json!({"username": "alice", "password": "longenough"}))).await.0,
        409
    );
    assert_eq!(
        s.admin("POST", "/api/v1/users", Some(json!({"username": "x1", "password": "longenough", "extra": 1}))).await.0,
        400
    );
    assert_eq!(s.admin("POST", "/api/v1/users", None).await.0, 400);
    let (st, users) = s.admin("GET", "/api/v1/users", None).await;
    assert_eq!(st, 200);
    assert!(users.as_array().unwrap().iter().all(|u| u.get("password_hash").is_none()), "hashes never leave");
    assert_eq!(s.api("GET", "/api/v1/me", alice, None).await.1["username"], "alice");
    assert_eq!(s.api("GET", "/api/v1/me", ("alice", "wrong-password"), None).await.0, 401);

    // access tokens: shown once, usable as password and as Bearer, read-only scope, revocable
    let (st, t) = s.api("POST", "/api/v1/access-tokens", alice, Some(json!({"label": "ci", "scope": "read"}))).await;
    assert_eq!(st, 201, "{t}");
    let secret = t["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pcl_"));
    let (_, list) = s.api("GET", "/api/v1/access-tokens", alice, None).await;
    assert_eq!(list[0]["label"], "ci");
    assert!(list[0].get("token").is_none(), "the secret is never listed");
    assert_eq!(s.api("GET", "/api/v1/me", ("alice", &secret), None).await.1["scope"], "read");
    let r = s.http.get(s.url("/api/v1/me")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // a read-only token cannot push to alice's own namespace
    let rt = s.token(Some(("alice", &secret)), &["repository:alice/app:pull,push"]).await;
    let r = s.req("POST", "/v2/alice/app/blobs/uploads/", Some(&rt)).await.send().await.unwrap();
    assert_eq!(r.status(), 401, "push was not granted to a read-only token");
    // a read-only token cannot mint a read-write one, nor change the password
    let (_, t2) = s
        .api("POST", "/api/v1/access-tokens", ("alice", &secret), Some(json!({"label": "x", "scopes": ["read-write"]})))
        .await;
    assert_eq!(t2["scope"], "read");
    let both = json!({"label": "y", "scope": "read", "scopes": ["read"]});
    assert_eq!(s.api("POST", "/api/v1/access-tokens", alice, Some(both)).await.0, 400, "one word, once");
    assert_eq!(
        s.api("PUT", "/api/v1/users/alice/password", ("alice", &secret), Some(json!({"password": "new-password-9"})))
            .await
            .0,
        403
    );
    let id = t["id"].as_i64().unwrap();
    assert_eq!(s.api("DELETE", &format!("/api/v1/access-tokens/{id}"), alice, None).await.0, 204);
    // token changes are audited (instance-wide log, administrator only)
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(s.api("GET", "/api/v1/audit", alice, None).await.0, 403);
    let (_, log) = s.admin("GET", "/api/v1/audit?actor=alice", None).await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"token.create") && actions.contains(&"token.delete"), "{log}");
    assert_eq!(s.api("GET", "/api/v1/me", ("alice", &secret), None).await.0, 401, "revoked");
    // expired tokens do not work
    let (st, _) = s.api("POST", "/api/v1/access-tokens", alice, Some(json!({"label": "old", "expires_at": 1}))).await;
    assert_eq!(st, 400);
    // password change, then the old password fails
    assert_eq!(
        s.api("PUT", "/api/v1/users/alice/password", alice, Some(json!({"password": "new-password-9"}))).await.0,
        204
    );
    assert_eq!(s.api("GET", "/api/v1/me", alice, None).await.0, 401);

    // past a few failures, each makes the next attempt of that user from that address wait
    // longer (1 s, 2 s …)
    s.create_user("mallory").await;
    for i in 0..4 {
        assert_eq!(s.api("GET", "/api/v1/me", ("mallory", &format!("bad-guess-{i}")), None).await.0, 401);
    }
    assert_eq!(s.api("GET", "/api/v1/me", ("mallory", "bad-guess-124"), None).await.0, 429);
    let r = s.http.get(s.url("/token")).basic_auth("mallory", Some(pw("mallory"))).send().await.unwrap();
    assert_eq!(r.status(), 429, "from the guessing address, even the right password waits");
    // whole seconds, rounded up: 2, or 1 when the clock's second turned since the failure
    let wait = r.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(wait == "2" || wait == "1", "Retry-After {wait}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(s.api("GET", "/api/v1/me", ("mallory", &pw("mallory")), None).await.0, 200, "after the wait");
}

#[tokio::test]
async fn orgs_teams_members_permissions_repositories() {
    let s = Server::start().await;
    for u in ["alice", "bob", "carol"] {
        s.create_user(u).await;
    }
    let (ap, bp, cp) = (pw("alice"), pw("bob"), pw("carol"));
    let (alice, bob, carol) = (("alice", ap.as_str()), ("bob", bp.as_str()), ("carol", cp.as_str()));
    assert_eq!(s.api("POST", "/api/v1/orgs", alice, Some(json!({"name": "acme"}))).await.0, 201);
    assert_eq!(s.api("POST", "/api/v1/orgs", bob, Some(json!({"name": "acme"}))).await.0, 409);
    assert_eq!(
        s.api("POST", "/api/v1/orgs", bob, Some(json!({"name": "alice"}))).await.0,
        409,
        "users and orgs share names"
    );
    assert_eq!(s.api("POST", "/api/v1/orgs", bob, Some(json!({"name": "library"}))).await.0, 409, "reserved");
    let (_, members) = s.api("GET", "/api/v1/orgs/acme/members", alice, None).await;
    assert_eq!(members, json!([{"username": "alice", "teams": ["owners"], "owner": true, "source": "local"}]));
    // non-members do not see the org
    assert_eq!(s.api("GET", "/api/v1/orgs/acme", bob, None).await.0, 404);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "dev"}))).await.0, 201);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "dev"}))).await.0, 409);
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", alice, Some(json!({"username": "bob"}))).await.0,
        201
    );
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", alice, Some(json!({"username": "ghost"}))).await.0,
        404
    );
    // members read, but cannot change
    assert_eq!(s.api("GET", "/api/v1/orgs/acme/members", bob, None).await.0, 200);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", bob, Some(json!({"name": "x"}))).await.0, 403);
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", bob, Some(json!({"username": "carol"}))).await.0,
        403
    );
    // team repository permissions
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", alice, Some(json!({"permission": "write"})))
            .await
            .0,
        200
    );
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", alice, Some(json!({"permission": "owner"})))
            .await
            .0,
        400
    );
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/Bad..", alice, Some(json!({"permission": "read"})))
            .await
            .0,
        400
    );
    let (_, perms) = s.api("GET", "/api/v1/orgs/acme/teams/dev/permissions", bob, None).await;
    assert_eq!(perms, json!([{"repository": "app", "permission": "write"}]));
    // bob can now push acme/app: the repository is created private
    let bt = s.token(Some(bob), &["repository:acme/app:pull,push"]).await;
    let d = crate::support::sha256(b"x");
    assert_eq!(
        s.req("POST", &format!("/v2/acme/app/blobs/uploads/?digest={d}"), Some(&bt))
            .await
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let (_, repos) = s.api("GET", "/api/v1/repositories?namespace=acme", bob, None).await;
    assert_eq!(repos[0]["name"], "acme/app");
    assert_eq!(repos[0]["visibility"], "private");
    assert_eq!(s.api("GET", "/api/v1/repositories", carol, None).await.1, json!([]));
    // write is not admin: bob cannot change visibility or delete; alice (owner) can
    assert_eq!(
        s.api("PATCH", "/api/v1/repositories/acme/app", bob, Some(json!({"visibility": "public"}))).await.0,
        403
    );
    assert_eq!(
        s.api("PATCH", "/api/v1/repositories/acme/app", carol, Some(json!({"visibility": "public"}))).await.0,
        404
    );
    assert_eq!(
        s.api("PATCH", "/api/v1/repositories/acme/app", alice, Some(json!({"visibility": "public"}))).await.0,
        200
    );
    assert_eq!(s.api("GET", "/api/v1/repositories", carol, None).await.1[0]["name"], "acme/app", "public is visible");
    // owners: the last owner stays; a second owner lets the first leave
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/teams/owners/members/alice", alice, None).await.0, 409);
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/teams/owners/members", alice, Some(json!({"username": "carol"}))).await.0,
        201
    );
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/teams/owners/members/alice", alice, None).await.0, 204);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "y"}))).await.0, 404, "alice left");
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/teams/owners", carol, None).await.0, 409);
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/teams/dev", carol, None).await.0, 204);
    assert_eq!(s.api("DELETE", "/api/v1/repositories/acme/app", carol, None).await.0, 204);
    assert_eq!(
        s.admin("GET", "/api/v1/orgs", None).await.1.as_array().unwrap().len(),
        1,
        "the administrator sees every org"
    );
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let s = Server::start().await;
    let r = s.http.get(s.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let src = include_str!("../../../http/src/api.rs");
    let routes: Vec<String> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\""))
        .map(|l| l.split('"').next().unwrap().replace("{*", "{"))
        .collect();
    assert!(routes.len() >= 15);
    for r in routes {
        assert!(doc["paths"].get(&r).is_some(), "{r} is not documented");
    }
    // ops endpoints
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    let r: Value = s.http.get(s.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"database": true, "blob_store": true, "problems": []}));
    let r = s.http.get(s.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let _ = ADMIN_PW;
}

/// Every endpoint that takes a body (found in the router's source, so a new one is covered)
/// refuses anything but a JSON object, a malformed or oversized body, wrong types and unknown
/// fields with a 4xx in the API's shape, and none of them changes anything.
#[tokio::test]
async fn bodies_must_be_json_objects() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme_with_member_bob(&s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let alice = ("alice", ap.as_str());
    let ask = json!({"image": "quay.io/x/y:2", "reason": "tests"});
    let (st, req) = s.api("POST", "/api/v1/orgs/acme/exception-requests", ("bob", &bp), Some(ask)).await;
    assert_eq!(st, 201, "{req}");
    let settings = json!({"restricted_images": {"enabled": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(settings)).await.0, 200);

    let src = include_str!("../../../http/src/api.rs");
    let mut writes = Vec::new();
    for line in src.lines().filter_map(|l| l.trim().strip_prefix(".route(\"")) {
        let template = line.split('"').next().unwrap();
        let path = template
            .replace("{name}", "bob")
            .replace("{org}", "acme")
            .replace("{team}", "dev")
            .replace("{*repo}", "app")
            .replace("{id}", &req["id"].to_string())
            .replace("{namespace}", "someone")
            .replace("{*name}", "acme/app")
            .replace("{user}", "bob");
        assert!(!path.contains('{'), "no value for a parameter of {template}");
        for method in ["post", "put", "patch"] {
            if line.contains(&format!("{method}(")) {
                writes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(writes.len() >= 15, "{writes:?}");

    let state = || async {
        let mut all = Vec::new();
        for p in [
            "/api/v1/users",
            "/api/v1/orgs",
            "/api/v1/access-tokens",
            "/api/v1/scim-tokens",
            "/api/v1/orgs/acme/members",
            "/api/v1/orgs/acme/teams",
            "/api/v1/orgs/acme/teams/dev/permissions",
            "/api/v1/orgs/acme/settings",
            "/api/v1/orgs/acme/teams/dev/settings",
            "/api/v1/orgs/acme/policy/versions",
            "/api/v1/orgs/acme/exceptions",
            "/api/v1/orgs/acme/exception-requests",
            "/api/v1/publishers",
            "/api/v1/repositories",
        ] {
            let (st, v) = s.admin("GET", p, None).await;
            assert_eq!(st, 200, "{p}: {v}");
            all.push(v);
        }
        all
    };
    let before = state().await;

    let huge = format!("{{\"note\": \"{}\"}}", "x".repeat(300 * 1024));
    let bodies: [(&str, u16); 12] = [
        ("[]", 400),
        ("[\"eve\", \"longenough\"]", 400),
        ("1", 400),
        ("\"x\"", 400),
        ("null", 400),
        ("true", 400),
        ("", 400),
        ("{\"unterminated\": ", 400),
        ("{\"name\": 1, \"username\": [], \"password\": {}, \"image\": 2}", 400),
        ("{\"zzz_unknown\": \"'; DROP TABLE users; --\"}", 400),
        ("{\"username\": \"\u{0130}\u{200d}\u{1f600}\", \"password\": \"\u{0000}\"}", 400),
        (huge.as_str(), 413),
    ];
    for (method, path) in &writes {
        for (body, want) in &bodies {
            // the empty body is the one form an approval may take ("approve as asked")
            if body.is_empty() && path.ends_with("/approve") {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = s
                .http
                .request(m, s.url(path))
                .basic_auth("admin", Some(ADMIN_PW))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let shown: String = body.chars().take(60).collect();
            assert_eq!(status, *want, "{method} {path} with {shown}: {v}");
            assert!(v["error"].is_string() && v["message"].is_string(), "{method} {path} with {shown}: {v}");
        }
        let r = s
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), s.url(path))
            .basic_auth("admin", Some(ADMIN_PW))
            .body("[]")
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["message"], "the body must be a JSON object, not an array", "{method} {path}");
    }
    assert_eq!(state().await, before, "no refused body changed anything");
    assert_eq!(s.api("GET", "/api/v1/me", ("bob", &bp), None).await.0, 200, "bob's password is unchanged");
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["restricted_images"]["enabled"], true, "a body of [] did not reset the settings");
}
