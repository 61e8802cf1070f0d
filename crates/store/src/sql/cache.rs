//! The pull-through cache's bookkeeping (`CacheStore`): when a cached tag was last confirmed,
//! which blobs are evictable, and their last use (LRU).

macro_rules! cache_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::CacheStore, $store, {
            async fn tag_entry(&self, repo_id: i64, tag: &Tag) -> Result<Option<TagEntry>> {
                let r: Option<(String, i64)> = sqlx::query_as("SELECT digest, updated_at FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag.as_str())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                r.map(|(digest, checked_at)| Ok(TagEntry { digest: stored_digest(digest)?, checked_at })).transpose()
            }

            async fn touch_tag(&self, repo_id: i64, tag: &Tag, now: i64) -> Result<()> {
                sqlx::query("UPDATE tags SET updated_at = $3 WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag.as_str())
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn blob_referenced(&self, repo_id: i64, digest: &Digest) -> Result<bool> {
                let r = sqlx::query("SELECT 1 FROM manifest_blobs WHERE blob_digest = $1 AND repo_id = $2 LIMIT 1")
                    .bind(digest.to_string())
                    .bind(repo_id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.is_some())
            }

            async fn put_cached_blob(&self, digest: &Digest, size: u64, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO blobs (digest, size, created_at, cached, last_used_at) VALUES ($1, $2, $3, 1, $3) \
                     ON CONFLICT (digest) DO UPDATE SET last_used_at = excluded.last_used_at",
                )
                .bind(digest.to_string())
                .bind(size as i64)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn touch_blob(&self, digest: &Digest, now: i64) -> Result<()> {
                // At most one write a minute per blob: LRU order needs no finer clock.
                sqlx::query("UPDATE blobs SET last_used_at = $2 WHERE digest = $1 AND cached = 1 AND (last_used_at IS NULL OR last_used_at < $2 - 60)")
                    .bind(digest.to_string())
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn cached_bytes(&self) -> Result<u64> {
                let (n,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE cached = 1")
                    .fetch_one(&self.read)
                    .await
                    .map_err(db)?;
                Ok(n as u64)
            }

            async fn cached_lru(&self, limit: usize) -> Result<Vec<BlobRow>> {
                let r: Vec<(String, i64)> =
                    sqlx::query_as("SELECT digest, size FROM blobs WHERE cached = 1 ORDER BY COALESCE(last_used_at, 0), digest LIMIT $1")
                        .bind(limit as i64)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                r.into_iter().map(|(digest, size)| Ok(BlobRow { digest: stored_digest(digest)?, size: size as u64 })).collect()
            }
        });
    };
}
