//! Filesystem blob store. Blobs live at `blobs/<algo>/<first two hex>/<hex>`, uploads at
//! `uploads/<id>`. A commit fsyncs the upload and renames it into place, so a blob path only
//! ever holds complete, verified content. A download reads 256 KiB at a time when the client
//! is ready for more: on the serving task itself while the bytes are in the page cache (as a hot
//! blob's are; `RWF_NOWAIT`), on a blocking thread when they must come from the disk, so a cold
//! disk never stalls the runtime and a hot blob costs no thread handoff per chunk.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use oci::Digest;
use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::StoredUpload;
use portcullis_core::ports::{BlobStore, ByteStream, GrowingReader};

const READ_CHUNK: usize = 256 * 1024;

pub struct FsBlobs {
    root: PathBuf,
    stats: BackendStats,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::storage_from("", e))?.map_err(Error::from)
}

/// Validates an upload id (a UUID from us) before it becomes a path.
fn upload_name(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Invalid("invalid upload id".into()));
    }
    Ok(id)
}

impl FsBlobs {
    /// Opens (creating) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<FsBlobs> {
        for d in ["blobs", "uploads", "quarantine"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(FsBlobs { root: root.to_owned(), stats: BackendStats::new("blob_store", "filesystem") })
    }

    /// Path of a blob; the digest was validated by the caller (`oci::Digest`).
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex())
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.root.join("uploads").join(upload_name(id)?))
    }

    fn list_digests(root: &Path) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for algo in ["sha256", "sha512"] {
            let dir = root.join("blobs").join(algo);
            let Ok(prefixes) = std::fs::read_dir(&dir) else { continue };
            for p in prefixes.flatten() {
                for f in std::fs::read_dir(p.path())?.flatten() {
                    out.push(format!("{algo}:{}", f.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// An open file read at offsets; valid after the file is renamed.
struct OpenFile(File);

impl GrowingReader for OpenFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

/// Cuts an upload file to `len` bytes, dropping bytes written past what was recorded (a write
/// whose metadata update never happened); fails when the file is shorter.
fn cut_to(f: &File, len: u64) -> std::io::Result<()> {
    let have = f.metadata()?.len();
    if have < len {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("upload holds {have} bytes, {len} were recorded"),
        ));
    }
    if have > len { f.set_len(len) } else { Ok(()) }
}

/// `remaining` bytes of `file` from `offset`, a chunk each time the stream is polled.
fn stream_file(file: File, offset: u64, remaining: u64) -> ByteStream {
    let state = (Arc::new(file), offset, remaining);
    Box::pin(futures_util::stream::unfold(state, |(file, off, left)| async move {
        if left == 0 {
            return None;
        }
        let want = left.min(READ_CHUNK as u64) as usize;
        let read = match read_cached(&file, off, want) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => {
                let f = file.clone();
                tokio::task::spawn_blocking(move || read_chunk(&f, off, want))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(e),
        };
        match read {
            Ok(b) if b.is_empty() => {
                Some((Err(std::io::Error::new(ErrorKind::UnexpectedEof, "blob shorter than recorded")), (file, off, 0)))
            }
            Ok(b) => {
                let n = b.len() as u64;
                Some((Ok(b), (file, off + n, left - n)))
            }
            Err(e) => Some((Err(e), (file, off, 0))),
        }
    }))
}

/// Up to `n` bytes at `off` if the page cache holds them (`preadv2` with `RWF_NOWAIT`: the call
/// never waits for the disk), read into a fresh buffer that is not zeroed first; `None` when
/// they are not cached or the filesystem cannot say (read them with [`read_chunk`]).
fn read_cached(file: &File, off: u64, n: usize) -> std::io::Result<Option<Bytes>> {
    let Ok(at) = libc::off_t::try_from(off) else { return Ok(None) };
    let mut buf = Vec::<u8>::with_capacity(n);
    let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: n };
    loop {
        // SAFETY: the one iovec spans `buf`'s allocation of `n` bytes, alive across the call;
        // the kernel writes at most `n` bytes there and says how many.
        let got = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        if let Ok(got) = usize::try_from(got) {
            // SAFETY: the kernel initialised the first `got` (≤ n) bytes.
            unsafe { buf.set_len(got.min(n)) };
            return Ok(Some(Bytes::from(buf)));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Not cached, or no RWF_NOWAIT here (old kernel, filesystem without it).
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Up to `n` bytes at `off`, waiting for the disk if need be (on a blocking thread).
fn read_chunk(file: &File, off: u64, n: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(n);
    loop {
        match file.read_at(&mut buf, off) {
            Ok(got) => {
                buf.truncate(got);
                return Ok(buf.freeze());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl portcullis_core::ports::Measured for FsBlobs {
    fn stats(&self) -> &BackendStats {
        &self.stats
    }
}

impl crate::measure::Guarded for FsBlobs {}

measured_impl!(BlobStore, FsBlobs, {
    async fn upload_create(&self, id: &str) -> Result<()> {
        let p = self.upload_path(id)?;
        blocking(move || File::create(p).map(|_| ())).await
    }

    async fn upload_write(&self, id: &str, offset: u64, data: Bytes) -> Result<()> {
        let p = self.upload_path(id)?;
        blocking(move || {
            let f = OpenOptions::new().write(true).open(p)?;
            cut_to(&f, offset)?;
            f.write_all_at(&data, offset)
        })
        .await
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let p = self.upload_path(id)?;
        let file = blocking(move || File::open(p)).await?;
        let len = file.metadata()?.len();
        Ok(stream_file(file, 0, len))
    }

    async fn upload_writer(&self, id: &str) -> Result<Box<dyn Write + Send>> {
        let p = self.upload_path(id)?;
        let file = blocking(move || OpenOptions::new().append(true).open(p)).await?;
        Ok(Box::new(file) as Box<dyn Write + Send>)
    }

    async fn upload_open(&self, id: &str) -> Result<std::sync::Arc<dyn GrowingReader>> {
        let p = self.upload_path(id)?;
        let file = blocking(move || File::open(p)).await?;
        Ok(std::sync::Arc::new(OpenFile(file)) as std::sync::Arc<dyn GrowingReader>)
    }

    async fn upload_commit(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
        let from = self.upload_path(id)?;
        let to = self.blob_path(digest);
        blocking(move || {
            if to.exists() {
                return std::fs::remove_file(&from);
            }
            let f = OpenOptions::new().write(true).open(&from)?;
            cut_to(&f, size)?;
            f.sync_all()?;
            let dir = to.parent().ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&from, &to)?;
            File::open(dir)?.sync_all()
        })
        .await
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        let p = self.upload_path(id)?;
        blocking(move || match std::fs::remove_file(p) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            r => r,
        })
        .await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(digest);
        match tokio::fs::metadata(p).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let p = self.blob_path(digest);
        // Told apart by the OS error's kind, never its text.
        let file = blocking(move || {
            File::open(p).map(Some).or_else(|e| if e.kind() == ErrorKind::NotFound { Ok(None) } else { Err(e) })
        })
        .await?
        .ok_or_else(|| Error::NotFound("blob content missing".into()))?;
        Ok(stream_file(file, offset, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        blocking(move || match std::fs::remove_file(p) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            r => r,
        })
        .await
    }

    async fn list(&self) -> Result<Vec<String>> {
        let root = self.root.clone();
        blocking(move || FsBlobs::list_digests(&root)).await
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir)?.flatten() {
                let modified = e.metadata()?.modified()?;
                let secs = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
                out.push(StoredUpload { id: e.file_name().to_string_lossy().into_owned(), written_at: secs });
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
        .await
    }

    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    async fn quarantine(&self, digest: &Digest) -> Result<()> {
        let from = self.blob_path(digest);
        let to = self.root.join("quarantine").join(format!("{}-{}", digest.algorithm().as_str(), digest.hex()));
        blocking(move || std::fs::rename(from, to)).await
    }

    /// Ready when blobs can be read and uploads written (a file is made and removed).
    async fn ping(&self) -> Result<()> {
        let (blobs, probe) = (self.root.join("blobs"), self.root.join("uploads").join(".ready"));
        blocking(move || {
            std::fs::metadata(blobs)?;
            std::fs::write(&probe, b"")?;
            std::fs::remove_file(&probe)
        })
        .await
        .map_err(|e| Error::storage_from("the data directory cannot be written", e))
    }
});

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_blob_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobs::open(dir.path()).unwrap();
        crate::testsuite::blob_suite(&store).await;
        assert_eq!(
            portcullis_core::ports::BlobStore::list(&store).await.unwrap().len(),
            1,
            "one committed blob remains"
        );
    }

    /// A file of 1 MiB + 3 bytes whose byte `i` is `i % 251`.
    fn patterned(dir: &std::path::Path) -> (std::fs::File, Vec<u8>) {
        let data: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i % 251) as u8).collect();
        let path = dir.join("blob");
        std::fs::write(&path, &data).unwrap();
        (std::fs::File::open(&path).unwrap(), data)
    }

    async fn collect(mut s: portcullis_core::ports::ByteStream) -> std::io::Result<Vec<u8>> {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn streams_ranges_from_the_page_cache_and_from_the_disk() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let (f, data) = patterned(dir.path());
        // Hot: the bytes were just written.
        let hot = super::read_cached(&f, 7, 100).unwrap().expect("just written, so cached");
        assert_eq!(hot.as_ref(), &data[7..107]);
        for (off, len) in [(0, data.len()), (5, 300_000), ((1 << 20) - 2, 5), (262_144, 262_144)] {
            let f = f.try_clone().unwrap();
            let got = collect(super::stream_file(f, off as u64, len as u64)).await.unwrap();
            assert_eq!(got, &data[off..off + len], "range {off}+{len}");
        }
        // Cold: the pages dropped from the page cache, the blocking read answers.
        f.sync_all().unwrap();
        // SAFETY: an advice on an open descriptor; no memory is passed.
        assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
        assert!(super::read_cached(&f, 0, 10).unwrap().is_none(), "dropped pages are not read without waiting");
        assert_eq!(super::read_chunk(&f, 1 << 20, 10).unwrap().as_ref(), &data[1 << 20..]);
        let got = collect(super::stream_file(f.try_clone().unwrap(), 0, data.len() as u64)).await.unwrap();
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn a_file_shorter_than_recorded_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (f, data) = patterned(dir.path());
        let err = collect(super::stream_file(f, 0, data.len() as u64 + 10)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
