//! `PolicyStore` of the in-memory adapter (as `store/src/sql/policy.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl PolicyStore for MemoryMeta {
    async fn all_org_settings(&self) -> Result<Vec<OrgSettingsRow>> {
        self.with(|s| {
            let mut v: Vec<OrgSettingsRow> = s
                .settings
                .iter()
                .filter_map(|(o, j)| {
                    s.orgs.get(o).map(|org| OrgSettingsRow { org: org.name.clone(), settings: j.clone() })
                })
                .collect();
            v.sort();
            Ok(v)
        })
    }

    async fn hub_badges(&self) -> Result<Vec<HubBadgeRow>> {
        self.with(|s| {
            let row = |(n, (b, e)): (&String, &(Option<String>, i64))| HubBadgeRow {
                namespace: n.clone(),
                badge: b.clone(),
                expires_at: *e,
            };
            Ok(s.hub_badges.iter().map(row).collect())
        })
    }

    async fn put_hub_badge(&self, namespace: &str, badge: Option<&str>, expires_at: i64) -> Result<()> {
        self.with(|s| {
            s.hub_badges.insert(namespace.into(), (badge.map(str::to_owned), expires_at));
            Ok(())
        })
    }

    async fn all_team_settings(&self) -> Result<Vec<TeamSettingsRow>> {
        self.with(|s| {
            let mut v: Vec<TeamSettingsRow> = s
                .team_settings
                .iter()
                .filter_map(|(t, j)| {
                    let team = s.teams.get(t)?;
                    let org = s.orgs.get(&team.org_id)?.name.clone();
                    Some(TeamSettingsRow { org, team: team.name.clone(), settings: j.clone() })
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

    async fn create_exception(&self, org_id: i64, e: &::policy::Exception) -> Result<i64> {
        self.with(|s| {
            let id = s.id();
            s.exceptions.insert(id, (org_id, ::policy::Exception { id, ..e.clone() }));
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

    async fn publisher_overrides(&self) -> Result<Vec<PublisherOverrideRow>> {
        self.with(|s| {
            let row = |(k, v): (&String, &String)| PublisherOverrideRow { namespace: k.clone(), badge: v.clone() };
            Ok(s.publishers.iter().map(row).collect())
        })
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

    async fn workload_issuers(&self) -> Result<Vec<String>> {
        self.with(|s| Ok(s.workload_issuers.iter().map(|(_, _, j)| j.clone()).collect()))
    }

    async fn create_workload_issuer(&self, name: &str, issuer: &str, json: &str, _by: &str, _now: i64) -> Result<()> {
        self.with(|s| {
            if s.workload_issuers.iter().any(|(n, i, _)| n == name || i == issuer) {
                return Err(Error::Conflict(format!("a workload issuer named {name} or with iss {issuer} is stored")));
            }
            s.workload_issuers.push((name.into(), issuer.into(), json.into()));
            s.changed();
            Ok(())
        })
    }

    async fn delete_workload_issuer(&self, name: &str) -> Result<bool> {
        self.with(|s| {
            let before = s.workload_issuers.len();
            s.workload_issuers.retain(|(n, ..)| n != name);
            let changed = s.workload_issuers.len() != before;
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
