//! API commands of the CLI: thin calls to `/api/v1` of a running server with the `[client]`
//! settings (`PORTCULLIS_CLIENT__SERVER`, `__USERNAME`, `__PASSWORD`), printing the JSON
//! answer. The rules live in the server; these commands only carry requests.

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::Config;

pub struct Api {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Api {
    pub fn new(config: &Config) -> anyhow::Result<Api> {
        let c = &config.client;
        let Some(password) = c.password.as_ref().map(|p| p.0.clone()) else {
            bail!(
                "not signed in: run `portcullis login --server URL --username NAME` first (or set \
                 PORTCULLIS_CLIENT__PASSWORD, or [client] password)"
            );
        };
        Ok(Api { http: reqwest::Client::new(), base: config.client_server(), user: c.username.clone(), password })
    }

    /// Sends a request and prints the JSON answer; a non-2xx answer is an error with its message.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let v = self.quiet(method, path, body).await?;
        if !v.is_null() {
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Ok(v)
    }

    /// [`Api::call`] without printing.
    pub async fn quiet(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut rb = self.http.request(m, format!("{}{path}", self.base)).basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = r.status();
        let text = r.text().await?;
        let v: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if !status.is_success() {
            bail!("{status}: {}", v["message"].as_str().unwrap_or(&v.to_string()));
        }
        Ok(v)
    }
}

/// `check` answered "denied": already said on standard output, so the command just fails.
#[derive(Debug)]
pub struct Denied;

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("denied")
    }
}

impl std::error::Error for Denied {}

/// `check`'s answer for a person: one line, then each step of the gate and each org's part.
pub fn explain_check(v: &Value, asked: &str) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let (user, image, reference) = (s("user"), s("image"), s("reference"));
    let shown = if reference.starts_with("sha256:") || reference.starts_with("sha512:") {
        format!("{image}@{reference}")
    } else {
        format!("{image}:{reference}")
    };
    let mut out = match v["effect"].as_str() {
        Some("allow") => {
            let why = match &v["exception"] {
                Value::Object(e) => {
                    let expires = e
                        .get("expires_at")
                        .and_then(Value::as_i64)
                        .map(|t| format!(", expires {}", portcullis_core::clock::date(t)))
                        .unwrap_or_default();
                    format!(
                        "allowed by exception {} of {} ({}){expires}",
                        e["id"],
                        e["org"].as_str().unwrap_or_default(),
                        e["reason"].as_str().unwrap_or_default()
                    )
                }
                _ => match v["orgs"].as_array().and_then(|o| o.iter().find(|s| s["outcome"] == "allow (owner bypass)"))
                {
                    Some(o) => format!("allowed as an owner of {}", o["org"].as_str().unwrap_or_default()),
                    None => "allowed".to_owned(),
                },
            };
            format!("{user} may pull {shown}: {why}\n")
        }
        Some("would_deny") => format!("{user} may pull {shown}, in a dry run only: {}\n", s("message")),
        _ => format!("{user} may not pull {shown}: {}\n", s("message")),
    };
    if image.is_empty() {
        out = format!("{asked}: {}\n", s("message"));
    }
    for step in v["trace"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<10} {:<10} {}\n",
            step["step"].as_str().unwrap_or_default(),
            step["outcome"].as_str().unwrap_or_default(),
            step["detail"].as_str().unwrap_or_default()
        ));
    }
    for o in v["orgs"].as_array().into_iter().flatten() {
        let restricted = if o["restrictions_enabled"] == true {
            format!("restrictions on ({})", o["mode"].as_str().unwrap_or_default())
        } else {
            "restrictions off".to_owned()
        };
        out.push_str(&format!(
            "  org {}: {} image, {restricted}: {}\n",
            o["org"].as_str().unwrap_or_default(),
            o["category"].as_str().unwrap_or_default(),
            o["outcome"].as_str().unwrap_or_default()
        ));
    }
    out
}

pub use oci::endpoint::percent_encode as enc;
