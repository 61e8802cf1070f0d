//! The configuration files `doctor` reads, one check per client: containerd (`config.toml`
//! and `certs.d/*/hosts.toml`), containers (`registries.conf` and `registries.conf.d`), dockerd
//! (`daemon.json`) and the user's docker credentials (`~/.docker/config.json`).

use std::path::{Path, PathBuf};

use super::{Finding, Report};

pub struct Context<'a> {
    pub root: &'a Path,
    /// The gateway's `host[:port]`.
    pub gateway: &'a str,
    /// Canonical registry hosts that must go through the gateway (docker.io first).
    pub registries: &'a [String],
}

impl Context<'_> {
    /// `path` (absolute, as on a node) under the root.
    pub(super) fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Whether a URL or host names the gateway (any scheme, any path below it).
    pub(super) fn is_gateway(&self, url: &str) -> bool {
        let h = url.trim().trim_start_matches("https://").trim_start_matches("http://");
        h.split('/').next() == Some(self.gateway)
    }
}

pub(super) fn shown(p: &Path, root: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

pub(super) fn finding(kind: &'static str, file: String, detail: String, fix: String) -> Finding {
    Finding { kind, file, detail, fix }
}

/// Reads and parses a file that exists; a file that cannot be read or parsed is itself a finding
/// (what it does cannot be checked).
pub(super) fn parse<T>(
    path: &Path,
    ctx: &Context,
    r: &mut Report,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            r.bypasses.push(finding(
                "unreadable",
                shown(path, ctx.root),
                format!("cannot be read: {e}"),
                "run doctor as a user who can read it".into(),
            ));
            return None;
        }
    };
    r.checked.push(shown(path, ctx.root));
    match f(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            r.bypasses.push(finding(
                "unreadable",
                shown(path, ctx.root),
                format!("cannot be parsed, so what it does cannot be checked: {e}"),
                "fix the file's syntax".into(),
            ));
            None
        }
    }
}

fn toml_value(text: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>().map_err(|e| e.message().to_owned())
}

const CRI_PLUGINS: [&str; 2] = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"];

