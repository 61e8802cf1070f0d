//! Filesystem blob store. Blobs live at `blobs/<algo>/<first two hex>/<hex>`, uploads at
//! `uploads/<id>`. A commit fsyncs the upload and renames it into place, so a blob path only
//! ever holds complete, verified content. Reads run on a blocking thread that sends 256 KiB
//! chunks through a two-slot channel: memory per download stays under a megabyte.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::ports::{BlobStore, ByteStream, GrowingReader};
use tokio::sync::mpsc;

const READ_CHUNK: usize = 256 * 1024;

pub struct FsBlobs {
    root: PathBuf,
    stats: BackendStats,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Storage(e.to_string()))?.map_err(Error::from)
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
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let d: oci::Digest = digest.parse().map_err(|_| Error::Invalid(format!("invalid digest {digest}")))?;
        Ok(self.root.join("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex()))
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

fn stream_file(file: File, mut offset: u64, mut remaining: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        while remaining > 0 {
            let want = remaining.min(READ_CHUNK as u64) as usize;
            let mut buf = BytesMut::zeroed(want);
            match file.read_at(&mut buf, offset) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "blob shorter than recorded",
                    )));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    offset += n as u64;
                    remaining -= n as u64;
                    if tx.blocking_send(Ok(buf.freeze())).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

impl portcullis_core::ports::Measured for FsBlobs {
    fn stats(&self) -> &BackendStats {
        &self.stats
    }
}

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

    async fn upload_commit(&self, id: &str, digest: &str, size: u64) -> Result<()> {
        let from = self.upload_path(id)?;
        let to = self.blob_path(digest)?;
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

    async fn stat(&self, digest: &str) -> Result<Option<u64>> {
        let p = self.blob_path(digest)?;
        match tokio::fs::metadata(p).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &str, offset: u64, len: u64) -> Result<ByteStream> {
        let p = self.blob_path(digest)?;
        let file = blocking(move || File::open(p)).await.map_err(|e| match e {
            Error::Storage(m) if m.contains("No such file") => Error::NotFound("blob content missing".into()),
            e => e,
        })?;
        Ok(stream_file(file, offset, len))
    }

    async fn delete(&self, digest: &str) -> Result<()> {
        let p = self.blob_path(digest)?;
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

    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir)?.flatten() {
                let modified = e.metadata()?.modified()?;
                let secs = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
                out.push((e.file_name().to_string_lossy().into_owned(), secs));
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn redirect_url(&self, _digest: &str) -> Result<Option<String>> {
        Ok(None)
    }

    async fn quarantine(&self, digest: &str) -> Result<()> {
        let from = self.blob_path(digest)?;
        let to = self.root.join("quarantine").join(digest.replace(':', "-"));
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
        .map_err(|e| Error::Storage(format!("the data directory cannot be written: {e}")))
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
}
