//! Console pages of organizations: the list, an org's overview, members and teams (owners
//! manage them), and the org's repositories with their tags.

use askama::Template;
use axum::extract::{Path, Query};
use portcullis_core::Error;
use portcullis_core::model::{OWNERS_TEAM, Permission, Visibility};
use portcullis_core::orgs::Member;
use serde::Deserialize;

use super::{Console, Done, Layout, Posted, St, UiResult, done, format, ok};

pub struct OrgRow {
    name: String,
    role: &'static str,
    restricted: bool,
}

#[derive(Template)]
#[template(path = "orgs.html")]
struct OrgsPage {
    l: Layout,
    orgs: Vec<OrgRow>,
    /// Whether the form to create an organization is shown (`auth.org_creation`).
    may_create: bool,
}

pub async fn list(axum::extract::State(st): St, c: Console) -> UiResult {
    let snap = st.identity.directory().snapshot();
    let mut orgs = Vec::new();
    for o in st.orgs.list(&c.who).await? {
        let role = if snap.is_owner(&o.name, c.who.id) {
            "owner"
        } else if snap.is_member(&o.name, c.who.id) {
            "member"
        } else {
            "administrator"
        };
        let restricted = st.iam.settings(&c.who, &o.name).await?.restricted_images.enabled;
        orgs.push(OrgRow { name: o.name, role, restricted });
    }
    // The administrator sees every organization, not only theirs.
    let title = if c.who.is_admin { "All organizations" } else { "My organizations" };
    ok(&OrgsPage { l: Layout::new(&c, title, "orgs"), orgs, may_create: st.orgs.may_create(&c.who) })
}

/// Creates an organization; its creator is its first owner, as on Docker Hub.
pub async fn create(axum::extract::State(st): St, p: Posted<NameForm>) -> UiResult {
    let org = st.orgs.create(&p.c.who, p.form.name.trim()).await?;
    done(&format!("/orgs/{}", org.name), "org-created")
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    l: Layout,
    members: usize,
    owners: usize,
    teams: usize,
    repositories: usize,
    restricted: bool,
    dry_run: bool,
    allowed: Vec<&'static str>,
    registry_access: bool,
    exceptions: usize,
    pending: usize,
}

pub async fn overview(axum::extract::State(st): St, c: Console, Path(org): Path<String>) -> UiResult {
    let members = st.orgs.members(&c.who, &org).await?;
    let s = st.iam.settings(&c.who, &org).await?;
    let r = &s.restricted_images;
    let allowed = std::iter::once("the organization's own images").chain(r.flags().allowed_labels()).collect();
    let pending = st.iam.exception_requests(&c.who, &org).await?.iter().filter(|r| r.status == "pending").count();
    let page = OverviewPage {
        l: Layout::org(&c, &st, &org, "Overview", "overview"),
        owners: members.iter().filter(|m| m.owner).count(),
        members: members.len(),
        teams: st.orgs.teams(&c.who, &org).await?.len(),
        repositories: st.orgs.repositories(&c.who, Some(&org)).await?.len(),
        restricted: r.enabled,
        dry_run: r.mode == policy::Mode::DryRun,
        allowed,
        registry_access: s.registry_access.enabled,
        exceptions: st.iam.exceptions(&c.who, &org).await?.len(),
        pending,
    };
    ok(&page)
}

