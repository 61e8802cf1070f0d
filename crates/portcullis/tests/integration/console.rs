//! The web console over HTTP: sessions and their cookie, CSRF and origin checks, owners
//! versus members versus non-members on every form, and a snapshot of every page's HTML for
//! an owner, a member and a non-member. The browser test is in `browser.rs`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, pw, skopeo_pull};
use crate::web::{Web, client};

/// alice (who exists) owns acme; bob is in its team `dev`; carol is in no org.
async fn acme(s: &Server) {
    crate::support::acme_with_member_bob(s).await;
    s.create_user("carol").await;
}

async fn restricted(s: &Server) -> bool {
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    v["restricted_images"]["enabled"].as_bool().unwrap()
}

#[tokio::test]
async fn sign_in_sessions_and_guarded_forms() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme(&s).await;
    let http = client();
    // pages need a session; the way back is kept, but only to a local path
    let r = http.get(s.url("/orgs/acme/permissions")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
        (303, "/login?next=/orgs/acme/permissions")
    );
    let login = |u: &str, p: &str, next: &str| {
        let (u, p, next, http, s) = (u.to_owned(), p.to_owned(), next.to_owned(), http.clone(), &s);
        async move { Ok::<_, ()>(crate::web::login_form(&http, s, &u, &p, &next).await) }
    };
    // login CSRF: a sign-in post without the form's token (another site's form) is refused
    let f = [("username", "alice".to_owned()), ("password", pw("alice")), ("next", "/orgs".to_owned())];
    let r = http.post(s.url("/login")).form(&f).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap().contains("pcl_session")));
    let mut forged = f.to_vec();
    forged.push(("csrf", "0".repeat(48)));
    let r = http
        .post(s.url("/login"))
        .header("cookie", format!("pcl_login={}", "1".repeat(48)))
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a token that is not the cookie's");
    let r = login("alice", &pw("alice"), "//evil.example/x").await.unwrap();
    assert_eq!(r.headers()["location"], "/", "no open redirect");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["pcl_session=pcs_", "; Path=/", "; HttpOnly", "; SameSite=Strict", "; Max-Age=43200"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP here; Secure is set under TLS");
    let e = crate::support::audit_entry(&s, "auth.success", |e| e["actor"] == "alice").await;
    assert!(e["detail"].as_str().unwrap().contains("console password") && e["client"] == "127.0.0.1", "{e}");
    // wrong passwords: the form again with the reason, then throttled like the API
    let r = login("alice", "wrong-password", "/orgs").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("invalid username or password"));
    // access tokens open no console
    let (_, t) = s.api("POST", "/api/v1/access-tokens", ("bob", &pw("bob")), Some(json!({"label": "ci"}))).await;
    let r = login("bob", t["token"].as_str().unwrap(), "/orgs").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("access tokens are for registry clients"));

    let alice = Web::sign_in(&s, "alice", &pw("alice")).await;
    let bob = Web::sign_in(&s, "bob", &pw("bob")).await;
    let carol = Web::sign_in(&s, "carol", &pw("carol")).await;
    let on = [
        ("section", "image-access"),
        ("enabled", "on"),
        ("allow_official", "on"),
        ("mode", "enforce"),
        ("intent", "save"),
    ];
    // no token, a wrong token, a foreign origin: refused, nothing changes
    let (st, _, body) = alice.post_raw("/orgs/acme/permissions", &on, &[]).await;
    assert_eq!(st, 403);
    assert!(body.contains("no valid CSRF token"), "{body}");
    let mut forged = vec![("csrf", "0123")];
    forged.extend_from_slice(&on);
    assert_eq!(alice.post_raw("/orgs/acme/permissions", &forged, &[]).await.0, 403);
    let mut fields = vec![("csrf", alice.csrf.as_str())];
    fields.extend_from_slice(&on);
    let evil = [("origin", "http://evil.example")];
    let (st, _, body) = alice.post_raw("/orgs/acme/permissions", &fields, &evil).await;
    assert_eq!(st, 403);
    assert!(body.contains("cross-origin form posts are refused"));
    // another user's token is not this session's
    let mut swapped = vec![("csrf", bob.csrf.as_str())];
    swapped.extend_from_slice(&on);
    assert_eq!(alice.post_raw("/orgs/acme/permissions", &swapped, &[]).await.0, 403);
    assert!(!restricted(&s).await);

    // the member sees the page read-only and cannot change it even by posting the form
    let (st, page) = bob.get("/orgs/acme/permissions").await;
    assert_eq!(st, 200);
    assert!(page.contains("Only owners of acme can change these settings"));
    assert!(page.contains("<fieldset class=\"bare\" disabled>") && !page.contains("value=\"save\""));
    let (st, _, body) = bob.post("/orgs/acme/permissions", &on).await;
    assert_eq!(st, 403);
    assert!(body.contains("only owners of acme"), "{body}");
    assert_eq!(bob.post("/orgs/acme/exceptions", &[("pattern", "docker.io/x/y"), ("reason", "r")]).await.0, 403);
    assert_eq!(bob.post("/orgs/acme/teams", &[("name", "mine")]).await.0, 403);
    // a non-member does not learn the org exists
    assert_eq!(carol.get("/orgs/acme/permissions").await.0, 404);
    assert_eq!(carol.post("/orgs/acme/permissions", &on).await.0, 404);
    assert_eq!(carol.get("/admin").await.0, 404);
    assert!(!restricted(&s).await);

    // the owner saves (nothing was pulled, so there is no impact to confirm)
    let (st, loc, _) = alice.post("/orgs/acme/permissions", &on).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/permissions?done=saved"));
    assert!(restricted(&s).await);
    let (_, page) = alice.get("/orgs/acme/permissions?done=saved").await;
    assert!(page.contains("Settings saved."));
    let (_, page) = alice.get("/orgs/acme/permissions?done=%3Cscript%3E").await;
    assert!(!page.contains("<script>"), "notices are fixed texts, never echoed");

    // pages carry the protective headers
    let r = http.get(s.url("/login")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // signing out ends the session on the server
    let (st, loc, _) = alice.post("/logout", &[]).await;
    assert_eq!((st, loc.as_str()), (303, "/login"));
    assert_eq!(alice.get("/orgs").await.0, 303);

    // a new password ends the user's sessions
    assert_eq!(bob.get("/orgs").await.0, 200);
    let new_pw = json!({"password": "bob-password-2"});
    assert_eq!(s.api("PUT", "/api/v1/users/bob/password", ("bob", &pw("bob")), Some(new_pw)).await.0, 204);
    assert_eq!(bob.get("/orgs").await.0, 303);

    // failed sign-ins make the next attempts from that address wait, as on the API
    for _ in 0..4 {
        assert_eq!(login("carol", "not-her-password", "/orgs").await.unwrap().status(), 401);
    }
    assert_eq!(login("carol", "not-her-password", "/orgs").await.unwrap().status(), 429);
    let r = login("carol", &pw("carol"), "/orgs").await.unwrap();
    assert_eq!(r.status(), 429, "even the right password waits out the delay");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(login("carol", &pw("carol"), "/orgs").await.unwrap().status(), 303);
}

