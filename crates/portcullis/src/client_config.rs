//! `portcullis client-config`: writes client configuration that sends pulls through the
//! gateway — Docker Desktop `registry.json` (sign-in enforcement), containerd `hosts.toml` per
//! registry with the gateway as `server` (no fallback), Podman `registries.conf` with the gateway
//! as `location` (no fallback), k3s `registries.yaml`, and Docker `daemon.json` mirrors (which
//! fall back to Docker Hub: a cache, not an enforcement point).

use std::path::Path;

use anyhow::{Context, bail};

pub struct Options<'a> {
    /// `https://gw.example.com` (or `http://127.0.0.1:5000`).
    pub gateway: &'a str,
    pub orgs: &'a [String],
    pub registries: &'a [String],
}

fn write(dir: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    println!("wrote {}", p.display());
    Ok(())
}

/// Writes every file under `out`.
pub fn generate(o: &Options, out: &Path) -> anyhow::Result<()> {
    let gw = o.gateway.trim_end_matches('/');
    let Some(host) = gw.strip_prefix("https://").or_else(|| gw.strip_prefix("http://")) else {
        bail!("--gateway must be a URL such as https://gw.example.com");
    };
    let insecure = gw.starts_with("http://");
    let mut registries: Vec<String> = o.registries.iter().map(|r| oci::source::canonical_registry(r)).collect();
    if !registries.iter().any(|r| r == oci::source::DOCKER_HUB) {
        registries.insert(0, oci::source::DOCKER_HUB.into());
    }
    for r in &registries {
        if !oci::name::is_valid_host(r) {
            bail!("{r:?} is not a registry host");
        }
    }
    let orgs = serde_json::to_string(o.orgs)?;
    write(out, "docker-desktop/registry.json", &format!("{{\"allowedOrgs\": {orgs}}}\n"))?;
    for r in &registries {
        let toml = format!(
            "# containerd: pulls of {r} go to the gateway only (it is the server: no fallback).\n\
             # containerd adds ?ns={r} so the gateway knows which registry is meant.\n\
             server = \"{gw}\"\n\n[host.\"{gw}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{}",
            if insecure { "  skip_verify = true\n" } else { "" }
        );
        write(out, &format!("containerd/certs.d/{r}/hosts.toml"), &toml)?;
    }
    let mut conf = String::from("# Podman, Buildah, Skopeo: the gateway is the location, so there is no fallback.\n");
    for r in &registries {
        let loc = if r == oci::source::DOCKER_HUB { host.to_owned() } else { format!("{host}/{r}") };
        conf.push_str(&format!(
            "[[registry]]\nprefix = \"{r}\"\nlocation = \"{loc}\"\n{}\n",
            if insecure { "insecure = true\n" } else { "" }
        ));
    }
    write(out, "podman/registries.conf", &conf)?;
    let mut k3s = String::from("# k3s / rke2: /etc/rancher/k3s/registries.yaml\nmirrors:\n");
    for r in &registries {
        k3s.push_str(&format!("  \"{r}\":\n    endpoint:\n      - \"{gw}\"\n"));
    }
    write(out, "k3s/registries.yaml", &k3s)?;
    let daemon = serde_json::json!({ "registry-mirrors": [gw] });
    write(out, "docker/daemon.json", &format!("{}\n", serde_json::to_string_pretty(&daemon)?))?;
    write(
        out,
        "README.txt",
        "docker/daemon.json: a registry mirror for Docker Hub only; dockerd falls back to Docker Hub when the\n\
         gateway refuses, so it caches but does not enforce: pull with explicit gateway names instead, and block\n\
         direct egress to registries at the firewall.\n\
         docker-desktop/registry.json: makes Docker Desktop require sign-in to these organizations.\n",
    )?;
    Ok(())
}
