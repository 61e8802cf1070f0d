//! Test harness: `Server` starts the binary and stops it on drop; helpers for tokens, users,
//! organizations and raw registry calls.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ADMIN_PW: &str = "admin-password-1";

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768–60999 on Linux): an outgoing connection of
    // another test cannot take the port between now and the moment the server binds it.
    for _ in 0..100 {
        let port = rand::random_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A command running the binary with a clean environment (no stray `PORTCULLIS_*`) and its
/// data directory at `data_dir`.
pub fn portcullis(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") {
            c.env_remove(k);
        }
    }
    c.env("PORTCULLIS_DATA_DIR", data_dir);
    // No test reaches the internet: Docker Hub badge lookups only where a test sets a stand-in.
    c.env("PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS", "false");
    c
}

impl Server {
    pub async fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts (or restarts) a server on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir) -> Server {
        Server::launch(dir, &[("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW)], None, "http").await
    }

    /// Starts a server with extra environment, stderr captured to a file if given, and the
    /// scheme its health check uses (`https` is checked with curl and the test CA).
    pub async fn launch(dir: tempfile::TempDir, env: &[(&str, &str)], stderr: Option<&Path>, scheme: &str) -> Server {
        Server::launch_at(free_port(), dir, env, stderr, scheme).await
    }

    /// [`Server::launch`] on a port chosen beforehand (for a URL given to another party).
    pub async fn launch_at(
        port: u16,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        stderr: Option<&Path>,
        scheme: &str,
    ) -> Server {
        let mut cmd = portcullis(dir.path());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).env("PORTCULLIS_LOG__LEVEL", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let err = match stderr {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::inherit(),
        };
        let child = cmd.stdout(Stdio::null()).stderr(err).spawn().expect("spawn portcullis");
        let s = Server { child, port, dir, http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = if scheme == "http" {
                matches!(s.http.get(s.url("/healthz")).send().await, Ok(r) if r.status() == 200)
            } else {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            };
            if up {
                return s;
            }
            assert!(Instant::now() < deadline, "portcullis did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Kills the process hard (SIGKILL) and returns the data directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Admin API call as `user:password`.
    pub async fn api(&self, method: &str, path: &str, creds: (&str, &str), body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, self.url(path)).basic_auth(creds.0, Some(creds.1));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api(method, path, ("admin", ADMIN_PW), body).await
    }

    pub async fn create_user(&self, name: &str) {
        let (s, b) = self.admin("POST", "/api/v1/users", Some(json!({"username": name, "password": pw(name)}))).await;
        assert_eq!(s, 201, "{b}");
    }

    /// Creates `org` owned by `owner` (who must exist).
    pub async fn create_org(&self, org: &str, owner: &str) {
        let (s, b) = self.api("POST", "/api/v1/orgs", (owner, &pw(owner)), Some(json!({"name": org}))).await;
        assert_eq!(s, 201, "{b}");
    }

    /// A registry token for `creds` (None = anonymous) and scopes.
    pub async fn token(&self, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let q: Vec<(&str, &str)> =
            std::iter::once(("service", "portcullis")).chain(scopes.iter().map(|s| ("scope", *s))).collect();
        let mut rb = self.http.get(self.url("/token")).query(&q);
        if let Some((u, p)) = creds {
            rb = rb.basic_auth(u, Some(p));
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// The body of a GET with a bearer token (panics on a broken transfer).
    pub async fn get_bytes(&self, path: &str, token: &str) -> Vec<u8> {
        self.req("GET", path, Some(token)).await.send().await.unwrap().bytes().await.unwrap().to_vec()
    }

    /// A raw request with an optional bearer token.
    pub async fn req(&self, method: &str, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let rb = self.http.request(m, self.url(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User bob in team `dev` of org `acme`, which alice owns (alice exists: the harness made her).
pub async fn acme_with_member_bob(s: &Server) {
    s.create_user("bob").await;
    s.create_org("acme", "alice").await;
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "dev"}))).await.0, 201);
    let member = json!({"username": "bob"});
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams/dev/members", alice, Some(member)).await.0, 201);
}

/// The environment of a server on a test PostgreSQL database and S3 bucket.
pub fn scale_env<'a>(db: &'a store::testsuite::TestDatabase, bucket: &'a store::S3Config) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PORTCULLIS_DATABASE__URL", db.url.as_str()),
        ("PORTCULLIS_S3__BUCKET", bucket.bucket.as_str()),
        ("PORTCULLIS_S3__ENDPOINT", bucket.endpoint.as_str()),
        ("PORTCULLIS_S3__ACCESS_KEY_ID", "test"),
        ("PORTCULLIS_S3__SECRET_ACCESS_KEY", "test"),
        ("PORTCULLIS_S3__PATH_STYLE", "true"),
    ]
}

/// The password the harness gives user `name`.
pub fn pw(name: &str) -> String {
    format!("{name}-password-1")
}

/// Runs a command, returning (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed? .ci/run installs it)"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// sha256 digest string of bytes.
pub fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// `podman` with all its state (vfs storage) under `dir`, as root without systemd.
pub fn podman(dir: &Path) -> Command {
    let d = dir.display();
    let mut c = Command::new("podman");
    c.args(["--root", &format!("{d}/root"), "--runroot", &format!("{d}/runroot"), "--storage-driver", "vfs"]).args([
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
        "--tmpdir",
        &format!("{d}/tmp"),
    ]);
    c
}

/// Waits until `done()` holds, for work the server finishes after it has answered (storing a
/// verified fill, evicting); panics naming `what` after 20 s.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not after 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until something listens on loopback `port`; panics naming `what` after `secs`.
pub async fn wait_for_port(port: u16, what: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// skopeo pushes image `image` (with all its platforms) of the OCI layout at `layout` to
/// `registry/name` as `user:password`.
pub fn skopeo_push(layout: &Path, image: &str, registry: &str, creds: &str, name: &str) -> (bool, String) {
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &format!("oci:{}:{image}", layout.display()),
        &format!("docker://{registry}/{name}"),
    ]))
}

/// `skopeo inspect --raw` of `registry/name`: the manifest as served.
pub fn skopeo_inspect_raw(registry: &str, creds: &str, name: &str) -> (bool, String) {
    run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        creds,
        &format!("docker://{registry}/{name}"),
    ]))
}

pub fn skopeo_pull(registry: &str, creds: &str, name: &str, dst: &Path) -> (bool, String) {
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        &format!("docker://{registry}/{name}"),
        &format!("dir:{}", dst.display()),
    ]))
}

/// The first audit entry of `action` that `pred` accepts, waiting for it up to 5 s (entries are
/// written in batches); panics when none comes.
pub async fn audit_entry(s: &Server, action: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        let (_, log) = s.admin("GET", &format!("/api/v1/audit?action={action}"), None).await;
        if let Some(e) = log.as_array().and_then(|a| a.iter().find(|e| pred(e)).cloned()) {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no audit entry {action} came");
}
