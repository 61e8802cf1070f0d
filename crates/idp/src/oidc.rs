//! OpenID Connect relying party, on `openidconnect`: discovery (cached; fetched again once when
//! an ID token names a key the cached JWKS lacks), the authorization code flow with PKCE, `state`
//! and `nonce`, and full ID-token verification — the signature with a key of the provider's JWKS
//! and one of the algorithms it announces (never `none`, never an HMAC keyed with something
//! public), `iss`, `aud`, `azp`, `exp`, `iat` and `nonce` — then the username and groups claims
//! from the verified token, or from the userinfo endpoint when the token lacks them. Every call
//! to the provider has a bounded wait.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};

/// `[auth.oidc]`, resolved.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    /// This server's `/auth/oidc/callback`, as the provider knows it.
    pub redirect_url: String,
    /// The longest wait for one request to the provider.
    pub timeout: Duration,
}

/// What the browser carries from [`Oidc::begin`] to [`Oidc::finish`] (in a signed cookie).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// Who signed in, from a verified ID token (and userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense: try again later.
    #[error("the identity provider cannot be reached: {0}")]
    Unavailable(String),
    /// The sign-in is refused (state, token, claims): never a session.
    #[error("{0}")]
    Refused(String),
}

fn refused(msg: impl Into<String>) -> OidcError {
    OidcError::Refused(msg.into())
}

/// An error of the HTTP client handed to `openidconnect`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// The client as discovery configures it: an authorization endpoint, and perhaps token and
/// userinfo endpoints.
type RelyingParty = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The most a response from the provider may hold.
const MAX_RESPONSE: usize = 1 << 20;

