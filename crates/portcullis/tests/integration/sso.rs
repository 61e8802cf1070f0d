//! Single sign-on with a real OpenID provider (npm `oidc-provider`, run by
//! `tests/oidc/provider.mjs`): in headless Chromium a member signs in at the provider, lands in
//! the console as herself, her `acme:dev` group made her a member of team `dev`, and an access
//! token she creates there pulls the team's private image with skopeo. Without the group the pull
//! is refused. Refusals: no or forged sign-in state, a mismatched state, the provider's own
//! refusal, a groups claim that is not a list, hand edits of a directory-managed team, a provider user named like a local account, and
//! a provider that is down (503; the administrator still signs in with a password).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;

use crate::browser::Driver;
use crate::support::{ADMIN_PW, Server, free_port, pw, skopeo_pull, wait_for_port};
use crate::v2::push_image;

/// The OpenID provider, stopped on drop.
pub(crate) struct Provider {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Provider {
    pub(crate) async fn start(redirect: &str, accounts: serde_json::Value) -> Provider {
        let modules =
            std::env::var("PCL_NPM_MODULES").unwrap_or_else(|_| "/var/cache/portcullis-npm/node_modules".into());
        assert!(
            Path::new(&modules).join("oidc-provider").is_dir(),
            "oidc-provider is not installed in {modules}; .ci/run (scripts/install-deps.sh) installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts.json");
        std::fs::write(&file, accounts.to_string()).unwrap();
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        let child = Command::new("node")
            .arg(script)
            .arg(port.to_string())
            .arg(redirect)
            .arg(&file)
            .env("OIDC_PROVIDER_MODULES", &modules)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (Debian nodejs)");
        wait_for_port(port, "oidc-provider", 20).await;
        Provider { child, port, _dir: dir }
    }

