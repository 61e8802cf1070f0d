//! Push challenges, beside CNCF distribution's: every push endpoint's `WWW-Authenticate` names
//! `pull,push` on its repository (and `pull` on a mount's source), exactly as a distribution
//! registry with token authentication names them; and npm `@sigstore/oci` — which asks the token
//! server for exactly the challenge's scope and uses that one token for the whole upload, as
//! GitHub's artifact-attestation actions do — attaches a sigstore bundle to a hosted image, which
//! a client then lists and reads through the referrers API.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{Server, pw, run};
use crate::upstreams::Registry;
use crate::v2::push_image;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The scopes an unauthenticated request's challenge names, as a set (each scope's actions in
/// a set too: distribution names a mount's target `push,pull`, a plain upload's `pull,push`).
async fn challenge(http: &reqwest::Client, base: &str, method: &str, path: &str) -> BTreeSet<String> {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = http.request(m, format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 401, "{method} {base}{path}");
    let h = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let scope = h.split("scope=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (repo, actions) = s.rsplit_once(':').unwrap();
            let mut a: Vec<&str> = actions.split(',').collect();
            a.sort();
            format!("{repo}:{}", a.join(","))
        })
        .collect()
}

#[tokio::test]
async fn push_challenges_name_what_distribution_names() {
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let peer = Registry::start_with_token_auth().await;
    let http = reqwest::Client::new();
    let (ours, theirs) = (s.url(""), format!("http://{}", peer.addr()));
    let session = "/v2/acme/app/blobs/uploads/0f9c3a52-7e3b-4c2e-9a57-0d7a1b2c3d4e";
    let endpoints = [
        ("POST", "/v2/acme/app/blobs/uploads/".to_owned()),
        ("POST", format!("/v2/acme/app/blobs/uploads/?digest={D}")),
        ("PATCH", session.to_owned()),
        ("PUT", format!("{session}?digest={D}")),
        ("PUT", "/v2/acme/app/manifests/1".to_owned()),
        ("POST", format!("/v2/acme/app/blobs/uploads/?mount={D}&from=acme/lib")),
        ("GET", "/v2/acme/app/manifests/1".to_owned()),
        ("HEAD", format!("/v2/acme/app/blobs/{D}")),
        ("GET", "/v2/acme/app/tags/list".to_owned()),
    ];
    for (method, path) in &endpoints {
        let (a, b) = (challenge(&http, &ours, method, path).await, challenge(&http, &theirs, method, path).await);
        assert_eq!(a, b, "{method} {path}: portcullis vs distribution");
        if *method != "GET" && *method != "HEAD" {
            assert!(a.contains("repository:acme/app:pull,push"), "{method} {path}: {a:?}");
        }
    }
    // a push-only credential still gets only what it may have: bob may push nowhere in acme
    s.create_user("bob").await;
    let t = s.token(Some(("bob", &pw("bob"))), &["repository:acme/app:pull,push"]).await;
    let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
    assert!(r.status() == 401 || r.status() == 403, "{}", r.status());
}

#[tokio::test]
async fn sigstore_oci_attaches_a_bundle_that_clients_read_back_as_a_referrer() {
    let modules = std::env::var("PCL_NPM_MODULES").unwrap_or_else(|_| "/var/cache/portcullis-npm/node_modules".into());
    assert!(
        Path::new(&modules).join("@sigstore/oci").is_dir(),
        "@sigstore/oci is not installed in {modules}; .ci/run (scripts/install-deps.sh) installs it"
    );
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let apw = pw("alice");
    let t = s.token(Some(("alice", &apw)), &["repository:acme/app:pull,push"]).await;
    let (digest, _, _) = push_image(&s, &t, "acme/app", "1", b"the subject's layer").await;

    let dir = tempfile::tempdir().unwrap();
    let bundle = json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": "release-key"}, "tlogEntries": []},
        "dsseEnvelope": {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "MEUCIQ=="}]},
    })
    .to_string();
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore/attach.mjs");
    let (ok, out) = run(Command::new("node")
        .arg(script)
        .arg(format!("{}/acme/app", s.addr()))
        .arg(&digest)
        .arg(&file)
        .arg("alice")
        .arg(&apw)
        .env("SIGSTORE_MODULES", &modules));
    assert!(ok, "@sigstore/oci attached the bundle through the gateway: {out}");
    let attached: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let referrer = attached["digest"].as_str().unwrap().to_owned();

    // a client lists it through the referrers API, filtered by the bundle's type, and reads it
    let t = s.token(Some(("alice", &apw)), &["repository:acme/app:pull"]).await;
    let r = s
        .req("GET", &format!("/v2/acme/app/referrers/{digest}?artifactType={}", BUNDLE.replace('+', "%2B")), Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index: serde_json::Value = r.json().await.unwrap();
    let found = index["manifests"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{index}");
    assert_eq!(
        (found[0]["digest"].as_str(), found[0]["artifactType"].as_str()),
        (Some(referrer.as_str()), Some(BUNDLE))
    );
    let m: serde_json::Value = s
        .req("GET", &format!("/v2/acme/app/manifests/{referrer}"), Some(&t))
        .await
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["subject"]["digest"], digest.as_str(), "{m}");
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let body = s.req("GET", &format!("/v2/acme/app/blobs/{layer}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(body.text().await.unwrap(), bundle, "the bundle reads back byte for byte");
}
