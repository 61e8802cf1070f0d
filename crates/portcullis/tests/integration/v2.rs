//! The distribution API over HTTP: conformance of push and pull, errors and bad input,
//! authorization on every request.

use reqwest::header;
use serde_json::{Value, json};

use crate::support::{Server, pw, sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A server with user alice owning org acme, bob (member of acme/dev with read on acme/app),
/// and carol (no org).
async fn setup() -> Server {
    let s = Server::start().await;
    for u in ["alice", "bob", "carol"] {
        s.create_user(u).await;
    }
    s.create_org("acme", "alice").await;
    let alice = ("alice", pw("alice"));
    let a = (alice.0, alice.1.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", a, Some(json!({"name": "dev"}))).await.0, 201);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams/dev/members", a, Some(json!({"username": "bob"}))).await.0, 201);
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", a, Some(json!({"permission": "read"}))).await.0,
        200
    );
    s
}

async fn alice_token(s: &Server, repo: &str) -> String {
    s.token(Some(("alice", &pw("alice"))), &[&format!("repository:{repo}:pull,push,delete")]).await
}

async fn code(r: reqwest::Response) -> (u16, String, Value) {
    let st = r.status().as_u16();
    let b: Value = r.json().await.unwrap_or(Value::Null);
    (st, b["errors"][0]["code"].as_str().unwrap_or("").to_owned(), b)
}

/// Monolithic blob push; returns the digest.
pub(crate) async fn push_blob(s: &Server, t: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = s
        .req("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), Some(t))
        .await
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    d
}

fn manifest(config: &str, csize: usize, layer: &str, lsize: usize) -> Vec<u8> {
    json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": lsize}],
    })
    .to_string()
    .into_bytes()
}

/// Pushes a small image to `repo:tag`; returns (manifest digest, layer digest, manifest bytes).
pub(crate) async fn push_image(s: &Server, t: &str, repo: &str, tag: &str, layer: &[u8]) -> (String, String, Vec<u8>) {
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = push_blob(s, t, repo, cfg).await;
    let l = push_blob(s, t, repo, layer).await;
    let m = manifest(&c, cfg.len(), &l, layer.len());
    let r = s
        .req("PUT", &format!("/v2/{repo}/manifests/{tag}"), Some(t))
        .await
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let d = sha256(&m);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    (d, l, m)
}

