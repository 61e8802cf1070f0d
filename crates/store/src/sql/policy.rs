//! Image Access Management's inputs (`PolicyStore`): org settings, team rules, exceptions,
//! exception requests, publisher overrides, and the history of each org's policy.

use portcullis_core::model::{ExceptionRequest, ExceptionRow};

/// An exception with the name of its organization.
#[derive(sqlx::FromRow)]
pub(crate) struct ExceptionRecord {
    org: String,
    id: i64,
    pattern: String,
    digest: Option<String>,
    team: Option<String>,
    expires_at: Option<i64>,
    reason: String,
    created_by: String,
    created_at: i64,
}

pub(crate) fn exception(r: ExceptionRecord) -> ExceptionRow {
    ExceptionRow {
        org: r.org,
        exception: policy::Exception {
            id: r.id,
            pattern: r.pattern,
            digest: r.digest,
            team: r.team,
            expires_at: r.expires_at,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
        },
    }
}

/// An exception request with the name of its organization.
#[derive(sqlx::FromRow)]
pub(crate) struct RequestRow {
    id: i64,
    org: String,
    requester: String,
    image: String,
    digest: Option<String>,
    reason: String,
    status: String,
    created_at: i64,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    note: Option<String>,
    exception_id: Option<i64>,
    denial: Option<String>,
}

pub(crate) fn request(r: RequestRow) -> ExceptionRequest {
    ExceptionRequest {
        id: r.id,
        org: r.org,
        requester: r.requester,
        image: r.image,
        digest: r.digest,
        reason: r.reason,
        status: r.status,
        created_at: r.created_at,
        decided_by: r.decided_by,
        decided_at: r.decided_at,
        note: r.note,
        exception_id: r.exception_id,
        denial: r.denial,
    }
}

macro_rules! policy_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::PolicyStore, $store, {
            async fn all_org_settings(&self) -> Result<Vec<OrgSettingsRow>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT o.name, s.settings FROM org_settings s JOIN orgs o ON o.id = s.org_id ORDER BY o.name")
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(rows.into_iter().map(|(org, settings)| OrgSettingsRow { org, settings }).collect())
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
                let rows: Vec<ExceptionRecord> = sqlx::query_as(
                    "SELECT o.name AS org, e.id, e.pattern, e.digest, e.team, e.expires_at, e.reason, e.created_by, e.created_at \
                     FROM exceptions e JOIN orgs o ON o.id = e.org_id ORDER BY e.id",
                )
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(exception).collect())
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

            async fn all_team_settings(&self) -> Result<Vec<TeamSettingsRow>> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT o.name, t.name, s.settings FROM team_settings s JOIN teams t ON t.id = s.team_id \
                     JOIN orgs o ON o.id = t.org_id ORDER BY o.name, t.name",
                )
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(|(org, team, settings)| TeamSettingsRow { org, team, settings }).collect())
            }

            async fn put_team_settings(&self, team_id: i64, settings_json: Option<&str>, now: i64) -> Result<()> {
                match settings_json {
                    Some(j) => sqlx::query(
                        "INSERT INTO team_settings (team_id, settings, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (team_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                    )
                    .bind(team_id)
                    .bind(j)
                    .bind(now),
                    None => sqlx::query("DELETE FROM team_settings WHERE team_id = $1").bind(team_id),
                }
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn append_policy_version(
                &self,
                org_id: i64,
                author: &str,
                summary: &str,
                state: &str,
                now: i64,
            ) -> Result<i64> {
                let mut tx = self.write.begin().await.map_err(db)?;
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COALESCE(MAX(version), 0) + 1 AS BIGINT) FROM policy_versions WHERE org_id = $1",
                )
                .bind(org_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "INSERT INTO policy_versions (org_id, version, author, created_at, summary, state) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(org_id)
                .bind(n)
                .bind(author)
                .bind(now)
                .bind(summary)
                .bind(state)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(n)
            }

            async fn policy_versions(&self, org_id: i64) -> Result<Vec<PolicyVersion>> {
                let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(
                    "SELECT version, author, created_at, summary, state FROM policy_versions WHERE org_id = $1 \
                     ORDER BY version DESC",
                )
                .bind(org_id)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|(version, author, created_at, summary, state)| PolicyVersion { version, author, created_at, summary, state })
                    .collect())
            }

            async fn hub_badges(&self) -> Result<Vec<HubBadgeRow>> {
                let rows: Vec<(String, Option<String>, i64)> =
                    sqlx::query_as("SELECT namespace, badge, expires_at FROM hub_badges ORDER BY namespace")
                        .fetch_all(&self.read)
                        .await
                        .map_err(db)?;
                Ok(rows.into_iter().map(|(namespace, badge, expires_at)| HubBadgeRow { namespace, badge, expires_at }).collect())
            }

            async fn put_hub_badge(&self, namespace: &str, badge: Option<&str>, expires_at: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO hub_badges (namespace, badge, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (namespace) DO UPDATE SET badge = excluded.badge, expires_at = excluded.expires_at",
                )
                .bind(namespace)
                .bind(badge)
                .bind(expires_at)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn publisher_overrides(&self) -> Result<Vec<PublisherOverrideRow>> {
                let r: Vec<(String, String)> = sqlx::query_as("SELECT namespace, badge FROM publisher_overrides ORDER BY namespace")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(namespace, badge)| PublisherOverrideRow { namespace, badge }).collect())
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

            async fn workload_issuers(&self) -> Result<Vec<String>> {
                let r: Vec<(String,)> = sqlx::query_as("SELECT document FROM workload_issuers ORDER BY created_at, name")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(d,)| d).collect())
            }

            async fn create_workload_issuer(&self, name: &str, issuer: &str, json: &str, by: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO workload_issuers (name, issuer, document, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(name)
                .bind(issuer)
                .bind(json)
                .bind(by)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(|e| match db(e) {
                    Error::Conflict(_) => Error::Conflict(format!("a workload issuer named {name} or with iss {issuer} is stored")),
                    e => e,
                })?;
                Ok(())
            }

            async fn delete_workload_issuer(&self, name: &str) -> Result<bool> {
                let r = sqlx::query("DELETE FROM workload_issuers WHERE name = $1").bind(name).execute(&self.write).await.map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn create_exception_request(&self, org_id: i64, r: &ExceptionRequest) -> Result<i64> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO exception_requests (org_id, requester, image, digest, reason, status, created_at, denial) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING id",
                )
                .bind(org_id)
                .bind(&r.requester)
                .bind(&r.image)
                .bind(&r.digest)
                .bind(&r.reason)
                .bind(r.created_at)
                .bind(&r.denial)
                .fetch_one(&self.write)
                .await
                .map_err(db)?;
                Ok(id)
            }

            async fn exception_requests(&self, org_id: i64) -> Result<Vec<ExceptionRequest>> {
                let rows: Vec<RequestRow> = sqlx::query_as(
                    "SELECT r.id, o.name AS org, r.requester, r.image, r.digest, r.reason, r.status, r.created_at, r.decided_by, \
                     r.decided_at, r.note, r.exception_id, r.denial FROM exception_requests r JOIN orgs o ON o.id = r.org_id \
                     WHERE r.org_id = $1 ORDER BY r.id DESC",
                )
                .bind(org_id)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(request).collect())
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
        });
    };
}
