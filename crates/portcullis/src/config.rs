//! Configuration: defaults < TOML file (`--config`) < `PORTCULLIS_*` environment variables
//! (`__` separates sections: `PORTCULLIS_AUTH__TOKEN_TTL_SECS`) < command-line flags. Unknown
//! keys are errors. Secrets print as `***`. Built once in `main` and passed down.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A secret value: deserializes normally, serializes (and so prints) as `***`.
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory holding the SQLite database, blobs and the token signing key.
    pub data_dir: PathBuf,
    /// Base URL clients use to reach this server (token realm); derived from `Host` if unset.
    pub public_url: Option<String>,
    /// Password of the `admin` user created on first start (else one is generated and printed).
    pub admin_password: Option<Secret>,
    /// File holding that password.
    pub admin_password_file: Option<PathBuf>,
    pub tls: Tls,
    pub http: Http,
    pub auth: Auth,
    pub log: Log,
    /// Proxy registries that are not listed in `upstreams` (as `https://<host>`).
    pub upstreams_open: bool,
    /// Registries to pull through; Docker Hub is always configured and may be overridden.
    pub upstreams: Vec<UpstreamEntry>,
    pub proxy: ProxySettings,
    pub audit: AuditSettings,
    pub docker_hub: DockerHub,
    pub database: Database,
    pub s3: S3,
    /// Where the CLI's API commands (`org`, `check`, `publishers`) connect.
    pub client: ClientSettings,
    /// Kubernetes admission webhooks (`/admission/validate`, `/admission/mutate`).
    pub admission: AdmissionSettings,
}

/// `[admission]`: the cluster whose API server sends admission reviews.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionSettings {
    /// The workload issuer (`auth.workload_issuers` name) of the cluster's service accounts;
    /// unset: admission reviews are not answered.
    pub issuer: Option<String>,
    /// A file holding the bearer token the API server presents (its admission kubeconfig's).
    pub token_file: Option<PathBuf>,
    /// The gateway's `host[:port]` that admitted images are rewritten to (default: public_url's).
    pub gateway: Option<String>,
}

impl AdmissionSettings {
    /// The issuer, the token and the gateway's name; an issuer needs a trusted issuer of that
    /// name and a token.
    pub fn resolved(&self, auth: &Auth, public_url: Option<&str>) -> anyhow::Result<AdmissionResolved> {
        let Some(issuer) = &self.issuer else { return Ok(AdmissionResolved::default()) };
        if !auth.workload_issuers.iter().any(|w| &w.name == issuer) {
            bail!("admission.issuer {issuer:?} is none of auth.workload_issuers");
        }
        let Some(token) = secret(None, self.token_file.as_deref())?.filter(|t| t.len() >= 16) else {
            bail!("admission.issuer needs admission.token_file: the API server's bearer token (16 characters or more)");
        };
        let gateway = self.gateway.clone().or_else(|| {
            public_url.map(|u| {
                let rest = u.trim_start_matches("https://").trim_start_matches("http://");
                rest.split('/').next().unwrap_or(rest).to_owned()
            })
        });
        Ok(AdmissionResolved { issuer: Some(issuer.clone()), token: Some(token), gateway })
    }
}

/// [`AdmissionSettings`], checked.
#[derive(Debug, Clone, Default)]
pub struct AdmissionResolved {
    pub issuer: Option<String>,
    pub token: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    pub server: String,
    pub username: String,
    /// Password or access token.
    pub password: Option<Secret>,
}

impl Default for ClientSettings {
    /// The server is this configuration's own `listen` address unless set.
    fn default() -> Self {
        ClientSettings { server: String::new(), username: "admin".into(), password: None }
    }
}

/// Blobs in an S3-compatible bucket instead of the data directory (when `bucket` is set).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3 {
    pub bucket: String,
    /// `https://s3.eu-west-1.amazonaws.com`, `http://minio:9000` (plain http only if written so).
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Path-style URLs (`host/bucket/key`), as MinIO, Ceph and most self-hosted servers want.
    pub path_style: bool,
    /// Answer blob GETs, once access is decided, with a 307 to a presigned bucket URL, so that
    /// clients download from the object store directly (it must be reachable from them).
    pub redirect: bool,
    /// How long a presigned URL stays valid.
    pub redirect_ttl_secs: u64,
}

impl Default for S3 {
    fn default() -> Self {
        S3 {
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            access_key_id_file: None,
            secret_access_key: None,
            secret_access_key_file: None,
            path_style: false,
            redirect: false,
            redirect_ttl_secs: 300,
        }
    }
}

/// The one way a secret is read: a `*_file` wins over the value, and gives its content less one
/// final line break (as `echo`, editors and Kubernetes secrets leave it; other whitespace is
/// kept: a password may begin or end with a space); neither: `None`.
fn secret(value: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match file {
        Some(f) => {
            let s = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            let s = s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s);
            Ok(Some(s.to_owned()))
        }
        None => Ok(value.map(str::to_owned)),
    }
}

