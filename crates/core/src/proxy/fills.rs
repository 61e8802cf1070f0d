//! Blob fills: one upstream fetch per blob however many clients ask (and one replica among
//! many, through a lease), clients following the growing upload, the last byte held back until
//! the digest verifies; then the upload is committed like a push and marked evictable.

use std::io::Write as _;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use oci::digest::Hasher;
use oci::range::ByteRange;
use oci::source::UpstreamRepo;
use oci::{Digest, ErrorCode};
use tokio::sync::watch;

use super::evict::enforce_budget;
use super::{Proxy, Shared};
use crate::content::BlobSource;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::ports::{ByteStream, GrowingReader};

/// Bytes gathered before one write + hash step. A batch stays under 2 MiB (1 MiB plus one received
/// piece): on VMs that hand free memory back to their host, one write of 2 MiB or more into a new
/// file ran 20–50× slower here (`dd` 512 MiB into a new file: 0.10 s in 1 MiB writes, 1.8–5 s in
/// 2 or 4 MiB ones), likely the page cache's 2 MiB folios being faulted back in from the host.
const FILL_CHUNK: usize = 1024 * 1024;
const READ_CHUNK: u64 = 512 * 1024;
/// How many of the last received bytes a fill keeps in memory for its followers.
const WINDOW: u64 = 4 * 1024 * 1024;

/// The bytes the fill received last, still in memory: followers near the live edge take their
/// bytes from here as soon as they arrive, not from the file once written.
#[derive(Clone, Default)]
pub(super) struct Recent {
    start: u64,
    /// Where the received bytes end (`start` plus the pieces' lengths).
    end: u64,
    pieces: Arc<Vec<Bytes>>,
}

impl Recent {
    /// Up to `max` bytes at `off`, when the window holds `off` (a view, not a copy).
    fn slice(&self, off: u64, max: u64) -> Option<Bytes> {
        let mut at = self.start;
        for p in self.pieces.iter() {
            let len = p.len() as u64;
            if off >= at && off < at + len {
                let from = (off - at) as usize;
                let n = (at + len - off).min(max) as usize;
                return Some(p.slice(from..from + n));
            }
            at += len;
        }
        None
    }
}

/// The state of one blob fill, watched by the clients following it.
#[derive(Clone)]
pub(super) enum Fill {
    Starting,
    Running {
        written: u64,
        size: u64,
        reader: Arc<dyn GrowingReader>,
        recent: Recent,
    },
    Done {
        size: u64,
        reader: Arc<dyn GrowingReader>,
    },
    /// Another replica filled it: read it from the store.
    Cached {
        size: u64,
    },
    Failed(FillError),
}

/// A fill in flight that a client follows.
pub struct Following(watch::Receiver<Fill>);

/// The fills in flight on this replica, by digest.
pub(super) type Fills = std::sync::Mutex<std::collections::HashMap<Digest, watch::Receiver<Fill>>>;

/// How long a fill lease lasts without renewal (a replica that dies mid-fill is replaced after
/// this long); the filling replica renews it every third of that.
const LEASE_TTL_SECS: i64 = 10;

#[derive(Clone)]
pub(super) enum FillError {
    NotFound(String),
    Denied(String),
    Throttled(Option<u64>, String),
    Unavailable(String),
}

impl FillError {
    fn from_error(e: &Error) -> FillError {
        match e {
            Error::Registry(ErrorCode::BlobUnknown, m) | Error::NotFound(m) => FillError::NotFound(m.clone()),
            Error::Denied(m) => FillError::Denied(m.clone()),
            Error::Throttled { retry_after, message } => FillError::Throttled(*retry_after, message.clone()),
            other => FillError::Unavailable(other.to_string()),
        }
    }

