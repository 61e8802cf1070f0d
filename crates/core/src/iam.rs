//! Image Access Management as a service: keeps the policy snapshot (every org's settings and
//! exceptions, the publisher catalog) in memory, swapped whole after each change so that the
//! very next request is decided on the current settings; decides pulls; and manages settings
//! and exceptions with their rules (members read, owners change).

use std::sync::{Arc, RwLock};

use oci::source::{canonical_registry, looks_like_host};
use policy::{Badge, Catalog, Exception, Image, Settings};
use serde::{Deserialize, Serialize};

use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::model::{AccountSource, HubBadgeRow, OrgSettingsRow, TeamSettingsRow};
use crate::orgs::Orgs;
use crate::ports::MetaStore;

/// The publisher seed shipped in `data/publishers.json`.
pub fn builtin_catalog() -> Catalog {
    #[derive(Deserialize)]
    struct Seed {
        verified_publisher: Vec<String>,
        open_source: Vec<String>,
    }
    let mut c = Catalog::default();
    if let Ok(seed) = serde_json::from_str::<Seed>(include_str!("../../../data/publishers.json")) {
        c.badges.extend(seed.verified_publisher.into_iter().map(|n| (n, Badge::VerifiedPublisher)));
        c.badges.extend(seed.open_source.into_iter().map(|n| (n, Badge::OpenSource)));
    }
    c
}

/// The impact of a proposed settings change on the org's recent pulls.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// Pulls of the last 30 days looked at.
    pub pulls_considered: usize,
    /// Of those, pulls that were denied when they happened (not counted below).
    pub already_denied: usize,
    /// Served pulls the change would deny that the settings in force allow, by image and user.
    pub would_deny: Vec<ImpactRow>,
    /// The settings the change leads to.
    pub proposed: Settings,
}

/// Pulls of one image by one user that a change would deny.
#[derive(Debug, Clone, Serialize)]
pub struct ImpactRow {
    pub image: String,
    pub user: String,
    pub pulls: u64,
    pub message: String,
}

/// `current` with `changes` applied, as a JSON merge patch (RFC 7396): a section or field the
/// body names replaces the current one (objects are merged member by member, lists replaced
/// whole, `null` resets to the default); everything the body does not name stays as it is, so
/// a body with only `restricted_images` (Docker Hub's shape) never resets Registry Access
/// Management. Anything but a JSON object is refused and changes nothing.
pub fn merge_settings(current: &Settings, changes: &serde_json::Value) -> Result<Settings> {
    use serde_json::Value;
    /// Merges `patch` into `into`; a section (an object now) takes only an object.
    fn merge(into: &mut Value, patch: &Value, at: &str) -> Result<()> {
        match (into, patch) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(k);
                    } else {
                        merge(a.entry(k.clone()).or_insert(Value::Null), v, k)?;
                    }
                }
                Ok(())
            }
            (Value::Object(_), _) => Err(Error::Invalid(format!("{at} must be a JSON object"))),
            (into, patch) => {
                *into = patch.clone();
                Ok(())
            }
        }
    }
    let mut v = serde_json::to_value(current).map_err(|e| Error::storage_from("", e))?;
    merge(&mut v, changes, "the settings (such as {\"restricted_images\": {\"enabled\": true}})")?;
    serde_json::from_value(v).map_err(|e| Error::Invalid(format!("invalid settings: {e}")))
}

/// Settings in canonical form (registries canonical, sorted, unique), or why they are invalid.
fn checked(mut s: Settings) -> Result<Settings> {
    let ra = &mut s.registry_access;
    if ra.allowed_registries.len() > policy::MAX_ALLOWED_REGISTRIES {
        return Err(Error::Invalid(format!("at most {} allowed registries", policy::MAX_ALLOWED_REGISTRIES)));
    }
    for r in ra.allowed_registries.iter_mut() {
        *r = canonical_registry(r.trim());
        if !oci::name::is_valid_host(r) {
            return Err(Error::Invalid(format!("{r:?} is not a registry host")));
        }
    }
    ra.allowed_registries.sort();
    ra.allowed_registries.dedup();
    for n in &s.docker_hub_namespaces {
        if n.contains('.') || !oci::name::is_valid_component(n) {
            return Err(Error::Invalid(format!("{n:?} is not a Docker Hub namespace")));
        }
    }
    crate::signatures::check_rules(&mut s.signatures.rules, canonical_pattern)?;
    Ok(s)
}

