//! `OrgStore` of the in-memory adapter (as `store/src/sql/orgs.rs` is of the SQL ones).

use super::*;

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

    async fn team_permissions(&self, team_id: i64) -> Result<Vec<RepoPermission>> {
        self.with(|s| {
            Ok(s.permissions
                .iter()
                .filter(|((t, _), _)| *t == team_id)
                .map(|((_, r), p)| RepoPermission { repo: r.clone(), permission: *p })
                .collect())
        })
    }

    async fn load_directory(&self) -> Result<DirectoryRows> {
        self.with(|s| {
            Ok(DirectoryRows {
                users: s
                    .users
                    .values()
                    .map(|u| {
                        DirectoryUser::from_row((
                            u.id,
                            u.username.clone(),
                            u.is_admin,
                            u.disabled,
                            u.source.as_str().into(),
                        ))
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
