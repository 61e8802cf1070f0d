//! `portcullis health`: asks a server's `/healthz` and exits 0 only when it answers 200 — the
//! container image's HEALTHCHECK (the image has no shell and no curl). The default URL is this
//! configuration's own listen address; a certificate is not checked on loopback, where the
//! server is this machine's own.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;

pub async fn check(config: &Config, url: Option<String>) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| config.own_url());
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    let loopback = ["https://127.0.0.1", "https://[::1]", "https://localhost"].iter().any(|p| url.starts_with(p));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .tls_danger_accept_invalid_certs(loopback)
        .build()
        .context("cannot make an HTTP client")?;
    let r = http.get(&url).send().await.with_context(|| format!("{url} did not answer"))?;
    if r.status() != 200 {
        bail!("{url} answered {}", r.status());
    }
    println!("{url}: ok");
    Ok(())
}
