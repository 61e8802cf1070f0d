//! Serving HTTP/1.1 and HTTP/2, plain or over TLS (rustls), with one accept loop: TCP_NODELAY on
//! every connection, at most `max_connections` at once (beyond that, new ones wait in the
//! kernel's backlog), the request headers bounded in time (`header_timeout`: a slow-header
//! client is cut off, and so is a kept-alive connection waiting for its next request), idle
//! connections closed after `idle_timeout` (gracefully: a request in flight finishes), and a
//! graceful drain on shutdown. The TLS certificate can be replaced while serving
//! ([`TlsFiles::reload`], on SIGHUP). A request with both `Content-Length` and
//! `Transfer-Encoding` is refused (`framing`).

mod framing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Bounds on connections (the `[http]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The certificate and key files of TLS, and the server configuration loaded from them.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

fn load(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in the TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let mut c = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not go together")?;
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(c)
}

impl TlsFiles {
    /// Loads the certificate chain and key (PEM).
    pub fn open(cert: PathBuf, key: PathBuf) -> anyhow::Result<TlsFiles> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config = RwLock::new(Arc::new(load(&cert, &key)?));
        Ok(TlsFiles { cert, key, config })
    }

    /// Reads the files again; new connections use them, open ones keep theirs. On an error the
    /// current certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let c = Arc::new(load(&self.cert, &self.key)?);
        if let Ok(mut g) = self.config.write() {
            *g = c;
        }
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let c = self.config.read().map(|g| g.clone()).unwrap_or_else(|e| e.into_inner().clone());
        tokio_rustls::TlsAcceptor::from(c)
    }
}

/// A connection's stream that notes when bytes last moved, for the idle timeout.
struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft limit of open files to the hard one (as Go does): every connection is a
/// descriptor, and the default soft limit (often 1024) is below what `max_connections` allows.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then drains for at most `drain`.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<TlsFiles>>,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(limits.idle_timeout / 2));
    let builder = Arc::new(builder);
    let (closing_tx, closing) = watch::channel(false);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, builder, tls, closing) = (app.clone(), builder.clone(), tls.clone(), closing.clone());
        tokio::spawn(async move {
            connection(tcp, peer, tls, app, &builder, limits, closing).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection task holds a slot: all slots free again means all connections ended.
    let all = limits.max_connections.max(1) as u32;
    if tokio::time::timeout(drain, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}

/// One connection: TLS handshake (bounded by the header timeout), then HTTP until it ends, it
/// has been idle too long, or the server shuts down (requests in flight finish).
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<TlsFiles>>,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let svc = hyper_util::service::TowerToHyperService::new(framing::RefuseMarked(tower::ServiceExt::map_request(
        app,
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        },
    )));
    macro_rules! serve_io {
        ($io:expr) => {{
            let io = framing::Framing::new(Tracked { inner: $io, last: last.clone(), epoch }, limits.header_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(Duration::from_secs(1).min(limits.idle_timeout));
            let mut draining = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = tick.tick(), if !draining => {
                        let idle = epoch.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                        if idle >= limits.idle_timeout {
                            conn.as_mut().graceful_shutdown();
                            draining = true;
                        }
                    }
                    _ = closing.changed(), if !draining => {
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                    }
                }
            }
        }};
    }
    match tls {
        None => serve_io!(tcp),
        Some(t) => match tokio::time::timeout(limits.header_timeout, t.acceptor().accept(tcp)).await {
            Ok(Ok(stream)) => serve_io!(stream),
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}