#[tokio::test]
async fn challenges_and_tokens() {
    let s = setup().await;
    let r = s.req("GET", "/v2/", None).await.send().await.unwrap();
    assert_eq!(r.status(), 401);
    let ch = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert_eq!(ch, format!("Bearer realm=\"http://{}/token\",service=\"portcullis\"", s.addr()));
    let r = s.req("GET", "/v2/acme/app/tags/list", None).await.send().await.unwrap();
    assert!(r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("scope=\"repository:acme/app:pull\""));
    // anonymous token works on /v2/
    let anon = s.token(None, &[]).await;
    assert_eq!(s.req("GET", "/v2/", Some(&anon)).await.send().await.unwrap().status(), 200);
    // wrong password: 401
    let r = s.http.get(s.url("/token")).basic_auth("alice", Some("nope")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // POST /token password and refresh grants
    let form = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", &pw("alice")),
        ("service", "portcullis"),
        ("scope", "repository:acme/app:pull"),
        ("access_type", "offline"),
        ("client_id", "test"),
    ];
    let r: Value = s.http.post(s.url("/token")).form(&form).send().await.unwrap().json().await.unwrap();
    assert!(r["access_token"].as_str().is_some());
    let refresh = r["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "portcullis"),
        ("client_id", "test"),
    ];
    let r = s.http.post(s.url("/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let form = [("grant_type", "refresh_token"), ("refresh_token", "pcr_bogus"), ("client_id", "test")];
    assert_eq!(s.http.post(s.url("/token")).form(&form).send().await.unwrap().status(), 401);
    let form = [("grant_type", "client_credentials")];
    assert_eq!(s.http.post(s.url("/token")).form(&form).send().await.unwrap().status(), 400);
    // offline_token on GET gives a refresh token too
    let r: Value = s
        .http
        .get(s.url("/token?service=portcullis&offline_token=true"))
        .basic_auth("bob", Some(pw("bob")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["refresh_token"].as_str().unwrap().starts_with("pcr_"));
}

#[tokio::test]
async fn push_pull_conformance() {
    let s = setup().await;
    let t = alice_token(&s, "acme/app").await;
    let (digest, layer, mbytes) = push_image(&s, &t, "acme/app", "v1", b"layer-bytes-0123456789").await;

    // manifest GET/HEAD by tag and digest, byte-exact
    for reference in ["v1", digest.as_str()] {
        let r = s.req("GET", &format!("/v2/acme/app/manifests/{reference}"), Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(r.bytes().await.unwrap().to_vec(), mbytes);
        let r = s.req("HEAD", &format!("/v2/acme/app/manifests/{reference}"), Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], mbytes.len().to_string().as_str());
    }
    // blob GET, HEAD and Range
    let r = s.req("GET", &format!("/v2/acme/app/blobs/{layer}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"layer-bytes-0123456789");
    let r = s
        .req("GET", &format!("/v2/acme/app/blobs/{layer}"), Some(&t))
        .await
        .header(header::RANGE, "bytes=6-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 6-10/22");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"bytes");
    let r = s
        .req("GET", &format!("/v2/acme/app/blobs/{layer}"), Some(&t))
        .await
        .header(header::RANGE, "bytes=50-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */22");
    let r = s.req("HEAD", &format!("/v2/acme/app/blobs/{layer}"), Some(&t)).await.send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[header::CONTENT_LENGTH].to_str().unwrap()), (200, "22"));

    // chunked upload with Content-Range, an out-of-order chunk, status, then commit
    let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let r =
        s.req("PATCH", &loc, Some(&t)).await.header(header::CONTENT_RANGE, "0-4").body("hello").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[header::RANGE].to_str().unwrap()), (202, "0-4"));
    let r =
        s.req("PATCH", &loc, Some(&t)).await.header(header::CONTENT_RANGE, "9-12").body("xxxx").send().await.unwrap();
    assert_eq!(code(r).await.0, 416);
    let r = s.req("PATCH", &loc, Some(&t)).await.body(" world").send().await.unwrap();
    assert_eq!(r.headers()[header::RANGE], "0-10");
    let r = s.req("GET", &loc, Some(&t)).await.send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[header::RANGE].to_str().unwrap()), (204, "0-10"));
    let hw = sha256(b"hello world!");
    let r = s.req("PUT", &format!("{loc}?digest={hw}"), Some(&t)).await.body("!").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()[header::LOCATION], format!("/v2/acme/app/blobs/{hw}").as_str());
    assert_eq!(s.req("GET", &loc, Some(&t)).await.send().await.unwrap().status(), 404, "finished uploads are gone");
    // cancel
    let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
    let loc = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(s.req("DELETE", &loc, Some(&t)).await.send().await.unwrap().status(), 204);
    assert_eq!(
        code(s.req("PATCH", &loc, Some(&t)).await.body("x").send().await.unwrap()).await.1,
        "BLOB_UPLOAD_UNKNOWN"
    );
    // POST then PUT with the whole body
    let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
    let loc = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let d = sha256(b"whole");
    assert_eq!(
        s.req("PUT", &format!("{loc}?digest={d}"), Some(&t)).await.body("whole").send().await.unwrap().status(),
        201
    );

    // sha512 blobs
    let d512 = {
        use sha2::Digest;
        format!("sha512:{}", hex::encode(sha2::Sha512::digest(b"sha512 content")))
    };
    let r = s
        .req("POST", &format!("/v2/acme/app/blobs/uploads/?digest={d512}"), Some(&t))
        .await
        .body("sha512 content")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s.req("GET", &format!("/v2/acme/app/blobs/{d512}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"sha512 content");

    // a manifest addressed by a sha512 digest
    let m512 = {
        use sha2::Digest;
        format!("sha512:{}", hex::encode(sha2::Sha512::digest(&mbytes)))
    };
    let r = s
        .req("PUT", &format!("/v2/acme/app/manifests/{m512}"), Some(&t))
        .await
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(mbytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], m512.as_str());
    let r = s.req("GET", &format!("/v2/acme/app/manifests/{m512}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), mbytes);

    // tags list with pagination
    for tag in ["v2", "v3"] {
        let r = s
            .req("PUT", &format!("/v2/acme/app/manifests/{tag}"), Some(&t))
            .await
            .header(header::CONTENT_TYPE, OCI_MANIFEST)
            .body(mbytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = s.req("GET", "/v2/acme/app/tags/list?n=2", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.headers()[header::LINK], "</v2/acme/app/tags/list?n=2&last=v2>; rel=\"next\"");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"name": "acme/app", "tags": ["v1", "v2"]}));
    let r: Value =
        s.req("GET", "/v2/acme/app/tags/list?n=2&last=v2", Some(&t)).await.send().await.unwrap().json().await.unwrap();
    assert_eq!(r["tags"], json!(["v3"]));

    // referrers with artifactType filter and OCI-Subject
    let cfg = push_blob(&s, &t, "acme/app", b"{}").await;
    let sig = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2}, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": mbytes.len()}})
    .to_string();
    let sd = sha256(sig.as_bytes());
    let r = s
        .req("PUT", &format!("/v2/acme/app/manifests/{sd}"), Some(&t))
        .await
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"], digest.as_str());
    let r = s.req("GET", &format!("/v2/acme/app/referrers/{digest}"), Some(&t)).await.send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"][0]["digest"], sd.as_str());
    assert_eq!(v["manifests"][0]["artifactType"], "application/vnd.example.sig");
    let r = s
        .req("GET", &format!("/v2/acme/app/referrers/{digest}?artifactType=application/other"), Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));

    // delete by tag, then by digest; blob delete
    assert_eq!(s.req("DELETE", "/v2/acme/app/manifests/v3", Some(&t)).await.send().await.unwrap().status(), 202);
    assert_eq!(s.req("GET", "/v2/acme/app/manifests/v3", Some(&t)).await.send().await.unwrap().status(), 404);
    assert_eq!(
        s.req("DELETE", &format!("/v2/acme/app/manifests/{digest}"), Some(&t)).await.send().await.unwrap().status(),
        202
    );
    assert_eq!(
        code(s.req("GET", "/v2/acme/app/manifests/v1", Some(&t)).await.send().await.unwrap()).await.1,
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        s.req("DELETE", &format!("/v2/acme/app/blobs/{layer}"), Some(&t)).await.send().await.unwrap().status(),
        202
    );
    assert_eq!(
        code(s.req("GET", &format!("/v2/acme/app/blobs/{layer}"), Some(&t)).await.send().await.unwrap()).await.1,
        "BLOB_UNKNOWN"
    );
}

