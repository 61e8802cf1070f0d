//! HTTP/1.1 request framing, watched beneath hyper: a request head that carries both
//! `Content-Length` and `Transfer-Encoding` is refused with a 400 and the connection closed
//! (RFC 9112 §6.3: such a message "ought to be handled as an error"; a proxy in front that
//! frames by the length while the gateway frames by the chunks would let a second request ride
//! in the first one's body). hyper accepts such a request and drops the length before the
//! application sees it, so [`Framing`] reads each request head before hyper does — following
//! bodies by their length or their chunks so that it knows where the next head starts — and
//! renames the `Content-Length` of such a head to [`MARKER`] (same length, so nothing moves);
//! [`RefuseMarked`] answers those requests. HTTP/2 connections, oversized heads and framing
//! hyper itself refuses are passed through untouched. Bodies are counted, not copied.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What `Content-Length` becomes in a head that also has `Transfer-Encoding`.
pub const MARKER: &str = "x-pcl-smuggled";

/// The longest head read before giving up on it (hyper refuses far smaller ones: 431).
const MAX_HEAD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request head.
    Head,
    /// In a body of this many more bytes.
    Body(u64),
    /// In a chunked body.
    Chunk(Chunk),
    /// Not watched any more (HTTP/2, a refused or unparseable message).
    Through,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: the size so far, and whether an extension began.
    Size { size: u64, ext: bool },
    /// In chunk data: bytes left.
    Data(u64),
    /// After chunk data, up to the end of its line.
    DataEnd,
    /// In the trailer section: whether the current line is empty so far.
    Trailer { empty: bool },
}

/// The framing watcher over a connection's stream.
pub struct Framing<S> {
    inner: S,
    state: State,
    /// Read from the connection, not yet classified (a head being gathered, or what follows
    /// a body's end).
    held: Vec<u8>,
    /// Classified, to hand to hyper.
    ready: Vec<u8>,
    ready_at: usize,
    /// Whether the connection's first bytes were looked at (the HTTP/2 preface).
    started: bool,
    /// How long an incomplete head is waited for (hyper's own limit does not run while the
    /// head is held here, nor before it knows the protocol).
    timeout: Duration,
    /// When the head being gathered must be complete.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Framing<S> {
    /// Watches `inner`; an incomplete head is waited for `timeout` (the header timeout).
    pub fn new(inner: S, timeout: Duration) -> Framing<S> {
        Framing {
            inner,
            state: State::Head,
            held: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            started: false,
            timeout,
            deadline: None,
        }
    }

    /// How many of `bytes` (read from the connection after what was classified before) can go
    /// to hyper now: whole heads (marked if they must be), and body bytes; an incomplete head at
    /// the end stays unclassified.
    fn scan(&mut self, bytes: &mut [u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            if self.state != State::Head {
                at += self.consume(&bytes[at..]);
                continue;
            }
            let rest = &mut bytes[at..];
            if !self.started {
                if rest.len() < 3 && b"PRI".starts_with(rest) {
                    return at;
                }
                self.started = true;
                if rest.starts_with(b"PRI") {
                    self.state = State::Through;
                    continue;
                }
            }
            match head_end(rest) {
                Some(end) => {
                    self.state = inspect(&mut rest[..end]);
                    at += end;
                }
                // Not an HTTP/1 head (a TLS handshake on the plain port, binary): hyper answers
                // it at once; a head too long for hyper is refused by it.
                None if rest.len() > MAX_HEAD || !plausible(rest) => self.state = State::Through,
                None => return at,
            }
        }
        at
    }

