//! Workload identity: service-account tokens exactly as a kube-apiserver projects them (RS256,
//! `kubernetes.io` claim, `aud` list), from a test issuer that serves discovery and JWKS as a
//! cluster does; org owners' workload rules; skopeo and the OAuth2 form signing in with them;
//! and the attacker's tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use serde_json::{Value, json};

use crate::proxy::setup;
use crate::support::{pw, skopeo_pull};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A Kubernetes service-account issuer: `/.well-known/openid-configuration` and
/// `/openid/v1/jwks` as kube-apiserver serves them, RS256 keys, and a switch to go down.
pub struct TestIssuer {
    pub url: String,
    /// Its keys as `/openid/v1/jwks` serves them.
    pub jwks: Value,
    key: KeyPair,
    kid: String,
    down: Arc<AtomicBool>,
}

impl TestIssuer {
    pub async fn start() -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let kid = "kid-1".to_owned();
        let public = key.public_key();
        let jwks = json!({"keys": [{
            "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        }]});
        let discovery = json!({
            "issuer": url, "jwks_uri": format!("{url}/openid/v1/jwks"),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let down = Arc::new(AtomicBool::new(false));
        // A document, or 502 while the issuer is down.
        let serve = |body: Value| {
            let down = down.clone();
            axum::routing::get(move || {
                let (down, body) = (down.clone(), body.clone());
                async move {
                    if down.load(Ordering::SeqCst) {
                        Err(axum::http::StatusCode::BAD_GATEWAY)
                    } else {
                        Ok(axum::Json(body))
                    }
                }
            })
        };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", serve(discovery))
            .route("/openid/v1/jwks", serve(jwks.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestIssuer { url, jwks, key, kid, down }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// `header.claims`, signed with the issuer's key (RS256) whatever the header says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64(&sig))
    }

    pub fn header(&self) -> Value {
        json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"})
    }

    /// The claims of a token kube-apiserver projects for a pod's service account.
    pub fn sa_claims(&self, namespace: &str, sa: &str, audience: &str) -> Value {
        let t = now();
        json!({
            "aud": [audience],
            "exp": t + 3600,
            "iat": t,
            "iss": self.url,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": "node-1", "uid": "1f0b3a2c-0000-4000-8000-000000000001"},
                "pod": {"name": "web-7d9c4", "uid": "1f0b3a2c-0000-4000-8000-000000000002"},
                "serviceaccount": {"name": sa, "uid": "1f0b3a2c-0000-4000-8000-000000000003"},
            },
            "nbf": t,
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
        })
    }

    pub fn sa_token(&self, namespace: &str, sa: &str) -> String {
        self.sign(&self.header(), &self.sa_claims(namespace, sa, "portcullis"))
    }
}

/// A gateway trusting `issuers` (an inline TOML array), with acme restricting what its members
/// pull (alice owns it, bob is in dev) and its team ci, which may also pull community images.
async fn acme_with_ci(issuers: &str) -> crate::proxy::Env {
    let e = setup(&[("PORTCULLIS_AUTH__WORKLOAD_ISSUERS", issuers)]).await;
    let s = &e.s;
    crate::support::acme_with_member_bob(s).await;
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "ci"}))).await.0, 201);
    let restrict = json!({"restricted_images": {"enabled": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(restrict)).await.0, 200);
    let community = json!({"restricted_images": {"allow_community": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/teams/ci/settings", alice, Some(community)).await.0, 200);
    e
}

/// Org acme (alice owns it) whose team release may write acme/app, and a rule of issuer
/// `issuer` that makes the jobs of acme/app's main branch members of it.
async fn acme_release_for_main(s: &crate::support::Server, issuer: &str) {
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "release"}))).await.0, 201);
    let write = json!({"permission": "write"});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/teams/release/permissions/app", alice, Some(write)).await.0, 200);
    let rule =
        json!({"issuer": issuer, "claims": {"repository": "acme/app", "ref": "refs/heads/main"}, "teams": ["release"]});
    let rules = json!({"workloads": {"rules": [rule]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rules)).await.0, 200);
}