#[tokio::test]
async fn blobs_are_served_only_through_linked_repositories_and_mounts_need_pull() {
    let s = setup().await;
    let t = s
        .token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull,push", "repository:acme/other:pull,push"])
        .await;
    let d = push_blob(&s, &t, "acme/app", b"secret layer").await;
    let r = s.req("GET", &format!("/v2/acme/other/blobs/{d}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(code(r).await.1, "BLOB_UNKNOWN", "same digest, other repository");
    // alice may pull acme/app: mount works
    let r = s
        .req("POST", &format!("/v2/acme/other/blobs/uploads/?mount={d}&from=acme/app"), Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.req("GET", &format!("/v2/acme/other/blobs/{d}"), Some(&t)).await.send().await.unwrap().status(), 200);
    // a token without pull on the source, for a caller who may pull it, is challenged for it
    // (as CNCF distribution does); with it, the mount is made
    let narrow = s.token(Some(("alice", &pw("alice"))), &["repository:acme/third:pull,push"]).await;
    let mount = format!("/v2/acme/third/blobs/uploads/?mount={d}&from=acme/app");
    let r = s.req("POST", &mount, Some(&narrow)).await.send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("scope=\"repository:acme/third:pull,push repository:acme/app:pull\"")
            && challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let wide =
        s.token(Some(("alice", &pw("alice"))), &["repository:acme/third:pull,push", "repository:acme/app:pull"]).await;
    assert_eq!(s.req("POST", &mount, Some(&wide)).await.send().await.unwrap().status(), 201);
    // carol may push to her namespace but cannot pull acme/app: the mount becomes an upload
    let ct =
        s.token(Some(("carol", &pw("carol"))), &["repository:carol/x:pull,push", "repository:acme/app:pull"]).await;
    let r = s
        .req("POST", &format!("/v2/carol/x/blobs/uploads/?mount={d}&from=acme/app"), Some(&ct))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        code(s.req("GET", &format!("/v2/carol/x/blobs/{d}"), Some(&ct)).await.send().await.unwrap()).await.1,
        "BLOB_UNKNOWN"
    );
}

#[tokio::test]
async fn permissions_on_every_request() {
    let s = setup().await;
    let t = alice_token(&s, "acme/app").await;
    push_image(&s, &t, "acme/app", "v1", b"private layer").await;
    // anonymous: challenged
    let anon = s.token(None, &["repository:acme/app:pull"]).await;
    let r = s.req("GET", "/v2/acme/app/manifests/v1", Some(&anon)).await.send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    // bob (team read) pulls, cannot push even with a token that asks for push
    let bt = s.token(Some(("bob", &pw("bob"))), &["repository:acme/app:pull,push"]).await;
    assert_eq!(s.req("GET", "/v2/acme/app/manifests/v1", Some(&bt)).await.send().await.unwrap().status(), 200);
    let (st, c, _) = code(s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&bt)).await.send().await.unwrap()).await;
    assert_eq!((st, c.as_str()), (403, "DENIED"));
    // carol (no org): denied
    let ct = s.token(Some(("carol", &pw("carol"))), &["repository:acme/app:pull"]).await;
    assert_eq!(
        code(s.req("GET", "/v2/acme/app/manifests/v1", Some(&ct)).await.send().await.unwrap()).await.1,
        "DENIED"
    );
    // the registry re-checks now: revoking bob's permission applies to his existing token
    let a = ("alice", pw("alice"));
    assert_eq!(s.api("DELETE", "/api/v1/orgs/acme/teams/dev/permissions/app", (a.0, &a.1), None).await.0, 204);
    assert_eq!(
        code(s.req("GET", "/v2/acme/app/manifests/v1", Some(&bt)).await.send().await.unwrap()).await.1,
        "DENIED"
    );
    // making the repository public lets anonymous pull
    assert_eq!(
        s.api("PATCH", "/api/v1/repositories/acme/app", (a.0, &a.1), Some(json!({"visibility": "public"}))).await.0,
        200
    );
    assert_eq!(
        s.req("GET", "/v2/acme/app/manifests/v1", Some(&anon)).await.send().await.unwrap().status(),
        401,
        "old token lacks the grant"
    );
    let anon = s.token(None, &["repository:acme/app:pull"]).await;
    assert_eq!(s.req("GET", "/v2/acme/app/manifests/v1", Some(&anon)).await.send().await.unwrap().status(), 200);
    // a pull-only token cannot be used to push even by the owner: insufficient scope
    let pull_only = s.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull"]).await;
    let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&pull_only)).await.send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("insufficient_scope"));
    // catalog shows only what the caller may pull
    let bt = s.token(Some(("carol", &pw("carol"))), &["registry:catalog:*"]).await;
    let v: Value = s.req("GET", "/v2/_catalog", Some(&bt)).await.send().await.unwrap().json().await.unwrap();
    assert_eq!(v["repositories"], json!(["acme/app"]), "public now");
    // names outside the namespaces held here are Docker Hub's: pushing there is refused (405),
    // even to the administrator, so nobody can host look-alikes of official images
    let admin = s.token(Some(("admin", crate::support::ADMIN_PW)), &["repository:library/alpine:push,pull"]).await;
    let (st, c, body) =
        code(s.req("POST", "/v2/library/alpine/blobs/uploads/", Some(&admin)).await.send().await.unwrap()).await;
    assert_eq!((st, c.as_str()), (405, "UNSUPPORTED"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("pull-through cache of docker.io"));
}

