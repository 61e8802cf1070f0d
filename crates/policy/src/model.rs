//! The vocabulary of the policy: images, categories, badges, settings, exceptions, subjects.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub const DOCKER_HUB: &str = "docker.io";

/// A canonical image: `registry` is `None` for images hosted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub registry: Option<String>,
    /// Repository path (`library/alpine`, `acme/app`).
    pub path: String,
    pub digest: Option<String>,
}

impl Image {
    pub fn namespace(&self) -> &str {
        self.path.split('/').next().unwrap_or(&self.path)
    }

    /// `docker.io/library/alpine`, or `acme/app` for hosted images.
    pub fn canonical(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

/// The one category of an image, as seen by one organization. Serialized as its key
/// (`official`, `community`, ...): the org and the registry host are beside it wherever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Category {
    Organization(String),
    Official,
    VerifiedPublisher,
    SponsoredOss,
    Community,
    OtherRegistry(String),
}

impl Category {
    pub fn label(&self) -> String {
        match self {
            Category::Organization(o) => format!("organization image of {o}"),
            Category::Official => "Docker Official Image".into(),
            Category::VerifiedPublisher => "Verified Publisher image".into(),
            Category::SponsoredOss => "Sponsored OSS image".into(),
            Category::Community => "community image".into(),
            Category::OtherRegistry(h) => format!("image from registry {h}"),
        }
    }

    pub fn key(&self) -> &'static str {
        self.name().key
    }
}

/// What a person calls a category, one row per category: the key (settings, audit, API), the
/// name in lists ("Docker Official Images") and the short name of legends and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryName {
    pub key: &'static str,
    pub label: &'static str,
    pub short: &'static str,
}

/// A category an organization switches on or off (Docker Hub's settings and ours): the table the
/// console's forms, the overview and team rules iterate, so that a new category is a new row
/// here (and a field of [`TeamCategories`]).
#[derive(Debug, Clone, Copy)]
pub struct Switch {
    pub name: CategoryName,
    /// The settings flag (`restricted_images.<flag>`, a team rule's too).
    pub flag: &'static str,
    /// The console form's field.
    pub field: &'static str,
    /// What the console says of it.
    pub hint: &'static str,
    pub get: fn(&TeamCategories) -> bool,
    pub set: fn(&mut TeamCategories, bool),
}

impl Category {
    /// Every category, in the order people see them.
    pub const ALL: [CategoryName; 6] = [
        CategoryName { key: "organization", label: "Organization images", short: "Organization" },
        CategoryName { key: "official", label: "Docker Official Images", short: "Docker Official" },
        CategoryName { key: "verified_publisher", label: "Verified Publisher images", short: "Verified Publisher" },
        CategoryName { key: "sponsored_oss", label: "Docker-Sponsored Open Source images", short: "Sponsored OSS" },
        CategoryName { key: "community", label: "Community images", short: "Community" },
        CategoryName { key: "other_registry", label: "Images from other registries", short: "Other registry" },
    ];

    /// The categories an org allows or not, with their settings flags.
    pub const SWITCHES: [Switch; 4] = [
        Switch {
            name: Category::ALL[1],
            flag: "allow_official_images",
            field: "allow_official",
            hint: "curated images maintained by Docker, such as <code>alpine</code> and <code>nginx</code>.",
            get: |t| t.allow_official_images,
            set: |t, on| t.allow_official_images = on,
        },
        Switch {
            name: Category::ALL[2],
            flag: "allow_verified_publishers",
            field: "allow_verified",
            hint: "from commercial publishers Docker has verified.",
            get: |t| t.allow_verified_publishers,
            set: |t, on| t.allow_verified_publishers = on,
        },
        Switch {
            name: Category::ALL[3],
            flag: "allow_sponsored_oss",
            field: "allow_sponsored",
            hint: "from open-source projects Docker sponsors. Docker counts them as community images, so allowing \
                   community images allows them too; this allows them without community images.",
            get: |t| t.allow_sponsored_oss,
            set: |t, on| t.allow_sponsored_oss = on,
        },
        Switch {
            name: Category::ALL[4],
            flag: "allow_community",
            field: "allow_community",
            hint: "from anyone else on Docker Hub; nobody has vetted them.",
            get: |t| t.allow_community,
            set: |t, on| t.allow_community = on,
        },
    ];

    /// The name of a category key (`None` for a key that is none).
    pub fn name_of(key: &str) -> Option<CategoryName> {
        Category::ALL.into_iter().find(|n| n.key == key)
    }
}

impl Serialize for CategoryName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key)
    }
}

/// A key that names none of a closed set's values (a category, a rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey(pub String);

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown key {:?}", self.0)
    }
}