impl S3 {
    /// The store's settings, when S3 is configured.
    pub fn config(&self) -> anyhow::Result<Option<store::S3Config>> {
        if self.bucket.is_empty() {
            return Ok(None);
        }
        if self.endpoint.is_empty() {
            anyhow::bail!("s3.endpoint is required with s3.bucket");
        }
        let access_key_id = secret(Some(&self.access_key_id), self.access_key_id_file.as_deref())?.unwrap_or_default();
        let secret_access_key =
            secret(self.secret_access_key.as_ref().map(|s| s.0.as_str()), self.secret_access_key_file.as_deref())?
                .unwrap_or_default();
        Ok(Some(store::S3Config {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            access_key_id,
            secret_access_key,
            path_style: self.path_style,
            redirect_ttl: self
                .redirect
                .then(|| std::time::Duration::from_secs(self.redirect_ttl_secs.clamp(1, 7 * 86400))),
        }))
    }
}

/// Where metadata lives: SQLite in the data directory (the default), or PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `postgres://user:password@host:5432/db` (TLS: `?sslmode=verify-full&sslrootcert=ca.pem`).
    pub url: Option<Secret>,
    /// File holding that URL.
    pub url_file: Option<PathBuf>,
    /// Connections in the PostgreSQL pool.
    pub max_connections: u32,
    /// While PostgreSQL cannot be reached, pulls of what this replica holds are still decided
    /// on its last policy and directory for this long (then refused: 0 refuses them at once).
    pub outage_grace_secs: u64,
}

impl Default for Database {
    fn default() -> Self {
        Database { url: None, url_file: None, max_connections: 16, outage_grace_secs: 600 }
    }
}

impl Database {
    /// The PostgreSQL URL, if one is configured.
    pub fn url(&self) -> anyhow::Result<Option<String>> {
        secret(self.url.as_ref().map(|s| s.0.as_str()), self.url_file.as_deref())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Days audit entries are kept (0 = forever).
    pub retention_days: i64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { retention_days: 90 }
    }
}

/// Docker Hub's API, asked for the badges of namespaces the publisher catalog does not know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerHub {
    /// Look badges up (off: namespaces the catalog does not know are community).
    pub badge_lookups: bool,
    /// Base URL of Docker Hub's search API.
    pub api_url: String,
    /// The longest a pull waits for a lookup, in milliseconds.
    pub lookup_wait_ms: u64,
    /// How long a badge (or "no badge") Docker Hub gave is kept.
    pub badge_ttl_secs: i64,
    pub no_badge_ttl_secs: i64,
    /// How long after a failed lookup a namespace is asked again.
    pub retry_secs: i64,
}

impl Default for DockerHub {
    fn default() -> Self {
        let d = portcullis_core::badges::HubLookupConfig::default();
        DockerHub {
            badge_lookups: true,
            api_url: "https://hub.docker.com".into(),
            lookup_wait_ms: d.wait_ms,
            badge_ttl_secs: d.positive_ttl_secs,
            no_badge_ttl_secs: d.negative_ttl_secs,
            retry_secs: d.retry_secs,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    /// The name clients and policy use (`docker.io`, `ghcr.io`).
    pub registry: String,
    /// Where it is really fetched from; plain `http://` only when written so.
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// How long a cached tag is served before it is revalidated upstream.
    pub tag_ttl_secs: i64,
    /// Budget for cached upstream blobs in bytes (least recently used evicted first); 0 = none.
    pub cache_max_bytes: u64,
    /// Let anonymous callers pull through the proxy.
    pub allow_anonymous: bool,
    /// Concurrent requests per upstream.
    pub concurrency: usize,
    /// Retries of idempotent upstream requests that fail before their first byte.
    pub retries: u32,
    pub connect_timeout_secs: u64,
    /// Longest wait for response headers, and longest silence inside a body.
    pub read_timeout_secs: u64,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            tag_ttl_secs: 300,
            cache_max_bytes: 0,
            allow_anonymous: false,
            concurrency: 32,
            retries: 2,
            connect_timeout_secs: 10,
            read_timeout_secs: 30,
        }
    }
}

