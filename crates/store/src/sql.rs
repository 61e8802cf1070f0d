//! The SQL both metadata stores share: one `MetaStore` implementation, written once as the
//! `meta_store!` macro and instantiated for SQLite and PostgreSQL (sqlx's query types are
//! per-database, and a generic impl would need a bound for every column type). Queries use
//! `$n` placeholders, `ON CONFLICT`, `RETURNING` and `CAST`, which both engines read alike;
//! each schema (`migrations/{sqlite,postgres}`) makes the same columns decode to the same types.

use portcullis_core::error::Error;
use portcullis_core::model::*;

pub(crate) fn db(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return Error::Conflict("already exists".into());
    }
    Error::Db(e.to_string())
}

pub(crate) type UserRow = (i64, String, String, bool, i64);
pub(crate) type TokenRow = (i64, i64, String, String, String, i64, Option<i64>, Option<i64>);

pub(crate) fn user(r: UserRow) -> User {
    User { id: r.0, username: r.1, password_hash: r.2, is_admin: r.3, created_at: r.4 }
}

pub(crate) fn token(r: TokenRow) -> AccessToken {
    AccessToken {
        id: r.0,
        user_id: r.1,
        label: r.2,
        kind: r.3,
        scope: TokenScope::parse(&r.4).unwrap_or(TokenScope::Read),
        created_at: r.5,
        expires_at: r.6,
        last_used_at: r.7,
    }
}

pub(crate) fn repo(r: (i64, String, String, i64)) -> Repo {
    Repo { id: r.0, name: r.1, visibility: Visibility::parse(&r.2).unwrap_or(Visibility::Private), created_at: r.3 }
}

pub(crate) type ManifestTuple = (String, String, Vec<u8>, Option<String>, Option<String>, Option<String>);

pub(crate) fn manifest(r: ManifestTuple) -> ManifestRow {
    ManifestRow { digest: r.0, media_type: r.1, content: r.2, artifact_type: r.3, subject: r.4, annotations: r.5 }
}

macro_rules! user_cols {
    () => {
        "id, username, password_hash, is_admin, created_at"
    };
}
macro_rules! token_cols {
    () => {
        "id, user_id, label, kind, scope, created_at, expires_at, last_used_at"
    };
}
macro_rules! manifest_cols {
    () => {
        "digest, media_type, content, artifact_type, subject, annotations"
    };
}

