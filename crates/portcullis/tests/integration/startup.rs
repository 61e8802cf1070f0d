//! Start-up and data safety: the first administrator is created only once the server can
//! serve, one server per data directory, a data directory that cannot be written is refused at
//! start and reported not ready later, an ignored bootstrap password is said, and every log line
//! of a request carries its id.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{ADMIN_PW, Server, portcullis, pw, run};

/// `serve` on `dir` that is expected to fail: (exit success, stderr).
fn serve_fails(dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = portcullis(dir);
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.success(), err);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("serve kept running");
}

/// Runs `chattr` (immutable files refuse writes even to root, as the tests run).
fn chattr(flag: &str, path: &std::path::Path) {
    let (ok, out) = run(Command::new("chattr").arg(flag).arg(path));
    assert!(ok, "chattr: {out}");
}

#[tokio::test]
async fn the_first_administrator_is_created_only_once_the_server_can_serve() {
    let dir = tempfile::tempdir().unwrap();
    // a TLS key that is not there: the start fails before any account is made
    let env = [("PORTCULLIS_TLS__CERT", "/nonexistent/cert.pem"), ("PORTCULLIS_TLS__KEY", "/nonexistent/key.pem")];
    let (ok, err) = serve_fails(dir.path(), &env);
    assert!(!ok && err.contains("cannot load the TLS certificate or key"), "{err}");
    assert!(!err.contains("instance administrator"), "no password was printed: {err}");
    // a port that is taken: the same
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let (ok, err) = run(portcullis(dir.path()).args(["serve", "--listen", &listen]));
    assert!(!ok && err.contains("cannot listen on") && !err.contains("instance administrator"), "{err}");
    // the start that can serve creates the administrator and prints the password once
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("stderr");
    let s = Server::launch(dir, &[], Some(&log), "http").await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("instance administrator")).expect(&text);
    let password = line.split("password ").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(s.api("GET", "/api/v1/me", ("admin", password), None).await.0, 200);
}

#[tokio::test]
async fn one_server_per_data_directory() {
    let s = Server::start().await;
    let (ok, err) = serve_fails(s.dir.path(), &[]);
    let pid = s.child.id().to_string();
    assert!(!ok && err.contains("is in use by another portcullis") && err.contains(&format!("PID {pid}")), "{err}");
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200, "the first one serves on");
    // once it stops, the directory is free
    let dir = s.kill();
    let again = Server::start_in(dir).await;
    assert_eq!(again.http.get(again.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_data_directory_that_cannot_be_written_is_refused_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    chattr("+i", dir.path());
    let (ok, err) = serve_fails(dir.path(), &[]);
    chattr("-i", dir.path());
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("cannot write to the data directory {}", dir.path().display())), "{err}");
    // writable at start, then not: /readyz says so, and recovers
    let s = Server::start_in(dir).await;
    let uploads = s.dir.path().join("uploads");
    assert_eq!(s.http.get(s.url("/readyz")).send().await.unwrap().status(), 200);
    chattr("+i", &uploads);
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    chattr("-i", &uploads);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["blob_store"], false);
    assert!(body["problems"][0].as_str().unwrap().contains("cannot be written"), "{body}");
    assert_eq!(s.http.get(s.url("/readyz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_ignored_bootstrap_password_is_reported() {
    let s = Server::start().await;
    let dir = s.kill();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("stderr");
    let env = [("PORTCULLIS_ADMIN_PASSWORD", "another-password-9"), ("PORTCULLIS_LOG__LEVEL", "info")];
    let s = Server::launch(dir, &env, Some(&log), "http").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("PORTCULLIS_ADMIN_PASSWORD) is ignored"), "{text}");
    assert_eq!(s.api("GET", "/api/v1/me", ("admin", ADMIN_PW), None).await.0, 200, "the old password stands");
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("stderr");
    // Docker Hub at a closed port: a pull through the proxy fails inside the request
    let env = [
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_LOG__FORMAT", "json"),
        ("PORTCULLIS_LOG__LEVEL", "info"),
        ("PORTCULLIS_UPSTREAMS", "[{registry=\"docker.io\",url=\"http://127.0.0.1:9\"}]"),
        ("PORTCULLIS_PROXY__RETRIES", "0"),
    ];
    let s = Server::launch(tempfile::tempdir().unwrap(), &env, Some(&log), "http").await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:library/x:pull"]).await;
    let r = s.req("GET", "/v2/library/x/manifests/1", Some(&t)).await.header("x-request-id", "fail-1").send().await;
    assert_eq!(r.unwrap().status(), 503);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let failed: Vec<&serde_json::Value> = lines.iter().filter(|l| l["level"] == "WARN").collect();
    assert!(!failed.is_empty(), "the failure was logged: {text}");
    for l in failed {
        assert_eq!(l["span"]["request_id"], "fail-1", "{l}");
    }
}
