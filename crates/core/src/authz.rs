//! Who may do what to which hosted repository. The [`Directory`] is an in-memory snapshot of
//! users, organizations, teams, permissions and repositories, rebuilt after every write to
//! them, so that no registry request needs a database query to be authorized.
//!
//! Rules: the instance administrator may do everything; a user owns their personal namespace;
//! in an organization, members of `owners` have admin on every repository and other teams have
//! the permission granted to them per repository; anyone (even anonymous) may pull a public
//! repository; a namespace nobody holds grants nothing. Access tokens narrow this further.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use oci::{Action, RepoName};

use crate::model::{DirectoryRows, DirectoryUser, OWNERS_TEAM, Permission, TokenScope, Visibility};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Anonymous,
    User(Principal),
}

/// A signed-in user, and the scope of the credential they used (`None` = password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub scope: Option<TokenScope>,
}

impl Subject {
    pub fn name(&self) -> &str {
        match self {
            Subject::Anonymous => "",
            Subject::User(p) => &p.username,
        }
    }
}

/// A set of repository actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    pub pull: bool,
    pub push: bool,
    pub delete: bool,
}

impl Actions {
    pub const NONE: Actions = Actions { pull: false, push: false, delete: false };
    pub const ALL: Actions = Actions { pull: true, push: true, delete: true };
    pub const PULL: Actions = Actions { pull: true, push: false, delete: false };

    pub fn from_permission(p: Permission) -> Actions {
        match p {
            Permission::Read => Actions::PULL,
            Permission::Write => Actions { pull: true, push: true, delete: false },
            Permission::Admin => Actions::ALL,
        }
    }

    pub fn allows(self, a: Action) -> bool {
        match a {
            Action::Pull => self.pull,
            Action::Push => self.push,
            Action::Delete => self.delete,
        }
    }

    pub fn union(self, o: Actions) -> Actions {
        Actions { pull: self.pull || o.pull, push: self.push || o.push, delete: self.delete || o.delete }
    }

    fn narrow(self, scope: Option<TokenScope>) -> Actions {
        match scope {
            Some(TokenScope::Read) => Actions { pull: self.pull, push: false, delete: false },
            _ => self,
        }
    }
}

#[derive(Debug, Default)]
struct OrgEntry {
    owners: HashSet<i64>,
    members: HashSet<i64>,
    /// user id → (repository path → best permission through any team)
    grants: HashMap<i64, HashMap<String, Permission>>,
}

/// What a namespace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    User(i64),
    Org(i64),
}

/// Immutable snapshot of everything authorization needs.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// name → the user
    users: HashMap<String, DirectoryUser>,
    /// user id → (org, team) pairs
    teams_of: HashMap<i64, Vec<(String, String)>>,
    orgs: HashMap<String, (i64, OrgEntry)>,
    repos: HashMap<String, (i64, Visibility)>,
}

impl Snapshot {
    pub fn build(rows: DirectoryRows) -> Snapshot {
        let mut s = Snapshot::default();
        for u in rows.users {
            s.users.insert(u.username.clone(), u);
        }
        let mut org_names = HashMap::new();
        for (id, name) in rows.orgs {
            org_names.insert(id, name.clone());
            s.orgs.insert(name, (id, OrgEntry::default()));
        }
        let mut team_org = HashMap::new();
        let mut team_names = HashMap::new();
        let mut owner_teams = HashSet::new();
        for (tid, oid, name) in rows.teams {
            team_org.insert(tid, oid);
            team_names.insert(tid, name.clone());
            if name == OWNERS_TEAM {
                owner_teams.insert(tid);
            }
        }
        let mut team_members: HashMap<i64, Vec<i64>> = HashMap::new();
        for (tid, uid) in rows.members {
            team_members.entry(tid).or_default().push(uid);
            if let (Some(org), Some(team)) = (team_org.get(&tid).and_then(|o| org_names.get(o)), team_names.get(&tid)) {
                s.teams_of.entry(uid).or_default().push((org.clone(), team.clone()));
            }
            let Some(org) = team_org.get(&tid).and_then(|o| org_names.get(o)).and_then(|n| s.orgs.get_mut(n)) else {
                continue;
            };
            org.1.members.insert(uid);
            if owner_teams.contains(&tid) {
                org.1.owners.insert(uid);
            }
        }
        for (tid, path, perm) in rows.permissions {
            let Some(org) = team_org.get(&tid).and_then(|o| org_names.get(o)).and_then(|n| s.orgs.get_mut(n)) else {
                continue;
            };
            for uid in team_members.get(&tid).into_iter().flatten() {
                let best = org.1.grants.entry(*uid).or_default().entry(path.clone()).or_insert(perm);
                *best = (*best).max(perm);
            }
        }
        for (id, name, vis) in rows.repos {
            s.repos.insert(name, (id, vis));
        }
        s
    }