/// Bounds on client connections (defaults like nginx's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's headers, and to start its next
    /// request on a kept-alive connection (nginx: `client_header_timeout`).
    pub header_timeout_secs: u64,
    /// A connection without any traffic for this long is closed (nginx: `keepalive_timeout`);
    /// a request in flight finishes first.
    pub idle_timeout_secs: u64,
    /// On shutdown, how long running transfers may take to finish.
    pub drain_secs: u64,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` header names the
    /// client, for sign-in throttling and the audit log; from anyone else it is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            max_connections: 1024,
            header_timeout_secs: 60,
            idle_timeout_secs: 75,
            drain_secs: 30,
            trusted_proxies: vec![],
        }
    }
}

impl Http {
    /// The trusted proxies as networks (an address is a network of one).
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("http.trusted_proxies: {p:?} is not an address or a CIDR network"))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain; TLS is on when both `cert` and `key` are set.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// The token service name (`aud` of tokens, `service` of challenges).
    pub service: String,
    /// Lifetime of registry bearer tokens, in seconds.
    pub token_ttl_secs: i64,
    /// Who may create organizations: `everyone` (signed-in users) or `admins`.
    pub org_creation: OrgCreation,
    /// Enforce sign-in (the server-side `registry.json`): when not empty, only members of these
    /// organizations (and the instance administrator) may use the registry.
    pub allowed_orgs: Vec<String>,
    /// Console sign-in through an OpenID provider (authorization code flow with PKCE).
    pub oidc: Option<Oidc>,
    /// Password sign-in (console, `docker login`, `/token`) checked by an LDAP directory.
    pub ldap: Option<Ldap>,
    /// Issuers of workload identity tokens (Kubernetes service accounts, CI jobs) trusted here.
    pub workload_issuers: Vec<WorkloadIssuer>,
}

/// `[[auth.workload_issuers]]`: a Kubernetes cluster's service-account issuer, GitHub Actions',
/// GitLab CI's. Organizations' workload rules map its tokens' claims to their teams.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuer {
    /// The name rules and account names use (`k8s` makes `k8s:system:serviceaccount:ci:builder`).
    pub name: String,
    /// The exact `iss` of its tokens; discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The audience its tokens must name (default: `auth.service`).
    pub audience: Option<String>,
    /// Its JWKS as a file (a cluster's `/openid/v1/jwks`), instead of discovery.
    pub jwks_file: Option<PathBuf>,
    /// RS256 and/or ES256.
    #[serde(default = "workload_algorithms")]
    pub algorithms: Vec<String>,
    /// The longest token lifetime accepted, in seconds.
    #[serde(default = "workload_max_lifetime")]
    pub max_token_lifetime_secs: i64,
    /// The longest wait for the issuer.
    #[serde(default = "oidc_timeout")]
    pub timeout_secs: u64,
}

fn workload_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn workload_max_lifetime() -> i64 {
    86_400
}

impl Auth {
    /// The trusted workload issuers: the configured ones (those added at run time are loaded
    /// from the database).
    pub fn workload_verifier(&self) -> anyhow::Result<Arc<dyn portcullis_core::ports::WorkloadVerifier>> {
        let mut list = Vec::new();
        for w in &self.workload_issuers {
            if self.workload_issuers.iter().filter(|o| o.name == w.name).count() > 1 {
                bail!("auth.workload_issuers: the name {:?} is used twice", w.name);
            }
            let algorithms = w
                .algorithms
                .iter()
                .map(|a| idp::workload::algorithm(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("auth.workload_issuers {}: {e}", w.name))?;
            if w.max_token_lifetime_secs <= 0 {
                bail!("auth.workload_issuers {}: max_token_lifetime_secs must be positive", w.name);
            }
            list.push(idp::workload::IssuerSettings {
                name: w.name.clone(),
                issuer: w.issuer.clone(),
                audience: w.audience.clone().unwrap_or_else(|| self.service.clone()),
                keys: w
                    .jwks_file
                    .clone()
                    .map(idp::workload::KeySource::File)
                    .unwrap_or(idp::workload::KeySource::Discovery),
                algorithms,
                max_lifetime_secs: w.max_token_lifetime_secs,
                timeout: std::time::Duration::from_secs(w.timeout_secs.clamp(1, 120)),
            });
        }
        let issuers = idp::workload::Issuers::new(list, &self.service)
            .map_err(|e| anyhow::anyhow!("auth.workload_issuers: {e}"))?;
        Ok(Arc::new(issuers))
    }
}

/// `[auth.ldap]`: the LDAP or Active Directory server that checks passwords.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ldap {
    /// `ldap://host:389` (StartTLS unless `starttls = false`) or `ldaps://host:636`.
    pub url: String,
    #[serde(default = "yes")]
    pub starttls: bool,
    /// The service account that searches users and groups.
    pub bind_dn: String,
    pub bind_password: Option<Secret>,
    /// A file holding the service account's password (preferred over `bind_password`).
    pub bind_password_file: Option<PathBuf>,
    pub user_base: String,
    /// With `{username}` (escaped as RFC 4515 requires).
    #[serde(default = "ldap_user_filter")]
    pub user_filter: String,
    /// The attribute that names the account here.
    #[serde(default = "ldap_username_attribute")]
    pub username_attribute: String,
    pub group_base: String,
    /// With `{dn}` (the user's entry) or `{username}`.
    #[serde(default = "ldap_group_filter")]
    pub group_filter: String,
    /// The attribute holding a group's name (`<org>:<team>` makes a team membership).
    #[serde(default = "ldap_group_name_attribute")]
    pub group_name_attribute: String,
    /// PEM CA certificates to verify the server with (default: the system's).
    pub ca_file: Option<PathBuf>,
    #[serde(default = "oidc_timeout")]
    pub timeout_secs: u64,
}

fn yes() -> bool {
    true
}
fn ldap_user_filter() -> String {
    "(uid={username})".into()
}
fn ldap_username_attribute() -> String {
    "uid".into()
}
fn ldap_group_filter() -> String {
    "(member={dn})".into()
}
fn ldap_group_name_attribute() -> String {
    "cn".into()
}

