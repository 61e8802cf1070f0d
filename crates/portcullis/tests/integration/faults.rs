//! Faults on the pull-through path: the gateway killed with SIGKILL in the middle of a fill, and
//! upstreams that lie at the HTTP level (endless or slow headers, a `Content-Length` shorter
//! than the body, a body that never ends). Every client gets an error, nothing partial is served
//! or cached, and the next pull after the upstream heals is byte-identical.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::{blob_file, random_bytes, upstream_image};
use crate::support::{ADMIN_PW, Server, eventually, portcullis, pw, run, sha256};
use crate::upstreams::{Fault, FaultProxy, Registry};

/// A gateway whose Docker Hub is at `upstream`, with short upstream timeouts.
async fn gateway(dir: tempfile::TempDir, upstream: &str, read_timeout: &str) -> Server {
    let ups = format!("[{{registry=\"docker.io\",url=\"http://{upstream}\"}}]");
    let env = [
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_UPSTREAMS", ups.as_str()),
        ("PORTCULLIS_PROXY__READ_TIMEOUT_SECS", read_timeout),
        ("PORTCULLIS_PROXY__RETRIES", "1"),
    ];
    Server::launch(dir, &env, None, "http").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_fill_serves_nothing_partial() {
    let hub = Registry::start().await;
    let fp = FaultProxy::start(&hub).await;
    let layer = random_bytes(8 << 20, 41);
    let d = upstream_image(&hub, "library/big", "1", &layer).await;
    let s = gateway(tempfile::tempdir().unwrap(), &fp.addr(), "30").await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:library/big:pull"]).await;
    assert_eq!(s.req("GET", "/v2/library/big/manifests/1", Some(&t)).await.send().await.unwrap().status(), 200);
    // the upstream sends half the layer and stalls; the gateway is killed while it waits
    fp.set(Fault::Stall);
    let mut r = s.req("GET", &format!("/v2/library/big/blobs/{d}"), Some(&t)).await.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = 0;
    while got < 1 << 20 {
        got += r.chunk().await.unwrap().expect("the fill streams what it has").len();
    }
    assert!(!blob_file(&s, &d).exists(), "a fill in progress is not a stored blob");
    let dir = s.kill();
    let end = loop {
        match r.chunk().await {
            Ok(Some(c)) => got += c.len(),
            other => break other,
        }
    };
    assert!(end.is_err() && got < layer.len(), "the client sees a broken transfer, not a short blob: {got}");
    let (ok, out) = run(portcullis(dir.path()).arg("fsck"));
    assert!(ok && out.contains(" 0 bad"), "{out}");
    // restarted on the same data: the half-filled blob is neither stored nor served
    fp.set(Fault::None);
    let s = gateway(dir, &fp.addr(), "30").await;
    assert!(!blob_file(&s, &d).exists());
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:library/big:pull"]).await;
    let fetched_before = fp.count("GET", &format!("/blobs/{d}"));
    let b = s.get_bytes(&format!("/v2/library/big/blobs/{d}"), &t).await;
    assert!(b == layer, "byte-identical after the restart");
    assert_eq!(fp.count("GET", &format!("/blobs/{d}")), fetched_before + 1, "fetched afresh");
    eventually("the refetched blob is cached", || blob_file(&s, &d).exists()).await;
    let dir = s.kill();
    let (ok, out) = run(portcullis(dir.path()).arg("fsck"));
    assert!(ok && out.contains(" 0 bad"), "{out}");
}

/// How [`Liar`] answers the requests whose path contains its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// Header lines as fast as the socket takes them, never an end to the head.
    EndlessHeaders,
    /// One header line every 300 ms, never an end to the head.
    SlowHeaders,
    /// The true body with a `Content-Length` one byte short.
    ShortLength,
    /// The true body repeated forever, without a `Content-Length`, until the client hangs up.
    EndlessBody,
}

