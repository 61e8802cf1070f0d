//! Docker Hub badge lookups against a local stand-in for Docker Hub's search API (the shape
//! `upstream::hub` reads: `{"total", "results": [{"id", "publisher": {"id"}, "badge"}]}`), with
//! skopeo pulling through the gateway: a verified namespace the catalog does not know is allowed
//! after one lookup and not asked again after a restart; faults (500, 429, garbage, a hang)
//! leave the namespace community with the reason in the denial.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::setup;
use crate::support::{Server, pw, skopeo_pull};

/// The stand-in: answers by the `query` parameter; counts the questions per namespace.
struct HubApi {
    port: u16,
    asked: Arc<Mutex<HashMap<String, usize>>>,
}

impl HubApi {
    async fn start() -> HubApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counts = asked.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let ns = path.split(['?', '&']).find_map(|p| p.strip_prefix("query=")).unwrap_or("").to_owned();
                    *counts.lock().unwrap().entry(ns.clone()).or_default() += 1;
                    let ok = |body: String| {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let result = |badge: &str| {
                        ok(json!({"total": 1, "results": [
                            {"id": format!("{ns}/db"), "name": "db", "publisher": {"id": ns, "name": "Acme Software"}, "badge": badge},
                            {"id": "someoneelse/db", "publisher": {"id": "someoneelse"}, "badge": "verified_publisher"},
                        ]}).to_string())
                    };
                    let answer = match ns.as_str() {
                        "acmesoft" => result("verified_publisher"),
                        "oddbadge" => result("platinum_partner"),
                        "flaky" => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
                        "limited" => "HTTP/1.1 429 Too Many Requests\r\nretry-after: 60\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
                        "garbage" => ok("<html>not json</html>".into()),
                        "hang" => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        _ => ok(json!({"total": 0, "results": []}).to_string()),
                    };
                    let _ = sock.write_all(answer.as_bytes()).await;
                });
            }
        });
        HubApi { port, asked }
    }

    fn asked(&self, ns: &str) -> usize {
        self.asked.lock().unwrap().get(ns).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_namespaces_get_docker_hubs_badge_and_faults_stay_community() {
    let api = HubApi::start().await;
    let url = format!("http://127.0.0.1:{}", api.port);
    let lookups = [
        ("PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS", "true"),
        ("PORTCULLIS_DOCKER_HUB__API_URL", url.as_str()),
        ("PORTCULLIS_DOCKER_HUB__LOOKUP_WAIT_MS", "2000"),
    ];
    let crate::proxy::Env { s: server, hub, fp, layout, work, .. } = setup(&lookups).await;
    for ns in ["acmesoft", "oddbadge", "flaky", "limited", "garbage", "hang"] {
        hub.push(&layout.dir, "tiny", &format!("{ns}/db:1"));
    }
    let s = &server;
    crate::support::acme_with_member_bob(s).await;
    let ap = pw("alice");
    let on = json!({"restricted_images": {"enabled": true, "allow_official_images": true, "allow_verified_publishers": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(on)).await.0, 200);
    let bob = format!("bob:{}", pw("bob"));
    let pull = |s: &Server, image: &str, n: &str| skopeo_pull(&s.addr(), &bob, image, &work.path().join(n));

    // a Verified Publisher the seed catalog does not list: allowed after one lookup
    let (ok, out) = pull(s, "acmesoft/db:1", "a1");
    assert!(ok, "{out}");
    assert!(pull(s, "acmesoft/db:1", "a2").0);
    assert_eq!(api.asked("acmesoft"), 1, "asked once, then known");
    let (_, check) = s.api("GET", "/api/v1/orgs/acme/check?user=bob&image=acmesoft/db:1", ("alice", &ap), None).await;
    assert!(check.to_string().contains("verified_publisher"), "{check}");
    // a badge never seen before is none: community, and said plainly
    let (ok, out) = pull(s, "oddbadge/db:1", "o1");
    assert!(!ok && out.contains("community image docker.io/oddbadge/db") && !out.contains("is not known yet"), "{out}");

    // faults: community, with the reason; nothing waits long
    for ns in ["flaky", "limited", "garbage", "hang"] {
        let t = Instant::now();
        let (ok, out) = pull(s, &format!("{ns}/db:1"), ns);
        assert!(!ok, "{ns}: {out}");
        assert!(out.contains(&format!("Docker Hub's badge for {ns} is not known yet")), "{ns}: {out}");
        assert!(t.elapsed() < Duration::from_secs(20), "{ns} took {:?}", t.elapsed());
    }
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().last()).unwrap_or("").to_owned()
    };
    assert_eq!(value("portcullis_hub_badge_lookups_total"), "6", "one per namespace: {metrics}");
    let failures: u64 = value("portcullis_hub_badge_failures_total").parse().unwrap();
    assert!((3..=4).contains(&failures), "500, 429, garbage (and the hang once it times out): {metrics}");

    // a restart on the same data: the answer was kept, Docker Hub is not asked again
    let ups = format!("[{{registry=\"docker.io\",url=\"http://{}\"}}]", fp.addr());
    let mut env = vec![("PORTCULLIS_UPSTREAMS", ups.as_str())];
    env.extend_from_slice(&lookups);
    let s2 = Server::launch(server.kill(), &env, None, "http").await;
    let (ok, out) = pull(&s2, "acmesoft/db:1", "a3");
    assert!(ok, "{out}");
    assert_eq!(api.asked("acmesoft"), 1);
}
