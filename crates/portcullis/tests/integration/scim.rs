//! SCIM provisioning at `/scim/v2`: the compliance checker scim2-tester (PyPI, installed by
//! `scripts/install-deps.sh`) passes against an organization's token; deprovisioning through
//! SCIM revokes an account's access tokens and registry tokens at once (skopeo and the next
//! registry request are refused); groups named `<org>:<team>` are teams; bad requests get
//! RFC 7644 errors with their `scimType`.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{ADMIN_PW, Server, acme_with_member_bob, audit_entry, pw, run, skopeo_pull};
use crate::v2::push_image;

/// A SCIM token created through the admin API by `creds`, for `org` (or the instance).
async fn scim_token(s: &Server, creds: (&str, &str), org: Option<&str>) -> String {
    let (st, t) = s.api("POST", "/api/v1/scim-tokens", creds, Some(json!({"name": "idp", "org": org}))).await;
    assert_eq!(st, 201, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

/// A SCIM request: (status, scimType or "", body).
async fn scim(s: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = s.http.request(m, s.url(&format!("/scim/v2{path}"))).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.header("content-type", "application/scim+json").body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    if status != 204 {
        assert_eq!(r.headers()["content-type"], "application/scim+json", "{method} {path}");
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_scim_compliance_checker_passes() {
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let token = scim_token(&s, ("alice", ap.as_str()), Some("acme")).await;
    let venv = std::env::var("PCL_SCIM_VENV").unwrap_or_else(|_| "/var/cache/pcl-scim-venv".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/scim/check.py");
    let (ok, out) = run(Command::new(format!("{venv}/bin/python")).arg(script).arg(s.url("/scim/v2")).arg(&token));
    assert!(ok, "scim2-tester found failures:\n{out}");
    let summary = out.lines().last().unwrap_or_default();
    let checks: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(checks >= 60 && summary.ends_with(" 0 failed"), "{summary}");
    for kind in ["User   object_creation", "Group  check_add_attribute", "User   check_remove_attribute"] {
        assert!(out.lines().any(|l| l.starts_with("SUCCESS") && l.contains(kind)), "{kind} ran and passed:\n{out}");
    }
}

#[tokio::test]
async fn deprovisioning_revokes_every_token_at_once() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme_with_member_bob(&s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let (alice, bob) = (("alice", ap.as_str()), ("bob", bp.as_str()));
    let (st, _) =
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", alice, Some(json!({"permission": "read"}))).await;
    assert!(st == 200 || st == 204);
    let t = s.token(Some(alice), &["repository:acme/app:pull,push"]).await;
    push_image(&s, &t, "acme/app", "1", b"provisioned layer").await;
    // only owners make an org's tokens, only the administrator the instance's
    let (st, _) = s.api("POST", "/api/v1/scim-tokens", bob, Some(json!({"name": "x", "org": "acme"}))).await;
    assert_eq!(st, 403);
    let (st, _) = s.api("POST", "/api/v1/scim-tokens", alice, Some(json!({"name": "x"}))).await;
    assert_eq!(st, 403);
    let entra = scim_token(&s, ("admin", ADMIN_PW), None).await;

    // bob pulls with an access token, and holds a registry token
    let (st, pat) = s.api("POST", "/api/v1/access-tokens", bob, Some(json!({"label": "ci", "scopes": ["read"]}))).await;
    assert_eq!(st, 201);
    let pat = pat["token"].as_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = skopeo_pull(&s.addr(), &format!("bob:{pat}"), "acme/app:1", &work.path().join("a"));
    assert!(ok, "{out}");
    let jwt = s.token(Some(("bob", pat.as_str())), &["repository:acme/app:pull"]).await;
    let manifest = |jwt: String| {
        let s = &s;
        async move {
            let rb = s.req("GET", "/v2/acme/app/manifests/1", Some(&jwt)).await;
            rb.header("accept", "application/vnd.oci.image.manifest.v1+json").send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(manifest(jwt.clone()).await, 200);

    // the directory deactivates bob (Entra ID's dialect)
    let (st, found) = scim(&s, &entra, "GET", "/Users?filter=userName%20eq%20%22BOB%22", None).await;
    assert_eq!((st, found["totalResults"].as_u64()), (200, Some(1)), "{found}");
    let id = found["Resources"][0]["id"].as_str().unwrap().to_owned();
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let (st, u) = scim(&s, &entra, "PATCH", &format!("/Users/{id}"), Some(off)).await;
    assert_eq!((st, &u["active"]), (200, &json!(false)), "{u}");
    assert_eq!(manifest(jwt).await, 401, "the registry token is refused on the next request");
    let (ok, _) = skopeo_pull(&s.addr(), &format!("bob:{pat}"), "acme/app:1", &work.path().join("b"));
    assert!(!ok, "the access token is revoked");
    let r = s.http.get(s.url("/token?service=portcullis")).basic_auth("bob", Some(&bp)).send().await.unwrap();
    assert_eq!(r.status(), 401, "and the password refused");
    let e = audit_entry(&s, "user.disable", |e| e["action"] == "user.disable").await;
    assert_eq!(e["actor"], "scim:idp", "{e}");
    assert!(e["detail"].as_str().unwrap().contains("\"revoked_tokens\":1"), "{e}");

    // enabled again: the password works, the revoked token stays revoked
    let on = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": true}}]});
    assert_eq!(scim(&s, &entra, "PATCH", &format!("/Users/{id}"), Some(on)).await.0, 200);
    let (ok, out) = skopeo_pull(&s.addr(), &format!("bob:{bp}"), "acme/app:1", &work.path().join("c"));
    assert!(ok, "{out}");
    let (ok, _) = skopeo_pull(&s.addr(), &format!("bob:{pat}"), "acme/app:1", &work.path().join("d"));
    assert!(!ok);

    // a provisioned user joins acme:dev through its group and leaves with DELETE
    let carol = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "carol", "active": true});
    let (st, c) = scim(&s, &entra, "POST", "/Users", Some(carol.clone())).await;
    assert_eq!(st, 201, "{c}");
    let cid = c["id"].as_str().unwrap().to_owned();
    let (_, dev) = scim(&s, &entra, "GET", "/Groups?filter=displayName%20eq%20%22acme%3Adev%22", None).await;
    let gid = dev["Resources"][0]["id"].as_str().unwrap().to_owned();
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "add", "path": "members", "value": [{"value": cid}]}]});
    assert_eq!(scim(&s, &entra, "PATCH", &format!("/Groups/{gid}"), Some(add)).await.0, 200);
    let (_, members) = s.api("GET", "/api/v1/orgs/acme/teams/dev/members", alice, None).await;
    assert!(members.to_string().contains("\"carol\""), "{members}");
    assert_eq!(scim(&s, &entra, "POST", "/Users", Some(carol)).await.1["scimType"], "uniqueness");
    assert_eq!(scim(&s, &entra, "DELETE", &format!("/Users/{cid}"), None).await.0, 204);
    assert_eq!(scim(&s, &entra, "GET", &format!("/Users/{cid}"), None).await.0, 404);
    let (_, users) = s.admin("GET", "/api/v1/users", None).await;
    assert!(!users.to_string().contains("\"carol\""));
}

#[tokio::test]
async fn bad_scim_requests_get_scim_errors_and_change_nothing() {
    let s = Server::start().await;
    let token = scim_token(&s, ("admin", ADMIN_PW), None).await;
    // no token, a wrong token, Basic credentials: 401 with the Bearer challenge
    for auth in [None, Some("Bearer pcscim_wrong"), Some("Basic YWRtaW46eA==")] {
        let mut rb = s.http.get(s.url("/scim/v2/Users"));
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            (e["schemas"][0].as_str(), e["status"].as_str()),
            (Some("urn:ietf:params:scim:api:messages:2.0:Error"), Some("401"))
        );
    }
    let user = |extra: Value| {
        let mut u = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dan"});
        u.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        u
    };
    let cases: Vec<(Value, &str)> = vec![
        (user(json!({"displayName": ["x"]})), "invalidValue"),
        (user(json!({"active": "maybe"})), "invalidValue"),
        (user(json!({"emails": {"value": "x"}})), "invalidValue"),
        (user(json!({"userName": "Dan Smith"})), "invalidValue"),
        (user(json!({"userName": "*)(uid=*"})), "invalidValue"),
        (user(json!({"schemas": ["urn:example:other"]})), "invalidSyntax"),
        (json!(["dan"]), "invalidSyntax"),
        (json!(null), "invalidSyntax"),
    ];
    for (body, kind) in cases {
        let (st, e) = scim(&s, &token, "POST", "/Users", Some(body.clone())).await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some(kind)), "{body}: {e}");
    }
    let r = s.http.post(s.url("/scim/v2/Users")).bearer_auth(&token).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    for f in ["userName%20eq", "userName%20zz%20%22x%22", "(((userName%20pr"] {
        let (st, e) = scim(&s, &token, "GET", &format!("/Users?filter={f}"), None).await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidFilter")), "{f}");
    }
    let (st, e) = scim(&s, &token, "GET", "/Users?count=many", None).await;
    assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidValue")));
    assert_eq!(scim(&s, &token, "GET", "/Users/u999", None).await.0, 404);
    assert_eq!(scim(&s, &token, "GET", "/Widgets", None).await.0, 404);
    // the administrator is out of SCIM's reach, and nothing was created
    let (_, all) = scim(&s, &token, "GET", "/Users", None).await;
    assert!(!all.to_string().contains("\"admin\"") && !all.to_string().contains("\"dan\""), "{all}");
    // a body over 1 MiB (last: the server closes that connection)
    let r = s.http.post(s.url("/scim/v2/Users")).bearer_auth(&token).body(vec![b' '; 2 << 20]).send().await.unwrap();
    assert_eq!(r.status(), 413);
}
