//! The robot accounts on the *Members and teams* page (owners only): each robot with its teams,
//! scope, expiry and last use; a form to make one — its token shown once, on the page that
//! answers the form — and a button to delete one (its token stops working at once).

use axum::extract::Path;
use portcullis_core::model::TokenScope;
use serde::Deserialize;

use super::{Posted, St, UiResult, done, format, ok};
use portcullis_core::Error;

/// A robot as the page lists it.
pub struct RobotView {
    pub(super) name: String,
    pub(super) username: String,
    pub(super) teams: String,
    pub(super) scope: &'static str,
    pub(super) expires: String,
    pub(super) last_used: String,
}

pub fn views(robots: &[portcullis_core::robots::Robot]) -> Vec<RobotView> {
    robots
        .iter()
        .map(|r| RobotView {
            name: r.name.clone(),
            username: r.username.clone(),
            teams: r.teams.join(", "),
            scope: if r.scope == TokenScope::Read { "pull" } else { "pull and push" },
            expires: r.expires_at.map(format::date).unwrap_or_default(),
            last_used: r.last_used_at.map(format::time).unwrap_or_else(|| "never".into()),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct RobotForm {
    name: String,
    /// Team names, separated by commas or spaces.
    teams: String,
    /// `read` or `read-write`.
    scope: String,
    days: String,
}

pub async fn create(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<RobotForm>) -> UiResult {
    let (c, f) = (p.c, p.form);
    let teams: Vec<String> =
        f.teams.split([',', ' ']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
    let scope = match f.scope.as_str() {
        "read" => TokenScope::Read,
        "read-write" => TokenScope::ReadWrite,
        s => return Err(Error::Invalid(format!("unknown scope {s:?}; use read or read-write")).into()),
    };
    let days: i64 =
        f.days.trim().parse().map_err(|_| Error::Invalid(format!("{:?} is not a number of days", f.days)))?;
    let (robot, secret) = st.robots.create(&c.who, &org, f.name.trim(), &teams, scope, days).await?;
    let mut page = super::org::members_page(&st, &c, &org).await?;
    page.created = Some((robot.username, secret));
    ok(&page)
}

pub async fn delete(
    axum::extract::State(st): St,
    Path((org, name)): Path<(String, String)>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    st.robots.delete(&p.c.who, &org, &name).await?;
    done(&format!("/orgs/{org}/members"), "robot-deleted")
}
