//! The client side of pull-through: talks to other registries (Docker Hub, ghcr.io, a local
//! CNCF distribution...) for `portcullis_core::proxy`. Per upstream: the distribution token dance
//! (anonymous or with configured credentials, tokens cached until they expire), Basic auth when
//! asked for, retries with backoff before the first byte of idempotent requests, connect and
//! read timeouts, a concurrency limit, and `429 Retry-After` passed back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use oci::source::{DOCKER_HUB, UpstreamRepo};
use oci::{ErrorCode, manifest};
use portcullis_core::Error;
use portcullis_core::model::Referrer;
use portcullis_core::ports::{FetchedBlob, FetchedManifest, UpstreamRegistry};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::Semaphore;

pub mod hub;
mod listing;

/// One configured upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The canonical registry name clients and policy use (`docker.io`).
    pub registry: String,
    /// Where it is really fetched from (`https://registry-1.docker.io`).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Client-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Proxy registries that are not configured (as `https://<host>`).
    pub open: bool,
    /// Concurrent requests per upstream.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// Longest wait for response headers.
    pub header_timeout: Duration,
    /// Longest silence while reading a body.
    pub read_timeout: Duration,
    /// Attempts after the first, for idempotent requests that fail before any byte.
    pub retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            open: false,
            concurrency: 32,
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}

/// The default upstream list: Docker Hub.
pub fn default_upstreams() -> Vec<UpstreamConfig> {
    vec![UpstreamConfig {
        registry: DOCKER_HUB.into(),
        url: "https://registry-1.docker.io".into(),
        username: None,
        password: None,
    }]
}

struct Upstream {
    config: UpstreamConfig,
    base: String,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    basic: std::sync::atomic::AtomicBool,
    slots: Arc<Semaphore>,
}

pub struct Client {
    http: reqwest::Client,
    settings: Settings,
    upstreams: Mutex<HashMap<String, Arc<Upstream>>>,
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn unavailable(registry: &str, what: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("upstream registry {registry} is unavailable: {what}"))
}

/// Why a request never got an answer, in the words an administrator searches for: "timed out",
/// or the innermost cause ("Connection refused (os error 111)", "invalid peer certificate:
/// UnknownIssuer", a DNS failure), not reqwest's "error sending request for url".
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let what = if e.is_connect() { "cannot connect" } else { "request failed" };
    format!("{what}: {inner}")
}

/// Parses `Bearer realm="...",service="...",scope="..."` into its parameters.
fn challenge_params(h: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else { break };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (value, tail) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_owned(), &q[end + 1..]),
                None => (q.to_owned(), ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (v[..end].trim().to_owned(), &v[end..]),
                None => (v.trim().to_owned(), ""),
            }
        };
        params.insert(k, value);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