/// An upstream registry that answers honestly (by asking a real one) except where told to lie.
struct Liar {
    addr: String,
    lie: Arc<Mutex<Option<(Lie, String)>>>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Liar {
    async fn start(honest: &Registry) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (lie, seen) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(Vec::new())));
        let (l, sn, target) = (lie.clone(), seen.clone(), honest.addr());
        let task = tokio::spawn(async move {
            while let Ok((c, _)) = listener.accept().await {
                let (l, sn, target) = (l.clone(), sn.clone(), target.clone());
                tokio::spawn(async move {
                    let _ = answer(c, &l, &sn, &target).await;
                });
            }
        });
        Liar { addr, lie, seen, task }
    }

    fn set(&self, lie: Option<(Lie, &str)>) {
        *self.lie.lock().unwrap() = lie.map(|(l, on)| (l, on.to_owned()));
    }

    fn count(&self, needle: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|p| p.contains(needle)).count()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one request on `c` (then closes it).
async fn answer(
    mut c: TcpStream,
    lie: &Mutex<Option<(Lie, String)>>,
    seen: &Mutex<Vec<String>>,
    target: &str,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned());
    seen.lock().unwrap().push(format!("{method} {path}"));
    let chosen = lie.lock().unwrap().clone().filter(|(_, on)| path.contains(on.as_str())).map(|(l, _)| l);
    match chosen {
        Some(Lie::EndlessHeaders) => {
            c.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            let line = format!("X-Padding: {}\r\n", "a".repeat(1000));
            loop {
                c.write_all(line.as_bytes()).await?;
            }
        }
        Some(Lie::SlowHeaders) => {
            c.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            for _ in 0..200 {
                c.write_all(b"X-Slow: 1\r\n").await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(())
        }
        other => {
            let accept = head
                .lines()
                .find_map(|l| l.strip_prefix("Accept: ").or_else(|| l.strip_prefix("accept: ")))
                .unwrap_or("*/*")
                .to_owned();
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let r = reqwest::Client::new()
                .request(m.clone(), format!("http://{target}{path}"))
                .header("accept", accept)
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let status = r.status();
            let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
            for (k, v) in r.headers() {
                if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
                    out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
                }
            }
            let declared = r.content_length();
            let body = r.bytes().await.map_err(std::io::Error::other)?;
            let length = match other {
                Some(Lie::ShortLength) => Some(body.len().saturating_sub(1) as u64),
                Some(Lie::EndlessBody) => None,
                _ => Some(declared.unwrap_or(body.len() as u64)),
            };
            if let Some(n) = length {
                out.push_str(&format!("content-length: {n}\r\n"));
            }
            out.push_str("connection: close\r\n\r\n");
            c.write_all(out.as_bytes()).await?;
            if m == reqwest::Method::HEAD {
                return Ok(());
            }
            if other == Some(Lie::EndlessBody) {
                let chunk = if body.is_empty() { vec![b'x'; 4096] } else { body.to_vec() };
                loop {
                    c.write_all(&chunk).await?;
                }
            }
            c.write_all(&body).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_upstreams_fail_cleanly_and_cache_nothing() {
    let hub = Registry::start().await;
    let liar = Liar::start(&hub).await;
    let s = gateway(tempfile::tempdir().unwrap(), &liar.addr, "1").await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:library/liar:pull"]).await;
    let lies = [Lie::EndlessHeaders, Lie::SlowHeaders, Lie::ShortLength, Lie::EndlessBody];
    for (i, lie) in lies.into_iter().enumerate() {
        let layer = random_bytes(256 << 10, 60 + i as u32);
        let tag = format!("t{i}");
        let d = upstream_image(&hub, "library/liar", &tag, &layer).await;
        let manifest = reqwest::Client::new()
            .head(format!("http://{}/v2/library/liar/manifests/{tag}", hub.addr()))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        // a lying manifest answer: the client gets 503 in bounded time, nothing is cached
        liar.set(Some((lie, "/manifests/")));
        let started = Instant::now();
        let path = format!("/v2/library/liar/manifests/{manifest}");
        let r = s.req("GET", &path, Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 503, "{lie:?} on a manifest: {}", r.text().await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(15), "{lie:?}: answered in {:?}", started.elapsed());
        liar.set(None);
        let asked = liar.count(&format!("/manifests/{manifest}"));
        let r = s.req("GET", &path, Some(&t)).await.send().await.unwrap();
        assert_eq!(r.status(), 200, "{lie:?}: the manifest pulls once the upstream heals");
        assert_eq!(sha256(&r.bytes().await.unwrap()), manifest, "{lie:?}");
        assert_eq!(liar.count(&format!("/manifests/{manifest}")), asked + 1, "{lie:?}: the lie was not cached");
        // a lying blob answer: the transfer fails, nothing is cached, the next pull is correct
        liar.set(Some((lie, "/blobs/")));
        let r = s.req("GET", &format!("/v2/library/liar/blobs/{d}"), Some(&t)).await.send().await.unwrap();
        let failed = r.status() != 200 || r.bytes().await.map(|b| sha256(&b) != d).unwrap_or(true);
        assert!(failed, "{lie:?}: the client's blob transfer must fail");
        liar.set(None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!blob_file(&s, &d).exists(), "{lie:?}: nothing cached");
        let b = s.get_bytes(&format!("/v2/library/liar/blobs/{d}"), &t).await;
        assert!(b == layer, "{lie:?}: the blob pulls byte-identical once the upstream heals");
    }
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200, "still serving");
}

/// Writes `request` byte for byte (with `Connection: close` after its request line) and returns
/// what the server answers before it closes (or within 5 s).
async fn raw(s: &Server, request: &[u8]) -> String {
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    let line_end = request.windows(2).position(|w| w == b"\r\n").map_or(request.len(), |i| i + 2);
    let request = [&request[..line_end], b"Connection: close\r\n", &request[line_end..]].concat();
    let _ = c.write_all(&request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn bad_http_gets_4xx_and_the_server_keeps_serving() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:alice/app:pull,push"]).await;
    let content = b"some bytes of a blob";
    let d = sha256(content);
    let r = s.req("POST", &format!("/v2/alice/app/blobs/uploads/?digest={d}"), Some(&t)).await.body(&content[..]);
    assert_eq!(r.send().await.unwrap().status(), 201);
    let host = s.addr();
    let auth = format!("Authorization: Bearer {t}\r\n");
    let get =
        |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{extra}\r\n").into_bytes();
    let blob = format!("/v2/alice/app/blobs/{d}");
    let many_ranges: Vec<String> = (0..10_000).map(|i| format!("{i}-{i}")).collect();
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("a 1 MiB header", get("/v2/", &format!("X-Big: {}\r\n", "a".repeat(1 << 20))), &[431]),
        ("ten thousand headers", get("/v2/", &"X-H: 1\r\n".repeat(10_000)), &[431]),
        ("a 100 KiB name", get(&format!("/v2/{}/tags/list", "a/".repeat(50_000) + "b"), ""), &[400, 414, 431]),
        ("a 300-byte component", get(&format!("/v2/alice/{}/tags/list", "a".repeat(300)), ""), &[400]),
        ("ten thousand ranges", get(&blob, &format!("Range: bytes={}\r\n", many_ranges.join(","))), &[200]),
        ("a zero suffix range", get(&blob, "Range: bytes=-0\r\n"), &[416]),
        ("a reversed range", get(&blob, "Range: bytes=9-2\r\n"), &[416]),
        ("a range past the end", get(&blob, "Range: bytes=99999999999999999999-\r\n"), &[416]),
        ("non-UTF-8 in the path", [b"GET /v2/alice/\xff\xfe/tags/list HTTP/1.1\r\nHost: x\r\n\r\n".as_slice()].concat(), &[400]),
        ("traversal", get("/v2/alice/../../etc/passwd/manifests/x", ""), &[400]),
        ("encoded traversal", get("/v2/alice/%2e%2e/%2e%2e/etc/manifests/x", ""), &[400]),
        ("encoded slash", get("/v2/alice%2fapp/tags/list", ""), &[400]),
        (
            "a negative Content-Length",
            format!("POST /v2/alice/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: -1\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "an overflowing Content-Length",
            format!("POST /v2/alice/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 99999999999999999999\r\n\r\n")
                .into_bytes(),
            &[400],
        ),
        (
            "two different Content-Lengths",
            format!("POST /v2/alice/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab")
                .into_bytes(),
            &[400],
        ),
        (
            "a huge Content-Length with a short body",
            format!(
                "PUT /v2/alice/app/blobs/uploads/x?digest={d} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 1000000000000\r\n\r\nshort"
            )
            .into_bytes(),
            &[0, 400, 404],
        ),
        ("a bad method", get("/v2/", "").iter().copied().skip(3).collect::<Vec<u8>>(), &[400, 405]),
    ];
    for (what, request, allowed) in cases {
        let answer = raw(&s, &request).await;
        let code = status(&answer);
        assert!(allowed.contains(&code), "{what}: {code} {}", answer.lines().next().unwrap_or(""));
        assert!(!answer.contains(" 500 ") && !answer.contains("panicked"), "{what}");
        // still serving, and what is stored is intact
        assert_eq!(s.get_bytes(&blob, &t).await, content, "after {what}");
    }

    // request smuggling: both framings in one head, in either order, is a 400 that closes the
    // connection; the request hidden after the chunked body's end is never answered (a proxy
    // framing by the length would have sent it as part of the first)
    let hidden = format!("GET {blob} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n");
    let body = format!("0\r\n\r\n{hidden}");
    for (first, second) in [("Content-Length", "Transfer-Encoding"), ("Transfer-Encoding", "Content-Length")] {
        let value = |h: &str| if h == "Content-Length" { body.len().to_string() } else { "chunked".to_owned() };
        let request = format!(
            "POST /v2/alice/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n{auth}{first}: {}\r\n{second}: {}\r\n\r\n{body}",
            value(first),
            value(second)
        );
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
        let answer = String::from_utf8_lossy(&out);
        assert_eq!(status(&answer), 400, "{first} first: {answer}");
        assert!(answer.contains("both Content-Length and Transfer-Encoding"), "{answer}");
        assert!(answer.to_lowercase().contains("connection: close"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "the hidden request is not answered: {answer}");
    }
    // one framing at a time, on one kept-alive connection, is served as before
    let put = format!("PUT /v2/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\r\nabc");
    let patch =
        format!("PATCH /v2/x HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(format!("{put}{patch}{hidden}").as_bytes()).await.unwrap();
    let mut out = vec![0u8; 1 << 16];
    let mut got = String::new();
    while got.matches("HTTP/1.1 ").count() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut out)).await.unwrap().unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&out[..n]));
    }
    assert!(!got.contains(" 400 ") && got.contains("HTTP/1.1 200 OK"), "{got}");
}

/// An upstream nobody answers for: the client's error names the cause, not only "503".
#[tokio::test]
async fn an_unreachable_upstream_is_named_with_its_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let s = gateway(tempfile::tempdir().unwrap(), &closed, "1").await;
    s.create_user("alice").await;
    let work = tempfile::tempdir().unwrap();
    let creds = format!("alice:{}", pw("alice"));
    let (ok, out) = crate::support::skopeo_pull(&s.addr(), &creds, "library/alpine:3", &work.path().join("p"));
    let said = out.to_lowercase();
    assert!(!ok && said.contains("upstream registry") && said.contains("connection refused"), "{out}");
}