    pub(crate) fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn accounts() -> serde_json::Value {
    json!({
        "alice": {"preferred_username": "alice", "email": "alice@example.com", "groups": ["acme:dev", "elsewhere:ops"]},
        "bob": {"preferred_username": "bob", "groups": []},
        "mallory": {"preferred_username": "mallory", "groups": "acme:owners"},
        "impostor": {"preferred_username": "owner", "groups": ["acme:owners"]},
    })
}

/// The settings of a gateway reached at `public` whose console signs in through `issuer`.
pub(crate) fn oidc_env<'a>(public: &'a str, issuer: &'a str) -> [(&'static str, &'a str); 7] {
    [
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_PUBLIC_URL", public),
        ("PORTCULLIS_AUTH__OIDC__ISSUER", issuer),
        ("PORTCULLIS_AUTH__OIDC__CLIENT_ID", "portcullis"),
        ("PORTCULLIS_AUTH__OIDC__CLIENT_SECRET", "portcullis-client-secret-1"),
        ("PORTCULLIS_AUTH__OIDC__DISPLAY_NAME", "Example IdP"),
        ("PORTCULLIS_AUTH__OIDC__TIMEOUT_SECS", "3"),
    ]
}

/// A provider with `accounts` and a gateway signing in through it, with org acme (`acme`).
pub(crate) async fn provider_and_gateway(accounts: serde_json::Value) -> (Provider, Server) {
    let port = free_port();
    let provider = Provider::start(&format!("http://127.0.0.1:{port}/auth/oidc/callback"), accounts).await;
    let s = gateway(port, &provider.issuer()).await;
    acme(&s).await;
    (provider, s)
}

/// A portcullis whose console signs in through `provider`, on `port`.
pub(crate) async fn gateway(port: u16, issuer: &str) -> Server {
    let public = format!("http://127.0.0.1:{port}");
    Server::launch_at(port, tempfile::tempdir().unwrap(), &oidc_env(&public, issuer), None, "http").await
}

/// Org acme (owned by local user `owner`) with team `dev` allowed to pull the private
/// `acme/app:1`.
pub(crate) async fn acme(s: &Server) {
    s.create_user("owner").await;
    s.create_org("acme", "owner").await;
    let op = pw("owner");
    let owner = ("owner", op.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", owner, Some(json!({"name": "dev"}))).await.0, 201);
    let (st, b) =
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", owner, Some(json!({"permission": "read"}))).await;
    assert!(st == 200 || st == 204, "{st} {b}");
    let t = s.token(Some(owner), &["repository:acme/app:pull,push"]).await;
    push_image(s, &t, "acme/app", "1", b"the team's private layer").await;
}

#[tokio::test]
async fn oidc_sign_in_maps_groups_to_teams_and_its_tokens_pull() {
    let (_provider, s) = provider_and_gateway(accounts()).await;
    let op = pw("owner");
    let delegate = json!({"directory": {"providers": ["oidc"]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("owner", &op), Some(delegate)).await.0, 200);

    let driver = Driver::start().await;
    let b = driver.browser().await;
    b.goto(&s.url("/login")).await.unwrap();
    let button = b.find(Locator::Id("sso")).await.unwrap();
    assert_eq!(button.text().await.unwrap(), "Sign in with Example IdP");
    button.click().await.unwrap();
    // the provider's own pages: sign in, then consent
    b.wait().for_element(Locator::Css("input[name=login]")).await.unwrap().send_keys("alice").await.unwrap();
    b.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("any password").await.unwrap();
    b.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    b.wait().for_element(Locator::Css("input[value=consent]")).await.unwrap();
    b.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    b.wait().for_url(&reqwest::Url::parse(&s.url("/orgs")).unwrap()).await.unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("alice") && page.contains("acme"), "signed in as alice, a member of acme: {page}");

    // a token made in the console pulls what team dev may pull
    b.goto(&s.url("/tokens")).await.unwrap();
    b.find(Locator::Id("label")).await.unwrap().send_keys("laptop").await.unwrap();
    b.find(Locator::Css("form[action='/tokens'] button[type=submit]")).await.unwrap().click().await.unwrap();
    let token = b.wait().for_element(Locator::Css("#new-token code")).await.unwrap().text().await.unwrap();
    assert!(token.starts_with("pcl_"), "{token}");
    b.close().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = skopeo_pull(&s.addr(), &format!("alice:{token}"), "acme/app:1", &work.path().join("a"));
    assert!(ok, "alice pulls through her team: {out}");

    // the directory's account has no password here
    let r =
        s.http.get(s.url("/token?service=portcullis")).basic_auth("alice", Some("any password")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // the membership and the sign-in are on record, with where the account comes from
    let (_, members) = s.api("GET", "/api/v1/orgs/acme/teams/dev/members", ("owner", &op), None).await;
    assert!(members.to_string().contains("\"alice\""), "{members}");
    let (_, users) = s.admin("GET", "/api/v1/users", None).await;
    let alice = users.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap().clone();
    assert_eq!(alice["source"], "oidc", "{alice}");
    let (_, audit) = s.admin("GET", "/api/v1/audit?limit=50", None).await;
    let audit = audit.to_string();
    assert!(audit.contains("auth.success") && audit.contains("team.member.add"), "{audit}");

    // dev becomes directory-managed: its members come only from the provider's group
    let managed = json!({"directory_managed": true});
    let (st, b) = s.api("PATCH", "/api/v1/orgs/acme/teams/dev", ("owner", &op), Some(managed)).await;
    assert!(st == 200 && b["directory_managed"] == true, "{st} {b}");
    let (st, b) = s.api("DELETE", "/api/v1/orgs/acme/teams/dev/members/alice", ("owner", &op), None).await;
    assert!(st == 409 && b.to_string().contains("directory-managed"), "{st} {b}");
    let (st, b) =
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", ("owner", &op), Some(json!({"username": "owner"}))).await;
    assert!(st == 409 && b.to_string().contains("acme:dev"), "{st} {b}");
    let handed_back = json!({"directory_managed": false});
    assert_eq!(s.api("PATCH", "/api/v1/orgs/acme/teams/dev", ("owner", &op), Some(handed_back)).await.0, 200);

    // acme enforces single sign-on: a local member's password and token stop working at once
    s.create_user("carol").await;
    let cp = pw("carol");
    let (st, b) =
        s.api("POST", "/api/v1/orgs/acme/teams/dev/members", ("owner", &op), Some(json!({"username": "carol"}))).await;
    assert_eq!(st, 201, "{b}");
    let (st, t) =
        s.api("POST", "/api/v1/access-tokens", ("carol", &cp), Some(json!({"label": "ci", "scopes": ["read"]}))).await;
    assert_eq!(st, 201, "{t}");
    let carol_token = t["token"].as_str().unwrap().to_owned();
    let (ok, out) = skopeo_pull(&s.addr(), &format!("carol:{carol_token}"), "acme/app:1", &work.path().join("c0"));
    assert!(ok, "before: {out}");
    let on = json!({"sso_enforced": true});
    let (st, b) = s.api("PUT", "/api/v1/orgs/acme/settings", ("owner", &op), Some(on.clone())).await;
    assert!(st == 400 && b.to_string().contains("lock you out"), "a local owner cannot lock themselves out: {st} {b}");
    let (st, b) = s.admin("PUT", "/api/v1/orgs/acme/settings", Some(on)).await;
    assert_eq!(st, 200, "{b}");
    let r = s.http.get(s.url("/token?service=portcullis")).basic_auth("carol", Some(&cp)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("acme requires single sign-on"));
    let (ok, out) = skopeo_pull(&s.addr(), &format!("carol:{carol_token}"), "acme/app:1", &work.path().join("c1"));
    assert!(!ok, "carol's token is refused: {out}");
    let (ok, out) = skopeo_pull(&s.addr(), &format!("alice:{token}"), "acme/app:1", &work.path().join("a2"));
    assert!(ok, "alice signed in through SSO: {out}");
    let (_, b) = s.api("GET", "/api/v1/orgs/acme/settings", ("alice", &token), None).await;
    assert_eq!(b["sso_enforced"], true, "members see it: {b}");
    assert!(!s.token(Some(("admin", ADMIN_PW)), &[]).await.is_empty(), "the administrator's break-glass password");
}

/// What a browser keeps: cookies by (host:port, name).
#[derive(Default)]
pub(crate) struct Jar(pub(crate) BTreeMap<(String, String), String>);

fn origin(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port_or_known_default().unwrap())
}

impl Jar {
    pub(crate) fn take(&mut self, url: &str, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let nv = c.split(';').next().unwrap();
            let (n, v) = nv.split_once('=').unwrap();
            self.0.insert((origin(url), n.trim().to_owned()), v.to_owned());
        }
    }

    pub(crate) fn header(&self, url: &str) -> String {
        let o = origin(url);
        let pairs: Vec<String> = self
            .0
            .iter()
            .filter(|((h, _), v)| *h == o && !v.is_empty())
            .map(|((_, n), v)| format!("{n}={v}"))
            .collect();
        pairs.join("; ")
    }
}

/// Signs `login` in at the provider the way a browser would, without following the final
/// redirect: the callback URL and the cookies that go with it.
pub(crate) async fn through_provider(s: &Server, login: &str) -> (String, Jar) {
    through_provider_from(&s.url("/auth/oidc/login"), login).await
}

/// [`through_provider`] starting at `start` (the sign-in URL, perhaps with a `next`).
pub(crate) async fn through_provider_from(start: &str, login: &str) -> (String, Jar) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = Jar::default();
    let mut url = start.to_owned();
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..12 {
        let req = match form.take() {
            Some(f) => http.post(&url).form(&f),
            None => http.get(&url),
        };
        let r = req.header("cookie", jar.header(&url)).send().await.unwrap();
        jar.take(&url, &r);
        if let Some(loc) = r.headers().get("location") {
            let next = r.url().join(loc.to_str().unwrap()).unwrap().to_string();
            if next.contains("/auth/oidc/callback") {
                return (next, jar);
            }
            url = next;
            continue;
        }
        let page = r.text().await.unwrap();
        form = Some(if page.contains("name=\"login\"") {
            vec![("prompt", "login".into()), ("login", login.into()), ("password", "x".into())]
        } else {
            vec![("prompt", "consent".into())]
        });
    }
    panic!("the provider's flow did not end at the callback");
}

