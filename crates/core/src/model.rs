//! Domain records shared by services and stores.

use serde::{Deserialize, Serialize};

/// A person or robot account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
    /// Disabled by an administrator or the directory: no sign-in, tokens refused.
    pub disabled: bool,
    /// Where the account comes from.
    pub source: AccountSource,
    /// The provider's stable id of the account (issuer and subject, an LDAP entry's DN); for a
    /// SCIM account, the provider and subject it was bound to at its first sign-in.
    #[serde(skip)]
    pub external_id: Option<String>,
}

/// What an access token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenScope {
    #[serde(rename = "read")]
    Read,
    #[serde(rename = "read-write")]
    ReadWrite,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::ReadWrite => "read-write",
        }
    }

    pub fn parse(s: &str) -> Option<TokenScope> {
        match s {
            "read" => Some(TokenScope::Read),
            "read-write" => Some(TokenScope::ReadWrite),
            _ => None,
        }
    }
}

/// Which kind of credential an access token is (`access_tokens.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A personal access token, made by its owner.
    Pat,
    /// A refresh token `/token` issued to a client that signed in (`docker login`).
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Pat => "pat",
            TokenKind::Refresh => "refresh",
        }
    }
}

impl TryFrom<String> for TokenKind {
    type Error = UnknownValue;

    fn try_from(s: String) -> Result<TokenKind, UnknownValue> {
        one_of(&[TokenKind::Pat, TokenKind::Refresh], TokenKind::as_str, "token kind", s)
    }
}

/// A personal access token or a refresh token, stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    pub id: i64,
    #[serde(skip)]
    pub user_id: i64,
    pub label: String,
    pub kind: TokenKind,
    pub scope: TokenScope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub id: i64,
    #[serde(skip)]
    pub org_id: i64,
    pub name: String,
    /// Members come only from the identity provider's groups; hand edits are refused.
    pub directory_managed: bool,
}

/// The name of the team whose members own an organization.
pub const OWNERS_TEAM: &str = "owners";

/// A team's permission on an organization repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        match s {
            "read" => Some(Permission::Read),
            "write" => Some(Permission::Write),
            "admin" => Some(Permission::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

/// A hosted repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repo {
    pub id: i64,
    pub name: String,
    pub visibility: Visibility,
    pub created_at: i64,
}

/// A stored manifest of a repository; `content` is the exact bytes pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub annotations: Option<String>,
}

/// One entry of a referrers listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// An unfinished blob upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repo: String,
    pub size: u64,
    pub started_at: i64,
    /// The running hash after `size` bytes (algorithm byte + serialized state), when saved.
    pub hash_state: Option<Vec<u8>>,
}

/// Where an account comes from (`users.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountSource {
    /// A password here.
    Local,
    /// Made at its first OpenID Connect sign-in.
    Oidc,
    /// Made at its first LDAP sign-in.
    Ldap,
    /// Provisioned by an identity provider through SCIM (bound to a sign-in subject later).
    Scim,
    /// A workload (a service account, a CI job) made at its first workload-token sign-in.
    Workload,
    /// An organization's robot (`robots.rs`), signing in with its access token.
    Robot,
}

impl AccountSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountSource::Local => "local",
            AccountSource::Oidc => "oidc",
            AccountSource::Ldap => "ldap",
            AccountSource::Scim => "scim",
            AccountSource::Workload => "workload",
            AccountSource::Robot => "robot",
        }
    }

    /// How the account signs in, as the console says it.
    pub fn sign_in(self) -> &'static str {
        match self {
            AccountSource::Local => "password",
            AccountSource::Oidc => "OIDC sign-in",
            AccountSource::Ldap => "LDAP sign-in",
            AccountSource::Scim => "SCIM sign-in",
            AccountSource::Workload => "workload identity token",
            AccountSource::Robot => "robot token",
        }
    }
}

impl From<policy::Provider> for AccountSource {
    fn from(p: policy::Provider) -> AccountSource {
        match p {
            policy::Provider::Oidc => AccountSource::Oidc,
            policy::Provider::Ldap => AccountSource::Ldap,
        }
    }
}

impl std::fmt::Display for AccountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored value that is none of the known ones (the database was written by something else):
/// what it should have been, and the value.
#[derive(Debug)]
pub struct UnknownValue(pub &'static str, pub String);

impl std::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} {:?}", self.0, self.1)
    }
}

