//! Hosted manifests kept in memory, so a pull of a hot image does not wait on the database.
//!
//! Entries are keyed by repository id and reference (tag or digest) and stamped with the
//! generation they were read at. Every write to hosted manifests, tags or repositories in this
//! process raises the generation once it has committed; an entry of an older generation is never
//! served. A reader takes the generation *before* it reads the database, so a value read
//! before a write commits carries the old generation and is ignored even if it is stored after.
//!
//! Only for a process that is the sole writer of its database (SQLite, the embedded default):
//! PostgreSQL replicas write behind each other's backs, so there the cache is off and every
//! pull reads the database, as replicas must see each other's pushes at once.

use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;
use oci::Reference;

use crate::content::ServedManifest;

#[derive(Clone)]
struct Entry {
    generation: u64,
    manifest: ServedManifest,
}

/// Bytes an entry costs besides its content and strings (key, bookkeeping), for the budget.
const ENTRY_OVERHEAD: usize = 256;

pub struct ManifestCache {
    entries: Option<Cache<(i64, Reference), Entry>>,
    generation: AtomicU64,
}

impl ManifestCache {
    /// A cache of at most `max_bytes` of manifests (0: off).
    pub fn new(max_bytes: u64) -> ManifestCache {
        let entries = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &(i64, Reference), e: &Entry| {
                    let n = e.manifest.content.len() + e.manifest.digest.hex().len() + 8 + e.manifest.media_type.len();
                    u32::try_from(n + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build()
        });
        ManifestCache { entries, generation: AtomicU64::new(0) }
    }

    /// The generation to pass to [`ManifestCache::insert`]: read it before the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The manifest `reference` names in repository `repo`, if it is here and current.
    pub fn get(&self, repo: i64, reference: &Reference) -> Option<ServedManifest> {
        let entries = self.entries.as_ref()?;
        let e = entries.get(&(repo, reference.clone()))?;
        (e.generation == self.generation()).then_some(e.manifest)
    }

    /// Remembers what the database said at `generation` (see [`ManifestCache::generation`]).
    pub fn insert(&self, generation: u64, repo: i64, reference: &Reference, manifest: &ServedManifest) {
        if let Some(entries) = &self.entries
            && generation == self.generation()
        {
            entries.insert((repo, reference.clone()), Entry { generation, manifest: manifest.clone() });
        }
    }

    /// After a write to hosted content has committed: nothing read before it is served again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A digest of 64 `hex`.
    fn digest(hex: char) -> oci::Digest {
        format!("sha256:{}", hex.to_string().repeat(64)).parse().unwrap()
    }

    fn manifest(hex: char) -> ServedManifest {
        ServedManifest {
            digest: digest(hex),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: Bytes::from_static(b"{}"),
            stale: false,
        }
    }

    fn tag(t: &str) -> Reference {
        Reference::Tag(t.parse().unwrap())
    }

    #[test]
    fn serves_what_was_read_until_a_write() {
        let c = ManifestCache::new(1 << 20);
        let g = c.generation();
        c.insert(g, 1, &tag("1"), &manifest('a'));
        assert_eq!(c.get(1, &tag("1")).unwrap().digest, digest('a'));
        assert!(c.get(2, &tag("1")).is_none(), "another repository");
        assert!(c.get(1, &tag("2")).is_none(), "another tag");
        c.invalidate();
        assert!(c.get(1, &tag("1")).is_none());
    }

    #[test]
    fn a_read_that_raced_a_write_is_never_served() {
        let c = ManifestCache::new(1 << 20);
        let before = c.generation();
        // The write commits and invalidates while the reader still holds the old value.
        c.invalidate();
        c.insert(before, 1, &tag("1"), &manifest('0'));
        assert!(c.get(1, &tag("1")).is_none());
        let now = c.generation();
        c.insert(now, 1, &tag("1"), &manifest('1'));
        assert_eq!(c.get(1, &tag("1")).unwrap().digest, digest('1'));
    }

    #[test]
    fn off_keeps_nothing() {
        let c = ManifestCache::new(0);
        c.insert(c.generation(), 1, &tag("1"), &manifest('a'));
        assert!(c.get(1, &tag("1")).is_none());
    }
}
