//! What the cache served lately, held in memory for a database outage: manifests by digest,
//! the digests tags named, and the sizes of blobs a manifest references. Consulted only when
//! the database answers `Unavailable` (the pull is then served on what this replica served
//! before, as a cached tag is served stale when the upstream fails); content is addressed by
//! digest, so what is held cannot be wrong, only older.

use moka::sync::Cache;
use oci::{Digest, Tag};

use crate::content::ServedManifest;

/// Bytes of manifests held.
const MANIFEST_BYTES: u64 = 16 << 20;
/// Tags and blobs held.
const ENTRIES: u64 = 100_000;

pub(super) struct Held {
    manifests: Cache<(i64, Digest), ServedManifest>,
    tags: Cache<(i64, Tag), Digest>,
    blobs: Cache<(i64, Digest), u64>,
}

impl Default for Held {
    fn default() -> Held {
        Held {
            manifests: Cache::builder()
                .max_capacity(MANIFEST_BYTES)
                .weigher(|_: &(i64, Digest), m: &ServedManifest| {
                    u32::try_from(m.content.len() + 256).unwrap_or(u32::MAX)
                })
                .build(),
            tags: Cache::new(ENTRIES),
            blobs: Cache::new(ENTRIES),
        }
    }
}

impl Held {
    /// (A warm pull finds what it served already held: only a lookup then, no insert.)
    pub fn manifest_served(&self, repo: i64, tag: Option<&Tag>, m: &ServedManifest) {
        if let Some(t) = tag
            && self.tag(repo, t).as_ref() != Some(&m.digest)
        {
            self.tags.insert((repo, t.clone()), m.digest.clone());
        }
        let key = (repo, m.digest.clone());
        if !self.manifests.contains_key(&key) {
            self.manifests.insert(key, ServedManifest { stale: false, ..m.clone() });
        }
    }

    pub fn manifest(&self, repo: i64, digest: &Digest) -> Option<ServedManifest> {
        self.manifests.get(&(repo, digest.clone()))
    }

    /// The manifest a tag named when last served, marked stale.
    pub fn tagged(&self, repo: i64, tag: &Tag) -> Option<ServedManifest> {
        let d = self.tag(repo, tag)?;
        self.manifest(repo, &d).map(|m| ServedManifest { stale: true, ..m })
    }

    pub fn tag(&self, repo: i64, tag: &Tag) -> Option<Digest> {
        self.tags.get(&(repo, tag.clone()))
    }

    pub fn blob_served(&self, repo: i64, digest: &Digest, size: u64) {
        let key = (repo, digest.clone());
        if !self.blobs.contains_key(&key) {
            self.blobs.insert(key, size);
        }
    }

    pub fn blob(&self, repo: i64, digest: &Digest) -> Option<u64> {
        self.blobs.get(&(repo, digest.clone()))
    }
}

/// Whether a database call failed because the database cannot be reached.
pub(super) fn unreachable<T>(r: &crate::error::Result<T>) -> bool {
    matches!(r, Err(crate::error::Error::Unavailable(_)))
}
