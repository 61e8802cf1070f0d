//! The *Org permissions* page: Image Access Management (on/off, each category, enforce or dry
//! run), Registry Access Management and its allowlist, the exceptions, and the signature
//! requirements (edited in `signatures.rs`). Owners edit; members
//! see the same page read-only. Saving a setting that would have denied recent pulls first
//! shows those pulls (the impact preview) and saves only when the owner confirms.

use askama::Template;
use axum::extract::{Path, Query};
use policy::{Category, Mode, Settings, TeamCategories};
use serde::Deserialize;

use super::{Console, Done, Layout, Posted, St, UiResult, done, format, ok};
use portcullis_core::Error;

/// A category switch as the form shows it (one per row of `Category::SWITCHES`).
pub struct SwitchView {
    field: &'static str,
    /// The id of the team-rule form's checkbox (`rule_official`, …).
    rule_id: String,
    label: &'static str,
    hint: &'static str,
    on: bool,
}

/// The switches of `flags`, in the table's order.
fn switches(flags: &TeamCategories) -> Vec<SwitchView> {
    Category::SWITCHES
        .iter()
        .map(|s| SwitchView {
            field: s.field,
            rule_id: s.field.replacen("allow_", "rule_", 1),
            label: s.name.label,
            hint: s.hint,
            on: (s.get)(flags),
        })
        .collect()
}

/// The flags a form checked: each switch whose field it sent.
fn checked(fields: &std::collections::HashMap<String, String>) -> TeamCategories {
    let mut flags = TeamCategories::default();
    for s in &Category::SWITCHES {
        (s.set)(&mut flags, fields.contains_key(s.field));
    }
    flags
}

/// The settings as the form shows them.
pub struct SettingsView {
    enabled: bool,
    switches: Vec<SwitchView>,
    dry_run: bool,
    registry_access: bool,
    registries: String,
    hub_namespaces: String,
    personal_namespaces: bool,
    no_public_repos: bool,
}

impl From<&Settings> for SettingsView {
    fn from(s: &Settings) -> Self {
        let r = &s.restricted_images;
        SettingsView {
            enabled: r.enabled,
            switches: switches(&r.flags()),
            dry_run: r.mode == Mode::DryRun,
            registry_access: s.registry_access.enabled,
            registries: s.registry_access.allowed_registries.join("\n"),
            hub_namespaces: s.docker_hub_namespaces.join("\n"),
            personal_namespaces: s.restrict_personal_namespaces,
            no_public_repos: s.disable_public_repositories,
        }
    }
}

pub struct ExceptionView {
    id: i64,
    pattern: String,
    digest: String,
    short: String,
    team: String,
    expires: String,
    reason: String,
    created_by: String,
    created: String,
}

pub struct ImpactRow {
    image: String,
    user: String,
    pulls: u64,
}

/// The impact preview of unsaved settings.
pub struct Impact {
    pub(super) considered: u64,
    pub(super) rows: Vec<ImpactRow>,
    /// The previewed settings, which "Save" confirms.
    pub(super) confirm: String,
    /// A signature rule being added, which its own "Add anyway" confirms.
    pub(super) rule: Option<super::signatures::RuleForm>,
}

impl Impact {
    pub(super) fn of(preview: portcullis_core::iam::Preview, confirm: String) -> Impact {
        let rows = preview
            .would_deny
            .into_iter()
            .map(|r| ImpactRow { image: r.image, user: r.user, pulls: r.pulls })
            .collect();
        Impact { considered: preview.pulls_considered as u64, rows, confirm, rule: None }
    }
}

/// A team's own rule, as the page lists it.
pub struct TeamRuleView {
    team: String,
    /// The categories it adds, in words.
    adds: String,
}

fn adds(t: &policy::TeamCategories) -> String {
    t.allowed_labels().join(", ")
}

#[derive(Template)]
#[template(path = "permissions.html")]
pub(super) struct PermissionsPage {
    l: Layout,
    s: SettingsView,
    /// Exceptions for everyone, with no end and no pinned digest: Docker's repository allowlist.
    allowlist: Vec<ExceptionView>,
    /// The others: for one team, until a date, or pinned to a digest.
    exceptions: Vec<ExceptionView>,
    teams: Vec<String>,
    team_rules: Vec<TeamRuleView>,
    signature_rules: Vec<super::signatures::RuleView>,
    impact: Option<Impact>,
}

pub(super) async fn page_of(
    st: &crate::AppState,
    c: &Console,
    org: &str,
    settings: &Settings,
    impact: Option<Impact>,
) -> Result<PermissionsPage, Error> {
    let (allowlist, exceptions): (Vec<ExceptionView>, Vec<ExceptionView>) = st
        .iam
        .exceptions(&c.who, org)
        .await?
        .into_iter()
        .map(|e| ExceptionView {
            id: e.id,
            pattern: e.pattern,
            short: e.digest.as_deref().map(format::short_digest).unwrap_or_default(),
            digest: e.digest.unwrap_or_default(),
            team: e.team.unwrap_or_default(),
            expires: e.expires_at.map(format::date).unwrap_or_else(|| "never".into()),
            reason: e.reason,
            created_by: e.created_by,
            created: format::time(e.created_at),
        })
        .partition(|e| e.team.is_empty() && e.digest.is_empty() && e.expires == "never");
    let teams = st.orgs.teams(&c.who, org).await?.into_iter().map(|t| t.name).collect();
    let team_rules = st
        .iam
        .team_rules(&c.who, org)
        .await?
        .into_iter()
        .map(|(team, t)| TeamRuleView { team, adds: adds(&t.restricted_images) })
        .collect();
    Ok(PermissionsPage {
        l: Layout::org(c, st, org, "Org permissions", "permissions"),
        s: settings.into(),
        allowlist,
        exceptions,
        teams,
        team_rules,
        signature_rules: super::signatures::views(&settings.signatures),
        impact,
    })
}

