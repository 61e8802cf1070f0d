//! Deployment: the systemd unit passes `systemd-analyze verify` and its offline security
//! score stays low, the example configuration loads, and the server tells systemd when it is
//! ready, reloading (log level from the configuration read again) and stopping.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{portcullis, run};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test
    let unit = std::fs::read_to_string(repo("deploy/portcullis.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/portcullis serve"));
    let unit = unit.replace("/usr/local/bin/portcullis", env!("CARGO_BIN_EXE_portcullis"));
    let path = dir.path().join("portcullis.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    let (ok, out) = run(Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&path));
    assert!(ok, "{out}");
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for portcullis.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {out}"));
    assert!(score <= 2.0, "exposure {score} (README says 1.4): {out}");
    // the example configuration the unit reads is valid
    let (ok, out) =
        run(portcullis(dir.path()).arg("--config").arg(repo("deploy/portcullis.toml")).args(["config", "check"]));
    assert!(ok && out.contains("0.0.0.0:5000"), "{out}");
}

/// The next notification from the server, within 20 s.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn wait_for(log: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::fs::read_to_string(log).unwrap_or_default();
        if s.contains(text) {
            return s;
        }
        assert!(Instant::now() < deadline, "{text:?} not logged: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn notifies_systemd_and_reloads_the_log_level_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, "[log]\nlevel = \"warn\"\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("stderr");
    let mut child = portcullis(&dir.path().join("data"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PORTCULLIS_CONFIG", &config)
        .env("PORTCULLIS_ADMIN_PASSWORD", "admin-password-1")
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert_eq!(next(&sock), "READY=1");
    let get = |path: &str| {
        let (ok, out) =
            run(Command::new("curl").args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{port}{path}")]));
        assert!(ok, "{out}");
    };
    get("/v2/before-reload/tags/list");
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    hup(child.id());
    assert_eq!(next(&sock), "RELOADING=1");
    assert_eq!(next(&sock), "READY=1");
    wait_for(&log, "log level reloaded");
    get("/v2/after-reload/tags/list");
    let text = wait_for(&log, "/v2/after-reload/tags/list");
    assert!(!text.contains("before-reload"), "warn hid the access log before the reload: {text}");

    // a configuration that no longer loads changes nothing, and the server keeps serving
    std::fs::write(&config, "[log]\nformat = \"xml\"\n").unwrap();
    hup(child.id());
    assert_eq!(next(&sock), "RELOADING=1");
    assert_eq!(next(&sock), "READY=1");
    wait_for(&log, "the configuration does not load");
    get("/v2/still-serving/tags/list");
    wait_for(&log, "/v2/still-serving/tags/list");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(next(&sock), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// The Kubernetes manifests (`deploy/kubernetes/`) and the RBAC `client-config` writes, checked
/// against Kubernetes 1.34's schemas by `kubernetes-validate --strict` (which refuses a broken one:
/// checked too); the webhooks fail closed and never review the gateway's own namespace.
#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let venv = std::env::var("PCL_KV_VENV").unwrap_or_else(|_| "/var/cache/pcl-kv-venv".into());
    let validate = |files: &[std::path::PathBuf]| {
        run(Command::new(format!("{venv}/bin/kubernetes-validate")).args(["--strict", "-k", "1.34.0"]).args(files))
    };
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = run(portcullis(work.path()).args([
        "client-config",
        "--gateway",
        "https://gw.example.com",
        "--out",
        work.path().join("cc").to_str().unwrap(),
    ]));
    assert!(ok, "{out}");
    files.push(work.path().join("cc/kubernetes/rbac.yaml"));
    let (ok, out) = validate(&files);
    assert!(ok && !out.contains("failed"), "{out}");
    assert_eq!(out.matches("passed for resource").count(), 12, "{out}");
    let broken = work.path().join("broken.yaml");
    let deployment =
        std::fs::read_to_string(dir.join("replicas.yaml")).unwrap().replace("replicas: 3", "replicas: three");
    std::fs::write(&broken, deployment).unwrap();
    assert!(!validate(&[broken]).0, "the validator refuses what is wrong");
    let webhooks = std::fs::read_to_string(dir.join("webhooks.yaml")).unwrap();
    assert_eq!(webhooks.matches("failurePolicy: Fail").count(), 2);
    assert_eq!(webhooks.matches("values: [\"portcullis\", \"kube-system\"]").count(), 2);
    assert!(webhooks.contains("path: /admission/mutate") && webhooks.contains("path: /admission/validate"));
}
