//! The registry service: hosted repositories' content (blobs, uploads, manifests, tags,
//! referrers — the `Content` interface) and the catalog. Access has been decided by the gate
//! when these run; this service enforces content rules: digests, references, links.
//!
//! Uploads hash while the body streams in. The running hash lives in memory per upload and is
//! saved with the upload's size in the database after every write, so committing a chunked
//! upload is O(1) in its size, also when its requests land on different replicas or span a
//! restart. Only when the final digest uses another algorithm than the one hashed (or a saved
//! state is missing) is the upload read back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use oci::digest::Hasher;
use oci::endpoint::{Mount, Page};
use oci::manifest::{MAX_MANIFEST_BYTES, ManifestKind};
use oci::range::ByteRange;
use oci::{Algorithm, Digest, ErrorCode, Manifest, Reference, RepoName, Tag};

use async_trait::async_trait;
use oci::source::Source;

use crate::authz::Namespace;
use crate::clock::Clock;
use crate::content::{BlobSource, Content, PushedManifest, Referrers, ServedManifest, TagPage, UploadStart, hosted};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::model::{ManifestRow, Referrer, Visibility};
use crate::ports::{BlobStore, ByteStream, ContentStore, UploadStore};

mod cache;
pub use cache::HostedCache;

/// Bytes gathered before one write + hash step (under 2 MiB a write: see `proxy::fills::FILL_CHUNK`).
const WRITE_CHUNK: usize = 1 << 20;

struct UploadState {
    hasher: Hasher,
    size: u64,
}

type SharedUpload = Arc<tokio::sync::Mutex<Option<UploadState>>>;

pub struct Registry {
    content: Arc<dyn ContentStore>,
    upload_rows: Arc<dyn UploadStore>,
    blobs: Arc<dyn BlobStore>,
    identity: Arc<Identity>,
    uploads: Mutex<HashMap<String, SharedUpload>>,
    clock: Arc<dyn Clock>,
    manifests: Arc<HostedCache>,
}

fn blob_unknown(d: &Digest) -> Error {
    Error::registry(ErrorCode::BlobUnknown, format!("blob {d} is not in this repository"))
}

fn upload_unknown() -> Error {
    Error::registry(ErrorCode::BlobUploadUnknown, "upload unknown (finished, cancelled or never started)")
}

fn out_of_order(start: u64, size: u64) -> Error {
    Error::registry(ErrorCode::RangeInvalid, format!("chunk starts at {start} but the upload has {size} bytes"))
}

fn name_unknown(name: &RepoName) -> Error {
    Error::registry(ErrorCode::NameUnknown, format!("repository {name} is not known to this registry"))
}

impl Registry {
    /// `manifests`: the manifests kept in memory, shared with whatever else writes hosted
    /// repositories (deleting one).
    pub fn new(
        content: Arc<dyn ContentStore>,
        upload_rows: Arc<dyn UploadStore>,
        blobs: Arc<dyn BlobStore>,
        identity: Arc<Identity>,
        manifests: Arc<HostedCache>,
    ) -> Registry {
        let clock = identity.clock().clone();
        Registry { content, upload_rows, blobs, clock, identity, uploads: Mutex::default(), manifests }
    }

    /// The manifest `reference` names in `repo`: from memory, or read and remembered.
    async fn stored(&self, repo: i64, reference: &Reference) -> Result<Option<ServedManifest>> {
        if let Some(m) = self.manifests.get(repo, reference) {
            return Ok(Some(m));
        }
        let generation = self.manifests.generation();
        let row = match reference {
            Reference::Digest(d) => self.content.manifest(repo, d).await?,
            Reference::Tag(t) => self.content.manifest_by_tag(repo, t).await?,
        };
        let Some(row) = row else { return Ok(None) };
        let m = ServedManifest::from_row(row, false)?;
        self.manifests.insert(generation, repo, reference, &m);
        Ok(Some(m))
    }

    /// The repository's id: from the directory, or — for one another replica has just
    /// created and this one has not loaded yet — from the database.
    async fn repo_id(&self, name: &RepoName) -> Result<Option<i64>> {
        if let Some(r) = self.identity.directory().snapshot().repo(name.as_str()) {
            return Ok(Some(r.0));
        }
        Ok(self.content.repo(name.as_str()).await?.map(|r| r.id))
    }