/// `GET /token` with Basic `workload:<token>`: (status, body).
async fn token(gw: &str, jwt: &str, scope: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{gw}/token?service=portcullis&scope={scope}"))
        .basic_auth("workload", Some(jwt))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The status of `GET /v2/someone/app/manifests/1` with a registry token.
async fn app_manifest(gw: &str, bearer: String) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{gw}/v2/someone/app/manifests/1"))
        .bearer_auth(bearer)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_pull_as_their_namespace_and_forged_tokens_are_refused() {
    let issuer = TestIssuer::start().await;
    // a second trusted issuer that cannot be reached: no key was ever had
    let issuers = format!(
        "[{{name=\"k8s\",issuer=\"{}\",max_token_lifetime_secs=7200}},{{name=\"gone\",issuer=\"http://127.0.0.1:9\",timeout_secs=1}}]",
        issuer.url
    );
    let e = acme_with_ci(&issuers).await;
    let s = &e.s;
    let gw = s.addr();
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());

    // rules that would grant too much, name an unknown issuer or team, or come from a member
    let put = |rule: Value| json!({"workloads": {"rules": [rule]}});
    for (rule, why) in [
        (json!({"issuer": "k8s", "claims": {"namespace": "ci-*"}, "teams": ["owners"]}), "never an owner"),
        (json!({"issuer": "k8s", "claims": {}, "teams": ["ci"]}), "every workload of the issuer"),
        (json!({"issuer": "k8s", "claims": {"namespace": "*"}, "teams": ["ci"]}), "matches anything"),
        (
            json!({"issuer": "elsewhere", "claims": {"namespace": "ci"}, "teams": ["ci"]}),
            "no issuer named \"elsewhere\"",
        ),
        (json!({"issuer": "k8s", "claims": {"namespace": "ci"}, "teams": ["nope"]}), "acme has no team \"nope\""),
        (json!({"issuer": "k8s", "claims": {"groups": "x"}, "teams": ["ci"]}), "which is none of"),
    ] {
        let (st, body) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(put(rule))).await;
        assert_eq!(st, 400, "{body}");
        assert!(body["message"].as_str().unwrap_or_default().contains(why), "{why}: {body}");
    }
    let rule = json!({"issuer": "k8s", "claims": {"namespace": "ci-*", "serviceaccount": "builder"}, "teams": ["ci"]});
    let bp = pw("bob");
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("bob", &bp), Some(put(rule.clone()))).await.0, 403);
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(put(rule))).await.0, 200);

    // a pod's service account in a matching namespace pulls a community image as itself
    let ci = issuer.sa_token("ci-web", "builder");
    let (ok, out) = skopeo_pull(&gw, &format!("workload:{ci}"), "someone/app:1", &e.work.path().join("p1"));
    assert!(ok, "{out}");
    let entry =
        crate::support::audit_entry(s, "pull", |e| e["actor"] == "k8s:system:serviceaccount:ci-web:builder").await;
    assert_eq!(entry["decision"], "allowed", "{entry}");
    let made = crate::support::audit_entry(s, "user.create", |e| {
        e["detail"].as_str().is_some_and(|d| d.contains("k8s:system:serviceaccount:ci-web:builder"))
    })
    .await;
    assert!(made["detail"].as_str().unwrap().contains("\"namespace\":\"ci-web\""), "audited with its claims: {made}");
    // the OAuth2 form, as containerd sends it: no refresh token for a workload
    let form = [
        ("grant_type", "password"),
        ("username", "workload"),
        ("password", ci.as_str()),
        ("service", "portcullis"),
        ("scope", "repository:someone/app:pull"),
        ("access_type", "offline"),
        ("client_id", "containerd-client"),
    ];
    let r = reqwest::Client::new().post(format!("http://{gw}/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string() && body.get("refresh_token").is_none(), "{body}");
    // a workload's token opens no API
    let r = reqwest::Client::new().get(s.url("/api/v1/orgs")).basic_auth("workload", Some(&ci)).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // another namespace matches no rule: refused, saying what did not match
    let other = issuer.sa_token("default", "builder");
    let (st, body) = token(&gw, &other, "repository:someone/app:pull").await;
    assert_eq!(st, 401, "{body}");
    let m = message(&body);
    assert!(
        m.contains("issuer k8s") && m.contains("acme's rule 1 wants namespace \"ci-*\", the token has \"default\""),
        "{m}"
    );
    let (ok, out) = skopeo_pull(&gw, &format!("workload:{other}"), "someone/app:1", &e.work.path().join("p2"));
    assert!(!ok, "{out}");

    // forged, misdirected and stale tokens
    let t = now();
    let claims = issuer.sa_claims("ci-web", "builder", "portcullis");
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let mut without_sub = claims.clone();
    without_sub.as_object_mut().unwrap().remove("sub");
    let unsigned = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let hmac = {
        // HS256 keyed with the issuer's public modulus, the classic algorithm confusion
        let header = b64(br#"{"alg":"HS256","kid":"kid-1","typ":"JWT"}"#);
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, issuer.url.as_bytes());
        format!("{input}.{}", b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref()))
    };
    let tampered = {
        let good = issuer.sa_token("ci-web", "builder");
        let parts: Vec<&str> = good.split('.').collect();
        let evil = with(
            json!({"kubernetes.io": {"namespace": "ci-web", "serviceaccount": {"name": "builder"}}, "sub": "system:serviceaccount:ci-web:admin"}),
        );
        format!("{}.{}.{}", parts[0], b64(evil.to_string().as_bytes()), parts[2])
    };
    for (jwt, why) in [
        (unsigned, "not a workload identity token"),
        (hmac, "does not sign with HS256"),
        (tampered, "InvalidSignature"),
        (issuer.sign(&issuer.header(), &with(json!({"aud": ["someone-else"]}))), "InvalidAudience"),
        (issuer.sign(&issuer.header(), &with(json!({"exp": t - 600, "iat": t - 4200, "nbf": t - 4200}))), "expired"),
        (issuer.sign(&issuer.header(), &with(json!({"nbf": t + 600}))), "not valid before"),
        (
            issuer.sign(&issuer.header(), &with(json!({"exp": t + 30 * 86_400}))),
            "longer than workload issuer k8s allows",
        ),
        (issuer.sign(&issuer.header(), &with(json!({"iss": "https://evil.example"}))), "not a trusted workload issuer"),
        (issuer.sign(&json!({"alg": "RS256", "kid": "kid-2"}), &claims), "not one of workload issuer k8s's keys"),
        (issuer.sign(&issuer.header(), &without_sub), "missing field `sub`"),
        ("not-a-jwt".to_owned(), "not a workload identity token"),
    ] {
        let (st, body) = token(&gw, &jwt, "repository:someone/app:pull").await;
        assert_eq!(st, 401, "{why}: {body}");
        assert!(message(&body).contains(why), "{why}: {body}");
    }

    // the issuer down: keys held are kept; an issuer whose keys were never had is a 503
    issuer.set_down(true);
    assert_eq!(token(&gw, &ci, "repository:someone/app:pull").await.0, 200);
    let gone = issuer.sign(&issuer.header(), &with(json!({"iss": "http://127.0.0.1:9"})));
    let (st, body) = token(&gw, &gone, "repository:someone/app:pull").await;
    assert_eq!(st, 503, "{body}");
    assert!(message(&body).contains("the keys of workload issuer gone cannot be had"), "{body}");
    issuer.set_down(false);

    // the rule removed: a registry token issued before no longer pulls what the rule allowed
    let (_, granted) = token(&gw, &ci, "repository:someone/app:pull").await;
    let bearer = granted["token"].as_str().unwrap().to_owned();
    let manifest = |bearer: String| app_manifest(&gw, bearer);
    assert_eq!(manifest(bearer.clone()).await, 200);
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(json!({"workloads": {"rules": []}}))).await.0,
        200
    );
    assert_eq!(manifest(bearer).await, 401, "the membership the rule made is withdrawn at once: sign in again");
    let (st, body) = token(&gw, &ci, "repository:someone/app:pull").await;
    assert_eq!(st, 401, "{body}");
    assert!(message(&body).contains("no organization has a workload rule for this issuer"), "{body}");

    // the console: owners add and remove rules through the same checks; members only look
    let web = crate::web::Web::sign_in(s, "alice", &ap).await;
    let bob = crate::web::Web::sign_in(s, "bob", &bp).await;
    let form = [("issuer", "k8s"), ("claims", "namespace = ci-*\nserviceaccount=builder"), ("teams", "ci")];
    assert_eq!(bob.post("/orgs/acme/workload-rules", &form).await.0, 403);
    let (st, loc, _) = web.post("/orgs/acme/workload-rules", &form).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/permissions?done=workload-rule-added"));
    let (_, page) = bob.get("/orgs/acme/permissions").await;
    let section = page.split("id=\"workload-rules-title\"").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(section.contains("<code>namespace = ci-*</code><br><code>serviceaccount = builder</code>"), "{section}");
    assert!(!section.contains("Add a workload rule") && !section.contains("/delete"), "members only look: {section}");
    assert_eq!(token(&gw, &ci, "repository:someone/app:pull").await.0, 200, "the rule applies at the next sign-in");
    for (bad, why) in [
        ([("issuer", "k8s"), ("claims", "namespace"), ("teams", "ci")], "write name=pattern"),
        ([("issuer", "k8s"), ("claims", "namespace=ci"), ("teams", "owners")], "never an owner"),
    ] {
        let (st, _, body) = web.post("/orgs/acme/workload-rules", &bad).await;
        assert_eq!(st, 400, "{body}");
        assert!(body.contains(why), "{why}: {body}");
    }
    assert_eq!(
        web.post("/orgs/acme/workload-rules/1/delete", &[]).await.1,
        "/orgs/acme/permissions?done=workload-rule-removed"
    );
    assert_eq!(web.post("/orgs/acme/workload-rules/1/delete", &[]).await.0, 404);
    assert_eq!(token(&gw, &ci, "repository:someone/app:pull").await.0, 401, "removed: its memberships end");
}