    /// How many of `bytes` (after a head) belong to the current message; the state moves on.
    fn consume(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            match &mut self.state {
                State::Head => return at,
                State::Through => return bytes.len(),
                State::Body(left) => {
                    let take = (*left).min((bytes.len() - at) as u64);
                    *left -= take;
                    at += take as usize;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunk(Chunk::Data(left)) => {
                    let take = (*left).min((bytes.len() - at) as u64);
                    *left -= take;
                    at += take as usize;
                    if *left == 0 {
                        self.state = State::Chunk(Chunk::DataEnd);
                    }
                }
                State::Chunk(c) => {
                    let b = bytes[at];
                    at += 1;
                    self.state = match (*c, b) {
                        (Chunk::Size { size: 0, .. }, b'\n') => State::Chunk(Chunk::Trailer { empty: true }),
                        (Chunk::Size { size, .. }, b'\n') => State::Chunk(Chunk::Data(size)),
                        (Chunk::Size { size, ext: false }, b) if b.is_ascii_hexdigit() => {
                            let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                            match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                                Some(size) => State::Chunk(Chunk::Size { size, ext: false }),
                                // hyper refuses the size too: nothing more to follow
                                None => State::Through,
                            }
                        }
                        (Chunk::Size { size, .. }, _) => State::Chunk(Chunk::Size { size, ext: true }),
                        (Chunk::DataEnd, b'\n') => State::Chunk(Chunk::Size { size: 0, ext: false }),
                        (Chunk::DataEnd, _) => State::Chunk(Chunk::DataEnd),
                        (Chunk::Trailer { empty: true }, b'\n') => State::Head,
                        (Chunk::Trailer { .. }, b'\n') => State::Chunk(Chunk::Trailer { empty: true }),
                        (Chunk::Trailer { empty }, b'\r') => State::Chunk(Chunk::Trailer { empty }),
                        (Chunk::Trailer { .. }, _) => State::Chunk(Chunk::Trailer { empty: false }),
                        (Chunk::Data(_), _) => State::Through,
                    };
                }
            }
        }
        at
    }
}

/// The length of the head at the start of `buf` (through its empty line), if it is all there.
/// Lines end with LF (CRLF or a bare LF, as hyper's parser accepts); empty lines before the
/// request line are part of it.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    let mut seen_line = false;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start += i + 1;
        if line.is_empty() {
            if seen_line {
                return Some(start);
            }
        } else {
            seen_line = true;
        }
    }
    None
}