    async fn ensure_repo(&self, name: &RepoName) -> Result<i64> {
        if let Some(id) = self.repo_id(name).await? {
            return Ok(id);
        }
        let snap = self.identity.directory().snapshot();
        let vis = match snap.namespace(name.namespace()) {
            Some(Namespace::User(_)) => Visibility::Public,
            _ => Visibility::Private,
        };
        let repo = self.content.ensure_repo(name.as_str(), vis, self.clock.now()).await?;
        self.identity.refresh_directory().await?;
        Ok(repo.id)
    }

    /// The upload's shared hash state, locked. State that does not match the size recorded in
    /// the database (another replica appended meanwhile) is replaced by the state saved there.
    async fn session(&self, name: &RepoName, id: &str) -> Result<tokio::sync::OwnedMutexGuard<Option<UploadState>>> {
        let up = self.upload_rows.upload(id).await?.ok_or_else(upload_unknown)?;
        if up.repo != name.as_str() {
            return Err(upload_unknown());
        }
        let shared: SharedUpload = {
            let mut map = self.uploads.lock().map_err(|_| Error::storage("upload table poisoned"))?;
            map.entry(id.to_owned()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None))).clone()
        };
        let mut guard = shared.lock_owned().await;
        // A client sends an upload's requests one after another, so the size read above is
        // current unless another replica took the previous one.
        if guard.as_ref().is_none_or(|s| s.size != up.size) {
            let saved = up.hash_state.as_deref().and_then(Hasher::restore);
            *guard = saved.map(|hasher| UploadState { hasher, size: up.size });
        }
        if guard.is_none() && up.size > 0 {
            *guard = Some(self.rebuild(id, Algorithm::Sha256, up.size).await?);
        }
        Ok(guard)
    }

    /// Hashes the first `size` bytes of an upload again (a state saved before migration 0010,
    /// or a final digest in another algorithm).
    async fn rebuild(&self, id: &str, algo: Algorithm, size: u64) -> Result<UploadState> {
        let mut stream = self.blobs.upload_read(id).await?;
        let mut hasher = Hasher::new(algo);
        let mut read = 0u64;
        while read < size
            && let Some(chunk) = stream.next().await
        {
            let chunk = chunk?;
            let take = chunk.len().min((size - read) as usize);
            hasher.update(&chunk[..take]);
            read += take as u64;
        }
        if read < size {
            return Err(Error::storage(format!("upload {id} holds {read} bytes, {size} were recorded")));
        }
        Ok(UploadState { hasher, size })
    }

    async fn commit(&self, name: &RepoName, id: &str, digest: &Digest, size: u64) -> Result<()> {
        self.blobs.upload_commit(id, digest, size).await?;
        self.content.put_blob(digest, size, self.clock.now()).await?;
        let repo = self.ensure_repo(name).await?;
        self.content.link_blob(repo, digest).await
    }

    /// Drops the in-memory state of uploads no request is using (finished on another replica,
    /// abandoned, or idle): it is restored from the database if the upload goes on.
    pub fn drop_idle_uploads(&self) -> usize {
        let Ok(mut map) = self.uploads.lock() else { return 0 };
        let before = map.len();
        map.retain(|_, shared| Arc::strong_count(shared) > 1);
        before - map.len()
    }

    async fn forget_upload(&self, id: &str) {
        if let Ok(mut m) = self.uploads.lock() {
            m.remove(id);
        }
        let _ = self.blobs.upload_delete(id).await;
        let _ = self.upload_rows.delete_upload(id).await;
    }

    /// Streams a request body into an upload, hashing and writing in parallel in ~1 MiB steps.
    async fn stream_into(&self, id: &str, state: &mut UploadState, mut body: ByteStream) -> Result<()> {
        let mut buf = BytesMut::new();
        loop {
            let next = body.next().await;
            let done = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(|e| {
                    Error::registry(ErrorCode::BlobUploadInvalid, format!("upload body interrupted: {e}"))
                })?;
                buf.extend_from_slice(&chunk);
            }
            if buf.len() >= WRITE_CHUNK || (done && !buf.is_empty()) {
                let data = buf.split().freeze();
                self.write_chunk(id, state, data).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn write_chunk(&self, id: &str, state: &mut UploadState, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let mut hasher = state.hasher.clone();
        let for_hash = data.clone();
        let hashing = tokio::task::spawn_blocking(move || {
            hasher.update(&for_hash);
            hasher
        });
        let written = self.blobs.upload_write(id, state.size, data).await;
        let hashed = hashing.await.map_err(|e| Error::storage_from("", e))?;
        written?;
        self.upload_rows.set_upload_progress(id, state.size + len, &hashed.save()).await?;
        state.hasher = hashed;
        state.size += len;
        Ok(())
    }
}

#[async_trait]
impl Content for Registry {
    async fn manifest(&self, repo: &Source, reference: &Reference) -> Result<ServedManifest> {
        let name = hosted(repo)?;
        let unknown = || Error::registry(ErrorCode::ManifestUnknown, format!("manifest {reference} is not in {name}"));
        let repo = self.repo_id(name).await?.ok_or_else(|| name_unknown(name))?;
        self.stored(repo, reference).await?.ok_or_else(unknown)
    }

    /// A blob reachable through the repository (linked to it).
    async fn blob(&self, repo: &Source, digest: &Digest) -> Result<BlobSource> {
        let name = hosted(repo)?;
        let repo = self.repo_id(name).await?.ok_or_else(|| blob_unknown(digest))?;
        if let Some(size) = self.manifests.link(repo, digest) {
            return Ok(BlobSource::Stored { size });
        }
        let generation = self.manifests.generation();
        let size = self.content.linked_blob(repo, digest).await?.ok_or_else(|| blob_unknown(digest))?;
        self.manifests.insert_link(generation, repo, digest, size);
        Ok(BlobSource::Stored { size })
    }

    async fn read(&self, _source: BlobSource, digest: &Digest, range: ByteRange) -> Result<ByteStream> {
        self.blobs.read(digest, range.start, range.len()).await
    }

    /// Tags after `page.last`, at most `page.n`.
    async fn tags(&self, repo: &Source, page: &Page) -> Result<TagPage> {
        let name = hosted(repo)?;
        let repo = self.repo_id(name).await?.ok_or_else(|| name_unknown(name))?;
        let (tags, more) = tag_page(self.content.as_ref(), repo, page).await?;
        Ok(TagPage { tags, more, stale: false })
    }

    async fn referrers(&self, repo: &Source, digest: &Digest, artifact_type: Option<&str>) -> Result<Referrers> {
        let name = hosted(repo)?;
        let Some(repo) = self.repo_id(name).await? else { return Ok(Referrers { list: vec![], stale: false }) };
        let all = self.content.referrers(repo, digest).await?;
        Ok(Referrers { list: of_artifact_type(all, artifact_type), stale: false })
    }

    async fn known_tag(&self, repo: &Source, tag: &Tag) -> Result<Option<Digest>> {
        self.resolve_tag(repo, tag).await
    }

    async fn resolve_tag(&self, repo: &Source, tag: &Tag) -> Result<Option<Digest>> {
        let name = hosted(repo)?;
        let Some(repo) = self.repo_id(name).await? else { return Ok(None) };
        self.content.tag_digest(repo, tag).await
    }

    async fn stored_parents(&self, repo: &Source, digest: &Digest, limit: usize) -> Result<Vec<Digest>> {
        let Some(repo) = self.repo_id(hosted(repo)?).await? else { return Ok(vec![]) };
        crate::content::parents_in(self.content.as_ref(), repo, digest, limit).await
    }

    async fn stored_manifest(&self, repo: &Source, digest: &Digest) -> Result<Option<ServedManifest>> {
        let name = hosted(repo)?;
        let Some(repo) = self.repo_id(name).await? else { return Ok(None) };
        self.stored(repo, &Reference::Digest(digest.clone())).await
    }

    /// PUT of a manifest by tag or digest.
    async fn put_manifest(
        &self,
        repo: &Source,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest> {
        let name = hosted(repo)?;
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(Error::registry(
                ErrorCode::ManifestInvalid,
                format!("manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        let algo = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Hasher::digest(algo, &body);
        if let Reference::Digest(d) = reference
            && d != &digest
        {
            return Err(Error::registry(ErrorCode::DigestInvalid, format!("manifest has digest {digest}, not {d}")));
        }
        let m = Manifest::parse(&body, content_type).map_err(|e| Error::registry(ErrorCode::ManifestInvalid, e))?;
        // References are checked before anything is created: a rejected push stores nothing.
        let existing = self.repo_id(name).await?;
        let blob_refs: Vec<Digest> = m.blob_references().map(|d| d.digest.clone()).collect();
        for b in &blob_refs {
            let linked = match existing {
                Some(repo) => self.content.linked_blob(repo, b).await?.is_some(),
                None => false,
            };
            if !linked {
                return Err(Error::registry(ErrorCode::ManifestBlobUnknown, format!("blob {b} is not in {name}")));
            }
        }
        if m.kind == ManifestKind::Index && !m.manifests.is_empty() {
            let wanted: Vec<Digest> = m.manifests.iter().map(|d| d.digest.clone()).collect();
            let present = match existing {
                Some(repo) => self.content.manifests_present(repo, &wanted).await?,
                None => vec![],
            };
            if let Some(missing) = wanted.iter().find(|w| !present.contains(w)) {
                return Err(Error::registry(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest {missing} is not in {name}"),
                ));
            }
        }
        let repo = match existing {
            Some(id) => id,
            None => self.ensure_repo(name).await?,
        };
        let row = ManifestRow {
            digest: digest.to_string(),
            media_type: m.media_type.clone(),
            content: body.to_vec(),
            artifact_type: m.artifact_type.clone(),
            subject: m.subject.as_ref().map(|s| s.digest.to_string()),
            annotations: m.annotations.as_ref().map(|a| serde_json::Value::Object(a.clone()).to_string()),
        };
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        // Invalidated whatever the answer: a write that failed may still have committed.
        let put = self.content.put_manifest(repo, &row, &blob_refs, tag, self.clock.now()).await;
        self.manifests.invalidate();
        put?;
        Ok(PushedManifest { digest, subject: m.subject.map(|s| s.digest) })
    }

    async fn delete_manifest(&self, repo: &Source, reference: &Reference) -> Result<()> {
        let name = hosted(repo)?;
        let repo = self.repo_id(name).await?.ok_or_else(|| name_unknown(name))?;
        let found = match reference {
            Reference::Digest(d) => self.content.delete_manifest(repo, d).await,
            Reference::Tag(t) => self.content.delete_tag(repo, t).await,
        };
        self.manifests.invalidate();
        if found? {
            Ok(())
        } else {
            Err(Error::registry(ErrorCode::ManifestUnknown, format!("manifest {reference} is not in {name}")))
        }
    }

    async fn delete_blob(&self, repo: &Source, digest: &Digest) -> Result<()> {
        let name = hosted(repo)?;
        let repo = self.repo_id(name).await?.ok_or_else(|| blob_unknown(digest))?;
        let unlinked = self.content.unlink_blob(repo, digest).await;
        self.manifests.invalidate();
        if unlinked? { Ok(()) } else { Err(blob_unknown(digest)) }
    }

    /// POST `/blobs/uploads/`: mount, monolithic upload (`digest` + body) or a new session.
    async fn start_upload(
        &self,
        repo: &Source,
        digest: Option<&Digest>,
        mount: Option<&Mount>,
        body: ByteStream,
    ) -> Result<UploadStart> {
        let name = hosted(repo)?;
        if let Some(Mount { digest: d, from: Some(from) }) = mount
            && let Some(src) = self.repo_id(from).await?
            && self.content.linked_blob(src, d).await?.is_some()
        {
            let repo = self.ensure_repo(name).await?;
            self.content.link_blob(repo, d).await?;
            return Ok(UploadStart::Created(d.clone()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.upload_rows.create_upload(&id, name.as_str(), self.clock.now()).await?;
        self.blobs.upload_create(&id).await?;
        let algo = digest.map(|d| d.algorithm()).unwrap_or(Algorithm::Sha256);
        let shared: SharedUpload =
            Arc::new(tokio::sync::Mutex::new(Some(UploadState { hasher: Hasher::new(algo), size: 0 })));
        self.uploads.lock().map_err(|_| Error::storage("upload table poisoned"))?.insert(id.clone(), shared);
        match digest {
            Some(d) => Content::finish_upload(self, repo, &id, d, None, body).await.map(UploadStart::Created),
            None => Ok(UploadStart::Session { id, size: 0 }),
        }
    }

    /// Status of an upload: bytes received so far.
    async fn upload_status(&self, repo: &Source, id: &str) -> Result<u64> {
        let name = hosted(repo)?;
        let guard = self.session(name, id).await?;
        Ok(guard.as_ref().map(|s| s.size).unwrap_or(0))
    }

    /// PATCH: appends a chunk. With `Content-Range`, the chunk must start where the upload ends.
    async fn append_upload(&self, repo: &Source, id: &str, range: Option<ByteRange>, body: ByteStream) -> Result<u64> {
        let name = hosted(repo)?;
        let mut guard = self.session(name, id).await?;
        let mut state = guard.take().unwrap_or_else(|| UploadState { hasher: Hasher::new(Algorithm::Sha256), size: 0 });
        if let Some(r) = range
            && r.start != state.size
        {
            let size = state.size;
            *guard = Some(state);
            return Err(out_of_order(r.start, size));
        }
        let result = self.stream_into(id, &mut state, body).await;
        let size = state.size;
        *guard = Some(state);
        result.map(|_| size)
    }

    /// PUT: optional last chunk (starting where the upload ends, when a `Content-Range` says
    /// where it starts), then commit as `digest`.
    async fn finish_upload(
        &self,
        repo: &Source,
        id: &str,
        digest: &Digest,
        range: Option<ByteRange>,
        body: ByteStream,
    ) -> Result<Digest> {
        let name = hosted(repo)?;
        let mut guard = self.session(name, id).await?;
        let mut state =
            guard.take().unwrap_or_else(|| UploadState { hasher: Hasher::new(digest.algorithm()), size: 0 });
        if let Some(r) = range
            && r.start != state.size
        {
            let size = state.size;
            *guard = Some(state);
            return Err(out_of_order(r.start, size));
        }
        let streamed = self.stream_into(id, &mut state, body).await;
        if let Err(e) = streamed {
            *guard = Some(state);
            return Err(e);
        }
        let computed = if state.hasher.algorithm() == digest.algorithm() {
            state.hasher.finish()
        } else {
            self.rebuild(id, digest.algorithm(), state.size).await?.hasher.finish()
        };
        let result = if &computed != digest {
            Err(Error::registry(ErrorCode::DigestInvalid, format!("upload has digest {computed}, not {digest}")))
        } else {
            self.commit(name, id, digest, state.size).await
        };
        self.forget_upload(id).await;
        result.map(|_| digest.clone())
    }

    /// DELETE of an upload session.
    async fn cancel_upload(&self, repo: &Source, id: &str) -> Result<()> {
        let name = hosted(repo)?;
        let _guard = self.session(name, id).await?;
        self.forget_upload(id).await;
        Ok(())
    }
}

/// A page of a repository's stored tags: after `page.last`, at most `page.n`, and whether more
/// follow (hosted repositories, and cached ones while their upstream fails).
pub(crate) async fn tag_page(meta: &dyn ContentStore, repo: i64, page: &Page) -> Result<(Vec<String>, bool)> {
    let mut tags = meta.list_tags(repo, page.last.as_deref(), page.n.map(|n| n + 1)).await?;
    let more = page.n.is_some_and(|n| tags.len() > n);
    tags.truncate(page.n.unwrap_or(usize::MAX));
    Ok((tags, more))
}

/// The referrers of the given artifact type (all of them without one).
pub(crate) fn of_artifact_type(all: Vec<Referrer>, artifact_type: Option<&str>) -> Vec<Referrer> {
    all.into_iter().filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t))).collect()
}
