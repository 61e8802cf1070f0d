//! Real clients against the running binary: skopeo, containerd `ctr` (whose `--user` uses the
//! OAuth2 POST /token grant), podman and buildah. containerd must be running (`.ci/run`
//! starts a private one through the peer kit); its socket comes from `CONTAINERD_SOCK`.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::images;
use crate::support::{Server, pw, run, sha256, skopeo_inspect_raw, skopeo_push};

/// A server with alice owning acme, bob in team `dev` with read on acme/tiny and acme/multi
/// and write on acme/pushed.
async fn setup() -> Server {
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_user("bob").await;
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let a = ("alice", ap.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", a, Some(json!({"name": "dev"}))).await.0, 201);
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams/dev/members", a, Some(json!({"username": "bob"}))).await.0, 201);
    for (repo, perm) in [("tiny", "read"), ("multi", "read"), ("pushed", "write")] {
        let path = format!("/api/v1/orgs/acme/teams/dev/permissions/{repo}");
        assert_eq!(s.api("PUT", &path, a, Some(json!({"permission": perm}))).await.0, 200);
    }
    s
}

fn skopeo(args: &[&str]) -> (bool, String) {
    run(Command::new("skopeo").args(args))
}

fn creds(u: &str) -> String {
    format!("{u}:{}", pw(u))
}

/// Pushes tiny (OCI and v2s2) and multi as alice.
fn push_fixtures(s: &Server, layout: &images::Layout) {
    let l = layout.dir.display().to_string();
    let a = creds("alice");
    let reg = s.addr();
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &a,
        &format!("oci:{l}:tiny"),
        &format!("docker://{reg}/acme/tiny:1"),
    ]);
    assert!(ok, "skopeo push: {out}");
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        "--dest-creds",
        &a,
        &format!("oci:{l}:tiny"),
        &format!("docker://{reg}/acme/tiny:v2s2"),
    ]);
    assert!(ok, "skopeo push v2s2: {out}");
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        &a,
        &format!("oci:{l}:multi"),
        &format!("docker://{reg}/acme/multi:1"),
    ]);
    assert!(ok, "skopeo push index: {out}");
}

/// Hosted manifests are kept in memory (SQLite): a moved tag, a deleted manifest and a deleted
/// then recreated repository (whose id SQLite may give again) are pulled as they are now.
#[tokio::test]
async fn pulls_see_moved_tags_deletions_and_recreated_repositories_at_once() {
    let s = setup().await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    let [one, two, three] =
        [("one", "first\n"), ("two", "second\n"), ("three", "third\n")].map(|(n, t)| images::add_image(&layout, n, t));
    let (reg, a) = (s.addr(), creds("alice"));
    let push = |image: &str| {
        let (ok, out) = skopeo_push(&layout.dir, image, &reg, &a, "acme/pushed:1");
        assert!(ok, "skopeo push {image}: {out}");
    };
    let served = |reference: &str| {
        let (ok, out) = skopeo_inspect_raw(&reg, &a, &format!("acme/pushed{reference}"));
        ok.then(|| sha256(out.as_bytes()))
    };
    push("one");
    assert_eq!(served(":1").as_ref(), Some(&one));
    assert_eq!(served(":1").as_ref(), Some(&one), "again, from memory");
    push("two");
    assert_eq!(served(":1").as_ref(), Some(&two), "the tag moved");
    assert_eq!(served(&format!("@{one}")).as_ref(), Some(&one));
    let (ok, out) =
        skopeo(&["delete", "--tls-verify=false", "--creds", &a, &format!("docker://{reg}/acme/pushed@{one}")]);
    assert!(ok, "skopeo delete: {out}");
    assert_eq!(served(&format!("@{one}")), None, "a deleted manifest");
    assert_eq!(served(":1").as_ref(), Some(&two));
    assert_eq!(served(&format!("@{two}")).as_ref(), Some(&two));
    let ap = pw("alice");
    assert_eq!(s.api("DELETE", "/api/v1/repositories/acme/pushed", ("alice", &ap), None).await.0, 204);
    assert_eq!(served(":1"), None, "a deleted repository");
    // A blob pushed makes the repository again (with the same id: it was the only one).
    let t = s.token(Some(("alice", &ap)), &["repository:acme/pushed:push,pull"]).await;
    crate::v2::push_blob(&s, &t, "acme/pushed", b"a blob").await;
    assert_eq!(served(&format!("@{two}")), None, "nothing of the deleted repository");
    push("three");
    assert_eq!(served(":1").as_ref(), Some(&three), "the repository made again");
}