impl std::error::Error for UnknownKey {}

impl std::str::FromStr for CategoryName {
    type Err = UnknownKey;

    fn from_str(s: &str) -> Result<CategoryName, UnknownKey> {
        Category::name_of(s).ok_or_else(|| UnknownKey(s.to_owned()))
    }
}

impl Category {
    /// The category's row of [`Category::ALL`].
    pub fn name(&self) -> CategoryName {
        Category::ALL[match self {
            Category::Organization(_) => 0,
            Category::Official => 1,
            Category::VerifiedPublisher => 2,
            Category::SponsoredOss => 3,
            Category::Community => 4,
            Category::OtherRegistry(_) => 5,
        }]
    }
}

impl Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

/// A Docker Hub publisher badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Badge {
    VerifiedPublisher,
    OpenSource,
}

/// Docker Hub namespace → badge. Unknown namespaces have none (community).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub badges: HashMap<String, Badge>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

/// Docker Hub's `restricted_images` object, extended with our fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestrictedImages {
    pub enabled: bool,
    pub allow_official_images: bool,
    pub allow_verified_publishers: bool,
    pub allow_sponsored_oss: bool,
    pub allow_community: bool,
    pub mode: Mode,
}

impl Default for RestrictedImages {
    /// Off, as on Docker Hub; when turned on, official and verified images stay allowed unless
    /// the owner says otherwise (Docker Hub's defaults).
    fn default() -> Self {
        RestrictedImages {
            enabled: false,
            allow_official_images: true,
            allow_verified_publishers: true,
            allow_sponsored_oss: false,
            allow_community: false,
            mode: Mode::Enforce,
        }
    }
}

impl RestrictedImages {
    /// The category switches as a team rule's (the same flags).
    pub fn flags(&self) -> TeamCategories {
        TeamCategories {
            allow_official_images: self.allow_official_images,
            allow_verified_publishers: self.allow_verified_publishers,
            allow_sponsored_oss: self.allow_sponsored_oss,
            allow_community: self.allow_community,
        }
    }

    /// Sets the category switches from `f`.
    pub fn set_flags(&mut self, f: &TeamCategories) {
        self.allow_official_images = f.allow_official_images;
        self.allow_verified_publishers = f.allow_verified_publishers;
        self.allow_sponsored_oss = f.allow_sponsored_oss;
        self.allow_community = f.allow_community;
    }
}

impl TeamCategories {
    /// The list names of the categories these flags allow, in the table's order.
    pub fn allowed_labels(&self) -> Vec<&'static str> {
        Category::SWITCHES.iter().filter(|s| (s.get)(self)).map(|s| s.name.label).collect()
    }
}

/// Registry Access Management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryAccess {
    pub enabled: bool,
    pub allowed_registries: Vec<String>,
}

impl Default for RegistryAccess {
    fn default() -> Self {
        RegistryAccess { enabled: false, allowed_registries: vec![DOCKER_HUB.into()] }
    }
}

/// Maximum entries of the registry allowlist.
pub const MAX_ALLOWED_REGISTRIES: usize = 100;

/// An organization's settings (`/api/v1/orgs/{org}/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub restricted_images: RestrictedImages,
    pub registry_access: RegistryAccess,
    /// Docker Hub namespaces the organization declares as its own (category Organization).
    pub docker_hub_namespaces: Vec<String>,
    /// Members sign in only through the identity provider: their local passwords and the
    /// tokens of their local accounts are refused (the instance administrator excepted).
    pub sso_enforced: bool,
    /// Namespace access control: members may not push to their personal namespaces here (a
    /// member of any org that sets it; the instance administrator excepted).
    pub restrict_personal_namespaces: bool,
    /// The org's repositories cannot be made public.
    pub disable_public_repositories: bool,
    /// Signature requirements (`signatures.rs`).
    pub signatures: crate::signatures::Signatures,
    /// What the organization delegates to the identity provider's groups (off by default).
    pub directory: Delegation,
    /// Which workload identities (service accounts, CI jobs) are members of which teams.
    pub workloads: crate::workloads::Workloads,
}

/// An identity provider whose groups an organization may trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenID Connect sign-in (`[auth.oidc]`): the ID token's groups claim.
    Oidc,
    /// LDAP / Active Directory (`[auth.ldap]`): the groups `group_filter` finds.
    Ldap,
}

impl Provider {
    /// The account source (`users.source`) of the provider's accounts.
    pub fn key(self) -> &'static str {
        match self {
            Provider::Oidc => "oidc",
            Provider::Ldap => "ldap",
        }
    }

    pub fn from_key(s: &str) -> Option<Provider> {
        match s {
            "oidc" => Some(Provider::Oidc),
            "ldap" => Some(Provider::Ldap),
            _ => None,
        }
    }
}