    pub fn namespace(&self, ns: &str) -> Option<Namespace> {
        if let Some(u) = self.users.get(ns) {
            return Some(Namespace::User(u.id));
        }
        self.orgs.get(ns).map(|(id, _)| Namespace::Org(*id))
    }

    /// A user who may act now: (id, is_admin); `None` for unknown and disabled accounts (a
    /// disabled account keeps its name and namespace, but nothing it presents is accepted).
    pub fn user(&self, name: &str) -> Option<(i64, bool)> {
        self.users.get(name).filter(|u| !u.disabled).map(|u| (u.id, u.is_admin))
    }

    /// Whether `name` is a workload's account that no workload rule makes a member of any team
    /// now: what it presents is refused, as it would be refused a token.
    pub fn is_idle_workload(&self, name: &str) -> bool {
        self.users.get(name).is_some_and(|u| u.workload && self.teams_of.get(&u.id).is_none_or(|t| t.is_empty()))
    }

    /// The ids of the workload accounts of issuer `issuer` (`<issuer>:<subject>`).
    pub fn workloads_of(&self, issuer: &str) -> Vec<i64> {
        let prefix = format!("{issuer}:");
        self.users.values().filter(|u| u.workload && u.username.starts_with(&prefix)).map(|u| u.id).collect()
    }

    /// Whether `name` is a local account (a password here), not one of an identity provider.
    pub fn is_local(&self, name: &str) -> bool {
        self.users.get(name).is_some_and(|u| u.local)
    }

    pub fn repo(&self, name: &str) -> Option<(i64, Visibility)> {
        self.repos.get(name).copied()
    }

    pub fn repo_names(&self) -> impl Iterator<Item = &String> {
        self.repos.keys()
    }

    /// The user's organizations, whether they own each, and their teams there.
    pub fn memberships(&self, user: i64) -> Vec<policy::Membership> {
        let mut out: Vec<policy::Membership> = Vec::new();
        for (org, team) in self.teams_of.get(&user).into_iter().flatten() {
            match out.iter_mut().find(|m| &m.org == org) {
                Some(m) => m.teams.push(team.clone()),
                None => out.push(policy::Membership { org: org.clone(), owner: false, teams: vec![team.clone()] }),
            }
        }
        for m in &mut out {
            m.owner = m.teams.iter().any(|t| t == OWNERS_TEAM);
        }
        out
    }

    /// True when `user` is in any team of `org`.
    pub fn is_member(&self, org: &str, user: i64) -> bool {
        self.orgs.get(org).is_some_and(|(_, o)| o.members.contains(&user))
    }

    /// The orgs whose only owner `user` is.
    pub fn orgs_owned_only_by(&self, user: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .orgs
            .iter()
            .filter(|(_, (_, o))| o.owners.len() == 1 && o.owners.contains(&user))
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    pub fn is_owner(&self, org: &str, user: i64) -> bool {
        self.orgs.get(org).is_some_and(|(_, o)| o.owners.contains(&user))
    }

    /// The actions `subject` may perform on repository `repo` right now.
    pub fn permitted(&self, subject: &Subject, repo: &RepoName) -> Actions {
        let public = matches!(self.repos.get(repo.as_str()), Some((_, Visibility::Public)));
        let base = if public { Actions::PULL } else { Actions::NONE };
        let Subject::User(p) = subject else { return base };
        // A principal whose account is gone or disabled has no rights beyond the public.
        if self.user(&p.username).map(|u| u.0) != Some(p.id) {
            return base;
        }
        let granted = if p.is_admin {
            Actions::ALL
        } else if repo.path_in_namespace().is_none() {
            Actions::NONE
        } else {
            match self.namespace(repo.namespace()) {
                Some(Namespace::User(uid)) if uid == p.id => Actions::ALL,
                Some(Namespace::Org(_)) => {
                    let org = &self.orgs[repo.namespace()].1;
                    if org.owners.contains(&p.id) {
                        Actions::ALL
                    } else {
                        let path = repo.path_in_namespace().unwrap_or_default();
                        org.grants
                            .get(&p.id)
                            .and_then(|g| g.get(path))
                            .map(|perm| Actions::from_permission(*perm))
                            .unwrap_or(Actions::NONE)
                    }
                }
                _ => Actions::NONE,
            }
        };
        // Hosted repositories live in a namespace somebody holds; push elsewhere is refused
        // even to administrators, so that nobody hosts look-alikes of other registries' names.
        let granted = if self.namespace(repo.namespace()).is_none() || repo.path_in_namespace().is_none() {
            Actions { push: false, delete: false, ..granted }
        } else {
            granted
        };
        base.union(granted.narrow(p.scope))
    }
}

/// The live directory: a snapshot behind a lock, swapped whole after writes.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    inner: Arc<RwLock<Arc<Snapshot>>>,
}

