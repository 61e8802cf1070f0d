//! `UploadStore` of the in-memory adapter (as `store/src/sql/uploads.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl UploadStore for MemoryMeta {
    async fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()> {
        self.with(|s| {
            let u = Upload { id: id.into(), repo: repo.into(), size: 0, started_at: now, hash_state: None };
            if s.uploads.insert(id.into(), u).is_some() {
                return Err(Error::Conflict("already exists".into()));
            }
            Ok(())
        })
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        self.with(|s| Ok(s.uploads.get(id).cloned()))
    }

    async fn set_upload_progress(&self, id: &str, size: u64, hash_state: &[u8]) -> Result<()> {
        self.with(|s| {
            if let Some(u) = s.uploads.get_mut(id) {
                u.size = size;
                u.hash_state = Some(hash_state.to_vec());
            }
            Ok(())
        })
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        self.with(|s| {
            s.uploads.remove(id);
            Ok(())
        })
    }

    async fn uploads_started_before(&self, before: i64) -> Result<Vec<String>> {
        self.with(|s| Ok(s.uploads.values().filter(|u| u.started_at < before).map(|u| u.id.clone()).collect()))
    }
}
