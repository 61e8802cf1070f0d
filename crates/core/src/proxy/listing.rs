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

/// The page `page` asks for out of what the upstream answered: an upstream that ignores `n`
/// or `last` (some do, and distribution's own proxy mode) answers more, or from the start, so
/// the page is cut here, in the lexical order the distribution spec pages in. An upstream that
/// honoured them answers a page this leaves as it is.
fn paged(mut tags: Vec<String>, more: bool, page: &Page) -> (Vec<String>, bool) {
    tags.sort_unstable();
    tags.dedup();
    if let Some(last) = &page.last {
        tags.retain(|t| t > last);
    }
    match page.n {
        Some(n) if tags.len() > n => {
            tags.truncate(n);
            (tags, true)
        }
        _ => (tags, more),
    }
}

impl Proxy {
    /// A page of the repository's tags, from the upstream; the cached ones when it is failing.
    pub(super) async fn upstream_tags(&self, up: &UpstreamRepo, page: &Page) -> Result<TagPage> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        match s.upstream.tags(up, page.n, page.last.as_deref()).await {
            Ok((tags, more)) => {
                let (tags, more) = paged(tags, more, page);
                Ok(TagPage { tags, more, stale: false })
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_that_ignores_paging_is_paged_here() {
        let all = || ["d", "b", "a", "c"].map(String::from).to_vec();
        let page = |n: Option<usize>, last: Option<&str>| Page { n, last: last.map(String::from) };
        assert_eq!(paged(all(), false, &page(Some(2), None)), (vec!["a".into(), "b".into()], true));
        assert_eq!(paged(all(), false, &page(Some(2), Some("b"))), (vec!["c".into(), "d".into()], false));
        assert_eq!(paged(all(), false, &page(None, Some("c"))), (vec!["d".into()], false));
        assert_eq!(paged(all(), false, &page(Some(0), None)), (vec![], true));
        // an upstream that paged itself: its page and its `more` stand
        assert_eq!(paged(vec!["c".into()], true, &page(Some(1), Some("b"))), (vec!["c".into()], true));
    }
}
