//! `MemoryMeta`: every metadata port over maps behind one lock, with the semantics of the SQL
//! stores (conflicts, cascades, ordering, the generation that cached tables move). One module
//! per capability, as `store/src/sql/` has.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use oci::digest::Digest;
use oci::name::Tag;

use crate::error::{Error, Result};
use crate::metrics::BackendStats;
use crate::model::*;
use crate::ports::*;

/// A digest kept as text, read back (as the SQL stores parse theirs).
fn stored(d: &str) -> Result<Digest> {
    d.parse().map_err(|_| Error::db(format!("stored digest {d:?} does not parse")))
}

mod audit;
mod cache;
mod cluster;
mod content;
mod identity;
mod orgs;
mod policy;
mod scim;
mod sessions;
mod uploads;

#[derive(Debug, Clone)]
struct BlobRecord {
    size: u64,
    cached: bool,
    last_used_at: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    next_id: i64,
    generation: i64,
    users: BTreeMap<i64, User>,
    /// token id → (token, hash)
    tokens: BTreeMap<i64, (AccessToken, String)>,
    /// key → (window start, failures, last failure)
    failures: HashMap<String, (i64, i64, i64)>,
    orgs: BTreeMap<i64, Org>,
    teams: BTreeMap<i64, Team>,
    members: BTreeSet<(i64, i64)>,
    /// The memberships the directory granted (a subset of `members`).
    directory_members: BTreeSet<(i64, i64)>,
    /// (source, external id) → user id
    external: BTreeMap<(AccountSource, String), i64>,
    permissions: BTreeMap<(i64, String), Permission>,
    repos: BTreeMap<i64, Repo>,
    blobs: BTreeMap<String, BlobRecord>,
    links: BTreeSet<(i64, String)>,
    manifests: BTreeMap<(i64, String), ManifestRow>,
    /// (repo, manifest digest, referenced digest)
    references: BTreeSet<(i64, String, String)>,
    /// (repo, tag) → (digest, updated at)
    tags: BTreeMap<(i64, String), (String, i64)>,
    uploads: BTreeMap<String, Upload>,
    settings: BTreeMap<i64, String>,
    /// id → (org id, exception)
    exceptions: BTreeMap<i64, (i64, ::policy::Exception)>,
    publishers: BTreeMap<String, String>,
    /// Workload issuers added at run time: (name, iss, JSON), oldest first.
    workload_issuers: Vec<(String, String, String)>,
    audit: Vec<AuditEntry>,
    /// secret hash → (user id, csrf, expires at)
    sessions: HashMap<String, (i64, String, i64)>,
    /// one-time values (sign-in states) → when they may be forgotten
    used_once: HashMap<String, i64>,
    /// id → (org id, request)
    requests: BTreeMap<i64, (i64, ExceptionRequest)>,
    /// name → (holder, expires at)
    leases: HashMap<String, (String, i64)>,
    /// (kid, key, created at)
    keys: Vec<(String, Vec<u8>, i64)>,
    /// id → (token, hash)
    scim_tokens: BTreeMap<i64, (ScimToken, String)>,
    /// user id → (provisioning org, attributes)
    scim_users: BTreeMap<i64, (Option<i64>, String)>,
    /// team id → attributes
    scim_groups: BTreeMap<i64, String>,
    /// team id → its rule (JSON)
    team_settings: BTreeMap<i64, String>,
    /// (org id, version) → the version
    policy_versions: BTreeMap<(i64, i64), PolicyVersion>,
    /// namespace → (badge, expires at)
    hub_badges: BTreeMap<String, (Option<String>, i64)>,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// A change to what replicas keep in memory (the SQL stores' triggers).
    fn changed(&mut self) {
        self.generation += 1;
    }

    fn name_taken(&self, name: &str) -> bool {
        self.users.values().any(|u| u.username == name) || self.orgs.values().any(|o| o.name == name)
    }

    fn user(&self, id: i64) -> Option<User> {
        self.users.get(&id).cloned()
    }
}

/// The in-memory metadata store.
#[derive(Debug)]
pub struct MemoryMeta {
    state: Mutex<State>,
    stats: BackendStats,
}

impl Default for MemoryMeta {
    fn default() -> Self {
        MemoryMeta { state: Mutex::default(), stats: BackendStats::new("database", "memory") }
    }
}

impl MemoryMeta {
    pub fn new() -> MemoryMeta {
        MemoryMeta::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut s = self.state.lock().map_err(|_| Error::db("memory store poisoned"))?;
        f(&mut s)
    }
}

impl Measured for MemoryMeta {
    fn stats(&self) -> &BackendStats {
        &self.stats
    }
}

impl MetaStore for MemoryMeta {}