#[tokio::test]
async fn bad_input_gets_spec_errors_and_stores_nothing() {
    let s = setup().await;
    let t = alice_token(&s, "acme/app").await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("GET", "/v2/acme/app/blobs/sha256:1234".into(), 400, "DIGEST_INVALID"),
        ("GET", "/v2/acme/app/manifests/sha256:zz".into(), 400, "DIGEST_INVALID"),
        ("GET", "/v2/ACME/app/tags/list".into(), 400, "NAME_INVALID"),
        ("GET", "/v2/acme//app/tags/list".into(), 400, "NAME_INVALID"),
        ("GET", format!("/v2/{}/tags/list", "a/".repeat(130) + "b"), 400, "NAME_INVALID"),
        ("GET", "/v2/acme/app/tags/list?n=abc".into(), 400, "PAGINATION_NUMBER_INVALID"),
        ("POST", "/v2/acme/app/manifests/x".into(), 405, "UNSUPPORTED"),
        ("POST", "/v2/acme/app/blobs/uploads/?digest=sha256:nothex".into(), 400, "DIGEST_INVALID"),
        ("PATCH", "/v2/acme/app/blobs/uploads/not-an-upload".into(), 404, "BLOB_UPLOAD_UNKNOWN"),
        ("GET", "/v2/acme/app/manifests/-tag".into(), 400, "TAG_INVALID"),
    ];
    for (m, p, status, c) in cases {
        let (st, got, _) = code(s.req(m, &p, Some(&t)).await.send().await.unwrap()).await;
        assert_eq!((st, got.as_str()), (status, c), "{m} {p}");
    }
    // dot segments reach the server only from raw clients (URL libraries resolve them)
    for path in ["/v2/acme/../etc/tags/list", "/v2/acme/%2e%2e/etc/tags/list", "/v2/./x/manifests/latest"] {
        let raw = raw_get(&s, path, &t).await;
        assert!(raw.starts_with("HTTP/1.1 400") && raw.contains("NAME_INVALID"), "{path}: {raw}");
    }
    // digest mismatch on a monolithic push
    let wrong = sha256(b"other");
    let r = s
        .req("POST", &format!("/v2/acme/app/blobs/uploads/?digest={wrong}"), Some(&t))
        .await
        .body("content")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await.1, "DIGEST_INVALID");
    assert_eq!(
        s.req("HEAD", &format!("/v2/acme/app/blobs/{}", sha256(b"content")), Some(&t))
            .await
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // manifests: bad JSON, unknown blobs, digest mismatch, media type mismatch, too large
    let bad = |body: Vec<u8>, ct: &'static str, reference: String| {
        let s = &s;
        let t = t.clone();
        async move {
            code(
                s.req("PUT", &format!("/v2/acme/app/manifests/{reference}"), Some(&t))
                    .await
                    .header(header::CONTENT_TYPE, ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(bad(b"{not json".to_vec(), OCI_MANIFEST, "v1".into()).await.1, "MANIFEST_INVALID");
    let missing = manifest(&sha256(b"a"), 1, &sha256(b"b"), 1);
    assert_eq!(bad(missing.clone(), OCI_MANIFEST, "v1".into()).await.1, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(bad(missing.clone(), OCI_MANIFEST, sha256(b"x")).await.1, "DIGEST_INVALID");
    assert_eq!(
        bad(missing, "application/vnd.docker.distribution.manifest.v2+json", "v1".into()).await.1,
        "MANIFEST_INVALID"
    );
    let huge = vec![b' '; 4 * 1024 * 1024 + 10];
    assert_eq!(bad(huge, OCI_MANIFEST, "v1".into()).await.1, "MANIFEST_INVALID");
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}]})
    .to_string()
    .into_bytes();
    assert_eq!(bad(index, "application/vnd.oci.image.index.v1+json", "v1".into()).await.1, "MANIFEST_BLOB_UNKNOWN");
    let unknown = json!({"schemaVersion": 2, "mediaType": "application/x-unknown", "config": {}}).to_string();
    assert_eq!(bad(unknown.into_bytes(), "application/x-unknown", "v1".into()).await.1, "MANIFEST_INVALID");
    for body in [&b"[]"[..], b"null", b"{\"schemaVersion\": 1}", b"{\"schemaVersion\": 2, \"manifests\": 7}"] {
        assert_eq!(bad(body.to_vec(), OCI_MANIFEST, "v1".into()).await.1, "MANIFEST_INVALID");
    }
    assert_eq!(
        code(s.req("GET", "/v2/acme/app/tags/list", Some(&t)).await.send().await.unwrap()).await.1,
        "NAME_UNKNOWN",
        "nothing stored"
    );
    // forged and foreign tokens
    let other = Server::start().await;
    other.create_user("alice").await;
    let foreign = other.token(Some(("alice", &pw("alice"))), &["repository:acme/app:pull,push"]).await;
    let r = s.req("GET", "/v2/", Some(&foreign)).await.send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(r#"{"iss":"portcullis","sub":"admin","aud":"portcullis","exp":99999999999,"nbf":0,"iat":0,"jti":"x","access":[{"type":"repository","name":"acme/app","actions":["pull","push"]}]}"#));
    assert_eq!(s.req("GET", "/v2/acme/app/tags/list", Some(&none)).await.send().await.unwrap().status(), 401);
    assert_eq!(s.req("GET", "/v2/", Some("garbage.token.here")).await.send().await.unwrap().status(), 401);
    let r = s.http.get(s.url("/v2/")).header(header::AUTHORIZATION, "Basic !!!").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A GET written byte for byte, bypassing URL normalisation.
async fn raw_get(s: &Server, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        s.addr()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_final_chunk_must_start_where_the_upload_ends() {
    let s = setup().await;
    let t = alice_token(&s, "acme/app").await;
    let r = s.req("POST", "/v2/acme/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = s.req("PATCH", &loc, Some(&t)).await.header("content-range", "0-2").body("abc").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let whole = sha256(b"abcdef");
    // a PUT whose Content-Range skips or repeats bytes is refused like such a PATCH, and the
    // upload goes on
    for bad in ["5-7", "0-2"] {
        let r = s
            .req("PUT", &format!("{loc}?digest={whole}"), Some(&t))
            .await
            .header("content-range", bad)
            .body("def")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(code(r).await.1, "RANGE_INVALID");
    }
    let r = s
        .req("PUT", &format!("{loc}?digest={whole}"), Some(&t))
        .await
        .header("content-range", "3-5")
        .body("def")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get_bytes(&format!("/v2/acme/app/blobs/{whole}"), &t).await, b"abcdef");
}

/// An index of an index of ... 40 levels deep is stored and served like any manifest: nothing
/// walks it recursively without a bound (a cycle cannot be written, digests name content).
#[tokio::test]
async fn deeply_nested_indexes_are_served() {
    let s = setup().await;
    let t = alice_token(&s, "acme/app").await;
    let (mut child, _, m) = push_image(&s, &t, "acme/app", "leaf", b"leaf layer").await;
    let (mut media, mut size) = (OCI_MANIFEST, m.len());
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    for level in 0..40 {
        let doc = json!({"schemaVersion": 2, "mediaType": INDEX,
            "manifests": [{"mediaType": media, "digest": child, "size": size}]})
        .to_string();
        let r = s
            .req("PUT", &format!("/v2/acme/app/manifests/level{level}"), Some(&t))
            .await
            .header(header::CONTENT_TYPE, INDEX)
            .body(doc.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "level {level}");
        (child, media, size) = (sha256(doc.as_bytes()), INDEX, doc.len());
    }
    let r =
        s.req("GET", "/v2/acme/app/manifests/level39", Some(&t)).await.header("accept", INDEX).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], child.as_str());
}
