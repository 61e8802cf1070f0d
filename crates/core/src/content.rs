//! One content interface over both kinds of repository: hosted ones (`Registry`) and cached
//! images of other registries (`Proxy`). Both return the same served types, so the HTTP layer
//! has one dispatcher, and the gate asks either the same two questions before it decides —
//! which digest does this tag name now, and which manifest is already stored under a digest —
//! whose answers fetch nothing and store nothing. Writes belong to hosted repositories; the
//! cache refuses them (the gate never lets them through, this is the second line).
//!
//! As in CNCF distribution, where the proxy blob store implements the same interface as local
//! storage, `Contents::of` picks the implementation from where the repository lives.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use oci::endpoint::{Mount, Page};
use oci::range::ByteRange;
use oci::source::Source;
use oci::{Digest, ErrorCode, Method, Reference, RepoName, Tag};

use crate::error::{Error, Result};
use crate::model::Referrer;
use crate::ports::{BlobStore, ByteStream};
use crate::proxy::{Following, Proxy};
use crate::registry::Registry;

/// A manifest as served.
#[derive(Debug, Clone)]
pub struct ServedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
    /// Served from the cache while its upstream fails.
    pub stale: bool,
}

impl ServedManifest {
    /// A stored manifest as served; a row whose digest does not parse is a storage fault.
    pub(crate) fn from_row(row: crate::model::ManifestRow, stale: bool) -> Result<ServedManifest> {
        let digest = row
            .digest
            .parse()
            .map_err(|_| Error::storage(format!("a stored manifest's digest {:?} is not a digest", row.digest)))?;
        Ok(ServedManifest { digest, media_type: row.media_type, content: Bytes::from(row.content), stale })
    }
}

/// How a blob will be served.
pub enum BlobSource {
    /// Whole in the blob store: streamed from it.
    Stored { size: u64 },
    /// Being fetched from its upstream: streamed by following the fill as bytes arrive.
    Following { size: u64, fill: Following },
    /// Whole in a blob store that hands out presigned URLs (S3 with `s3.redirect`): a GET is
    /// answered with a redirect there. Only [`Contents::blob`] answers this.
    Redirect { size: u64, url: String },
}

impl BlobSource {
    pub fn size(&self) -> u64 {
        match self {
            BlobSource::Stored { size } | BlobSource::Following { size, .. } | BlobSource::Redirect { size, .. } => {
                *size
            }
        }
    }
}

/// One page of a repository's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// More tags follow this page.
    pub more: bool,
    /// Served from the cache because the upstream is failing.
    pub stale: bool,
}

/// The referrers of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    pub list: Vec<Referrer>,
    pub stale: bool,
}

/// The result of starting an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// The blob is in the repository (monolithic POST or mount).
    Created(Digest),
    /// An upload session to continue with PATCH/PUT.
    Session { id: String, size: u64 },
}

/// The result of a manifest push.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

fn read_only(repo: &Source) -> Error {
    let (name, registry) = match repo {
        Source::Upstream(u) => (u.canonical(), u.registry.clone()),
        Source::Hosted(n) => (n.to_string(), "another registry".into()),
    };
    Error::registry(
        ErrorCode::Unsupported,
        format!("{name} is a pull-through cache of {registry}: push and delete are not supported there"),
    )
}

/// Reads and writes of a repository's content. Access has been decided (by the gate) when
/// these run; implementations enforce content rules: digests, references, links.
#[async_trait]
pub trait Content: Send + Sync {
    async fn manifest(&self, repo: &Source, reference: &Reference) -> Result<ServedManifest>;
    /// Prepares to serve a blob reachable through the repository (`Stored` or `Following`).
    async fn blob(&self, repo: &Source, digest: &Digest) -> Result<BlobSource>;
    /// Streams `range` of a blob prepared by [`Content::blob`].
    async fn read(&self, source: BlobSource, digest: &Digest, range: ByteRange) -> Result<ByteStream>;
    async fn tags(&self, repo: &Source, page: &Page) -> Result<TagPage>;
    async fn referrers(&self, repo: &Source, digest: &Digest, artifact_type: Option<&str>) -> Result<Referrers>;

    /// The digest `tag` names now, asked without fetching or storing a manifest (a fresh cached
    /// tag, or a HEAD upstream); `None` when there is no such tag.
    async fn resolve_tag(&self, repo: &Source, tag: &Tag) -> Result<Option<Digest>>;
    /// The digest `tag` named when last seen here (a hosted tag, or a cached one however old);
    /// never asks an upstream.
    async fn known_tag(&self, repo: &Source, tag: &Tag) -> Result<Option<Digest>>;
    /// A manifest already stored under `digest` (never fetched).
    async fn stored_manifest(&self, repo: &Source, digest: &Digest) -> Result<Option<ServedManifest>>;
    /// Stored indexes of the repository, among those its first `limit` stored tags name, that
    /// list `digest` as a child (never fetched).
    async fn stored_parents(&self, repo: &Source, digest: &Digest, limit: usize) -> Result<Vec<Digest>>;

