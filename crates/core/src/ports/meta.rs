//! Metadata ports, one trait per capability: identity, organizations, content, uploads, the
//! pull-through cache's bookkeeping, policy, audit, console sessions and the cluster (leases,
//! generation, keys). A service asks for the capabilities it uses; [`MetaStore`] is all of them,
//! which each database adapter implements.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::*;
use oci::digest::Digest;
use oci::name::Tag;

/// Users, access tokens and sign-in failures.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates a user; `Conflict` when the name is taken by a user or an organization.
    async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool, now: i64) -> Result<User>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>>;
    /// Creates an account of an identity provider or a workload issuer (`source`), known by its
    /// stable id there; it has no password here.
    async fn create_external_user(
        &self,
        username: &str,
        source: AccountSource,
        external_id: &str,
        now: i64,
    ) -> Result<User>;
    async fn external_user(&self, source: AccountSource, external_id: &str) -> Result<Option<User>>;
    /// Binds an account that has no external id yet to `external_id`; false when it had one
    /// (or is gone), so that of two first sign-ins only one binds.
    async fn bind_external_id(&self, user_id: i64, external_id: &str) -> Result<bool>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()>;
    async fn count_users(&self) -> Result<i64>;
    #[allow(clippy::too_many_arguments)]
    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        kind: TokenKind,
        token_hash: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<AccessToken>;
    /// The token with this hash and its owner.
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenHolder>>;
    async fn list_tokens(&self, user_id: i64) -> Result<Vec<AccessToken>>;
    /// Deletes a user's token; false when there was none.
    async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool>;
    async fn touch_token(&self, token_id: i64, now: i64) -> Result<()>;
    /// The failure counts of those of `keys` that have some.
    async fn login_failures(&self, keys: &[String]) -> Result<Vec<LoginFailures>>;
    /// Counts a failure of `key` at `now` in its window, starting a new window after `window`
    /// seconds.
    async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<()>;
    /// Forgets the failures of `key` (`prefix`: of every key that starts with it); how many.
    async fn clear_login_failures(&self, key: &str, prefix: bool) -> Result<u64>;
    /// Disables or enables a user; false when there is no such user.
    async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool>;
    /// Deletes a user with their tokens, sessions and team memberships; false when not there.
    async fn delete_user(&self, user_id: i64) -> Result<bool>;
}

/// Organizations, teams, members, team permissions, and the directory snapshot's rows.
#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Creates an org with its `owners` team holding `creator`; `Conflict` when the name is taken.
    async fn create_org(&self, name: &str, creator: i64, now: i64) -> Result<Org>;
    async fn org_by_name(&self, name: &str) -> Result<Option<Org>>;
    async fn list_orgs(&self) -> Result<Vec<Org>>;
    async fn create_team(&self, org_id: i64, name: &str) -> Result<Team>;
    async fn team(&self, org_id: i64, name: &str) -> Result<Option<Team>>;
    async fn list_teams(&self, org_id: i64) -> Result<Vec<Team>>;
    /// Deletes a team with its members and permissions.
    async fn delete_team(&self, team_id: i64) -> Result<()>;
    /// Adds a member; true when added, false when already a member.
    async fn add_member(&self, team_id: i64, user_id: i64) -> Result<bool>;
    /// Removes a member. Refuses (`Conflict`) to remove the last member of `owners`.
    async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<bool>;
    /// Marks a team's members as the directory's alone (or not).
    async fn set_directory_managed(&self, team_id: i64, managed: bool) -> Result<()>;
    /// Adds a membership the directory granted (a hand-made one stays as it is).
    async fn add_directory_member(&self, team_id: i64, user_id: i64) -> Result<bool>;
    /// The teams the directory made `user_id` a member of.
    async fn directory_memberships(&self, user_id: i64) -> Result<Vec<i64>>;
    async fn team_members(&self, team_id: i64) -> Result<Vec<User>>;
    async fn set_permission(&self, team_id: i64, repo_path: &str, permission: Option<Permission>) -> Result<()>;
    async fn team_permissions(&self, team_id: i64) -> Result<Vec<RepoPermission>>;
    /// Everything authorization needs, for the in-memory directory.
    async fn load_directory(&self) -> Result<DirectoryRows>;
}

