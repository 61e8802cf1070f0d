//! The ports services need: metadata (`MetaStore`, split by capability in `meta.rs`), content
//! (`BlobStore`), other registries (`UpstreamRegistry`), a directory that checks passwords
//! (`PasswordDirectory`, LDAP), workload token issuers (`WorkloadVerifier`), Docker Hub's badges (`BadgeLookup`) and time (`Clock`). Adapters live in
//! `portcullis-store` and `portcullis-upstream`; every store adapter passes the same test suite
//! there, and so does the in-memory store of `memory.rs`.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::error::Result;
use crate::model::*;
use oci::Digest;

mod meta;
pub use meta::*;

/// A directory that checks passwords itself (LDAP, Active Directory); `idp::ldap` implements it.
#[async_trait]
pub trait PasswordDirectory: Send + Sync {
    /// Who `username` is when `password` is theirs; `None` when it is not (or no such user).
    /// `Error::Unavailable` when the directory cannot be asked.
    async fn verify(&self, username: &str, password: &str) -> Result<Option<ExternalIdentity>>;
}

/// The workload identity issuers the administrator trusts (`idp::workload`): verifies a token's
/// signature with the issuer's published keys, its issuer, audience, times and lifetime.
#[async_trait]
pub trait WorkloadVerifier: Send + Sync {
    /// Who the token says the workload is; `Error::Unauthenticated` with the reason when it is
    /// refused, `Error::Unavailable` when the issuer's keys cannot be had and none is known.
    async fn verify(&self, token: &str, now: i64) -> Result<WorkloadIdentity>;
    /// The trusted issuers' names, which workload rules refer to.
    fn issuers(&self) -> Vec<String>;
    /// Every trusted issuer: the configured ones, then those added at run time.
    fn list(&self) -> Vec<WorkloadIssuerView>;
    /// An issuer to be added, checked (a name and `iss` not trusted yet, allowed algorithms, a
    /// JWKS of usable keys) and with its defaults filled in; `Error::Invalid` or
    /// `Error::Conflict` with the reason.
    fn check(&self, issuer: WorkloadIssuer) -> Result<WorkloadIssuer>;
    /// Makes `added` the issuers added at run time (as stored); the keys held of an issuer that
    /// did not change are kept.
    fn set_added(&self, added: Vec<WorkloadIssuer>);
}

/// A verified workload identity token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// The issuer's name here (`[[auth.workload_issuers]] name`).
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The claims rules may test ([`policy::WORKLOAD_CLAIMS`]), flattened to strings: a
    /// Kubernetes token's `kubernetes.io` claim gives `namespace`, `serviceaccount`, `pod`, `node`.
    pub claims: std::collections::BTreeMap<String, String>,
    /// `exp`.
    pub expires_at: i64,
}

/// Docker Hub's badge of a namespace (`upstream::hub`): `Ok(None)` when it has none (community);
/// `Error::Unavailable` when Docker Hub cannot be asked or answers nonsense.
#[async_trait]
pub trait BadgeLookup: Send + Sync {
    async fn badge(&self, namespace: &str) -> Result<Option<policy::Badge>>;
}

/// A stream of blob bytes.
/// Who an identity provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub source: policy::Provider,
    /// The provider's stable id: issuer and subject for OIDC, the entry's DN for LDAP.
    pub external_id: String,
    /// The account name here, from the provider's username claim or attribute.
    pub username: String,
    pub groups: Vec<String>,
}

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Random-access reads of an upload that may still be growing (stream-through of fills).
pub trait GrowingReader: Send + Sync {
    /// Reads at `offset`; blocking, call from a blocking thread.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

/// A manifest fetched from an upstream registry.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// `Docker-Content-Digest`, when the upstream sent one (verified, never trusted).
    pub digest: Option<String>,
    pub media_type: String,
    pub content: Bytes,
}

/// A blob body being fetched from an upstream registry.
pub struct FetchedBlob {
    pub size: u64,
    pub body: ByteStream,
}

/// Another registry (Docker Hub, ghcr.io, ...). Errors: `Registry(MANIFEST_UNKNOWN|BLOB_UNKNOWN)`
/// for 404, `Denied` when the upstream refuses, `Throttled` for 429, `Unavailable` otherwise.
#[async_trait]
pub trait UpstreamRegistry: Send + Sync + 'static {
    /// Whether requests for this canonical registry may be proxied.
    fn knows(&self, registry: &str) -> bool;
    async fn manifest(&self, repo: &oci::source::UpstreamRepo, reference: &str) -> Result<FetchedManifest>;
    /// The digest a reference resolves to (HEAD), for revalidating cached tags.
    async fn manifest_digest(&self, repo: &oci::source::UpstreamRepo, reference: &str) -> Result<Option<String>>;
    async fn blob(&self, repo: &oci::source::UpstreamRepo, digest: &str) -> Result<FetchedBlob>;
    /// A page of the repository's tags (`n` and `last` as in the API), and whether more follow.
    async fn tags(
        &self,
        repo: &oci::source::UpstreamRepo,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)>;
    /// The referrers of a manifest, or `None` when the upstream has no referrers API (clients
    /// then fall back to the referrers tag schema).
    async fn referrers(
        &self,
        repo: &oci::source::UpstreamRepo,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>>;
}

/// A storage adapter that times its operations and counts its failures.
pub trait Measured: Send + Sync {
    /// Latency and failures of this backend's operations, for `/metrics`.
    fn stats(&self) -> &crate::metrics::BackendStats;
}

/// Content-addressed blob bytes and in-progress uploads.
#[async_trait]
pub trait BlobStore: Measured + 'static {
    /// Starts an empty upload.
    async fn upload_create(&self, id: &str) -> Result<()>;
    /// Writes `data` at `offset` of an upload (its recorded size), replacing whatever it held
    /// from `offset` on (bytes of a write the metadata never recorded). A write past the end is
    /// refused, or leaves the upload unable to commit.
    async fn upload_write(&self, id: &str, offset: u64, data: Bytes) -> Result<()>;
    /// Reads an upload back (only to rebuild hash state lost in a restart).
    async fn upload_read(&self, id: &str) -> Result<ByteStream>;
    /// A blocking writer appending to an upload (for a dedicated writer thread).
    async fn upload_writer(&self, id: &str) -> Result<Box<dyn std::io::Write + Send>>;
    /// Opens an upload for random-access reads while it grows; stays valid after commit.
    async fn upload_open(&self, id: &str) -> Result<std::sync::Arc<dyn GrowingReader>>;
    /// Makes the upload's first `size` bytes the blob `digest`, atomically: the blob is visible
    /// only when whole. Fails when the upload holds fewer bytes.
    async fn upload_commit(&self, id: &str, digest: &Digest, size: u64) -> Result<()>;
    async fn upload_delete(&self, id: &str) -> Result<()>;
    /// Size of a stored blob, if present.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Streams `len` bytes of a blob from `offset`.
    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream>;
    async fn delete(&self, digest: &Digest) -> Result<()>;
    /// Every stored blob digest, sorted (fsck, gc).
    async fn list(&self) -> Result<Vec<String>>;
    /// Every upload in the store with when it was last written (unix seconds).
    async fn list_uploads(&self) -> Result<Vec<crate::model::StoredUpload>>;
    /// A short-lived URL from which a client may fetch the blob directly (a presigned S3 URL),
    /// when the store is set to hand those out. Callers decide access first.
    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>>;
    /// Moves a blob aside so that it is no longer served (fsck).
    async fn quarantine(&self, digest: &Digest) -> Result<()>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<()>;
}
