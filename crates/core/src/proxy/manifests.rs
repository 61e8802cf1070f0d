//! Manifests and tags of cached repositories: by digest cached for good, by tag for
//! `tag_ttl_secs` and then revalidated with a HEAD (served stale while the upstream fails);
//! and the gate's tag resolution, which fetches and stores nothing.

use oci::digest::Hasher;
use oci::manifest::MAX_MANIFEST_BYTES;
use oci::source::UpstreamRepo;
use oci::{Digest, Manifest, Reference, Tag};

use super::{Proxy, held};
use crate::content::ServedManifest;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::{ManifestRow, TagEntry};

impl Proxy {
    /// A manifest by tag or digest (marked stale when served while the upstream fails).
    pub(super) async fn cached_manifest(&self, up: &UpstreamRepo, reference: &Reference) -> Result<ServedManifest> {
        let s = &self.shared;
        let repo = self.repo_id(up).await?;
        let fresh = |row: ManifestRow| ServedManifest::from_row(row, false);
        match reference {
            Reference::Digest(d) => {
                let found = s.content.manifest(repo, d).await;
                if held::unreachable(&found)
                    && let Some(m) = s.held.manifest(repo, d)
                {
                    Metrics::inc(&s.metrics.manifest_hits);
                    return Ok(m);
                }
                let m = match found? {
                    Some(row) => {
                        Metrics::inc(&s.metrics.manifest_hits);
                        fresh(row)?
                    }
                    None => {
                        Metrics::inc(&s.metrics.manifest_misses);
                        fresh(self.fetch_manifest(up, repo, &d.to_string(), Some(d), None).await?)?
                    }
                };
                s.held.manifest_served(repo, None, &m);
                Ok(m)
            }
            Reference::Tag(t) => {
                let now = s.clock.now();
                let cached = s.cache.tag_entry(repo, t).await;
                if held::unreachable(&cached)
                    && let Some(m) = s.held.tagged(repo, t)
                {
                    tracing::warn!(image = %up.canonical(), "database unreachable; serving the tag as last served");
                    Metrics::inc(&s.metrics.stale_served);
                    return Ok(m);
                }
                let cached = cached?;
                if let Some(TagEntry { digest, checked_at }) = &cached
                    && now - checked_at < s.config.tag_ttl_secs
                    && let Some(row) = s.content.manifest(repo, digest).await?
                {
                    Metrics::inc(&s.metrics.manifest_hits);
                    return fresh(row);
                }
                Metrics::inc(&s.metrics.manifest_misses);
                let fresh = match &cached {
                    Some(TagEntry { digest, .. }) => match s.upstream.manifest_digest(up, t.as_str()).await {
                        Ok(Some(d)) if d.parse::<Digest>().as_ref() == Ok(digest) => {
                            s.cache.touch_tag(repo, t, now).await?;
                            s.content
                                .manifest(repo, digest)
                                .await?
                                .ok_or_else(|| Error::Unavailable("cached manifest vanished".into()))
                                .and_then(fresh)
                        }
                        Ok(_) => self.fetch_manifest(up, repo, t.as_str(), None, Some(t)).await.and_then(fresh),
                        Err(e) => Err(e),
                    },
                    None => self.fetch_manifest(up, repo, t.as_str(), None, Some(t)).await.and_then(fresh),
                };
                let served = match (fresh, cached) {
                    (Ok(m), _) => Ok(m),
                    (Err(e @ (Error::Unavailable(_) | Error::Throttled { .. })), Some(TagEntry { digest, .. })) => {
                        match s.content.manifest(repo, &digest).await? {
                            Some(row) => {
                                tracing::warn!(image = %up.canonical(), error = %e, "upstream failing; serving the cached tag");
                                Metrics::inc(&s.metrics.stale_served);
                                ServedManifest::from_row(row, true)
                            }
                            None => Err(e),
                        }
                    }
                    (Err(e), _) => Err(e),
                };
                if let Ok(m) = &served {
                    s.held.manifest_served(repo, Some(t), m);
                }
                served
            }
        }
    }

    /// The digest a tag names now, for the gate: a fresh cached tag, else a HEAD upstream (a
    /// cached tag, stale, while it fails). Nothing is fetched or stored, not even the
    /// repository's row.
    pub(super) async fn tag_digest(&self, up: &UpstreamRepo, tag: &Tag) -> Result<Option<Digest>> {
        let s = &self.shared;
        if !self.knows(&up.registry) {
            return Err(super::unsupported_registry(&up.registry));
        }
        let cached = match self.existing_repo(up).await? {
            Some(repo) => {
                let entry = s.cache.tag_entry(repo, tag).await;
                if held::unreachable(&entry)
                    && let Some(d) = s.held.tag(repo, tag)
                {
                    return Ok(Some(d));
                }
                entry?
            }
            None => None,
        };
        if let Some(TagEntry { digest, checked_at }) = &cached
            && s.clock.now() - checked_at < s.config.tag_ttl_secs
        {
            return Ok(Some(digest.clone()));
        }
        match s.upstream.manifest_digest(up, tag.as_str()).await {
            Ok(d) => Ok(d.and_then(|d| d.parse().ok())),
            Err(e @ (Error::Unavailable(_) | Error::Throttled { .. })) => match cached {
                Some(TagEntry { digest, .. }) => Ok(Some(digest)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Fetches, verifies and stores a manifest (and the tag when given).
    async fn fetch_manifest(
        &self,
        up: &UpstreamRepo,
        repo: i64,
        reference: &str,
        want: Option<&Digest>,
        tag: Option<&Tag>,
    ) -> Result<ManifestRow> {
        let s = &self.shared;
        let fetched =
            s.upstream.manifest(up, reference).await.inspect_err(|_| Metrics::inc(&s.metrics.upstream_errors))?;
        if fetched.content.len() > MAX_MANIFEST_BYTES {
            return Err(Error::Unavailable(format!(
                "upstream manifest of {} is larger than {MAX_MANIFEST_BYTES} bytes",
                up.canonical()
            )));
        }
        let algo = want.map(|d| d.algorithm()).unwrap_or(oci::Algorithm::Sha256);
        let digest = Hasher::digest(algo, &fetched.content);
        let claimed = want.cloned().or_else(|| {
            fetched.digest.as_deref().and_then(|d| d.parse().ok()).filter(|d: &Digest| d.algorithm() == algo)
        });
        if let Some(c) = claimed
            && c != digest
        {
            Metrics::inc(&s.metrics.upstream_errors);
            return Err(Error::Unavailable(format!(
                "upstream sent a manifest for {} whose digest is {digest}, not {c}",
                up.canonical()
            )));
        }
        let m = Manifest::parse(&fetched.content, Some(&fetched.media_type)).map_err(|e| {
            Error::Unavailable(format!("upstream sent an invalid manifest for {}: {e}", up.canonical()))
        })?;
        let row = ManifestRow {
            digest: digest.to_string(),
            media_type: m.media_type.clone(),
            content: fetched.content.to_vec(),
            artifact_type: m.artifact_type.clone(),
            subject: m.subject.as_ref().map(|d| d.digest.to_string()),
            annotations: None,
        };
        let refs: Vec<Digest> = m.blob_references().map(|d| d.digest.clone()).collect();
        s.content.put_manifest(repo, &row, &refs, tag, s.clock.now()).await?;
        Ok(row)
    }
}
