//! Robot accounts: an organization's machine identities, made by its owners, members of its
//! teams (never owners), with one expiring token; skopeo and docker sign in with them; the API,
//! other organizations and the owners team stay closed to them.

use serde_json::json;

use crate::support::{acme_with_member_bob, pw, run, skopeo_pull};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_make_robots_that_pull_and_push_as_their_teams_allow() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    let gw = s.addr();
    acme_with_member_bob(s).await;
    let (ap, bp) = (pw("alice"), pw("bob"));
    let (alice, bob) = (("alice", ap.as_str()), ("bob", bp.as_str()));
    let write = json!({"permission": "write"});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", alice, Some(write)).await.0, 200);
    let src = format!("oci:{}:tiny", e.layout.dir.display());
    let push = |creds: &str, dst: &str| {
        run(std::process::Command::new("skopeo").args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &src,
            &format!("docker://{gw}/{dst}"),
        ]))
    };
    assert!(push(&format!("alice:{ap}"), "acme/app:1").0);

    // what owners may not make, and who may not make robots at all
    let robot = |name: &str, teams: serde_json::Value, scope: &str, days: i64| json!({"name": name, "teams": teams, "scope": scope, "expires_in_days": days});
    for (body, why) in [
        (robot("ci", json!(["owners"]), "read", 30), "never an owner"),
        (robot("ci", json!([]), "read", 30), "at least one team"),
        (robot("ci", json!(["nope"]), "read", 30), "acme has no team"),
        (robot("ci", json!(["dev"]), "read", 0), "1 to 365 days"),
        (robot("ci", json!(["dev"]), "read", 400), "1 to 365 days"),
        (robot("Bad Name", json!(["dev"]), "read", 30), "invalid robot name"),
    ] {
        let (st, v) = s.api("POST", "/api/v1/orgs/acme/robots", alice, Some(body)).await;
        assert_eq!(st, 400, "{v}");
        assert!(v["message"].as_str().unwrap_or_default().contains(why), "{why}: {v}");
    }
    let missing = json!({"name": "ci", "teams": ["dev"]});
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/robots", alice, Some(missing)).await.0, 400, "an expiry is required");
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/robots", bob, Some(robot("ci", json!(["dev"]), "read", 30))).await.0,
        403
    );

    // a pull robot and a push robot
    let (st, puller) =
        s.api("POST", "/api/v1/orgs/acme/robots", alice, Some(robot("ci", json!(["dev"]), "read", 30))).await;
    assert_eq!(st, 201, "{puller}");
    assert_eq!(puller["username"], "robot$acme+ci");
    let (_, pusher) =
        s.api("POST", "/api/v1/orgs/acme/robots", alice, Some(robot("release", json!(["dev"]), "read-write", 7))).await;
    assert_eq!(
        s.api("POST", "/api/v1/orgs/acme/robots", alice, Some(robot("ci", json!(["dev"]), "read", 30))).await.0,
        409
    );
    let pull_creds = format!("robot$acme+ci:{}", puller["token"].as_str().unwrap());
    let push_creds = format!("robot$acme+release:{}", pusher["token"].as_str().unwrap());
    let (ok, out) = skopeo_pull(&gw, &pull_creds, "acme/app:1", &e.work.path().join("p1"));
    assert!(ok, "{out}");
    assert!(!push(&pull_creds, "acme/app:2").0, "a pull robot does not push");
    let (ok, out) = push(&push_creds, "acme/app:2");
    assert!(ok, "{out}");
    assert!(!push(&push_creds, "acme/other:1").0, "only where its teams may");
    // listed with its teams, expiry and last use; the secret is never shown again
    let (_, list) = s.api("GET", "/api/v1/orgs/acme/robots", alice, None).await;
    let ci = list.as_array().unwrap().iter().find(|r| r["name"] == "ci").unwrap().clone();
    assert_eq!(ci["teams"], json!(["dev"]));
    assert!(ci["expires_at"].as_i64().is_some() && ci["last_used_at"].as_i64().is_some(), "{ci}");
    assert!(ci.get("token").is_none());
    assert_eq!(s.api("GET", "/api/v1/orgs/acme/robots", bob, None).await.0, 403);

    // a robot is never an owner, never another org's, and its token opens no API
    let add = |user: &str| json!({"username": user});
    let (st, v) = s.api("POST", "/api/v1/orgs/acme/teams/owners/members", alice, Some(add("robot$acme+ci"))).await;
    assert_eq!(st, 400, "{v}");
    s.create_org("other", "bob").await;
    let (st, v) = s.api("POST", "/api/v1/orgs/other/teams", bob, Some(json!({"name": "tools"}))).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.api("POST", "/api/v1/orgs/other/teams/tools/members", bob, Some(add("robot$acme+ci"))).await;
    assert_eq!(st, 400, "{v}");
    let token = puller["token"].as_str().unwrap();
    let (st, _) = s.api("GET", "/api/v1/orgs", ("robot$acme+ci", token), None).await;
    assert_eq!(st, 403);
    let r = reqwest::Client::new().get(s.url("/api/v1/orgs")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let (st, _) = s.api("POST", "/api/v1/access-tokens", ("robot$acme+ci", token), Some(json!({"label": "x"}))).await;
    assert_eq!(st, 403, "a robot cannot mint itself a longer-lived token");
    // the token under another name is refused
    let (ok, _) = skopeo_pull(&gw, &format!("bob:{token}"), "acme/app:1", &e.work.path().join("p2"));
    assert!(!ok);

    // deleted: its token stops working at once
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/robots/ci", alice, None).await.0, 204);
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/robots/ci", alice, None).await.0, 404);
    let (ok, _) = skopeo_pull(&gw, &pull_creds, "acme/app:1", &e.work.path().join("p3"));
    assert!(!ok, "deleted");
    let entry = crate::support::audit_entry(s, "robot.delete", |e| e["actor"] == "alice").await;
    assert!(entry["detail"].as_str().unwrap().contains("robot$acme+ci"), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_make_and_delete_robots_in_the_console() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    acme_with_member_bob(s).await;
    let alice = crate::web::Web::sign_in(s, "alice", &pw("alice")).await;
    let bob = crate::web::Web::sign_in(s, "bob", &pw("bob")).await;
    let form = [("name", "ci"), ("teams", "dev"), ("scope", "read"), ("days", "30")];
    assert_eq!(bob.post("/orgs/acme/robots", &form).await.0, 403);
    assert!(!bob.get("/orgs/acme/members").await.1.contains("Make a robot"), "members do not manage robots");
    let (st, _, page) = alice.post("/orgs/acme/robots", &form).await;
    assert_eq!(st, 200, "{page}");
    let token = page.split("<output id=\"new-token\"><code>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(page.contains("<td><code>robot$acme+ci</code></td><td>dev</td><td>pull</td>"), "{page}");
    // the token works, and is never shown again
    let (ok, out) =
        skopeo_pull(&s.addr(), &format!("robot$acme+ci:{token}"), "library/tiny:1", &e.work.path().join("p"));
    assert!(ok, "{out}");
    assert!(!alice.get("/orgs/acme/members").await.1.contains(&token));
    let (st, _, page) = alice
        .post("/orgs/acme/robots", &[("name", "boss"), ("teams", "owners"), ("scope", "read"), ("days", "30")])
        .await;
    assert_eq!(st, 400);
    assert!(page.contains("never an owner"), "{page}");
    let (st, loc, _) = alice.post("/orgs/acme/robots/ci/delete", &[]).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/members?done=robot-deleted"));
    let (ok, _) = skopeo_pull(&s.addr(), &format!("robot$acme+ci:{token}"), "library/tiny:1", &e.work.path().join("q"));
    assert!(!ok, "deleted");
}