/// What changes from run to run in a page (times, ports, secrets), for snapshots.
const UNSTABLE: [(&str, &str); 8] = [
    (r"&#34;:1\d{9}", "&#34;:[ts]"),
    (r#"name="csrf" value="[0-9a-f]+""#, r#"name="csrf" value="[csrf]""#),
    (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[time]"),
    (r"\d{4}-\d{2}-\d{2}", "[date]"),
    (r">\d{2}-\d{2}</text>", ">[mm-dd]</text>"),
    (r"127\.0\.0\.1:\d+", "[gateway]"),
    (r"pcl_[0-9a-f]+", "[token]"),
    (r"pcscim_[0-9a-f]+", "[scim-token]"),
];

/// Every control has a label (or an `aria-label`), every button a name: what a screen reader
/// needs to announce them.
fn assert_labelled(page: &str, html: &str) {
    for tag in ["<input", "<select", "<textarea"] {
        for (i, _) in html.match_indices(tag) {
            let el = &html[i..i + html[i..].find('>').unwrap()];
            if el.contains("type=\"hidden\"") || el.contains("aria-label=") {
                continue;
            }
            let id = el.split("id=\"").nth(1).map(|r| r.split('"').next().unwrap());
            let id = id.unwrap_or_else(|| panic!("{page}: a control without id or label: {el}"));
            assert!(html.contains(&format!("<label for=\"{id}\"")), "{page}: no label for #{id}");
        }
    }
    for (i, _) in html.match_indices("<button") {
        let end = i + html[i..].find("</button>").unwrap();
        let inner = &html[i + html[i..].find('>').unwrap() + 1..end];
        assert!(!inner.trim().is_empty() || html[i..end].contains("aria-label="), "{page}: a button without a name");
    }
}

fn snapshot(name: &str, html: &str) {
    insta::with_settings!({ filters => UNSTABLE.to_vec() }, { insta::assert_snapshot!(name.to_owned(), html) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_for_owner_member_and_non_member() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    acme(s).await;
    let ap = pw("alice");
    let gw = s.addr();
    for (src, dst) in [("tiny", "acme/app:1"), ("multi", "acme/multi:1")] {
        let (ok, out) = crate::support::skopeo_push(&e.layout.dir, src, &gw, &format!("alice:{ap}"), dst);
        assert!(ok, "{out}");
    }
    let read = json!({"permission": "read"});
    let perm = "/api/v1/orgs/acme/teams/dev/permissions/app";
    assert_eq!(s.api("PUT", perm, ("alice", &ap), Some(read)).await.0, 200);
    let bob_creds = format!("bob:{}", pw("bob"));
    assert!(skopeo_pull(&gw, &bob_creds, "library/tiny:1", &e.work.path().join("p1")).0);
    let alice = Web::sign_in(s, "alice", &ap).await;
    let bob = Web::sign_in(s, "bob", &pw("bob")).await;
    let carol = Web::sign_in(s, "carol", &pw("carol")).await;
    let on = [
        ("section", "image-access"),
        ("enabled", "on"),
        ("allow_official", "on"),
        ("allow_verified", "on"),
        ("mode", "enforce"),
        ("intent", "save"),
    ];
    assert_eq!(alice.post("/orgs/acme/permissions", &on).await.0, 303);
    let (ok, out) = skopeo_pull(&gw, &bob_creds, "someone/app:1", &e.work.path().join("p2"));
    assert!(!ok && out.contains("/orgs/acme/requests?image=docker.io/someone/app"), "{out}");
    let exception = [("pattern", "docker.io/someone/tool"), ("team", "dev"), ("reason", "build tooling")];
    assert_eq!(alice.post("/orgs/acme/exceptions", &exception).await.0, 303);
    // a team rule: dev may also pull community images
    let rule = [("team", "dev"), ("allow_community", "on")];
    assert_eq!(alice.post("/orgs/acme/team-rules", &rule).await.1, "/orgs/acme/permissions?done=team-rule-saved");
    assert_eq!(bob.post("/orgs/acme/team-rules", &rule).await.0, 403);
    let (_, page) = alice.get("/orgs/acme/permissions").await;
    assert!(page.contains("<tr><td>dev</td><td>Community images</td></tr>"), "the rule is listed");
    assert_eq!(alice.post("/orgs/acme/team-rules", &[("team", "dev")]).await.0, 303, "nothing checked: removed");
    // for everyone, with no expiry and no digest: the repository allowlist
    let allow = [("pattern", "docker.io/someone/lib"), ("reason", "everyone's base image")];
    assert_eq!(alice.post("/orgs/acme/exceptions", &allow).await.1, "/orgs/acme/permissions?done=allowlist-added");
    let (_, page) = alice.get("/orgs/acme/permissions").await;
    let allowlist = page.split("<h2 id=\"allowlist-title\">").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(
        allowlist.contains("docker.io/someone/lib") && !allowlist.contains("docker.io/someone/tool"),
        "{allowlist}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = [("image", "docker.io/someone/app"), ("reason", "our CI base image")];
    assert_eq!(bob.post("/orgs/acme/requests", &request).await.1, "/orgs/acme/requests?done=requested");
    // owners are never bound by their org's restrictions: they are not offered a request form
    let form = "<legend>Request an exception</legend>";
    assert!(!alice.get("/orgs/acme/requests").await.1.contains(form), "owners decide requests, not make them");
    assert!(bob.get("/orgs/acme/requests").await.1.contains(form), "members ask");
    let (st, _, created) = alice.post("/tokens", &[("label", "laptop"), ("scope", "read"), ("days", "")]).await;
    assert_eq!(st, 200);
    assert!(created.contains("<output id=\"new-token\"><code>pcl_"), "the secret, shown once");
    snapshot("tokens-created-owner", &created);
    // an owner gives the identity provider a SCIM token; members cannot
    let (st, _, created) = alice.post("/orgs/acme/provisioning", &[("name", "okta")]).await;
    assert_eq!(st, 200);
    let scim_token =
        created.split("<output id=\"new-token\"><code>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(scim_token.starts_with("pcscim_"), "the secret, shown once");
    snapshot("provisioning-created-owner", &created);
    assert_eq!(bob.post("/orgs/acme/provisioning", &[("name", "mine")]).await.0, 403);
    let scim_users = || async {
        let r = s.http.get(s.url("/scim/v2/Users")).bearer_auth(&scim_token).send().await.unwrap();
        r.status().as_u16()
    };
    assert_eq!(scim_users().await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pages = [
        ("orgs", "/orgs"),
        ("overview", "/orgs/acme"),
        ("permissions", "/orgs/acme/permissions"),
        ("members", "/orgs/acme/members"),
        ("repositories", "/orgs/acme/repositories"),
        ("requests", "/orgs/acme/requests"),
        ("audit", "/orgs/acme/audit"),
        ("activity", "/orgs/acme/activity"),
        ("history", "/orgs/acme/history"),
        ("provisioning", "/orgs/acme/provisioning"),
        ("tokens", "/tokens"),
        ("admin", "/admin"),
    ];
    let mut statuses = Vec::new();
    for (who, web) in [("owner", &alice), ("member", &bob), ("non_member", &carol)] {
        for (name, path) in pages {
            let (st, html) = web.get(path).await;
            statuses.push(format!("{who} {name} {st}"));
            assert_labelled(&format!("{name}-{who}"), &html);
            snapshot(&format!("{name}-{who}"), &html);
        }
    }
    insta::assert_snapshot!("statuses", statuses.join("\n"));
    // revoked in the console: the provider is refused at once
    let revoke = format!("/orgs/acme/provisioning/{}/revoke", 1);
    assert_eq!(bob.post(&revoke, &[]).await.0, 403, "a member cannot revoke it");
    assert_eq!(alice.post(&revoke, &[]).await.1, "/orgs/acme/provisioning?done=scim-token-revoked");
    assert_eq!(scim_users().await, 401);
    // the impact preview: taking Docker Official Images away would have denied bob's pull
    let stricter = [("section", "image-access"), ("enabled", "on"), ("mode", "enforce"), ("intent", "save")];
    let (st, _, html) = alice.post("/orgs/acme/permissions", &stricter).await;
    assert_eq!(st, 200, "not saved: shown first");
    assert!(html.contains("Impact preview: not saved yet") && html.contains("docker.io/library/tiny"));
    assert_labelled("permissions-preview", &html);
    snapshot("permissions-preview-owner", &html);
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["restricted_images"]["allow_official_images"], true, "unchanged until confirmed");
    let confirm = html.split("name=\"confirmed\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let confirm = confirm.replace("&#34;", "\"").replace("&quot;", "\"");
    let mut confirmed = stricter.to_vec();
    confirmed.push(("confirmed", &confirm));
    assert_eq!(alice.post("/orgs/acme/permissions", &confirmed).await.1, "/orgs/acme/permissions?done=saved");
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["restricted_images"]["allow_official_images"], false);
    // the preview is shown in the section it is about, and the page opens there
    let image_access = html.split("id=\"image-access\"").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(image_access.contains("Impact preview: not saved yet"), "{image_access}");
    assert!(html.contains("action=\"/orgs/acme/permissions#image-access\""));
    // the summary at the top says what is saved, card by card, each linking to its section
    let (_, page) = alice.get("/orgs/acme/permissions").await;
    let summary = page.split("<ul class=\"summary\">").nth(1).unwrap().split("</ul>").next().unwrap();
    for (anchor, says) in [
        ("image-access", "Members may pull: Organization images."),
        ("registry-access", "Any registry."),
        ("team-rules", "Every team as the organization."),
        ("allowlist", "docker.io/someone/lib"),
        ("exceptions", "None expires."),
        ("signature-rules", "Images need no signature."),
    ] {
        let card = summary.split(&format!("<a href=\"#{anchor}\">")).nth(1).unwrap().split("</a>").next().unwrap();
        assert!(card.contains(says), "{anchor}: {card}");
        assert!(page.contains(&format!("<section class=\"panel\" id=\"{anchor}\"")), "{anchor} has its section");
    }
    // each section saves on its own: Registry Access Management leaves the kinds of images alone
    let registries =
        [("section", "registry-access"), ("registry_access", "on"), ("registries", "docker.io"), ("intent", "save")];
    let (st, loc, body) = alice.post("/orgs/acme/permissions", &registries).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/permissions?done=saved"), "{body}");
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["registry_access"]["allowed_registries"], json!(["docker.io"]));
    assert_eq!(
        (v["restricted_images"]["enabled"].clone(), v["docker_hub_namespaces"].clone()),
        (json!(true), json!([]))
    );
    let (_, page) = alice.get("/orgs/acme/permissions").await;
    assert!(page.contains("Only docker.io and images hosted here."));
    // a section that does not exist, or none, changes nothing
    let (st, _, body) = alice.post("/orgs/acme/permissions", &[("section", "everything"), ("intent", "save")]).await;
    assert_eq!(st, 400);
    assert!(body.contains("unknown section &#34;everything&#34;"), "{body}");
    assert_eq!(alice.post("/orgs/acme/permissions", &[("intent", "save")]).await.0, 400);
    let (_, after) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(after, v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pinned_to_the_denied_digest_or_declined() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    acme(s).await;
    let gw = s.addr();
    let alice = Web::sign_in(s, "alice", &pw("alice")).await;
    let bob = Web::sign_in(s, "bob", &pw("bob")).await;
    let carol = Web::sign_in(s, "carol", &pw("carol")).await;
    assert_eq!(
        alice
            .post("/orgs/acme/permissions", &[("section", "image-access"), ("enabled", "on"), ("intent", "save")])
            .await
            .0,
        303
    );
    // a pull by digest is denied; the request remembers that digest
    let bob_creds = format!("bob:{}", pw("bob"));
    let by_digest = format!("someone/app@{}", e.layout.tiny);
    assert!(!skopeo_pull(&gw, &bob_creds, &by_digest, &e.work.path().join("d1")).0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ask = [("image", "docker.io/someone/app"), ("reason", "pinned base")];
    assert_eq!(bob.post("/orgs/acme/requests", &ask).await.0, 303);
    // the owner sees the denial bob got, and the approval is for bob's team unless changed
    let (_, page) = alice.get("/orgs/acme/requests").await;
    assert!(page.contains("Denied with: Image Access Management: community image docker.io/someone/app"), "{page}");
    assert!(page.contains("<option value=\"dev\" selected>team dev</option>"), "{page}");
    assert_eq!(bob.post("/orgs/acme/requests", &ask).await.0, 409, "one pending request per image");
    let other = [("image", "ghcr.io/owner/tool"), ("reason", "a tool")];
    assert_eq!(bob.post("/orgs/acme/requests", &other).await.0, 303);
    // members and non-members cannot decide; members see only their own requests
    assert_eq!(bob.post("/orgs/acme/requests/1/approve", &[("pin", "on")]).await.0, 403);
    assert_eq!(carol.post("/orgs/acme/requests/1/approve", &[("pin", "on")]).await.0, 404);
    assert_eq!(carol.post("/orgs/acme/requests", &ask).await.0, 404);
    // approve pinned: the digest pulls, the tag (any other digest) still does not
    let (st, loc, _) = alice.post("/orgs/acme/requests/1/approve", &[("pin", "on"), ("days", "7")]).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/requests?done=approved"));
    let (_, list) = s.api("GET", "/api/v1/orgs/acme/exceptions", ("alice", &pw("alice")), None).await;
    assert_eq!(list[0]["digest"], e.layout.tiny.as_str());
    assert!(list[0]["expires_at"].as_i64().unwrap() > pcore_now() + 6 * 86_400);
    assert!(skopeo_pull(&gw, &bob_creds, &by_digest, &e.work.path().join("d2")).0);
    assert_eq!(alice.post("/orgs/acme/requests/1/decline", &[("note", "late")]).await.0, 409, "decided once");
    // decline with a note; a note is required
    assert_eq!(alice.post("/orgs/acme/requests/2/decline", &[("note", " ")]).await.0, 400);
    assert_eq!(alice.post("/orgs/acme/requests/2/decline", &[("note", "use the mirrored copy")]).await.0, 303);
    let (_, page) = bob.get("/orgs/acme/requests").await;
    assert!(page.contains("<span class=\"badge approved\">approved</span>"));
    assert!(
        page.contains("<span class=\"badge declined\">declined</span>") && page.contains("Note: use the mirrored copy")
    );
    assert!(!page.contains("/approve"), "members get no decision forms");
    assert_eq!(carol.get("/orgs/acme/requests").await.0, 404);
    // the same through the API
    let (bp, ap) = (pw("bob"), pw("alice"));
    let ask = json!({"image": "quay.io/x/y:2", "reason": "tests"});
    let (st, r) = s.api("POST", "/api/v1/orgs/acme/exception-requests", ("bob", &bp), Some(ask)).await;
    assert_eq!((st, r["image"].as_str(), r["status"].as_str()), (201, Some("quay.io/x/y"), Some("pending")));
    let (_, mine) = s.api("GET", "/api/v1/orgs/acme/exception-requests", ("bob", &bp), None).await;
    assert_eq!(mine.as_array().unwrap().len(), 3);
    let approve = format!("/api/v1/orgs/acme/exception-requests/{}/approve", r["id"]);
    assert_eq!(s.api("POST", &approve, ("bob", &bp), Some(json!({}))).await.0, 403);
    let (st, done) = s.api("POST", &approve, ("alice", &ap), Some(json!({"team": "dev"}))).await;
    assert_eq!((st, done["status"].as_str()), (200, Some("approved")));
    let (_, list) = s.api("GET", "/api/v1/orgs/acme/exceptions", ("alice", &ap), None).await;
    let made = list.as_array().unwrap().iter().find(|x| x["pattern"] == "quay.io/x/y").unwrap().clone();
    assert_eq!((made["team"].as_str(), made["digest"].as_str()), (Some("dev"), None));
}

fn pcore_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
#[should_panic(expected = "no label for #q")]
fn the_label_check_catches_an_unlabelled_control() {
    assert_labelled("sample", r#"<form><label for="p">P</label><input id="p"><input id="q"></form>"#);
}

#[tokio::test]
async fn administration_and_repository_pages() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme(&s).await;
    let gw = s.addr();
    let admin = Web::sign_in(&s, "admin", crate::support::ADMIN_PW).await;
    // the administrator's home lists every organization, and says so
    let (_, page) = admin.get("/orgs").await;
    assert!(page.contains("<h1>All organizations</h1>") && page.contains("/orgs/acme"), "{page}");
    let alice = Web::sign_in(&s, "alice", &pw("alice")).await;
    assert!(alice.get("/orgs").await.1.contains("<h1>My organizations</h1>"));
    // disable, enable, set a password, lift a throttle, delete
    let (st, loc, _) = admin.post("/admin/users/bob/disable", &[]).await;
    assert_eq!((st, loc.as_str()), (303, "/admin?done=user-disabled"));
    assert_eq!(s.api("GET", "/api/v1/me", ("bob", &pw("bob")), None).await.0, 401);
    assert!(admin.get("/admin").await.1.contains("<span class=\"badge off\">disabled</span>"));
    assert_eq!(admin.post("/admin/users/bob/enable", &[]).await.0, 303);
    assert_eq!(admin.post("/admin/users/bob/password", &[("password", "short")]).await.0, 400);
    assert_eq!(admin.post("/admin/users/bob/password", &[("password", "bob-password-new")]).await.0, 303);
    assert_eq!(s.api("GET", "/api/v1/me", ("bob", "bob-password-new"), None).await.0, 200);
    for i in 0..5 {
        s.api("GET", "/api/v1/me", ("carol", &format!("guess-{i}")), None).await;
    }
    assert_eq!(s.api("GET", "/api/v1/me", ("carol", &pw("carol")), None).await.0, 429);
    assert_eq!(admin.post("/admin/users/carol/throttle", &[]).await.1, "/admin?done=throttle-lifted");
    assert_eq!(s.api("GET", "/api/v1/me", ("carol", &pw("carol")), None).await.0, 200);
    assert_eq!(admin.post("/admin/users/alice/delete", &[]).await.0, 409, "the last owner of acme");
    assert_eq!(admin.post("/admin/users/carol/delete", &[]).await.0, 303);
    assert!(!admin.get("/admin").await.1.contains(">carol<"));
    assert_eq!(alice.post("/admin/users/bob/disable", &[]).await.0, 404, "not the administrator's: no such page");
    // repositories: a pull command per tag, and visibility for whoever administers the repository
    let work = tempfile::tempdir().unwrap();
    let layout = crate::images::make(&work.path().join("l"));
    let (ok, out) =
        crate::support::skopeo_push(&layout.dir, "tiny", &gw, &format!("alice:{}", pw("alice")), "acme/app:1");
    assert!(ok, "{out}");
    let (_, page) = alice.get("/orgs/acme/repositories").await;
    assert!(page.contains(&format!("docker pull {gw}/acme/app:1")), "{page}");
    let make_public = [("repository", "acme/app"), ("visibility", "public")];
    let (st, loc, _) = alice.post("/orgs/acme/repositories/visibility", &make_public).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/repositories?done=visibility-set"));
    let anon = s.token(None, &["repository:acme/app:pull"]).await;
    assert_eq!(s.req("GET", "/v2/acme/app/manifests/1", Some(&anon)).await.send().await.unwrap().status(), 200);
    let bob = Web::sign_in(&s, "bob", "bob-password-new").await;
    assert!(!bob.get("/orgs/acme/repositories").await.1.contains("Make acme/app private"), "members only read");
    assert_eq!(
        bob.post("/orgs/acme/repositories/visibility", &[("repository", "acme/app"), ("visibility", "private")])
            .await
            .0,
        403
    );
}

/// The policy history page: versions with what each changed; a restore that would deny a
/// recent pull shows the impact first and applies once confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_history_restores_through_the_preview() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    acme(s).await;
    let alice = Web::sign_in(s, "alice", &pw("alice")).await;
    let bob = Web::sign_in(s, "bob", &pw("bob")).await;
    let ap = pw("alice");
    let put = |body: Value| {
        let ap = ap.clone();
        async move { s.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(body)).await.0 }
    };
    assert_eq!(put(json!({"restricted_images": {"enabled": true}})).await, 200);
    assert!(skopeo_pull(&s.addr(), &format!("bob:{}", pw("bob")), "library/tiny:1", &e.work.path().join("p")).0);
    assert_eq!(put(json!({"restricted_images": {"allow_official_images": false}})).await, 200);
    assert_eq!(put(json!({"restricted_images": {"allow_official_images": true}})).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bob.get("/orgs/acme/history").await.0, 403, "owners only");
    let (st, page) = alice.get("/orgs/acme/history").await;
    assert_eq!(st, 200);
    assert!(
        page.contains("Version 3 (current)") && page.contains("settings.restricted_images.allow_official_images"),
        "{page}"
    );
    // version 2 denied official images: bob's pull of library/tiny would be denied
    let (st, _, page) = alice.post("/orgs/acme/history/2/restore", &[]).await;
    assert_eq!(st, 200, "shown first, not restored");
    assert!(
        page.contains("Impact preview: version 2 not restored yet") && page.contains("docker.io/library/tiny"),
        "{page}"
    );
    assert_labelled("history-preview", &page);
    assert!(!restricted_official(s).await, "unchanged until confirmed");
    let (_, to, _) = alice.post("/orgs/acme/history/2/restore", &[("confirmed", "on")]).await;
    assert_eq!(to, "/orgs/acme/history?done=restored");
    assert!(restricted_official(s).await);
    let (_, page) = alice.get("/orgs/acme/history").await;
    assert!(page.contains("Version 4 (current)") && page.contains("restored version 2"), "{page}");
}

async fn restricted_official(s: &Server) -> bool {
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    !v["restricted_images"]["allow_official_images"].as_bool().unwrap()
}

/// Anyone the settings allow creates an organization from the console and owns it; a name that
/// is taken or invalid is refused with the reason.
#[tokio::test]
async fn an_organization_is_created_from_the_console() {
    let s = Server::start().await;
    s.create_user("dora").await;
    let dora = Web::sign_in(&s, "dora", &pw("dora")).await;
    let (st, html) = dora.get("/orgs").await;
    assert!(st == 200 && html.contains("Create an organization"), "{html}");
    let (st, loc, _) = dora.post("/orgs", &[("name", "newco")]).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/newco?done=org-created"));
    let (st, html) = dora.get("/orgs/newco/members").await;
    assert!(st == 200 && html.contains("dora"), "{html}");
    let (_, html) = dora.get("/orgs").await;
    assert!(html.contains("href=\"/orgs/newco\"") && html.contains("owner"), "{html}");
    let (st, _, body) = dora.post("/orgs", &[("name", "newco")]).await;
    assert!(st == 409 && body.contains("the name newco is taken"), "{st} {body}");
    let (st, _, body) = dora.post("/orgs", &[("name", "Bad Name")]).await;
    assert!(st == 400 && body.contains("invalid name"), "{st} {body}");
    // without a session (and its CSRF token) nothing is created
    let r = client().post(s.url("/orgs")).form(&[("name", "x1")]).send().await.unwrap();
    assert_ne!(r.status(), 200);
    assert_eq!(dora.get("/orgs/x1").await.0, 404, "not created");
}
