//! Unfinished blob uploads: their size and running hash (`UploadStore`).

use portcullis_core::model::Upload;

/// A row of `uploads`.
#[derive(sqlx::FromRow)]
pub(crate) struct UploadRow {
    id: String,
    repo: String,
    size: i64,
    started_at: i64,
    hash_state: Option<Vec<u8>>,
}

pub(crate) fn upload(r: UploadRow) -> Upload {
    Upload { id: r.id, repo: r.repo, size: r.size as u64, started_at: r.started_at, hash_state: r.hash_state }
}

macro_rules! uploads_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::UploadStore, $store, {
            async fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()> {
                sqlx::query("INSERT INTO uploads (id, repo, size, started_at) VALUES ($1, $2, 0, $3)")
                    .bind(id)
                    .bind(repo)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn upload(&self, id: &str) -> Result<Option<Upload>> {
                let r: Option<UploadRow> =
                    sqlx::query_as("SELECT id, repo, size, started_at, hash_state FROM uploads WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.write)
                        .await
                        .map_err(db)?;
                Ok(r.map(upload))
            }

            async fn set_upload_progress(&self, id: &str, size: u64, hash_state: &[u8]) -> Result<()> {
                sqlx::query("UPDATE uploads SET size = $1, hash_state = $2 WHERE id = $3")
                    .bind(size as i64)
                    .bind(hash_state)
                    .bind(id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn delete_upload(&self, id: &str) -> Result<()> {
                sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn uploads_started_before(&self, before: i64) -> Result<Vec<String>> {
                let r: Vec<(String,)> = sqlx::query_as("SELECT id FROM uploads WHERE started_at < $1 ORDER BY id")
                    .bind(before)
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(id,)| id).collect())
            }
        });
    };
}