/// A new exception as given by an owner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewException {
    pub pattern: String,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    pub reason: String,
}

pub struct Iam {
    pub(crate) audit: Arc<crate::audit::Audit>,
    /// The whole metadata port: policy administration reads and writes six of its capabilities
    /// (policy, orgs, identity, content, sessions, audit), so naming each would only add fields.
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) identity: Arc<Identity>,
    pub(crate) orgs: Arc<Orgs>,
    catalog: Catalog,
    snapshot: RwLock<Arc<policy::Snapshot>>,
    pub(crate) clock: Arc<dyn Clock>,
    sso_available: bool,
    /// The trusted workload token issuers (those added at run time reloaded with the policy).
    pub(crate) workload_verifier: Option<Arc<dyn crate::ports::WorkloadVerifier>>,
    /// Docker Hub badge lookups (`badges.rs`).
    pub(crate) hub: crate::badges::HubBadges,
    /// Signatures verified at pulls (`signatures`): the gate's memory, and the preview's.
    pub(crate) signatures: crate::signatures::Verified,
}

/// Canonical form of an exception pattern: registry aliases folded, `library/` added to
/// one-part Docker Hub names, hosted namespaces kept; `/*` allowed only at the end.
fn canonical_pattern(p: &str) -> Result<String> {
    let bad = || {
        Error::Invalid(format!(
            "invalid repository pattern {p:?}: use docker.io/owner/app, docker.io/owner/* or ghcr.io/owner/app"
        ))
    };
    let (body, star) = match p.strip_suffix("/*") {
        Some(b) => (b, true),
        None => (p, false),
    };
    if body.is_empty() || body.contains('*') {
        return Err(bad());
    }
    let (first, rest) = body.split_once('/').unwrap_or((body, ""));
    let canonical = if looks_like_host(first) {
        let host = canonical_registry(first);
        if rest.is_empty() {
            return Err(bad());
        }
        let rest = if host == oci::source::DOCKER_HUB && !rest.contains('/') && !star {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        };
        format!("{host}/{rest}")
    } else {
        body.to_owned()
    };
    canonical.parse::<oci::RepoName>().map_err(|_| bad())?;
    Ok(if star { format!("{canonical}/*") } else { canonical })
}

/// What `Iam` is built with besides its collaborators.
#[derive(Default)]
pub struct IamOptions {
    /// The publisher catalog shipped with the binary.
    pub catalog: Catalog,
    /// Whether an identity provider is configured, so that an org may enforce single sign-on.
    pub sso_available: bool,
    /// Docker Hub badge lookups (`badges.rs`): who is asked, how, and where it is counted.
    pub badge_lookup: Option<(Arc<dyn crate::ports::BadgeLookup>, crate::badges::HubLookupConfig, Arc<Metrics>)>,
    /// The trusted workload token issuers, which workload rules refer to.
    pub workload_verifier: Option<Arc<dyn crate::ports::WorkloadVerifier>>,
}