    fn to_error(&self) -> Error {
        match self.clone() {
            FillError::NotFound(m) => Error::Registry(ErrorCode::BlobUnknown, m),
            FillError::Denied(m) => Error::Denied(m),
            FillError::Throttled(retry_after, message) => Error::Throttled { retry_after, message },
            FillError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}

impl Proxy {
    /// Prepares to serve a blob: from the cache, or by starting or joining its fill.
    pub(super) async fn cached_blob(&self, up: &UpstreamRepo, digest: &Digest) -> Result<BlobSource> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        let d = digest;
        let referenced = s.cache.blob_referenced(repo, d).await;
        if super::held::unreachable(&referenced)
            && let Some(size) = s.held.blob(repo, d)
        {
            Metrics::inc(&s.metrics.blob_hits);
            return Ok(BlobSource::Stored { size });
        }
        if !referenced? {
            return Err(Error::Registry(
                ErrorCode::BlobUnknown,
                format!(
                    "blob {d} is not referenced by a manifest of {} fetched here; pull the manifest first",
                    up.canonical()
                ),
            ));
        }
        if let Some(size) = s.content.blob_size(d).await? {
            Metrics::inc(&s.metrics.blob_hits);
            s.cache.touch_blob(d, s.clock.now()).await?;
            s.held.blob_served(repo, d, size);
            return Ok(BlobSource::Stored { size });
        }
        let mut watch = {
            let mut fills = s.fills.lock().map_err(|_| Error::storage("fill table poisoned"))?;
            match fills.get(d) {
                Some(w) => {
                    Metrics::inc(&s.metrics.singleflight_waits);
                    w.clone()
                }
                None => {
                    Metrics::inc(&s.metrics.blob_misses);
                    let (tx, rx) = watch::channel(Fill::Starting);
                    fills.insert(d.clone(), rx.clone());
                    tokio::spawn(run_fill(s.clone(), up.clone(), digest.clone(), tx));
                    rx
                }
            }
        };
        loop {
            let state = watch.borrow_and_update().clone();
            match state {
                Fill::Starting => {}
                Fill::Running { size, .. } | Fill::Done { size, .. } => {
                    return Ok(BlobSource::Following { size, fill: Following(watch) });
                }
                Fill::Cached { size } => return Ok(BlobSource::Stored { size }),
                Fill::Failed(e) => return Err(e.to_error()),
            }
            if watch.changed().await.is_err() {
                // The fill ended between two looks: it is cached now, or it failed.
                return match s.content.blob_size(d).await? {
                    Some(size) => Ok(BlobSource::Stored { size }),
                    None => Err(Error::Unavailable(format!("fetching {d} from {} failed", up.registry))),
                };
            }
        }
    }

    /// Streams `range` of a blob prepared by `cached_blob`.
    pub(super) async fn read_blob(&self, source: BlobSource, digest: &Digest, range: ByteRange) -> Result<ByteStream> {
        match source {
            BlobSource::Following { fill: Following(watch), .. } => Ok(follow(watch, range.start, range.end + 1)),
            _ => self.shared.blobs.read(digest, range.start, range.len()).await,
        }
    }
}

/// A stream of `[start, end)` of a fill, reading the growing file as bytes arrive.
fn follow(watch: watch::Receiver<Fill>, start: u64, end: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold((watch, start, false), move |(mut w, off, closed)| async move {
        if off >= end {
            return None;
        }
        let mut closed = closed;
        loop {
            let state = w.borrow_and_update().clone();
            let (available, reader) = match state {
                Fill::Starting => (0, None),
                // Hold back the last byte until the digest is verified.
                Fill::Running { written, size, reader, recent } => {
                    let held = size.saturating_sub(1);
                    let max = recent.end.min(held).saturating_sub(off).min(end - off).min(READ_CHUNK);
                    if let Some(b) = recent.slice(off, max).filter(|_| max > 0) {
                        let next = off + b.len() as u64;
                        return Some((Ok(b), (w, next, closed)));
                    }
                    // Behind the window: the file has it once written.
                    (written.min(held), Some(reader))
                }
                Fill::Done { size, reader } => (size, Some(reader)),
                Fill::Cached { .. } => {
                    let err = std::io::Error::other("blob fill moved to another replica");
                    return Some((Err(err), (w, end, true)));
                }
                Fill::Failed(e) => {
                    let err = std::io::Error::other(e.to_error().to_string());
                    return Some((Err(err), (w, end, true)));
                }
            };
            if let Some(reader) = reader
                && off < available
            {
                let n = (available - off).min(end - off).min(READ_CHUNK) as usize;
                // The bytes were written a moment ago and sit in the page cache: read them on
                // this task rather than paying a blocking-pool handoff per chunk.
                let mut buf = BytesMut::zeroed(n);
                let read = reader.read_at(&mut buf, off).map(|got| {
                    buf.truncate(got);
                    buf.freeze()
                });
                return match read {
                    Ok(b) if !b.is_empty() => {
                        let next = off + b.len() as u64;
                        Some((Ok(b), (w, next, closed)))
                    }
                    Ok(_) => {
                        Some((Err(std::io::Error::other("cached blob is shorter than announced")), (w, end, true)))
                    }
                    Err(e) => Some((Err(e), (w, end, true))),
                };
            }
            if closed {
                return Some((Err(std::io::Error::other("blob fill ended unexpectedly")), (w, end, true)));
            }
            if w.changed().await.is_err() {
                closed = true;
            }
        }
    }))
}

