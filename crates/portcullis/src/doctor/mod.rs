//! `portcullis doctor`: run on a node, it reads the container clients' configuration
//! (containerd, containers/registries.conf, dockerd, k3s/RKE2, the kubelet, the user's docker credentials) and reports
//! every way an image pull can go around the gateway, with the fix for each; `--probe` also asks
//! the gateway and the real registries over the network. Exit status 0 only when no way around
//! was found. Reading needs no root; nothing is changed.

mod files;
mod k3s;
mod kubelet;
mod probe;

use std::path::PathBuf;

use serde::Serialize;

/// What to check.
pub struct Options {
    /// The gateway's URL.
    pub gateway: String,
    /// Registries that must go through the gateway besides Docker Hub.
    pub registries: Vec<String>,
    /// The file system root the configuration is read under (`/` on a node).
    pub root: PathBuf,
    /// The home directory whose `.docker/config.json` is read.
    pub home: Option<PathBuf>,
    pub probe: bool,
    /// Registry URLs the probe tries directly (default: each registry's own).
    pub direct: Vec<String>,
    pub json: bool,
}

/// One way around the gateway.
#[derive(Serialize, Debug)]
pub struct Finding {
    pub kind: &'static str,
    pub file: String,
    pub detail: String,
    pub fix: String,
}

#[derive(Serialize, Default)]
pub struct Report {
    pub gateway: String,
    pub checked: Vec<String>,
    pub bypasses: Vec<Finding>,
    pub notes: Vec<String>,
    pub probes: Vec<probe::Probe>,
}

/// The error `main` turns into exit status 1 (the report is printed already).
#[derive(Debug)]
pub struct BypassFound;

impl std::fmt::Display for BypassFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a way around the gateway was found")
    }
}

impl std::error::Error for BypassFound {}

/// The gateway's `host[:port]` from its URL.
fn gateway_host(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest.map(|r| r.trim_end_matches('/')) {
        Some(h) if !h.is_empty() && !h.contains('/') => Ok(h.to_owned()),
        _ => anyhow::bail!("--gateway must be a URL such as https://gw.example.com"),
    }
}

pub async fn run(o: &Options) -> anyhow::Result<()> {
    let gw = gateway_host(&o.gateway)?;
    let mut registries: Vec<String> = o.registries.iter().map(|r| oci::source::canonical_registry(r)).collect();
    if !registries.iter().any(|r| r == oci::source::DOCKER_HUB) {
        registries.insert(0, oci::source::DOCKER_HUB.into());
    }
    let mut report = Report { gateway: o.gateway.clone(), ..Report::default() };
    let ctx = files::Context { root: &o.root, gateway: &gw, registries: &registries };
    files::containerd(&ctx, &mut report);
    files::containers(&ctx, &mut report);
    files::dockerd(&ctx, &mut report);
    k3s::check(&ctx, &mut report);
    kubelet::check(&ctx, &mut report);
    if let Some(home) = &o.home {
        files::docker_credentials(&ctx, home, &mut report);
    }
    if o.probe {
        probe::run(o, &registries, &mut report).await;
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if report.bypasses.is_empty() { Ok(()) } else { Err(BypassFound.into()) }
}

fn human(r: &Report) -> String {
    let mut out = String::new();
    for f in &r.bypasses {
        out.push_str(&format!("BYPASS {} ({}): {}\n  fix: {}\n", f.file, f.kind, f.detail, f.fix));
    }
    for p in &r.probes {
        out.push_str(&format!("probe {}: {}\n", p.url, p.verdict));
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if r.checked.is_empty() {
        out.push_str("no container client configuration found under this root\n");
    } else {
        out.push_str(&format!("checked: {}\n", r.checked.join(", ")));
    }
    match r.bypasses.len() {
        0 => out.push_str(&format!("no way around the gateway {} was found\n", r.gateway)),
        n => out.push_str(&format!("{n} way(s) around the gateway {} found\n", r.gateway)),
    }
    out
}