impl Directory {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn replace(&self, s: Snapshot) {
        if let Ok(mut g) = self.inner.write() {
            *g = Arc::new(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot::build(DirectoryRows {
            users: [(1, "alice", false), (2, "bob", false), (3, "root", true), (4, "carol", false)]
                .map(|(id, name, admin)| DirectoryUser::from_row((id, name.into(), admin, false, "local".into())))
                .into(),
            orgs: vec![(10, "acme".into())],
            teams: vec![(100, 10, "owners".into()), (101, 10, "dev".into())],
            members: vec![(100, 1), (101, 2), (101, 4)],
            permissions: vec![(101, "app".into(), Permission::Write), (101, "ro".into(), Permission::Read)],
            repos: vec![(1000, "acme/app".into(), Visibility::Private), (1001, "acme/pub".into(), Visibility::Public)],
        })
    }

    fn user(id: i64, name: &str, admin: bool, scope: Option<TokenScope>) -> Subject {
        Subject::User(Principal { id, username: name.into(), is_admin: admin, scope })
    }

    fn r(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn permission_table() {
        let s = snap();
        let alice = user(1, "alice", false, None);
        let bob = user(2, "bob", false, None);
        let root = user(3, "root", true, None);
        assert_eq!(s.permitted(&alice, &r("acme/app")), Actions::ALL, "owner");
        assert_eq!(s.permitted(&bob, &r("acme/app")), Actions { pull: true, push: true, delete: false });
        assert_eq!(s.permitted(&bob, &r("acme/ro")), Actions::PULL);
        assert_eq!(s.permitted(&bob, &r("acme/other")), Actions::NONE);
        assert_eq!(s.permitted(&bob, &r("acme/pub")), Actions::PULL, "public");
        assert_eq!(s.permitted(&Subject::Anonymous, &r("acme/pub")), Actions::PULL);
        assert_eq!(s.permitted(&Subject::Anonymous, &r("acme/app")), Actions::NONE);
        assert_eq!(s.permitted(&bob, &r("bob/mine")), Actions::ALL, "personal namespace");
        assert_eq!(s.permitted(&bob, &r("alice/x")), Actions::NONE);
        assert_eq!(s.permitted(&root, &r("acme/app")), Actions::ALL);
        assert_eq!(s.permitted(&root, &r("nobody/x")), Actions::PULL, "no push to unheld namespaces");
        assert_eq!(s.permitted(&alice, &r("acme")), Actions::NONE, "one-part names are not hosted");
    }

    #[test]
    fn token_scope_and_stale_subjects() {
        let s = snap();
        let ro = user(1, "alice", false, Some(TokenScope::Read));
        assert_eq!(s.permitted(&ro, &r("acme/app")), Actions::PULL);
        let ghost = user(99, "alice", false, None);
        assert_eq!(s.permitted(&ghost, &r("acme/app")), Actions::NONE, "id must match the live account");
        assert!(s.is_member("acme", 4) && !s.is_owner("acme", 4) && s.is_owner("acme", 1));
        let m = s.memberships(1);
        assert_eq!((m.len(), m[0].owner), (1, true));
        assert_eq!(s.memberships(2)[0].teams, vec!["dev".to_string()]);
        assert!(s.memberships(3).is_empty());
    }
}
