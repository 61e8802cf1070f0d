//! The ports services need: metadata (`MetaStore`) and content (`BlobStore`). Adapters live in
//! `portcullis-store`; every adapter passes the same test suite there.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::error::Result;
use crate::model::*;

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Metadata: identity, organizations, repositories, manifests, tags, blob links, uploads.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Latency and failures of this backend's operations, for `/metrics`.
    fn stats(&self) -> &crate::metrics::BackendStats;

    // --- users and tokens
    /// Creates a user; `Conflict` when the name is taken by a user or an organization.
    async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool, now: i64) -> Result<User>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()>;
    async fn count_users(&self) -> Result<i64>;
    #[allow(clippy::too_many_arguments)]
    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        kind: &str,
        token_hash: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<AccessToken>;
    /// The token with this hash and its owner.
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<(AccessToken, User)>>;
    async fn list_tokens(&self, user_id: i64) -> Result<Vec<AccessToken>>;
    /// Deletes a user's token; false when there was none.
    async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool>;
    async fn touch_token(&self, token_id: i64, now: i64) -> Result<()>;

    // --- organizations and teams
    /// Creates an org with its `owners` team holding `creator`; `Conflict` when the name is taken.
    async fn create_org(&self, name: &str, creator: i64, now: i64) -> Result<Org>;
    async fn org_by_name(&self, name: &str) -> Result<Option<Org>>;
    async fn list_orgs(&self) -> Result<Vec<Org>>;
    async fn create_team(&self, org_id: i64, name: &str) -> Result<Team>;
    async fn team(&self, org_id: i64, name: &str) -> Result<Option<Team>>;
    async fn list_teams(&self, org_id: i64) -> Result<Vec<Team>>;
    async fn delete_team(&self, team_id: i64) -> Result<()>;
    /// Adds a member; true when added, false when already a member.
    async fn add_member(&self, team_id: i64, user_id: i64) -> Result<bool>;
    /// Removes a member. Refuses (`Conflict`) to remove the last member of `owners`.
    async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<bool>;
    async fn team_members(&self, team_id: i64) -> Result<Vec<User>>;
    async fn set_permission(&self, team_id: i64, repo_path: &str, permission: Option<Permission>) -> Result<()>;
    async fn team_permissions(&self, team_id: i64) -> Result<Vec<(String, Permission)>>;
    /// Everything authorization needs, for the in-memory directory.
    async fn load_directory(&self) -> Result<DirectoryRows>;

    // --- repositories
    /// Returns the repository, creating it with `visibility` when it does not exist.
    async fn ensure_repo(&self, name: &str, visibility: Visibility, now: i64) -> Result<Repo>;
    async fn repo(&self, name: &str) -> Result<Option<Repo>>;
    async fn list_repos(&self) -> Result<Vec<Repo>>;
    async fn set_visibility(&self, name: &str, visibility: Visibility) -> Result<bool>;
    async fn delete_repo(&self, name: &str) -> Result<bool>;

    // --- blobs
    /// Records a committed blob of `size` bytes (idempotent).
    async fn put_blob(&self, digest: &str, size: u64, now: i64) -> Result<()>;
    async fn blob_size(&self, digest: &str) -> Result<Option<u64>>;
    async fn link_blob(&self, repo_id: i64, digest: &str) -> Result<()>;
    /// The size of a blob when it is linked to the repository.
    async fn linked_blob(&self, repo_id: i64, digest: &str) -> Result<Option<u64>>;
    async fn unlink_blob(&self, repo_id: i64, digest: &str) -> Result<bool>;
    /// All blob digests with their sizes (for fsck).
    async fn list_blobs(&self) -> Result<Vec<(String, u64)>>;
    /// Forgets a blob and all its links (fsck quarantine).
    async fn forget_blob(&self, digest: &str) -> Result<()>;

    // --- manifests and tags
    /// Stores a manifest, its references (blobs and child manifests) and optionally a tag,
    /// in one transaction.
    async fn put_manifest(
        &self,
        repo_id: i64,
        m: &ManifestRow,
        blob_refs: &[String],
        tag: Option<&str>,
        now: i64,
    ) -> Result<()>;
    async fn manifest(&self, repo_id: i64, digest: &str) -> Result<Option<ManifestRow>>;
    async fn tag_digest(&self, repo_id: i64, tag: &str) -> Result<Option<String>>;
    /// The manifest a tag points to, in one query.
    async fn manifest_by_tag(&self, repo_id: i64, tag: &str) -> Result<Option<ManifestRow>>;
    /// Which of `digests` are manifests of the repository.
    async fn manifests_present(&self, repo_id: i64, digests: &[String]) -> Result<Vec<String>>;
    /// Deletes a manifest and the tags pointing to it.
    async fn delete_manifest(&self, repo_id: i64, digest: &str) -> Result<bool>;
    async fn delete_tag(&self, repo_id: i64, tag: &str) -> Result<bool>;
    /// Tags in lexical order after `last`, at most `n`.
    async fn list_tags(&self, repo_id: i64, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>>;
    async fn referrers(&self, repo_id: i64, subject: &str) -> Result<Vec<Referrer>>;

    // --- uploads
    async fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Records the bytes received so far and the running hash over them, together.
    async fn set_upload_progress(&self, id: &str, size: u64, hash_state: &[u8]) -> Result<()>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// Ids of uploads started before `before`.
    async fn uploads_started_before(&self, before: i64) -> Result<Vec<String>>;

    // --- pull-through cache
    /// The digest a tag points to and when it was last confirmed.
    async fn tag_entry(&self, repo_id: i64, tag: &str) -> Result<Option<(String, i64)>>;
    async fn touch_tag(&self, repo_id: i64, tag: &str, now: i64) -> Result<()>;
    /// True when a manifest of the repository references the blob.
    async fn blob_referenced(&self, repo_id: i64, digest: &str) -> Result<bool>;
    /// Records a blob fetched from an upstream (evictable), or refreshes its last use.
    async fn put_cached_blob(&self, digest: &str, size: u64, now: i64) -> Result<()>;
    async fn touch_blob(&self, digest: &str, now: i64) -> Result<()>;
    /// Total bytes of evictable cached blobs.
    async fn cached_bytes(&self) -> Result<u64>;
    /// Evictable cached blobs, least recently used first.
    async fn cached_lru(&self, limit: usize) -> Result<Vec<(String, u64)>>;
    /// Blobs no repository links and no manifest references.
    async fn unreferenced_blobs(&self) -> Result<Vec<String>>;

    // --- Image Access Management
    /// Settings JSON of every org that has some, by org name.
    async fn all_org_settings(&self) -> Result<Vec<(String, String)>>;
    async fn put_org_settings(&self, org_id: i64, settings_json: &str, now: i64) -> Result<()>;
    async fn all_exceptions(&self) -> Result<Vec<ExceptionRow>>;
    /// Stores an exception (its `id` is ignored) and returns the new id.
    async fn create_exception(&self, org_id: i64, e: &policy::Exception) -> Result<i64>;
    async fn delete_exception(&self, org_id: i64, id: i64) -> Result<bool>;

    /// Publisher overrides: (namespace, badge or "none").
    async fn publisher_overrides(&self) -> Result<Vec<(String, String)>>;
    async fn set_publisher_override(&self, namespace: &str, badge: Option<&str>, by: &str, now: i64) -> Result<bool>;

    // --- audit
    /// Appends entries in one transaction.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()>;
    /// Entries of an org (or all with `None`), newest first.
    async fn query_audit(&self, org: Option<&str>, q: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Deletes entries older than `before`; returns how many.
    async fn prune_audit(&self, before: i64) -> Result<u64>;
    /// Pull counts of an org since `since`, by UTC day, category and decision.
    async fn audit_activity(&self, org: &str, since: i64) -> Result<Vec<ActivityRow>>;

    // --- console
    /// Stores a session under the hash of its secret.
    async fn create_session(&self, id_hash: &str, user_id: i64, csrf: &str, now: i64, expires_at: i64) -> Result<()>;
    /// The unexpired session with this secret hash.
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Ends every session of a user (after a password change).
    async fn delete_user_sessions(&self, user_id: i64) -> Result<()>;
    /// Deletes expired sessions.
    async fn prune_sessions(&self, now: i64) -> Result<u64>;
    /// Stores a request (its `id`, `org` and decision fields are ignored); returns the new id.
    async fn create_exception_request(&self, org_id: i64, r: &ExceptionRequest) -> Result<i64>;
    /// Requests of an org, newest first.
    async fn exception_requests(&self, org_id: i64) -> Result<Vec<ExceptionRequest>>;
    /// Records the decision on a pending request; false when it is not pending (or not there).
    async fn decide_exception_request(&self, org_id: i64, id: i64, decided: &ExceptionRequest) -> Result<bool>;

    // --- sign-in throttling (shared by replicas)
    /// (key, window start, failures) of the two keys that exist.
    async fn login_failures(&self, user_key: &str, client_key: &str) -> Result<Vec<(String, i64, i64)>>;
    /// Counts a failure of `key` in its window, starting a new window after `window` seconds.
    async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<()>;

    // --- leases (a job done once among replicas)
    /// Takes or renews the lease `name` for `holder` until `now + ttl`; false while another
    /// holder's lease is unexpired.
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    // --- replicas
    /// A number that grows with every change to users, orgs, teams, permissions, repositories,
    /// settings, exceptions, publishers and signing keys (replicas poll it to reload).
    async fn generation(&self) -> Result<i64>;
    /// Token signing keys (kid, PKCS#8), newest first.
    async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Adds a signing key (a key with the same kid is kept as it is).
    async fn add_signing_key(&self, kid: &str, pkcs8: &[u8], now: i64) -> Result<()>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<()>;
}

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

/// Content-addressed blob bytes and in-progress uploads.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Latency and failures of this backend's operations, for `/metrics`.
    fn stats(&self) -> &crate::metrics::BackendStats;

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
    async fn upload_commit(&self, id: &str, digest: &str, size: u64) -> Result<()>;
    async fn upload_delete(&self, id: &str) -> Result<()>;
    /// Size of a stored blob, if present.
    async fn stat(&self, digest: &str) -> Result<Option<u64>>;
    /// Streams `len` bytes of a blob from `offset`.
    async fn read(&self, digest: &str, offset: u64, len: u64) -> Result<ByteStream>;
    async fn delete(&self, digest: &str) -> Result<()>;
    /// Every stored blob digest, sorted (fsck, gc).
    async fn list(&self) -> Result<Vec<String>>;
    /// Every upload in the store with when it was last written (unix seconds).
    async fn list_uploads(&self) -> Result<Vec<(String, i64)>>;
    /// A short-lived URL from which a client may fetch the blob directly (a presigned S3 URL),
    /// when the store is set to hand those out. Callers decide access first.
    async fn redirect_url(&self, digest: &str) -> Result<Option<String>>;
    /// Moves a blob aside so that it is no longer served (fsck).
    async fn quarantine(&self, digest: &str) -> Result<()>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<()>;
}