impl Iam {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        identity: Arc<Identity>,
        orgs: Arc<Orgs>,
        audit: Arc<crate::audit::Audit>,
        options: IamOptions,
    ) -> Iam {
        Iam {
            audit,
            meta,
            clock: identity.clock().clone(),
            identity,
            orgs,
            catalog: options.catalog,
            snapshot: RwLock::default(),
            sso_available: options.sso_available,
            workload_verifier: options.workload_verifier,
            hub: crate::badges::HubBadges::new(options.badge_lookup),
            signatures: Default::default(),
        }
    }

    /// Turning `sso_enforced` on needs an identity provider, and an owner who would not lock
    /// themselves out: one signed in through it, or the instance administrator.
    async fn check_sso_change(&self, who: &Principal, org: &str, before: &Settings, after: &Settings) -> Result<()> {
        if !after.sso_enforced || before.sso_enforced {
            return Ok(());
        }
        if !self.sso_available {
            return Err(Error::Invalid(
                "sso_enforced needs single sign-on: configure [auth.oidc] (or [auth.ldap]) first".into(),
            ));
        }
        let local = self.meta.user_by_name(&who.username).await?.is_none_or(|u| u.source == AccountSource::Local);
        if local && !who.is_admin {
            return Err(Error::Invalid(format!(
                "enforcing single sign-on would lock you out of {org}: turn it on while signed in through the identity \
                 provider, or ask the instance administrator"
            )));
        }
        Ok(())
    }

    pub(crate) async fn record_change(&self, who: &Principal, org: &str, action: &str, detail: serde_json::Value) {
        self.audit.change(who, Some(org), action, detail).await;
    }

    /// Reloads settings and exceptions of every org.
    pub async fn refresh(&self) -> Result<()> {
        let mut snap = policy::Snapshot { catalog: self.catalog.clone(), ..Default::default() };
        for OrgSettingsRow { org, settings: json } in self.meta.all_org_settings().await? {
            let settings = serde_json::from_str::<Settings>(&json).unwrap_or_else(|e| {
                // Fail closed: unreadable settings restrict everything but the org's own images.
                tracing::error!(org, error = %e, "unreadable Image Access Management settings; restricting");
                Settings {
                    restricted_images: policy::RestrictedImages {
                        enabled: true,
                        allow_official_images: false,
                        allow_verified_publishers: false,
                        ..Default::default()
                    },
                    ..Default::default()
                }
            });
            snap.orgs.entry(org).or_default().settings = settings;
        }
        // The workload issuers added at run time (a document that no longer reads is skipped).
        if let Some(v) = &self.workload_verifier {
            let docs = self.meta.workload_issuers().await?;
            let added = docs
                .iter()
                .filter_map(|d| {
                    serde_json::from_str(d)
                        .inspect_err(|e| tracing::error!(error = %e, "an added workload issuer does not read"))
                        .ok()
                })
                .collect();
            v.set_added(added);
        }
        // Badges Docker Hub gave (still fresh), then the administrator's overrides, which win.
        let now = self.clock.now();
        for HubBadgeRow { namespace: ns, badge, expires_at: until } in self.meta.hub_badges().await? {
            if until <= now {
                continue;
            }
            match badge.as_deref() {
                Some("verified_publisher") => snap.catalog.badges.insert(ns.clone(), Badge::VerifiedPublisher),
                Some("open_source") => snap.catalog.badges.insert(ns.clone(), Badge::OpenSource),
                _ => None,
            };
            self.hub.remember(&ns, until);
        }
        for crate::model::PublisherOverrideRow { namespace: ns, badge } in self.meta.publisher_overrides().await? {
            match badge.as_str() {
                "verified_publisher" => snap.catalog.badges.insert(ns, Badge::VerifiedPublisher),
                "open_source" => snap.catalog.badges.insert(ns, Badge::OpenSource),
                _ => snap.catalog.badges.remove(&ns),
            };
        }
        for row in self.meta.all_exceptions().await? {
            snap.orgs.entry(row.org).or_default().exceptions.push(row.exception);
        }
        for TeamSettingsRow { org, team, settings: json } in self.meta.all_team_settings().await? {
            // An unreadable team rule widens nothing (fail closed).
            match serde_json::from_str::<policy::TeamSettings>(&json) {
                Ok(t) => {
                    snap.orgs.entry(org).or_default().teams.insert(team, t);
                }
                Err(e) => tracing::error!(org, team, error = %e, "unreadable team rule; ignored"),
            }
        }
        self.identity.set_sso_enforced(
            snap.orgs.iter().filter(|(_, p)| p.settings.sso_enforced).map(|(o, _)| o.clone()).collect(),
        );
        for p in snap.orgs.values_mut() {
            p.reindex();
        }
        if let Ok(mut g) = self.snapshot.write() {
            *g = Arc::new(snap);
        }
        Ok(())
    }

    /// The policy every request is decided on now.
    pub fn snapshot(&self) -> Arc<policy::Snapshot> {
        self.snapshot.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Resolves an image as a client would name it (`alpine`, `docker.io/someone/app:1`,
    /// `ghcr.io/o/a@sha256:...`, `acme/app`) into the policy's canonical image.
    pub fn image_of(&self, name: &str) -> Result<Image> {
        let (name, digest) = match name.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    d.parse::<oci::Digest>().map_err(|_| Error::Invalid(format!("invalid digest {d:?}")))?.to_string(),
                ),
            ),
            None => (name, None),
        };
        // Strip a tag (a `:` after the last `/`).
        let name = match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => n,
            _ => name,
        };
        let repo: oci::RepoName = name.parse().map_err(|_| Error::Invalid(format!("invalid image name {name:?}")))?;
        let dir = self.identity.directory().snapshot();
        let source = oci::source::resolve(&repo, None, None, |n| dir.namespace(n).is_some())
            .map_err(|e| Error::Invalid(e.message))?;
        Ok(match source {
            oci::source::Source::Hosted(n) => Image { registry: None, path: n.to_string(), digest },
            oci::source::Source::Upstream(u) => Image { registry: Some(u.registry), path: u.path.to_string(), digest },
        })
    }

    /// Which recent pulls (from the audit log of `org`) the proposed change would deny, by
    /// image and user, for the owner deciding whether to save it: pulls that were served
    /// (allowed, or allowed in a dry run) and that the settings in force still allow, so a
    /// change is shown what it denies itself, not what an earlier change denies already. Pulls
    /// that were denied are counted apart.
    pub async fn preview(&self, who: &Principal, org: &str, changes: &serde_json::Value) -> Result<Preview> {
        self.orgs.owned(who, org).await?;
        let proposed = self.changed_settings(org, changes)?;
        let mut policy = self.snapshot().orgs.get(org).cloned().unwrap_or_default();
        policy.settings = proposed;
        self.impact(org, policy).await
    }

    /// [`Iam::preview`] of a whole proposed policy of `org` (settings, team rules, exceptions).
    pub(crate) async fn impact(&self, org: &str, mut policy: policy::OrgPolicy) -> Result<Preview> {
        policy.reindex();
        let proposed = policy.settings.clone();
        let q = crate::model::AuditQuery {
            action: Some("pull".into()),
            since: Some(self.clock.now() - 30 * 86_400),
            limit: Some(1000),
            ..Default::default()
        };
        let pulls = self.meta.query_audit(Some(org), &q).await?;
        let current = self.snapshot();
        let mut snap = (*current).clone();
        snap.orgs.insert(org.to_owned(), policy);
        let dir = self.identity.directory().snapshot();
        let mut hits: std::collections::BTreeMap<(String, String), (u64, String)> = Default::default();
        let mut already_denied = 0;
        for p in &pulls {
            if p.decision == Some(crate::model::AuditDecision::Denied) {
                already_denied += 1;
                continue;
            }
            let (Some(name), Some((uid, _))) = (p.image.as_deref(), dir.user(&p.actor)) else { continue };
            let img = self.image_of(name).map(|mut i| {
                i.digest = p.digest.clone();
                i
            })?;
            let memberships = dir.memberships(uid);
            let refusal = |snap: &policy::Snapshot| {
                let d = policy::decide(&memberships, &img, snap, self.clock.now());
                if d.effect != policy::Effect::Allow && d.org.as_deref() == Some(org) {
                    Some(d.message)
                } else {
                    self.unverified(&memberships, &img, snap, org)
                }
            };
            // The change's impact: what it would deny that the settings in force allow.
            if let Some(message) = refusal(&snap).filter(|_| refusal(&current).is_none()) {
                let e = hits.entry((img.canonical(), p.actor.clone())).or_insert((0, message));
                e.0 += 1;
            }
        }
        let would_deny = hits
            .into_iter()
            .map(|((image, user), (pulls, message))| ImpactRow { image, user, pulls, message })
            .collect();
        Ok(Preview { pulls_considered: pulls.len(), already_denied, would_deny, proposed })
    }

    /// Why a signature rule of `org` would refuse a pull of `img`, unless its digest verified
    /// for the rule at a pull since this process started (the preview fetches nothing).
    fn unverified(
        &self,
        memberships: &[policy::Membership],
        img: &Image,
        snap: &policy::Snapshot,
        org: &str,
    ) -> Option<String> {
        let digest = img.digest.as_deref().and_then(|d| d.parse::<oci::Digest>().ok());
        let req = policy::required(memberships, img, snap).into_iter().filter(|r| r.org == org).find(|r| {
            !digest.as_ref().is_some_and(|d| self.signatures.contains(d, &crate::signatures::rule_key(r.rule)))
        })?;
        Some(format!(
            "Signature requirement: needs a signature by {} (signature rule {}: {}); not verified for {} at a pull yet",
            crate::signatures::keys::ids(&req.rule.keys),
            req.index,
            req.rule.images,
            img.digest.as_deref().unwrap_or("this pull")
        ))
    }

    /// The effective publisher catalog (seed plus overrides).
    pub fn publishers(&self) -> Vec<(String, Badge)> {
        let mut v: Vec<(String, Badge)> = self.snapshot().catalog.badges.iter().map(|(k, b)| (k.clone(), *b)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Overrides a Docker Hub namespace's badge (`verified_publisher`, `open_source`, `none`),
    /// or with `None` returns it to the seed. Instance administrator only.
    pub async fn set_publisher(&self, who: &Principal, namespace: &str, badge: Option<&str>) -> Result<()> {
        if !who.is_admin {
            return Err(Error::Denied("only the instance administrator may change the publisher catalog".into()));
        }
        if namespace.contains('.') || !oci::name::is_valid_component(namespace) {
            return Err(Error::Invalid(format!("{namespace:?} is not a Docker Hub namespace")));
        }
        if let Some(b) = badge
            && !matches!(b, "verified_publisher" | "open_source" | "none")
        {
            return Err(Error::Invalid(format!("unknown badge {b:?}; use verified_publisher, open_source or none")));
        }
        let changed = self.meta.set_publisher_override(namespace, badge, &who.username, self.clock.now()).await?;
        if badge.is_none() && !changed {
            return Err(Error::NotFound(format!("no override for {namespace}")));
        }
        self.refresh().await
    }

    /// The names of the trusted workload token issuers, which workload rules refer to.
    pub fn workload_issuers(&self) -> Vec<String> {
        self.workload_verifier.as_ref().map(|v| v.issuers()).unwrap_or_default()
    }

    /// The org's settings (any member may read them).
    pub async fn settings(&self, who: &Principal, org: &str) -> Result<Settings> {
        self.orgs.visible(who, org).await?;
        Ok(self.snapshot().orgs.get(org).map(|p| p.settings.clone()).unwrap_or_default())
    }

    /// The org's current settings with `changes` applied (see [`merge_settings`]), checked.
    fn changed_settings(&self, org: &str, changes: &serde_json::Value) -> Result<Settings> {
        let current = self.snapshot().orgs.get(org).map(|p| p.settings.clone()).unwrap_or_default();
        let s = checked(merge_settings(&current, changes)?)?;
        let rules = &s.workloads.rules;
        let issuers = self.workload_issuers();
        if rules.len() > crate::workloads::MAX_WORKLOAD_RULES {
            return Err(Error::Invalid(format!("at most {} workload rules", crate::workloads::MAX_WORKLOAD_RULES)));
        }
        for (i, r) in rules.iter().enumerate() {
            r.check().map_err(|e| Error::Invalid(format!("workload rule {}: {e}", i + 1)))?;
            // A rule saved before its issuer left the configuration does not block other changes.
            if !issuers.contains(&r.issuer) && !current.workloads.rules.contains(r) {
                return Err(Error::Invalid(format!(
                    "workload rule {}: no issuer named {:?} is trusted here ({}); the administrator lists them in \
                     auth.workload_issuers or adds them at /api/v1/workload-issuers",
                    i + 1,
                    r.issuer,
                    if issuers.is_empty() { "none is".to_owned() } else { issuers.join(", ") }
                )));
            }
        }
        Ok(s)
    }

    /// Changes the org's settings (owners only): the sections and fields `changes` names, the
    /// rest as they are. Applies to the next request.
    pub async fn set_settings(&self, who: &Principal, org: &str, changes: &serde_json::Value) -> Result<Settings> {
        let o = self.orgs.owned(who, org).await?;
        let s = self.changed_settings(org, changes)?;
        for (i, r) in s.workloads.rules.iter().enumerate() {
            for t in &r.teams {
                if self.meta.team(o.id, t).await?.is_none() {
                    return Err(Error::Invalid(format!("workload rule {}: {org} has no team {t:?}", i + 1)));
                }
            }
        }
        let s = self.store_settings(who, &o, s).await?;
        self.record_version(who, o.id, org, "settings changed").await?;
        Ok(s)
    }

    /// Checks and stores new settings of `o` (and audits them): the part of a change that a
    /// restore shares.
    pub(crate) async fn store_settings(&self, who: &Principal, o: &crate::model::Org, s: Settings) -> Result<Settings> {
        let org = o.name.as_str();
        let before = self.snapshot().orgs.get(org).map(|p| p.settings.clone()).unwrap_or_default();
        self.check_sso_change(who, org, &before, &s).await?;
        if s.disable_public_repositories && !before.disable_public_repositories {
            let public: Vec<String> = self
                .meta
                .list_repos()
                .await?
                .into_iter()
                .filter(|r| r.visibility == crate::model::Visibility::Public && r.name.split('/').next() == Some(org))
                .map(|r| r.name)
                .collect();
            if !public.is_empty() {
                return Err(Error::Conflict(format!(
                    "{org} has public repositories ({}); make them private before disabling public repositories",
                    public.join(", ")
                )));
            }
        }
        let json = serde_json::to_string(&s).map_err(|e| Error::storage_from("", e))?;
        self.meta.put_org_settings(o.id, &json, self.clock.now()).await?;
        self.refresh().await?;
        if s.directory != before.directory {
            let sso = crate::sso::Sso::new(self.meta.clone(), self.identity.clone(), self.audit.clone());
            sso.withdraw(o, &s.directory).await?;
        }
        if s.workloads != before.workloads {
            crate::workloads::withdraw(self.meta.as_ref(), &self.identity, o).await?;
        }
        if s.sso_enforced && !before.sso_enforced {
            // Console sessions of local members end now (registry tokens and access tokens are
            // refused at their next use by `Identity`'s check).
            let snap = self.identity.directory().snapshot();
            for u in self.meta.list_users().await? {
                if u.source == AccountSource::Local && !u.is_admin && snap.is_member(org, u.id) {
                    self.meta.delete_user_sessions(u.id).await?;
                }
            }
        }
        self.record_change(who, org, "settings.update", serde_json::json!({ "before": before, "after": s })).await;
        Ok(s)
    }

    /// Changes a repository's visibility (`Orgs::set_visibility`), refusing to make public a
    /// repository of an org that disables public repositories.
    pub async fn set_visibility(&self, who: &Principal, repo: &str, v: crate::model::Visibility) -> Result<()> {
        let ns = repo.split('/').next().unwrap_or_default();
        let disabled = self.snapshot().orgs.get(ns).is_some_and(|p| p.settings.disable_public_repositories);
        if v == crate::model::Visibility::Public && disabled {
            // Said only to who may change the repository at all.
            self.orgs.admin_of_repo(who, repo).await?;
            return Err(Error::Conflict(format!(
                "{ns} disables public repositories: {repo} stays private (an owner can change the org's settings)"
            )));
        }
        self.orgs.set_visibility(who, repo, v).await
    }

    pub async fn exceptions(&self, who: &Principal, org: &str) -> Result<Vec<Exception>> {
        self.orgs.visible(who, org).await?;
        Ok(self.snapshot().orgs.get(org).map(|p| p.exceptions.clone()).unwrap_or_default())
    }

    pub async fn add_exception(&self, who: &Principal, org: &str, n: NewException) -> Result<Exception> {
        let o = self.orgs.owned(who, org).await?;
        let pattern = canonical_pattern(n.pattern.trim())?;
        if let Some(d) = &n.digest {
            d.parse::<oci::Digest>().map_err(|_| Error::Invalid(format!("invalid digest {d:?}")))?;
        }
        if let Some(t) = &n.team
            && self.meta.team(o.id, t).await?.is_none()
        {
            return Err(Error::Invalid(format!("no team {t} in {org}")));
        }
        let now = self.clock.now();
        if n.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Invalid("expires_at must be in the future".into()));
        }
        if n.reason.trim().is_empty() {
            return Err(Error::Invalid("give a reason for the exception".into()));
        }
        let mut e = Exception {
            id: 0,
            pattern,
            digest: n.digest,
            team: n.team,
            expires_at: n.expires_at,
            reason: n.reason.trim().to_owned(),
            created_by: who.username.clone(),
            created_at: now,
        };
        e.id = self.meta.create_exception(o.id, &e).await?;
        self.refresh().await?;
        self.record_change(who, org, "exception.create", serde_json::json!(e)).await;
        self.record_version(who, o.id, org, &format!("exception added: {}", e.pattern)).await?;
        Ok(e)
    }

    pub async fn delete_exception(&self, who: &Principal, org: &str, id: i64) -> Result<()> {
        let o = self.orgs.owned(who, org).await?;
        // What the exception was, for the audit entry and the policy history (the snapshot
        // holds every org's exceptions).
        let gone = self.snapshot().orgs.get(org).and_then(|p| p.exceptions.iter().find(|e| e.id == id).cloned());
        if !self.meta.delete_exception(o.id, id).await? {
            return Err(Error::NotFound(format!("no exception {id} in {org}")));
        }
        self.refresh().await?;
        let (detail, summary) = match &gone {
            Some(e) => (serde_json::json!(e), format!("exception {id} deleted: {}", e.pattern)),
            None => (serde_json::json!({ "id": id }), format!("exception {id} deleted")),
        };
        self.record_change(who, org, "exception.delete", detail).await;
        self.record_version(who, o.id, org, &summary).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_canonical() {
        assert_eq!(canonical_pattern("docker.io/someone/app").unwrap(), "docker.io/someone/app");
        assert_eq!(canonical_pattern("index.docker.io/someone/*").unwrap(), "docker.io/someone/*");
        assert_eq!(canonical_pattern("docker.io/alpine").unwrap(), "docker.io/library/alpine");
        assert_eq!(canonical_pattern("ghcr.io/o/a").unwrap(), "ghcr.io/o/a");
        assert_eq!(canonical_pattern("acme/app").unwrap(), "acme/app");
        for bad in ["", "*", "docker.io/*/x", "docker.io", "Docker.io/A", "docker.io/a b", "x/**"] {
            assert!(canonical_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_change_names_what_it_changes() {
        let mut current = Settings::default();
        current.registry_access.enabled = true;
        current.docker_hub_namespaces = vec!["acmecorp".into()];
        current.restricted_images.allow_official_images = false;
        let s = merge_settings(&current, &serde_json::json!({"restricted_images": {"enabled": true}})).unwrap();
        assert!(s.restricted_images.enabled);
        assert!(!s.restricted_images.allow_official_images, "a field not named stays");
        assert!(s.registry_access.enabled, "a section not named stays");
        assert_eq!(s.docker_hub_namespaces, ["acmecorp"]);
        let s = merge_settings(&current, &serde_json::json!({"docker_hub_namespaces": [], "registry_access": null}))
            .unwrap();
        assert!(s.docker_hub_namespaces.is_empty() && !s.registry_access.enabled, "lists replaced, null resets");
        for bad in [serde_json::json!([]), serde_json::json!(null), serde_json::json!("x"), serde_json::json!(1)] {
            assert!(merge_settings(&current, &bad).is_err(), "{bad}");
        }
        assert!(merge_settings(&current, &serde_json::json!({"restricted_images": {"enabld": true}})).is_err());
        assert!(merge_settings(&current, &serde_json::json!({"restricted_images": []})).is_err());
    }

    #[test]
    fn seed_catalog_loads() {
        let c = builtin_catalog();
        assert_eq!(c.badges.get("bitnami"), Some(&Badge::VerifiedPublisher));
        assert!(c.badges.len() > 10);
    }
}
