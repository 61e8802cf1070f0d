//! `AuditStore` of the in-memory adapter (as `store/src/sql/audit.rs` is of the SQL ones).

use super::*;

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
                .filter(|e| {
                    eq(&q.image, &e.image)
                        && q.decision.as_deref().is_none_or(|d| e.decision.is_some_and(|x| x.as_str() == d))
                        && q.category.as_deref().is_none_or(|c| e.category.is_some_and(|x| x.key == c))
                })
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
                let Some(decision) = e.decision.map(|d| d.as_str().to_owned()) else { continue };
                let category = e.category.map_or("unknown", |c| c.key).to_owned();
                *counts.entry((e.at / 86_400, category, decision)).or_default() += 1;
            }
            Ok(counts
                .into_iter()
                .map(|((day, category, decision), pulls)| ActivityRow { day, category, decision, pulls })
                .collect())
        })
    }
}