/// Protocol buffers, as much as a `PullImageRequest` needs: a length-delimited field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut n = bytes.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
    out
}

/// containerd's CRI `runtime.v1.ImageService/PullImage` — the call the kubelet makes — as gRPC
/// over the socket, encoded from the CRI proto's field numbers: `PullImageRequest { ImageSpec
/// image = 1 { string image = 1 }; AuthConfig auth = 2 { string username = 1; string password =
/// 2 } }`. The image reference it pulled, or gRPC's error message.
async fn cri_pull(sock: &str, image: &str, auth: Option<(&str, &str)>) -> Result<String, String> {
    use http_body_util::BodyExt;
    let mut msg = field(1, &field(1, image.as_bytes()));
    if let Some((user, password)) = auth {
        let a = [field(1, user.as_bytes()), field(2, password.as_bytes())].concat();
        msg.extend(field(2, &a));
    }
    let mut frame = vec![0u8];
    frame.extend((msg.len() as u32).to_be_bytes());
    frame.extend(msg);
    let io = hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(sock).await.unwrap());
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let req = axum::http::Request::post("http://localhost/runtime.v1.ImageService/PullImage")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().unwrap_or_default();
    let get = |k: &str| {
        trailers.get(k).or(headers.get(k)).map(|v| v.to_str().unwrap_or_default().to_owned()).unwrap_or_default()
    };
    if get("grpc-status") != "0" {
        return Err(format!("grpc-status {}: {}", get("grpc-status"), get("grpc-message")));
    }
    // PullImageResponse { string image_ref = 1 }: one field, a one-byte length.
    let bytes = body.to_bytes();
    Ok(String::from_utf8_lossy(&bytes[5 + 2..]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_chain_pulls_as_the_pods_service_account() {
    let issuer = TestIssuer::start().await;
    let issuers = format!("[{{name=\"k8s\",issuer=\"{}\"}}]", issuer.url);
    let e = acme_with_ci(&issuers).await;
    let s = &e.s;
    let gw = s.addr();
    let ap = pw("alice");
    let settings = json!({"workloads": {"rules": [
        {"issuer": "k8s", "claims": {"namespace": "ci-*"}, "teams": ["ci"]},
        {"issuer": "k8s", "claims": {"namespace": "dev-*"}, "teams": ["dev"]},
    ]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", ("alice", &ap), Some(settings)).await.0, 200);

    // the plugin, run with the request exactly as the kubelet writes it
    let provider = |token: &str| {
        let request = json!({
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": "docker.io/someone/app:1",
            "serviceAccountToken": token,
            "serviceAccountAnnotations": {},
        });
        let mut child = crate::support::portcullis(e.work.path())
            .args(["credential-provider", "--gateway", &format!("http://{gw}"), "--registry", "ghcr.io"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let token = issuer.sa_token("ci-web", "builder");
    let (ok, stdout, stderr) = provider(&token);
    assert!(ok, "{stderr}");
    let response: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(response["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(response["kind"], "CredentialProviderResponse");
    assert_eq!(response["cacheKeyType"], "Registry");
    let cache: i64 = response["cacheDuration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    assert!((1..=300).contains(&cache), "not beyond the token's life nor the maximum: {response}");
    for key in ["docker.io", "*.docker.io", "ghcr.io", gw.as_str()] {
        assert_eq!(response["auth"][key], json!({"username": "workload", "password": token}), "{key}: {response}");
    }
    // a token the gateway refuses fails in the plugin, with the gateway's reason for the kubelet's log
    let (ok, _, stderr) = provider(&issuer.sa_token("default", "web"));
    assert!(!ok);
    assert!(
        stderr.contains("the gateway refused the pod's service account token") && stderr.contains("\"ci-*\""),
        "{stderr}"
    );
    let (ok, _, stderr) = provider("");
    assert!(!ok && stderr.contains("tokenAttributes.serviceAccountTokenAudience"), "{stderr}");

    // containerd's CRI with certs.d sending docker.io to the gateway, given what the plugin returned
    let state = std::env::var("PCL_STATE").unwrap_or_else(|_| "/tmp/pcl-test".into());
    let sock = std::env::var("CONTAINERD_SOCK").unwrap_or_else(|_| format!("{state}/containerd/containerd.sock"));
    let hosts = std::path::Path::new(&state).join("containerd/certs.d/docker.io");
    std::fs::create_dir_all(&hosts).unwrap();
    let toml =
        format!("server = \"http://{gw}\"\n\n[host.\"http://{gw}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
    std::fs::write(hosts.join("hosts.toml"), toml).unwrap();
    let auth = &response["auth"]["docker.io"];
    let (user, password) = (auth["username"].as_str().unwrap(), auth["password"].as_str().unwrap());
    // The kubelet hands containerd the plugin's username and password for the image and no server
    // address (its keyring's entries from a plugin carry none), so containerd offers them to the
    // mirror: the gateway. (With a server address, containerd 1.6 offers them to that host only.)
    let pulled = cri_pull(&sock, "docker.io/someone/app:1", Some((user, password))).await;
    let ctr = |args: &[&str]| {
        crate::support::run(
            std::process::Command::new("ctr").args(["--address", &sock, "--namespace", "k8s.io"]).args(args),
        )
    };
    let _ = ctr(&["images", "rm", "docker.io/someone/app:1"]);
    assert!(pulled.as_deref().is_ok_and(|r| r.starts_with("sha256:")), "{pulled:?}");
    let entry = crate::support::audit_entry(s, "pull", |e| {
        e["actor"] == "k8s:system:serviceaccount:ci-web:builder" && e["image"] == "docker.io/someone/app"
    })
    .await;
    assert_eq!(entry["decision"], "allowed", "the audit names the pod's namespace and service account: {entry}");
    // a pod of a namespace whose team may not pull community images: signed in, refused
    let (ok, stdout, stderr) = provider(&issuer.sa_token("dev-x", "default"));
    assert!(ok, "{stderr}");
    let response: Value = serde_json::from_str(&stdout).unwrap();
    let dev = response["auth"]["docker.io"]["password"].as_str().unwrap().to_owned();
    let refused = cri_pull(&sock, "docker.io/someone/app:1", Some(("workload", &dev))).await;
    let _ = ctr(&["images", "rm", "docker.io/someone/app:1"]);
    assert!(refused.as_ref().is_err_and(|m| m.contains("403")), "{refused:?}");
    let entry =
        crate::support::audit_entry(s, "pull", |e| e["actor"] == "k8s:system:serviceaccount:dev-x:default").await;
    assert_eq!(entry["decision"], "denied", "{entry}");
    // a pod of a namespace no rule names: the plugin gave the kubelet nothing, the pull goes
    // without credentials and the gateway refuses it
    let refused = cri_pull(&sock, "docker.io/someone/app:1", None).await;
    let _ = ctr(&["images", "rm", "docker.io/someone/app:1"]);
    assert!(refused.as_ref().is_err_and(|m| m.contains("401") || m.contains("nauthorized")), "{refused:?}");
    std::fs::remove_file(hosts.join("hosts.toml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_job_signs_in_with_its_oidc_token_and_pushes_only_what_its_rule_allows() {
    // GitHub Actions' identity token, with GitHub's documented claims, from an issuer named github
    let issuer = TestIssuer::start().await;
    let issuers = format!("[{{name=\"github\",issuer=\"{}\"}}]", issuer.url);
    let e = setup(&[("PORTCULLIS_AUTH__WORKLOAD_ISSUERS", issuers.as_str())]).await;
    let s = &e.s;
    let gw = s.addr();
    acme_release_for_main(s, "github").await;
    let job = |git_ref: &str| {
        let t = now();
        let claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(), "sub": format!("repo:acme/app:ref:{git_ref}"),
            "aud": "portcullis", "ref": git_ref, "sha": "d0d1c5a9f6b5e0f6c5b7e3e6f1c0a8b9e7d6c5b4",
            "repository": "acme/app", "repository_owner": "acme", "repository_owner_id": "1",
            "run_id": "42", "run_number": "7", "run_attempt": "1", "repository_visibility": "private",
            "repository_id": "2", "actor_id": "3", "actor": "octocat", "workflow": "release",
            "head_ref": "", "base_ref": "", "event_name": "push", "ref_type": "branch", "ref_protected": "true",
            "workflow_ref": format!("acme/app/.github/workflows/release.yml@{git_ref}"),
            "workflow_sha": "d0d1c5a9f6b5e0f6c5b7e3e6f1c0a8b9e7d6c5b4",
            "job_workflow_ref": format!("acme/app/.github/workflows/release.yml@{git_ref}"),
            "runner_environment": "github-hosted", "iss": issuer.url, "nbf": t - 5, "exp": t + 300, "iat": t,
        });
        issuer.sign(&issuer.header(), &claims)
    };
    let main = job("refs/heads/main");
    // docker login with it, as a job's `docker/login-action` does
    let sock = std::env::var("DOCKER_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/docker/docker.sock".into());
    let cfg = e.work.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let login = |token: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("docker")
            .env("DOCKER_CONFIG", &cfg)
            .args(["-H", &format!("unix://{sock}"), "login", "-u", "workload", "--password-stdin", &gw])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = login(&main);
    assert!(ok && out.contains("Login Succeeded"), "{out}");
    let (ok, out) = login(&job("refs/heads/feature"));
    assert!(!ok, "another branch matches no rule: {out}");
    // skopeo pushes and pulls what the rule's team may, and nothing else
    let creds = format!("workload:{main}");
    let src = format!("oci:{}:tiny", e.layout.dir.display());
    let push = |dst: &str| {
        crate::support::run(std::process::Command::new("skopeo").args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &src,
            &format!("docker://{gw}/{dst}"),
        ]))
    };
    let (ok, out) = push("acme/app:1");
    assert!(ok, "{out}");
    let (ok, out) = push("acme/other:1");
    assert!(!ok, "no permission on acme/other: {out}");
    let (ok, out) = skopeo_pull(&gw, &creds, "acme/app:1", &e.work.path().join("pulled"));
    assert!(ok, "{out}");
    let entry =
        crate::support::audit_entry(s, "pull", |e| e["actor"] == "github:repo:acme/app:ref:refs/heads/main").await;
    assert_eq!(entry["image"], "acme/app", "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_real_openid_provider_signs_a_ci_job_in() {
    // npm oidc-provider as the CI platform's issuer: discovery, JWKS, an RS256 JWT access token
    let modules = std::env::var("PCL_NPM_MODULES").unwrap_or_else(|_| "/var/cache/portcullis-npm/node_modules".into());
    let port = crate::support::free_port();
    let claims = json!({
        "repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main", "ref_type": "branch",
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main", "event_name": "push",
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/ci-issuer.mjs");
    let _issuer = Killed(
        std::process::Command::new("node")
            .arg(script)
            .arg(port.to_string())
            .env("OIDC_PROVIDER_MODULES", &modules)
            .env("JOB_CLAIMS", claims.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node (Debian nodejs)"),
    );
    let issuer = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut jwt = String::new();
    for _ in 0..200 {
        let r = http
            .post(format!("{issuer}/token"))
            .basic_auth("ci-job", Some("ci-job-secret-0123456789"))
            .form(&[("grant_type", "client_credentials"), ("scope", "pull")])
            .send()
            .await;
        if let Ok(r) = r {
            let v: Value = r.json().await.unwrap_or_default();
            jwt = v["access_token"].as_str().unwrap_or_default().to_owned();
            assert!(!jwt.is_empty(), "{v}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(jwt.split('.').count(), 3, "a JWT access token: {jwt}");
    let issuers = format!("[{{name=\"ci\",issuer=\"{issuer}\"}}]");
    let e = setup(&[("PORTCULLIS_AUTH__WORKLOAD_ISSUERS", issuers.as_str())]).await;
    let s = &e.s;
    acme_release_for_main(s, "ci").await;
    let src = format!("oci:{}:tiny", e.layout.dir.display());
    let (ok, out) = crate::support::run(std::process::Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("workload:{jwt}"),
        &src,
        &format!("docker://{}/acme/app:1", s.addr()),
    ]));
    assert!(ok, "{out}");
    let entry = crate::support::audit_entry(s, "user.create", |e| {
        e["detail"].as_str().is_some_and(|d| d.contains("ci:ci-job"))
    })
    .await;
    assert!(entry["detail"].as_str().unwrap().contains("\"repository\":\"acme/app\""), "{entry}");
}

/// A child process ended when the test ends, whatever happened.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_trusts_an_issuer_at_run_time_and_no_one_else_can() {
    let configured = TestIssuer::start().await;
    let added = TestIssuer::start().await;
    let e = acme_with_ci(&format!("[{{name=\"k8s\",issuer=\"{}\"}}]", configured.url)).await;
    let s = &e.s;
    let gw = s.addr();
    let (ap, bp) = (pw("alice"), pw("bob"));
    let (alice, bob, admin) = (("alice", ap.as_str()), ("bob", bp.as_str()), ("admin", crate::support::ADMIN_PW));
    let issuers = "/api/v1/workload-issuers";
    let b = json!({"name": "cluster-b", "issuer": added.url, "jwks": added.jwks});

    // an owner can neither trust an issuer nor write a rule for one not trusted
    assert_eq!(s.api("POST", issuers, alice, Some(b.clone())).await.0, 403);
    let rule =
        json!({"workloads": {"rules": [{"issuer": "cluster-b", "claims": {"namespace": "ci-*"}, "teams": ["ci"]}]}});
    let (st, v) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rule.clone())).await;
    assert!(
        st == 400
            && v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no issuer named \"cluster-b\" is trusted here (k8s)"),
        "{st} {v}"
    );

    // what an administrator cannot trust either: each refused with its reason
    let with = |extra: Value| {
        let mut v = json!({"name": "x", "issuer": added.url});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    for (bad, status, why) in [
        (with(json!({"name": "a:b"})), 400, "a name of 1 to 64"),
        (with(json!({"issuer": "not a url"})), 400, "not an http(s) URL"),
        (with(json!({"algorithms": ["HS256"]})), 400, "\"HS256\" is not accepted"),
        (with(json!({"algorithms": ["none"]})), 400, "\"none\" is not accepted"),
        (with(json!({"jwks": {"keys": []}})), 400, "the JWKS has no key"),
        (with(json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}})), 400, "not an RSA or EC public key"),
        (with(json!({"jwks": "garbage"})), 400, "not a JWKS"),
        (with(json!({"max_token_lifetime_secs": 0})), 400, "max_token_lifetime_secs must be"),
        (with(json!({"surprise": true})), 400, "unknown field"),
        (with(json!({"name": "k8s"})), 409, "trusted already"),
        (with(json!({"issuer": configured.url})), 409, "trusted already"),
    ] {
        let (st, v) = s.api("POST", issuers, admin, Some(bad.clone())).await;
        assert!(st == status && v["message"].as_str().unwrap_or_default().contains(why), "{bad}: {st} {v}");
    }

    // trusted with its JWKS (the cluster cannot be reached: its keys are the ones given)
    added.set_down(true);
    let (st, v) = s.api("POST", issuers, admin, Some(b.clone())).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["source"].as_str(), v["keys_from"].as_str(), v["keys_held"].as_u64()),
        (Some("api"), Some("inline"), Some(1))
    );
    assert_eq!((v["audience"].as_str(), v["max_token_lifetime_secs"].as_i64()), (Some("portcullis"), Some(86_400)));
    assert_eq!(s.api("POST", issuers, admin, Some(b.clone())).await.0, 409, "once");
    // anyone signed in sees them (rules name them); the configured one says where it comes from
    let (st, list) = s.api("GET", issuers, bob, None).await;
    assert_eq!(st, 200);
    let names: Vec<(&str, &str)> =
        list.as_array().unwrap().iter().map(|i| (i["name"].as_str().unwrap(), i["source"].as_str().unwrap())).collect();
    assert_eq!(names, [("k8s", "config"), ("cluster-b", "api")]);
    assert_eq!(s.api("GET", issuers, ("bob", "wrong"), None).await.0, 401);

    // the owner's rule for it now holds, and its service accounts pull as themselves
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rule)).await.0, 200);
    let jwt = added.sa_token("ci-web", "builder");
    let (st, granted) = token(&gw, &jwt, "repository:someone/app:pull").await;
    assert_eq!(st, 200, "{granted}");
    let (ok, out) = skopeo_pull(&gw, &format!("workload:{jwt}"), "someone/app:1", &e.work.path().join("b"));
    assert!(ok, "{out}");
    let bearer = granted["token"].as_str().unwrap().to_owned();
    let manifest = || app_manifest(&gw, bearer.clone());
    assert_eq!(manifest().await, 200);

    // removing: not by an owner, not a configured one, not one never added
    assert_eq!(s.api("DELETE", &format!("{issuers}/cluster-b"), alice, None).await.0, 403);
    let (st, v) = s.api("DELETE", &format!("{issuers}/k8s"), admin, None).await;
    assert!(
        st == 409 && v["message"].as_str().unwrap_or_default().contains("remove it from the configuration"),
        "{st} {v}"
    );
    assert_eq!(s.api("DELETE", &format!("{issuers}/nobody"), admin, None).await.0, 404);
    // removed: its tokens are refused, and a registry token issued before ends at once
    assert_eq!(s.api("DELETE", &format!("{issuers}/cluster-b"), admin, None).await.0, 204);
    let (st, body) = token(&gw, &jwt, "repository:someone/app:pull").await;
    assert!(st == 401 && message(&body).contains("is not a trusted workload issuer here"), "{st} {body}");
    assert_eq!(manifest().await, 401, "its workloads lost the memberships the rules gave them");
    for action in ["workload_issuer.add", "workload_issuer.remove"] {
        let entry = crate::support::audit_entry(s, action, |e| e["actor"] == "admin").await;
        assert!(entry["detail"].as_str().unwrap().contains("cluster-b"), "{entry}");
    }

    // the console: the administrator adds and removes one; others have no such page
    let web = crate::web::Web::sign_in(s, "admin", crate::support::ADMIN_PW).await;
    let jwks = added.jwks.to_string();
    let form = [
        ("name", "cluster-c"),
        ("issuer", added.url.as_str()),
        ("audience", ""),
        ("rs256", "on"),
        ("max_lifetime_hours", "2"),
        ("jwks", jwks.as_str()),
    ];
    let owner = crate::web::Web::sign_in(s, "alice", &ap).await;
    assert_eq!(owner.post("/admin/workload-issuers", &form).await.0, 403);
    let (st, loc, _) = web.post("/admin/workload-issuers", &form).await;
    assert_eq!((st, loc.as_str()), (303, "/admin?done=issuer-added"));
    let (_, page) = web.get("/admin").await;
    assert!(page.contains("cluster-c") && page.contains("inline (1 held)") && page.contains("2 h"), "{page}");
    assert!(page.contains("Remove cluster-c") && !page.contains("Remove k8s"), "{page}");
    let (_, list) = s.api("GET", issuers, bob, None).await;
    assert_eq!(list[1]["algorithms"], json!(["RS256"]));
    let (st, loc, _) = web.post("/admin/workload-issuers/cluster-c/delete", &[]).await;
    assert_eq!((st, loc.as_str()), (303, "/admin?done=issuer-removed"));
    assert!(!web.get("/admin").await.1.contains("cluster-c"));
}