impl Ldap {
    pub fn settings(&self) -> anyhow::Result<idp::ldap::LdapSettings> {
        let Some(bind_password) =
            secret(self.bind_password.as_ref().map(|s| s.0.as_str()), self.bind_password_file.as_deref())?
        else {
            bail!("auth.ldap needs bind_password_file or bind_password")
        };
        let ca_pem = match &self.ca_file {
            Some(f) => Some(std::fs::read(f).with_context(|| format!("auth.ldap.ca_file {}", f.display()))?),
            None => None,
        };
        Ok(idp::ldap::LdapSettings {
            url: self.url.clone(),
            starttls: self.starttls,
            bind_dn: self.bind_dn.clone(),
            bind_password,
            user_base: self.user_base.clone(),
            user_filter: self.user_filter.clone(),
            username_attribute: self.username_attribute.clone(),
            group_base: self.group_base.clone(),
            group_filter: self.group_filter.clone(),
            group_name_attribute: self.group_name_attribute.clone(),
            ca_pem,
            timeout: std::time::Duration::from_secs(self.timeout_secs.clamp(1, 120)),
        })
    }
}

/// `[auth.oidc]`: the OpenID provider the console signs people in with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    /// The issuer URL; discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// A file holding the client secret (preferred over `client_secret`).
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "oidc_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the account here.
    #[serde(default = "oidc_username_claim")]
    pub username_claim: String,
    /// The claim listing the user's groups (`<org>:<team>` makes a team membership).
    #[serde(default = "oidc_groups_claim")]
    pub groups_claim: String,
    /// The name on the sign-in button (default: the issuer's host).
    pub display_name: Option<String>,
    /// The longest wait for one request to the provider.
    #[serde(default = "oidc_timeout")]
    pub timeout_secs: u64,
}

fn oidc_scopes() -> Vec<String> {
    ["openid", "profile", "email", "groups"].map(String::from).to_vec()
}
fn oidc_username_claim() -> String {
    "preferred_username".into()
}
fn oidc_groups_claim() -> String {
    "groups".into()
}
fn oidc_timeout() -> u64 {
    10
}

impl Oidc {
    /// The relying party's settings; `public_url` is where the provider sends browsers back.
    pub fn settings(&self, public_url: Option<&str>) -> anyhow::Result<idp::oidc::OidcSettings> {
        let Some(base) = public_url else {
            bail!("auth.oidc needs public_url: the provider sends browsers back to <public_url>/auth/oidc/callback");
        };
        let Some(client_secret) =
            secret(self.client_secret.as_ref().map(|s| s.0.as_str()), self.client_secret_file.as_deref())?
        else {
            bail!("auth.oidc needs client_secret_file or client_secret")
        };
        if !self.scopes.iter().any(|s| s == "openid") {
            bail!("auth.oidc.scopes must include openid");
        }
        Ok(idp::oidc::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret,
            scopes: self.scopes.clone(),
            username_claim: self.username_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            redirect_url: format!("{}/auth/oidc/callback", base.trim_end_matches('/')),
            timeout: std::time::Duration::from_secs(self.timeout_secs.clamp(1, 120)),
        })
    }

    /// The name on the sign-in button.
    pub fn name(&self) -> String {
        self.display_name.clone().unwrap_or_else(|| {
            let host = self.issuer.trim_start_matches("https://").trim_start_matches("http://");
            host.split('/').next().unwrap_or(host).to_owned()
        })
    }
}

/// Who may create organizations (`auth.org_creation`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrgCreation {
    /// Every signed-in user (who then owns the org).
    Everyone,
    /// Only the instance administrator.
    Admins,
}

/// How log lines are written (`log.format`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `warn,access=info`.
    pub level: String,
}

/// The levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl Log {
    /// A level (`info`) or directives (`warn,access=info`) whose every level is one of
    /// [`LOG_LEVELS`]: a typo such as `verbose` would otherwise be read as a target name and
    /// the server would log nothing.
    pub fn check_level(&self) -> anyhow::Result<()> {
        let bad = |d: &str| {
            anyhow::anyhow!(
                "log.level: {d:?} is not a level; use one of {} (or directives such as \"warn,access=info\")",
                LOG_LEVELS.join(", ")
            )
        };
        for d in self.level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
            if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                return Err(bad(d));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.level).map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("./portcullis-data"),
            public_url: None,
            admin_password: None,
            admin_password_file: None,
            tls: Tls::default(),
            http: Http::default(),
            auth: Auth::default(),
            log: Log::default(),
            upstreams_open: false,
            upstreams: Vec::new(),
            proxy: ProxySettings::default(),
            audit: AuditSettings::default(),
            docker_hub: DockerHub::default(),
            database: Database::default(),
            s3: S3::default(),
            client: ClientSettings::default(),
            admission: AdmissionSettings::default(),
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            service: "portcullis".into(),
            token_ttl_secs: 300,
            org_creation: OrgCreation::Everyone,
            allowed_orgs: Vec::new(),
            oidc: None,
            ldap: None,
            workload_issuers: Vec::new(),
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log { format: LogFormat::Text, level: "info".into() }
    }
}

