//! `portcullis credential-provider`: the kubelet's image credential provider plugin
//! (`credentialprovider.kubelet.k8s.io/v1`), for service-account tokens (KEP-4412). The kubelet
//! writes a `CredentialProviderRequest` on standard input — the image, and the pod's service
//! account token for the audience its `CredentialProviderConfig` names — and reads a
//! `CredentialProviderResponse` on standard output. The plugin signs the token in at the
//! gateway first (so a token the gateway refuses fails here, with the gateway's reason, in the
//! kubelet's log), then answers with that token as the password of the user `workload` for every
//! registry the node sends through the gateway; containerd or CRI-O then sign in at the gateway
//! with it on each pull, where the gate decides for the pod's service account. Credentials are
//! cached no longer than the token lives.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The largest request read (a token and a few annotations).
const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// Credentials expire this long before the token does.
const MARGIN_SECS: i64 = 60;

pub struct Options {
    /// `https://gw.example.com`.
    pub gateway: String,
    /// The registries the node sends through the gateway (`docker.io` and `*.docker.io` always).
    pub registries: Vec<String>,
    /// The longest the kubelet may cache the credentials.
    pub max_cache_secs: i64,
    /// A CA certificate (PEM) for the gateway, besides the system's.
    pub ca: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: String,
    kind: String,
    image: String,
    #[serde(default)]
    service_account_token: String,
}

/// Reads the request from `input`, answers on standard output.
pub async fn run(o: &Options, input: impl Read) -> anyhow::Result<()> {
    let response = respond(o, input).await?;
    println!("{response}");
    Ok(())
}

async fn respond(o: &Options, input: impl Read) -> anyhow::Result<serde_json::Value> {
    let mut body = String::new();
    input.take(MAX_REQUEST_BYTES).read_to_string(&mut body).context("cannot read the request on standard input")?;
    let req: Request = serde_json::from_str(&body).context("the request is not a CredentialProviderRequest")?;
    if req.api_version != API_VERSION || req.kind != "CredentialProviderRequest" {
        bail!(
            "unsupported request {} {}: this plugin speaks {API_VERSION} CredentialProviderRequest",
            req.api_version,
            req.kind
        );
    }
    if req.service_account_token.is_empty() {
        bail!(
            "the request for {} carries no service account token: set tokenAttributes.serviceAccountTokenAudience in \
             the kubelet's CredentialProviderConfig (portcullis client-config writes it)",
            req.image
        );
    }
    let token = req.service_account_token;
    let expires = expiry(&token)?;
    sign_in(o, &token).await?;
    let gw = o.gateway.trim_end_matches('/');
    let host = gw.strip_prefix("https://").or_else(|| gw.strip_prefix("http://")).unwrap_or(gw);
    let keys = ["docker.io", "*.docker.io", host].into_iter().chain(o.registries.iter().map(String::as_str));
    let auth: BTreeMap<&str, serde_json::Value> =
        keys.map(|k| (k, json!({ "username": "workload", "password": token }))).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let cache = (expires - MARGIN_SECS - now).clamp(0, o.max_cache_secs.max(0));
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": format!("{cache}s"),
        "auth": auth,
    }))
}

/// The token's `exp` (not verified here: the gateway verifies the token).
fn expiry(token: &str) -> anyhow::Result<i64> {
    let payload = token.split('.').nth(1).context("the service account token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("the service account token is not a JWT")?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).context("the service account token is not a JWT")?;
    claims["exp"].as_i64().context("the service account token has no expiry (exp)")
}

/// Signs the token in at the gateway's `/token`, as containerd will.
async fn sign_in(o: &Options, token: &str) -> anyhow::Result<()> {
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = &o.ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).context("not a PEM certificate")?);
    }
    let url = format!("{}/token", o.gateway.trim_end_matches('/'));
    let form = [
        ("grant_type", "password"),
        ("username", "workload"),
        ("password", token),
        ("client_id", "portcullis-credential-provider"),
    ];
    let r = http.build()?.post(&url).form(&form).send().await.with_context(|| format!("{url} did not answer"))?;
    if r.status().is_success() {
        return Ok(());
    }
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let why = body["errors"][0]["message"].as_str().unwrap_or("no reason given");
    bail!("the gateway refused the pod's service account token ({status}): {why}")
}