/// Repositories (hosted and cached), blobs and their links, manifests, tags and referrers.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Returns the repository, creating it with `visibility` when it does not exist.
    async fn ensure_repo(&self, name: &str, visibility: Visibility, now: i64) -> Result<Repo>;
    async fn repo(&self, name: &str) -> Result<Option<Repo>>;
    async fn list_repos(&self) -> Result<Vec<Repo>>;
    async fn set_visibility(&self, name: &str, visibility: Visibility) -> Result<bool>;
    /// Deletes a repository with its tags, manifests and blob links.
    async fn delete_repo(&self, name: &str) -> Result<bool>;
    /// Records a committed blob of `size` bytes (idempotent; a pushed blob is not evictable).
    async fn put_blob(&self, digest: &Digest, size: u64, now: i64) -> Result<()>;
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    async fn link_blob(&self, repo_id: i64, digest: &Digest) -> Result<()>;
    /// The size of a blob when it is linked to the repository.
    async fn linked_blob(&self, repo_id: i64, digest: &Digest) -> Result<Option<u64>>;
    async fn unlink_blob(&self, repo_id: i64, digest: &Digest) -> Result<bool>;
    /// All blob digests with their sizes (for fsck).
    async fn list_blobs(&self) -> Result<Vec<BlobRow>>;
    /// Forgets a blob and all its links (fsck quarantine, eviction).
    async fn forget_blob(&self, digest: &Digest) -> Result<()>;
    /// Blobs no repository links and no manifest references.
    async fn unreferenced_blobs(&self) -> Result<Vec<Digest>>;
    /// Stores a manifest, its references (blobs and child manifests) and optionally a tag,
    /// in one transaction.
    async fn put_manifest(
        &self,
        repo_id: i64,
        m: &ManifestRow,
        blob_refs: &[Digest],
        tag: Option<&Tag>,
        now: i64,
    ) -> Result<()>;
    async fn manifest(&self, repo_id: i64, digest: &Digest) -> Result<Option<ManifestRow>>;
    async fn tag_digest(&self, repo_id: i64, tag: &Tag) -> Result<Option<Digest>>;
    /// The manifest a tag points to, in one query.
    async fn manifest_by_tag(&self, repo_id: i64, tag: &Tag) -> Result<Option<ManifestRow>>;
    /// Which of `digests` are manifests of the repository.
    async fn manifests_present(&self, repo_id: i64, digests: &[Digest]) -> Result<Vec<Digest>>;
    /// Deletes a manifest and the tags pointing to it.
    async fn delete_manifest(&self, repo_id: i64, digest: &Digest) -> Result<bool>;
    async fn delete_tag(&self, repo_id: i64, tag: &Tag) -> Result<bool>;
    /// Tags in lexical order after `last`, at most `n`.
    async fn list_tags(&self, repo_id: i64, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>>;
    async fn referrers(&self, repo_id: i64, subject: &Digest) -> Result<Vec<Referrer>>;
}

/// Unfinished blob uploads: their size and running hash.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Records the bytes received so far and the running hash over them, together.
    async fn set_upload_progress(&self, id: &str, size: u64, hash_state: &[u8]) -> Result<()>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// Ids of uploads started before `before`.
    async fn uploads_started_before(&self, before: i64) -> Result<Vec<String>>;
}

/// The pull-through cache's bookkeeping: tag freshness, evictable blobs and their last use.
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The digest a tag points to and when it was last confirmed.
    async fn tag_entry(&self, repo_id: i64, tag: &Tag) -> Result<Option<TagEntry>>;
    async fn touch_tag(&self, repo_id: i64, tag: &Tag, now: i64) -> Result<()>;
    /// True when a manifest of the repository references the blob.
    async fn blob_referenced(&self, repo_id: i64, digest: &Digest) -> Result<bool>;
    /// Records a blob fetched from an upstream (evictable), or refreshes its last use.
    async fn put_cached_blob(&self, digest: &Digest, size: u64, now: i64) -> Result<()>;
    async fn touch_blob(&self, digest: &Digest, now: i64) -> Result<()>;
    /// Total bytes of evictable cached blobs.
    async fn cached_bytes(&self) -> Result<u64>;
    /// Evictable cached blobs, least recently used first.
    async fn cached_lru(&self, limit: usize) -> Result<Vec<BlobRow>>;
}

