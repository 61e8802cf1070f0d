//! `ContentStore` of the in-memory adapter (as `store/src/sql/content.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl ContentStore for MemoryMeta {
    async fn ensure_repo(&self, name: &str, visibility: Visibility, now: i64) -> Result<Repo> {
        self.with(|s| {
            if let Some(r) = s.repos.values().find(|r| r.name == name) {
                return Ok(r.clone());
            }
            let id = s.id();
            let r = Repo { id, name: name.into(), visibility, created_at: now };
            s.repos.insert(id, r.clone());
            s.changed();
            Ok(r)
        })
    }

    async fn repo(&self, name: &str) -> Result<Option<Repo>> {
        self.with(|s| Ok(s.repos.values().find(|r| r.name == name).cloned()))
    }

    async fn list_repos(&self) -> Result<Vec<Repo>> {
        self.with(|s| {
            let mut v: Vec<Repo> = s.repos.values().cloned().collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(v)
        })
    }

    async fn set_visibility(&self, name: &str, visibility: Visibility) -> Result<bool> {
        self.with(|s| {
            let Some(r) = s.repos.values_mut().find(|r| r.name == name) else { return Ok(false) };
            r.visibility = visibility;
            s.changed();
            Ok(true)
        })
    }

    async fn delete_repo(&self, name: &str) -> Result<bool> {
        self.with(|s| {
            let Some(id) = s.repos.values().find(|r| r.name == name).map(|r| r.id) else { return Ok(false) };
            s.tags.retain(|(r, _), _| *r != id);
            s.references.retain(|(r, _, _)| *r != id);
            s.manifests.retain(|(r, _), _| *r != id);
            s.links.retain(|(r, _)| *r != id);
            s.repos.remove(&id);
            s.changed();
            Ok(true)
        })
    }

    async fn put_blob(&self, digest: &Digest, size: u64, _now: i64) -> Result<()> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            let b = s.blobs.entry(digest.into()).or_insert(BlobRecord { size, cached: false, last_used_at: None });
            b.cached = false;
            Ok(())
        })
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| Ok(s.blobs.get(digest).map(|b| b.size)))
    }

    async fn link_blob(&self, repo_id: i64, digest: &Digest) -> Result<()> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            if !s.blobs.contains_key(digest) {
                return Err(Error::db(format!("link to unknown blob {digest}")));
            }
            s.links.insert((repo_id, digest.into()));
            Ok(())
        })
    }

    async fn linked_blob(&self, repo_id: i64, digest: &Digest) -> Result<Option<u64>> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            Ok(s.links.contains(&(repo_id, digest.to_owned())).then(|| s.blobs.get(digest).map(|b| b.size)).flatten())
        })
    }

    async fn unlink_blob(&self, repo_id: i64, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| Ok(s.links.remove(&(repo_id, digest.to_owned()))))
    }

    async fn list_blobs(&self) -> Result<Vec<BlobRow>> {
        self.with(|s| s.blobs.iter().map(|(d, b)| Ok(BlobRow { digest: stored(d)?, size: b.size })).collect())
    }

    async fn forget_blob(&self, digest: &Digest) -> Result<()> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            s.blobs.remove(digest);
            s.links.retain(|(_, d)| d != digest);
            Ok(())
        })
    }

    async fn unreferenced_blobs(&self) -> Result<Vec<Digest>> {
        self.with(|s| {
            s.blobs
                .keys()
                .filter(|d| !s.links.iter().any(|(_, l)| l == *d) && !s.references.iter().any(|(_, _, b)| b == *d))
                .map(|d| stored(d))
                .collect()
        })
    }

    async fn put_manifest(
        &self,
        repo_id: i64,
        m: &ManifestRow,
        blob_refs: &[Digest],
        tag: Option<&Tag>,
        now: i64,
    ) -> Result<()> {
        self.with(|s| {
            s.manifests.entry((repo_id, m.digest.clone())).or_insert_with(|| m.clone());
            for b in blob_refs {
                s.references.insert((repo_id, m.digest.clone(), b.to_string()));
            }
            if let Some(t) = tag {
                s.tags.insert((repo_id, t.as_str().to_owned()), (m.digest.clone(), now));
            }
            Ok(())
        })
    }

    async fn manifest(&self, repo_id: i64, digest: &Digest) -> Result<Option<ManifestRow>> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| Ok(s.manifests.get(&(repo_id, digest.to_owned())).cloned()))
    }

    async fn tag_digest(&self, repo_id: i64, tag: &Tag) -> Result<Option<Digest>> {
        let tag = tag.as_str();
        self.with(|s| s.tags.get(&(repo_id, tag.to_owned())).map(|(d, _)| stored(d)).transpose())
    }

    async fn manifest_by_tag(&self, repo_id: i64, tag: &Tag) -> Result<Option<ManifestRow>> {
        let tag = tag.as_str();
        self.with(|s| {
            Ok(s.tags
                .get(&(repo_id, tag.to_owned()))
                .and_then(|(d, _)| s.manifests.get(&(repo_id, d.clone())))
                .cloned())
        })
    }

    async fn manifests_present(&self, repo_id: i64, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.with(|s| {
            Ok(digests.iter().filter(|d| s.manifests.contains_key(&(repo_id, d.to_string()))).cloned().collect())
        })
    }

    async fn delete_manifest(&self, repo_id: i64, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        let digest = digest.as_str();
        self.with(|s| {
            s.tags.retain(|(r, _), (d, _)| !(*r == repo_id && d == digest));
            s.references.retain(|(r, m, _)| !(*r == repo_id && m == digest));
            Ok(s.manifests.remove(&(repo_id, digest.to_owned())).is_some())
        })
    }

    async fn delete_tag(&self, repo_id: i64, tag: &Tag) -> Result<bool> {
        let tag = tag.as_str();
        self.with(|s| Ok(s.tags.remove(&(repo_id, tag.to_owned())).is_some()))
    }

    async fn list_tags(&self, repo_id: i64, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        self.with(|s| {
            Ok(s.tags
                .keys()
                .filter(|(r, t)| *r == repo_id && t.as_str() > last.unwrap_or(""))
                .map(|(_, t)| t.clone())
                .take(n.unwrap_or(usize::MAX))
                .collect())
        })
    }

    async fn referrers(&self, repo_id: i64, subject: &Digest) -> Result<Vec<Referrer>> {
        let subject = subject.to_string();
        let subject = subject.as_str();
        self.with(|s| {
            Ok(s.manifests
                .iter()
                .filter(|((r, _), m)| *r == repo_id && m.subject.as_deref() == Some(subject))
                .map(|(_, m)| Referrer {
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    size: m.content.len() as i64,
                    artifact_type: m.artifact_type.clone(),
                    annotations: m.annotations.clone(),
                })
                .collect())
        })
    }
}
