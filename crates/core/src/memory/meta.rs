//! `MemoryMeta`: every metadata port over maps behind one lock, with the semantics of the SQL
//! stores (conflicts, cascades, ordering, the generation that cached tables move).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::metrics::BackendStats;
use policy::Provider;
use crate::model::*;
use crate::ports::*;

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
    exceptions: BTreeMap<i64, (i64, policy::Exception)>,
    publishers: BTreeMap<String, String>,
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

#[async_trait]
impl IdentityStore for MemoryMeta {
    async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool, now: i64) -> Result<User> {
        self.with(|s| {
            if s.name_taken(username) {
                return Err(Error::Conflict(format!("the name {username} is taken")));
            }
            let id = s.id();
            let u = User {
                id,
                username: username.into(),
                password_hash: password_hash.into(),
                is_admin,
                created_at: now,
                disabled: false,
                source: AccountSource::Local,
                external_id: None,
            };
            s.users.insert(id, u.clone());
            s.changed();
            Ok(u)
        })
    }

    async fn create_external_user(&self, username: &str, source: Provider, external_id: &str, now: i64) -> Result<User> {
        let source = AccountSource::from(source);
        self.with(|s| {
            if s.name_taken(username) {
                return Err(Error::Conflict(format!("the name {username} is taken")));
            }
            let key = (source, external_id.to_owned());
            if s.external.contains_key(&key) {
                return Err(Error::Conflict(format!("{source} account {external_id} exists")));
            }
            let id = s.id();
            let u = User {
                id,
                username: username.into(),
                password_hash: "!".into(),
                is_admin: false,
                created_at: now,
                disabled: false,
                source,
                external_id: Some(external_id.into()),
            };
            s.users.insert(id, u.clone());
            s.external.insert(key, id);
            s.changed();
            Ok(u)
        })
    }

    async fn bind_external_id(&self, user_id: i64, external_id: &str) -> Result<bool> {
        self.with(|s| match s.users.get_mut(&user_id) {
            Some(u) if u.external_id.is_none() => {
                u.external_id = Some(external_id.to_owned());
                let key = (u.source, external_id.to_owned());
                s.external.insert(key, user_id);
                s.changed();
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn external_user(&self, source: Provider, external_id: &str) -> Result<Option<User>> {
        self.with(|s| {
            let id = s.external.get(&(AccountSource::from(source), external_id.to_owned()));
            Ok(id.and_then(|id| s.users.get(id)).cloned())
        })
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.with(|s| Ok(s.users.values().find(|u| u.username == username).cloned()))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.with(|s| {
            let mut v: Vec<User> = s.users.values().cloned().collect();
            v.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(v)
        })
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
        self.with(|s| {
            if let Some(u) = s.users.get_mut(&user_id) {
                u.password_hash = password_hash.into();
                s.changed();
            }
            Ok(())
        })
    }

    async fn count_users(&self) -> Result<i64> {
        self.with(|s| Ok(s.users.len() as i64))
    }

    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        kind: &str,
        token_hash: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<AccessToken> {
        self.with(|s| {
            if s.tokens.values().any(|(_, h)| h == token_hash) {
                return Err(Error::Conflict("already exists".into()));
            }
            let id = s.id();
            let t = AccessToken {
                id,
                user_id,
                label: label.into(),
                kind: kind.into(),
                scope,
                created_at: now,
                expires_at,
                last_used_at: None,
            };
            s.tokens.insert(id, (t.clone(), token_hash.into()));
            Ok(t)
        })
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<(AccessToken, User)>> {
        self.with(|s| {
            Ok(s.tokens
                .values()
                .find(|(_, h)| h == token_hash)
                .and_then(|(t, _)| Some((t.clone(), s.user(t.user_id)?))))
        })
    }

    async fn list_tokens(&self, user_id: i64) -> Result<Vec<AccessToken>> {
        self.with(|s| Ok(s.tokens.values().filter(|(t, _)| t.user_id == user_id).map(|(t, _)| t.clone()).collect()))
    }

    async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
        self.with(|s| {
            if s.tokens.get(&token_id).is_some_and(|(t, _)| t.user_id == user_id) {
                s.tokens.remove(&token_id);
                return Ok(true);
            }
            Ok(false)
        })
    }

    async fn touch_token(&self, token_id: i64, now: i64) -> Result<()> {
        self.with(|s| {
            if let Some((t, _)) = s.tokens.get_mut(&token_id) {
                t.last_used_at = Some(now);
            }
            Ok(())
        })
    }

    async fn login_failures(&self, keys: &[String]) -> Result<Vec<LoginFailures>> {
        self.with(|s| {
            Ok(keys
                .iter()
                .filter_map(|k| {
                    s.failures.get(k).map(|(w, f, l)| LoginFailures {
                        key: k.clone(),
                        window_start: *w,
                        failures: *f,
                        last_at: *l,
                    })
                })
                .collect())
        })
    }

    async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<()> {
        self.with(|s| {
            let e = s.failures.entry(key.into()).or_insert((now, 0, now));
            if e.0 > now - window {
                e.1 += 1;
            } else {
                *e = (now, 1, now);
            }
            e.2 = now;
            Ok(())
        })
    }

    async fn clear_login_failures(&self, key: &str, prefix: bool) -> Result<u64> {
        self.with(|s| {
            let n = s.failures.len();
            s.failures.retain(|k, _| if prefix { !k.starts_with(key) } else { k != key });
            Ok((n - s.failures.len()) as u64)
        })
    }

    async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool> {
        self.with(|s| {
            let Some(u) = s.users.get_mut(&user_id) else { return Ok(false) };
            u.disabled = disabled;
            s.changed();
            Ok(true)
        })
    }

    async fn delete_user(&self, user_id: i64) -> Result<bool> {
        self.with(|s| {
            if s.users.remove(&user_id).is_none() {
                return Ok(false);
            }
            s.tokens.retain(|_, (t, _)| t.user_id != user_id);
            s.members.retain(|(_, u)| *u != user_id);
            s.sessions.retain(|_, (u, _, _)| *u != user_id);
            s.scim_users.remove(&user_id);
            s.changed();
            Ok(true)
        })
    }
}

#[async_trait]
impl OrgStore for MemoryMeta {
    async fn create_org(&self, name: &str, creator: i64, now: i64) -> Result<Org> {
        self.with(|s| {
            if s.name_taken(name) {
                return Err(Error::Conflict(format!("the name {name} is taken")));
            }
            let id = s.id();
            let org = Org { id, name: name.into(), created_at: now };
            s.orgs.insert(id, org.clone());
            let team = s.id();
            s.teams.insert(team, Team { id: team, org_id: id, name: OWNERS_TEAM.into(), directory_managed: false });
            s.members.insert((team, creator));
            s.changed();
            Ok(org)
        })
    }

    async fn org_by_name(&self, name: &str) -> Result<Option<Org>> {
        self.with(|s| Ok(s.orgs.values().find(|o| o.name == name).cloned()))
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        self.with(|s| {
            let mut v: Vec<Org> = s.orgs.values().cloned().collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(v)
        })
    }

    async fn create_team(&self, org_id: i64, name: &str) -> Result<Team> {
        self.with(|s| {
            if s.teams.values().any(|t| t.org_id == org_id && t.name == name) {
                return Err(Error::Conflict(format!("team {name} exists")));
            }
            let id = s.id();
            let t = Team { id, org_id, name: name.into(), directory_managed: false };
            s.teams.insert(id, t.clone());
            s.changed();
            Ok(t)
        })
    }

    async fn team(&self, org_id: i64, name: &str) -> Result<Option<Team>> {
        self.with(|s| Ok(s.teams.values().find(|t| t.org_id == org_id && t.name == name).cloned()))
    }

    async fn list_teams(&self, org_id: i64) -> Result<Vec<Team>> {
        self.with(|s| {
            let mut v: Vec<Team> = s.teams.values().filter(|t| t.org_id == org_id).cloned().collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(v)
        })
    }

    async fn delete_team(&self, team_id: i64) -> Result<()> {
        self.with(|s| {
            if s.teams.remove(&team_id).is_some() {
                s.members.retain(|(t, _)| *t != team_id);
                s.permissions.retain(|(t, _), _| *t != team_id);
                s.scim_groups.remove(&team_id);
                s.team_settings.remove(&team_id);
                s.changed();
            }
            Ok(())
        })
    }

    async fn add_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
        self.with(|s| {
            let added = s.members.insert((team_id, user_id));
            if added {
                s.changed();
            }
            Ok(added)
        })
    }

    async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
        self.with(|s| {
            let team = s.teams.get(&team_id).cloned().ok_or_else(|| Error::db("no such team"))?;
            if !s.members.contains(&(team_id, user_id)) {
                return Ok(false);
            }
            let count = s.members.iter().filter(|(t, _)| *t == team_id).count();
            if team.name == OWNERS_TEAM && count <= 1 {
                return Err(Error::Conflict("the last owner cannot be removed; add another owner first".into()));
            }
            s.members.remove(&(team_id, user_id));
            s.directory_members.remove(&(team_id, user_id));
            s.changed();
            Ok(true)
        })
    }

    async fn set_directory_managed(&self, team_id: i64, managed: bool) -> Result<()> {
        self.with(|s| {
            if let Some(t) = s.teams.get_mut(&team_id) {
                t.directory_managed = managed;
                s.changed();
            }
            Ok(())
        })
    }

    async fn add_directory_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
        self.with(|s| {
            let added = s.members.insert((team_id, user_id));
            if added {
                s.directory_members.insert((team_id, user_id));
                s.changed();
            }
            Ok(added)
        })
    }

    async fn directory_memberships(&self, user_id: i64) -> Result<Vec<i64>> {
        self.with(|s| {
            s.directory_members.retain(|m| s.members.contains(m));
            Ok(s.directory_members.iter().filter(|(_, u)| *u == user_id).map(|(t, _)| *t).collect())
        })
    }

    async fn team_members(&self, team_id: i64) -> Result<Vec<User>> {
        self.with(|s| {
            let mut v: Vec<User> =
                s.members.iter().filter(|(t, _)| *t == team_id).filter_map(|(_, u)| s.user(*u)).collect();
            v.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(v)
        })
    }

    async fn set_permission(&self, team_id: i64, repo_path: &str, permission: Option<Permission>) -> Result<()> {
        self.with(|s| {
            let key = (team_id, repo_path.to_owned());
            match permission {
                Some(p) => {
                    s.permissions.insert(key, p);
                }
                None => {
                    s.permissions.remove(&key);
                }
            }
            s.changed();
            Ok(())
        })
    }

    async fn team_permissions(&self, team_id: i64) -> Result<Vec<(String, Permission)>> {
        self.with(|s| {
            Ok(s.permissions.iter().filter(|((t, _), _)| *t == team_id).map(|((_, r), p)| (r.clone(), *p)).collect())
        })
    }

    async fn load_directory(&self) -> Result<DirectoryRows> {
        self.with(|s| {
            Ok(DirectoryRows {
                users: s
                    .users
                    .values()
                    .map(|u| {
                        DirectoryUser::from_row((u.id, u.username.clone(), u.is_admin, u.disabled, u.source.as_str().into()))
                    })
                    .collect(),
                orgs: s.orgs.values().map(|o| (o.id, o.name.clone())).collect(),
                teams: s.teams.values().map(|t| (t.id, t.org_id, t.name.clone())).collect(),
                members: s.members.iter().copied().collect(),
                permissions: s.permissions.iter().map(|((t, r), p)| (*t, r.clone(), *p)).collect(),
                repos: s.repos.values().map(|r| (r.id, r.name.clone(), r.visibility)).collect(),
            })
        })
    }
}

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

    async fn put_blob(&self, digest: &str, size: u64, _now: i64) -> Result<()> {
        self.with(|s| {
            let b = s.blobs.entry(digest.into()).or_insert(BlobRecord { size, cached: false, last_used_at: None });
            b.cached = false;
            Ok(())
        })
    }

    async fn blob_size(&self, digest: &str) -> Result<Option<u64>> {
        self.with(|s| Ok(s.blobs.get(digest).map(|b| b.size)))
    }

    async fn link_blob(&self, repo_id: i64, digest: &str) -> Result<()> {
        self.with(|s| {
            if !s.blobs.contains_key(digest) {
                return Err(Error::db(format!("link to unknown blob {digest}")));
            }
            s.links.insert((repo_id, digest.into()));
            Ok(())
        })
    }

    async fn linked_blob(&self, repo_id: i64, digest: &str) -> Result<Option<u64>> {
        self.with(|s| {
            Ok(s.links.contains(&(repo_id, digest.to_owned())).then(|| s.blobs.get(digest).map(|b| b.size)).flatten())
        })
    }

    async fn unlink_blob(&self, repo_id: i64, digest: &str) -> Result<bool> {
        self.with(|s| Ok(s.links.remove(&(repo_id, digest.to_owned()))))
    }

    async fn list_blobs(&self) -> Result<Vec<(String, u64)>> {
        self.with(|s| Ok(s.blobs.iter().map(|(d, b)| (d.clone(), b.size)).collect()))
    }

    async fn forget_blob(&self, digest: &str) -> Result<()> {
        self.with(|s| {
            s.blobs.remove(digest);
            s.links.retain(|(_, d)| d != digest);
            Ok(())
        })
    }

    async fn unreferenced_blobs(&self) -> Result<Vec<String>> {
        self.with(|s| {
            Ok(s.blobs
                .keys()
                .filter(|d| !s.links.iter().any(|(_, l)| l == *d) && !s.references.iter().any(|(_, _, b)| b == *d))
                .cloned()
                .collect())
        })
    }

    async fn put_manifest(
        &self,
        repo_id: i64,
        m: &ManifestRow,
        blob_refs: &[String],
        tag: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.with(|s| {
            s.manifests.entry((repo_id, m.digest.clone())).or_insert_with(|| m.clone());
            for b in blob_refs {
                s.references.insert((repo_id, m.digest.clone(), b.clone()));
            }
            if let Some(t) = tag {
                s.tags.insert((repo_id, t.to_owned()), (m.digest.clone(), now));
            }
            Ok(())
        })
    }

    async fn manifest(&self, repo_id: i64, digest: &str) -> Result<Option<ManifestRow>> {
        self.with(|s| Ok(s.manifests.get(&(repo_id, digest.to_owned())).cloned()))
    }

    async fn tag_digest(&self, repo_id: i64, tag: &str) -> Result<Option<String>> {
        self.with(|s| Ok(s.tags.get(&(repo_id, tag.to_owned())).map(|(d, _)| d.clone())))
    }

    async fn manifest_by_tag(&self, repo_id: i64, tag: &str) -> Result<Option<ManifestRow>> {
        self.with(|s| {
            Ok(s.tags
                .get(&(repo_id, tag.to_owned()))
                .and_then(|(d, _)| s.manifests.get(&(repo_id, d.clone())))
                .cloned())
        })
    }

    async fn manifests_present(&self, repo_id: i64, digests: &[String]) -> Result<Vec<String>> {
        self.with(|s| {
            Ok(digests.iter().filter(|d| s.manifests.contains_key(&(repo_id, (*d).clone()))).cloned().collect())
        })
    }

    async fn delete_manifest(&self, repo_id: i64, digest: &str) -> Result<bool> {
        self.with(|s| {
            s.tags.retain(|(r, _), (d, _)| !(*r == repo_id && d == digest));
            s.references.retain(|(r, m, _)| !(*r == repo_id && m == digest));
            Ok(s.manifests.remove(&(repo_id, digest.to_owned())).is_some())
        })
    }

    async fn delete_tag(&self, repo_id: i64, tag: &str) -> Result<bool> {
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

    async fn referrers(&self, repo_id: i64, subject: &str) -> Result<Vec<Referrer>> {
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

#[async_trait]
impl UploadStore for MemoryMeta {
    async fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()> {
        self.with(|s| {
            let u = Upload { id: id.into(), repo: repo.into(), size: 0, started_at: now, hash_state: None };
            if s.uploads.insert(id.into(), u).is_some() {
                return Err(Error::Conflict("already exists".into()));
            }
            Ok(())
        })
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        self.with(|s| Ok(s.uploads.get(id).cloned()))
    }

    async fn set_upload_progress(&self, id: &str, size: u64, hash_state: &[u8]) -> Result<()> {
        self.with(|s| {
            if let Some(u) = s.uploads.get_mut(id) {
                u.size = size;
                u.hash_state = Some(hash_state.to_vec());
            }
            Ok(())
        })
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        self.with(|s| {
            s.uploads.remove(id);
            Ok(())
        })
    }

    async fn uploads_started_before(&self, before: i64) -> Result<Vec<String>> {
        self.with(|s| Ok(s.uploads.values().filter(|u| u.started_at < before).map(|u| u.id.clone()).collect()))
    }
}

#[async_trait]
impl CacheStore for MemoryMeta {
    async fn tag_entry(&self, repo_id: i64, tag: &str) -> Result<Option<(String, i64)>> {
        self.with(|s| Ok(s.tags.get(&(repo_id, tag.to_owned())).cloned()))
    }

    async fn touch_tag(&self, repo_id: i64, tag: &str, now: i64) -> Result<()> {
        self.with(|s| {
            if let Some(e) = s.tags.get_mut(&(repo_id, tag.to_owned())) {
                e.1 = now;
            }
            Ok(())
        })
    }

    async fn blob_referenced(&self, repo_id: i64, digest: &str) -> Result<bool> {
        self.with(|s| Ok(s.references.iter().any(|(r, _, b)| *r == repo_id && b == digest)))
    }

    async fn put_cached_blob(&self, digest: &str, size: u64, now: i64) -> Result<()> {
        self.with(|s| {
            let b = s.blobs.entry(digest.into()).or_insert(BlobRecord { size, cached: true, last_used_at: None });
            b.last_used_at = Some(now);
            Ok(())
        })
    }

    async fn touch_blob(&self, digest: &str, now: i64) -> Result<()> {
        self.with(|s| {
            if let Some(b) = s.blobs.get_mut(digest)
                && b.cached
                && b.last_used_at.is_none_or(|t| t < now - 60)
            {
                b.last_used_at = Some(now);
            }
            Ok(())
        })
    }

    async fn cached_bytes(&self) -> Result<u64> {
        self.with(|s| Ok(s.blobs.values().filter(|b| b.cached).map(|b| b.size).sum()))
    }

    async fn cached_lru(&self, limit: usize) -> Result<Vec<(String, u64)>> {
        self.with(|s| {
            let mut v: Vec<(i64, String, u64)> = s
                .blobs
                .iter()
                .filter(|(_, b)| b.cached)
                .map(|(d, b)| (b.last_used_at.unwrap_or(0), d.clone(), b.size))
                .collect();
            v.sort();
            Ok(v.into_iter().take(limit).map(|(_, d, size)| (d, size)).collect())
        })
    }
}

#[async_trait]
impl PolicyStore for MemoryMeta {
    async fn all_org_settings(&self) -> Result<Vec<(String, String)>> {
        self.with(|s| {
            let mut v: Vec<(String, String)> =
                s.settings.iter().filter_map(|(o, j)| s.orgs.get(o).map(|org| (org.name.clone(), j.clone()))).collect();
            v.sort();
            Ok(v)
        })
    }

    async fn hub_badges(&self) -> Result<Vec<(String, Option<String>, i64)>> {
        self.with(|s| Ok(s.hub_badges.iter().map(|(n, (b, e))| (n.clone(), b.clone(), *e)).collect()))
    }

    async fn put_hub_badge(&self, namespace: &str, badge: Option<&str>, expires_at: i64) -> Result<()> {
        self.with(|s| {
            s.hub_badges.insert(namespace.into(), (badge.map(str::to_owned), expires_at));
            Ok(())
        })
    }

    async fn all_team_settings(&self) -> Result<Vec<(String, String, String)>> {
        self.with(|s| {
            let mut v: Vec<(String, String, String)> = s
                .team_settings
                .iter()
                .filter_map(|(t, j)| {
                    let team = s.teams.get(t)?;
                    Some((s.orgs.get(&team.org_id)?.name.clone(), team.name.clone(), j.clone()))
                })
                .collect();
            v.sort();
            Ok(v)
        })
    }

    async fn put_team_settings(&self, team_id: i64, settings_json: Option<&str>, _now: i64) -> Result<()> {
        self.with(|s| {
            match settings_json {
                Some(j) if s.teams.contains_key(&team_id) => {
                    s.team_settings.insert(team_id, j.into());
                }
                Some(_) => return Err(Error::NotFound(format!("no team {team_id}"))),
                None => {
                    s.team_settings.remove(&team_id);
                }
            }
            s.changed();
            Ok(())
        })
    }

    async fn append_policy_version(
        &self,
        org_id: i64,
        author: &str,
        summary: &str,
        state: &str,
        now: i64,
    ) -> Result<i64> {
        self.with(|s| {
            let n = s.policy_versions.range((org_id, 0)..=(org_id, i64::MAX)).next_back().map_or(0, |(k, _)| k.1) + 1;
            let v = PolicyVersion {
                version: n,
                author: author.into(),
                created_at: now,
                summary: summary.into(),
                state: state.into(),
            };
            s.policy_versions.insert((org_id, n), v);
            Ok(n)
        })
    }

    async fn policy_versions(&self, org_id: i64) -> Result<Vec<PolicyVersion>> {
        self.with(|s| {
            Ok(s.policy_versions.range((org_id, 0)..=(org_id, i64::MAX)).rev().map(|(_, v)| v.clone()).collect())
        })
    }

    async fn put_org_settings(&self, org_id: i64, settings_json: &str, _now: i64) -> Result<()> {
        self.with(|s| {
            s.settings.insert(org_id, settings_json.into());
            s.changed();
            Ok(())
        })
    }

    async fn all_exceptions(&self) -> Result<Vec<ExceptionRow>> {
        self.with(|s| {
            Ok(s.exceptions
                .values()
                .filter_map(|(o, e)| {
                    s.orgs.get(o).map(|org| ExceptionRow { org: org.name.clone(), exception: e.clone() })
                })
                .collect())
        })
    }

    async fn create_exception(&self, org_id: i64, e: &policy::Exception) -> Result<i64> {
        self.with(|s| {
            let id = s.id();
            s.exceptions.insert(id, (org_id, policy::Exception { id, ..e.clone() }));
            s.changed();
            Ok(id)
        })
    }

    async fn delete_exception(&self, org_id: i64, id: i64) -> Result<bool> {
        self.with(|s| {
            if s.exceptions.get(&id).is_some_and(|(o, _)| *o == org_id) {
                s.exceptions.remove(&id);
                s.changed();
                return Ok(true);
            }
            Ok(false)
        })
    }

    async fn publisher_overrides(&self) -> Result<Vec<(String, String)>> {
        self.with(|s| Ok(s.publishers.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }

    async fn set_publisher_override(&self, namespace: &str, badge: Option<&str>, _by: &str, _now: i64) -> Result<bool> {
        self.with(|s| {
            let changed = match badge {
                Some(b) => {
                    s.publishers.insert(namespace.into(), b.into());
                    true
                }
                None => s.publishers.remove(namespace).is_some(),
            };
            if changed {
                s.changed();
            }
            Ok(changed)
        })
    }

    async fn create_exception_request(&self, org_id: i64, r: &ExceptionRequest) -> Result<i64> {
        self.with(|s| {
            let id = s.id();
            let stored = ExceptionRequest {
                id,
                status: REQUEST_PENDING.into(),
                decided_by: None,
                decided_at: None,
                note: None,
                exception_id: None,
                ..r.clone()
            };
            s.requests.insert(id, (org_id, stored));
            Ok(id)
        })
    }

    async fn exception_requests(&self, org_id: i64) -> Result<Vec<ExceptionRequest>> {
        self.with(|s| {
            let org = s.orgs.get(&org_id).map(|o| o.name.clone()).unwrap_or_default();
            Ok(s.requests
                .values()
                .rev()
                .filter(|(o, _)| *o == org_id)
                .map(|(_, r)| ExceptionRequest { org: org.clone(), ..r.clone() })
                .collect())
        })
    }

    async fn decide_exception_request(&self, org_id: i64, id: i64, d: &ExceptionRequest) -> Result<bool> {
        self.with(|s| match s.requests.get_mut(&id) {
            Some((o, r)) if *o == org_id && r.status == REQUEST_PENDING => {
                r.status = d.status.clone();
                r.decided_by = d.decided_by.clone();
                r.decided_at = d.decided_at;
                r.note = d.note.clone();
                r.exception_id = d.exception_id;
                Ok(true)
            }
            _ => Ok(false),
        })
    }
}

#[async_trait]
impl AuditStore for MemoryMeta {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        self.with(|s| {
            for e in entries {
                let id = s.id();
                s.audit.push(AuditEntry { id, ..e.clone() });
            }
            Ok(())
        })
    }

    async fn query_audit(&self, org: Option<&str>, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let eq = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        self.with(|s| {
            Ok(s.audit
                .iter()
                .rev()
                .filter(|e| org.is_none() || e.org.as_deref() == org)
                .filter(|e| q.actor.as_ref().is_none_or(|a| a == &e.actor))
                .filter(|e| eq(&q.image, &e.image) && eq(&q.decision, &e.decision) && eq(&q.category, &e.category))
                .filter(|e| q.action.as_ref().is_none_or(|a| a == &e.action))
                .filter(|e| q.since.is_none_or(|t| e.at >= t) && q.until.is_none_or(|t| e.at <= t))
                .filter(|e| q.before.is_none_or(|b| e.id < b))
                .take(q.limit.unwrap_or(100).clamp(1, 1000) as usize)
                .cloned()
                .collect())
        })
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        self.with(|s| {
            let n = s.audit.len();
            s.audit.retain(|e| e.at >= before);
            Ok((n - s.audit.len()) as u64)
        })
    }

    async fn audit_activity(&self, org: &str, since: i64) -> Result<Vec<ActivityRow>> {
        self.with(|s| {
            let mut counts: BTreeMap<(i64, String, String), i64> = BTreeMap::new();
            for e in &s.audit {
                if e.org.as_deref() != Some(org) || e.at < since || e.action != "pull" {
                    continue;
                }
                let Some(decision) = &e.decision else { continue };
                let category = e.category.clone().unwrap_or_else(|| "unknown".into());
                *counts.entry((e.at / 86_400, category, decision.clone())).or_default() += 1;
            }
            Ok(counts
                .into_iter()
                .map(|((day, category, decision), pulls)| ActivityRow { day, category, decision, pulls })
                .collect())
        })
    }
}

#[async_trait]
impl SessionStore for MemoryMeta {
    async fn create_session(&self, id_hash: &str, user_id: i64, csrf: &str, _now: i64, expires_at: i64) -> Result<()> {
        self.with(|s| {
            s.sessions.insert(id_hash.into(), (user_id, csrf.into(), expires_at));
            Ok(())
        })
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
        self.with(|s| {
            Ok(s.sessions
                .get(id_hash)
                .filter(|(_, _, exp)| *exp > now)
                .and_then(|(u, csrf, exp)| Some(Session { user: s.user(*u)?, csrf: csrf.clone(), expires_at: *exp })))
        })
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.with(|s| {
            s.sessions.remove(id_hash);
            Ok(())
        })
    }

    async fn delete_user_sessions(&self, user_id: i64) -> Result<()> {
        self.with(|s| {
            s.sessions.retain(|_, (u, _, _)| *u != user_id);
            Ok(())
        })
    }

    async fn prune_sessions(&self, now: i64) -> Result<u64> {
        self.with(|s| {
            let n = s.sessions.len();
            s.sessions.retain(|_, (_, _, exp)| *exp > now);
            Ok((n - s.sessions.len()) as u64)
        })
    }

    async fn use_once(&self, key_hash: &str, now: i64, expires_at: i64) -> Result<bool> {
        self.with(|s| {
            s.used_once.retain(|_, exp| *exp > now);
            Ok(s.used_once.insert(key_hash.to_owned(), expires_at).is_none())
        })
    }
}

#[async_trait]
impl ClusterStore for MemoryMeta {
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        self.with(|s| match s.leases.get(name) {
            Some((h, exp)) if *exp > now && h != holder => Ok(false),
            _ => {
                s.leases.insert(name.into(), (holder.into(), now + ttl));
                Ok(true)
            }
        })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.with(|s| {
            if s.leases.get(name).is_some_and(|(h, _)| h == holder) {
                s.leases.remove(name);
            }
            Ok(())
        })
    }

    async fn generation(&self) -> Result<i64> {
        self.with(|s| Ok(s.generation))
    }

    async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.with(|s| {
            let mut v = s.keys.clone();
            v.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0)));
            Ok(v.into_iter().map(|(k, p, _)| (k, p)).collect())
        })
    }

    async fn add_signing_key(&self, kid: &str, pkcs8: &[u8], now: i64) -> Result<()> {
        self.with(|s| {
            if !s.keys.iter().any(|(k, _, _)| k == kid) {
                s.keys.push((kid.into(), pkcs8.to_vec(), now));
                s.changed();
            }
            Ok(())
        })
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl ScimStore for MemoryMeta {
    async fn create_scim_token(
        &self,
        org_id: Option<i64>,
        name: &str,
        token_hash: &str,
        created_by: &str,
        now: i64,
    ) -> Result<ScimToken> {
        self.with(|s| {
            if s.scim_tokens.values().any(|(_, h)| h == token_hash) {
                return Err(Error::Conflict("already exists".into()));
            }
            let id = s.id();
            let t = ScimToken {
                id,
                org_id,
                name: name.into(),
                created_by: created_by.into(),
                created_at: now,
                last_used_at: None,
            };
            s.scim_tokens.insert(id, (t.clone(), token_hash.into()));
            Ok(t)
        })
    }

    async fn use_scim_token(&self, token_hash: &str, now: i64) -> Result<Option<ScimToken>> {
        self.with(|s| {
            Ok(s.scim_tokens.values_mut().find(|(_, h)| h == token_hash).map(|(t, _)| {
                t.last_used_at = Some(now);
                t.clone()
            }))
        })
    }

    async fn list_scim_tokens(&self, org_id: Option<i64>) -> Result<Vec<ScimToken>> {
        self.with(|s| {
            Ok(s.scim_tokens
                .values()
                .filter(|(t, _)| org_id.is_none() || t.org_id == org_id)
                .map(|(t, _)| t.clone())
                .collect())
        })
    }

    async fn delete_scim_token(&self, id: i64) -> Result<bool> {
        self.with(|s| Ok(s.scim_tokens.remove(&id).is_some()))
    }

    async fn create_scim_user(
        &self,
        username: &str,
        org_id: Option<i64>,
        attrs: &str,
        disabled: bool,
        now: i64,
    ) -> Result<User> {
        self.with(|s| {
            if s.name_taken(username) {
                return Err(Error::Conflict(format!("the name {username} is taken")));
            }
            let id = s.id();
            let u = User {
                id,
                username: username.into(),
                password_hash: "!".into(),
                is_admin: false,
                created_at: now,
                disabled,
                source: AccountSource::Scim,
                external_id: None,
            };
            s.users.insert(id, u.clone());
            s.scim_users.insert(id, (org_id, attrs.into()));
            s.changed();
            Ok(u)
        })
    }

    async fn scim_users(&self) -> Result<Vec<ScimUserRow>> {
        self.with(|s| {
            Ok(s.scim_users
                .iter()
                .map(|(id, (org_id, attrs))| ScimUserRow { user_id: *id, org_id: *org_id, attrs: attrs.clone() })
                .collect())
        })
    }

    async fn put_scim_user(&self, user_id: i64, org_id: Option<i64>, attrs: &str, _now: i64) -> Result<()> {
        self.with(|s| {
            if s.users.contains_key(&user_id) {
                s.scim_users.insert(user_id, (org_id, attrs.into()));
            }
            Ok(())
        })
    }

    async fn scim_groups(&self) -> Result<Vec<(i64, String)>> {
        self.with(|s| Ok(s.scim_groups.iter().map(|(id, a)| (*id, a.clone())).collect()))
    }

    async fn put_scim_group(&self, team_id: i64, attrs: &str, _now: i64) -> Result<()> {
        self.with(|s| {
            if s.teams.contains_key(&team_id) {
                s.scim_groups.insert(team_id, attrs.into());
            }
            Ok(())
        })
    }

    async fn delete_user_tokens(&self, user_id: i64) -> Result<u64> {
        self.with(|s| {
            let n = s.tokens.len();
            s.tokens.retain(|_, (t, _)| t.user_id != user_id);
            Ok((n - s.tokens.len()) as u64)
        })
    }
}
