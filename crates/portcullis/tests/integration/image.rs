//! The container image: `scripts/image.sh` builds it offline from the binary under test; it
//! runs as a non-root user with podman and with docker, its HEALTHCHECK passes, and skopeo
//! pushes to it and pulls the same bytes back.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{podman, run, skopeo_pull};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_healthy(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}/healthz");
    while !matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < deadline, "{what}: the container did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The user id of a running process.
fn uid_of(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// Pushes the layout's tiny image as the administrator and pulls it back byte for byte.
fn push_and_pull(port: u16, layout: &Path, work: &Path, name: &str) {
    let reg = format!("127.0.0.1:{port}");
    let creds = "admin:admin-password-1";
    let (ok, out) = crate::support::skopeo_push(layout, "tiny", &reg, creds, &format!("admin/app:{name}"));
    assert!(ok, "{name} push: {out}");
    let dst = work.join(format!("pulled-{name}"));
    let (ok, out) = skopeo_pull(&reg, creds, &format!("admin/app:{name}"), &dst);
    assert!(ok, "{name} pull: {out}");
    let layer = std::fs::read_dir(&dst).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned());
    for f in layer.filter(|f| f.len() == 64) {
        assert_eq!(
            std::fs::read(dst.join(&f)).unwrap(),
            std::fs::read(layout.join("blobs/sha256").join(&f)).unwrap(),
            "{name}: {f}"
        );
    }
}

#[tokio::test]
async fn the_image_runs_as_non_root_with_podman_and_docker() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let tag = format!("localhost/portcullis:test-{}", std::process::id());
    let archive = w.join("image.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/image.sh");
    let buildah = format!("--root {0}/b/root --runroot {0}/b/runroot --storage-driver vfs", w.display());
    let (ok, out) = run(Command::new(script)
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .arg(&archive)
        .env("BUILDAH_ARGS", &buildah)
        .env("IMAGE_TAG", &tag));
    assert!(ok, "image.sh: {out}");
    let (ok, config) =
        run(Command::new("skopeo").args(["inspect", "--config"]).arg(format!("docker-archive:{}", archive.display())));
    assert!(ok, "{config}");
    let config: Value = serde_json::from_str(&config).unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "10001:10001", "{c}");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/portcullis"]));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], version, "{c}");
    assert!(c["Labels"]["org.opencontainers.image.revision"].as_str().is_some_and(|r| r.len() >= 7), "{c}");
    // the workspace names no repository and IMAGE_SOURCE is unset: no source label (never the
    // build machine's checkout path)
    assert!(c["Labels"].get("org.opencontainers.image.source").is_none(), "{c}");
    // no shell in the image: only the binary, its libraries, certificates and the user files
    let (ok, files) = run(Command::new("tar").arg("-tf").arg(&archive));
    assert!(ok);
    let layer = files.lines().find(|l| l.ends_with(".tar")).unwrap().to_owned();
    let (ok, listing) =
        run(Command::new("sh").arg("-c").arg(format!("tar -xOf {} {layer} | tar -t", archive.display())));
    assert!(ok, "{listing}");
    assert!(
        listing.contains("usr/local/bin/portcullis") && listing.contains("etc/ssl/certs/ca-certificates.crt"),
        "{listing}"
    );
    assert!(
        !listing.lines().any(|l| l.ends_with("bin/sh") || l.ends_with("bin/bash")),
        "a shell in the image: {listing}"
    );

    let layout = crate::images::make(&w.join("layout"));
    let env = |port: u16| {
        vec![
            "-e".to_owned(),
            format!("PORTCULLIS_LISTEN=127.0.0.1:{port}"),
            "-e".into(),
            "PORTCULLIS_ADMIN_PASSWORD=admin-password-1".into(),
        ]
    };

    // podman (runc with explicit limits: this sandbox refuses crun's setrlimit)
    let pd = w.join("podman");
    let (ok, out) = run(podman(&pd).args(["load", "-q", "-i"]).arg(&archive));
    assert!(ok, "{out}");
    let port = free_port();
    let name = format!("portcullis-test-{}", std::process::id());
    let (ok, out) = run(podman(&pd)
        .args(["--runtime", "runc", "run", "-d", "--name", &name, "--network", "host"])
        .args(["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"])
        .args(env(port))
        .arg(&tag));
    assert!(ok, "podman run: {out}");
    wait_healthy(port, "podman").await;
    let (ok, out) = run(podman(&pd).args(["--runtime", "runc", "healthcheck", "run", &name]));
    assert!(ok, "the HEALTHCHECK: {out}");
    let (_, pid) = run(podman(&pd).args(["inspect", "--format", "{{.State.Pid}}", &name]));
    assert_eq!(uid_of(&pid), "10001", "podman: runs as non-root");
    push_and_pull(port, &layout.dir, w, "podman");
    let _ = run(podman(&pd).args(["--runtime", "runc", "rm", "-f", &name]));

    // docker (the private dockerd scripts/daemons.sh starts)
    let sock = std::env::var("DOCKER_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/docker/docker.sock".into());
    assert!(Path::new(&sock).exists(), "dockerd is not running at {sock}; scripts/daemons.sh starts it");
    let docker = || {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", w.join("docker-config")).args(["-H", &format!("unix://{sock}")]);
        c
    };
    let (ok, out) = run(docker().args(["load", "-q", "-i"]).arg(&archive));
    assert!(ok, "{out}");
    let port = free_port();
    let (ok, out) = run(docker()
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--health-interval",
            "1s",
            "--health-start-period",
            "1s",
        ])
        .args(env(port))
        .arg(&tag));
    assert!(ok, "docker run: {out}");
    wait_healthy(port, "docker").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = run(docker().args(["inspect", "--format", "{{.State.Health.Status}}", &name]));
        if health.trim() == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "docker's HEALTHCHECK: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, pid) = run(docker().args(["inspect", "--format", "{{.State.Pid}}", &name]));
    assert_eq!(uid_of(&pid), "10001", "docker: runs as non-root");
    push_and_pull(port, &layout.dir, w, "docker");
    let _ = run(docker().args(["rm", "-f", "-v", &name]));
    let _ = run(docker().args(["rmi", &tag]));
}