/// Values given as command-line flags (highest precedence).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientFlags>,
}

/// `--server` and `--username`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClientFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Flags {
    pub fn new(
        listen: Option<String>,
        data_dir: Option<PathBuf>,
        server: Option<String>,
        username: Option<String>,
    ) -> Flags {
        let client = (server.is_some() || username.is_some()).then_some(ClientFlags { server, username });
        Flags { listen, data_dir, client }
    }
}

impl Config {
    /// Loads and validates the configuration: defaults < what `portcullis login` saved <
    /// the file < `PORTCULLIS_*` < flags.
    pub fn load(file: Option<&Path>, flags: &Flags) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(saved) = crate::login::saved_file().filter(|f| f.exists()) {
            fig = fig.merge(Toml::file(saved));
        }
        if let Some(f) = file {
            if !f.exists() {
                bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        let fig =
            fig.merge(Env::prefixed("PORTCULLIS_").ignore(&["CONFIG"]).split("__")).merge(Serialized::globals(flags));
        let cfg: Config = fig.extract().map_err(|e| anyhow::anyhow!(explain(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        self.log.check_level()?;
        if let Some(o) = &self.auth.oidc {
            o.settings(self.public_url.as_deref())?;
        }
        if let Some(l) = &self.auth.ldap {
            idp::ldap::Ldap::new(l.settings()?).map_err(|e| anyhow::anyhow!("auth.ldap: {e}"))?;
        }
        if !(30..=86_400).contains(&self.auth.token_ttl_secs) {
            bail!("auth.token_ttl_secs must be between 30 and 86400");
        }
        if self.http.max_connections == 0 || self.http.header_timeout_secs == 0 || self.http.idle_timeout_secs == 0 {
            bail!("http.max_connections, http.header_timeout_secs and http.idle_timeout_secs must be at least 1");
        }
        self.http.trusted_proxies()?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("tls.cert and tls.key must be set together");
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("public_url must start with http:// or https://");
        }
        for u in &self.upstreams {
            let host = oci::source::canonical_registry(&u.registry);
            if !oci::name::is_valid_host(&host) {
                bail!("upstreams: {:?} is not a registry host name", u.registry);
            }
            if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                bail!("upstreams: url {:?} of {} must start with http:// or https://", u.url, u.registry);
            }
            if u.password.is_some() && u.password_file.is_some() {
                bail!("upstreams: give password or password_file for {}, not both", u.registry);
            }
        }
        Ok(())
    }

    /// The effective configuration as `config check` prints it: the settings (secrets masked),
    /// then what they mean where that is not obvious.
    pub fn explained(&self) -> anyhow::Result<String> {
        let mut out = toml::to_string(self)?;
        out.push_str("\n# What this means\n");
        out.push_str(&format!("# listening on {}; data directory {}\n", self.listen_addr()?, self.data_dir.display()));
        out.push_str(&format!(
            "# metadata: {}; blobs: {}\n",
            if self.database.url()?.is_some() { "PostgreSQL (database.url)" } else { "SQLite in the data directory" },
            if self.s3.bucket.is_empty() { "the data directory" } else { "S3 (s3.bucket)" }
        ));
        out.push_str("# upstream registries (pull-through):\n");
        for u in self.upstreams()? {
            let configured = self.upstreams.iter().any(|c| oci::source::canonical_registry(&c.registry) == u.registry);
            let how = if configured { "configured" } else { "built in" };
            let auth = if u.username.is_some() { ", with credentials" } else { "" };
            out.push_str(&format!("#   {} -> {} ({how}{auth})\n", u.registry, u.url));
        }
        if self.upstreams_open {
            out.push_str("#   and any other registry, at https://<host> (upstreams_open)\n");
        }
        out.push_str(&match self.proxy.cache_max_bytes {
            0 => "# proxy.cache_max_bytes = 0: the cache of upstream images has no size limit (nothing is evicted)\n".to_owned(),
            n => format!("# proxy.cache_max_bytes = {n}: cached upstream blobs beyond {n} bytes are evicted, least recently used first\n"),
        });
        out.push_str(&format!(
            "# pulls through the proxy: {}\n",
            if self.proxy.allow_anonymous {
                "anonymous allowed (proxy.allow_anonymous)"
            } else {
                "signed-in users only"
            }
        ));
        if !self.auth.allowed_orgs.is_empty() {
            out.push_str(&format!(
                "# sign-in enforced: only members of {} may use the registry\n",
                self.auth.allowed_orgs.join(", ")
            ));
        }
        self.auth.workload_verifier()?;
        if !self.auth.workload_issuers.is_empty() {
            let names: Vec<&str> = self.auth.workload_issuers.iter().map(|w| w.name.as_str()).collect();
            out.push_str(&format!("# workload identity tokens trusted from: {}\n", names.join(", ")));
        }
        if let Some(issuer) = self.admission.resolved(&self.auth, self.public_url.as_deref())?.issuer {
            out.push_str(&format!("# Kubernetes admission reviews answered for the service accounts of {issuer}\n"));
        }
        out.push_str(&format!("# API commands talk to {} as {}\n", self.client_server(), self.client.username));
        Ok(out)
    }

    /// The address to listen on: `127.0.0.1:5000`, `[::1]:5000`, `0.0.0.0:5000` or a name such
    /// as `localhost:5000` (its IPv4 address when it has one).
    pub fn listen_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        use std::net::ToSocketAddrs;
        let bad = || {
            format!(
                "listen = {:?} is not host:port (such as 127.0.0.1:5000, [::1]:5000 or localhost:5000)",
                self.listen
            )
        };
        let addrs: Vec<std::net::SocketAddr> = self.listen.to_socket_addrs().with_context(bad)?.collect();
        addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().with_context(bad)
    }

    /// Where the CLI's API commands connect: `client.server`, else this server's own `listen`
    /// address (a wildcard address as loopback).
    pub fn client_server(&self) -> String {
        if !self.client.server.is_empty() {
            return self.client.server.trim_end_matches('/').to_owned();
        }
        self.own_url()
    }

    /// This server's URL on this machine, from its listen address (loopback for a wildcard).
    pub fn own_url(&self) -> String {
        let scheme = if self.tls.cert.is_some() { "https" } else { "http" };
        match self.listen_addr() {
            Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("{scheme}://127.0.0.1:{}", a.port()),
            Ok(a) if a.ip().is_unspecified() => format!("{scheme}://[::1]:{}", a.port()),
            Ok(a) => format!("{scheme}://{a}"),
            Err(_) => format!("{scheme}://{}", self.listen),
        }
    }

    /// The upstream list: Docker Hub by default, each entry overriding or adding by registry.
    pub fn upstreams(&self) -> anyhow::Result<Vec<upstream::UpstreamConfig>> {
        let mut list = upstream::default_upstreams();
        for u in &self.upstreams {
            let registry = oci::source::canonical_registry(&u.registry);
            let password = secret(u.password.as_ref().map(|s| s.0.as_str()), u.password_file.as_deref())?;
            list.retain(|c| c.registry != registry);
            list.push(upstream::UpstreamConfig {
                registry,
                url: u.url.clone(),
                username: u.username.clone(),
                password,
            });
        }
        Ok(list)
    }

    /// The bootstrap administrator password, from the value or the file.
    pub fn admin_password(&self) -> anyhow::Result<Option<String>> {
        secret(self.admin_password.as_ref().map(|s| s.0.as_str()), self.admin_password_file.as_deref())
    }
}

/// Configuration errors as people fix them: the key, where it was set (a file and line, or an
/// environment variable), and the nearest known key when one was misspelt.
fn explain(errors: figment::Error) -> String {
    let mut lines = Vec::new();
    for e in errors {
        let mut path = e.path.clone();
        let (what, suggestion) = match &e.kind {
            figment::error::Kind::UnknownField(found, expected) => {
                if path.last() != Some(found) {
                    path.push(found.clone());
                }
                let near = expected
                    .iter()
                    .map(|k| (strsim::jaro_winkler(found, k), *k))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!("; did you mean `{k}`?"));
                (
                    "unknown key".to_owned(),
                    near.unwrap_or_else(|| format!("; known keys here: {}", expected.join(", "))),
                )
            }
            figment::error::Kind::InvalidType(actual, expected)
            | figment::error::Kind::InvalidValue(actual, expected) => {
                (format!("expected {}, found {}, for", wanted(&path, expected), found(actual)), String::new())
            }
            other => (other.to_string(), String::new()),
        };
        let key = path.join(".");
        let key = if key.is_empty() { String::new() } else { format!(" `{key}`") };
        let place = match &e.metadata {
            Some(m) => match &m.source {
                Some(figment::Source::File(f)) => match line_of(f, &path) {
                    Some(n) => format!(" (in {}, line {n})", f.display()),
                    None => format!(" (in {})", f.display()),
                },
                _ if m.name.contains("environment") => {
                    format!(" (from the environment variable PORTCULLIS_{})", path.join("__").to_uppercase())
                }
                _ => String::new(),
            },
            None => String::new(),
        };
        lines.push(format!("invalid configuration: {what}{key}{place}{suggestion}"));
    }
    lines.join("\n")
}

