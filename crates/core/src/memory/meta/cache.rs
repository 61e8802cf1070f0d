//! `CacheStore` of the in-memory adapter (as `store/src/sql/cache.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl CacheStore for MemoryMeta {
    async fn tag_entry(&self, repo_id: i64, tag: &Tag) -> Result<Option<TagEntry>> {
        let tag = tag.as_str();
        self.with(|s| {
            let e = s.tags.get(&(repo_id, tag.to_owned())).cloned();
            e.map(|(digest, checked_at)| Ok(TagEntry { digest: stored(&digest)?, checked_at })).transpose()
        })
    }

    async fn touch_tag(&self, repo_id: i64, tag: &Tag, now: i64) -> Result<()> {
        let tag = tag.as_str();
        self.with(|s| {
            if let Some(e) = s.tags.get_mut(&(repo_id, tag.to_owned())) {
                e.1 = now;
            }
            Ok(())
        })
    }

    async fn blob_referenced(&self, repo_id: i64, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| Ok(s.references.iter().any(|(r, _, b)| *r == repo_id && b == digest)))
    }

    async fn put_cached_blob(&self, digest: &Digest, size: u64, now: i64) -> Result<()> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            let b = s.blobs.entry(digest.into()).or_insert(BlobRecord { size, cached: true, last_used_at: None });
            b.last_used_at = Some(now);
            Ok(())
        })
    }

    async fn touch_blob(&self, digest: &Digest, now: i64) -> Result<()> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            if let Some(b) = s.blobs.get_mut(digest)
                && b.cached
                && b.last_used_at.is_none_or(|t| t < now - 60)
            {
                b.last_used_at = Some(now);
            }
            Ok(())
        })
    }

    async fn cached_bytes(&self) -> Result<u64> {
        self.with(|s| Ok(s.blobs.values().filter(|b| b.cached).map(|b| b.size).sum()))
    }

    async fn cached_lru(&self, limit: usize) -> Result<Vec<BlobRow>> {
        self.with(|s| {
            let mut v: Vec<(i64, String, u64)> = s
                .blobs
                .iter()
                .filter(|(_, b)| b.cached)
                .map(|(d, b)| (b.last_used_at.unwrap_or(0), d.clone(), b.size))
                .collect();
            v.sort();
            v.into_iter().take(limit).map(|(_, digest, size)| Ok(BlobRow { digest: stored(&digest)?, size })).collect()
        })
    }
}
