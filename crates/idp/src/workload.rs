//! Workload identity token issuers the administrator trusts (`[[auth.workload_issuers]]`, and
//! those added at run time through the API, stored and reloaded by every replica): a
//! Kubernetes cluster's service-account issuer, GitHub Actions', GitLab CI's. Verifies a token
//! as `ports::WorkloadVerifier` asks: the issuer by its exact `iss` URL; the signature with a key
//! of the issuer's JWKS chosen by `kid` and an algorithm the issuer allows (RS256 or ES256;
//! never `none`, never HMAC); `aud` the gateway's; `exp`, `nbf` and `iat` with a minute of
//! leeway; a lifetime (`exp - iat`) no longer than the issuer's maximum. Keys come from a JWKS
//! file or document (air-gapped clusters export `/openid/v1/jwks`) or from discovery
//! (`<issuer>/.well-known/openid-configuration` → `jwks_uri`); they are cached, fetched again
//! when a token names a key not held (at most once per ten seconds per issuer), and kept while
//! the issuer cannot be reached: a 503 only when no key was ever had.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_core::error::{Error, Result};
use portcullis_core::model::{WorkloadIssuer, WorkloadIssuerView};
use portcullis_core::ports::{WorkloadIdentity, WorkloadVerifier};
use serde::Deserialize;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: i64 = 60;
/// The shortest time between two fetches of an issuer's keys.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One trusted issuer, as configured.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// Its name here: workload rules and account names use it (`k8s:system:serviceaccount:…`).
    pub name: String,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` a token must carry (the gateway's).
    pub audience: String,
    /// Where its keys come from.
    pub keys: KeySource,
    /// RS256 and/or ES256.
    pub algorithms: Vec<Algorithm>,
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime_secs: i64,
    /// The longest wait for the issuer.
    pub timeout: Duration,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
    Discovery,
    /// A JWKS file, read again when a token names a key not held.
    File(PathBuf),
    /// A JWKS document given with the issuer (added through the API).
    Inline(serde_json::Value),
}

impl KeySource {
    fn name(&self) -> &'static str {
        match self {
            KeySource::Discovery => "discovery",
            KeySource::File(_) => "file",
            KeySource::Inline(_) => "inline",
        }
    }
}

/// The algorithms an issuer may be configured with.
pub fn algorithm(name: &str) -> std::result::Result<Algorithm, String> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(format!("algorithm {other:?} is not accepted for workload tokens: use RS256 or ES256")),
    }
}

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
}

struct Issuer {
    s: IssuerSettings,
    /// As added through the API (`None`: configured).
    added: Option<WorkloadIssuer>,
    keys: Mutex<Keys>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// The trusted issuers.
pub struct Issuers {
    configured: Vec<Arc<Issuer>>,
    added: RwLock<Vec<Arc<Issuer>>>,
    /// The audience of an added issuer that names none (the gateway's service name).
    audience: String,
    http: reqwest::Client,
}

/// The longest lifetime an added issuer may accept (a year) and the default (a day).
const MAX_LIFETIME_SECS: i64 = 365 * 86_400;
const DEFAULT_LIFETIME_SECS: i64 = 86_400;
/// The longest wait for an added issuer.
const ADDED_TIMEOUT: Duration = Duration::from_secs(10);

fn refused(msg: impl Into<String>) -> Error {
    Error::Unauthenticated(msg.into())
}

impl Issuer {
    fn new(s: IssuerSettings, added: Option<WorkloadIssuer>) -> std::result::Result<Issuer, String> {
        if s.algorithms.is_empty() {
            return Err(format!("workload issuer {}: no algorithm", s.name));
        }
        if s.name.is_empty() || s.name.contains(':') {
            return Err(format!("workload issuer name {:?}: a short name without ':'", s.name));
        }
        let set = match &s.keys {
            KeySource::File(f) => read_jwks(f).map_err(|e| format!("workload issuer {}: {e}", s.name))?,
            KeySource::Inline(doc) => usable_jwks(doc).map_err(|e| format!("workload issuer {}: {e}", s.name))?,
            KeySource::Discovery => JwkSet { keys: vec![] },
        };
        Ok(Issuer { s, added, keys: Mutex::new(Keys { set, fetched: None }), fetching: Default::default() })
    }
}

/// A JWKS document of keys that can check RS256 or ES256 signatures (at least one).
fn usable_jwks(doc: &serde_json::Value) -> std::result::Result<JwkSet, String> {
    let set: JwkSet = serde_json::from_value(doc.clone()).map_err(|e| format!("not a JWKS: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS has no key".into());
    }
    for k in &set.keys {
        if !matches!(k.algorithm, AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)) {
            return Err(format!("key {:?} is not an RSA or EC public key", k.common.key_id));
        }
        DecodingKey::from_jwk(k).map_err(|e| format!("key {:?} cannot check signatures: {e}", k.common.key_id))?;
    }
    Ok(set)
}

impl Issuers {
    /// Reads the JWKS files now, so that a bad one stops the start. `audience` is the one of
    /// added issuers that name none.
    pub fn new(list: Vec<IssuerSettings>, audience: &str) -> std::result::Result<Issuers, String> {
        let configured =
            list.into_iter().map(|s| Issuer::new(s, None).map(Arc::new)).collect::<std::result::Result<_, _>>()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Issuers { configured, added: RwLock::new(Vec::new()), audience: audience.to_owned(), http })
    }

    fn added(&self) -> Vec<Arc<Issuer>> {
        self.added.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every trusted issuer, the configured ones first.
    fn all(&self) -> Vec<Arc<Issuer>> {
        self.configured.iter().cloned().chain(self.added()).collect()
    }

    /// The settings an added issuer is verified with.
    fn settings(i: &WorkloadIssuer) -> std::result::Result<IssuerSettings, String> {
        let algorithms = i.algorithms.iter().map(|a| algorithm(a)).collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(IssuerSettings {
            name: i.name.clone(),
            issuer: i.issuer.clone(),
            audience: i.audience.clone().unwrap_or_default(),
            keys: i.jwks.clone().map(KeySource::Inline).unwrap_or(KeySource::Discovery),
            algorithms,
            max_lifetime_secs: i.max_token_lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS),
            timeout: ADDED_TIMEOUT,
        })
    }

    /// The key `kid` of `issuer`, fetched again when it is not held (or no `kid` and one key).
    async fn key(&self, issuer: &Issuer, kid: Option<&str>) -> Result<Jwk> {
        if let Some(k) = held(issuer, kid) {
            return Ok(k);
        }
        let _one = issuer.fetching.lock().await;
        if let Some(k) = held(issuer, kid) {
            return Ok(k);
        }
        let recently = issuer
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fetched
            .is_some_and(|t| t.elapsed() < REFETCH_AFTER);
        if !recently {
            let fetched = match &issuer.s.keys {
                KeySource::File(f) => read_jwks(f).map_err(Error::Unavailable),
                KeySource::Inline(doc) => usable_jwks(doc).map_err(Error::Unavailable),
                KeySource::Discovery => self.discover(&issuer.s).await,
            };
            let mut keys = issuer.keys.lock().unwrap_or_else(PoisonError::into_inner);
            keys.fetched = Some(Instant::now());
            match fetched {
                Ok(set) => keys.set = set,
                Err(e) if keys.set.keys.is_empty() => {
                    return Err(Error::Unavailable(format!(
                        "the keys of workload issuer {} cannot be had: {e}",
                        issuer.s.name
                    )));
                }
                Err(e) => tracing::warn!(issuer = %issuer.s.name, "keeping the keys held: {e}"),
            }
        }
        held(issuer, kid).ok_or_else(|| {
            refused(format!(
                "the token's key {} is not one of workload issuer {}'s keys",
                kid.unwrap_or("(no kid)"),
                issuer.s.name
            ))
        })
    }

    async fn discover(&self, s: &IssuerSettings) -> Result<JwkSet> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", s.issuer.trim_end_matches('/'));
        let d: Discovery = serde_json::from_slice(&self.get(&url, s.timeout).await?)
            .map_err(|e| Error::Unavailable(format!("{url}: not an OpenID discovery document: {e}")))?;
        if d.issuer != s.issuer {
            return Err(Error::Unavailable(format!("{url} names the issuer {:?}, not {:?}", d.issuer, s.issuer)));
        }
        let body = self.get(&d.jwks_uri, s.timeout).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Unavailable(format!("{}: not a JWKS: {e}", d.jwks_uri)))
    }

    async fn get(&self, url: &str, timeout: Duration) -> Result<Vec<u8>> {
        let fail = |e: String| Error::Unavailable(format!("{url}: {e}"));
        let mut r = self.http.get(url).timeout(timeout).send().await.map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
        }
        Ok(body)
    }
}

fn held(issuer: &Issuer, kid: Option<&str>) -> Option<Jwk> {
    let keys = issuer.keys.lock().unwrap_or_else(PoisonError::into_inner);
    match kid {
        Some(kid) => keys.set.find(kid).cloned(),
        None if keys.set.keys.len() == 1 => keys.set.keys.first().cloned(),
        None => None,
    }
}

fn read_jwks(path: &std::path::Path) -> std::result::Result<JwkSet, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: not a JWKS: {e}", path.display()))
}

/// The claims read from a token before it is verified: only to pick the issuer.
#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

/// The claims of a verified token that rules and checks read.
#[derive(Deserialize)]
struct Verified {
    sub: String,
    exp: i64,
    iat: Option<i64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<Kubernetes>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Kubernetes {
    namespace: Option<String>,
    serviceaccount: Option<Named>,
    pod: Option<Named>,
    node: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[async_trait]
impl WorkloadVerifier for Issuers {
    async fn verify(&self, token: &str, now: i64) -> Result<WorkloadIdentity> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refused(format!("not a workload identity token (a signed JWT with RS256 or ES256): {e}")))?;
        let payload = token.split('.').nth(1).unwrap_or_default();
        let unverified: Unverified = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| refused("the token's claims are not JSON"))?;
        let iss = unverified.iss.ok_or_else(|| refused("the token names no issuer (iss)"))?;
        let issuer = self
            .all()
            .into_iter()
            .find(|i| i.s.issuer == iss)
            .ok_or_else(|| refused(format!("the token's issuer {iss:?} is not a trusted workload issuer here")))?;
        let issuer = issuer.as_ref();
        if !issuer.s.algorithms.contains(&header.alg) {
            return Err(refused(format!(
                "workload issuer {} does not sign with {:?} here (it may use {:?})",
                issuer.s.name, header.alg, issuer.s.algorithms
            )));
        }
        let jwk = self.key(issuer, header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| refused(format!("workload issuer {}'s key cannot check this token: {e}", issuer.s.name)))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&issuer.s.audience]);
        v.set_issuer(&[&issuer.s.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_SECS as u64;
        // `exp` and `nbf` are checked below against the service's clock, not the system's.
        v.validate_exp = false;
        v.validate_nbf = false;
        let c = jsonwebtoken::decode::<Verified>(token, &key, &v)
            .map_err(|e| refused(format!("workload issuer {}: the token is refused: {e}", issuer.s.name)))?
            .claims;
        if c.exp + LEEWAY_SECS < now {
            return Err(refused(format!("the workload token expired at {}", c.exp)));
        }
        if let Some(nbf) = c.rest.get("nbf").and_then(|n| n.as_i64()).filter(|n| *n > now + LEEWAY_SECS) {
            return Err(refused(format!("the workload token is not valid before {nbf}")));
        }
        let iat = c.iat.unwrap_or(now);
        if iat > now + LEEWAY_SECS {
            return Err(refused("the workload token was issued in the future"));
        }
        if c.exp - iat > issuer.s.max_lifetime_secs {
            return Err(refused(format!(
                "the workload token lives {} s, longer than workload issuer {} allows ({} s)",
                c.exp - iat,
                issuer.s.name,
                issuer.s.max_lifetime_secs
            )));
        }
        if c.sub.is_empty() {
            return Err(refused("the workload token names no subject (sub)"));
        }
        let mut claims: BTreeMap<String, String> = c
            .rest
            .iter()
            .filter(|(k, _)| policy::WORKLOAD_CLAIMS.contains(&k.as_str()))
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect();
        claims.insert("sub".into(), c.sub.clone());
        if let Some(k) = c.kubernetes {
            let named = [("serviceaccount", k.serviceaccount), ("pod", k.pod), ("node", k.node)];
            claims.extend(k.namespace.map(|n| ("namespace".to_owned(), n)));
            claims.extend(named.into_iter().filter_map(|(key, n)| n.map(|n| (key.to_owned(), n.name))));
        }
        Ok(WorkloadIdentity { issuer: issuer.s.name.clone(), subject: c.sub, claims, expires_at: c.exp })
    }

    fn issuers(&self) -> Vec<String> {
        self.all().iter().map(|i| i.s.name.clone()).collect()
    }

    fn list(&self) -> Vec<WorkloadIssuerView> {
        self.all()
            .iter()
            .map(|i| WorkloadIssuerView {
                issuer: WorkloadIssuer {
                    name: i.s.name.clone(),
                    issuer: i.s.issuer.clone(),
                    audience: Some(i.s.audience.clone()),
                    algorithms: i.s.algorithms.iter().map(|a| format!("{a:?}")).collect(),
                    max_token_lifetime_secs: Some(i.s.max_lifetime_secs),
                    jwks: i.added.as_ref().and_then(|a| a.jwks.clone()),
                },
                source: if i.added.is_some() { "api" } else { "config" },
                keys_from: i.s.keys.name(),
                keys_held: i.keys.lock().unwrap_or_else(PoisonError::into_inner).set.keys.len(),
            })
            .collect()
    }

    fn check(&self, mut i: WorkloadIssuer) -> Result<WorkloadIssuer> {
        let invalid = |m: String| Error::Invalid(format!("workload issuer {:?}: {m}", i.name));
        if i.name.is_empty()
            || i.name.len() > 64
            || !i.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid("a name of 1 to 64 letters, digits, '-', '_' or '.'".into()));
        }
        match reqwest::Url::parse(&i.issuer) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some() => {}
            _ => return Err(invalid(format!("the issuer {:?} is not an http(s) URL", i.issuer))),
        }
        if i.algorithms.is_empty() {
            i.algorithms = vec!["RS256".into(), "ES256".into()];
        }
        i.algorithms.sort();
        i.algorithms.dedup();
        let lifetime = *i.max_token_lifetime_secs.get_or_insert(DEFAULT_LIFETIME_SECS);
        if !(1..=MAX_LIFETIME_SECS).contains(&lifetime) {
            return Err(invalid(format!("max_token_lifetime_secs must be 1 to {MAX_LIFETIME_SECS}")));
        }
        if i.audience.as_deref().is_none_or(str::is_empty) {
            i.audience = Some(self.audience.clone());
        }
        let settings = Issuers::settings(&i).map_err(invalid)?;
        Issuer::new(settings, None).map_err(Error::Invalid)?;
        for o in self.all() {
            if o.s.name == i.name || o.s.issuer == i.issuer {
                return Err(Error::Conflict(format!(
                    "workload issuer {} (iss {}) is trusted already; remove it first",
                    o.s.name, o.s.issuer
                )));
            }
        }
        Ok(i)
    }

    fn set_added(&self, list: Vec<WorkloadIssuer>) {
        let held = self.added();
        let mut added = Vec::with_capacity(list.len());
        for i in list {
            if let Some(same) = held.iter().find(|h| h.added.as_ref() == Some(&i)) {
                added.push(same.clone());
                continue;
            }
            // A configured issuer of the same name or iss wins.
            if self.configured.iter().any(|c| c.s.name == i.name || c.s.issuer == i.issuer) {
                tracing::warn!(issuer = %i.name, "an added workload issuer is configured too; the configuration's is used");
                continue;
            }
            match Issuers::settings(&i).and_then(|s| Issuer::new(s, Some(i.clone()))) {
                Ok(issuer) => added.push(Arc::new(issuer)),
                Err(e) => tracing::error!(issuer = %i.name, "an added workload issuer cannot be used: {e}"),
            }
        }
        *self.added.write().unwrap_or_else(PoisonError::into_inner) = added;
    }
}
