//! Organizations, teams, members and team permissions (`OrgStore`), and the rows of the
//! in-memory directory.

use portcullis_core::model::{Org, Permission, Team, Visibility};

/// A row of `orgs`.
#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: i64,
    name: String,
    created_at: i64,
}

pub(crate) fn org(r: OrgRow) -> Org {
    Org { id: r.id, name: r.name, created_at: r.created_at }
}

/// A team of a known organization.
#[derive(sqlx::FromRow)]
pub(crate) struct TeamRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) directory_managed: bool,
}

/// The columns of [`TeamRow`].
macro_rules! team_cols {
    () => {
        "id, name, directory_managed"
    };
}

/// Adds a membership with its source (`manual` or `directory`), keeping an existing one as it is.
pub(crate) const ADD_MEMBER: &str =
    "INSERT INTO team_members (team_id, user_id, source) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

pub(crate) fn team(org_id: i64, r: TeamRow) -> Team {
    Team { id: r.id, org_id, name: r.name, directory_managed: r.directory_managed }
}

/// A team's permission on a repository path of its organization.
#[derive(sqlx::FromRow)]
pub(crate) struct GrantRow {
    pub(crate) team_id: i64,
    pub(crate) repo_path: String,
    pub(crate) permission: String,
}

impl GrantRow {
    pub(crate) fn parsed(self) -> Option<(i64, String, Permission)> {
        Permission::parse(&self.permission).map(|p| (self.team_id, self.repo_path, p))
    }
}

/// A repository's name and visibility, for the directory.
#[derive(sqlx::FromRow)]
pub(crate) struct VisibilityRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) visibility: String,
}

impl VisibilityRow {
    pub(crate) fn parsed(self) -> (i64, String, Visibility) {
        (self.id, self.name, Visibility::parse(&self.visibility).unwrap_or(Visibility::Private))
    }
}

