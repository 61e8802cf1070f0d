//! S3-compatible blob store (through `object_store`), for replicas sharing one bucket.
//!
//! Blobs live at `blobs/<algo>/<hex>`. An upload is a run of chunk objects
//! `uploads/<id>/<offset as 16 hex digits>` (listing order is byte order), so that any replica
//! can append to, read or commit it. A commit streams the chunks into one multipart upload of
//! the blob — S3 shows the object only when the upload completes, so a blob is visible only
//! whole — and then deletes the chunks. Readers opened on an upload in this process keep
//! working after the commit by reading the committed blob.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use oci::Digest;
use portcullis_core::error::{Error, Result};
use portcullis_core::metrics::BackendStats;
use portcullis_core::model::StoredUpload;
use portcullis_core::ports::{BlobStore, ByteStream, GrowingReader};

/// Parts of a blob's multipart upload (S3 wants at least 5 MiB per part but the last).
const PART: usize = 8 << 20;

/// Where the bucket is and how to sign in to it.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`, ...
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `https://host/bucket/key` instead of `https://bucket.host/key` (MinIO, Ceph, moto).
    pub path_style: bool,
    /// Hand out presigned blob URLs valid this long (`BlobStore::redirect_url`).
    pub redirect_ttl: Option<std::time::Duration>,
}

pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    /// Uploads committed by this process → their blob, for readers still open on them.
    committed: Arc<Mutex<HashMap<String, Digest>>>,
    stats: BackendStats,
    /// Signs blob URLs, with their lifetime, when redirects are on.
    signer: Option<(Arc<AmazonS3>, std::time::Duration)>,
}

fn storage(e: object_store::Error) -> Error {
    Error::storage_from("object store", e)
}

fn upload_name(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Invalid("invalid upload id".into()));
    }
    Ok(id)
}

fn blob_key(d: &Digest) -> Path {
    Path::from(format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
}

fn chunk_prefix(id: &str) -> Result<Path> {
    Ok(Path::from(format!("uploads/{}", upload_name(id)?)))
}

/// The chunks of an upload, in order: (offset, size, key).
async fn chunks(store: &dyn ObjectStore, id: &str) -> Result<Vec<(u64, u64, Path)>> {
    let prefix = chunk_prefix(id)?;
    let mut out: Vec<(u64, u64, Path)> = store
        .list(Some(&prefix))
        .map_ok(|m| {
            let offset = m.location.filename().and_then(|f| u64::from_str_radix(f, 16).ok()).unwrap_or(u64::MAX);
            (offset, m.size, m.location)
        })
        .try_collect()
        .await
        .map_err(storage)?;
    out.sort_by_key(|c| c.0);
    Ok(out)
}

fn end_of(chunks: &[(u64, u64, Path)]) -> u64 {
    chunks.last().map(|c| c.0 + c.1).unwrap_or(0)
}

type Chunks = Vec<(u64, u64, Path)>;

/// Splits an upload's chunks into the first `len` bytes and chunks past them (written before a
/// failure the metadata never recorded). Fails unless the chunks cover `len` exactly, without
/// gaps.
fn split_at(all: Chunks, len: u64) -> Result<(Chunks, Chunks)> {
    let (kept, stale): (Chunks, Chunks) = all.into_iter().partition(|c| c.0 < len);
    let contiguous = kept.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0) && kept.first().is_none_or(|c| c.0 == 0);
    if !contiguous || end_of(&kept) != len {
        return Err(Error::storage(format!("upload holds {} bytes, {len} were recorded", end_of(&kept))));
    }
    Ok((kept, stale))
}

async fn put_chunk(store: &dyn ObjectStore, id: &str, offset: u64, data: Bytes) -> Result<()> {
    let key = Path::from(format!("uploads/{}/{offset:016x}", upload_name(id)?));
    store.put(&key, PutPayload::from_bytes(data)).await.map_err(storage)?;
    Ok(())
}

fn stream(r: object_store::GetResult) -> ByteStream {
    Box::pin(r.into_stream().map_err(|e| std::io::Error::other(e.to_string())))
}

impl S3Blobs {
    pub fn open(c: &S3Config) -> Result<S3Blobs> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&c.endpoint)
            .with_allow_http(c.endpoint.starts_with("http://"))
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key)
            .with_virtual_hosted_style_request(!c.path_style)
            .build()
            .map_err(|e| Error::Invalid(format!("invalid S3 configuration: {e}")))?;
        let store = Arc::new(store);
        Ok(S3Blobs {
            signer: c.redirect_ttl.map(|ttl| (store.clone(), ttl)),
            store,
            committed: Arc::default(),
            stats: BackendStats::new("blob_store", "s3"),
        })
    }
}

/// Runs a future to completion from synchronous code — a blocking thread, or a runtime worker
/// (the proxy reads growing uploads inline), where `block_in_place` lets the worker block.
fn wait<T>(rt: &tokio::runtime::Handle, f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| rt.block_on(f))
}

