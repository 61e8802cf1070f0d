//! Hosted manifests and blob links kept in memory, so a pull of a hot image does not wait on
//! the database.
//!
//! Entries are keyed by repository id and reference (tag or digest), or repository id and blob
//! digest, and stamped with the generation they were read at. Every committed write to hosted
//! manifests, tags, blob links or repositories raises the generation — in this process once it
//! has committed; on PostgreSQL also when another replica's commit is announced
//! (`replica.rs`), before that replica answers its client — and an entry of an older
//! generation is never served. A reader takes the generation *before* it reads the database, so
//! a value read before a write commits carries the old generation and is ignored even if it is
//! stored after. Only what exists is kept (a new manifest or link cannot make an entry wrong).

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
/// Bytes a blob link costs; links get a budget as many bytes as manifests.
const LINK_COST: u64 = 160;

pub struct HostedCache {
    entries: Option<Cache<(i64, Reference), Entry>>,
    /// Sizes of the blobs linked to repositories.
    links: Option<Cache<(i64, oci::Digest), (u64, u64)>>,
    generation: AtomicU64,
}

impl HostedCache {
    /// A cache of at most `max_bytes` of manifests (0: off).
    pub fn new(max_bytes: u64) -> HostedCache {
        let entries = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &(i64, Reference), e: &Entry| {
                    let n = e.manifest.content.len() + e.manifest.digest.hex().len() + 8 + e.manifest.media_type.len();
                    u32::try_from(n + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build()
        });
        let links = (max_bytes > 0).then(|| Cache::new((max_bytes / LINK_COST).max(1)));
        HostedCache { entries, links, generation: AtomicU64::new(0) }
    }

    /// The generation to pass to [`HostedCache::insert`]: read it before the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The manifest `reference` names in repository `repo`, if it is here and current.
    pub fn get(&self, repo: i64, reference: &Reference) -> Option<ServedManifest> {
        let entries = self.entries.as_ref()?;
        let e = entries.get(&(repo, reference.clone()))?;
        (e.generation == self.generation()).then_some(e.manifest)
    }

    /// Remembers what the database said at `generation` (see [`HostedCache::generation`]).
    pub fn insert(&self, generation: u64, repo: i64, reference: &Reference, manifest: &ServedManifest) {
        if let Some(entries) = &self.entries
            && generation == self.generation()
        {
            entries.insert((repo, reference.clone()), Entry { generation, manifest: manifest.clone() });
        }
    }

    /// The size of blob `digest` linked to repository `repo`, if it is here and current.
    pub fn link(&self, repo: i64, digest: &oci::Digest) -> Option<u64> {
        let (generation, size) = self.links.as_ref()?.get(&(repo, digest.clone()))?;
        (generation == self.generation()).then_some(size)
    }

    /// Remembers that the database said blob `digest` of `size` is linked to `repo` at `generation`.
    pub fn insert_link(&self, generation: u64, repo: i64, digest: &oci::Digest, size: u64) {
        if let Some(links) = &self.links
            && generation == self.generation()
        {
            links.insert((repo, digest.clone()), (generation, size));
        }
    }

    /// After a write to hosted content has committed: nothing read before it is served again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
        if let Some(links) = &self.links {
            links.invalidate_all();
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
        let c = HostedCache::new(1 << 20);
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
        let c = HostedCache::new(1 << 20);
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
        let c = HostedCache::new(0);
        c.insert(c.generation(), 1, &tag("1"), &manifest('a'));
        c.insert_link(c.generation(), 1, &digest('b'), 5);
        assert!(c.get(1, &tag("1")).is_none());
        assert!(c.link(1, &digest('b')).is_none());
    }

    #[test]
    fn links_are_kept_until_a_write_and_never_from_before_it() {
        let c = HostedCache::new(1 << 20);
        let before = c.generation();
        c.insert_link(before, 1, &digest('b'), 5);
        assert_eq!(c.link(1, &digest('b')), Some(5));
        assert_eq!(c.link(2, &digest('b')), None, "another repository");
        c.invalidate();
        assert_eq!(c.link(1, &digest('b')), None);
        c.insert_link(before, 1, &digest('b'), 5);
        assert_eq!(c.link(1, &digest('b')), None, "read before the write");
    }
}
