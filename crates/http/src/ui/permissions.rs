//! The *Org permissions* page: the current settings summarized at the top (one card per
//! section, linking to it), then a section each for Image Access Management (on/off, each
//! category, enforce or dry run), team rules, workload rules (edited in `workloads.rs`),
//! Registry Access Management, namespaces and repositories, the allowlist, the signature
//! requirements (edited in `signatures.rs`) and the exceptions. Each section saves on its own and changes nothing else. Owners edit; members see
//! the same page read-only. Saving a setting that would have denied recent pulls first shows
//! those pulls in its section (the impact preview) and saves only when the owner confirms.

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
    /// The page section whose change this previews ([`Section::anchor`] or `signature-rules`).
    pub(super) section: &'static str,
}

impl Impact {
    pub(super) fn of(preview: portcullis_core::iam::Preview, confirm: String, section: &'static str) -> Impact {
        let rows = preview
            .would_deny
            .into_iter()
            .map(|r| ImpactRow { image: r.image, user: r.user, pulls: r.pulls })
            .collect();
        Impact { considered: preview.pulls_considered as u64, rows, confirm, rule: None, section }
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

/// One card of the summary at the top of the page: a section's state in a word and a line.
pub struct Card {
    /// The section's id on the page.
    anchor: &'static str,
    title: &'static str,
    state: String,
    /// The badge class of `state` (`on`, `off`, `warn`), or empty for plain text.
    badge: &'static str,
    detail: String,
}

fn count(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => "None".into(),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// The summary of the saved settings (never of a change being previewed).
fn summary(
    s: &Settings,
    team_rules: &[TeamRuleView],
    allowlist: &[ExceptionView],
    exceptions: &[ExceptionView],
) -> Vec<Card> {
    let r = &s.restricted_images;
    let (state, badge) = match (r.enabled, r.mode) {
        (false, _) => ("Off", "off"),
        (true, Mode::Enforce) => ("On", "on"),
        (true, Mode::DryRun) => ("Dry run", "warn"),
    };
    let mut kinds = vec!["Organization images"];
    kinds.extend(r.flags().allowed_labels());
    let iam = if r.enabled {
        format!("Members may pull: {}.", kinds.join(", "))
    } else {
        "Members may pull any image.".into()
    };
    let ra = &s.registry_access;
    let registries = match (ra.enabled, ra.allowed_registries.is_empty()) {
        (false, _) => "Any registry.".into(),
        (true, true) => "Only images hosted here.".into(),
        (true, false) => format!("Only {} and images hosted here.", ra.allowed_registries.join(", ")),
    };
    let hub = match s.docker_hub_namespaces.as_slice() {
        [] => "No Docker Hub namespace".to_owned(),
        n => format!("Docker Hub: {}", n.join(", ")),
    };
    let namespaces = format!(
        "{hub}; personal namespaces {}; public repositories {}.",
        if s.restrict_personal_namespaces { "closed" } else { "open" },
        if s.disable_public_repositories { "disabled" } else { "allowed" },
    );
    let rules = &s.signatures.rules;
    let dry = rules.iter().filter(|r| r.mode == Mode::DryRun).count();
    let signatures = match (rules.len(), dry) {
        (0, _) => "Images need no signature.".into(),
        (_, 0) => "Enforced.".into(),
        (n, d) if n == d => "In dry run.".into(),
        (_, d) => format!("{d} in dry run."),
    };
    let teams = match team_rules {
        [] => "Every team as the organization.".into(),
        t => t.iter().map(|t| t.team.as_str()).collect::<Vec<_>>().join(", "),
    };
    let allowed = match allowlist {
        [] => "No repository beyond the kinds allowed.".into(),
        a => a.iter().map(|e| e.pattern.as_str()).collect::<Vec<_>>().join(", "),
    };
    let soonest = exceptions.iter().filter(|e| e.expires != "never").map(|e| e.expires.as_str()).min();
    let excepted = match (exceptions.len(), soonest) {
        (0, _) => "No image is excepted.".into(),
        (_, Some(d)) => format!("The first expires {d}."),
        (_, None) => "None expires.".into(),
    };
    let on_off = |on: bool| if on { ("On", "on") } else { ("Off", "off") };
    vec![
        Card { anchor: "image-access", title: "Image Access Management", state: state.into(), badge, detail: iam },
        Card {
            anchor: "registry-access",
            title: "Registry Access Management",
            state: on_off(ra.enabled).0.into(),
            badge: on_off(ra.enabled).1,
            detail: registries,
        },
        Card {
            anchor: "namespaces",
            title: "Namespaces and repositories",
            state: if s.restrict_personal_namespaces || s.disable_public_repositories { "Restricted" } else { "Open" }
                .into(),
            badge: "",
            detail: namespaces,
        },
        Card {
            anchor: "signature-rules",
            title: "Signature requirements",
            state: count(rules.len(), "rule", "rules"),
            badge: "",
            detail: signatures,
        },
        Card {
            anchor: "team-rules",
            title: "Team rules",
            state: count(team_rules.len(), "team", "teams"),
            badge: "",
            detail: teams,
        },
        Card {
            anchor: "workload-rules",
            title: "Workload rules",
            state: count(s.workloads.rules.len(), "rule", "rules"),
            badge: "",
            detail: match s.workloads.rules.as_slice() {
                [] => "No workload signs in to this organization.".into(),
                r => {
                    let mut issuers: Vec<&str> = r.iter().map(|r| r.issuer.as_str()).collect();
                    issuers.dedup();
                    format!("Workloads of {} join teams.", issuers.join(", "))
                }
            },
        },
        Card {
            anchor: "allowlist",
            title: "Repository allowlist",
            state: count(allowlist.len(), "repository", "repositories"),
            badge: "",
            detail: allowed,
        },
        Card {
            anchor: "exceptions",
            title: "Exceptions",
            state: count(exceptions.len(), "exception", "exceptions"),
            badge: "",
            detail: excepted,
        },
    ]
}

#[derive(Template)]
#[template(path = "permissions.html")]
pub(super) struct PermissionsPage {
    l: Layout,
    summary: Vec<Card>,
    /// The settings the forms show: the saved ones, or a previewed change.
    s: SettingsView,
    /// Exceptions for everyone, with no end and no pinned digest: Docker's repository allowlist.
    allowlist: Vec<ExceptionView>,
    /// The others: for one team, until a date, or pinned to a digest.
    exceptions: Vec<ExceptionView>,
    teams: Vec<String>,
    team_rules: Vec<TeamRuleView>,
    signature_rules: Vec<super::signatures::RuleView>,
    workload_rules: Vec<super::workloads::RuleView>,
    /// The trusted workload issuers' names, for the add-a-rule form.
    issuers: Vec<String>,
    impact: Option<Impact>,
}

/// The page, its forms showing `shown` (a change being previewed, with its impact) or the
/// saved settings.
pub(super) async fn page_of(
    st: &crate::AppState,
    c: &Console,
    org: &str,
    shown: Option<(&Settings, Impact)>,
) -> Result<PermissionsPage, Error> {
    let saved = st.iam.settings(&c.who, org).await?;
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
    let team_rules: Vec<TeamRuleView> = st
        .iam
        .team_rules(&c.who, org)
        .await?
        .into_iter()
        .map(|(team, t)| TeamRuleView { team, adds: adds(&t.restricted_images) })
        .collect();
    let (settings, impact) = match shown {
        Some((s, i)) => (s, Some(i)),
        None => (&saved, None),
    };
    Ok(PermissionsPage {
        l: Layout { wide: true, ..Layout::org(c, st, org, "Org permissions", "permissions") },
        summary: summary(&saved, &team_rules, &allowlist, &exceptions),
        s: settings.into(),
        allowlist,
        exceptions,
        teams,
        team_rules,
        signature_rules: super::signatures::views(&settings.signatures),
        workload_rules: super::workloads::views(&settings.workloads),
        issuers: st.iam.workload_issuers(),
        impact,
    })
}

pub async fn page(
    axum::extract::State(st): St,
    c: Console,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> UiResult {
    let mut p = page_of(&st, &c, &org, None).await?;
    p.l = p.l.with_notice(q.done.as_deref());
    ok(&p)
}

/// The sections of the settings that save on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    ImageAccess,
    RegistryAccess,
    Namespaces,
}

impl Section {
    fn parse(s: &str) -> Result<Section, Error> {
        Ok(match s {
            "image-access" => Section::ImageAccess,
            "registry-access" => Section::RegistryAccess,
            "namespaces" => Section::Namespaces,
            s => {
                return Err(Error::Invalid(format!(
                    "unknown section {s:?}; use image-access, registry-access or namespaces"
                )));
            }
        })
    }

    /// The section's id on the page.
    fn anchor(self) -> &'static str {
        match self {
            Section::ImageAccess => "image-access",
            Section::RegistryAccess => "registry-access",
            Section::Namespaces => "namespaces",
        }
    }

    /// The settings change `s` makes to this section, and to nothing else.
    fn changes(self, s: &Settings) -> serde_json::Value {
        match self {
            Section::ImageAccess => serde_json::json!({ "restricted_images": s.restricted_images }),
            Section::RegistryAccess => serde_json::json!({ "registry_access": s.registry_access }),
            Section::Namespaces => serde_json::json!({
                "docker_hub_namespaces": s.docker_hub_namespaces,
                "restrict_personal_namespaces": s.restrict_personal_namespaces,
                "disable_public_repositories": s.disable_public_repositories,
            }),
        }
    }
}

#[derive(Deserialize)]
pub struct SettingsForm {
    /// The section saved ([`Section::parse`]); the fields of the others are not sent.
    section: String,
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
    let section = Section::parse(&f.section)?;
    let changes = section.changes(&f.settings()?);
    let preview = st.iam.preview(&c.who, &org, &changes).await?;
    let proposed = preview.proposed.clone();
    let impact = Impact::of(preview, changes.to_string(), section.anchor());
    let wants_preview = f.intent.as_deref() == Some("preview");
    let unconfirmed = !impact.rows.is_empty() && f.confirmed.as_deref() != Some(impact.confirm.as_str());
    if wants_preview || unconfirmed {
        return ok(&page_of(&st, &c, &org, Some((&proposed, impact))).await?);
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
    let allowlist = n.digest.is_none() && n.team.is_none() && n.expires_at.is_none();
    st.iam.add_exception(&p.c.who, &org, n).await?;
    done(&format!("/orgs/{org}/permissions"), if allowlist { "allowlist-added" } else { "exception-added" })
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
