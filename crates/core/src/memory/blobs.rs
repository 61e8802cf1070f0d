//! `MemoryBlobs`: blob bytes and uploads in memory, with the filesystem store's semantics
//! (positional writes that cut what follows, commits only of bytes held, readers of an upload
//! that stay valid after its commit).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use crate::clock::system_now;
use crate::error::{Error, Result};
use crate::metrics::BackendStats;
use crate::model::StoredUpload;
use crate::ports::{BlobStore, ByteStream, GrowingReader, Measured};
use oci::Digest;

type Buffer = Arc<RwLock<Vec<u8>>>;

#[derive(Default)]
struct State {
    /// upload id → (bytes, last written)
    uploads: BTreeMap<String, (Buffer, i64)>,
    blobs: BTreeMap<String, Bytes>,
    quarantined: BTreeMap<String, Bytes>,
}

/// The in-memory blob store.
pub struct MemoryBlobs {
    state: Mutex<State>,
    stats: BackendStats,
}

impl Default for MemoryBlobs {
    fn default() -> Self {
        MemoryBlobs { state: Mutex::default(), stats: BackendStats::new("blob_store", "memory") }
    }
}

fn poisoned() -> Error {
    Error::storage("memory blob store poisoned")
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::storage(format!("invalid upload id {id:?}")));
    }
    Ok(())
}

impl MemoryBlobs {
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    fn upload(&self, id: &str) -> Result<Buffer> {
        check_id(id)?;
        let s = self.state.lock().map_err(|_| poisoned())?;
        s.uploads.get(id).map(|(b, _)| b.clone()).ok_or_else(|| Error::storage(format!("no upload {id}")))
    }

    fn touch(&self, id: &str) {
        if let Ok(mut s) = self.state.lock()
            && let Some(u) = s.uploads.get_mut(id)
        {
            u.1 = system_now();
        }
    }
}

fn one_chunk(b: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::iter(if b.is_empty() { vec![] } else { vec![Ok(b)] }))
}

/// Appends to an upload's buffer.
struct Appender(Buffer);

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads an upload's buffer, also after its commit.
struct Reader(Buffer);

impl GrowingReader for Reader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let data = self.0.read().map_err(|_| std::io::Error::other("poisoned"))?;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

impl Measured for MemoryBlobs {
    fn stats(&self) -> &BackendStats {
        &self.stats
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn upload_create(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        s.uploads.insert(id.into(), (Buffer::default(), system_now()));
        Ok(())
    }

    async fn upload_write(&self, id: &str, offset: u64, data: Bytes) -> Result<()> {
        let buf = self.upload(id)?;
        {
            let mut b = buf.write().map_err(|_| poisoned())?;
            if (b.len() as u64) < offset {
                return Err(Error::storage(format!("upload holds {} bytes, {offset} were recorded", b.len())));
            }
            b.truncate(offset as usize);
            b.extend_from_slice(&data);
        }
        self.touch(id);
        Ok(())
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let buf = self.upload(id)?;
        let bytes = Bytes::from(buf.read().map_err(|_| poisoned())?.clone());
        Ok(one_chunk(bytes))
    }

    async fn upload_writer(&self, id: &str) -> Result<Box<dyn Write + Send>> {
        Ok(Box::new(Appender(self.upload(id)?)))
    }

    async fn upload_open(&self, id: &str) -> Result<Arc<dyn GrowingReader>> {
        Ok(Arc::new(Reader(self.upload(id)?)))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
        let buf = self.upload(id)?;
        let bytes = {
            let b = buf.read().map_err(|_| poisoned())?;
            if (b.len() as u64) < size {
                return Err(Error::storage(format!("upload holds {} bytes, {size} were recorded", b.len())));
            }
            Bytes::copy_from_slice(&b[..size as usize])
        };
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        s.blobs.entry(digest.to_string()).or_insert(bytes);
        s.uploads.remove(id);
        Ok(())
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        self.state.lock().map_err(|_| poisoned())?.uploads.remove(id);
        Ok(())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.state.lock().map_err(|_| poisoned())?.blobs.get(&digest.to_string()).map(|b| b.len() as u64))
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let s = self.state.lock().map_err(|_| poisoned())?;
        let b = s.blobs.get(&digest.to_string()).ok_or_else(|| Error::NotFound("blob content missing".into()))?;
        let start = (offset as usize).min(b.len());
        let end = (start + len as usize).min(b.len());
        Ok(one_chunk(b.slice(start..end)))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.state.lock().map_err(|_| poisoned())?.blobs.remove(&digest.to_string());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.state.lock().map_err(|_| poisoned())?.blobs.keys().cloned().collect())
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .uploads
            .iter()
            .map(|(k, (_, t))| StoredUpload { id: k.clone(), written_at: *t })
            .collect())
    }

    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    async fn quarantine(&self, digest: &Digest) -> Result<()> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        let b = s.blobs.remove(&digest.to_string()).ok_or_else(|| Error::NotFound(format!("no blob {digest}")))?;
        s.quarantined.insert(digest.to_string(), b);
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
