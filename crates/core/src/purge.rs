//! Purging abandoned uploads: a push a client never finished, or a proxy fill whose process
//! died, leaves bytes in the blob store (and for pushes a row in `uploads`). Anything not
//! written to for `max_age` is deleted, as distribution's upload purging does. Uploads are
//! found in the store and in the database, so neither side keeps an orphan.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::ports::{BlobStore, UploadStore};

/// How long an upload may sit untouched before it is purged.
pub const UPLOAD_MAX_AGE_SECS: i64 = 24 * 3600;

/// Deletes uploads untouched since `now - max_age`; returns how many.
pub async fn purge_uploads(meta: &dyn UploadStore, blobs: &dyn BlobStore, now: i64, max_age: i64) -> Result<usize> {
    let cutoff = now - max_age;
    let stored: BTreeMap<String, i64> = blobs.list_uploads().await?.into_iter().map(|u| (u.id, u.written_at)).collect();
    let mut stale: BTreeSet<String> = stored.iter().filter(|(_, t)| **t < cutoff).map(|(id, _)| id.clone()).collect();
    // Rows of uploads that never got bytes (an empty S3 upload has no object).
    for id in meta.uploads_started_before(cutoff).await? {
        if !stored.contains_key(&id) {
            stale.insert(id);
        }
    }
    for id in &stale {
        blobs.upload_delete(id).await?;
        meta.delete_upload(id).await?;
    }
    Ok(stale.len())
}
