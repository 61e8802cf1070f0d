//! `MemoryUpstream`: other registries in memory, counting every request made of them, so that
//! tests can say exactly what the gateway asked upstream (and that a denied pull asked nothing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use oci::digest::Hasher;
use oci::source::UpstreamRepo;
use oci::{Algorithm, Digest, ErrorCode};

use crate::error::{Error, Result};
use crate::model::Referrer;
use crate::ports::{FetchedBlob, FetchedManifest, UpstreamRegistry};

/// How many requests of each kind were made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// Manifest GETs.
    pub manifests: u64,
    /// Manifest HEADs.
    pub heads: u64,
    /// Blob GETs.
    pub blobs: u64,
    /// Tags list and referrers requests.
    pub listings: u64,
}

impl Calls {
    /// Requests that transfer content (manifest and blob GETs).
    pub fn gets(&self) -> u64 {
        self.manifests + self.blobs
    }
}

#[derive(Default)]
struct Counters {
    manifests: AtomicU64,
    heads: AtomicU64,
    blobs: AtomicU64,
    listings: AtomicU64,
}

#[derive(Default)]
struct State {
    /// (canonical repository, tag or digest) → (media type, bytes)
    manifests: HashMap<(String, String), (String, Bytes)>,
    blobs: HashMap<String, Bytes>,
}

/// Registries (by canonical host) served from memory.
pub struct MemoryUpstream {
    registries: Vec<String>,
    state: Mutex<State>,
    counters: Counters,
}

impl MemoryUpstream {
    /// Upstreams for these canonical registry hosts (`docker.io`, `ghcr.io`).
    pub fn new(registries: &[&str]) -> MemoryUpstream {
        MemoryUpstream {
            registries: registries.iter().map(|r| (*r).to_owned()).collect(),
            state: Mutex::default(),
            counters: Counters::default(),
        }
    }

    /// Stores a blob; returns its digest.
    pub fn put_blob(&self, content: &[u8]) -> Digest {
        let d = Hasher::digest(Algorithm::Sha256, content);
        if let Ok(mut s) = self.state.lock() {
            s.blobs.insert(d.to_string(), Bytes::copy_from_slice(content));
        }
        d
    }

    /// Stores a manifest of `repo` (canonical: `docker.io/someone/app`) under its digest and
    /// `tag`; returns its digest.
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, content: &[u8]) -> Digest {
        let d = Hasher::digest(Algorithm::Sha256, content);
        let entry = (media_type.to_owned(), Bytes::copy_from_slice(content));
        if let Ok(mut s) = self.state.lock() {
            s.manifests.insert((repo.to_owned(), d.to_string()), entry.clone());
            s.manifests.insert((repo.to_owned(), tag.to_owned()), entry);
        }
        d
    }

    /// The requests made so far.
    pub fn calls(&self) -> Calls {
        let c = &self.counters;
        Calls {
            manifests: c.manifests.load(Ordering::SeqCst),
            heads: c.heads.load(Ordering::SeqCst),
            blobs: c.blobs.load(Ordering::SeqCst),
            listings: c.listings.load(Ordering::SeqCst),
        }
    }

    fn lookup(&self, repo: &UpstreamRepo, reference: &str) -> Option<(String, Bytes)> {
        self.state.lock().ok()?.manifests.get(&(repo.canonical(), reference.to_owned())).cloned()
    }
}

#[async_trait]
impl UpstreamRegistry for MemoryUpstream {
    fn knows(&self, registry: &str) -> bool {
        self.registries.iter().any(|r| r == registry)
    }

    async fn manifest(&self, repo: &UpstreamRepo, reference: &str) -> Result<FetchedManifest> {
        self.counters.manifests.fetch_add(1, Ordering::SeqCst);
        let (media_type, content) = self.lookup(repo, reference).ok_or_else(|| {
            Error::registry(ErrorCode::ManifestUnknown, format!("{} has no manifest {reference}", repo.canonical()))
        })?;
        let digest = Some(Hasher::digest(Algorithm::Sha256, &content).to_string());
        Ok(FetchedManifest { digest, media_type, content })
    }

    async fn manifest_digest(&self, repo: &UpstreamRepo, reference: &str) -> Result<Option<String>> {
        self.counters.heads.fetch_add(1, Ordering::SeqCst);
        Ok(self.lookup(repo, reference).map(|(_, c)| Hasher::digest(Algorithm::Sha256, &c).to_string()))
    }

    async fn blob(&self, _repo: &UpstreamRepo, digest: &str) -> Result<FetchedBlob> {
        self.counters.blobs.fetch_add(1, Ordering::SeqCst);
        let b = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.blobs.get(digest).cloned())
            .ok_or_else(|| Error::registry(ErrorCode::BlobUnknown, format!("no blob {digest}")))?;
        let size = b.len() as u64;
        Ok(FetchedBlob { size, body: Box::pin(futures_util::stream::iter(vec![Ok(b)])) })
    }

    async fn tags(&self, repo: &UpstreamRepo, _n: Option<usize>, _last: Option<&str>) -> Result<(Vec<String>, bool)> {
        self.counters.listings.fetch_add(1, Ordering::SeqCst);
        let s = self.state.lock().map_err(|_| Error::Unavailable("poisoned".into()))?;
        let mut tags: Vec<String> = s
            .manifests
            .keys()
            .filter(|(r, t)| *r == repo.canonical() && !t.contains(':'))
            .map(|(_, t)| t.clone())
            .collect();
        tags.sort();
        Ok((tags, false))
    }

    async fn referrers(
        &self,
        _repo: &UpstreamRepo,
        _digest: &str,
        _artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        self.counters.listings.fetch_add(1, Ordering::SeqCst);
        Ok(Some(vec![]))
    }
}
