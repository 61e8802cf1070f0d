//! Tags lists and referrers of upstream repositories. Listings change all the time and are cheap
//! to ask for, so they are not cached: each request goes upstream. When the upstream is failing,
//! what this cache knows (the tags and referrers of manifests pulled through it) is served,
//! marked stale, like a cached tag.

use oci::Digest;
use oci::endpoint::Page;
use oci::source::UpstreamRepo;

use oci::ErrorCode;

use super::Proxy;
use crate::content::{Referrers, TagPage};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Referrer;
use crate::registry::{of_artifact_type, tag_page};

fn failing(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_) | Error::Throttled { .. })
}

impl Proxy {
    /// A page of the repository's tags, from the upstream; the cached ones when it is failing.
    pub(super) async fn upstream_tags(&self, up: &UpstreamRepo, page: &Page) -> Result<TagPage> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        match s.upstream.tags(up, page.n, page.last.as_deref()).await {
            Ok((tags, more)) => Ok(TagPage { tags, more, stale: false }),
            Err(e) if failing(&e) => {
                let (tags, more) = tag_page(s.content.as_ref(), repo, page).await?;
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
    /// ones when it is failing (flagged). An upstream without the referrers API answers
    /// `MANIFEST_UNKNOWN` naming the tag-schema fallback, so that clients use it.
    pub(super) async fn upstream_referrers(
        &self,
        up: &UpstreamRepo,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        let keep = |all: Vec<Referrer>| of_artifact_type(all, artifact_type);
        match s.upstream.referrers(up, &digest.to_string(), artifact_type).await {
            Ok(Some(found)) => Ok(Referrers { list: keep(found), stale: false }),
            Ok(None) => Err(Error::registry(
                ErrorCode::ManifestUnknown,
                format!(
                    "upstream registry {} has no referrers API; look for the tag {}-{} instead",
                    up.registry,
                    digest.algorithm().as_str(),
                    digest.hex()
                ),
            )),
            Err(e) if failing(&e) => {
                tracing::warn!(image = %up.canonical(), error = %e, "upstream failing; serving the cached referrers");
                Metrics::inc(&s.metrics.stale_served);
                Ok(Referrers { list: keep(s.content.referrers(repo, digest).await?), stale: true })
            }
            Err(e) => Err(e),
        }
    }
}