/// Waits until this process holds the fill lease of blob `d` — `None` — or another replica has
/// stored the blob — its size.
async fn lease_or_cached(s: &Shared, d: &Digest) -> Result<Option<u64>> {
    let lease = format!("fill:{d}");
    loop {
        if let Some(size) = s.content.blob_size(d).await? {
            return Ok(Some(size));
        }
        if s.cluster.acquire_lease(&lease, &s.holder, s.clock.now(), LEASE_TTL_SECS).await? {
            // It may have been stored just before the other replica let go.
            if let Some(size) = s.content.blob_size(d).await? {
                s.cluster.release_lease(&lease, &s.holder).await?;
                return Ok(Some(size));
            }
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn run_fill(s: Arc<Shared>, up: UpstreamRepo, digest: Digest, tx: watch::Sender<Fill>) {
    let tx = Arc::new(tx);
    let d = &digest;
    // One fill among replicas: wait for another replica's, or take the lease and keep it.
    let elsewhere = match lease_or_cached(&s, d).await {
        Ok(None) => None,
        Ok(Some(size)) => Some(Fill::Cached { size }),
        Err(e) => Some(Fill::Failed(FillError::from_error(&e))),
    };
    if let Some(state) = elsewhere {
        let _ = tx.send(state);
        if let Ok(mut fills) = s.fills.lock() {
            fills.remove(d);
        }
        return;
    }
    let lease = format!("fill:{d}");
    let renew = {
        let (s, lease) = (s.clone(), lease.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs((LEASE_TTL_SECS / 3) as u64)).await;
                let _ = s.cluster.acquire_lease(&lease, &s.holder, s.clock.now(), LEASE_TTL_SECS).await;
            }
        })
    };
    let id = uuid::Uuid::new_v4().to_string();
    let result = fill(&s, &up, &digest, &id, &tx).await;
    renew.abort();
    let _ = s.cluster.release_lease(&lease, &s.holder).await;
    if let Err(e) = result {
        Metrics::inc(&s.metrics.upstream_errors);
        tracing::warn!(image = %up.canonical(), digest = %d, error = %e, "blob fill failed; nothing cached");
        let _ = s.blobs.upload_delete(&id).await;
        let _ = tx.send(Fill::Failed(FillError::from_error(&e)));
    }
    if let Ok(mut fills) = s.fills.lock() {
        fills.remove(d);
    }
    drop(tx);
    if s.config.cache_max_bytes > 0
        && let Err(e) = enforce_budget(&s).await
    {
        tracing::error!(error = %e, "cache eviction failed");
    }
}

/// Fetches one blob. The network loop keeps the last bytes in memory for followers and feeds a
/// bounded channel (a few MiB per fill at most) to one blocking thread that writes, publishes how
/// far the file goes, and hashes; so followers get bytes as they arrive, and the writer keeps up.
async fn fill(s: &Shared, up: &UpstreamRepo, digest: &Digest, id: &str, tx: &Arc<watch::Sender<Fill>>) -> Result<u64> {
    let fetched = s.upstream.blob(up, &digest.to_string()).await?;
    let size = fetched.size;
    s.blobs.upload_create(id).await?;
    let reader = s.blobs.upload_open(id).await?;
    let mut out = s.blobs.upload_writer(id).await?;
    let _ = tx.send(Fill::Running { written: 0, size, reader: reader.clone(), recent: Recent::default() });
    let (to_writer, mut writes) = tokio::sync::mpsc::channel::<Vec<Bytes>>(4);
    let (progress, metrics, algo) = (tx.clone(), s.metrics.clone(), digest.algorithm());
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, Digest)> {
        let mut written = 0u64;
        let mut hasher = Hasher::new(algo);
        while let Some(pieces) = writes.blocking_recv() {
            write_batch(&mut out, &pieces)?;
            let n = pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            written += n;
            metrics.upstream_bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            publish_written(&progress, written);
            pieces.iter().for_each(|p| hasher.update(p));
        }
        out.flush()?;
        Ok((written, hasher.finish()))
    });
    let received = receive(fetched.body, size, digest, tx, &to_writer).await;
    drop(to_writer);
    let (written, got) = writer.await.map_err(|e| Error::storage_from("", e))??;
    received?;
    if written != size {
        return Err(Error::Unavailable(format!("upstream sent {written} of {size} bytes of {digest}")));
    }
    if &got != digest {
        return Err(Error::Unavailable(format!("upstream sent content with digest {got} for {digest}")));
    }
    // Verified: followers may have the last byte now, while the blob is made durable.
    let _ = tx.send(Fill::Done { size, reader });
    s.blobs.upload_commit(id, digest, size).await?;
    s.cache.put_cached_blob(digest, size, s.clock.now()).await?;
    Ok(size)
}

/// Publishes how far the file goes. Only followers behind the in-memory window wait for the
/// file, so they are woken only when the file was behind the window too.
fn publish_written(progress: &watch::Sender<Fill>, written: u64) {
    progress.send_if_modified(|f| match f {
        Fill::Running { written: w, recent, .. } => std::mem::replace(w, written) < recent.start,
        _ => false,
    });
}

