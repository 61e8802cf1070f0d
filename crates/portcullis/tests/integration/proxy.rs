//! Pull-through: two real registries stand in for Docker Hub and ghcr.io (Docker Hub's behind
//! a fault-injecting, request-counting proxy); real clients pull through the gateway.

use std::process::Command;

use serde_json::{Value, json};

use crate::images::{self, Layout};
use crate::support::{ADMIN_PW, Server, eventually, pw, run, sha256};
use crate::upstreams::{Fault, FaultProxy, Registry};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct Env {
    pub s: Server,
    pub hub: Registry,
    _ghcr: Registry,
    pub fp: FaultProxy,
    pub layout: Layout,
    pub work: tempfile::TempDir,
}

pub async fn setup(extra: &[(&str, &str)]) -> Env {
    setup_with_upstream(None, extra).await
}

/// `setup` on a port chosen beforehand (for settings that name the server's own address).
pub async fn setup_at(port: u16, extra: &[(&str, &str)]) -> Env {
    setup_full(port, None, extra).await
}

/// `setup`, with one more upstream (an inline TOML table such as `{registry="quay.io",url=...}`).
pub async fn setup_with_upstream(more: Option<&str>, extra: &[(&str, &str)]) -> Env {
    setup_full(crate::support::free_port(), more, extra).await
}

async fn setup_full(port: u16, more: Option<&str>, extra: &[(&str, &str)]) -> Env {
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    let hub = Registry::start().await;
    let ghcr = Registry::start().await;
    hub.push(&layout.dir, "tiny", "library/tiny:1");
    hub.push(&layout.dir, "multi", "library/multi:1");
    hub.push(&layout.dir, "tiny", "someone/app:1");
    ghcr.push(&layout.dir, "tiny", "owner/tool:1");
    let fp = FaultProxy::start(&hub).await;
    let ups = format!(
        "[{{registry=\"docker.io\",url=\"http://{}\"}},{{registry=\"ghcr.io\",url=\"http://{}\"}}{}]",
        fp.addr(),
        ghcr.addr(),
        more.map(|m| format!(",{m}")).unwrap_or_default()
    );
    let mut env = vec![
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_UPSTREAMS", ups.as_str()),
        ("PORTCULLIS_PROXY__READ_TIMEOUT_SECS", "1"),
        ("PORTCULLIS_PROXY__RETRIES", "1"),
    ];
    env.extend_from_slice(extra);
    let s = Server::launch_at(port, tempfile::tempdir().unwrap(), &env, None, "http").await;
    s.create_user("alice").await;
    Env { s, hub, _ghcr: ghcr, fp, layout, work }
}

fn skopeo(args: &[&str]) -> (bool, String) {
    run(Command::new("skopeo").args(args))
}

