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
            bail!("set the client password or access token: PORTCULLIS_CLIENT__PASSWORD or [client] password");
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

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