macro_rules! orgs_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::OrgStore, $store, {
            async fn create_org(&self, name: &str, creator: i64, now: i64) -> Result<Org> {
                let mut tx = self.write.begin().await.map_err(db)?;
                if Self::name_taken(&mut tx, name).await? {
                    return Err(Error::Conflict(format!("the name {name} is taken")));
                }
                let (id,): (i64,) = sqlx::query_as("INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id")
                    .bind(name)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                let (team,): (i64,) = sqlx::query_as("INSERT INTO teams (org_id, name) VALUES ($1, $2) RETURNING id")
                    .bind(id)
                    .bind(OWNERS_TEAM)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                sqlx::query("INSERT INTO team_members (team_id, user_id) VALUES ($1, $2)")
                    .bind(team)
                    .bind(creator)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(Org { id, name: name.to_owned(), created_at: now })
            }

            async fn org_by_name(&self, name: &str) -> Result<Option<Org>> {
                let r: Option<OrgRow> = sqlx::query_as("SELECT id, name, created_at FROM orgs WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(org))
            }

            async fn list_orgs(&self) -> Result<Vec<Org>> {
                let r: Vec<OrgRow> = sqlx::query_as("SELECT id, name, created_at FROM orgs ORDER BY name")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(org).collect())
            }

            async fn create_team(&self, org_id: i64, name: &str) -> Result<Team> {
                let (id,): (i64,) = sqlx::query_as("INSERT INTO teams (org_id, name) VALUES ($1, $2) RETURNING id")
                    .bind(org_id)
                    .bind(name)
                    .fetch_one(&self.write)
                    .await
                    .map_err(|e| match db(e) {
                        Error::Conflict(_) => Error::Conflict(format!("team {name} exists")),
                        other => other,
                    })?;
                Ok(Team { id, org_id, name: name.to_owned(), directory_managed: false })
            }

            async fn team(&self, org_id: i64, name: &str) -> Result<Option<Team>> {
                let r: Option<TeamRow> =
                    sqlx::query_as(concat!("SELECT ", team_cols!(), " FROM teams WHERE org_id = $1 AND name = $2"))
                        .bind(org_id)
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.map(|t| team(org_id, t)))
            }

            async fn list_teams(&self, org_id: i64) -> Result<Vec<Team>> {
                let r: Vec<TeamRow> = sqlx::query_as(concat!("SELECT ", team_cols!(), " FROM teams WHERE org_id = $1 ORDER BY name"))
                    .bind(org_id)
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|t| team(org_id, t)).collect())
            }

            async fn delete_team(&self, team_id: i64) -> Result<()> {
                sqlx::query("DELETE FROM teams WHERE id = $1").bind(team_id).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn add_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
                let r = sqlx::query(ADD_MEMBER).bind(team_id).bind(user_id).bind("manual");
                Ok(r.execute(&self.write).await.map_err(db)?.rows_affected() > 0)
            }

            async fn set_directory_managed(&self, team_id: i64, managed: bool) -> Result<()> {
                sqlx::query("UPDATE teams SET directory_managed = $1 WHERE id = $2")
                    .bind(managed)
                    .bind(team_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn add_directory_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
                let r = sqlx::query(ADD_MEMBER).bind(team_id).bind(user_id).bind("directory");
                Ok(r.execute(&self.write).await.map_err(db)?.rows_affected() > 0)
            }

            async fn directory_memberships(&self, user_id: i64) -> Result<Vec<i64>> {
                let r: Vec<(i64,)> =
                    sqlx::query_as("SELECT team_id FROM team_members WHERE user_id = $1 AND source = 'directory'")
                        .bind(user_id)
                        .fetch_all(&self.write)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(|(t,)| t).collect())
            }

            async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
                let mut tx = self.write.begin().await.map_err(db)?;
                let (name, count): (String, i64) = sqlx::query_as(
                    "SELECT t.name, (SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) FROM teams t WHERE t.id = $1",
                )
                .bind(team_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                let is_member = sqlx::query("SELECT 1 FROM team_members WHERE team_id = $1 AND user_id = $2")
                    .bind(team_id)
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?
                    .is_some();
                if !is_member {
                    return Ok(false);
                }
                if name == OWNERS_TEAM && count <= 1 {
                    return Err(Error::Conflict("the last owner cannot be removed; add another owner first".into()));
                }
                sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                    .bind(team_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn team_members(&self, team_id: i64) -> Result<Vec<User>> {
                let r: Vec<UserRow> = sqlx::query_as(
                    "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at, u.disabled, u.source, u.external_id FROM users u \
                     JOIN team_members m ON m.user_id = u.id WHERE m.team_id = $1 ORDER BY u.username",
                )
                .bind(team_id)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(r.into_iter().map(user).collect())
            }

            async fn set_permission(&self, team_id: i64, repo_path: &str, permission: Option<Permission>) -> Result<()> {
                let q = match permission {
                    Some(p) => sqlx::query(
                        "INSERT INTO team_permissions (team_id, repo_path, permission) VALUES ($1, $2, $3) \
                         ON CONFLICT (team_id, repo_path) DO UPDATE SET permission = excluded.permission",
                    )
                    .bind(team_id)
                    .bind(repo_path)
                    .bind(p.as_str()),
                    None => sqlx::query("DELETE FROM team_permissions WHERE team_id = $1 AND repo_path = $2")
                        .bind(team_id)
                        .bind(repo_path),
                };
                q.execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn team_permissions(&self, team_id: i64) -> Result<Vec<RepoPermission>> {
                let r: Vec<GrantRow> = sqlx::query_as(
                    "SELECT team_id, repo_path, permission FROM team_permissions WHERE team_id = $1 ORDER BY repo_path",
                )
                .bind(team_id)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(r.into_iter().filter_map(GrantRow::parsed).map(|(_, repo, permission)| RepoPermission { repo, permission }).collect())
            }

            async fn load_directory(&self) -> Result<DirectoryRows> {
                let mut c = self.read.acquire().await.map_err(db)?;
                let users: Vec<(i64, String, bool, bool, String)> =
                    sqlx::query_as("SELECT id, username, is_admin, disabled, source FROM users").fetch_all(&mut *c).await.map_err(db)?;
                let users = users.into_iter().map(portcullis_core::model::DirectoryUser::from_row).collect();
                let orgs = sqlx::query_as("SELECT id, name FROM orgs").fetch_all(&mut *c).await.map_err(db)?;
                let teams = sqlx::query_as("SELECT id, org_id, name FROM teams").fetch_all(&mut *c).await.map_err(db)?;
                let members =
                    sqlx::query_as("SELECT team_id, user_id FROM team_members").fetch_all(&mut *c).await.map_err(db)?;
                let perms: Vec<GrantRow> =
                    sqlx::query_as("SELECT team_id, repo_path, permission FROM team_permissions")
                        .fetch_all(&mut *c)
                        .await
                        .map_err(db)?;
                let repos: Vec<VisibilityRow> =
                    sqlx::query_as("SELECT id, name, visibility FROM repositories").fetch_all(&mut *c).await.map_err(db)?;
                Ok(DirectoryRows {
                    users,
                    orgs,
                    teams,
                    members,
                    permissions: perms.into_iter().filter_map(GrantRow::parsed).collect(),
                    repos: repos.into_iter().map(VisibilityRow::parsed).collect(),
                })
            }
        });
    };
}