/// What a key takes, in people's words: the listen address's form, seconds, or the type
/// without serde's names (`i64` is "a whole number").
fn wanted(path: &[String], expected: &str) -> String {
    let key = path.last().map(String::as_str).unwrap_or_default();
    if path.len() == 1 && key == "listen" {
        return "HOST:PORT, such as \"0.0.0.0:5000\" (a string)".into();
    }
    let number = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "isize"];
    let plain = match expected {
        e if number.contains(&e) || e.starts_with("a number") => "a whole number".to_owned(),
        "a string" | "a borrowed string" | "a character" => "a string".to_owned(),
        "a boolean" => "true or false".to_owned(),
        e => e.to_owned(),
    };
    if key.ends_with("_secs") { format!("{plain} of seconds, such as 300") } else { plain }
}

/// A value found, named as people wrote it (`string "five minutes"` is the text "five minutes").
fn found(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Str(s) => format!("the text {s:?}"),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Bool(b) => format!("{b}"),
        other => other.to_string(),
    }
}

/// The line of a TOML file that sets `path` (`["auth", "token_ttl"]`: `token_ttl = …` under `[auth]`).
fn line_of(file: &Path, path: &[String]) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    let (key, table) = path.split_last()?;
    let table = table.join(".");
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.trim_matches(['[', ']']).trim().to_owned();
            // an unknown section is its header line
            if current == path.join(".") {
                return Some(i + 1);
            }
            continue;
        }
        let set = l.split('=').next().map(str::trim);
        if current == table && set == Some(key.as_str()) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_read_one_way() {
        let dir = tempfile::tempdir().unwrap();
        let f = |name: &str, content: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            p
        };
        let (echoed, crlf, spaced) = (f("a", "s3cret\n"), f("b", "s3cret\r\n"), f("c", " s3cret \n\n"));
        assert_eq!(secret(None, Some(&echoed)).unwrap().as_deref(), Some("s3cret"), "one line break goes");
        assert_eq!(secret(None, Some(&crlf)).unwrap().as_deref(), Some("s3cret"));
        assert_eq!(secret(None, Some(&spaced)).unwrap().as_deref(), Some(" s3cret \n"), "only one, spaces kept");
        assert_eq!(secret(Some("value"), Some(&echoed)).unwrap().as_deref(), Some("s3cret"), "the file wins");
        assert_eq!(secret(Some("value"), None).unwrap().as_deref(), Some("value"));
        assert_eq!(secret(None, None).unwrap(), None);
        let err = secret(None, Some(&dir.path().join("missing"))).unwrap_err().to_string();
        assert!(err.contains("cannot read") && err.contains("missing"), "{err}");
        // every *_file goes through it: the database URL, the admin password and an upstream's
        let db = Database { url_file: Some(echoed.clone()), ..Database::default() };
        assert_eq!(db.url().unwrap().as_deref(), Some("s3cret"));
        let c = Config { admin_password_file: Some(spaced), ..Config::default() };
        assert_eq!(c.admin_password().unwrap().as_deref(), Some(" s3cret \n"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn errors_in_peoples_words() {
        figment::Jail::expect_with(|jail| {
            let load = |f: &str| Config::load(Some(Path::new(f)), &Flags::default()).unwrap_err().to_string();
            jail.create_file("t.toml", "[auth]\ntoken_ttl_secs = \"five minutes\"\n")?;
            let err = load("t.toml");
            assert!(
                err.contains("expected a whole number of seconds, such as 300, found the text \"five minutes\"")
                    && err.contains("`auth.token_ttl_secs` (in ")
                    && err.contains("t.toml, line 2)"),
                "{err}"
            );
            jail.create_file("s.toml", "[auth\n")?;
            let err = load("s.toml");
            assert!(!err.contains("``"), "no empty key after a syntax error: {err}");
            jail.create_file("u.toml", "listen = \"127.0.0.1:1\"\n[autth]\nx = 1\n")?;
            let err = load("u.toml");
            assert!(err.contains("unknown key `autth`") && err.contains("line 2"), "{err}");
            jail.create_file("ok.toml", "")?;
            jail.set_env("PORTCULLIS_LISTEN", "5000");
            let err = load("ok.toml");
            assert!(
                err.contains("expected HOST:PORT, such as \"0.0.0.0:5000\"") && err.contains("found the number 5000"),
                "{err}"
            );
            assert!(err.contains("PORTCULLIS_LISTEN"), "{err}");
            jail.set_env("PORTCULLIS_LISTEN", "127.0.0.1:1");
            for (level, ok) in
                [("verbose", false), ("info", true), ("warn,access=info", true), ("warn,access=loud", false)]
            {
                jail.set_env("PORTCULLIS_LOG__LEVEL", level);
                match (Config::load(Some(Path::new("ok.toml")), &Flags::default()), ok) {
                    (Ok(_), true) => {}
                    (Err(e), false) => {
                        assert!(e.to_string().contains("is not a level; use one of trace, debug, info"), "{e}")
                    }
                    (r, _) => panic!("{level}: {:?}", r.err()),
                }
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn precedence_and_unknown_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "listen = \"127.0.0.1:6000\"\n[auth]\ntoken_ttl_secs = 600\n")?;
            jail.set_env("PORTCULLIS_AUTH__TOKEN_TTL_SECS", "900");
            jail.set_env("PORTCULLIS_ADMIN_PASSWORD", "s3cret-pass");
            let flags = Flags { data_dir: Some("/tmp/x".into()), ..Flags::default() };
            let c = Config::load(Some(Path::new("c.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:6000");
            assert_eq!(c.auth.token_ttl_secs, 900, "env beats file");
            assert_eq!(c.data_dir, PathBuf::from("/tmp/x"), "flag beats all");
            let shown = toml::to_string(&c).unwrap();
            assert!(shown.contains("***") && !shown.contains("s3cret"), "{shown}");
            jail.create_file("bad.toml", "listen = \"127.0.0.1:1\"\n\n[auth]\ntoken_ttl = 5\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("unknown key `auth.token_ttl`"), "{err}");
            assert!(err.contains("bad.toml, line 4") && err.ends_with("did you mean `token_ttl_secs`?"), "{err}");
            jail.create_file("typed.toml", "[proxy]\ntag_ttl_secs = \"soon\"\n")?;
            let err = Config::load(Some(Path::new("typed.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("`proxy.tag_ttl_secs`") && err.contains("typed.toml, line 2"), "{err}");
            jail.set_env("PORTCULLIS_AUTH__TOKEN_TL_SECS", "5");
            let err = Config::load(None, &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("environment variable PORTCULLIS_AUTH__TOKEN_TL_SECS"), "{err}");
            assert!(err.contains("did you mean `token_ttl_secs`?"), "{err}");
            jail.clear_env();
            jail.set_env("PORTCULLIS_AUTH__TOKEN_TTL_SECS", "900");
            jail.set_env("PORTCULLIS_ADMIN_PASSWORD", "s3cret-pass");
            jail.create_file(
                "up.toml",
                "upstreams_open = false\n[[upstreams]]\nregistry = \"index.docker.io\"\nurl = \"http://127.0.0.1:5000\"\n\
                 [[upstreams]]\nregistry = \"ghcr.io\"\nurl = \"http://127.0.0.1:5001\"\npassword = \"hunter2-secret\"\n",
            )?;
            let c = Config::load(Some(Path::new("up.toml")), &Flags::default()).map_err(|e| e.to_string())?;
            let ups = c.upstreams().map_err(|e| e.to_string())?;
            assert_eq!(ups.len(), 2, "docker.io overridden, ghcr.io added");
            assert!(ups.iter().any(|u| u.registry == "docker.io" && u.url == "http://127.0.0.1:5000"));
            assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
            jail.set_env("PORTCULLIS_UPSTREAMS", "[{registry=\"quay.io\",url=\"http://127.0.0.1:5009\"}]");
            let c = Config::load(None, &Flags::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.upstreams[0].registry, "quay.io", "upstreams from the environment");
            jail.set_env("PORTCULLIS_UPSTREAMS", "[{registry=\"x\",url=\"ftp://x\"}]");
            assert!(Config::load(None, &Flags::default()).is_err());
            jail.set_env("PORTCULLIS_UPSTREAMS", "[]");
            jail.set_env("PORTCULLIS_NOPE", "1");
            assert!(Config::load(None, &Flags::default()).is_err(), "unknown env key");
            Ok(())
        });
    }

    /// Fuzzing the configuration loader: files of known and unknown keys with values of every
    /// type (and raw junk) load or fail with a message, never a panic; what loads validates and
    /// explains itself.
    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn arbitrary_files_load_or_explain() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config as Cases, TestRunner};
        let key = prop_oneof![
            Just("listen"),
            Just("public_url"),
            Just("upstreams_open"),
            Just("log.format"),
            Just("auth.token_ttl_secs"),
            Just("auth.org_creation"),
            Just("http.max_connections"),
            Just("http.header_timeout_secs"),
            Just("http.trusted_proxies"),
            Just("tls.cert"),
            Just("proxy.tag_ttl_secs"),
            Just("cache.max_bytes"),
            Just("nonsense.key"),
        ];
        let value = prop_oneof![
            Just("\"127.0.0.1:0\"".to_owned()),
            Just("\"localhost:99999\"".to_owned()),
            Just("-1".to_owned()),
            Just("0".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("true".to_owned()),
            Just("[\"10.0.0.0/8\", \"::1/200\"]".to_owned()),
            Just("{ a = 1 }".to_owned()),
            "\"\\PC{0,20}\"".prop_map(|s| s.replace(['\\', '"'], "")),
            "\\PC{0,20}",
        ];
        let file = proptest::collection::vec((key, value), 0..6);
        figment::Jail::expect_with(|jail| {
            let mut runner = TestRunner::new(Cases { cases: 300, failure_persistence: None, ..Cases::default() });
            runner
                .run(&file, |lines| {
                    let mut text = String::new();
                    for (k, v) in lines {
                        let (section, key) = k.split_once('.').map_or(("", k), |(s, k)| (s, k));
                        if !section.is_empty() {
                            text.push_str(&format!("[{section}]\n"));
                        }
                        text.push_str(&format!("{key} = {v}\n"));
                    }
                    jail.create_file("f.toml", &text).unwrap();
                    if let Ok(c) = Config::load(Some(Path::new("f.toml")), &Flags::default()) {
                        prop_assert!(c.listen_addr().is_ok());
                        prop_assert!(c.explained().is_ok());
                        let _ = c.upstreams();
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        });
    }
}
