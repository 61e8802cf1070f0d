//! Repositories, blobs and their links, manifests, tags and referrers (`ContentStore`).

use portcullis_core::model::{ManifestRow, Referrer, Repo, Visibility};

/// A row of `repositories`.
#[derive(sqlx::FromRow)]
pub(crate) struct RepoRow {
    id: i64,
    name: String,
    visibility: String,
    created_at: i64,
}

pub(crate) fn repo(r: RepoRow) -> Repo {
    Repo {
        id: r.id,
        name: r.name,
        visibility: Visibility::parse(&r.visibility).unwrap_or(Visibility::Private),
        created_at: r.created_at,
    }
}

/// A stored manifest's columns (`manifest_cols!`).
#[derive(sqlx::FromRow)]
pub(crate) struct StoredManifest {
    digest: String,
    media_type: String,
    content: Vec<u8>,
    artifact_type: Option<String>,
    subject: Option<String>,
    annotations: Option<String>,
}

pub(crate) fn manifest(r: StoredManifest) -> ManifestRow {
    ManifestRow {
        digest: r.digest,
        media_type: r.media_type,
        content: r.content,
        artifact_type: r.artifact_type,
        subject: r.subject,
        annotations: r.annotations,
    }
}

macro_rules! manifest_cols {
    () => {
        "digest, media_type, content, artifact_type, subject, annotations"
    };
}

/// A manifest that refers to another one.
#[derive(sqlx::FromRow)]
pub(crate) struct ReferrerRow {
    digest: String,
    media_type: String,
    size: i64,
    artifact_type: Option<String>,
    annotations: Option<String>,
}

pub(crate) fn referrer(r: ReferrerRow) -> Referrer {
    Referrer {
        digest: r.digest,
        media_type: r.media_type,
        size: r.size,
        artifact_type: r.artifact_type,
        annotations: r.annotations,
    }
}