pub fn containerd(ctx: &Context, r: &mut Report) {
    let config = ctx.at("/etc/containerd/config.toml");
    let mut dirs = vec![];
    if let Some(t) = parse(&config, ctx, r, toml_value) {
        let registry = |p: &str| t.get("plugins").and_then(|v| v.get(p)).and_then(|v| v.get("registry"));
        for p in CRI_PLUGINS {
            let Some(reg) = registry(p) else { continue };
            if let Some(path) = reg.get("config_path").and_then(|v| v.as_str()) {
                dirs.extend(path.split(':').filter(|d| !d.is_empty()).map(|d| ctx.at(d)));
            }
            if let Some(m) = reg.get("mirrors").and_then(|v| v.as_table()).filter(|m| !m.is_empty()) {
                let names: Vec<&str> = m.keys().map(String::as_str).collect();
                r.bypasses.push(finding(
                    "containerd_legacy_mirror",
                    shown(&config, ctx.root),
                    format!("registry.mirrors ({}) of {p}: containerd tries the registry itself after its mirrors", names.join(", ")),
                    "remove registry.mirrors and set config_path = \"/etc/containerd/certs.d\" with the hosts.toml files of `portcullis client-config`".into(),
                ));
            }
        }
        if dirs.is_empty() {
            r.bypasses.push(finding(
                "containerd_no_config_path",
                shown(&config, ctx.root),
                "the CRI plugin has no registry config_path, so it ignores certs.d: Kubernetes pulls go straight to the registries".into(),
                "set config_path = \"/etc/containerd/certs.d\" under [plugins.\"io.containerd.grpc.v1.cri\".registry] (containerd 1.x) or [plugins.\"io.containerd.cri.v1.images\".registry] (2.x) and restart containerd".into(),
            ));
        }
    }
    let default_dir = ctx.at("/etc/containerd/certs.d");
    if dirs.is_empty() {
        dirs.push(default_dir);
    }
    if !config.exists() && !dirs.iter().any(|d| d.is_dir()) {
        return;
    }
    for reg in ctx.registries {
        let found = dirs
            .iter()
            .flat_map(|d| [d.join(reg).join("hosts.toml"), d.join("_default/hosts.toml")])
            .find(|p| p.is_file());
        let Some(path) = found else {
            r.bypasses.push(finding(
                "containerd_no_gateway_entry",
                shown(&dirs[0].join(reg).join("hosts.toml"), ctx.root),
                format!("no hosts.toml for {reg}: containerd pulls {reg} images from {reg} itself"),
                format!("install containerd/certs.d/{reg}/hosts.toml from `portcullis client-config`"),
            ));
            continue;
        };
        let Some(t) = parse(&path, ctx, r, toml_value) else { continue };
        let file = shown(&path, ctx.root);
        match t.get("server").and_then(|v| v.as_str()) {
            Some(s) if ctx.is_gateway(s) => {}
            Some(s) => r.bypasses.push(finding(
                "containerd_server_not_gateway",
                file.clone(),
                format!("server = \"{s}\": when the hosts fail or refuse, containerd pulls {reg} images from {s}"),
                format!("set server = \"https://{}\"", ctx.gateway),
            )),
            None => r.bypasses.push(finding(
                "containerd_server_not_gateway",
                file.clone(),
                format!("no server: after its hosts, containerd falls back to {reg} itself"),
                format!("set server = \"https://{}\"", ctx.gateway),
            )),
        }
        for h in t.get("host").and_then(|v| v.as_table()).into_iter().flat_map(|h| h.keys()) {
            if !ctx.is_gateway(h) {
                r.bypasses.push(finding(
                    "containerd_host_not_gateway",
                    file.clone(),
                    format!("host \"{h}\" serves {reg} images without the gateway"),
                    format!("remove [host.\"{h}\"]"),
                ));
            }
        }
    }
}

/// A `[[registry]]` table of registries.conf and the file it came from.
struct Entry {
    file: String,
    prefix: String,
    location: String,
    mirrors: Vec<String>,
    blocked: bool,
}

pub fn containers(ctx: &Context, r: &mut Report) {
    let mut paths = vec![ctx.at("/etc/containers/registries.conf")];
    if let Ok(d) = std::fs::read_dir(ctx.at("/etc/containers/registries.conf.d")) {
        let mut more: Vec<PathBuf> =
            d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
        more.sort();
        paths.extend(more);
    }
    let mut entries: Vec<Entry> = vec![];
    let mut any = false;
    for path in &paths {
        let Some(t) = parse(path, ctx, r, toml_value) else { continue };
        any = true;
        let file = shown(path, ctx.root);
        for reg in t.get("registry").and_then(|v| v.as_array()).into_iter().flatten() {
            let s = |k: &str| reg.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let location = s("location");
            let prefix = match s("prefix") {
                p if p.is_empty() => location.clone(),
                p => p,
            };
            let mirrors = reg
                .get("mirror")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("location").and_then(|v| v.as_str()).map(str::to_owned))
                .collect();
            let blocked = reg.get("blocked").and_then(|v| v.as_bool()).unwrap_or(false);
            // a later file's entry for the same prefix replaces an earlier one
            entries.retain(|e| e.prefix != prefix);
            entries.push(Entry { file: file.clone(), prefix, location, mirrors, blocked });
        }
    }
    if !any {
        return;
    }
    for reg in ctx.registries {
        let Some(e) =
            entries.iter().find(|e| &e.prefix == reg || (reg == "docker.io" && e.prefix == "registry-1.docker.io"))
        else {
            r.bypasses.push(finding(
                "containers_no_gateway_entry",
                "/etc/containers/registries.conf".into(),
                format!(
                    "no [[registry]] for {reg}: podman, buildah, skopeo and CRI-O pull {reg} images from {reg} itself"
                ),
                "install podman/registries.conf from `portcullis client-config` in /etc/containers/registries.conf.d/"
                    .into(),
            ));
            continue;
        };
        if e.blocked {
            r.notes.push(format!("{}: {reg} is blocked", e.file));
            continue;
        }
        for m in e.mirrors.iter().filter(|m| !ctx.is_gateway(m)) {
            r.bypasses.push(finding(
                "containers_mirror_not_gateway",
                e.file.clone(),
                format!("mirror {m} serves {reg} images without the gateway"),
                format!("remove the mirror {m}"),
            ));
        }
        if !ctx.is_gateway(&e.location) {
            let (kind, detail) = if e.mirrors.iter().any(|m| ctx.is_gateway(m)) {
                (
                    "containers_mirror_fallback",
                    format!(
                        "the gateway is a mirror of {reg}, so a refused pull falls back to the location {}",
                        e.location
                    ),
                )
            } else {
                (
                    "containers_location_not_gateway",
                    format!("location {} serves {reg} images without the gateway", e.location),
                )
            };
            r.bypasses.push(finding(
                kind,
                e.file.clone(),
                detail,
                format!("make the gateway the location: location = \"{}\"", gateway_location(ctx, reg)),
            ));
        }
    }
}