pub async fn page(
    axum::extract::State(st): St,
    c: Console,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> UiResult {
    let settings = st.iam.settings(&c.who, &org).await?;
    let mut p = page_of(&st, &c, &org, &settings, None).await?;
    p.l = p.l.with_notice(q.done.as_deref());
    ok(&p)
}

#[derive(Deserialize)]
pub struct SettingsForm {
    enabled: Option<String>,
    mode: Option<String>,
    registry_access: Option<String>,
    #[serde(default)]
    registries: String,
    #[serde(default)]
    hub_namespaces: String,
    restrict_personal_namespaces: Option<String>,
    disable_public_repositories: Option<String>,
    /// `preview` or `save`.
    intent: Option<String>,
    /// The settings JSON whose impact the owner has seen.
    confirmed: Option<String>,
    /// The category switches (`Category::SWITCHES`' fields) and anything else sent.
    #[serde(flatten)]
    fields: std::collections::HashMap<String, String>,
}

fn lines(s: &str) -> Vec<String> {
    s.split(['\n', ',', ' ']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

impl SettingsForm {
    fn settings(&self) -> Result<Settings, Error> {
        let mut s = Settings::default();
        let r = &mut s.restricted_images;
        r.enabled = self.enabled.is_some();
        r.set_flags(&checked(&self.fields));
        r.mode = match self.mode.as_deref().unwrap_or("enforce") {
            "enforce" => Mode::Enforce,
            "dry_run" => Mode::DryRun,
            m => return Err(Error::Invalid(format!("unknown mode {m:?}; use enforce or dry_run"))),
        };
        s.registry_access.enabled = self.registry_access.is_some();
        s.registry_access.allowed_registries = lines(&self.registries);
        s.docker_hub_namespaces = lines(&self.hub_namespaces);
        s.restrict_personal_namespaces = self.restrict_personal_namespaces.is_some();
        s.disable_public_repositories = self.disable_public_repositories.is_some();
        Ok(s)
    }
}

pub async fn save(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<SettingsForm>) -> UiResult {
    let (c, f) = (p.c, p.form);
    // The page shows these sections: a save changes them and nothing else.
    let shown = f.settings()?;
    let changes = serde_json::json!({
        "restricted_images": shown.restricted_images,
        "registry_access": shown.registry_access,
        "docker_hub_namespaces": shown.docker_hub_namespaces,
        "restrict_personal_namespaces": shown.restrict_personal_namespaces,
        "disable_public_repositories": shown.disable_public_repositories,
    });
    let json = changes.to_string();
    let preview = st.iam.preview(&c.who, &org, &changes).await?;
    let proposed = preview.proposed.clone();
    let impact = Impact::of(preview, json);
    let wants_preview = f.intent.as_deref() == Some("preview");
    let unconfirmed = !impact.rows.is_empty() && f.confirmed.as_deref() != Some(impact.confirm.as_str());
    if wants_preview || unconfirmed {
        let page = page_of(&st, &c, &org, &proposed, Some(impact)).await?;
        return ok(&page);
    }
    st.iam.set_settings(&c.who, &org, &changes).await?;
    done(&format!("/orgs/{org}/permissions"), "saved")
}

#[derive(Deserialize)]
pub struct ExceptionForm {
    pattern: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    expires: String,
    reason: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub async fn add_exception(
    axum::extract::State(st): St,
    Path(org): Path<String>,
    p: Posted<ExceptionForm>,
) -> UiResult {
    let f = p.form;
    let expires_at = match some(&f.expires) {
        None => None,
        // The exception holds through the whole day named.
        Some(d) => Some(
            format::parse_date(&d).ok_or_else(|| Error::Invalid(format!("invalid date {d:?}; use YYYY-MM-DD")))?
                + 86_399,
        ),
    };
    let n = portcullis_core::iam::NewException {
        pattern: f.pattern,
        digest: some(&f.digest),
        team: some(&f.team),
        expires_at,
        reason: f.reason,
    };
    st.iam.add_exception(&p.c.who, &org, n).await?;
    done(&format!("/orgs/{org}/permissions"), "exception-added")
}

pub async fn delete_exception(
    axum::extract::State(st): St,
    Path((org, id)): Path<(String, i64)>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    st.iam.delete_exception(&p.c.who, &org, id).await?;
    done(&format!("/orgs/{org}/permissions"), "exception-deleted")
}

#[derive(Deserialize)]
pub struct TeamRuleForm {
    team: String,
    /// The category switches (`Category::SWITCHES`' fields) and the CSRF token.
    #[serde(flatten)]
    fields: std::collections::HashMap<String, String>,
}

/// Sets a team's own categories (owners); all unchecked removes the rule.
pub async fn set_team_rule(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<TeamRuleForm>) -> UiResult {
    let f = p.form;
    let body = serde_json::json!({ "restricted_images": checked(&f.fields) });
    st.iam.set_team_settings(&p.c.who, &org, f.team.trim(), &body).await?;
    done(&format!("/orgs/{org}/permissions"), "team-rule-saved")
}
