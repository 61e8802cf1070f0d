//! The console in a real browser: headless Debian Chromium driven through chromedriver. An
//! owner turns restrictions on, a member's skopeo pull through the gateway is then denied with
//! the message, the member sees the page read-only and cannot change it even by re-enabling
//! and posting the form, a form without its CSRF token is refused, the member requests an
//! exception from the link in the denial, the owner approves it, and the pull succeeds.
//! Screenshots of the main pages are written to `$CARGO_TARGET_TMPDIR/screenshots` (or to
//! `$PCL_SCREENSHOTS`), which is where the README's pictures come from.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{pw, skopeo_pull};

/// chromedriver on a free loopback port, stopped on drop.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    pub async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        crate::support::wait_for_port(port, "chromedriver", 20).await;
        Driver { child, port, profile: tempfile::tempdir().unwrap() }
    }

    /// A new headless browser that talks only to loopback.
    pub async fn browser(&self) -> Client {
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", self.profile.path().display()),
        ];
        let caps =
            json!({"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}});
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shots() -> PathBuf {
    let dir = std::env::var_os("PCL_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A screenshot of the whole page: the window grows to the page's height, then back to 1000.
async fn shot(b: &Client, name: &str) {
    let height = b.execute("return document.documentElement.scrollHeight", vec![]).await.unwrap();
    let height = height.as_u64().unwrap() as u32;
    b.set_window_size(1400, (height + 150).max(1000)).await.unwrap();
    let png = b.screenshot().await.unwrap();
    b.set_window_size(1400, 1000).await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text(b: &Client, css: &str) -> String {
    match b.find(Locator::Css(css)).await {
        Ok(el) => el.text().await.unwrap(),
        Err(e) => {
            panic!("{css}: {e}\non {}:\n{}", b.current_url().await.unwrap(), b.source().await.unwrap_or_default())
        }
    }
}

/// Marks the current page, so that `arrived` can tell when the next one has loaded.
async fn leaving(b: &Client) {
    b.execute("window.__pclLeaving = true", vec![]).await.unwrap();
}

/// Waits until a page loaded after `leaving` is complete.
async fn arrived(b: &Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = b.execute("return !window.__pclLeaving && document.readyState === 'complete'", vec![]).await;
        if matches!(r, Ok(serde_json::Value::Bool(true))) {
            return;
        }
        assert!(Instant::now() < deadline, "no new page loaded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Clicks a button that submits a form, and waits for the resulting page.
async fn submit(b: &Client, css: &str) {
    leaving(b).await;
    b.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    arrived(b).await;
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn fill(b: &Client, css: &str, value: &str) {
    b.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).send_keys(value).await.unwrap();
}

/// Signs in on the login page the browser is on, with the keyboard only.
async fn sign_in(b: &Client, user: &str) {
    let active = b.active_element().await.unwrap();
    assert_eq!(active.attr("id").await.unwrap().as_deref(), Some("username"), "the form starts focused");
    active.send_keys(user).await.unwrap();
    active.send_keys("\u{E004}").await.unwrap(); // Tab
    let password = b.active_element().await.unwrap();
    assert_eq!(password.attr("id").await.unwrap().as_deref(), Some("password"));
    password.send_keys(&pw(user)).await.unwrap();
    leaving(b).await;
    password.send_keys("\u{E007}").await.unwrap(); // Enter
    arrived(b).await;
}

async fn sign_out(b: &Client) {
    submit(b, "form.signout button").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_restricts_member_requests_owner_approves() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    crate::support::acme_with_member_bob(s).await;
    let gw = s.addr();
    let bob_creds = format!("bob:{}", pw("bob"));
    assert!(skopeo_pull(&gw, &bob_creds, "library/tiny:1", &e.work.path().join("p0")).0);

    let driver = Driver::start().await;
    let b = driver.browser().await;
    // the owner signs in (sent to the login page and back) and turns restrictions on
    b.goto(&s.url("/orgs/acme/permissions")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/login"));
    shot(&b, "login").await;
    sign_in(&b, "alice").await;
    assert_eq!(b.current_url().await.unwrap().path(), "/orgs/acme/permissions");
    assert!(!b.find(Locator::Css("#enabled")).await.unwrap().is_selected().await.unwrap(), "off by default");
    // a form stripped of its CSRF token is refused
    b.execute("document.querySelector('form.settings input[name=csrf]').remove()", vec![]).await.unwrap();
    submit(&b, "button[value=save]").await;
    assert!(text(&b, "main").await.contains("no valid CSRF token"));
    b.goto(&s.url("/orgs/acme/permissions")).await.unwrap();
    click(&b, "#enabled").await;
    submit(&b, "button[value=save]").await;
    assert!(text(&b, "p.notice").await.contains("Settings saved"));
    assert!(b.find(Locator::Css("#enabled")).await.unwrap().is_selected().await.unwrap());
    assert!(b.find(Locator::Css("#allow_official")).await.unwrap().is_selected().await.unwrap());
    assert!(!b.find(Locator::Css("#allow_community")).await.unwrap().is_selected().await.unwrap());
    shot(&b, "permissions-owner").await;
    // the page at a glance: a card per section with its state, each leading to its section;
    // the sections side by side across the window's width
    let layout = b
        .execute(
            "const cards = [...document.querySelectorAll('ul.summary a')].map(a => { \
               const target = document.querySelector(a.getAttribute('href')); \
               return [a.querySelector('.title').textContent, a.querySelector('.state').textContent.trim(), \
                       target ? target.querySelector('h2').textContent : null]; }); \
             const box = id => document.getElementById(id).getBoundingClientRect(); \
             return { cards, main: document.querySelector('main').getBoundingClientRect().width, \
                      left: box('image-access').left, right: box('registry-access').left, \
                      top: [box('image-access').top, box('registry-access').top], \
                      scroll: document.documentElement.scrollWidth };",
            vec![],
        )
        .await
        .unwrap();
    let cards: Vec<(String, String, String)> = serde_json::from_value(layout["cards"].clone()).unwrap();
    let titles: Vec<&str> = cards.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Image Access Management",
            "Registry Access Management",
            "Namespaces and repositories",
            "Signature requirements",
            "Team rules",
            "Workload rules",
            "Repository allowlist",
            "Exceptions"
        ]
    );
    assert!(cards.iter().all(|(title, _, section)| title == section), "each card leads to its section: {cards:?}");
    assert_eq!((cards[0].1.as_str(), cards[1].1.as_str()), ("On", "Off"), "{cards:?}");
    assert!(layout["main"].as_f64().unwrap() >= 1300.0, "the page uses the width: {layout}");
    assert!(layout["right"].as_f64().unwrap() > layout["left"].as_f64().unwrap() + 500.0, "side by side: {layout}");
    assert_eq!(layout["top"][0], layout["top"][1], "{layout}");
    assert!(layout["scroll"].as_f64().unwrap() <= 1400.0, "no sideways scrolling: {layout}");
    // a preview opens at its own section, where the owner pressed it
    click(&b, "#allow_verified").await;
    submit(&b, "#image-access button[value=preview]").await;
    assert_eq!(b.current_url().await.unwrap().fragment(), Some("image-access"));
    assert!(text(&b, "#image-access .impact").await.contains("Impact preview: not saved yet"));
    assert!(b.find_all(Locator::Css("#registry-access .impact")).await.unwrap().is_empty());
    b.goto(&s.url("/orgs/acme/permissions")).await.unwrap();
    assert!(b.find(Locator::Css("#allow_verified")).await.unwrap().is_selected().await.unwrap(), "not saved");

    // the member's pull of a community image is denied, and the message says where to ask
    let (ok, out) = skopeo_pull(&gw, &bob_creds, "someone/app:1", &e.work.path().join("p1"));
    assert!(!ok, "{out}");
    assert!(out.contains("community image docker.io/someone/app is not allowed for members of acme"), "{out}");
    let link = format!("http://{gw}/orgs/acme/requests?image=docker.io/someone/app");
    assert!(out.contains(&link), "{out}");

    // the member: the page is read-only, and re-enabling and posting the form changes nothing
    sign_out(&b).await;
    b.goto(&s.url("/orgs/acme/permissions")).await.unwrap();
    sign_in(&b, "bob").await;
    assert!(text(&b, "p.banner").await.contains("Only owners of acme can change these settings"));
    assert!(!b.find(Locator::Css("#allow_community")).await.unwrap().is_enabled().await.unwrap());
    assert!(b.find_all(Locator::Css("button[value=save]")).await.unwrap().is_empty());
    shot(&b, "permissions-member").await;
    let forge = "const f = document.querySelector('form.settings'); \
                 f.querySelectorAll('fieldset').forEach(x => x.disabled = false); \
                 f.querySelector('#allow_community').checked = true; \
                 const i = document.createElement('input'); i.type = 'hidden'; i.name = 'intent'; i.value = 'save'; \
                 f.appendChild(i); f.submit();";
    leaving(&b).await;
    b.execute(forge, vec![]).await.unwrap();
    arrived(&b).await;
    assert!(text(&b, "p.error").await.contains("only owners of acme can change it"));
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["restricted_images"]["allow_community"], false);

    // the member follows the link from the denial and asks for an exception
    b.goto(&link).await.unwrap();
    assert_eq!(
        b.find(Locator::Css("#image")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("docker.io/someone/app")
    );
    fill(&b, "#reason", "our CI base image").await;
    submit(&b, "form.inline-form button[type=submit]").await;
    assert!(text(&b, "p.notice").await.contains("Request sent"));
    assert_eq!(text(&b, "#request-1 .badge").await, "pending");
    shot(&b, "requests-member").await;

    // the owner approves it, for 30 days
    sign_out(&b).await;
    b.goto(&s.url("/orgs/acme/requests")).await.unwrap();
    sign_in(&b, "alice").await;
    shot(&b, "requests-owner").await;
    fill(&b, "#anote-1", "ok for CI").await;
    submit(&b, "form[action='/orgs/acme/requests/1/approve'] button").await;
    assert!(text(&b, "p.notice").await.contains("Request approved"));
    assert_eq!(text(&b, "#request-1 .badge").await, "approved");

    // and the pull goes through
    let (ok, out) = skopeo_pull(&gw, &bob_creds, "someone/app:1", &e.work.path().join("p2"));
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(400)).await;

    // the exception is on the permissions page; every page of the owner's, at 1400x1000, for
    // the README and for a person to look at
    b.goto(&s.url("/orgs/acme/permissions")).await.unwrap();
    assert!(text(&b, "main table").await.contains("requested by bob: our CI base image"));
    for (name, path, heading) in [
        ("orgs", "/orgs", "My organizations"),
        ("overview", "/orgs/acme", "acme"),
        ("permissions", "/orgs/acme/permissions", "permissions"),
        ("members", "/orgs/acme/members", "Members"),
        ("repositories", "/orgs/acme/repositories", "Repositories"),
        ("requests", "/orgs/acme/requests", "Exception requests"),
        ("audit", "/orgs/acme/audit", "Audit"),
        ("activity", "/orgs/acme/activity", "Activity"),
        ("history", "/orgs/acme/history", "history"),
        ("provisioning", "/orgs/acme/provisioning", "Provisioning"),
        ("tokens", "/tokens", "token"),
    ] {
        b.goto(&s.url(path)).await.unwrap();
        let h1 = text(&b, "main h1").await;
        assert!(h1.contains(heading), "{name}: the page says what it is: {h1}");
        shot(&b, name).await;
    }
    assert!(text(&b, "main").await.contains("Create a token"));
    // the audit log at 1400 px: the page's whole width, no sideways scrolling, times on one line
    b.goto(&s.url("/orgs/acme/audit")).await.unwrap();
    let layout = b
        .execute(
            "const times = [...document.querySelectorAll('table.audit td.time')].map(td => { \
               const r = document.createRange(); r.selectNodeContents(td); return r.getClientRects().length; }); \
             return { viewport: window.innerWidth, scroll: document.documentElement.scrollWidth, \
                      main: document.querySelector('main').getBoundingClientRect().width, times };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(layout["viewport"], 1400, "{layout}");
    assert!(layout["scroll"].as_f64().unwrap() <= 1400.0, "no sideways scrolling: {layout}");
    assert!(layout["main"].as_f64().unwrap() > 1200.0, "the log uses the page's width: {layout}");
    let times = layout["times"].as_array().unwrap();
    assert!(!times.is_empty() && times.iter().all(|n| n == 1), "each time on one line: {layout}");
    assert!(text(&b, "table.audit").await.contains("restricted_images.enabled: false → true"), "a readable diff");
    b.goto(&s.url("/orgs/acme/audit?decision=denied")).await.unwrap();
    let audit = text(&b, "table.audit").await;
    assert!(audit.contains("docker.io/someone/app") && !audit.contains("allowed"), "{audit}");
    b.goto(&s.url("/orgs/acme/activity")).await.unwrap();
    let svg = b.find(Locator::Css("svg.chart")).await.unwrap();
    assert_eq!(svg.attr("role").await.unwrap().as_deref(), Some("img"));
    b.close().await.unwrap();
}