/// Group → team delegation (Docker Hub binds an SSO connection to the organizations that set it
/// up): a group `<org>:<team>` from a provider listed here makes its user a member of that team;
/// from any other provider, or for an org that lists none, it changes nothing. Membership of
/// `owners` through the directory needs `owners` as well.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delegation {
    /// The providers whose groups manage this org's teams.
    pub providers: Vec<Provider>,
    /// Whether the group `<org>:owners` (from a delegated provider) makes owners.
    pub owners: bool,
}

impl Delegation {
    /// Whether `provider` (an account source) may make members of `team`.
    pub fn allows(&self, provider: Provider, team: &str) -> bool {
        self.providers.contains(&provider) && (team != "owners" || self.owners)
    }
}

/// A repository allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    pub id: i64,
    /// Canonical repository (`docker.io/someone/app`) or prefix pattern (`docker.io/someone/*`).
    pub pattern: String,
    pub digest: Option<String>,
    pub team: Option<String>,
    pub expires_at: Option<i64>,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
}

impl Exception {
    /// Anchored match on the canonical name; `*` only as the whole last component.
    pub fn matches(&self, image: &Image, teams: &[String], now: i64) -> bool {
        self.matches_name(&image.canonical(), image.digest.as_deref(), teams, now)
    }

    /// [`Exception::matches`] with the canonical name computed once by the caller.
    pub fn matches_name(&self, name: &str, digest: Option<&str>, teams: &[String], now: i64) -> bool {
        if self.expires_at.is_some_and(|e| e <= now) {
            return false;
        }
        if let Some(t) = &self.team
            && !teams.contains(t)
        {
            return false;
        }
        if let Some(d) = &self.digest
            && digest != Some(d.as_str())
        {
            return false;
        }
        pattern_matches(&self.pattern, name)
    }
}

/// Anchored match of a canonical name against a pattern: the name itself, or `prefix/*` for
/// any name below `prefix` (`*` only as the whole last component).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
        None => name == pattern,
    }
}

/// A team's own categories (`/api/v1/orgs/{org}/teams/{team}/settings`): what its members may
/// pull beyond what the org allows. A team rule only widens, never narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamCategories {
    pub allow_official_images: bool,
    pub allow_verified_publishers: bool,
    pub allow_sponsored_oss: bool,
    pub allow_community: bool,
}

/// A team's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamSettings {
    pub restricted_images: TeamCategories,
}

impl TeamSettings {
    /// True when the team allows nothing beyond the org (nothing to keep).
    pub fn is_empty(&self) -> bool {
        *self == TeamSettings::default()
    }
}

/// One organization's policy inputs, with its exceptions indexed by pattern so that a decision
/// looks up the image's name and its `prefix/*` forms instead of scanning every exception.
#[derive(Debug, Clone, Default)]
pub struct OrgPolicy {
    pub settings: Settings,
    pub exceptions: Vec<Exception>,
    /// Team name → its rules (teams without any are absent).
    pub teams: HashMap<String, TeamSettings>,
    by_pattern: HashMap<String, Vec<usize>>,
}

impl OrgPolicy {
    pub fn new(settings: Settings, exceptions: Vec<Exception>) -> OrgPolicy {
        let mut p = OrgPolicy { settings, exceptions, teams: HashMap::new(), by_pattern: HashMap::new() };
        p.reindex();
        p
    }

    /// Rebuilds the index after `exceptions` changed.
    pub fn reindex(&mut self) {
        self.by_pattern.clear();
        for (i, e) in self.exceptions.iter().enumerate() {
            self.by_pattern.entry(e.pattern.clone()).or_default().push(i);
        }
    }

    /// The exception allowing `name` (canonical) for a member of `teams`, if any.
    pub fn exception_for(&self, name: &str, digest: Option<&str>, teams: &[String], now: i64) -> Option<&Exception> {
        let exact = self.by_pattern.get(name).into_iter().flatten();
        let prefixes =
            name.match_indices('/').filter_map(|(i, _)| self.by_pattern.get(&format!("{}/*", &name[..i]))).flatten();
        exact.chain(prefixes).map(|i| &self.exceptions[*i]).find(|e| e.matches_name(name, digest, teams, now))
    }
}

/// The subject's relation to one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub org: String,
    pub owner: bool,
    pub teams: Vec<String>,
}

/// Everything a decision reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub orgs: HashMap<String, OrgPolicy>,
    pub catalog: Catalog,
}