/// Writes a batch with as few system calls as the file takes (one `writev` when it takes all).
fn write_batch(out: &mut dyn std::io::Write, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = pieces.iter().map(|p| std::io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves the upstream body to the writer in batches of about `FILL_CHUNK` bytes (the pieces as
/// received, not copied), publishing the last `WINDOW` bytes to followers as each batch arrives.
async fn receive(
    mut body: ByteStream,
    size: u64,
    digest: &Digest,
    progress: &watch::Sender<Fill>,
    writer: &tokio::sync::mpsc::Sender<Vec<Bytes>>,
) -> Result<()> {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut total = 0u64;
    let mut window: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
    let mut window_start = 0u64;
    loop {
        let next = body.next().await;
        let done = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.map_err(|e| Error::Unavailable(format!("upstream body of {digest} broke off: {e}")))?;
            total += chunk.len() as u64;
            if total > size {
                return Err(Error::Unavailable(format!(
                    "upstream sent more than the announced {size} bytes of {digest}"
                )));
            }
            batched += chunk.len();
            batch.push(chunk);
        }
        if batched >= FILL_CHUNK || (done && !batch.is_empty()) {
            batched = 0;
            window.extend(batch.iter().cloned());
            while let Some(first) = window.front()
                && total - window_start - first.len() as u64 >= WINDOW
            {
                window_start += first.len() as u64;
                window.pop_front();
            }
            let recent = Recent { start: window_start, end: total, pieces: Arc::new(window.iter().cloned().collect()) };
            progress.send_modify(|f| {
                if let Fill::Running { recent: r, .. } = f {
                    *r = recent;
                }
            });
            writer.send(std::mem::take(&mut batch)).await.map_err(|_| Error::storage("blob writer stopped"))?;
        }
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that takes at most 3 bytes per call, and fails once with `Interrupted`.
    struct Trickle(Vec<u8>, bool);

    impl std::io::Write for Trickle {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = b.len().min(3);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
            if !std::mem::replace(&mut self.1, true) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            self.write(first)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_written_whole_across_short_writes() {
        let pieces =
            [Bytes::from_static(b"hello "), Bytes::new(), Bytes::from_static(b"wor"), Bytes::from_static(b"ld")];
        let mut out = Trickle(Vec::new(), false);
        write_batch(&mut out, &pieces).unwrap();
        assert_eq!(out.0, b"hello world");
    }

    /// A fill's file, all of it readable (the watch says how much is written).
    struct Mem(Vec<u8>);

    impl GrowingReader for Mem {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            let rest = self.0.get(offset as usize..).unwrap_or_default();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        }
    }

    #[tokio::test]
    async fn followers_take_the_window_the_file_behind_it_and_the_last_byte_once_verified() {
        use futures_util::FutureExt as _;
        let reader: Arc<dyn GrowingReader> = Arc::new(Mem(b"0123456789".to_vec()));
        let recent = Recent { start: 6, end: 10, pieces: Arc::new(vec![Bytes::from_static(b"6789")]) };
        let (tx, rx) = watch::channel(Fill::Running { written: 0, size: 10, reader: reader.clone(), recent });
        let mut s = follow(rx, 0, 10);
        // Polled once, without waiting: what the follower has now (`None` while it waits).
        let mut now = move || s.next().now_or_never().map(|b| b.map(|b| b.unwrap()));
        assert_eq!(now(), None, "0 is neither written nor in the window");
        publish_written(&tx, 4);
        assert_eq!(now(), Some(Some(Bytes::from_static(b"0123"))), "woken by the file");
        assert_eq!(now(), None, "4 is in the gap");
        publish_written(&tx, 6);
        assert_eq!(now(), Some(Some(Bytes::from_static(b"45"))), "woken by the file");
        assert_eq!(now(), Some(Some(Bytes::from_static(b"678"))), "from the window, the last byte held back");
        publish_written(&tx, 8);
        assert_eq!(now(), None, "the last byte waits for the digest");
        tx.send(Fill::Done { size: 10, reader }).unwrap();
        assert_eq!(now(), Some(Some(Bytes::from_static(b"9"))));
        assert_eq!(now(), Some(None), "the end");
    }

    #[test]
    fn recent_bytes_are_sliced_where_a_follower_stands() {
        let pieces = Arc::new(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")]);
        let r = Recent { start: 100, end: 108, pieces };
        assert_eq!(r.slice(100, 10).as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.slice(101, 1).as_deref(), Some(&b"b"[..]));
        assert_eq!(r.slice(103, 10).as_deref(), Some(&b"defgh"[..]), "one piece at a time");
        assert_eq!(r.slice(105, 2).as_deref(), Some(&b"fg"[..]));
        assert_eq!(r.slice(99, 10), None, "before the window: read the file");
        assert_eq!(r.slice(108, 10), None, "past the window");
    }
}