fn gateway_location(ctx: &Context, reg: &str) -> String {
    if reg == oci::source::DOCKER_HUB { ctx.gateway.to_owned() } else { format!("{}/{reg}", ctx.gateway) }
}

pub fn dockerd(ctx: &Context, r: &mut Report) {
    let path = ctx.at("/etc/docker/daemon.json");
    let Some(v) = parse(&path, ctx, r, |t| serde_json::from_str::<serde_json::Value>(t).map_err(|e| e.to_string()))
    else {
        return;
    };
    let mirrors: Vec<&str> =
        v["registry-mirrors"].as_array().into_iter().flatten().filter_map(|m| m.as_str()).collect();
    let (kind, detail) = if mirrors.iter().any(|m| ctx.is_gateway(m)) {
        (
            "dockerd_mirror_fallback",
            "the gateway is a registry mirror: dockerd pulls from Docker Hub itself when the gateway refuses",
        )
    } else {
        ("dockerd_direct", "dockerd pulls Docker Hub images (docker pull alpine) from Docker Hub itself")
    };
    r.bypasses.push(finding(
        kind,
        shown(&path, ctx.root),
        detail.into(),
        format!("pull by the gateway's names (docker pull {}/library/alpine) and block registry-1.docker.io at the firewall (then --probe shows it)", ctx.gateway),
    ));
}

/// Docker Hub's names in credential files.
fn names_registry(key: &str, reg: &str) -> bool {
    let host = key.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or_default();
    if reg == oci::source::DOCKER_HUB {
        matches!(host, "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com")
    } else {
        host == reg
    }
}

pub fn docker_credentials(ctx: &Context, home: &Path, r: &mut Report) {
    let path = home.join(".docker/config.json");
    let Some(v) = parse(&path, ctx, r, |t| serde_json::from_str::<serde_json::Value>(t).map_err(|e| e.to_string()))
    else {
        return;
    };
    for section in ["auths", "credHelpers"] {
        for key in v[section].as_object().into_iter().flat_map(|o| o.keys()) {
            if let Some(reg) = ctx.registries.iter().find(|reg| names_registry(key, reg)) {
                r.bypasses.push(finding(
                    "registry_credentials",
                    shown(&path, ctx.root),
                    format!(
                        "{section} holds credentials for {reg} ({key}): pulls can sign in to {reg} without the gateway"
                    ),
                    format!("docker logout {key}, and sign in to the gateway instead (docker login {})", ctx.gateway),
                ));
            }
        }
    }
    if let Some(store) = v["credsStore"].as_str() {
        r.notes.push(format!(
            "{}: credentials in the `{store}` store were not inspected (`docker logout docker.io` removes any)",
            shown(&path, ctx.root)
        ));
    }
}