fn retry_after(h: &HeaderMap) -> Option<u64> {
    h.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

impl Client {
    pub fn new(configs: Vec<UpstreamConfig>, settings: Settings) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .pool_max_idle_per_host(settings.concurrency)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::storage_from("cannot build the HTTP client", e))?;
        let c = Client { http, settings, upstreams: Mutex::default() };
        for cfg in configs {
            c.add(cfg);
        }
        Ok(c)
    }

    fn add(&self, config: UpstreamConfig) -> Arc<Upstream> {
        let u = Arc::new(Upstream {
            base: config.url.trim_end_matches('/').to_owned(),
            config,
            tokens: Mutex::default(),
            basic: Default::default(),
            slots: Arc::new(Semaphore::new(self.settings.concurrency.max(1))),
        });
        if let Ok(mut m) = self.upstreams.lock() {
            m.insert(u.config.registry.clone(), u.clone());
        }
        u
    }

    fn upstream(&self, registry: &str) -> Result<Arc<Upstream>, Error> {
        if let Some(u) = self.upstreams.lock().ok().and_then(|m| m.get(registry).cloned()) {
            return Ok(u);
        }
        if !self.settings.open {
            return Err(Error::Registry(
                ErrorCode::NameUnknown,
                format!("registry {registry} is not configured as an upstream here"),
            ));
        }
        Ok(self.add(UpstreamConfig {
            registry: registry.into(),
            url: format!("https://{registry}"),
            username: None,
            password: None,
        }))
    }

    async fn fetch_token(&self, u: &Upstream, params: &HashMap<String, String>, scope: &str) -> Result<(), Error> {
        let realm =
            params.get("realm").ok_or_else(|| unavailable(&u.config.registry, "Bearer challenge without realm"))?;
        let mut q: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(s) = params.get("service") {
            q.push(("service", s));
        }
        let mut rb = self.http.get(realm).query(&q);
        if let (Some(user), Some(pw)) = (&u.config.username, &u.config.password) {
            rb = rb.basic_auth(user, Some(pw));
        }
        let resp = tokio::time::timeout(self.settings.header_timeout, rb.send())
            .await
            .map_err(|_| unavailable(&u.config.registry, "token endpoint timed out"))?
            .map_err(|e| unavailable(&u.config.registry, format!("token endpoint: {}", cause(&e))))?;
        if !resp.status().is_success() {
            return Err(Error::Denied(format!(
                "upstream registry {} refused a token for {scope} ({})",
                u.config.registry,
                resp.status()
            )));
        }
        let body = bounded_body(resp, 64 * 1024)
            .await
            .map_err(|e| unavailable(&u.config.registry, format!("token response: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(&u.config.registry, format!("token response: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| unavailable(&u.config.registry, "token response without token"))?;
        let ttl = v["expires_in"].as_u64().unwrap_or(60).max(20);
        if let Ok(mut t) = u.tokens.lock() {
            t.insert(scope.to_owned(), (token.to_owned(), Instant::now() + Duration::from_secs(ttl - 10)));
        }
        Ok(())
    }

    /// Sends a request with authentication and retries; returns the final response, whatever
    /// its status, except for 429 and persistent 5xx, which become errors.
    async fn send(
        &self,
        u: &Upstream,
        method: Method,
        path: &str,
        scope: &str,
        accept: &str,
    ) -> Result<Response, Error> {
        let url = format!("{}/v2/{path}", u.base);
        let mut authed = false;
        let mut attempt = 0;
        loop {
            let mut rb = self.http.request(method.clone(), &url).header(ACCEPT, accept);
            let token = u
                .tokens
                .lock()
                .ok()
                .and_then(|t| t.get(scope).filter(|(_, exp)| *exp > Instant::now()).map(|(t, _)| t.clone()));
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            } else if u.basic.load(std::sync::atomic::Ordering::Relaxed)
                && let (Some(user), Some(pw)) = (&u.config.username, &u.config.password)
            {
                rb = rb.basic_auth(user, Some(pw));
            }
            let sent = tokio::time::timeout(self.settings.header_timeout, rb.send()).await;
            let resp = match sent {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if attempt < self.settings.retries => {
                    tracing::debug!(registry = %u.config.registry, error = %e, "upstream request failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await;
                    continue;
                }
                Ok(Err(e)) => return Err(unavailable(&u.config.registry, cause(&e))),
                Err(_) if attempt < self.settings.retries => {
                    attempt += 1;
                    continue;
                }
                Err(_) => return Err(unavailable(&u.config.registry, "no response in time")),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authed {
                authed = true;
                let ch = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let (scheme, params) = challenge_params(&ch);
                match scheme.as_str() {
                    "bearer" => self.fetch_token(u, &params, scope).await?,
                    "basic" if u.config.username.is_some() => u.basic.store(true, std::sync::atomic::Ordering::Relaxed),
                    _ => return Ok(resp),
                }
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Error::Throttled {
                    retry_after: retry_after(resp.headers()),
                    message: format!("upstream registry {} answered 429 Too Many Requests", u.config.registry),
                });
            }
            if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                if attempt < self.settings.retries {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await;
                    continue;
                }
                return Err(unavailable(&u.config.registry, format!("it answered {status}")));
            }
            return Ok(resp);
        }
    }

    /// A listing (`tags/list`, `referrers/...`) of the repository: its body and whether a `Link`
    /// to a next page came with it, or `None` for 404.
    async fn listing(&self, repo: &UpstreamRepo, what: &str) -> Result<Option<(bytes::Bytes, bool)>, Error> {
        let u = self.upstream(&repo.registry)?;
        let _slot = u.slots.acquire().await.map_err(|e| Error::storage_from("", e))?;
        let scope = format!("repository:{}:pull", repo.path);
        let resp = self.send(&u, Method::GET, &format!("{}/{what}", repo.path), &scope, "application/json").await?;
        match resp.status() {
            StatusCode::OK => {
                let more = resp.headers().get(reqwest::header::LINK).is_some();
                let body = bounded_body(resp, listing::MAX_LISTING_BYTES)
                    .await
                    .map_err(|e| unavailable(&u.config.registry, format!("listing: {e}")))?;
                Ok(Some((body, more)))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(Self::refused(&u, repo, s)),
            s => Err(unavailable(&u.config.registry, format!("listing request answered {s}"))),
        }
    }

    fn refused(u: &Upstream, repo: &UpstreamRepo, status: StatusCode) -> Error {
        Error::Denied(format!(
            "upstream registry {} refused access to {} ({status}): the image may be private or not exist, or the upstream needs credentials",
            u.config.registry, repo.path
        ))
    }
}

#[async_trait]
impl UpstreamRegistry for Client {
    fn knows(&self, registry: &str) -> bool {
        self.settings.open || self.upstreams.lock().map(|m| m.contains_key(registry)).unwrap_or(false)
    }

    async fn manifest(&self, repo: &UpstreamRepo, reference: &str) -> Result<FetchedManifest, Error> {
        let u = self.upstream(&repo.registry)?;
        let _slot = u.slots.acquire().await.map_err(|e| Error::storage_from("", e))?;
        let scope = format!("repository:{}:pull", repo.path);
        let resp = self
            .send(&u, Method::GET, &format!("{}/manifests/{reference}", repo.path), &scope, MANIFEST_ACCEPT)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let digest =
                    resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let media_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                if resp.content_length().is_some_and(|l| l > manifest::MAX_MANIFEST_BYTES as u64) {
                    return Err(unavailable(&u.config.registry, "manifest too large"));
                }
                let content = bounded_body(resp, manifest::MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| unavailable(&u.config.registry, format!("manifest body: {e}")))?;
                Ok(FetchedManifest { digest, media_type, content })
            }
            StatusCode::NOT_FOUND => Err(Error::Registry(
                ErrorCode::ManifestUnknown,
                format!("{}:{reference} does not exist at {}", repo.path, u.config.registry),
            )),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(Self::refused(&u, repo, s)),
            s => Err(unavailable(&u.config.registry, format!("manifest request answered {s}"))),
        }
    }

    async fn manifest_digest(&self, repo: &UpstreamRepo, reference: &str) -> Result<Option<String>, Error> {
        let u = self.upstream(&repo.registry)?;
        let _slot = u.slots.acquire().await.map_err(|e| Error::storage_from("", e))?;
        let scope = format!("repository:{}:pull", repo.path);
        let resp = self
            .send(&u, Method::HEAD, &format!("{}/manifests/{reference}", repo.path), &scope, MANIFEST_ACCEPT)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                Ok(resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned))
            }
            StatusCode::NOT_FOUND => Err(Error::Registry(
                ErrorCode::ManifestUnknown,
                format!("{}:{reference} does not exist at {}", repo.path, u.config.registry),
            )),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(Self::refused(&u, repo, s)),
            s => Err(unavailable(&u.config.registry, format!("manifest HEAD answered {s}"))),
        }
    }

    async fn blob(&self, repo: &UpstreamRepo, digest: &str) -> Result<FetchedBlob, Error> {
        let u = self.upstream(&repo.registry)?;
        let slot = u.slots.clone().acquire_owned().await.map_err(|e| Error::storage_from("", e))?;
        let scope = format!("repository:{}:pull", repo.path);
        let resp = self.send(&u, Method::GET, &format!("{}/blobs/{digest}", repo.path), &scope, "*/*").await?;
        match resp.status() {
            StatusCode::OK => {
                let size = resp
                    .content_length()
                    .ok_or_else(|| unavailable(&u.config.registry, "blob response without Content-Length"))?;
                let body = resp.bytes_stream().map_err(std::io::Error::other);
                // The concurrency slot is held until the body is read or dropped.
                let body = futures_util::stream::unfold((Box::pin(body), Some(slot)), |(mut b, slot)| async move {
                    use futures_util::StreamExt;
                    b.next().await.map(|item| (item, (b, slot)))
                });
                Ok(FetchedBlob { size, body: Box::pin(body) })
            }
            StatusCode::NOT_FOUND => Err(Error::Registry(
                ErrorCode::BlobUnknown,
                format!("blob {digest} does not exist at {}", u.config.registry),
            )),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(Self::refused(&u, repo, s)),
            s => Err(unavailable(&u.config.registry, format!("blob request answered {s}"))),
        }
    }

    async fn tags(
        &self,
        repo: &UpstreamRepo,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool), Error> {
        let what = format!("tags/list{}", listing::tags_query(n, last));
        match self.listing(repo, &what).await? {
            Some((body, more)) => listing::tags(&body)
                .map(|tags| (tags, more))
                .ok_or_else(|| unavailable(&repo.registry, "the tags list is not valid JSON")),
            None => Err(Error::Registry(
                ErrorCode::NameUnknown,
                format!("{} does not exist at {}", repo.path, repo.registry),
            )),
        }
    }

    async fn referrers(
        &self,
        repo: &UpstreamRepo,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>, Error> {
        let filter = artifact_type.map(|t| format!("?artifactType={}", listing::escape(t))).unwrap_or_default();
        match self.listing(repo, &format!("referrers/{digest}{filter}")).await? {
            Some((body, _)) => listing::referrers(&body)
                .map(Some)
                .ok_or_else(|| unavailable(&repo.registry, "the referrers index is not valid JSON")),
            None => Ok(None),
        }
    }
}