/// Appends to an upload from a blocking thread: each write is one chunk object.
struct ChunkWriter {
    store: Arc<dyn ObjectStore>,
    id: String,
    offset: u64,
    rt: tokio::runtime::Handle,
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let data = Bytes::copy_from_slice(buf);
        wait(&self.rt, put_chunk(self.store.as_ref(), &self.id, self.offset, data))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads an upload (from a blocking thread) while it grows, and after its commit.
struct ChunkReader {
    store: Arc<dyn ObjectStore>,
    id: String,
    known: Mutex<Vec<(u64, u64, Path)>>,
    committed: Arc<Mutex<HashMap<String, Digest>>>,
    rt: tokio::runtime::Handle,
}

impl ChunkReader {
    fn get(&self, key: &Path, range: Range<u64>) -> std::io::Result<Bytes> {
        wait(&self.rt, self.store.get_range(key, range)).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

impl GrowingReader for ChunkReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let committed = self.committed.lock().ok().and_then(|m| m.get(&self.id).cloned());
        if let Some(digest) = committed {
            let key = blob_key(&digest);
            let size = wait(&self.rt, self.store.head(&key)).map_err(|e| std::io::Error::other(e.to_string()))?.size;
            if offset >= size {
                return Ok(0);
            }
            let data = self.get(&key, offset..size.min(offset + buf.len() as u64))?;
            buf[..data.len()].copy_from_slice(&data);
            return Ok(data.len());
        }
        // Never hold the lock while waiting on the store: a runtime worker blocked on it could
        // starve the I/O the wait needs.
        let mut known = self.known.lock().map_err(|_| std::io::Error::other("poisoned"))?.clone();
        if offset >= end_of(&known) {
            known = wait(&self.rt, chunks(self.store.as_ref(), &self.id))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Ok(mut k) = self.known.lock() {
                *k = known.clone();
            }
        }
        let Some((start, size, key)) = known.iter().find(|c| c.0 <= offset && offset < c.0 + c.1).cloned() else {
            return Ok(0);
        };
        let from = offset - start;
        let data = self.get(&key, from..size.min(from + buf.len() as u64))?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

impl S3Blobs {
    /// Writes a whole blob from a stream as one multipart upload, completed only when the
    /// content has `digest` (else aborted: nothing becomes visible). Returns its size.
    pub async fn put_verified(&self, digest: &Digest, mut body: ByteStream) -> Result<u64> {
        let mut hasher = oci::digest::Hasher::new(digest.algorithm());
        let mut w = WriteMultipart::new_with_chunk_size(
            self.store.put_multipart(&blob_key(digest)).await.map_err(storage)?,
            PART,
        );
        let mut n = 0u64;
        while let Some(b) = body.next().await {
            let b = match b {
                Ok(b) => b,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(Error::storage_from("", e));
                }
            };
            hasher.update(&b);
            n += b.len() as u64;
            w.wait_for_capacity(4).await.map_err(storage)?;
            w.put(b);
        }
        let got = hasher.finish();
        if got != *digest {
            let _ = w.abort().await;
            return Err(Error::Invalid(format!("content of {digest} has digest {got}")));
        }
        w.finish().await.map_err(storage)?;
        Ok(n)
    }
}

impl portcullis_core::ports::Measured for S3Blobs {
    fn stats(&self) -> &BackendStats {
        &self.stats
    }
}

impl crate::measure::Guarded for S3Blobs {}

measured_impl!(BlobStore, S3Blobs, {
    async fn upload_create(&self, id: &str) -> Result<()> {
        // An upload without chunks is empty; a stale one with this id is cleared.
        self.upload_delete(id).await
    }

    async fn upload_write(&self, id: &str, offset: u64, data: Bytes) -> Result<()> {
        // No listing per write: writes come at the recorded size, so the only chunk past it
        // is one an unrecorded write left at that same offset, which this put replaces (or the
        // commit leaves out).
        put_chunk(self.store.as_ref(), id, offset, data).await
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let keys: Vec<Path> = chunks(self.store.as_ref(), id).await?.into_iter().map(|c| c.2).collect();
        let store = self.store.clone();
        let s = futures_util::stream::iter(keys)
            .then(move |k| {
                let store = store.clone();
                async move { store.get(&k).await.map_err(|e| std::io::Error::other(e.to_string())) }
            })
            .map_ok(|r| r.into_stream().map_err(|e| std::io::Error::other(e.to_string())))
            .try_flatten();
        Ok(Box::pin(s) as ByteStream)
    }

    async fn upload_writer(&self, id: &str) -> Result<Box<dyn Write + Send>> {
        let offset = end_of(&chunks(self.store.as_ref(), id).await?);
        let rt = tokio::runtime::Handle::current();
        Ok(Box::new(ChunkWriter { store: self.store.clone(), id: upload_name(id)?.to_owned(), offset, rt })
            as Box<dyn Write + Send>)
    }

    async fn upload_open(&self, id: &str) -> Result<Arc<dyn GrowingReader>> {
        let reader = ChunkReader {
            store: self.store.clone(),
            id: upload_name(id)?.to_owned(),
            known: Mutex::default(),
            committed: self.committed.clone(),
            rt: tokio::runtime::Handle::current(),
        };
        Ok(Arc::new(reader) as Arc<dyn GrowingReader>)
    }

    async fn upload_commit(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
        let key = blob_key(digest);
        let (parts, stale) = split_at(chunks(self.store.as_ref(), id).await?, size)?;
        if self.stat(digest).await?.is_none() {
            let mut w =
                WriteMultipart::new_with_chunk_size(self.store.put_multipart(&key).await.map_err(storage)?, PART);
            for (_, _, k) in &parts {
                let mut s = self.store.get(k).await.map_err(storage)?.into_stream();
                while let Some(b) = s.next().await {
                    w.wait_for_capacity(4).await.map_err(storage)?;
                    w.put(b.map_err(storage)?);
                }
            }
            w.finish().await.map_err(storage)?;
        }
        if let Ok(mut m) = self.committed.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.to_owned(), digest.clone());
        }
        for (_, _, k) in parts.into_iter().chain(stale) {
            self.store.delete(&k).await.map_err(storage)?;
        }
        Ok(())
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        for (_, _, k) in chunks(self.store.as_ref(), id).await? {
            match self.store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage(e)),
            }
        }
        Ok(())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.store.head(&blob_key(digest)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream> {
        let opts = GetOptions { range: Some(GetRange::Bounded(offset..offset + len)), ..Default::default() };
        match self.store.get_opts(&blob_key(digest), opts).await {
            Ok(r) => Ok(stream(r)),
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound("blob content missing".into())),
            Err(e) => Err(storage(e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        match self.store.delete(&blob_key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .store
            .list(Some(&Path::from("blobs")))
            .map_ok(|m| {
                let mut parts = m.location.parts();
                let (_, algo, hex) = (parts.next(), parts.next(), parts.next());
                format!(
                    "{}:{}",
                    algo.map(|p| p.as_ref().to_owned()).unwrap_or_default(),
                    hex.map(|p| p.as_ref().to_owned()).unwrap_or_default()
                )
            })
            .try_collect()
            .await
            .map_err(storage)?;
        out.sort();
        Ok(out)
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>> {
        let mut latest: std::collections::BTreeMap<String, i64> = Default::default();
        let mut objects = self.store.list(Some(&Path::from("uploads")));
        while let Some(m) = objects.try_next().await.map_err(storage)? {
            if let Some(id) = m.location.parts().nth(1) {
                let t = latest.entry(id.as_ref().to_owned()).or_insert(i64::MIN);
                *t = (*t).max(m.last_modified.timestamp());
            }
        }
        Ok(latest.into_iter().map(|(id, written_at)| StoredUpload { id, written_at }).collect())
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        let Some((signer, ttl)) = &self.signer else { return Ok(None) };
        let url =
            signer.signed_url(object_store::signer::Method::GET, &blob_key(digest), *ttl).await.map_err(storage)?;
        Ok(Some(url.to_string()))
    }

    async fn quarantine(&self, digest: &Digest) -> Result<()> {
        let to = Path::from(format!("quarantine/{}-{}", digest.algorithm().as_str(), digest.hex()));
        self.store.copy(&blob_key(digest), &to).await.map_err(storage)?;
        self.delete(digest).await
    }

    async fn ping(&self) -> Result<()> {
        match self.store.head(&Path::from("portcullis-ping")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }
});

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_blob_suite() {
        let store = super::S3Blobs::open(&crate::testsuite::test_bucket()).unwrap();
        crate::testsuite::blob_suite(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_a_multipart_upload_visible_only_whole() {
        use bytes::Bytes;
        use portcullis_core::ports::BlobStore;
        let store = super::S3Blobs::open(&crate::testsuite::test_bucket()).unwrap();
        // 20 MiB in 3 appends: more than one 8 MiB part
        let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 253) as u8).collect();
        let digest = &"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap();
        store.upload_create("0b-1").await.unwrap();
        for (i, part) in data.chunks(7 << 20).enumerate() {
            store.upload_write("0b-1", (i as u64) * (7 << 20), Bytes::copy_from_slice(part)).await.unwrap();
        }
        // another store (a second replica) sees the same upload
        let other = super::S3Blobs {
            store: store.store.clone(),
            committed: Default::default(),
            stats: portcullis_core::metrics::BackendStats::new("blob_store", "s3"),
            signer: None,
        };
        let mut read = Vec::new();
        let mut s = other.upload_read("0b-1").await.unwrap();
        while let Some(b) = futures_util::StreamExt::next(&mut s).await {
            read.extend_from_slice(&b.unwrap());
        }
        assert_eq!(read.len(), data.len());
        assert_eq!(store.stat(digest).await.unwrap(), None);
        other.upload_commit("0b-1", digest, data.len() as u64).await.unwrap();
        assert_eq!(store.stat(digest).await.unwrap(), Some(data.len() as u64));
        let mut s = store.read(digest, (8 << 20) - 3, 6).await.unwrap();
        let b = futures_util::StreamExt::next(&mut s).await.unwrap().unwrap();
        assert_eq!(&b[..], &data[(8 << 20) - 3..(8 << 20) + 3], "a range across a part boundary");
        assert!(super::chunks(store.store.as_ref(), "0b-1").await.unwrap().is_empty(), "chunks removed");
    }
}