/// Whether `bytes` can begin a request head: a method's letter first (after empty lines), and
/// no control character but tab and line ends.
fn plausible(bytes: &[u8]) -> bool {
    let first = bytes.iter().find(|b| !matches!(b, b'\r' | b'\n'));
    first.is_none_or(|b| b.is_ascii_alphabetic())
        && bytes.iter().all(|&b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\r' | b'\n'))
}

/// Reads a head's framing headers; marks the head when it has both; the state its body puts
/// the connection in.
fn inspect(head: &mut [u8]) -> State {
    let mut lengths = Vec::new();
    let mut chunked = None;
    let mut length_at = Vec::new();
    let mut start = 0;
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let at = start;
        start += line.len() + 1;
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if i == 0 {
            continue;
        }
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let text = || String::from_utf8_lossy(value).trim().to_owned();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths.push(text());
            length_at.push(at);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let value = text();
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        }
    }
    match (chunked, lengths.first()) {
        (Some(_), Some(_)) => {
            for at in length_at {
                head[at..at + MARKER.len()].copy_from_slice(MARKER.as_bytes());
            }
            State::Through
        }
        (Some(true), None) => State::Chunk(Chunk::Size { size: 0, ext: false }),
        // Another final coding: hyper refuses the request.
        (Some(false), None) => State::Through,
        (None, Some(first)) => match first.parse::<u64>() {
            Ok(n) if lengths.iter().all(|l| l == first) => {
                if n == 0 {
                    State::Head
                } else {
                    State::Body(n)
                }
            }
            _ => State::Through,
        },
        (None, None) => State::Head,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Framing<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = (this.ready.len() - this.ready_at).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                // Read straight into hyper's buffer and look at the bytes there; an incomplete
                // head at the end is taken back until the rest of it comes.
                let before = buf.filled().len();
                let r = Pin::new(&mut this.inner).poll_read(cx, buf);
                if let Poll::Ready(Ok(())) = r {
                    let after = buf.filled().len();
                    let n = this.scan(&mut buf.filled_mut()[before..]);
                    if before + n < after {
                        this.held.extend_from_slice(&buf.filled()[before + n..]);
                        buf.set_filled(before + n);
                        if n == 0 {
                            continue;
                        }
                    }
                }
                return r;
            }
            let mut held = std::mem::take(&mut this.held);
            let n = this.scan(&mut held);
            if n > 0 {
                this.ready.extend_from_slice(&held[..n]);
                held.drain(..n);
                this.held = held;
                this.deadline = None;
                continue;
            }
            this.held = held;
            // More of a head is needed.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
            let mut tmp = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut tmp) {
                Poll::Ready(Ok(())) if tmp.filled().is_empty() => {
                    // The end of the stream: what was held goes as it is (an incomplete head).
                    this.state = State::Through;
                    this.ready.append(&mut this.held);
                }
                Poll::Ready(Ok(())) => this.held.extend_from_slice(tmp.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let timeout = this.timeout;
                    let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if deadline.as_mut().poll(cx).is_ready() {
                        let e =
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "the request head did not come in time");
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Framing<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The service that answers a request [`Framing`] marked: 400, in the registry's error
/// format, and the connection closed; every other request goes to the application.
#[derive(Clone)]
pub struct RefuseMarked<S>(pub S);

fn refusal() -> Response {
    let body = serde_json::json!({ "errors": [{ "code": "UNSUPPORTED", "message":
        "a request with both Content-Length and Transfer-Encoding is refused: send one of them" }] });
    let mut r = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

impl<S, B> tower::Service<axum::http::Request<B>> for RefuseMarked<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        if req.headers().contains_key(MARKER) {
            futures_util::future::Either::Left(std::future::ready(Ok(refusal())))
        } else {
            futures_util::future::Either::Right(self.0.call(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// What hyper would read through the watcher, fed `input` in pieces of `step` bytes.
    async fn through(input: &[u8], step: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in input.chunks(step) {
                client.write_all(piece).await.unwrap();
            }
        });
        let mut out = Vec::new();
        Framing::new(server, Duration::from_secs(30)).read_to_end(&mut out).await.unwrap();
        feed.await.unwrap();
        out
    }

    fn marked(s: &[u8]) -> usize {
        s.windows(MARKER.len()).filter(|w| *w == MARKER.as_bytes()).count()
    }

    #[tokio::test]
    async fn heads_with_both_are_marked_wherever_they_are_on_the_connection() {
        let both = b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for step in [1, 3, 7, 64, 4096] {
            assert_eq!(marked(&through(both, step).await), 1, "step {step}");
        }
        // after a length-framed body that looks like a head, and after a chunked body with an
        // extension and a trailer: only the real next head counts
        let inner = b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n";
        let mut piped = format!("PUT /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", inner.len()).into_bytes();
        piped.extend_from_slice(inner);
        piped.extend_from_slice(
            b"PATCH /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n",
        );
        piped.extend_from_slice(b"GET /c HTTP/1.1\nTransfer-Encoding: chunked\ncontent-length: 3\n\n");
        let out = through(&piped, 5).await;
        assert_eq!(out.len(), piped.len(), "nothing added or lost");
        assert_eq!(marked(&out), 1, "{}", String::from_utf8_lossy(&out));
        assert!(String::from_utf8_lossy(&out).ends_with("x-pcl-smuggled: 3\n\n"));
    }

    #[tokio::test]
    async fn other_requests_pass_unchanged() {
        let mut ok = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        ok.extend_from_slice(b"PUT /m HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        ok.extend_from_slice(b"PATCH /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        ok.extend_from_slice(b"\r\nGET /v2/ HTTP/1.1\r\n\r\n");
        assert_eq!(through(&ok, 2).await, ok);
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(through(h2, 1).await, h2, "HTTP/2 is not watched");
        let big = [b"POST /b HTTP/1.1\r\nContent-Length: 70000\r\n\r\n".as_slice(), &[b'x'; 70_000]].concat();
        assert_eq!(through(&big, 4096).await, big);
    }

    #[tokio::test]
    async fn what_cannot_be_a_head_is_handed_on_at_once() {
        // a TLS ClientHello on the plain port (a client trying HTTPS first), and a head with a
        // control character: hyper must see them now to refuse them, not when a line ends
        for first in [b"\x16\x03\x01\x02\x00\x01".as_slice(), b"GET /\x01"] {
            let (mut client, server) = tokio::io::duplex(64);
            use tokio::io::AsyncWriteExt;
            client.write_all(first).await.unwrap();
            let mut got = vec![0u8; 64];
            let mut f = Framing::new(server, Duration::from_secs(30));
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), f.read(&mut got)).await.unwrap().unwrap();
            assert_eq!(&got[..n], first);
        }
    }
}