/// Implements `MetaStore` for `$store` (a struct with `write` and `read` pools of `$db`).
macro_rules! meta_store {
    ($store:ident, $db:ty) => {
        impl $store {
            async fn name_taken(tx: &mut Transaction<'_, $db>, name: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 FROM users WHERE username = $1 UNION ALL SELECT 1 FROM orgs WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db)?;
                Ok(row.is_some())
            }
        }

        measured_impl!(portcullis_core::ports::MetaStore, $store, {
            async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool, now: i64) -> Result<User> {
                let mut tx = self.write.begin().await.map_err(db)?;
                if Self::name_taken(&mut tx, username).await? {
                    return Err(Error::Conflict(format!("the name {username} is taken")));
                }
                let r: UserRow = sqlx::query_as(concat!(
                    "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING ",
                    user_cols!()
                ))
                .bind(username)
                .bind(password_hash)
                .bind(is_admin)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(user(r))
            }

            async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
                let r: Option<UserRow> = sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(user))
            }

            async fn list_users(&self) -> Result<Vec<User>> {
                let r: Vec<UserRow> = sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users ORDER BY username"))
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(user).collect())
            }

            async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn count_users(&self) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&self.read).await.map_err(db)?;
                Ok(n)
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
                let r: TokenRow = sqlx::query_as(concat!(
                    "INSERT INTO access_tokens (user_id, label, kind, token_hash, scope, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
                    token_cols!()
                ))
                .bind(user_id)
                .bind(label)
                .bind(kind)
                .bind(token_hash)
                .bind(scope.as_str())
                .bind(now)
                .bind(expires_at)
                .fetch_one(&self.write)
                .await
                .map_err(db)?;
                Ok(token(r))
            }

            async fn token_by_hash(&self, token_hash: &str) -> Result<Option<(AccessToken, User)>> {
                let r: Option<TokenRow> =
                    sqlx::query_as(concat!("SELECT ", token_cols!(), " FROM access_tokens WHERE token_hash = $1"))
                        .bind(token_hash)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                let Some(t) = r.map(token) else { return Ok(None) };
                let u: Option<UserRow> = sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
                    .bind(t.user_id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(u.map(|u| (t, user(u))))
            }

            async fn list_tokens(&self, user_id: i64) -> Result<Vec<AccessToken>> {
                let r: Vec<TokenRow> =
                    sqlx::query_as(concat!("SELECT ", token_cols!(), " FROM access_tokens WHERE user_id = $1 ORDER BY id"))
                        .bind(user_id)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(token).collect())
            }

            async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
                let r = sqlx::query("DELETE FROM access_tokens WHERE id = $1 AND user_id = $2")
                    .bind(token_id)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn touch_token(&self, token_id: i64, now: i64) -> Result<()> {
                sqlx::query("UPDATE access_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(token_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

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
                let r: Option<(i64, String, i64)> = sqlx::query_as("SELECT id, name, created_at FROM orgs WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(|(id, name, created_at)| Org { id, name, created_at }))
            }

            async fn list_orgs(&self) -> Result<Vec<Org>> {
                let r: Vec<(i64, String, i64)> = sqlx::query_as("SELECT id, name, created_at FROM orgs ORDER BY name")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(id, name, created_at)| Org { id, name, created_at }).collect())
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
                Ok(Team { id, org_id, name: name.to_owned() })
            }

            async fn team(&self, org_id: i64, name: &str) -> Result<Option<Team>> {
                let r: Option<(i64,)> = sqlx::query_as("SELECT id FROM teams WHERE org_id = $1 AND name = $2")
                    .bind(org_id)
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(|(id,)| Team { id, org_id, name: name.to_owned() }))
            }

            async fn list_teams(&self, org_id: i64) -> Result<Vec<Team>> {
                let r: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM teams WHERE org_id = $1 ORDER BY name")
                    .bind(org_id)
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(id, name)| Team { id, org_id, name }).collect())
            }

            async fn delete_team(&self, team_id: i64) -> Result<()> {
                sqlx::query("DELETE FROM teams WHERE id = $1").bind(team_id).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn add_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
                let r = sqlx::query("INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(team_id)
                    .bind(user_id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
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
                    "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at FROM users u \
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

            async fn team_permissions(&self, team_id: i64) -> Result<Vec<(String, Permission)>> {
                let r: Vec<(String, String)> =
                    sqlx::query_as("SELECT repo_path, permission FROM team_permissions WHERE team_id = $1 ORDER BY repo_path")
                        .bind(team_id)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().filter_map(|(r, p)| Permission::parse(&p).map(|p| (r, p))).collect())
            }

            async fn load_directory(&self) -> Result<DirectoryRows> {
                let mut c = self.read.acquire().await.map_err(db)?;
                let users = sqlx::query_as("SELECT id, username, is_admin FROM users").fetch_all(&mut *c).await.map_err(db)?;
                let orgs = sqlx::query_as("SELECT id, name FROM orgs").fetch_all(&mut *c).await.map_err(db)?;
                let teams = sqlx::query_as("SELECT id, org_id, name FROM teams").fetch_all(&mut *c).await.map_err(db)?;
                let members =
                    sqlx::query_as("SELECT team_id, user_id FROM team_members").fetch_all(&mut *c).await.map_err(db)?;
                let perms: Vec<(i64, String, String)> =
                    sqlx::query_as("SELECT team_id, repo_path, permission FROM team_permissions")
                        .fetch_all(&mut *c)
                        .await
                        .map_err(db)?;
                let repos: Vec<(i64, String, String)> =
                    sqlx::query_as("SELECT id, name, visibility FROM repositories").fetch_all(&mut *c).await.map_err(db)?;
                Ok(DirectoryRows {
                    users,
                    orgs,
                    teams,
                    members,
                    permissions: perms.into_iter().filter_map(|(t, r, p)| Permission::parse(&p).map(|p| (t, r, p))).collect(),
                    repos: repos
                        .into_iter()
                        .map(|(i, n, v)| (i, n, Visibility::parse(&v).unwrap_or(Visibility::Private)))
                        .collect(),
                })
            }

            async fn ensure_repo(&self, name: &str, visibility: Visibility, now: i64) -> Result<Repo> {
                sqlx::query(
                    "INSERT INTO repositories (name, visibility, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(visibility.as_str())
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                let r: (i64, String, String, i64) =
                    sqlx::query_as("SELECT id, name, visibility, created_at FROM repositories WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.write)
                        .await
                        .map_err(db)?;
                Ok(repo(r))
            }

            async fn repo(&self, name: &str) -> Result<Option<Repo>> {
                let r: Option<(i64, String, String, i64)> =
                    sqlx::query_as("SELECT id, name, visibility, created_at FROM repositories WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.map(repo))
            }

            async fn list_repos(&self) -> Result<Vec<Repo>> {
                let r: Vec<(i64, String, String, i64)> =
                    sqlx::query_as("SELECT id, name, visibility, created_at FROM repositories ORDER BY name")
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(repo).collect())
            }

            async fn set_visibility(&self, name: &str, visibility: Visibility) -> Result<bool> {
                let r = sqlx::query("UPDATE repositories SET visibility = $1 WHERE name = $2")
                    .bind(visibility.as_str())
                    .bind(name)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_repo(&self, name: &str) -> Result<bool> {
                let mut tx = self.write.begin().await.map_err(db)?;
                let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                let Some((id,)) = id else { return Ok(false) };
                for sql in [
                    "DELETE FROM tags WHERE repo_id = $1",
                    "DELETE FROM manifest_blobs WHERE repo_id = $1",
                    "DELETE FROM manifests WHERE repo_id = $1",
                    "DELETE FROM repo_blobs WHERE repo_id = $1",
                    "DELETE FROM repositories WHERE id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn put_blob(&self, digest: &str, size: u64, now: i64) -> Result<()> {
                sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO UPDATE SET cached = 0")
                    .bind(digest)
                    .bind(size as i64)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn blob_size(&self, digest: &str) -> Result<Option<u64>> {
                let r: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(|(s,)| s as u64))
            }

            async fn link_blob(&self, repo_id: i64, digest: &str) -> Result<()> {
                sqlx::query("INSERT INTO repo_blobs (repo_id, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(repo_id)
                    .bind(digest)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn linked_blob(&self, repo_id: i64, digest: &str) -> Result<Option<u64>> {
                let r: Option<(i64,)> = sqlx::query_as(
                    "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repo_id = $1 AND l.digest = $2",
                )
                .bind(repo_id)
                .bind(digest)
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
                Ok(r.map(|(s,)| s as u64))
            }

            async fn unlink_blob(&self, repo_id: i64, digest: &str) -> Result<bool> {
                let r = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_blobs(&self) -> Result<Vec<(String, u64)>> {
                let r: Vec<(String, i64)> =
                    sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest").fetch_all(&self.read).await.map_err(db)?;
                Ok(r.into_iter().map(|(d, s)| (d, s as u64)).collect())
            }

            async fn forget_blob(&self, digest: &str) -> Result<()> {
                sqlx::query("DELETE FROM blobs WHERE digest = $1").bind(digest).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn put_manifest(
                &self,
                repo_id: i64,
                m: &ManifestRow,
                blob_refs: &[String],
                tag: Option<&str>,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.write.begin().await.map_err(db)?;
                sqlx::query(
                    "INSERT INTO manifests (repo_id, digest, media_type, content, size, artifact_type, subject, annotations, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING",
                )
                .bind(repo_id)
                .bind(&m.digest)
                .bind(&m.media_type)
                .bind(&m.content)
                .bind(m.content.len() as i64)
                .bind(&m.artifact_type)
                .bind(&m.subject)
                .bind(&m.annotations)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                for b in blob_refs {
                    sqlx::query("INSERT INTO manifest_blobs (repo_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(repo_id)
                        .bind(&m.digest)
                        .bind(b)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                if let Some(t) = tag {
                    sqlx::query(
                        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                    )
                    .bind(repo_id)
                    .bind(t)
                    .bind(&m.digest)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                tx.commit().await.map_err(db)
            }

            async fn manifest(&self, repo_id: i64, digest: &str) -> Result<Option<ManifestRow>> {
                let r: Option<ManifestTuple> =
                    sqlx::query_as(concat!("SELECT ", manifest_cols!(), " FROM manifests WHERE repo_id = $1 AND digest = $2"))
                        .bind(repo_id)
                        .bind(digest)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.map(manifest))
            }

            async fn tag_digest(&self, repo_id: i64, tag: &str) -> Result<Option<String>> {
                let r: Option<(String,)> = sqlx::query_as("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.map(|(d,)| d))
            }

            async fn manifest_by_tag(&self, repo_id: i64, tag: &str) -> Result<Option<ManifestRow>> {
                let r: Option<ManifestTuple> = sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.content, m.artifact_type, m.subject, m.annotations FROM tags t \
                     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest WHERE t.repo_id = $1 AND t.name = $2",
                )
                .bind(repo_id)
                .bind(tag)
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
                Ok(r.map(manifest))
            }

            async fn manifests_present(&self, repo_id: i64, digests: &[String]) -> Result<Vec<String>> {
                let mut out = Vec::new();
                let mut c = self.read.acquire().await.map_err(db)?;
                for d in digests {
                    let r = sqlx::query("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                        .bind(repo_id)
                        .bind(d)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db)?;
                    if r.is_some() {
                        out.push(d.clone());
                    }
                }
                Ok(out)
            }

            async fn delete_manifest(&self, repo_id: i64, digest: &str) -> Result<bool> {
                let mut tx = self.write.begin().await.map_err(db)?;
                sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                sqlx::query("DELETE FROM manifest_blobs WHERE repo_id = $1 AND manifest_digest = $2")
                    .bind(repo_id)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let r = sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_tag(&self, repo_id: i64, tag: &str) -> Result<bool> {
                let r = sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn list_tags(&self, repo_id: i64, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
                let limit = n.map(|n| n.min(i64::MAX as usize) as i64).unwrap_or(i64::MAX);
                let r: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3")
                        .bind(repo_id)
                        .bind(last.unwrap_or(""))
                        .bind(limit)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(|(t,)| t).collect())
            }

            async fn referrers(&self, repo_id: i64, subject: &str) -> Result<Vec<Referrer>> {
                let r: Vec<(String, String, i64, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT digest, media_type, size, artifact_type, annotations FROM manifests WHERE repo_id = $1 AND subject = $2 ORDER BY digest",
                )
                .bind(repo_id)
                .bind(subject)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(r.into_iter()
                    .map(|(digest, media_type, size, artifact_type, annotations)| Referrer {
                        digest,
                        media_type,
                        size,
                        artifact_type,
                        annotations,
                    })
                    .collect())
            }

            async fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()> {
                sqlx::query("INSERT INTO uploads (id, repo, size, started_at) VALUES ($1, $2, 0, $3)")
                    .bind(id)
                    .bind(repo)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn upload(&self, id: &str) -> Result<Option<Upload>> {
                let r = sqlx::query("SELECT id, repo, size, started_at, hash_state FROM uploads WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.map(|r| Upload {
                    id: r.get(0),
                    repo: r.get(1),
                    size: r.get::<i64, _>(2) as u64,
                    started_at: r.get(3),
                    hash_state: r.get(4),
                }))
            }

            async fn set_upload_progress(&self, id: &str, size: u64, hash_state: &[u8]) -> Result<()> {
                sqlx::query("UPDATE uploads SET size = $1, hash_state = $2 WHERE id = $3")
                    .bind(size as i64)
                    .bind(hash_state)
                    .bind(id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn delete_upload(&self, id: &str) -> Result<()> {
                sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn uploads_started_before(&self, before: i64) -> Result<Vec<String>> {
                let r: Vec<(String,)> = sqlx::query_as("SELECT id FROM uploads WHERE started_at < $1 ORDER BY id")
                    .bind(before)
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(id,)| id).collect())
            }

            async fn tag_entry(&self, repo_id: i64, tag: &str) -> Result<Option<(String, i64)>> {
                sqlx::query_as("SELECT digest, updated_at FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)
            }

            async fn touch_tag(&self, repo_id: i64, tag: &str, now: i64) -> Result<()> {
                sqlx::query("UPDATE tags SET updated_at = $3 WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(tag)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn blob_referenced(&self, repo_id: i64, digest: &str) -> Result<bool> {
                let r = sqlx::query("SELECT 1 FROM manifest_blobs WHERE blob_digest = $1 AND repo_id = $2 LIMIT 1")
                    .bind(digest)
                    .bind(repo_id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.is_some())
            }

            async fn put_cached_blob(&self, digest: &str, size: u64, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO blobs (digest, size, created_at, cached, last_used_at) VALUES ($1, $2, $3, 1, $3) \
                     ON CONFLICT (digest) DO UPDATE SET last_used_at = excluded.last_used_at",
                )
                .bind(digest)
                .bind(size as i64)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn touch_blob(&self, digest: &str, now: i64) -> Result<()> {
                // At most one write a minute per blob: LRU order needs no finer clock.
                sqlx::query("UPDATE blobs SET last_used_at = $2 WHERE digest = $1 AND cached = 1 AND (last_used_at IS NULL OR last_used_at < $2 - 60)")
                    .bind(digest)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn cached_bytes(&self) -> Result<u64> {
                let (n,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE cached = 1")
                    .fetch_one(&self.read)
                    .await
                    .map_err(db)?;
                Ok(n as u64)
            }

            async fn cached_lru(&self, limit: usize) -> Result<Vec<(String, u64)>> {
                let r: Vec<(String, i64)> =
                    sqlx::query_as("SELECT digest, size FROM blobs WHERE cached = 1 ORDER BY COALESCE(last_used_at, 0), digest LIMIT $1")
                        .bind(limit as i64)
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(r.into_iter().map(|(d, s)| (d, s as u64)).collect())
            }

            async fn unreferenced_blobs(&self) -> Result<Vec<String>> {
                let r: Vec<(String,)> = sqlx::query_as(
                    "SELECT b.digest FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest) \
                     AND NOT EXISTS (SELECT 1 FROM manifest_blobs m WHERE m.blob_digest = b.digest) ORDER BY b.digest",
                )
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(r.into_iter().map(|(d,)| d).collect())
            }

            async fn all_org_settings(&self) -> Result<Vec<(String, String)>> {
                sqlx::query_as("SELECT o.name, s.settings FROM org_settings s JOIN orgs o ON o.id = s.org_id ORDER BY o.name")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)
            }

            async fn put_org_settings(&self, org_id: i64, settings_json: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO org_settings (org_id, settings, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (org_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                )
                .bind(org_id)
                .bind(settings_json)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn all_exceptions(&self) -> Result<Vec<ExceptionRow>> {
                type Row = (String, i64, String, Option<String>, Option<String>, Option<i64>, String, String, i64);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT o.name, e.id, e.pattern, e.digest, e.team, e.expires_at, e.reason, e.created_by, e.created_at \
                     FROM exceptions e JOIN orgs o ON o.id = e.org_id ORDER BY e.id",
                )
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|(org, id, pattern, digest, team, expires_at, reason, created_by, created_at)| ExceptionRow {
                        org,
                        exception: policy::Exception { id, pattern, digest, team, expires_at, reason, created_by, created_at },
                    })
                    .collect())
            }

            async fn create_exception(&self, org_id: i64, e: &policy::Exception) -> Result<i64> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO exceptions (org_id, pattern, digest, team, expires_at, reason, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(org_id)
                .bind(&e.pattern)
                .bind(&e.digest)
                .bind(&e.team)
                .bind(e.expires_at)
                .bind(&e.reason)
                .bind(&e.created_by)
                .bind(e.created_at)
                .fetch_one(&self.write)
                .await
                .map_err(db)?;
                Ok(id)
            }

            async fn delete_exception(&self, org_id: i64, id: i64) -> Result<bool> {
                let r = sqlx::query("DELETE FROM exceptions WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(id)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn publisher_overrides(&self) -> Result<Vec<(String, String)>> {
                sqlx::query_as("SELECT namespace, badge FROM publisher_overrides ORDER BY namespace")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)
            }

            async fn set_publisher_override(&self, namespace: &str, badge: Option<&str>, by: &str, now: i64) -> Result<bool> {
                let r = match badge {
                    Some(b) => sqlx::query(
                        "INSERT INTO publisher_overrides (namespace, badge, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (namespace) DO UPDATE SET badge = excluded.badge, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                    )
                    .bind(namespace)
                    .bind(b)
                    .bind(by)
                    .bind(now)
                    .execute(&self.write)
                    .await,
                    None => sqlx::query("DELETE FROM publisher_overrides WHERE namespace = $1").bind(namespace).execute(&self.write).await,
                }
                .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
                let mut tx = self.write.begin().await.map_err(db)?;
                for e in entries {
                    sqlx::query(
                        "INSERT INTO audit_log (at, org, actor, action, image, digest, category, rule, decision, client, user_agent, detail) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(e.at)
                    .bind(&e.org)
                    .bind(&e.actor)
                    .bind(&e.action)
                    .bind(&e.image)
                    .bind(&e.digest)
                    .bind(&e.category)
                    .bind(&e.rule)
                    .bind(&e.decision)
                    .bind(&e.client)
                    .bind(&e.user_agent)
                    .bind(&e.detail)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                tx.commit().await.map_err(db)
            }

            async fn query_audit(&self, org: Option<&str>, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query(
                    "SELECT id, at, org, actor, action, image, digest, category, rule, decision, client, user_agent, detail FROM audit_log \
                     WHERE ($1 IS NULL OR org = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR image = $3) \
                     AND ($4 IS NULL OR decision = $4) AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR at >= $6) \
                     AND ($7 IS NULL OR at <= $7) AND ($8 IS NULL OR id < $8) AND ($10 IS NULL OR category = $10) \
                     ORDER BY id DESC LIMIT $9",
                )
                .bind(org)
                .bind(&q.actor)
                .bind(&q.image)
                .bind(&q.decision)
                .bind(&q.action)
                .bind(q.since)
                .bind(q.until)
                .bind(q.before)
                .bind(q.limit.unwrap_or(100).clamp(1, 1000))
                .bind(&q.category)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|r| AuditEntry {
                        id: r.get(0),
                        at: r.get(1),
                        org: r.get(2),
                        actor: r.get(3),
                        action: r.get(4),
                        image: r.get(5),
                        digest: r.get(6),
                        category: r.get(7),
                        rule: r.get(8),
                        decision: r.get(9),
                        client: r.get(10),
                        user_agent: r.get(11),
                        detail: r.get(12),
                    })
                    .collect())
            }

            async fn prune_audit(&self, before: i64) -> Result<u64> {
                let r =
                    sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(before).execute(&self.write).await.map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn audit_activity(&self, org: &str, since: i64) -> Result<Vec<ActivityRow>> {
                let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
                    "SELECT at / 86400 AS day, COALESCE(category, 'unknown'), decision, COUNT(*) FROM audit_log \
                     WHERE org = $1 AND at >= $2 AND action = 'pull' AND decision IS NOT NULL \
                     GROUP BY day, 2, decision ORDER BY day, 2, decision",
                )
                .bind(org)
                .bind(since)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|(day, category, decision, pulls)| ActivityRow { day, category, decision, pulls })
                    .collect())
            }

            async fn create_session(&self, id_hash: &str, user_id: i64, csrf: &str, now: i64, expires_at: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id_hash)
                .bind(user_id)
                .bind(csrf)
                .bind(now)
                .bind(expires_at)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
                let r: Option<(i64, String, String, bool, i64, String, i64)> = sqlx::query_as(
                    "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at, s.csrf, s.expires_at \
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1 AND s.expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
                Ok(r.map(|(id, username, password_hash, is_admin, created_at, csrf, expires_at)| Session {
                    user: User { id, username, password_hash, is_admin, created_at },
                    csrf,
                    expires_at,
                }))
            }

            async fn delete_session(&self, id_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn delete_user_sessions(&self, user_id: i64) -> Result<()> {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&self.write).await.map_err(db)?;
                Ok(())
            }

            async fn prune_sessions(&self, now: i64) -> Result<u64> {
                let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn create_exception_request(&self, org_id: i64, r: &ExceptionRequest) -> Result<i64> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO exception_requests (org_id, requester, image, digest, reason, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING id",
                )
                .bind(org_id)
                .bind(&r.requester)
                .bind(&r.image)
                .bind(&r.digest)
                .bind(&r.reason)
                .bind(r.created_at)
                .fetch_one(&self.write)
                .await
                .map_err(db)?;
                Ok(id)
            }

            async fn exception_requests(&self, org_id: i64) -> Result<Vec<ExceptionRequest>> {
                let rows = sqlx::query(
                    "SELECT r.id, o.name, r.requester, r.image, r.digest, r.reason, r.status, r.created_at, r.decided_by, \
                     r.decided_at, r.note, r.exception_id FROM exception_requests r JOIN orgs o ON o.id = r.org_id \
                     WHERE r.org_id = $1 ORDER BY r.id DESC",
                )
                .bind(org_id)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|r| ExceptionRequest {
                        id: r.get(0),
                        org: r.get(1),
                        requester: r.get(2),
                        image: r.get(3),
                        digest: r.get(4),
                        reason: r.get(5),
                        status: r.get(6),
                        created_at: r.get(7),
                        decided_by: r.get(8),
                        decided_at: r.get(9),
                        note: r.get(10),
                        exception_id: r.get(11),
                    })
                    .collect())
            }

            async fn decide_exception_request(&self, org_id: i64, id: i64, d: &ExceptionRequest) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE exception_requests SET status = $3, decided_by = $4, decided_at = $5, note = $6, exception_id = $7 \
                     WHERE org_id = $1 AND id = $2 AND status = 'pending'",
                )
                .bind(org_id)
                .bind(id)
                .bind(&d.status)
                .bind(&d.decided_by)
                .bind(d.decided_at)
                .bind(&d.note)
                .bind(d.exception_id)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn login_failures(&self, user_key: &str, client_key: &str) -> Result<Vec<(String, i64, i64)>> {
                sqlx::query_as("SELECT key, window_start, failures FROM login_failures WHERE key = $1 OR key = $2")
                    .bind(user_key)
                    .bind(client_key)
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)
            }

            async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO login_failures (key, window_start, failures) VALUES ($1, $2, 1) ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN login_failures.window_start > $2 - $3 THEN login_failures.failures + 1 ELSE 1 END, \
                     window_start = CASE WHEN login_failures.window_start > $2 - $3 THEN login_failures.window_start ELSE $2 END",
                )
                .bind(key)
                .bind(now)
                .bind(window)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3 + $4) ON CONFLICT (name) DO UPDATE \
                     SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.expires_at <= $3 OR leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(now)
                .bind(ttl)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn generation(&self) -> Result<i64> {
                let (v,): (i64,) = sqlx::query_as("SELECT value FROM generation WHERE id = 1")
                    .fetch_one(&self.read)
                    .await
                    .map_err(db)?;
                Ok(v)
            }

            async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
                sqlx::query_as("SELECT kid, pkcs8 FROM signing_keys ORDER BY created_at DESC, kid DESC")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)
            }

            async fn add_signing_key(&self, kid: &str, pkcs8: &[u8], now: i64) -> Result<()> {
                sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING")
                    .bind(kid)
                    .bind(pkcs8)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.read).await.map_err(db)?;
                Ok(())
            }
        });
    };
}