impl std::error::Error for UnknownValue {}

/// The value of `all` whose stored name is `s` (the `TryFrom<String>` of the closed sets).
fn one_of<T: Copy>(all: &[T], name: fn(T) -> &'static str, what: &'static str, s: String) -> Result<T, UnknownValue> {
    all.iter().copied().find(|v| name(*v) == s).ok_or(UnknownValue(what, s))
}

impl TryFrom<String> for AccountSource {
    type Error = UnknownValue;

    fn try_from(s: String) -> Result<AccountSource, UnknownValue> {
        one_of(
            &[
                AccountSource::Local,
                AccountSource::Oidc,
                AccountSource::Ldap,
                AccountSource::Scim,
                AccountSource::Workload,
                AccountSource::Robot,
            ],
            AccountSource::as_str,
            "account source",
            s,
        )
    }
}

/// A user as the authorization snapshot knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub disabled: bool,
    /// A local account (a password here), which single sign-on enforcement refuses.
    pub local: bool,
    /// A workload's account (`workloads.rs`): its teams are its org's workload rules'.
    pub workload: bool,
}

impl DirectoryUser {
    /// From a row of (id, username, is_admin, disabled, source).
    pub fn from_row((id, username, is_admin, disabled, source): (i64, String, bool, bool, String)) -> DirectoryUser {
        let (local, workload) = (source == AccountSource::Local.as_str(), source == AccountSource::Workload.as_str());
        DirectoryUser { id, username, is_admin, disabled, local, workload }
    }
}

/// Everything authorization needs, loaded at once into the in-memory directory.
#[derive(Debug, Clone, Default)]
pub struct DirectoryRows {
    pub users: Vec<DirectoryUser>,
    /// (id, name)
    pub orgs: Vec<(i64, String)>,
    /// (team id, org id, team name)
    pub teams: Vec<(i64, i64, String)>,
    /// (team id, user id)
    pub members: Vec<(i64, i64)>,
    /// (team id, repository path inside the org, permission)
    pub permissions: Vec<(i64, String, Permission)>,
    /// (repo id, full name, visibility)
    pub repos: Vec<(i64, String, Visibility)>,
}

/// A stored exception (policy::Exception with its org).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRow {
    pub org: String,
    pub exception: policy::Exception,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub org: Option<String>,
    /// Who acted (user name; empty for anonymous).
    pub actor: String,
    /// `pull`, `settings.update`, `exception.create`, `exception.delete`, ...
    pub action: String,
    pub image: Option<String>,
    pub digest: Option<String>,
    pub category: Option<policy::CategoryName>,
    pub rule: Option<policy::Rule>,
    /// What was decided, for pulls.
    pub decision: Option<AuditDecision>,
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// JSON with details (settings before/after, ...).
    pub detail: Option<String>,
}

/// What a pull's audit entry says was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    Allowed,
    Denied,
    /// Served in a dry run that the settings would deny.
    WouldDeny,
}

impl AuditDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allowed => "allowed",
            AuditDecision::Denied => "denied",
            AuditDecision::WouldDeny => "would_deny",
        }
    }
}

impl TryFrom<String> for AuditDecision {
    type Error = UnknownValue;

    fn try_from(s: String) -> Result<AuditDecision, UnknownValue> {
        one_of(
            &[AuditDecision::Allowed, AuditDecision::Denied, AuditDecision::WouldDeny],
            AuditDecision::as_str,
            "audit decision",
            s,
        )
    }
}

/// Filters of an audit query; results are newest first, `before` is the paging cursor (an id).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub image: Option<String>,
    pub decision: Option<String>,
    pub action: Option<String>,
    pub category: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// Pulls of one category with one decision on one UTC day (`day` = days since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRow {
    pub day: i64,
    pub category: String,
    pub decision: String,
    pub pulls: i64,
}

/// A signed-in console session: the user and the CSRF token of its forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub expires_at: i64,
}

/// Status of an exception request.
pub const REQUEST_PENDING: &str = "pending";
pub const REQUEST_APPROVED: &str = "approved";
pub const REQUEST_DECLINED: &str = "declined";

