//! The pull-through cache: images of other registries, fetched on demand, verified against
//! their digests before anything is served whole or stored, and cached. It implements the same
//! [`Content`] interface as hosted repositories (writes refused), in three jobs:
//! - `manifests.rs`: manifests and tags. Tags are cached for `tag_ttl_secs`, then revalidated
//!   with a HEAD; when the upstream fails, the cached tag is served and marked stale. Manifests
//!   by digest are cached for good. The gate's question "which digest does this tag name now"
//!   is answered from a fresh cached tag or a HEAD, never a GET, and stores nothing.
//! - `fills.rs`: blobs. An uncached blob is fetched once however many clients ask (single
//!   flight, and one replica among many through a lease): the fill writes an upload and every
//!   client follows it; the last byte is released only once the digest has been verified, so a
//!   lying or truncated upstream ends every transfer as failed and leaves nothing cached.
//! - `evict.rs`: the cache's size budget, least recently used first.
//! - `held.rs`: what was served lately, to serve again while the database cannot be reached.
//!
//! Tags lists and referrers (`listing.rs`) are asked of the upstream each time.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use oci::endpoint::Page;
use oci::range::ByteRange;
use oci::source::{Source, UpstreamRepo};
use oci::{Digest, ErrorCode, Reference, Tag};

use crate::clock::Clock;
use crate::content::{BlobSource, Content, Referrers, ServedManifest, TagPage, upstream};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::model::Visibility;
use crate::ports::{BlobStore, ByteStream, CacheStore, ClusterStore, ContentStore, MetaStore, UpstreamRegistry};

mod evict;
mod fills;
mod held;
mod listing;
mod manifests;

pub use evict::evict;
pub use fills::Following;

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub tag_ttl_secs: i64,
    /// Budget for cached upstream blobs; 0 = unlimited.
    pub cache_max_bytes: u64,
    /// This node's lasting name, when no other live process can have it (the data directory's,
    /// held under its lock): fill leases are held as `<node>/<process>`, and a restarted
    /// process drops those its dead predecessor held instead of waiting them out.
    pub node: Option<String>,
}

struct Shared {
    content: Arc<dyn ContentStore>,
    cache: Arc<dyn CacheStore>,
    /// Fill leases among replicas.
    cluster: Arc<dyn ClusterStore>,
    blobs: Arc<dyn BlobStore>,
    upstream: Arc<dyn UpstreamRegistry>,
    metrics: Arc<Metrics>,
    config: ProxyConfig,
    fills: fills::Fills,
    /// What was served lately, for a database outage.
    held: held::Held,
    /// This process, as the holder of fill leases.
    holder: String,
    clock: Arc<dyn Clock>,
}

pub struct Proxy {
    shared: Arc<Shared>,
    identity: Arc<Identity>,
}

fn unsupported_registry(registry: &str) -> Error {
    Error::Registry(
        ErrorCode::NameUnknown,
        format!("registry {registry} is not configured as an upstream here; ask the administrator to add it"),
    )
}

impl Proxy {
    /// `meta`: the metadata store, of which the cache uses its content, cache bookkeeping and
    /// lease capabilities.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        upstream: Arc<dyn UpstreamRegistry>,
        identity: Arc<Identity>,
        metrics: Arc<Metrics>,
        config: ProxyConfig,
    ) -> Proxy {
        let process = uuid::Uuid::new_v4().to_string();
        let holder = match &config.node {
            Some(node) => format!("{node}/{process}"),
            None => process,
        };
        Proxy {
            shared: Arc::new(Shared {
                content: meta.clone(),
                cache: meta.clone(),
                cluster: meta,
                blobs,
                upstream,
                metrics,
                config,
                fills: Mutex::default(),
                held: held::Held::default(),
                holder,
                clock: identity.clock().clone(),
            }),
            identity,
        }
    }

    /// At start: drops the fill leases an earlier process of this node held (it died without
    /// releasing them: a `kill -9`, a crash), so the fills it had begun start again at once;
    /// other nodes' leases stay.
    pub async fn reclaim_leases(&self) -> Result<()> {
        let s = &self.shared;
        let Some(node) = &s.config.node else { return Ok(()) };
        let n = s.cluster.release_node_leases(node, &s.holder).await?;
        if n > 0 {
            tracing::warn!(
                leases = n,
                "dropped the fill leases of this node's previous process, which stopped without releasing them"
            );
        }
        Ok(())
    }

    pub fn knows(&self, registry: &str) -> bool {
        self.shared.upstream.knows(registry)
    }

    /// The cached repository's id, when this cache has one (never creates it).
    async fn existing_repo(&self, up: &UpstreamRepo) -> Result<Option<i64>> {
        let name = up.canonical();
        if let Some((id, _)) = self.identity.directory().snapshot().repo(&name) {
            return Ok(Some(id));
        }
        Ok(self.shared.content.repo(&name).await?.map(|r| r.id))
    }

    /// The cached repository's id, created on first use.
    async fn repo_id(&self, up: &UpstreamRepo) -> Result<i64> {
        if !self.knows(&up.registry) {
            return Err(unsupported_registry(&up.registry));
        }
        let name = up.canonical();
        if let Some((id, _)) = self.identity.directory().snapshot().repo(&name) {
            return Ok(id);
        }
        let r = self.shared.content.ensure_repo(&name, Visibility::Private, self.shared.clock.now()).await?;
        self.identity.refresh_directory().await?;
        Ok(r.id)
    }
}

#[async_trait]
impl Content for Proxy {
    async fn manifest(&self, repo: &Source, reference: &Reference) -> Result<ServedManifest> {
        self.cached_manifest(upstream(repo)?, reference).await
    }

    async fn blob(&self, repo: &Source, digest: &Digest) -> Result<BlobSource> {
        self.cached_blob(upstream(repo)?, digest).await
    }

    async fn read(&self, source: BlobSource, digest: &Digest, range: ByteRange) -> Result<ByteStream> {
        self.read_blob(source, digest, range).await
    }

    async fn tags(&self, repo: &Source, page: &Page) -> Result<TagPage> {
        self.upstream_tags(upstream(repo)?, page).await
    }

    async fn referrers(&self, repo: &Source, digest: &Digest, artifact_type: Option<&str>) -> Result<Referrers> {
        self.upstream_referrers(upstream(repo)?, digest, artifact_type).await
    }

    async fn resolve_tag(&self, repo: &Source, tag: &Tag) -> Result<Option<Digest>> {
        self.tag_digest(upstream(repo)?, tag).await
    }

    async fn known_tag(&self, repo: &Source, tag: &Tag) -> Result<Option<Digest>> {
        let Some(id) = self.existing_repo(upstream(repo)?).await? else { return Ok(None) };
        Ok(self.shared.cache.tag_entry(id, tag).await?.map(|e| e.digest))
    }

    async fn stored_parents(&self, repo: &Source, digest: &Digest, limit: usize) -> Result<Vec<Digest>> {
        let Some(id) = self.existing_repo(upstream(repo)?).await? else { return Ok(vec![]) };
        crate::content::parents_in(self.shared.content.as_ref(), id, digest, limit).await
    }

    async fn stored_manifest(&self, repo: &Source, digest: &Digest) -> Result<Option<ServedManifest>> {
        let Some(id) = self.existing_repo(upstream(repo)?).await? else { return Ok(None) };
        self.shared.content.manifest(id, digest).await?.map(|row| ServedManifest::from_row(row, false)).transpose()
    }
}