    async fn put_manifest(
        &self,
        repo: &Source,
        _reference: &Reference,
        _content_type: Option<&str>,
        _body: Bytes,
    ) -> Result<PushedManifest> {
        Err(read_only(repo))
    }
    async fn delete_manifest(&self, repo: &Source, _reference: &Reference) -> Result<()> {
        Err(read_only(repo))
    }
    async fn delete_blob(&self, repo: &Source, _digest: &Digest) -> Result<()> {
        Err(read_only(repo))
    }
    /// POST `/blobs/uploads/`: mount, monolithic upload (`digest` + body) or a new session.
    async fn start_upload(
        &self,
        repo: &Source,
        _digest: Option<&Digest>,
        _mount: Option<&Mount>,
        _body: ByteStream,
    ) -> Result<UploadStart> {
        Err(read_only(repo))
    }
    async fn upload_status(&self, repo: &Source, _id: &str) -> Result<u64> {
        Err(read_only(repo))
    }
    async fn append_upload(
        &self,
        repo: &Source,
        _id: &str,
        _range: Option<ByteRange>,
        _body: ByteStream,
    ) -> Result<u64> {
        Err(read_only(repo))
    }
    async fn finish_upload(
        &self,
        repo: &Source,
        _id: &str,
        _digest: &Digest,
        _range: Option<ByteRange>,
        _body: ByteStream,
    ) -> Result<Digest> {
        Err(read_only(repo))
    }
    async fn cancel_upload(&self, repo: &Source, _id: &str) -> Result<()> {
        Err(read_only(repo))
    }
}

/// The indexes, among those the first `limit` tags of repository `repo_id` name, that list
/// `child` (both implementations keep tags and manifests in the metadata store).
pub(crate) async fn parents_in(
    meta: &dyn crate::ports::ContentStore,
    repo_id: i64,
    child: &Digest,
    limit: usize,
) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for tag in meta.list_tags(repo_id, None, Some(limit)).await? {
        let Ok(tag) = tag.parse::<oci::name::Tag>() else { continue };
        let Some(row) = meta.manifest_by_tag(repo_id, &tag).await? else { continue };
        let Ok(m) = oci::Manifest::parse(&row.content, Some(&row.media_type)) else { continue };
        if m.manifests.iter().any(|c| &c.digest == child)
            && let Ok(d) = row.digest.parse::<Digest>()
            && !out.contains(&d)
        {
            out.push(d);
        }
    }
    Ok(out)
}

/// Where each kind of repository's content lives.
pub struct Contents {
    pub hosted: Arc<Registry>,
    pub cached: Arc<Proxy>,
    blobs: Arc<dyn BlobStore>,
}

impl Contents {
    pub fn new(hosted: Arc<Registry>, cached: Arc<Proxy>, blobs: Arc<dyn BlobStore>) -> Contents {
        Contents { hosted, cached, blobs }
    }

    /// How to serve a blob of `repo` to a `method` request: a GET of a blob whole in a store
    /// that hands out presigned URLs is redirected there. Access has been decided before.
    pub async fn blob(&self, repo: &Source, digest: &Digest, method: Method) -> Result<BlobSource> {
        let blob = self.of(repo).blob(repo, digest).await?;
        if let (BlobSource::Stored { size }, Method::Get) = (&blob, method)
            && let Some(url) = self.blobs.redirect_url(digest).await?
        {
            return Ok(BlobSource::Redirect { size: *size, url });
        }
        Ok(blob)
    }

    /// The implementation serving `repo`.
    pub fn of(&self, repo: &Source) -> &dyn Content {
        match repo {
            Source::Hosted(_) => self.hosted.as_ref(),
            Source::Upstream(_) => self.cached.as_ref(),
        }
    }
}

/// The hosted repository a source names (hosted implementations are asked only for those).
pub(crate) fn hosted(repo: &Source) -> Result<&RepoName> {
    match repo {
        Source::Hosted(n) => Ok(n),
        Source::Upstream(u) => {
            Err(Error::registry(ErrorCode::NameUnknown, format!("{} is not hosted here", u.canonical())))
        }
    }
}

/// The upstream repository a source names (the cache is asked only for those).
pub(crate) fn upstream(repo: &Source) -> Result<&oci::source::UpstreamRepo> {
    match repo {
        Source::Upstream(u) => Ok(u),
        Source::Hosted(n) => Err(Error::registry(ErrorCode::NameUnknown, format!("{n} is hosted here"))),
    }
}