/// A member's request for an Image Access Management exception, and the owners' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ExceptionRequest {
    pub id: i64,
    pub org: String,
    pub requester: String,
    /// Canonical image name (`docker.io/someone/app`).
    pub image: String,
    /// The digest the member was denied, when known (an owner may pin the exception to it).
    pub digest: Option<String>,
    pub reason: String,
    /// `pending`, `approved` or `declined`.
    pub status: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub note: Option<String>,
    /// The exception an approval created.
    pub exception_id: Option<i64>,
    /// What the requester was told when the pull was denied, when known.
    pub denial: Option<String>,
}

/// Failed sign-ins counted under one key (a user at an address, an address, a user) in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFailures {
    pub key: String,
    pub window_start: i64,
    pub failures: i64,
    /// When the last failure happened.
    pub last_at: i64,
}

/// A SCIM bearer token (its secret is shown once and stored as a hash): an organization's
/// (`org_id`, made by an owner) or the instance's (`None`, made by the administrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScimToken {
    pub id: i64,
    pub org_id: Option<i64>,
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The SCIM attributes kept for a provisioned user: the org whose token made it (`None`: an
/// instance token) and the attributes as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUserRow {
    pub user_id: i64,
    pub org_id: Option<i64>,
    pub attrs: String,
}

/// One version of an organization's policy: the whole policy after a change, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVersion {
    pub version: i64,
    pub author: String,
    pub created_at: i64,
    pub summary: String,
    #[serde(skip)]
    pub state: String,
}

/// An org's stored settings document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrgSettingsRow {
    pub org: String,
    /// The settings as JSON (`policy::Settings`).
    pub settings: String,
}

/// A team's stored rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TeamSettingsRow {
    pub org: String,
    pub team: String,
    /// The rule as JSON (`policy::TeamCategories`).
    pub settings: String,
}

/// A Docker Hub namespace's badge as looked up, until it is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubBadgeRow {
    pub namespace: String,
    /// `verified_publisher`, `open_source`, or none (community).
    pub badge: Option<String>,
    pub expires_at: i64,
}

/// Where a cached tag points and when that was last confirmed upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    pub digest: oci::digest::Digest,
    pub checked_at: i64,
}

/// A team's permission on one repository path inside its organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPermission {
    pub repo: String,
    pub permission: Permission,
}

/// An access token with the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    pub token: AccessToken,
    pub user: User,
}

/// An unfinished upload in the blob store and when it was last written (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    pub id: String,
    pub written_at: i64,
}

/// A recorded blob and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub digest: oci::digest::Digest,
    pub size: u64,
}

/// A token signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    /// The Ed25519 key pair, PKCS#8.
    pub pkcs8: Vec<u8>,
}

/// An administrator's badge for a Docker Hub namespace (`none`: community).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherOverrideRow {
    pub namespace: String,
    pub badge: String,
}

/// A trusted workload token issuer as the API takes and shows it (`idp::workload` verifies its
/// tokens): those of `[[auth.workload_issuers]]` and those the administrator added at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuer {
    /// Its name here: workload rules and account names use it (`k8s:system:serviceaccount:…`).
    pub name: String,
    /// The exact `iss` of its tokens; discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The `aud` its tokens must name (default: the gateway's service name).
    #[serde(default)]
    pub audience: Option<String>,
    /// `RS256` and/or `ES256` (default: both).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// The longest token lifetime accepted, in seconds (default: a day).
    #[serde(default)]
    pub max_token_lifetime_secs: Option<i64>,
    /// Its keys as a JWKS document (a cluster's `/openid/v1/jwks`, for an issuer the gateway
    /// cannot reach); none: discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// A trusted issuer as listed: its settings, where they come from and the keys held now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadIssuerView {
    #[serde(flatten)]
    pub issuer: WorkloadIssuer,
    /// `config` (`[[auth.workload_issuers]]`, changed there) or `api` (added at run time).
    pub source: &'static str,
    /// Where its keys come from: `discovery`, `file` or `inline`.
    pub keys_from: &'static str,
    /// How many keys are held now.
    pub keys_held: usize,
}

/// A team's SCIM attributes (as a SCIM group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupRow {
    pub team_id: i64,
    /// The attributes as JSON.
    pub attrs: String,
}
