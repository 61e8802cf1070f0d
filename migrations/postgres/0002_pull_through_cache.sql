-- Pull-through cache: blobs fetched from upstreams are evictable (least recently used first);
-- a cached blob is reachable through the repositories whose manifests reference it.
ALTER TABLE blobs ADD COLUMN cached BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN last_used_at BIGINT;
CREATE INDEX blobs_lru ON blobs (cached, last_used_at);
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs (blob_digest, repo_id);
