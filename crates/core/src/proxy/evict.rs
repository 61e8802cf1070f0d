//! The cache's size budget: after each fill, and in `portcullis gc`, least recently used
//! cached blobs are evicted (never one being filled) until the cache fits.

use super::Shared;
use crate::error::Result;
use crate::ports::{BlobStore, CacheStore, ContentStore};
use oci::Digest;

pub(super) async fn enforce_budget(s: &Shared) -> Result<()> {
    let busy = |d: &Digest| s.fills.lock().map(|f| f.contains_key(d)).unwrap_or(true);
    let n = evict(s.cache.as_ref(), s.content.as_ref(), s.blobs.as_ref(), s.config.cache_max_bytes, busy).await?;
    s.metrics.evictions.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Evicts least recently used cached blobs (skipping `busy` ones) until the cache holds at
/// most `max_bytes`. Returns how many were evicted. Used after fills and by `portcullis gc`.
pub async fn evict(
    cache: &dyn CacheStore,
    content: &dyn ContentStore,
    blobs: &dyn BlobStore,
    max_bytes: u64,
    busy: impl Fn(&Digest) -> bool,
) -> Result<u64> {
    let mut evicted = 0;
    let mut total = cache.cached_bytes().await?;
    while total > max_bytes {
        let victims = cache.cached_lru(64).await?;
        let mut progressed = false;
        for crate::model::BlobRow { digest: d, size } in victims {
            if busy(&d) {
                continue;
            }
            content.forget_blob(&d).await?;
            blobs.delete(&d).await?;
            evicted += 1;
            progressed = true;
            total = total.saturating_sub(size);
            if total <= max_bytes {
                break;
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(evicted)
}