/// Image Access Management: org settings, exceptions, exception requests, publisher overrides.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Settings JSON of every org that has some, by org name.
    async fn all_org_settings(&self) -> Result<Vec<OrgSettingsRow>>;
    async fn put_org_settings(&self, org_id: i64, settings_json: &str, now: i64) -> Result<()>;
    async fn all_exceptions(&self) -> Result<Vec<ExceptionRow>>;
    /// Stores an exception (its `id` is ignored) and returns the new id.
    async fn create_exception(&self, org_id: i64, e: &policy::Exception) -> Result<i64>;
    async fn delete_exception(&self, org_id: i64, id: i64) -> Result<bool>;
    /// Publisher overrides: (namespace, badge or "none").
    /// Every team rule: (org name, team name, settings JSON).
    async fn all_team_settings(&self) -> Result<Vec<TeamSettingsRow>>;
    /// Sets a team's rule; `None` removes it.
    async fn put_team_settings(&self, team_id: i64, settings_json: Option<&str>, now: i64) -> Result<()>;
    /// Appends the next version of an org's policy (numbered from 1); its number.
    async fn append_policy_version(
        &self,
        org_id: i64,
        author: &str,
        summary: &str,
        state: &str,
        now: i64,
    ) -> Result<i64>;
    /// An org's policy versions, newest first.
    async fn policy_versions(&self, org_id: i64) -> Result<Vec<PolicyVersion>>;
    /// Docker Hub badges looked up: (namespace, badge or none, expires at).
    async fn hub_badges(&self) -> Result<Vec<HubBadgeRow>>;
    async fn put_hub_badge(&self, namespace: &str, badge: Option<&str>, expires_at: i64) -> Result<()>;
    async fn publisher_overrides(&self) -> Result<Vec<PublisherOverrideRow>>;
    async fn set_publisher_override(&self, namespace: &str, badge: Option<&str>, by: &str, now: i64) -> Result<bool>;
    /// The workload issuers added at run time, as JSON documents ([`WorkloadIssuer`]), oldest first.
    async fn workload_issuers(&self) -> Result<Vec<String>>;
    /// Stores one; `Error::Conflict` when its name or `iss` is stored already.
    async fn create_workload_issuer(&self, name: &str, issuer: &str, json: &str, by: &str, now: i64) -> Result<()>;
    async fn delete_workload_issuer(&self, name: &str) -> Result<bool>;
    /// Stores a request (its `id`, `org` and decision fields are ignored); returns the new id.
    async fn create_exception_request(&self, org_id: i64, r: &ExceptionRequest) -> Result<i64>;
    /// Requests of an org, newest first.
    async fn exception_requests(&self, org_id: i64) -> Result<Vec<ExceptionRequest>>;
    /// Records the decision on a pending request; false when it is not pending (or not there).
    async fn decide_exception_request(&self, org_id: i64, id: i64, decided: &ExceptionRequest) -> Result<bool>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends entries in one transaction.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()>;
    /// Entries of an org (or all with `None`), newest first.
    async fn query_audit(&self, org: Option<&str>, q: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Deletes entries older than `before`; returns how many.
    async fn prune_audit(&self, before: i64) -> Result<u64>;
    /// Pull counts of an org since `since`, by UTC day, category and decision.
    async fn audit_activity(&self, org: &str, since: i64) -> Result<Vec<ActivityRow>>;
}

/// Console sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a session under the hash of its secret.
    async fn create_session(&self, id_hash: &str, user_id: i64, csrf: &str, now: i64, expires_at: i64) -> Result<()>;
    /// The unexpired session with this secret hash.
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Ends every session of a user (after a password change).
    async fn delete_user_sessions(&self, user_id: i64) -> Result<()>;
    /// Deletes expired sessions.
    async fn prune_sessions(&self, now: i64) -> Result<u64>;
    /// Remembers a one-time value (the hash of a sign-in state) until `expires_at`: true the
    /// first time, false when it was used already (on any replica). Forgets expired ones.
    async fn use_once(&self, key_hash: &str, now: i64, expires_at: i64) -> Result<bool>;
}