macro_rules! content_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::ContentStore, $store, {
            async fn ensure_repo(&self, name: &str, visibility: Visibility, now: i64) -> Result<Repo> {
                sqlx::query(
                    "INSERT INTO repositories (name, visibility, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(visibility.as_str())
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                let r: RepoRow =
                    sqlx::query_as("SELECT id, name, visibility, created_at FROM repositories WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.write)
                        .await
                        .map_err(db)?;
                Ok(repo(r))
            }

            async fn repo(&self, name: &str) -> Result<Option<Repo>> {
                let r: Option<RepoRow> =
                    sqlx::query_as("SELECT id, name, visibility, created_at FROM repositories WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.map(repo))
            }

            async fn list_repos(&self) -> Result<Vec<Repo>> {
                let r: Vec<RepoRow> =
                    sqlx::query_as("SELECT id, name, visibility, created_at FROM repositories ORDER BY name")
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(repo).collect())
            }

            async fn set_visibility(&self, name: &str, visibility: Visibility) -> Result<bool> {
                let r = sqlx::query("UPDATE repositories SET visibility = $1 WHERE name = $2")
                    .bind(visibility.as_str())
                    .bind(name)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_repo(&self, name: &str) -> Result<bool> {
                let mut tx = self.write.begin().await.map_err(db)?;
                let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                let Some((id,)) = id else { return Ok(false) };
                for sql in [
                    "DELETE FROM tags WHERE repo_id = $1",
                    "DELETE FROM manifest_blobs WHERE repo_id = $1",
                    "DELETE FROM manifests WHERE repo_id = $1",
                    "DELETE FROM repo_blobs WHERE repo_id = $1",
                    "DELETE FROM repositories WHERE id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn put_blob(&self, digest: &Digest, size: u64, now: i64) -> Result<()> {
                sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO UPDATE SET cached = 0")
                    .bind(digest.to_string())
                    .bind(size as i64)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
                let r: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
                    .bind(digest.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(|(s,)| s as u64))
            }

            async fn link_blob(&self, repo_id: i64, digest: &Digest) -> Result<()> {
                sqlx::query("INSERT INTO repo_blobs (repo_id, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(repo_id)
                    .bind(digest.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn linked_blob(&self, repo_id: i64, digest: &Digest) -> Result<Option<u64>> {
                let r: Option<(i64,)> = sqlx::query_as(
                    "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repo_id = $1 AND l.digest = $2",
                )
                .bind(repo_id)
                .bind(digest.to_string())
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
                Ok(r.map(|(s,)| s as u64))
            }

            async fn unlink_blob(&self, repo_id: i64, digest: &Digest) -> Result<bool> {
                let r = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_blobs(&self) -> Result<Vec<BlobRow>> {
                let r: Vec<(String, i64)> =
                    sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest").fetch_all(&self.read).await.map_err(db)?;
                r.into_iter().map(|(digest, size)| Ok(BlobRow { digest: stored_digest(digest)?, size: size as u64 })).collect()
            }

            async fn forget_blob(&self, digest: &Digest) -> Result<()> {
                sqlx::query("DELETE FROM blobs WHERE digest = $1").bind(digest.to_string()).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn put_manifest(
                &self,
                repo_id: i64,
                m: &ManifestRow,
                blob_refs: &[Digest],
                tag: Option<&Tag>,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.write.begin().await.map_err(db)?;
                sqlx::query(
                    "INSERT INTO manifests (repo_id, digest, media_type, content, size, artifact_type, subject, annotations, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING",
                )
                .bind(repo_id)
                .bind(&m.digest)
                .bind(&m.media_type)
                .bind(&m.content)
                .bind(m.content.len() as i64)
                .bind(&m.artifact_type)
                .bind(&m.subject)
                .bind(&m.annotations)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                for b in blob_refs {
                    sqlx::query("INSERT INTO manifest_blobs (repo_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(repo_id)
                        .bind(&m.digest)
                        .bind(b.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                if let Some(t) = tag {
                    sqlx::query(
                        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                    )
                    .bind(repo_id)
                    .bind(t.as_str())
                    .bind(&m.digest)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                tx.commit().await.map_err(db)
            }

            async fn manifest(&self, repo_id: i64, digest: &Digest) -> Result<Option<ManifestRow>> {
                let r: Option<StoredManifest> =
                    sqlx::query_as(concat!("SELECT ", manifest_cols!(), " FROM manifests WHERE repo_id = $1 AND digest = $2"))
                        .bind(repo_id)
                        .bind(digest.to_string())
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.map(manifest))
            }

            async fn tag_digest(&self, repo_id: i64, tag: &Tag) -> Result<Option<Digest>> {
                let r: Option<(String,)> = sqlx::query_as("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag.as_str())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                r.map(|(d,)| stored_digest(d)).transpose()
            }

            async fn manifest_by_tag(&self, repo_id: i64, tag: &Tag) -> Result<Option<ManifestRow>> {
                let r: Option<StoredManifest> = sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.content, m.artifact_type, m.subject, m.annotations FROM tags t \
                     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest WHERE t.repo_id = $1 AND t.name = $2",
                )
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
                Ok(r.map(manifest))
            }

            async fn manifests_present(&self, repo_id: i64, digests: &[Digest]) -> Result<Vec<Digest>> {
                let mut out = Vec::new();
                let mut c = self.read.acquire().await.map_err(db)?;
                for d in digests {
                    let r = sqlx::query("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                        .bind(repo_id)
                        .bind(d.to_string())
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db)?;
                    if r.is_some() {
                        out.push(d.clone());
                    }
                }
                Ok(out)
            }

            async fn delete_manifest(&self, repo_id: i64, digest: &Digest) -> Result<bool> {
                let mut tx = self.write.begin().await.map_err(db)?;
                sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                sqlx::query("DELETE FROM manifest_blobs WHERE repo_id = $1 AND manifest_digest = $2")
                    .bind(repo_id)
                    .bind(digest.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let r = sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_tag(&self, repo_id: i64, tag: &Tag) -> Result<bool> {
                let r = sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag.as_str())
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_tags(&self, repo_id: i64, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
                let limit = n.map(|n| n.min(i64::MAX as usize) as i64).unwrap_or(i64::MAX);
                let r: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3")
                        .bind(repo_id)
                        .bind(last.unwrap_or(""))
                        .bind(limit)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(|(t,)| t).collect())
            }

            async fn referrers(&self, repo_id: i64, subject: &Digest) -> Result<Vec<Referrer>> {
                let r: Vec<ReferrerRow> = sqlx::query_as(
                    "SELECT digest, media_type, size, artifact_type, annotations FROM manifests WHERE repo_id = $1 AND subject = $2 ORDER BY digest",
                )
                .bind(repo_id)
                .bind(subject.to_string())
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(r.into_iter().map(referrer).collect())
            }

            async fn unreferenced_blobs(&self) -> Result<Vec<Digest>> {
                let r: Vec<(String,)> = sqlx::query_as(
                    "SELECT b.digest FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest) \
                     AND NOT EXISTS (SELECT 1 FROM manifest_blobs m WHERE m.blob_digest = b.digest) ORDER BY b.digest",
                )
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                r.into_iter().map(|(d,)| stored_digest(d)).collect()
            }
        });
    };
}