pub struct TeamView {
    name: String,
    members: Vec<String>,
    permissions: Vec<(String, &'static str)>,
    removable: bool,
    /// The identity providers whose groups manage this team's members (empty: none).
    directory: String,
}

/// What the org delegated to the identity provider, as the members page shows it.
pub struct DirectoryView {
    oidc: bool,
    ldap: bool,
    owners: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
pub(super) struct MembersPage {
    pub(super) l: Layout,
    members: Vec<Member>,
    teams: Vec<TeamView>,
    directory: DirectoryView,
    /// The org's robots (owners see them).
    robots: Vec<super::robots::RobotView>,
    /// A robot just made: its name and its token, shown this once.
    pub(super) created: Option<(String, String)>,
}

pub async fn members(
    axum::extract::State(st): St,
    c: Console,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> UiResult {
    let mut page = members_page(&st, &c, &org).await?;
    page.l = page.l.with_notice(q.done.as_deref());
    ok(&page)
}

/// The members page of `org` as `c` sees it.
pub(super) async fn members_page(st: &crate::AppState, c: &Console, org: &str) -> Result<MembersPage, Error> {
    let org = org.to_owned();
    let members = st.orgs.members(&c.who, &org).await?;
    let delegation = st.iam.settings(&c.who, &org).await?.directory;
    let mut teams = Vec::new();
    for t in st.orgs.teams(&c.who, &org).await? {
        let directory: Vec<&str> = delegation
            .providers
            .iter()
            .filter(|p| delegation.allows(**p, &t.name))
            .map(|p| if *p == policy::Provider::Oidc { "OIDC" } else { "LDAP" })
            .collect();
        let directory = directory.join(" and ");
        let members = st.orgs.team_members(&c.who, &org, &t.name).await?.into_iter().map(|u| u.username).collect();
        let permissions = st
            .orgs
            .team_permissions(&c.who, &org, &t.name)
            .await?
            .into_iter()
            .map(|p| (p.repo, p.permission.as_str()))
            .collect();
        teams.push(TeamView { removable: t.name != OWNERS_TEAM, name: t.name, members, permissions, directory });
    }
    let has = |p| delegation.providers.contains(&p);
    let directory = DirectoryView {
        oidc: has(policy::Provider::Oidc),
        ldap: has(policy::Provider::Ldap),
        owners: delegation.owners,
    };
    let l = Layout::org(c, st, &org, "Members and teams", "members");
    let robots = if l.owner { super::robots::views(&st.robots.list(&c.who, &org).await?) } else { Vec::new() };
    Ok(MembersPage { l, members, teams, directory, robots, created: None })
}

#[derive(Deserialize)]
pub struct DirectoryForm {
    #[serde(default)]
    oidc: Option<String>,
    #[serde(default)]
    ldap: Option<String>,
    #[serde(default)]
    owners: Option<String>,
}

/// Saves what the org delegates to the identity provider's groups (owners only).
pub async fn set_directory(
    axum::extract::State(st): St,
    Path(org): Path<String>,
    p: Posted<DirectoryForm>,
) -> UiResult {
    let f = &p.form;
    let providers: Vec<&str> = [(f.oidc.is_some(), "oidc"), (f.ldap.is_some(), "ldap")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| k)
        .collect();
    let changes = serde_json::json!({ "directory": { "providers": providers, "owners": f.owners.is_some() } });
    st.iam.set_settings(&p.c.who, &org, &changes).await?;
    done(&format!("/orgs/{org}/members"), "directory-saved")
}

#[derive(Deserialize)]
pub struct NameForm {
    name: String,
}

pub async fn create_team(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<NameForm>) -> UiResult {
    st.orgs.create_team(&p.c.who, &org, p.form.name.trim()).await?;
    done(&format!("/orgs/{org}/members"), "team-created")
}

pub async fn delete_team(
    axum::extract::State(st): St,
    Path((org, team)): Path<(String, String)>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    st.orgs.delete_team(&p.c.who, &org, &team).await?;
    done(&format!("/orgs/{org}/members"), "team-deleted")
}

#[derive(Deserialize)]
pub struct MemberForm {
    username: String,
}

pub async fn add_member(
    axum::extract::State(st): St,
    Path((org, team)): Path<(String, String)>,
    p: Posted<MemberForm>,
) -> UiResult {
    st.orgs.add_member(&p.c.who, &org, &team, p.form.username.trim()).await?;
    done(&format!("/orgs/{org}/members"), "member-added")
}

pub async fn remove_member(
    axum::extract::State(st): St,
    Path((org, team, user)): Path<(String, String, String)>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    st.orgs.remove_member(&p.c.who, &org, &team, &user).await?;
    done(&format!("/orgs/{org}/members"), "member-removed")
}

#[derive(Deserialize)]
pub struct PermissionForm {
    repository: String,
    permission: String,
}

pub async fn set_permission(
    axum::extract::State(st): St,
    Path((org, team)): Path<(String, String)>,
    p: Posted<PermissionForm>,
) -> UiResult {
    let perm = match p.form.permission.as_str() {
        "none" => None,
        s => Some(Permission::parse(s).ok_or_else(|| {
            portcullis_core::Error::Invalid(format!("unknown permission {s:?}; use read, write, admin or none"))
        })?),
    };
    st.orgs.set_permission(&p.c.who, &org, &team, p.form.repository.trim(), perm).await?;
    done(&format!("/orgs/{org}/members"), "permission-set")
}

pub struct TagView {
    tag: String,
    digest: String,
    short: String,
    kind: String,
    size: String,
}

pub struct RepoView {
    name: String,
    visibility: &'static str,
    /// The viewer may make it public or private (admin permission on it).
    admin: bool,
    tags: Vec<TagView>,
}

#[derive(Template)]
#[template(path = "repositories.html")]
struct ReposPage {
    l: Layout,
    registry: String,
    repos: Vec<RepoView>,
}

pub async fn repositories(
    axum::extract::State(st): St,
    c: Console,
    headers: axum::http::HeaderMap,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> UiResult {
    st.orgs.visible(&c.who, &org).await?;
    let mut repos = Vec::new();
    for r in st.orgs.repositories(&c.who, Some(&org)).await? {
        let admin = st.orgs.may_delete(&c.who, &r.name);
        let tags = st
            .orgs
            .tags(&c.who, &r.name)
            .await?
            .into_iter()
            .map(|t| TagView {
                short: format::short_digest(&t.digest),
                kind: if t.size.is_none() && t.platforms > 0 {
                    format!("index, {} platforms", t.platforms)
                } else {
                    "image".into()
                },
                size: t.size.map(format::size).unwrap_or_else(|| "—".into()),
                tag: t.tag,
                digest: t.digest,
            })
            .collect();
        repos.push(RepoView { name: r.name, visibility: r.visibility.as_str(), admin, tags });
    }
    let registry = super::registry_host(&st, &headers);
    let l = Layout::org(&c, &st, &org, "Repositories", "repositories").with_notice(q.done.as_deref());
    ok(&ReposPage { l, registry, repos })
}

#[derive(Deserialize)]
pub struct VisibilityForm {
    repository: String,
    visibility: String,
}

/// Makes a repository public or private (admins of it: the org's owners, teams with admin).
pub async fn set_visibility(
    axum::extract::State(st): St,
    Path(org): Path<String>,
    p: Posted<VisibilityForm>,
) -> UiResult {
    let v = Visibility::parse(&p.form.visibility)
        .ok_or_else(|| Error::Invalid(format!("unknown visibility {:?}; use public or private", p.form.visibility)))?;
    if p.form.repository.split('/').next() != Some(org.as_str()) {
        return Err(Error::NotFound(format!("no repository {} in {org}", p.form.repository)).into());
    }
    st.iam.set_visibility(&p.c.who, &p.form.repository, v).await?;
    done(&format!("/orgs/{org}/repositories"), "visibility-set")
}