#[tokio::test]
async fn skopeo_push_pull_and_denials() {
    let s = setup().await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    push_fixtures(&s, &layout);
    let reg = s.addr();
    let b = creds("bob");
    // a Docker manifest list (schema 2) pushed by converting the OCI index
    let a = creds("alice");
    let l = layout.dir.display().to_string();
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        "--dest-creds",
        &a,
        &format!("oci:{l}:multi"),
        &format!("docker://{reg}/acme/multi:v2s2"),
    ]);
    assert!(ok, "skopeo push manifest list: {out}");
    let (ok, out) =
        skopeo(&["inspect", "--raw", "--tls-verify=false", "--creds", &b, &format!("docker://{reg}/acme/multi:v2s2")]);
    assert!(ok && out.contains("application/vnd.docker.distribution.manifest.list.v2+json"), "{out}");
    let arm = work.path().join("arm").display().to_string();
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--override-arch",
        "arm64",
        "--src-tls-verify=false",
        "--src-creds",
        &b,
        &format!("docker://{reg}/acme/multi:v2s2"),
        &format!("dir:{arm}"),
    ]);
    assert!(ok, "{out}");
    // inspect the index, list tags, copy by tag and by digest as bob (read)
    let (ok, out) =
        skopeo(&["inspect", "--raw", "--tls-verify=false", "--creds", &b, &format!("docker://{reg}/acme/multi:1")]);
    assert!(ok && out.contains("arm64") && out.contains("amd64"), "{out}");
    let (ok, out) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &b,
        &format!("docker://{reg}/acme/multi@{}", layout.multi),
    ]);
    assert!(ok && out.contains("application/vnd.oci.image.index.v1+json"), "{out}");
    let (ok, out) = skopeo(&["list-tags", "--tls-verify=false", "--creds", &b, &format!("docker://{reg}/acme/tiny")]);
    assert!(ok && out.contains("\"1\"") && out.contains("v2s2"), "{out}");
    let dst = work.path().join("pulled");
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--src-creds",
        &b,
        &format!("docker://{reg}/acme/tiny@{}", layout.tiny),
        &format!("dir:{}", dst.display()),
    ]);
    assert!(ok, "{out}");
    let layer_file = dst.join(&layout.tiny_layer[7..]);
    assert_eq!(
        std::fs::read(&layer_file).unwrap(),
        std::fs::read(layout.dir.join("blobs/sha256").join(&layout.tiny_layer[7..])).unwrap()
    );
    let (ok, out) =
        skopeo(&["inspect", "--tls-verify=false", "--creds", &b, &format!("docker://{reg}/acme/tiny:v2s2")]);
    assert!(ok && out.contains("amd64"), "{out}");
    // bob may not push to a read-only repository: skopeo prints the registry's denial
    let (ok, out) = skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &b,
        &format!("oci:{}:tiny", layout.dir.display()),
        &format!("docker://{reg}/acme/tiny:bob"),
    ]);
    assert!(!ok && out.contains("denied"), "{out}");
    // anonymous may not read a private repository
    let (ok, out) = skopeo(&["inspect", "--tls-verify=false", "--no-creds", &format!("docker://{reg}/acme/tiny:1")]);
    assert!(!ok && (out.contains("authentication required") || out.contains("unauthorized")), "{out}");
    // wrong password
    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "bob:wrong-password",
        &format!("docker://{reg}/acme/tiny:1"),
    ]);
    assert!(!ok && out.contains("invalid username/password"), "{out}");
}

fn containerd_sock() -> String {
    std::env::var("CONTAINERD_SOCK").unwrap_or_else(|_| "/tmp/portcullis-peer/run/containerd/containerd.sock".into())
}

#[tokio::test]
async fn ctr_pulls_with_user_and_pushes() {
    let s = setup().await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    push_fixtures(&s, &layout);
    let reg = s.addr();
    let sock = containerd_sock();
    assert!(Path::new(&sock).exists(), "containerd is not running at {sock}; .ci/run starts it with the peer kit");
    let ns = format!("pcl-{}", s.port);
    let ctr = |args: &[&str]| run(Command::new("ctr").args(["--address", &sock, "--namespace", &ns]).args(args));
    let b = creds("bob");
    let (ok, out) = ctr(&["images", "pull", "--plain-http", "--user", &b, &format!("{reg}/acme/tiny:1")]);
    assert!(ok, "ctr pull: {out}");
    let (ok, out) =
        ctr(&["images", "pull", "--plain-http", "--all-platforms", "--user", &b, &format!("{reg}/acme/multi:1")]);
    assert!(ok, "ctr pull index: {out}");
    let (ok, out) = ctr(&["content", "fetch", "--plain-http", "--user", &b, &format!("{reg}/acme/tiny:v2s2")]);
    assert!(ok, "ctr fetch: {out}");
    let (ok, out) =
        ctr(&["images", "tag", "--force", &format!("{reg}/acme/tiny:1"), &format!("{reg}/acme/pushed:ctr")]);
    assert!(ok, "{out}");
    let (ok, out) = ctr(&["images", "push", "--plain-http", "--user", &b, &format!("{reg}/acme/pushed:ctr")]);
    assert!(ok, "ctr push: {out}");
    // a wrong password fails at the token endpoint
    let (ok, out) =
        ctr(&["images", "pull", "--plain-http", "--user", "bob:wrong-password", &format!("{reg}/acme/tiny:1")]);
    assert!(!ok && out.contains("401"), "{out}");
    for img in ["acme/tiny:1", "acme/multi:1", "acme/pushed:ctr"] {
        let _ = ctr(&["images", "rm", &format!("{reg}/{img}")]);
    }
}