/// A response body read whole, refused once it passes `max` bytes: an upstream that sends no
/// `Content-Length` and never stops costs at most `max` bytes of memory.
async fn bounded_body(resp: reqwest::Response, max: usize) -> Result<bytes::Bytes, String> {
    use futures_util::StreamExt;
    let mut body = resp.bytes_stream();
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > max {
            return Err(format!("larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let (s, p) = challenge_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let (s, p) = challenge_params(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("basic", "Registry Realm"));
        let (s, p) = challenge_params("Bearer realm=http://x/token, service=reg");
        assert_eq!((s.as_str(), p["realm"].as_str(), p["service"].as_str()), ("bearer", "http://x/token", "reg"));
        assert_eq!(challenge_params("").0, "");
    }

    #[test]
    fn unknown_registries_are_refused_unless_open() {
        let c = Client::new(default_upstreams(), Settings::default()).unwrap();
        assert!(c.knows("docker.io") && !c.knows("ghcr.io"));
        assert!(c.upstream("ghcr.io").is_err());
        let open = Client::new(vec![], Settings { open: true, ..Settings::default() }).unwrap();
        assert!(open.knows("ghcr.io"));
        assert_eq!(open.upstream("ghcr.io").unwrap().base, "https://ghcr.io");
    }
}