/// What replicas share: leases, the generation they follow, token signing keys.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`; false while another
    /// holder's lease is unexpired.
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// Drops the leases held by `node`'s processes (holders `<node>/…`) other than `holder`:
    /// they are of a process of this node that died (the caller knows no other is alive). How
    /// many went.
    async fn release_node_leases(&self, node: &str, holder: &str) -> Result<u64>;
    /// A number that grows with every change to users, orgs, teams, permissions, repositories,
    /// settings, exceptions, publishers and signing keys (replicas poll it to reload).
    async fn generation(&self) -> Result<i64>;
    /// Token signing keys (kid, PKCS#8), newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>>;
    /// Adds a signing key (a key with the same kid is kept as it is).
    async fn add_signing_key(&self, kid: &str, pkcs8: &[u8], now: i64) -> Result<()>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<()>;
    /// Why and since when the database cannot be reached, when its health check (a connection
    /// of its own, a few times a second) says so now; `None` when it can (an embedded database
    /// always can). Requests that need it are refused at once meanwhile, instead of each waiting
    /// for it.
    fn unreachable(&self) -> Option<Outage>;
    /// What replicas sharing the database commit, announced as it commits; `None` when this
    /// process is the database's only writer (SQLite, the memory store) and updates its own
    /// memory. Taken once, by [`crate::replica::Replica::follow`].
    fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        None
    }
    /// Returns once every replica that follows the database's announcements has taken in what
    /// this one committed before the call; bounded: a replica that does not answer within a
    /// second is logged and not waited for again until it answers.
    async fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// Answers a [`Change::Settle`]: this replica took in everything announced before it.
    async fn settled(&self, _token: &str) -> Result<()> {
        Ok(())
    }
}

/// The database cannot be reached.
#[derive(Debug, Clone)]
pub struct Outage {
    /// What the health check found.
    pub why: String,
    /// When it first found it.
    pub since: std::time::Instant,
}

/// An announcement from the database shared by replicas (see [`ClusterStore::changes`]), in
/// commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Hosted manifests, tags or blob links changed: what is kept of them in memory goes.
    Content,
    /// What the generation follows changed (directory, policy, keys): reload them.
    Directory,
    /// A replica waits for this one to have taken in everything announced before: answer with
    /// [`ClusterStore::settled`] once it has.
    Settle(String),
    /// Announcements may have been missed (the connection that receives them broke); until
    /// [`Change::Resumed`], nothing committed elsewhere is learnt.
    Lost,
    /// Announcements are received again: drop and reload everything kept in memory.
    Resumed,
}

/// SCIM provisioning: the tokens identity providers present and the SCIM attributes of the
/// users and teams (groups) they manage.
#[async_trait]
pub trait ScimStore: Send + Sync {
    async fn create_scim_token(
        &self,
        org_id: Option<i64>,
        name: &str,
        token_hash: &str,
        created_by: &str,
        now: i64,
    ) -> Result<ScimToken>;
    /// The token with this secret hash, marked as used at `now`.
    async fn use_scim_token(&self, token_hash: &str, now: i64) -> Result<Option<ScimToken>>;
    /// One org's tokens (`Some`) or every token (`None`), oldest first.
    async fn list_scim_tokens(&self, org_id: Option<i64>) -> Result<Vec<ScimToken>>;
    async fn delete_scim_token(&self, id: i64) -> Result<bool>;
    /// Creates an account of the directory (`source = scim`, no password) with its SCIM
    /// attributes, at once; `Conflict` when the name is taken by a user or an organization.
    async fn create_scim_user(
        &self,
        username: &str,
        org_id: Option<i64>,
        attrs: &str,
        disabled: bool,
        now: i64,
    ) -> Result<User>;
    /// Every user's SCIM attributes.
    async fn scim_users(&self) -> Result<Vec<ScimUserRow>>;
    /// Sets a user's SCIM attributes (and the org that provisions it).
    async fn put_scim_user(&self, user_id: i64, org_id: Option<i64>, attrs: &str, now: i64) -> Result<()>;
    /// Every team's SCIM attributes: (team id, attributes).
    async fn scim_groups(&self) -> Result<Vec<ScimGroupRow>>;
    async fn put_scim_group(&self, team_id: i64, attrs: &str, now: i64) -> Result<()>;
    /// Deletes every access token of a user (deprovisioning); how many there were.
    async fn delete_user_tokens(&self, user_id: i64) -> Result<u64>;
}

/// Every metadata capability: what a database adapter implements.
pub trait MetaStore:
    IdentityStore
    + OrgStore
    + ContentStore
    + UploadStore
    + CacheStore
    + PolicyStore
    + AuditStore
    + SessionStore
    + ClusterStore
    + ScimStore
    + super::Measured
    + 'static
{
}
