//! k3s and RKE2 nodes: `registries.yaml` names each registry's mirror endpoints, and containerd
//! tries the registry's own default endpoint after them — so a refused pull goes around the
//! gateway — unless the node runs with `disable-default-registry-endpoint: true` (its
//! `config.yaml` or `config.yaml.d/*.yaml`; k3s and RKE2 releases since January 2024).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Report;
use super::files::{Context, finding, parse, shown};

/// The part of `registries.yaml` that decides where pulls go.
#[derive(Deserialize, Default)]
struct Registries {
    #[serde(default)]
    mirrors: BTreeMap<String, Mirror>,
}

#[derive(Deserialize, Default)]
struct Mirror {
    #[serde(default)]
    endpoint: Vec<String>,
}

const FLAG: &str = "disable-default-registry-endpoint";

/// Checks `/etc/rancher/k3s` and `/etc/rancher/rke2`, where a `registries.yaml` exists.
pub fn check(ctx: &Context, r: &mut Report) {
    for distro in ["k3s", "rke2"] {
        let dir = format!("/etc/rancher/{distro}");
        let path = ctx.at(&format!("{dir}/registries.yaml"));
        let Some(regs) = parse(&path, ctx, r, |t| {
            serde_yaml_ng::from_str::<Option<Registries>>(t).map(Option::unwrap_or_default).map_err(|e| e.to_string())
        }) else {
            continue;
        };
        let file = shown(&path, ctx.root);
        let strict = strict(ctx, &dir, r);
        for reg in ctx.registries {
            let endpoints = regs.mirrors.get(reg).or_else(|| regs.mirrors.get("*")).map(|m| &m.endpoint);
            let through: Vec<&String> = endpoints.into_iter().flatten().filter(|e| ctx.is_gateway(e)).collect();
            for e in endpoints.into_iter().flatten().filter(|e| !ctx.is_gateway(e)) {
                r.bypasses.push(finding(
                    "k3s_mirror_not_gateway",
                    file.clone(),
                    format!("endpoint {e} serves {reg} images to {distro} without the gateway"),
                    format!("remove {e} from mirrors.\"{reg}\".endpoint"),
                ));
            }
            if through.is_empty() {
                r.bypasses.push(finding(
                    "k3s_no_gateway_mirror",
                    file.clone(),
                    format!(
                        "no mirror endpoint of {reg} is the gateway: {distro} pulls {reg} images from {reg} itself"
                    ),
                    format!("install k3s/registries.yaml from `portcullis client-config` as {dir}/registries.yaml"),
                ));
            } else if !strict {
                r.bypasses.push(finding(
                    "k3s_default_endpoint_fallback",
                    file.clone(),
                    format!(
                        "the gateway is a mirror of {reg}, and containerd falls back to {reg}'s own endpoint when it \
                         refuses a pull"
                    ),
                    format!("add `{FLAG}: true` to {dir}/config.yaml and restart {distro}"),
                ));
            }
        }
    }
}

/// Whether the node's configuration turns the default endpoint off (a later file of
/// `config.yaml.d` wins, as k3s reads them).
fn strict(ctx: &Context, dir: &str, r: &mut Report) -> bool {
    let mut files = vec![ctx.at(&format!("{dir}/config.yaml"))];
    if let Ok(d) = std::fs::read_dir(ctx.at(&format!("{dir}/config.yaml.d"))) {
        let mut more: Vec<PathBuf> =
            d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
        more.sort();
        files.extend(more);
    }
    let mut on = false;
    for f in files {
        let flag = parse(&f, ctx, r, |t| {
            let v: Option<serde_yaml_ng::Value> = serde_yaml_ng::from_str(t).map_err(|e| e.to_string())?;
            Ok(v.and_then(|v| v.get(FLAG).and_then(serde_yaml_ng::Value::as_bool)))
        });
        if let Some(Some(set)) = flag {
            on = set;
        }
    }
    on
}
