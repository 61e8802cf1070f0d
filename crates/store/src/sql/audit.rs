//! The audit log (`AuditStore`): appended in batches, queried with filters and a cursor,
//! pruned past its retention, and counted by day for the activity chart.

use portcullis_core::model::{ActivityRow, AuditDecision, AuditEntry, UnknownValue};

/// A row of `audit_log`.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: i64,
    org: Option<String>,
    actor: String,
    action: String,
    image: Option<String>,
    digest: Option<String>,
    category: Option<String>,
    rule: Option<String>,
    decision: Option<String>,
    client: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
}

/// An entry from its row; a decision, category or rule none of ours is a database error.
pub(crate) fn audit_entry(r: AuditRow) -> Result<AuditEntry, UnknownValue> {
    Ok(AuditEntry {
        id: r.id,
        at: r.at,
        org: r.org,
        actor: r.actor,
        action: r.action,
        image: r.image,
        digest: r.digest,
        category: r.category.map(|c| c.parse().map_err(|_| UnknownValue("category", c))).transpose()?,
        rule: r.rule.map(|k| k.parse().map_err(|_| UnknownValue("rule", k))).transpose()?,
        decision: r.decision.map(AuditDecision::try_from).transpose()?,
        client: r.client,
        user_agent: r.user_agent,
        detail: r.detail,
    })
}

/// Pulls of one category with one decision on one day.
#[derive(sqlx::FromRow)]
pub(crate) struct ActivityCount {
    day: i64,
    category: String,
    decision: String,
    pulls: i64,
}

pub(crate) fn activity(r: ActivityCount) -> ActivityRow {
    ActivityRow { day: r.day, category: r.category, decision: r.decision, pulls: r.pulls }
}

/// Rows per `INSERT` of a batch: 12 binds each, well under SQLite's and PostgreSQL's limits.
pub(crate) const AUDIT_ROWS_PER_INSERT: usize = 64;

macro_rules! audit_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::AuditStore, $store, {
            async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
                let mut tx = self.write.begin().await.map_err(db)?;
                // Many rows per statement: each statement is a round trip to the connection
                // (a thread wake-up for SQLite), so a row per statement cost a pull one.
                for chunk in entries.chunks(AUDIT_ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_log (at, org, actor, action, image, digest, category, rule, decision, client, user_agent, detail) ",
                    );
                    q.push_values(chunk, |mut row, e| {
                        row.push_bind(e.at)
                            .push_bind(&e.org)
                            .push_bind(&e.actor)
                            .push_bind(&e.action)
                            .push_bind(&e.image)
                            .push_bind(&e.digest)
                            .push_bind(e.category.map(|c| c.key))
                            .push_bind(e.rule.map(|r| r.key()))
                            .push_bind(e.decision.map(AuditDecision::as_str))
                            .push_bind(&e.client)
                            .push_bind(&e.user_agent)
                            .push_bind(&e.detail);
                    });
                    q.build().execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)
            }

            async fn query_audit(&self, org: Option<&str>, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
                let rows: Vec<AuditRow> = sqlx::query_as(
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
                rows.into_iter().map(|r| audit_entry(r).map_err(|e| Error::Db(portcullis_core::error::Cause::from_error("", e)))).collect()
            }

            async fn prune_audit(&self, before: i64) -> Result<u64> {
                let r =
                    sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(before).execute(&self.write).await.map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn audit_activity(&self, org: &str, since: i64) -> Result<Vec<ActivityRow>> {
                let rows: Vec<ActivityCount> = sqlx::query_as(
                    "SELECT at / 86400 AS day, COALESCE(category, 'unknown') AS category, decision, COUNT(*) AS pulls FROM audit_log \
                     WHERE org = $1 AND at >= $2 AND action = 'pull' AND decision IS NOT NULL \
                     GROUP BY day, 2, decision ORDER BY day, 2, decision",
                )
                .bind(org)
                .bind(since)
                .fetch_all(&self.read)
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(activity).collect())
            }
        });
    };
}
