//! Stand-ins for Docker Hub and other registries: real CNCF distribution registries (Debian
//! `docker-registry`) on loopback, and `FaultProxy`, which forwards to one of them, counts the
//! requests it sees and injects faults into blob downloads.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;

/// A CNCF distribution registry on a free loopback port.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        Registry::start_with(|_| String::new()).await
    }

    /// A registry with Docker token authentication (a token server that is never asked: what is
    /// compared is the challenge distribution names, `/v2/` then answers 401).
    pub async fn start_with_token_auth() -> Registry {
        Registry::start_with(|dir| {
            let (cert, key) = (dir.join("token.crt"), dir.join("token.key"));
            let (ok, out) = crate::support::run(Command::new("openssl").args([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=token", "-keyout", &key.display().to_string(), "-out", &cert.display().to_string(),
            ]));
            assert!(ok, "openssl: {out}");
            format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:9/token\n    service: peer\n    issuer: peer\n    rootcertbundle: {}\n",
                cert.display()
            )
        })
        .await
    }

    async fn start_with(extra: impl FnOnce(&Path) -> String) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
            dir.path().join("data").display(),
            extra(dir.path())
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let r = Registry { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while reqwest::get(format!("http://127.0.0.1:{port}/v2/")).await.is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Copies an image of an OCI layout into this registry.
    pub fn push(&self, layout: &Path, image: &str, repo_tag: &str) {
        let (ok, out) = crate::support::run(Command::new("skopeo").args([
            "copy",
            "-q",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:{image}", layout.display()),
            &format!("docker://{}/{repo_tag}", self.addr()),
        ]));
        assert!(ok, "push to the upstream: {out}");
    }

    /// Pushes a single blob (monolithic) and returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = crate::support::sha256(data);
        let r = reqwest::Client::new()
            .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.addr()))
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let loc = if loc.starts_with("http") { loc } else { format!("http://{}{loc}", self.addr()) };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = reqwest::Client::new().put(format!("{loc}{sep}digest={d}")).body(data.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), 201);
        d
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `FaultProxy` does to blob downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Announces the full length, sends half, then ends.
    Truncate,
    /// Sends the right length of the wrong bytes.
    WrongBytes,
    /// Sends half, then breaks the connection.
    Reset,
    /// Sends one byte every 2 s.
    SlowDrip,
    /// Sends half, then holds the connection open without sending more.
    Stall,
    /// Answers every request (manifests too) with this status.
    Status(u16),
    /// Adds a byte to manifest bodies, keeping the upstream's `Docker-Content-Digest`.
    LyingManifest,
    /// Drops the query of tags lists (`n`, `last`), as an upstream that does not page does.
    IgnoresPaging,
}

#[derive(Clone)]
struct ProxyState {
    target: String,
    fault: Arc<Mutex<Fault>>,
    seen: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// A forwarding proxy in front of a registry that counts requests and injects faults.
pub struct FaultProxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: &Registry) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = ProxyState {
            target: target.addr(),
            fault: Arc::new(Mutex::new(Fault::None)),
            seen: Arc::default(),
            http: reqwest::Client::new(),
        };
        let (fault, seen) = (st.fault.clone(), st.seen.clone());
        let app = axum::Router::new().fallback(forward).with_state(st);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { port, fault, seen, task }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    /// How many requests with this method had a path containing `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| s.starts_with(&format!("{method} ")) && s.contains(needle)).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let method = req.method().clone();
    let pq = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    st.seen.lock().unwrap().push(format!("{method} {pq}"));
    let fault = *st.fault.lock().unwrap();
    if let Fault::Status(code) = fault {
        let mut b = Response::builder().status(code);
        if code == 429 {
            b = b.header("retry-after", "7");
        }
        return b.body(Body::from("injected fault")).unwrap();
    }
    let forwarded = match pq.split_once('?') {
        Some((path, _)) if fault == Fault::IgnoresPaging && path.ends_with("/tags/list") => path,
        _ => pq.as_str(),
    };
    let mut up = st.http.request(method.clone(), format!("http://{}{forwarded}", st.target));
    for h in ["accept", "authorization", "content-type"] {
        if let Some(v) = req.headers().get(h) {
            up = up.header(h, v.clone());
        }
    }
    let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap_or_default();
    let resp = up.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let mut b = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if k != "transfer-encoding" {
            b = b.header(k, v);
        }
    }
    if fault == Fault::LyingManifest && method == "GET" && pq.contains("/manifests/") && status == 200 {
        let mut lie = Response::builder().status(status);
        for (k, v) in resp.headers() {
            if k != "transfer-encoding" && k != "content-length" {
                lie = lie.header(k, v);
            }
        }
        let mut v = resp.bytes().await.unwrap().to_vec();
        v.push(b' ');
        return lie.body(Body::from(v)).unwrap();
    }
    let is_blob_get = method == "GET" && pq.contains("/blobs/sha") && status == 200;
    if !is_blob_get || fault == Fault::None {
        return b.body(Body::from_stream(resp.bytes_stream())).unwrap();
    }
    let bytes = resp.bytes().await.unwrap();
    let half = bytes.len() / 2;
    match fault {
        Fault::Truncate => b.body(Body::from(bytes.slice(..half))).unwrap(),
        Fault::WrongBytes => {
            let mut v = bytes.to_vec();
            v.iter_mut().for_each(|x| *x ^= 0x5a);
            b.body(Body::from(v)).unwrap()
        }
        Fault::Reset => {
            let first = bytes.slice(..half);
            let s = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(first),
                Err(std::io::Error::other("reset")),
            ]);
            b.body(Body::from_stream(s)).unwrap()
        }
        Fault::SlowDrip => {
            let s = futures_util::stream::iter(bytes.to_vec()).then(|x| async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<Bytes, std::io::Error>(Bytes::from(vec![x]))
            });
            b.body(Body::from_stream(s)).unwrap()
        }
        Fault::Stall => {
            let first = futures_util::stream::iter(vec![Ok::<Bytes, std::io::Error>(bytes.slice(..half))]);
            let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            b.body(Body::from_stream(first.chain(never))).unwrap()
        }
        Fault::None | Fault::Status(_) | Fault::LyingManifest | Fault::IgnoresPaging => {
            b.body(Body::from(bytes)).unwrap()
        }
    }
}
