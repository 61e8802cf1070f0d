//! Kubernetes nodes: the kubelet's configuration and its node-level registry credentials. A
//! kubelet that does not re-check credentials for images already on the node
//! (`imagePullCredentialsVerificationPolicy: AlwaysVerify`, KEP-2535) lets a pod run an image
//! that only another namespace may pull; credentials for the gateway in the kubelet's own
//! `config.json` make every pod on the node pull as that one account instead of as itself.

use serde::Deserialize;

use super::Report;
use super::files::{Context, finding, parse, shown};

/// Where kubeadm, k3s-style and distribution packages keep the kubelet's configuration file.
const CONFIGS: &[&str] =
    &["/var/lib/kubelet/config.yaml", "/etc/kubernetes/kubelet-config.yaml", "/etc/kubernetes/kubelet/config.yaml"];

/// Where the kubelet reads node-level registry credentials.
const CREDENTIALS: &[&str] =
    &["/var/lib/kubelet/config.json", "/var/lib/kubelet/.dockercfg", "/root/.docker/config.json"];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KubeletConfiguration {
    image_pull_credentials_verification_policy: Option<String>,
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, serde_json::Value>,
}

pub fn check(ctx: &Context, r: &mut Report) {
    for file in CONFIGS {
        let path = ctx.at(file);
        let Some(c) = parse(&path, ctx, r, |t| {
            serde_yaml_ng::from_str::<Option<KubeletConfiguration>>(t)
                .map(Option::unwrap_or_default)
                .map_err(|e| e.to_string())
        }) else {
            continue;
        };
        let policy = c
            .image_pull_credentials_verification_policy
            .unwrap_or_else(|| "NeverVerifyPreloadedImages (the default)".into());
        if policy != "AlwaysVerify" {
            r.bypasses.push(finding(
                "kubelet_reuses_pulled_images",
                shown(&path, ctx.root),
                format!(
                    "imagePullCredentialsVerificationPolicy is {policy}: a pod may run an image already on this node \
                     that its own identity may not pull"
                ),
                "set `imagePullCredentialsVerificationPolicy: AlwaysVerify` (kubernetes/kubelet-config.yaml from \
                 `portcullis client-config`) and restart the kubelet"
                    .into(),
            ));
        }
    }
    for file in CREDENTIALS {
        let path = ctx.at(file);
        let Some(c) = parse(&path, ctx, r, |t| {
            // `.dockercfg` is the old form: the `auths` map itself.
            serde_json::from_str::<DockerConfig>(t)
                .ok()
                .filter(|c| !c.auths.is_empty())
                .or_else(|| serde_json::from_str(t).ok().map(|auths| DockerConfig { auths }))
                .ok_or_else(|| "not a docker config.json".to_owned())
        }) else {
            continue;
        };
        for host in c.auths.keys().filter(|h| ctx.is_gateway(h)) {
            r.bypasses.push(finding(
                "kubelet_node_credentials",
                shown(&path, ctx.root),
                format!("credentials for the gateway ({host}): every pod on this node pulls as this one account"),
                format!(
                    "remove {host} from it and give pods their own identity: the credential provider from \
                     `portcullis client-config` (kubernetes/)"
                ),
            ));
        }
    }
}
