//! The directory grants only what an organization delegated (issue 25), tried from the attacker's
//! side against the real binary and a real OpenID provider (npm `oidc-provider`, whose accounts
//! claim whatever groups and names a test gives them — a hostile provider): groups naming an org
//! that did not delegate change nothing and are audited; a delegating org gets exactly the mapped
//! teams, and owners only with their own opt-in; a withdrawal applies at once. Every tricky `next`
//! stays on the gateway or goes to `/`, never a 5xx; a second subject with a SCIM account's name is
//! refused; turning on SSO enforcement ends a local member's console session and registry token at
//! the next request; a replayed callback is refused on another replica.

use std::time::Duration;

use serde_json::json;

use crate::sso::{Jar, Provider, acme, finish, provider_and_gateway, through_provider, through_provider_from};
use crate::support::{ADMIN_PW, Server, free_port, pw};

fn hostile() -> serde_json::Value {
    json!({
        "mallory": {"preferred_username": "mallory", "groups": ["acme:owners", "acme:dev", "victim:owners", "victim:dev"]},
        "sam-1": {"preferred_username": "sam", "groups": []},
        "sam-2": {"preferred_username": "sam", "groups": []},
        "bob": {"preferred_username": "bob", "groups": []},
    })
}

/// The teams of `org` that `user` is in, as the org's owner sees them.
async fn teams_of(s: &Server, org: &str, owner: &str, user: &str) -> Vec<String> {
    let op = pw(owner);
    let (_, members) = s.api("GET", &format!("/api/v1/orgs/{org}/members"), (owner, &op), None).await;
    let m = members.as_array().unwrap().iter().find(|m| m["username"] == user);
    let mut t: Vec<String> = m
        .map(|m| m["teams"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

async fn sign_in(s: &Server, login: &str) -> (u16, String) {
    let (cb, jar) = through_provider(s, login).await;
    finish(&cb, &jar).await
}

async fn audit_contains(s: &Server, org: &str, owner: &str, needle: &str) -> String {
    let op = pw(owner);
    let mut last = String::new();
    for _ in 0..60 {
        last = s.api("GET", &format!("/api/v1/orgs/{org}/audit?limit=50"), (owner, &op), None).await.1.to_string();
        if last.contains(needle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn groups_grant_only_what_an_org_delegated() {
    let (_provider, s) = provider_and_gateway(hostile()).await;
    // victim: made by a local user who never connected the directory, with a private image
    s.create_user("vic").await;
    s.create_org("victim", "vic").await;
    let vp = pw("vic");
    let t = s.token(Some(("vic", &vp)), &["repository:victim/secret:pull,push"]).await;
    crate::v2::push_image(&s, &t, "victim/secret", "1", b"victim's private layer").await;

    // mallory's groups name owners of both: nothing happens, and it is on record
    let (status, body) = sign_in(&s, "mallory").await;
    assert!(status == 303 && body.starts_with("SESSION"), "{status} {body}");
    assert!(teams_of(&s, "victim", "vic", "mallory").await.is_empty());
    assert!(teams_of(&s, "acme", "owner", "mallory").await.is_empty());
    let audit = audit_contains(&s, "victim", "vic", "directory.ignored").await;
    assert!(audit.contains("directory.ignored") && audit.contains("victim:owners"), "{audit}");
    // no team was made in victim for her groups
    let (_, teams) = s.api("GET", "/api/v1/orgs/victim/teams", ("vic", &vp), None).await;
    assert!(!teams.to_string().contains("\"dev\""), "{teams}");

    // members see the delegation read-only; only owners change it
    s.create_user("carol").await;
    let op = pw("owner");
    let carol = json!({"username": "carol"});
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams/dev/members", ("owner", &op), Some(carol)).await.0, 201);
    let cp = pw("carol");
    let (st, b) = s.api("GET", "/api/v1/orgs/acme/settings", ("carol", &cp), None).await;
    assert!(st == 200 && b["directory"] == json!({"providers": [], "owners": false}), "{st} {b}");
    let grab = json!({"directory": {"providers": ["oidc"], "owners": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("carol", &cp), Some(grab)).await.0, 403);
    let bad = json!({"directory": {"providers": ["saml"]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("owner", &op), Some(bad)).await.0, 400);

    // acme delegates its teams to OIDC, not owners: mallory gets dev, never owners
    let teams_only = json!({"directory": {"providers": ["oidc"]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("owner", &op), Some(teams_only)).await.0, 200);
    assert_eq!(sign_in(&s, "mallory").await.0, 303);
    assert_eq!(teams_of(&s, "acme", "owner", "mallory").await, ["dev"]);
    assert!(teams_of(&s, "victim", "vic", "mallory").await.is_empty(), "victim is still untouched");
    let audit = audit_contains(&s, "acme", "owner", "did not delegate its owners").await;
    assert!(audit.contains("did not delegate its owners"), "{audit}");
    // the console shows which teams the directory manages
    let html = console_page(&s, "owner", "/orgs/acme/members").await;
    assert!(html.contains("Identity provider groups") && html.contains("the owners team is not managed"), "{html}");

    // with the owners opt-in, owners too; withdrawn, the memberships go at once
    let owners = json!({"directory": {"providers": ["oidc"], "owners": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("owner", &op), Some(owners)).await.0, 200);
    assert_eq!(sign_in(&s, "mallory").await.0, 303);
    assert_eq!(teams_of(&s, "acme", "owner", "mallory").await, ["dev", "owners"]);
    let withdrawn = json!({"directory": {"providers": [], "owners": false}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("owner", &op), Some(withdrawn)).await.0, 200);
    assert!(teams_of(&s, "acme", "owner", "mallory").await.is_empty(), "withdrawn at once, no sign-in needed");
    assert_eq!(teams_of(&s, "acme", "owner", "carol").await, ["dev"], "hand-made memberships stay");
}

/// A page of the console as `user` sees it (signed in with a password).
async fn console_page(s: &Server, user: &str, path: &str) -> String {
    let (jar, _) = password_session(s, user, &pw(user), "/").await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(s.url(path)).header("cookie", jar.header(&s.url(path))).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

/// Signs in at the console's password form with `next`: the cookies and the answer's
/// (status, Location).
async fn password_session(s: &Server, user: &str, password: &str, next: &str) -> (Jar, (u16, String)) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = Jar::default();
    let login = s.url("/login");
    let r = http.get(&login).send().await.unwrap();
    jar.take(&login, &r);
    let page = r.text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let form = [("username", user), ("password", password), ("next", next), ("csrf", &csrf)];
    let r = http.post(&login).header("cookie", jar.header(&login)).form(&form).send().await.unwrap();
    jar.take(&login, &r);
    let status = r.status().as_u16();
    let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (jar, (status, loc))
}

/// A `next` an attacker might put in a sign-in link.
const TRICKY: &[&str] = &[
    "/\t/evil.example",
    "/\t\t/evil.example/x",
    "/\n/evil.example",
    "/\r\nSet-Cookie: pcl_session=x",
    "/orgs\r\nLocation: https://evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "/%0d%0aSet-Cookie:x=y",
    "https://evil.example/",
    "javascript:alert(1)",
    "data:text/html,x",
    "//user:pw@evil.example",
    "//[::1]:8080/",
    "/\u{a0}/evil.example",
    "/\u{3000}/evil.example",
    "evil.example",
    "",
    " /orgs",
];

/// Where a browser goes with `location`, relative to the gateway: it must be the gateway.
fn stays_here(s: &Server, location: &str) -> bool {
    let base = reqwest::Url::parse(&s.url("/")).unwrap();
    location.bytes().all(|b| b.is_ascii_graphic())
        && base.join(location).is_ok_and(|u| u.host_str() == Some("127.0.0.1") && u.port() == base.port())
}

#[tokio::test]
async fn every_next_stays_on_the_gateway() {
    let (_provider, s) = provider_and_gateway(hostile()).await;
    let op = pw("owner");
    for next in TRICKY.iter().copied().chain(["/orgs/acme/members"]) {
        // the password form
        let (_, (status, loc)) = password_session(&s, "owner", &op, next).await;
        assert_eq!(status, 303, "password sign-in with next={next:?}");
        assert!(stays_here(&s, &loc), "password sign-in with next={next:?} goes to {loc:?}");
        // single sign-on: the state carries `next` through the provider
        let start = reqwest::Url::parse_with_params(&s.url("/auth/oidc/login"), &[("next", next)]).unwrap();
        let (cb, jar) = through_provider_from(start.as_str(), "bob").await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = http.get(&cb).header("cookie", jar.header(&cb)).send().await.unwrap();
        let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        assert_eq!(r.status(), 303, "OIDC sign-in with next={next:?}");
        assert!(stays_here(&s, &loc), "OIDC sign-in with next={next:?} goes to {loc:?}");
        if next.starts_with("/orgs/") {
            assert_eq!(loc, next, "a real console path is kept");
        } else {
            assert_eq!(loc, "/", "next={next:?}");
        }
    }
    // the login page's own redirect for a signed-in browser, and a next that is not UTF-8
    let r = s.http.get(s.url("/login?next=%2F%0D%0Aevil")).send().await.unwrap();
    assert!(r.status().as_u16() < 500);
    let r = s.http.get(s.url("/auth/oidc/login?next=%FF%FE")).send().await.unwrap();
    assert!(r.status().as_u16() < 500);
}

#[tokio::test]
async fn accounts_stay_bound_and_enforcement_ends_what_was_issued() {
    let db = store::testsuite::TestDatabase::create().await;
    let bucket = store::testsuite::test_bucket();
    let (pa, pb) = (free_port(), free_port());
    let provider = Provider::start(&format!("http://127.0.0.1:{pa}/auth/oidc/callback"), hostile()).await;
    let public = format!("http://127.0.0.1:{pa}");
    let issuer = provider.issuer();
    let mut env = crate::support::scale_env(&db, &bucket);
    env.extend(crate::sso::oidc_env(&public, &issuer));
    let a = Server::launch_at(pa, tempfile::tempdir().unwrap(), &env, None, "http").await;
    let b = Server::launch_at(pb, tempfile::tempdir().unwrap(), &env, None, "http").await;
    acme(&a).await;

    // a callback used on one replica is refused on the other (and the other way round)
    let (cb, jar) = through_provider(&a, "bob").await;
    let (status, body) = finish(&cb, &jar).await;
    assert!(status == 303 && body.starts_with("SESSION"), "{status} {body}");
    let on_b = cb.replace(&format!(":{pa}/"), &format!(":{pb}/"));
    let cookies = jar.header(&cb);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(&on_b).header("cookie", &cookies).send().await.unwrap();
    let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
    assert!(status == 400 && body.contains("already used"), "replayed on the other replica: {status} {body}");
    let (cb, jar) = through_provider(&a, "bob").await;
    let on_b = cb.replace(&format!(":{pa}/"), &format!(":{pb}/"));
    let r = http.get(&on_b).header("cookie", jar.header(&cb)).send().await.unwrap();
    assert_eq!(r.status(), 303, "a fresh state works on either replica");
    let (status, body) = finish(&cb, &jar).await;
    assert!(status == 400 && body.contains("already used"), "{status} {body}");

    // a SCIM account is bound to the first subject that signs in to it; a second subject with
    // the same preferred_username is refused, on either replica
    let op = pw("owner");
    let (st, tok) =
        a.api("POST", "/api/v1/scim-tokens", ("owner", &op), Some(json!({"name": "idp", "org": "acme"}))).await;
    assert_eq!(st, 201, "{tok}");
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "sam"});
    let r = a.http.post(a.url("/scim/v2/Users")).bearer_auth(tok["token"].as_str().unwrap()).json(&user).send().await;
    assert_eq!(r.unwrap().status(), 201);
    let (status, body) = sign_in(&a, "sam-1").await;
    assert!(status == 303 && body.starts_with("SESSION"), "the first subject: {status} {body}");
    let (status, body) = sign_in(&a, "sam-2").await;
    assert!(
        status == 403 && body.contains("bound to another identity") && !body.starts_with("SESSION"),
        "{status} {body}"
    );
    assert_eq!(sign_in(&a, "sam-1").await.0, 303, "the bound subject again");

    // acme enforces SSO: carol's console session and her registry token end at the next request
    a.create_user("carol").await;
    let cp = pw("carol");
    let carol = json!({"username": "carol"});
    assert_eq!(a.api("POST", "/api/v1/orgs/acme/teams/dev/members", ("owner", &op), Some(carol)).await.0, 201);
    let (jar, (status, _)) = password_session(&a, "carol", &cp, "/orgs").await;
    assert_eq!(status, 303);
    let orgs = a.url("/orgs");
    let page = |srv: &Server| {
        let (u, c) = (srv.url("/orgs"), jar.header(&orgs));
        let http = http.clone();
        async move { http.get(u).header("cookie", c).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(page(&a).await, 200, "carol's console session");
    let token = a.token(Some(("carol", &cp)), &["repository:acme/app:pull"]).await;
    let pull = |srv: &Server| {
        let (u, t) = (srv.url("/v2/acme/app/manifests/1"), token.clone());
        async move { reqwest::Client::new().get(u).bearer_auth(t).send().await.unwrap() }
    };
    tokio::time::sleep(Duration::from_millis(1000)).await; // the other replica catches up with carol
    assert_eq!(pull(&b).await.status(), 200, "carol's registry token, on the other replica");
    let (st, body) = a.admin("PUT", "/api/v1/orgs/acme/settings", Some(json!({"sso_enforced": true}))).await;
    assert_eq!(st, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for srv in [&a, &b] {
        assert_eq!(page(srv).await, 303, "the session ended: back to sign-in");
        let r = pull(srv).await;
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("acme requires single sign-on"));
    }
    let r = a.http.get(a.url("/token?service=portcullis")).basic_auth("carol", Some(&cp)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // the owner (local) was not locked out of the API by name differing in case either: the
    // administrator keeps the break-glass password
    assert_eq!(
        a.http
            .get(a.url("/token?service=portcullis"))
            .basic_auth("ADMIN", Some(ADMIN_PW))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