/// Pushes a one-layer image with `layer` to `repo:tag` at the upstream; returns the layer digest.
pub async fn upstream_image(r: &Registry, repo: &str, tag: &str, layer: &[u8]) -> String {
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = r.push_blob(repo, cfg).await;
    let l = r.push_blob(repo, layer).await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": layer.len()}]});
    let resp = reqwest::Client::new()
        .put(format!("http://{}/v2/{repo}/manifests/{tag}", r.addr()))
        .header("content-type", OCI_MANIFEST)
        .body(m.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    l
}

pub fn random_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn blob_file(s: &Server, digest: &str) -> std::path::PathBuf {
    s.dir.path().join("blobs/sha256").join(&digest[7..9]).join(&digest[7..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_official_namespaced_and_other_registries() {
    let e = setup(&[]).await;
    let gw = e.s.addr();
    let a = format!("alice:{}", pw("alice"));
    let l = e.layout.dir.display().to_string();
    let expected = std::fs::read(e.layout.dir.join("blobs/sha256").join(&e.layout.tiny_layer[7..])).unwrap();
    for (i, name) in [
        "library/tiny:1",
        "tiny:1",
        "docker.io/someone/app:1",
        "ghcr.io/owner/tool:1",
        &format!("library/tiny@{}", e.layout.tiny),
    ]
    .iter()
    .enumerate()
    {
        let dst = e.work.path().join(format!("pulled-{i}"));
        let (ok, out) = skopeo(&[
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--src-creds",
            &a,
            &format!("docker://{gw}/{name}"),
            &format!("dir:{}", dst.display()),
        ]);
        assert!(ok, "{name}: {out}");
        assert_eq!(std::fs::read(dst.join(&e.layout.tiny_layer[7..])).unwrap(), expected, "{name}: layer bytes");
    }
    // a multi-arch index, all platforms
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        &a,
        &format!("docker://{gw}/library/multi:1"),
        &format!("oci:{}/multi:x", e.work.path().display()),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &a,
        &format!("docker://{gw}/library/multi@{}", e.layout.multi),
    ]);
    assert!(ok && out.contains("arm64"), "{out}");
    // the second pull of an image is served from the cache
    let before = e.fp.count("GET", "/blobs/");
    let (ok, out) = crate::support::skopeo_pull(&gw, &a, "library/tiny:1", &e.work.path().join("again"));
    assert!(ok, "{out}");
    assert_eq!(e.fp.count("GET", "/blobs/"), before, "no blob fetched twice");
    // anonymous callers are challenged; pushes to upstream names are refused; unknown registries too
    let (ok, out) = skopeo(&["inspect", "--tls-verify=false", "--no-creds", &format!("docker://{gw}/library/tiny:1")]);
    assert!(!ok && (out.contains("authentication required") || out.contains("unauthorized")), "{out}");
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &a,
        &format!("oci:{l}:tiny"),
        &format!("docker://{gw}/library/tiny:2"),
    ]);
    assert!(!ok && out.contains("pull-through cache"), "{out}");
    let (ok, out) = skopeo(&["inspect", "--tls-verify=false", "--creds", &a, &format!("docker://{gw}/quay.io/x/y:1")]);
    assert!(!ok && out.contains("not configured"), "{out}");
    // a blob is served only through a repository whose manifest references it
    let other = e.hub.push_blob("other/x", b"not referenced by someone/app").await;
    let t = e.s.token(Some(("alice", &pw("alice"))), &["repository:someone/app:pull"]).await;
    let r = e.s.req("GET", &format!("/v2/someone/app/blobs/{other}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 404);
    // metrics count hits and misses
    let m = reqwest::get(e.s.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        m.contains("portcullis_proxy_cache_hits_total{kind=\"blob\"}")
            && !m.contains("cache_misses_total{kind=\"blob\"} 0\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_cold_gets_make_one_upstream_fetch() {
    let e = setup(&[]).await;
    let layer = random_bytes(16 << 20, 7);
    let d = upstream_image(&e.hub, "library/big", "1", &layer).await;
    let t = e.s.token(Some(("alice", &pw("alice"))), &["repository:library/big:pull"]).await;
    assert_eq!(e.s.req("GET", "/v2/library/big/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let req = e.s.req("GET", &format!("/v2/library/big/blobs/{d}"), Some(&t)).await;
        tasks.push(tokio::spawn(async move { req.send().await.unwrap().bytes().await.unwrap() }));
    }
    // a client reading slowly falls behind the fill's in-memory window and reads the file
    let req = e.s.req("GET", &format!("/v2/library/big/blobs/{d}"), Some(&t)).await;
    tasks.push(tokio::spawn(async move {
        let mut resp = req.send().await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        bytes::Bytes::from(got)
    }));
    // a ranged read while the fill may still run
    let part =
        e.s.req("GET", &format!("/v2/library/big/blobs/{d}"), Some(&t))
            .await
            .header("range", "bytes=1000-1999")
            .send()
            .await
            .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &layer[1000..2000]);
    for task in tasks {
        assert_eq!(sha256(&task.await.unwrap()), d);
    }
    assert_eq!(e.fp.count("GET", &format!("/blobs/{d}")), 1, "exactly one upstream GET");
    eventually("the filled blob is cached", || blob_file(&e.s, &d).exists()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_fail_cleanly_and_cache_nothing() {
    let e = setup(&[]).await;
    let t = e.s.token(Some(("alice", &pw("alice"))), &["repository:library/faulty:pull"]).await;
    for (i, fault) in [Fault::Truncate, Fault::WrongBytes, Fault::Reset, Fault::SlowDrip].into_iter().enumerate() {
        let layer = random_bytes(if fault == Fault::SlowDrip { 4096 } else { 1 << 20 }, i as u32 + 1);
        let tag = format!("f{i}");
        let d = upstream_image(&e.hub, "library/faulty", &tag, &layer).await;
        assert_eq!(
            e.s.req("GET", &format!("/v2/library/faulty/manifests/{tag}"), Some(&t))
                .await
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        e.fp.set(fault);
        let r = e.s.req("GET", &format!("/v2/library/faulty/blobs/{d}"), Some(&t)).await.send().await.unwrap();
        let failed = if r.status() != 200 {
            true
        } else {
            match r.bytes().await {
                Err(_) => true,
                Ok(b) => sha256(&b) != d,
            }
        };
        assert!(failed, "{fault:?}: the client's transfer must fail");
        e.fp.set(Fault::None);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!blob_file(&e.s, &d).exists(), "{fault:?}: nothing cached");
        let again = e.s.req("GET", &format!("/v2/library/faulty/blobs/{d}"), Some(&t)).await.send().await.unwrap();
        assert_eq!(sha256(&again.bytes().await.unwrap()), d, "{fault:?}: a later pull works");
    }
    // 5xx after retries: 503 UNAVAILABLE; 429 passed on with Retry-After
    let layer = random_bytes(1000, 99);
    let d = upstream_image(&e.hub, "library/faulty", "s", &layer).await;
    assert_eq!(e.s.req("GET", "/v2/library/faulty/manifests/s", Some(&t)).await.send().await.unwrap().status(), 200);
    e.fp.set(Fault::Status(500));
    let r = e.s.req("GET", &format!("/v2/library/faulty/blobs/{d}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    e.fp.set(Fault::Status(429));
    let r = e.s.req("GET", &format!("/v2/library/faulty/blobs/{d}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    e.fp.set(Fault::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_images_are_served_while_the_upstream_is_down() {
    let e = setup(&[("PORTCULLIS_PROXY__TAG_TTL_SECS", "0")]).await;
    let gw = e.s.addr();
    let a = format!("alice:{}", pw("alice"));
    let (ok, out) = crate::support::skopeo_pull(&gw, &a, "library/tiny:1", &e.work.path().join("one"));
    assert!(ok, "{out}");
    e.fp.set(Fault::Status(503));
    let t = e.s.token(Some(("alice", &pw("alice"))), &["repository:library/tiny:pull"]).await;
    let r = e.s.req("GET", "/v2/library/tiny/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["warning"].to_str().unwrap().starts_with("110"), "stale responses are marked");
    let (ok, out) = crate::support::skopeo_pull(&gw, &a, "library/tiny:1", &e.work.path().join("two"));
    assert!(ok, "pull while the upstream is down: {out}");
    // an image never cached cannot be served
    let (ok, out) = skopeo(&["inspect", "--tls-verify=false", "--creds", &a, &format!("docker://{gw}/someone/app:1")]);
    assert!(!ok && out.to_lowercase().contains("unavailable"), "{out}");
    e.fp.set(Fault::None);
    // with the upstream back, a changed tag is picked up on revalidation
    e.hub.push(&e.layout.dir, "multi", "library/tiny:1");
    let r = e.s.req("GET", "/v2/library/tiny/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], e.layout.multi.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_budget_evicts_least_recently_used_and_gc_cleans() {
    let e = setup(&[("PORTCULLIS_PROXY__CACHE_MAX_BYTES", "12000000")]).await;
    let t =
        e.s.token(Some(("alice", &pw("alice"))), &["repository:library/b1:pull", "repository:library/b2:pull"]).await;
    let d1 = upstream_image(&e.hub, "library/b1", "1", &random_bytes(8 << 20, 11)).await;
    let d2 = upstream_image(&e.hub, "library/b2", "1", &random_bytes(8 << 20, 12)).await;
    for (repo, d) in [("b1", &d1), ("b2", &d2)] {
        assert_eq!(
            e.s.req("GET", &format!("/v2/library/{repo}/manifests/1"), Some(&t)).await.send().await.unwrap().status(),
            200
        );
        let b = e.s.get_bytes(&format!("/v2/library/{repo}/blobs/{d}"), &t).await;
        assert_eq!(&sha256(&b), d);
        eventually("the filled blob is cached", || blob_file(&e.s, d).exists()).await;
    }
    eventually("the least recently used blob is evicted", || !blob_file(&e.s, &d1).exists()).await;
    assert!(blob_file(&e.s, &d2).exists());
    let b = e.s.get_bytes(&format!("/v2/library/b1/blobs/{d1}"), &t).await;
    assert_eq!(sha256(&b), d1, "evicted blobs are fetched again");
    assert_eq!(e.fp.count("GET", &format!("/blobs/{d1}")), 2);
    let m = reqwest::get(e.s.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(!m.contains("portcullis_proxy_evictions_total 0\n"), "{m}");
    // offline gc brings the cache within a smaller budget
    let dir = e.s.kill();
    let (ok, out) = run(crate::support::portcullis(dir.path()).args(["gc", "--max-bytes", "1"]));
    assert!(ok && out.contains("evicted"), "{out}");
    assert!(!dir.path().join("blobs/sha256").join(&d1[7..9]).join(&d1[7..]).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_and_podman_pull_through_mirror_configurations() {
    let e = setup(&[]).await;
    let gw = e.s.addr();
    let a = format!("alice:{}", pw("alice"));
    // containerd: hosts.toml with the gateway as server (no fallback); the gateway gets ?ns=
    let hosts = e.work.path().join("certs.d");
    for (reg, prefix) in [("docker.io", ""), ("ghcr.io", "")] {
        std::fs::create_dir_all(hosts.join(reg)).unwrap();
        let toml = format!(
            "server = \"http://{gw}{prefix}\"\n\n[host.\"http://{gw}{prefix}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(hosts.join(reg).join("hosts.toml"), toml).unwrap();
    }
    let sock = std::env::var("CONTAINERD_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/containerd/containerd.sock".into());
    let ns = format!("pcl-proxy-{}", e.s.port);
    let ctr = |args: &[&str]| run(Command::new("ctr").args(["--address", &sock, "--namespace", &ns]).args(args));
    for image in ["docker.io/library/tiny:1", "ghcr.io/owner/tool:1", "docker.io/library/multi:1"] {
        let (ok, out) = ctr(&["images", "pull", "--hosts-dir", hosts.to_str().unwrap(), "--user", &a, image]);
        assert!(ok, "ctr pull {image}: {out}");
        let _ = ctr(&["images", "rm", image]);
    }
    // ghcr.io's image was found although the path alone (`owner/tool`) means Docker Hub: the
    // gateway followed containerd's `?ns=ghcr.io`, and never asked Docker Hub for it.
    assert_eq!(e.fp.count("GET", "owner/tool") + e.fp.count("HEAD", "owner/tool"), 0);
    assert!(e.fp.count("GET", "library/tiny") > 0);
    // the same through the files `portcullis client-config` writes
    let generated = e.work.path().join("generated");
    let (ok, out) = run(crate::support::portcullis(e.work.path())
        .args([
            "client-config",
            "--gateway",
            &format!("http://{gw}"),
            "--org",
            "acme",
            "--registry",
            "ghcr.io",
            "--out",
        ])
        .arg(&generated));
    assert!(ok, "{out}");
    let registry_json: Value =
        serde_json::from_str(&std::fs::read_to_string(generated.join("docker-desktop/registry.json")).unwrap())
            .unwrap();
    assert_eq!(registry_json, json!({"allowedOrgs": ["acme"]}));
    let daemon: Value =
        serde_json::from_str(&std::fs::read_to_string(generated.join("docker/daemon.json")).unwrap()).unwrap();
    assert_eq!(daemon["registry-mirrors"][0], format!("http://{gw}"));
    // the README says where each file goes and which credentials each client needs
    let readme = std::fs::read_to_string(generated.join("README.md")).unwrap();
    for needed in [
        "/etc/containerd/certs.d/",
        "config_path",
        "/etc/containers/registries.conf.d/50-portcullis.conf",
        &format!("podman login {gw}"),
        "/etc/rancher/k3s/registries.yaml",
        "`configs:` `auth:`",
        "proxy.allow_anonymous = true",
        "/etc/docker/daemon.json",
        "C:\\ProgramData\\DockerDesktop\\registry.json",
    ] {
        assert!(readme.contains(needed), "README lacks {needed}: {readme}");
    }
    let k3s = std::fs::read_to_string(generated.join("k3s/registries.yaml")).unwrap();
    assert!(k3s.contains(&format!("configs:\n  \"{gw}\":")) && k3s.contains("auth:\n      username:"), "{k3s}");
    let gen_hosts = generated.join("containerd/certs.d");
    for image in ["docker.io/library/tiny:1", "ghcr.io/owner/tool:1"] {
        let (ok, out) = ctr(&["images", "pull", "--hosts-dir", gen_hosts.to_str().unwrap(), "--user", &a, image]);
        assert!(ok, "ctr pull {image} with generated hosts.toml: {out}");
        let _ = ctr(&["images", "rm", image]);
    }
    let gen_auth = e.work.path().join("gen-auth.json");
    {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(&a);
        std::fs::write(&gen_auth, json!({"auths": {gw.clone(): {"auth": auth}}}).to_string()).unwrap();
    }
    for image in ["docker.io/library/tiny:1", "ghcr.io/owner/tool:1"] {
        let (ok, out) = run(crate::support::podman(&e.work.path().join("pg"))
            .env("CONTAINERS_REGISTRIES_CONF", generated.join("podman/registries.conf"))
            .args(["pull", "-q", "--authfile", gen_auth.to_str().unwrap(), image]));
        assert!(ok, "podman pull {image} with generated registries.conf: {out}");
    }
    // podman: registries.conf mirrors (a path prefix names other registries). The primary
    // locations point at a refused loopback port, so a fallback could never leave the machine.
    let conf = e.work.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"127.0.0.1:1\"\n[[registry.mirror]]\nlocation = \"{gw}\"\ninsecure = true\n\n\
             [[registry]]\nprefix = \"ghcr.io\"\nlocation = \"127.0.0.1:1\"\n[[registry.mirror]]\nlocation = \"{gw}/ghcr.io\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(&a);
    let authfile = e.work.path().join("auth.json");
    std::fs::write(&authfile, json!({"auths": {gw.clone(): {"auth": auth}}}).to_string()).unwrap();
    for image in ["docker.io/library/tiny:1", "ghcr.io/owner/tool:1"] {
        let (ok, out) = run(crate::support::podman(&e.work.path().join("p"))
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .args(["pull", "-q", "--authfile", authfile.to_str().unwrap(), image]));
        assert!(ok, "podman pull {image}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pulls_through_the_gateway() {
    let e = setup(&[]).await;
    let gw = e.s.addr();
    let sock = std::env::var("DOCKER_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/docker/docker.sock".into());
    let cfg = e.work.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{}", pw("alice")));
    std::fs::write(cfg.join("config.json"), json!({"auths": {gw.clone(): {"auth": auth}}}).to_string()).unwrap();
    let docker = |args: &[&str]| {
        run(Command::new("docker").env("DOCKER_CONFIG", &cfg).args(["-H", &format!("unix://{sock}")]).args(args))
    };
    for image in [format!("{gw}/library/tiny:1"), format!("{gw}/ghcr.io/owner/tool:1")] {
        let (ok, out) = docker(&["pull", "-q", &image]);
        assert!(ok, "docker pull {image}: {out}");
        let _ = docker(&["rmi", "-f", &image]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_manifests_missing_images_and_abandoned_fills() {
    let e = setup(&[]).await;
    let t =
        e.s.token(
            Some(("alice", &pw("alice"))),
            &["repository:library/tiny:pull", "repository:library/big:pull", "repository:library/nope:pull"],
        )
        .await;
    // a manifest whose bytes do not match the upstream's digest is refused and not cached
    e.fp.set(Fault::LyingManifest);
    let r = e.s.req("GET", "/v2/library/tiny/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("digest"));
    e.fp.set(Fault::None);
    let r = e.s.req("GET", "/v2/library/tiny/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], e.layout.tiny.as_str());
    // upstream 404: the spec's MANIFEST_UNKNOWN
    let r = e.s.req("GET", "/v2/library/nope/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    // the first client goes away after one chunk: the fill completes and the blob is cached
    let layer = random_bytes(32 << 20, 5);
    let d = upstream_image(&e.hub, "library/big", "2", &layer).await;
    assert_eq!(e.s.req("GET", "/v2/library/big/manifests/2", Some(&t)).await.send().await.unwrap().status(), 200);
    let mut r = e.s.req("GET", &format!("/v2/library/big/blobs/{d}"), Some(&t)).await.send().await.unwrap();
    let _ = r.chunk().await.unwrap();
    drop(r);
    eventually("the abandoned fill completes", || blob_file(&e.s, &d).exists()).await;
    let b = e.s.get_bytes(&format!("/v2/library/big/blobs/{d}"), &t).await;
    assert_eq!(sha256(&b), d);
    assert_eq!(e.fp.count("GET", &format!("/blobs/{d}")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_lists_and_referrers_through_the_cache() {
    // Another portcullis stands in for an upstream with the referrers API (as quay.io, reached
    // with credentials); distribution 2.8 (docker.io here) has none.
    let vendor =
        Server::launch(tempfile::tempdir().unwrap(), &[("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW)], None, "http").await;
    vendor.create_user("carol").await;
    vendor.create_org("vendor", "carol").await;
    let cp = pw("carol");
    let vt = vendor.token(Some(("carol", &cp)), &["repository:vendor/tool:pull,push"]).await;
    let mut subject = (String::new(), 0);
    for tag in ["1", "2", "3"] {
        let (d, _, m) =
            crate::v2::push_image(&vendor, &vt, "vendor/tool", tag, format!("layer {tag}").as_bytes()).await;
        if tag == "1" {
            subject = (d, m.len());
        }
    }
    let cfg = crate::v2::push_blob(&vendor, &vt, "vendor/tool", b"{}").await;
    let sig = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2}, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1}})
    .to_string();
    let sd = sha256(sig.as_bytes());
    let r = vendor
        .req("PUT", &format!("/v2/vendor/tool/manifests/{sd}"), Some(&vt))
        .await
        .header("content-type", OCI_MANIFEST)
        .body(sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let quay =
        format!("{{registry=\"quay.io\",url=\"http://{}\",username=\"carol\",password=\"{cp}\"}}", vendor.addr());
    let e = setup_with_upstream(Some(&quay), &[]).await;
    let ap = pw("alice");

    // a real client lists tags through the gateway, of both upstreams
    let creds = format!("alice:{ap}");
    for (image, tags) in [("quay.io/vendor/tool", json!(["1", "2", "3"])), ("library/tiny", json!(["1"]))] {
        let (ok, out) = skopeo(&[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{}/{image}", e.s.addr()),
        ]);
        assert!(ok, "{out}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["Tags"], tags, "{image}");
    }
    // pages carry on through Link
    let t = e.s.token(Some(("alice", &ap)), &["repository:quay.io/vendor/tool:pull"]).await;
    let r = e.s.req("GET", "/v2/quay.io/vendor/tool/tags/list?n=2", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.headers()["link"], "</v2/quay.io/vendor/tool/tags/list?n=2&last=2>; rel=\"next\"");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"name": "quay.io/vendor/tool", "tags": ["1", "2"]}));
    let r = e.s.req("GET", "/v2/quay.io/vendor/tool/tags/list?n=2&last=2", Some(&t)).await.send().await.unwrap();
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["3"]));

    // an upstream that ignores n and last (it answers every tag): paged here all the same
    for tag in ["library/tiny:2", "library/tiny:3"] {
        e.hub.push(&e.layout.dir, "tiny", tag);
    }
    e.fp.set(crate::upstreams::Fault::IgnoresPaging);
    let tt = e.s.token(Some(("alice", &ap)), &["repository:library/tiny:pull"]).await;
    let r = e.s.req("GET", "/v2/library/tiny/tags/list?n=2", Some(&tt)).await.send().await.unwrap();
    assert_eq!(r.headers()["link"], "</v2/library/tiny/tags/list?n=2&last=2>; rel=\"next\"");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["1", "2"]));
    let r = e.s.req("GET", "/v2/library/tiny/tags/list?n=2&last=2", Some(&tt)).await.send().await.unwrap();
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["3"]));
    let r = e.s.req("GET", "/v2/library/tiny/tags/list?last=1", Some(&tt)).await.send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["2", "3"]));
    assert!(e.fp.count("GET", "/v2/library/tiny/tags/list?n=2&last=2") >= 1, "the gateway asked with n and last");
    e.fp.set(crate::upstreams::Fault::None);

    // referrers come from the upstream, filtered by artifact type
    let path = format!("/v2/quay.io/vendor/tool/referrers/{}", subject.0);
    let v: Value = e.s.req("GET", &path, Some(&t)).await.send().await.unwrap().json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (v["manifests"][0]["digest"].as_str(), v["manifests"][0]["artifactType"].as_str()),
        (Some(sd.as_str()), Some("application/vnd.example.sig"))
    );
    let r = e.s.req("GET", &format!("{path}?artifactType=application/other"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));
    // an upstream without the referrers API: 404, so clients use the tag schema
    let th = e.s.token(Some(("alice", &ap)), &["repository:library/tiny:pull"]).await;
    let m = e.s.req("GET", "/v2/library/tiny/manifests/1", Some(&th)).await.send().await.unwrap();
    let d = m.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    let r = e.s.req("GET", &format!("/v2/library/tiny/referrers/{d}"), Some(&th)).await.send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.contains("MANIFEST_UNKNOWN") && body.contains("has no referrers API"), "{body}");
    // a repository the upstream does not have
    let tn = e.s.token(Some(("alice", &ap)), &["repository:library/nope:pull"]).await;
    let r = e.s.req("GET", "/v2/library/nope/tags/list", Some(&tn)).await.send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("NAME_UNKNOWN"));

    // with the upstream gone, what went through the cache is served, marked stale
    for reference in ["1", sd.as_str()] {
        let r =
            e.s.req("GET", &format!("/v2/quay.io/vendor/tool/manifests/{reference}"), Some(&t))
                .await
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(vendor);
    let r = e.s.req("GET", "/v2/quay.io/vendor/tool/tags/list", Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["warning"].to_str().unwrap().starts_with("110"));
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["1"]));
    let r = e.s.req("GET", &path, Some(&t)).await.send().await.unwrap();
    assert!(r.headers().contains_key("warning"));
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"][0]["digest"], sd.as_str());
}

/// A node killed mid-fill and started again on its data directory drops the fill lease its
/// dead process held instead of waiting it out, and fills the blob at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_drops_the_fill_leases_of_its_dead_process() {
    let Env { s, hub, fp, work, .. } = setup(&[]).await;
    let layer = random_bytes(4 << 20, 11);
    let digest = upstream_image(&hub, "someone/big", "1", &layer).await;
    let ap = pw("alice");
    let t = s.token(Some(("alice", &ap)), &["repository:someone/big:pull"]).await;
    let m = s.req("GET", "/v2/someone/big/manifests/1", Some(&t)).await.send().await.unwrap();
    assert_eq!(m.status(), 200);
    fp.set(Fault::Stall);
    let pending = tokio::spawn(s.req("GET", &format!("/v2/someone/big/blobs/{digest}"), Some(&t)).await.send());
    eventually("the fill has begun", || fp.count("GET", &digest) >= 1).await;
    let dir = s.kill();
    pending.abort();
    fp.set(Fault::None);
    let ups = format!("[{{registry=\"docker.io\",url=\"http://{}\"}}]", fp.addr());
    let log = work.path().join("restarted.log");
    let env = [("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW), ("PORTCULLIS_UPSTREAMS", ups.as_str())];
    let s = Server::launch(dir, &env, Some(&log), "http").await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("dropped the fill leases of this node's previous process") && text.contains("leases=1"),
        "{text}"
    );
    let t = s.token(Some(("alice", &ap)), &["repository:someone/big:pull"]).await;
    assert_eq!(s.get_bytes(&format!("/v2/someone/big/blobs/{digest}"), &t).await, layer);
}

/// The OCI conformance suite's read-only profile (distribution-spec's `conformance/run.go` with
/// push off and `OCI_RO_DATA_*` naming preloaded tags, manifests and blobs), transcribed check by
/// check — its program needs Go 1.24 and Debian has 1.19 — against a repository of the
/// pull-through cache whose upstream ignores `n` and `last` (where the suite failed): ping, the
/// tag list and its `last` (and `n`) parameters, HEAD and GET of every tag, manifest and blob
/// with their digests, and missing manifests by digest and by tag. (Its referrers checks are off
/// here, as `OCI_API_REFERRER=false`: the stand-in upstream, distribution 2.8, has no referrers
/// API; referrers through the cache are tested above with an upstream that has.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_read_only_profile_passes_through_the_cache() {
    const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                          application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let e = setup(&[]).await;
    for tag in ["library/tiny:2", "library/tiny:3"] {
        e.hub.push(&e.layout.dir, "tiny", tag);
    }
    e.fp.set(Fault::IgnoresPaging);
    let t = e.s.token(Some(("alice", &pw("alice"))), &["repository:library/tiny:pull"]).await;
    let (s, t) = (&e.s, t.as_str());
    let send = move |method: &'static str, path: String| async move {
        s.req(method, &path, Some(t)).await.header("accept", ACCEPT).send().await.unwrap()
    };
    // ping
    assert_eq!(send("GET", "/v2/".into()).await.status(), 200);
    // the tag list, then with `last` set to the middle tag (and `n`)
    let r = send("GET", "/v2/library/tiny/tags/list".into()).await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["name"], "library/tiny");
    let mut tags: Vec<String> = serde_json::from_value(list["tags"].clone()).unwrap();
    for want in ["1", "2", "3"] {
        assert!(tags.iter().any(|t| t == want), "missing tag {want} from {tags:?}");
    }
    tags.sort();
    let end = tags.len() / 2;
    let r = send("GET", format!("/v2/library/tiny/tags/list?last={}", tags[end - 1])).await;
    assert_eq!(r.status(), 200);
    let partial: Vec<String> = serde_json::from_value(r.json::<Value>().await.unwrap()["tags"].clone()).unwrap();
    for t in &tags[..end] {
        assert!(!partial.contains(t), "tag {t} returned when last set to {}", tags[end - 1]);
    }
    for t in &tags[end..] {
        assert!(partial.contains(t), "tag {t} missing when last set to {}", tags[end - 1]);
    }
    let r = send("GET", "/v2/library/tiny/tags/list?n=1".into()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([tags[0]]));
    // every tag, manifest and blob: HEAD, then GET with the content matching its digest
    let mut manifests = std::collections::BTreeSet::new();
    let mut blobs = std::collections::BTreeSet::new();
    for tag in ["1", "2", "3"] {
        let head = send("HEAD", format!("/v2/library/tiny/manifests/{tag}")).await;
        assert_eq!(head.status(), 200, "HEAD of tag {tag}");
        let digest = head.headers()["docker-content-digest"].to_str().unwrap().to_owned();
        let r = send("GET", format!("/v2/library/tiny/manifests/{tag}")).await;
        assert_eq!(r.status(), 200, "GET of tag {tag}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        let body = r.bytes().await.unwrap();
        assert_eq!(sha256(&body), digest, "tag {tag}'s content");
        let m: Value = serde_json::from_slice(&body).unwrap();
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            blobs.insert((d["digest"].as_str().unwrap().to_owned(), d["size"].as_u64().unwrap()));
        }
        manifests.insert(digest);
    }
    for d in &manifests {
        assert_eq!(send("HEAD", format!("/v2/library/tiny/manifests/{d}")).await.status(), 200, "HEAD {d}");
        let r = send("GET", format!("/v2/library/tiny/manifests/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(&sha256(&r.bytes().await.unwrap()), d);
    }
    for (d, size) in &blobs {
        let head = send("HEAD", format!("/v2/library/tiny/blobs/{d}")).await;
        assert_eq!(head.status(), 200, "HEAD {d}");
        assert_eq!(head.headers()["content-length"], size.to_string().as_str());
        let r = send("GET", format!("/v2/library/tiny/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(&sha256(&r.bytes().await.unwrap()), d);
    }
    // missing manifests, by digest and by tag
    for reference in [sha256(b"no such manifest"), "no-such-tag".to_owned()] {
        let r = send("GET", format!("/v2/library/tiny/manifests/{reference}")).await;
        assert_eq!(r.status(), 404, "{reference}");
        assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "MANIFEST_UNKNOWN", "{reference}");
    }
}