#[tokio::test]
async fn podman_and_buildah_pull_and_push() {
    let s = setup().await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    push_fixtures(&s, &layout);
    let reg = s.addr();
    let st = work.path().display().to_string();
    let pdir = work.path().join("p");
    let podman = |args: &[&str]| run(crate::support::podman(&pdir).args(args));
    let b = creds("bob");
    let (ok, out) = podman(&["pull", "-q", "--tls-verify=false", "--creds", &b, &format!("{reg}/acme/tiny:1")]);
    assert!(ok, "podman pull: {out}");
    let (ok, out) =
        podman(&["pull", "-q", "--tls-verify=false", "--arch", "arm64", "--creds", &b, &format!("{reg}/acme/multi:1")]);
    assert!(ok, "podman pull arm64: {out}");
    let (ok, out) = podman(&["tag", &format!("{reg}/acme/tiny:1"), &format!("{reg}/acme/pushed:podman")]);
    assert!(ok, "{out}");
    let (ok, out) = podman(&["push", "-q", "--tls-verify=false", "--creds", &b, &format!("{reg}/acme/pushed:podman")]);
    assert!(ok, "podman push: {out}");
    let (ok, out) = podman(&[
        "push",
        "-q",
        "--tls-verify=false",
        "--creds",
        &b,
        &format!("{reg}/acme/pushed:podman"),
        &format!("{reg}/acme/tiny:podman"),
    ]);
    assert!(!ok && out.contains("denied"), "podman push to a read-only repository: {out}");

    let buildah = |args: &[&str]| {
        run(Command::new("buildah")
            .args([
                "--root",
                &format!("{st}/b/root"),
                "--runroot",
                &format!("{st}/b/runroot"),
                "--storage-driver",
                "vfs",
            ])
            .env("TMPDIR", &st)
            .args(args))
    };
    let (ok, out) = buildah(&["pull", "-q", "--tls-verify=false", "--creds", &b, &format!("{reg}/acme/pushed:podman")]);
    assert!(ok, "buildah pull: {out}");
    let (ok, out) = buildah(&["tag", &format!("{reg}/acme/pushed:podman"), &format!("{reg}/acme/pushed:buildah")]);
    assert!(ok, "{out}");
    let (ok, out) =
        buildah(&["push", "-q", "--tls-verify=false", "--creds", &b, &format!("{reg}/acme/pushed:buildah")]);
    assert!(ok, "buildah push: {out}");
    let (ok, out) = skopeo(&["list-tags", "--tls-verify=false", "--creds", &b, &format!("docker://{reg}/acme/pushed")]);
    assert!(ok && out.contains("podman") && out.contains("buildah"), "{out}");
}

#[tokio::test]
async fn docker_login_pull_push() {
    let s = setup().await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    push_fixtures(&s, &layout);
    let reg = s.addr();
    let sock = std::env::var("DOCKER_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/docker/docker.sock".into());
    assert!(Path::new(&sock).exists(), "dockerd is not running at {sock}; scripts/daemons.sh starts it");
    let cfg = work.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let docker = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", &cfg).args(["-H", &format!("unix://{sock}")]).args(args);
        match stdin {
            None => run(&mut c),
            Some(input) => {
                use std::io::Write;
                let mut child = c
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                let out = child.wait_with_output().unwrap();
                (
                    out.status.success(),
                    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
                )
            }
        }
    };
    let (ok, out) = docker(&["login", "-u", "bob", "--password-stdin", &reg], Some("wrong-password\n"));
    assert!(!ok, "{out}");
    let (ok, out) = docker(&["login", "-u", "bob", "--password-stdin", &reg], Some(&format!("{}\n", pw("bob"))));
    assert!(ok && out.contains("Login Succeeded"), "{out}");
    let tiny = format!("{reg}/acme/tiny:1");
    let (ok, out) = docker(&["pull", "-q", &tiny], None);
    assert!(ok, "docker pull: {out}");
    let (ok, out) = docker(&["pull", "-q", "--platform", "linux/arm64", &format!("{reg}/acme/multi:1")], None);
    assert!(ok, "docker pull arm64: {out}");
    let pushed = format!("{reg}/acme/pushed:docker");
    assert!(docker(&["tag", &tiny, &pushed], None).0);
    let (ok, out) = docker(&["push", "-q", &pushed], None);
    assert!(ok, "docker push: {out}");
    let denied = format!("{reg}/acme/tiny:docker");
    assert!(docker(&["tag", &tiny, &denied], None).0);
    let (ok, out) = docker(&["push", "-q", &denied], None);
    assert!(!ok && out.contains("denied"), "docker push to a read-only repository: {out}");
    for img in [&tiny, &pushed, &denied, &format!("{reg}/acme/multi:1")] {
        let _ = docker(&["rmi", "-f", img], None);
    }
}
