//! Team rules (an `impl Iam` block): an owner gives a team its own Image Access Management
//! categories, which widen what the team's members may pull beyond the org's (never narrow it:
//! `policy::decide`). Members read them; owners change them; each change is audited and is a
//! version of the org's policy.

use policy::TeamSettings;

use crate::authz::Principal;
use crate::error::{Error, Result};
use crate::iam::Iam;

impl Iam {
    /// The team's rule (empty when it has none). Members of the org may read it.
    pub async fn team_settings(&self, who: &Principal, org: &str, team: &str) -> Result<TeamSettings> {
        let o = self.orgs.visible(who, org).await?;
        self.meta.team(o.id, team).await?.ok_or_else(|| Error::NotFound(format!("no team {team} in {org}")))?;
        Ok(self.snapshot().orgs.get(org).and_then(|p| p.teams.get(team)).cloned().unwrap_or_default())
    }

    /// Every team rule of the org, by team.
    pub async fn team_rules(&self, who: &Principal, org: &str) -> Result<Vec<(String, TeamSettings)>> {
        self.orgs.visible(who, org).await?;
        let mut v: Vec<(String, TeamSettings)> =
            self.snapshot().orgs.get(org).map(|p| p.teams.clone().into_iter().collect()).unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// Replaces the team's rule (owners). A body with unknown fields or wrong types is refused.
    pub async fn set_team_settings(
        &self,
        who: &Principal,
        org: &str,
        team: &str,
        body: &serde_json::Value,
    ) -> Result<TeamSettings> {
        let o = self.orgs.owned(who, org).await?;
        let t = self.meta.team(o.id, team).await?.ok_or_else(|| Error::NotFound(format!("no team {team} in {org}")))?;
        if !body.is_object() {
            return Err(Error::Invalid("team settings are a JSON object".into()));
        }
        let after: TeamSettings =
            serde_json::from_value(body.clone()).map_err(|e| Error::Invalid(format!("invalid team settings: {e}")))?;
        let before = self.snapshot().orgs.get(org).and_then(|p| p.teams.get(team)).cloned().unwrap_or_default();
        let json = serde_json::to_string(&after).map_err(|e| Error::storage_from("", e))?;
        let stored = (!after.is_empty()).then_some(json.as_str());
        self.meta.put_team_settings(t.id, stored, self.clock.now()).await?;
        self.refresh().await?;
        let detail = serde_json::json!({ "team": team, "before": before, "after": after });
        self.record_change(who, org, "team.settings.update", detail).await;
        self.record_version(who, o.id, org, &format!("team {team}'s rule changed")).await?;
        Ok(after)
    }
}