pub(crate) async fn finish(callback: &str, jar: &Jar) -> (u16, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(callback).header("cookie", jar.header(callback)).send().await.unwrap();
    let status = r.status().as_u16();
    let session = r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("pcl_session=pcs_"));
    let body = r.text().await.unwrap();
    (status, if session { format!("SESSION {body}") } else { body })
}

#[tokio::test]
async fn oidc_refusals_are_clear_and_never_a_session() {
    let (provider, s) = provider_and_gateway(accounts()).await;

    // the flow works without a browser too (the helper is right)
    let (cb, jar) = through_provider(&s, "bob").await;
    let (status, body) = finish(&cb, &jar).await;
    assert!(status == 303 && body.starts_with("SESSION"), "{status} {body}");

    let cases: Vec<(&str, u16, &str)> = vec![
        ("mallory", 401, "groups claim is not a list of names"),
        ("impostor", 403, "is taken here by an account that is not linked"),
    ];
    for (login, want, says) in cases {
        let (cb, jar) = through_provider(&s, login).await;
        let (status, body) = finish(&cb, &jar).await;
        assert_eq!(status, want, "{login}: {body}");
        assert!(body.contains(says) && !body.starts_with("SESSION"), "{login}: {body}");
    }
    // the state must be this browser's, intact, and match
    let (cb, jar) = through_provider(&s, "bob").await;
    let (status, body) = finish(&cb, &Jar::default()).await;
    assert!(status == 400 && body.contains("expired or was started in another browser"), "{status} {body}");
    let mut forged = Jar::default();
    for ((h, n), v) in &jar.0 {
        let v = if n == "pcl_oidc" { format!("{v}x") } else { v.clone() };
        forged.0.insert((h.clone(), n.clone()), v);
    }
    let (status, _) = finish(&cb, &forged).await;
    assert_eq!(status, 400, "a forged seal");
    let other = cb.replace("state=", "state=x");
    let (status, body) = finish(&other, &jar).await;
    assert!(status == 401 && body.contains("state does not match"), "{status} {body}");
    // a sign-in state is good for one callback, even one that failed
    let (status, body) = finish(&cb, &jar).await;
    assert!(status == 400 && body.contains("already used"), "{status} {body}");
    // replaying a used callback is refused here, before the provider is asked
    let (cb, jar) = through_provider(&s, "bob").await;
    let (status, _) = finish(&cb, &jar).await;
    assert_eq!(status, 303, "first use");
    let (status, body) = finish(&cb, &jar).await;
    assert!(
        status == 400 && body.contains("already used") && !body.starts_with("SESSION"),
        "a replay: {status} {body}"
    );
    // the provider's own refusal
    let (_, jar) = through_provider(&s, "bob").await;
    let denied = s.url("/auth/oidc/callback?error=access_denied&error_description=no+thanks");
    let (status, body) = finish(&denied, &jar).await;
    assert!(status == 401 && body.contains("no thanks"), "{status} {body}");
    let (_, audit) = s.admin("GET", "/api/v1/audit?limit=100", None).await;
    assert!(audit.to_string().contains("auth.failure"), "{audit}");

    // the provider goes down: a clear 503 in bounded time, and the administrator still signs in
    drop(provider);
    let s2 = gateway(free_port(), "http://127.0.0.1:9").await;
    let started = std::time::Instant::now();
    let r = s2.http.get(s2.url("/auth/oidc/login")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("cannot be reached"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!s2.token(Some(("admin", ADMIN_PW)), &[]).await.is_empty());
}
