//! Tags lists and referrers of upstream repositories. Listings change all the time and are cheap
//! to ask for, so they are not cached: each request goes upstream. When the upstream is failing,
//! what this cache knows (the tags and referrers of manifests pulled through it) is served,
//! marked stale, like a cached tag.

use oci::Digest;
use oci::endpoint::Page;
use oci::source::UpstreamRepo;

use super::Proxy;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Referrer;
use crate::registry::{of_artifact_type, tag_page};

/// One page of an upstream repository's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// More tags follow this page.
    pub more: bool,
    /// Served from the cache because the upstream is failing.
    pub stale: bool,
}

fn failing(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_) | Error::Throttled { .. })
}

impl Proxy {
    /// A page of the repository's tags, from the upstream; the cached ones when it is failing.
    pub async fn tags(&self, up: &UpstreamRepo, page: &Page) -> Result<TagPage> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        match s.upstream.tags(up, page.n, page.last.as_deref()).await {
            Ok((tags, more)) => Ok(TagPage { tags, more, stale: false }),
            Err(e) if failing(&e) => {
                let (tags, more) = tag_page(s.meta.as_ref(), repo, page).await?;
                if tags.is_empty() && page.last.is_none() {
                    return Err(e);
                }
                tracing::warn!(image = %up.canonical(), error = %e, "upstream failing; serving the cached tags");
                Metrics::inc(&s.metrics.stale_served);
                Ok(TagPage { tags, more, stale: true })
            }
            Err(e) => Err(e),
        }
    }

    /// The referrers of a manifest, from the upstream, filtered by `artifact_type`; the cached
    /// ones when it is failing (flagged); `None` when the upstream has no referrers API.
    pub async fn referrers(
        &self,
        up: &UpstreamRepo,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<(Option<Vec<Referrer>>, bool)> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        let keep = |all: Vec<Referrer>| of_artifact_type(all, artifact_type);
        match s.upstream.referrers(up, &digest.to_string(), artifact_type).await {
            Ok(found) => Ok((found.map(keep), false)),
            Err(e) if failing(&e) => {
                tracing::warn!(image = %up.canonical(), error = %e, "upstream failing; serving the cached referrers");
                Metrics::inc(&s.metrics.stale_served);
                Ok((Some(keep(s.meta.referrers(repo, &digest.to_string()).await?)), true))
            }
            Err(e) => Err(e),
        }
    }
}