async fn send(http: &reqwest::Client, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let mut r = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut resp = openidconnect::http::Response::builder().status(r.status());
    for (k, v) in r.headers() {
        resp = resp.header(k, v);
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| HttpError(e.to_string()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE {
            return Err(HttpError(format!("a response over {MAX_RESPONSE} bytes")));
        }
    }
    resp.body(body).map_err(|e| HttpError(e.to_string()))
}

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    metadata: tokio::sync::RwLock<Option<Arc<CoreProviderMetadata>>>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Oidc, OidcError> {
        IssuerUrl::new(settings.issuer.clone()).map_err(|e| refused(format!("auth.oidc.issuer: {e}")))?;
        RedirectUrl::new(settings.redirect_url.clone()).map_err(|e| refused(format!("the callback URL: {e}")))?;
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer send us anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            .build()
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        Ok(Oidc { settings, http, metadata: tokio::sync::RwLock::new(None) })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The provider's metadata and keys, discovered once (again when `fresh`).
    async fn metadata(&self, fresh: bool) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        if !fresh && let Some(m) = self.metadata.read().await.clone() {
            return Ok(m);
        }
        let http = self.http.clone();
        let call = move |req: HttpRequest| {
            let http = http.clone();
            async move { send(&http, req).await }
        };
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| refused(e.to_string()))?;
        let m = CoreProviderMetadata::discover_async(issuer, &call)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery at {}: {}", self.settings.issuer, chain(&e))))?;
        let m = Arc::new(m);
        *self.metadata.write().await = Some(m.clone());
        Ok(m)
    }

    fn client(&self, meta: &CoreProviderMetadata) -> Result<RelyingParty, OidcError> {
        let redirect = RedirectUrl::new(self.settings.redirect_url.clone()).map_err(|e| refused(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            meta.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's authorization URL to send the browser to, and what it must bring back.
    pub async fn begin(&self) -> Result<(String, LoginState), OidcError> {
        let meta = self.metadata(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&meta)?;
        let mut req =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for s in self.settings.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        let saved = LoginState {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        };
        Ok((url.to_string(), saved))
    }

    /// Completes a sign-in from the callback's `code` and `state`.
    pub async fn finish(&self, code: &str, state: &str, saved: &LoginState) -> Result<Claims, OidcError> {
        if !constant_time_eq(state.as_bytes(), saved.state.as_bytes()) {
            return Err(refused("the sign-in's state does not match this browser's: start again"));
        }
        let meta = self.metadata(false).await?;
        let http = self.http.clone();
        let call = move |req: HttpRequest| {
            let http = http.clone();
            async move { send(&http, req).await }
        };
        let client = self.client(&meta)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| refused(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(saved.verifier.clone()))
            .request_async(&call)
            .await
            .map_err(|e| refused(format!("the provider refused the code: {}", chain(&e))))?;
        let id_token = token.id_token().ok_or_else(|| refused("the provider sent no ID token"))?;
        let nonce = Nonce::new(saved.nonce.clone());
        let mut meta = meta;
        let mut refetched = false;
        let claims = loop {
            let client = self.client(&meta)?;
            let verifier = self.verifier(&client, &meta);
            match id_token.claims(&verifier, &nonce) {
                Ok(c) => {
                    if let Some(expected) = c.access_token_hash() {
                        let alg = id_token.signing_alg().map_err(|e| refused(e.to_string()))?;
                        let key = id_token.signing_key(&verifier).map_err(|e| refused(e.to_string()))?;
                        let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                            .map_err(|e| refused(e.to_string()))?;
                        if actual != *expected {
                            return Err(refused("the ID token does not belong to the access token (at_hash)"));
                        }
                    }
                    break c.clone();
                }
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                    if !refetched =>
                {
                    // The provider may have rotated its keys since discovery.
                    refetched = true;
                    meta = self.metadata(true).await?;
                }
                Err(e) => return Err(refused(format!("the ID token is not valid: {}", chain(&e)))),
            }
        };
        let issuer = claims.issuer().to_string();
        let subject = claims.subject().to_string();
        let mut all = jwt_payload(&id_token.to_string())?;
        let wanted = [&self.settings.username_claim, &self.settings.groups_claim];
        if wanted.iter().any(|c| !all.contains_key(c.as_str()))
            && let Some(url) = meta.userinfo_endpoint()
        {
            let info = self.userinfo(url.as_str(), token.access_token().secret()).await?;
            if info.get("sub").and_then(|s| s.as_str()) != Some(subject.as_str()) {
                return Err(refused("the userinfo endpoint answered for another subject"));
            }
            for (k, v) in info {
                all.entry(k).or_insert(v);
            }
        }
        let username = match all.get(&self.settings.username_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(refused(format!("the {} claim is not a name", self.settings.username_claim))),
            None => return Err(refused(format!("the provider sent no {} claim", self.settings.username_claim))),
        };
        let groups = match all.get(&self.settings.groups_claim) {
            None => vec![],
            Some(serde_json::Value::Array(a)) => {
                a.iter().map(|g| g.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().ok_or_else(|| {
                    refused(format!("the {} claim is not a list of names", self.settings.groups_claim))
                })?
            }
            Some(_) => return Err(refused(format!("the {} claim is not a list of names", self.settings.groups_claim))),
        };
        Ok(Claims { issuer, subject, username, groups })
    }

    /// The ID-token verifier: the provider's announced algorithms without `none` and HMAC,
    /// and an `iat` no more than five minutes ahead or ten behind.
    fn verifier<'a>(
        &self,
        client: &'a RelyingParty,
        meta: &CoreProviderMetadata,
    ) -> openidconnect::core::CoreIdTokenVerifier<'a> {
        let algs: Vec<CoreJwsSigningAlgorithm> = meta
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    CoreJwsSigningAlgorithm::None
                        | CoreJwsSigningAlgorithm::HmacSha256
                        | CoreJwsSigningAlgorithm::HmacSha384
                        | CoreJwsSigningAlgorithm::HmacSha512
                )
            })
            .cloned()
            .collect();
        let algs = if algs.is_empty() { vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256] } else { algs };
        client.id_token_verifier().set_allowed_algs(algs).set_issue_time_verifier_fn(|iat| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let iat = iat.timestamp();
            if iat > now + 300 {
                Err("issued in the future".into())
            } else if iat < now - 600 {
                Err("issued more than ten minutes ago".into())
            } else {
                Ok(())
            }
        })
    }

    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        let r = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| OidcError::Unavailable(format!("userinfo: {e}")))?;
        if !r.status().is_success() {
            return Err(refused(format!("the userinfo endpoint answered {}", r.status())));
        }
        let body = r.bytes().await.map_err(|e| OidcError::Unavailable(format!("userinfo: {e}")))?;
        if body.len() > MAX_RESPONSE {
            return Err(refused("the userinfo answer is too large"));
        }
        serde_json::from_slice(&body).map_err(|_| refused("the userinfo endpoint did not answer a JSON object"))
    }
}

/// The claims of a compact JWT whose signature was verified already.
fn jwt_payload(jwt: &str) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
    let payload = jwt.split('.').nth(1).ok_or_else(|| refused("the ID token is not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| refused("the ID token's payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| refused("the ID token's payload is not a JSON object"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
