//! `portcullis client-config`: writes client configuration that sends pulls through the
//! gateway — Docker Desktop's sign-in enforcement in each of its forms (`registry.json`, the
//! Windows registry file, the macOS configuration profile and `desktop.plist`), containerd `hosts.toml` per
//! registry with the gateway as `server` (no fallback), Podman `registries.conf` with the gateway
//! as `location` (no fallback), k3s `registries.yaml`, Docker `daemon.json` mirrors (which
//! fall back to Docker Hub: a cache, not an enforcement point), and for Kubernetes nodes the
//! kubelet's credential provider (`portcullis credential-provider` with the pod's
//! service-account token), the RBAC that lets nodes ask for tokens of the gateway's audience,
//! and the kubelet setting that re-checks credentials for images already on the node.

use std::path::Path;

use anyhow::{Context, bail};

pub struct Options<'a> {
    /// `https://gw.example.com` (or `http://127.0.0.1:5000`).
    pub gateway: &'a str,
    pub orgs: &'a [String],
    pub registries: &'a [String],
    /// The audience of the service-account tokens the kubelet asks for (`auth.service`).
    pub audience: &'a str,
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
    desktop_policies(o.orgs, out)?;
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
    let mut k3s = String::from(
        "# k3s / rke2: /etc/rancher/k3s/registries.yaml (then restart k3s). A mirror is only a first try:\n\
         # with k3s/config.yaml (disable-default-registry-endpoint) a refused pull does not go to the registry.\n\
         mirrors:\n",
    );
    for r in &registries {
        k3s.push_str(&format!("  \"{r}\":\n    endpoint:\n      - \"{gw}\"\n"));
    }
    k3s.push_str(&format!(
        "configs:\n  \"{host}\":\n    # the node's account at the gateway: a portcullis user and a read-only access token\n    \
         auth:\n      username: \"REPLACE-with-a-portcullis-user\"\n      password: \"REPLACE-with-an-access-token\"\n{}",
        if insecure { "    tls:\n      insecure_skip_verify: true\n" } else { "" }
    ));
    write(out, "k3s/registries.yaml", &k3s)?;
    write(
        out,
        "k3s/config.yaml",
        "# k3s / rke2: merge into /etc/rancher/k3s/config.yaml (rke2: /etc/rancher/rke2/), restart.\n\
         # Without it containerd tries each registry itself after its mirrors, so the gateway's refusals\n\
         # are not final (k3s and RKE2 releases since January 2024).\n\
         disable-default-registry-endpoint: true\n",
    )?;
    kubernetes(o, gw, host, &registries, out)?;
    let daemon = serde_json::json!({ "registry-mirrors": [gw] });
    write(out, "docker/daemon.json", &format!("{}\n", serde_json::to_string_pretty(&daemon)?))?;
    write(out, "README.md", &readme(gw, host, &registries))?;
    Ok(())
}

/// The kubelet's `CredentialProviderConfig` (`portcullis credential-provider`, given the pod's
/// service-account token for `audience`), the RBAC that lets nodes request tokens for that
/// audience (the NodeRestriction admission plugin checks it), and the kubelet setting that makes
/// a pod's credentials count for images already on the node (KEP-2535).
fn kubernetes(o: &Options, gw: &str, host: &str, registries: &[String], out: &Path) -> anyhow::Result<()> {
    let audience = o.audience;
    if audience.is_empty() || audience.contains(['"', '\\', '\n']) {
        bail!("--audience {audience:?}: the gateway's token service name (auth.service)");
    }
    let mut matches: Vec<String> = vec![host.to_owned(), "*.docker.io".to_owned()];
    matches.extend(registries.iter().cloned());
    let mut args = vec!["credential-provider".to_owned(), "--gateway".to_owned(), gw.to_owned()];
    for r in registries.iter().filter(|r| *r != oci::source::DOCKER_HUB) {
        args.extend(["--registry".to_owned(), r.clone()]);
    }
    let quoted = |v: &[String]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    write(
        out,
        "kubernetes/credential-provider-config.yaml",
        &format!(
            "# The kubelet's --image-credential-provider-config; the binary `portcullis` goes in its\n\
             # --image-credential-provider-bin-dir. Each pod pulls as its own service account.\n\
             apiVersion: kubelet.config.k8s.io/v1\n\
             kind: CredentialProviderConfig\n\
             providers:\n\
             \x20 - name: portcullis\n\
             \x20   apiVersion: credentialprovider.kubelet.k8s.io/v1\n\
             \x20   matchImages: [{}]\n\
             \x20   defaultCacheDuration: \"5m\"\n\
             \x20   args: [{}]\n\
             \x20   tokenAttributes:\n\
             \x20     serviceAccountTokenAudience: \"{audience}\"\n\
             \x20     requireServiceAccount: true\n\
             \x20     cacheType: Token\n",
            quoted(&matches),
            quoted(&args)
        ),
    )?;
    write(
        out,
        "kubernetes/kubelet-config.yaml",
        "# Merge into the kubelet's configuration file: an image already on the node is used by a pod only\n\
         # after its own credentials are checked at the gateway, so a namespace cannot run what only\n\
         # another one may pull (KEP-2535).\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\n\
         kind: KubeletConfiguration\n\
         imagePullCredentialsVerificationPolicy: AlwaysVerify\n",
    )?;
    write(
        out,
        "kubernetes/rbac.yaml",
        &format!(
            "# Lets kubelets request service-account tokens for the gateway's audience (kubectl apply -f).\n\
             apiVersion: rbac.authorization.k8s.io/v1\n\
             kind: ClusterRole\n\
             metadata:\n\
             \x20 name: portcullis-image-pull-audience\n\
             rules:\n\
             \x20 - apiGroups: [\"\"]\n\
             \x20   resources: [\"{audience}\"]\n\
             \x20   verbs: [\"request-serviceaccounts-token-audience\"]\n\
             ---\n\
             apiVersion: rbac.authorization.k8s.io/v1\n\
             kind: ClusterRoleBinding\n\
             metadata:\n\
             \x20 name: portcullis-image-pull-audience\n\
             roleRef:\n\
             \x20 apiGroup: rbac.authorization.k8s.io\n\
             \x20 kind: ClusterRole\n\
             \x20 name: portcullis-image-pull-audience\n\
             subjects:\n\
             \x20 - apiGroup: rbac.authorization.k8s.io\n\
             \x20   kind: Group\n\
             \x20   name: system:nodes\n"
        ),
    )
}

/// Docker Desktop's other ways to require sign-in to `orgs`: the Windows registry value
/// (`HKLM\SOFTWARE\Policies\Docker\Docker Desktop`, multi-string `allowedOrgs`) as a `.reg`
/// file (UTF-16LE with a byte order mark, as regedit writes), the macOS configuration profile
/// (payload `com.docker.config`, `allowedOrgs` as one `;`-separated string) and `desktop.plist`
/// (`allowedOrgs` as an array).
fn desktop_policies(orgs: &[String], out: &Path) -> anyhow::Result<()> {
    for org in orgs {
        if org.is_empty() || !org.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            bail!("--org {org:?}: Docker Desktop takes organization names in lowercase letters, digits, '-' and '_'");
        }
    }
    // REG_MULTI_SZ: each name in UTF-16LE ending with a NUL, then one more NUL.
    let mut bytes: Vec<u8> =
        orgs.iter().flat_map(|o| o.encode_utf16().chain([0])).chain([0]).flat_map(u16::to_le_bytes).collect();
    if orgs.is_empty() {
        bytes = vec![0, 0, 0, 0];
    }
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let reg = format!(
        "Windows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Docker\\Docker Desktop]\r\n\
         \"allowedOrgs\"=hex(7):{}\r\n",
        hex.join(",")
    );
    let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(reg.encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let path = out.join("docker-desktop/windows/allowedOrgs.reg");
    std::fs::create_dir_all(path.parent().unwrap_or(out))?;
    std::fs::write(&path, utf16).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());

    let strings: String = orgs.iter().map(|o| format!("        <string>{o}</string>\n")).collect();
    let plist = format!(
        "{PLIST_HEAD}<dict>\n    <key>allowedOrgs</key>\n    <array>\n{strings}    </array>\n</dict>\n</plist>\n"
    );
    write(out, "docker-desktop/macos/desktop.plist", &plist)?;
    let id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let payload = uuid::Uuid::new_v4().to_string().to_uppercase();
    let profile = format!(
        "{PLIST_HEAD}<dict>\n    <key>PayloadContent</key>\n    <array>\n        <dict>\n\
         \x20           <key>PayloadType</key>\n            <string>com.docker.config</string>\n\
         \x20           <key>PayloadIdentifier</key>\n            <string>com.docker.config.{payload}</string>\n\
         \x20           <key>PayloadUUID</key>\n            <string>{payload}</string>\n\
         \x20           <key>PayloadVersion</key>\n            <integer>1</integer>\n\
         \x20           <key>PayloadDisplayName</key>\n            <string>Docker Desktop sign-in</string>\n\
         \x20           <key>allowedOrgs</key>\n            <string>{}</string>\n\
         \x20       </dict>\n    </array>\n\
         \x20   <key>PayloadDisplayName</key>\n    <string>Docker Desktop: sign in to {}</string>\n\
         \x20   <key>PayloadIdentifier</key>\n    <string>portcullis.docker-desktop.{id}</string>\n\
         \x20   <key>PayloadScope</key>\n    <string>System</string>\n\
         \x20   <key>PayloadType</key>\n    <string>Configuration</string>\n\
         \x20   <key>PayloadUUID</key>\n    <string>{id}</string>\n\
         \x20   <key>PayloadVersion</key>\n    <integer>1</integer>\n</dict>\n</plist>\n",
        orgs.join(";"),
        orgs.join(", ")
    );
    write(out, "docker-desktop/macos/portcullis-sign-in.mobileconfig", &profile)
}

const PLIST_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
    <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
    <plist version=\"1.0\">\n";

/// Where each file goes, and the credentials each client needs.
fn readme(gw: &str, host: &str, registries: &[String]) -> String {
    let list = registries.join(", ");
    format!(
        "# Sending pulls through the gateway {gw}\n\n\
         Pulls of {list} go to the gateway, which decides each one (Image Access Management) and\n\
         fetches and caches what it allows. Clients sign in to the gateway with a portcullis account:\n\
         a person's password, or for machines an access token (console: Access tokens; read scope).\n\n\
         ## containerd (and Kubernetes nodes that use it)\n\
         Copy `containerd/certs.d/*` to `/etc/containerd/certs.d/`, and point containerd at that directory:\n\
         `config_path = \"/etc/containerd/certs.d\"` under `[plugins.\"io.containerd.grpc.v1.cri\".registry]`\n\
         (containerd 1.x) or `[plugins.\"io.containerd.cri.v1.images\".registry]` (2.x); restart containerd.\n\
         The gateway is each registry's `server`, so there is no way around it. Credentials: `ctr images pull\n\
         --user NAME:TOKEN`; for Kubernetes, an image pull secret for the images' registry (docker.io, …)\n\
         holding the gateway account, or better the kubelet's credential provider below.\n\n\
         ## Kubernetes: each pod pulls as its own service account\n\
         Copy the `portcullis` binary to the kubelet's `--image-credential-provider-bin-dir` and\n\
         `kubernetes/credential-provider-config.yaml` to the file its `--image-credential-provider-config`\n\
         names; merge `kubernetes/kubelet-config.yaml` into the kubelet's configuration; `kubectl apply -f\n\
         kubernetes/rbac.yaml`; restart the kubelet (Kubernetes 1.34 or later). The kubelet then hands the\n\
         plugin each pod's service-account token, the plugin signs it in at the gateway, and containerd\n\
         pulls with it: the gateway decides for the pod's namespace and service account, by the\n\
         organization's workload rules. The gateway trusts the cluster's issuer through\n\
         `[[auth.workload_issuers]]` (its `issuer` is the cluster's `--service-account-issuer`; an\n\
         air-gapped cluster's keys come from `kubectl get --raw /openid/v1/jwks` saved as `jwks_file`).\n\n\
         ## Podman, Buildah, Skopeo, CRI-O\n\
         Copy `podman/registries.conf` to `/etc/containers/registries.conf.d/50-portcullis.conf` (per user:\n\
         `~/.config/containers/registries.conf.d/`). The gateway is each registry's `location`: no fallback.\n\
         Credentials: `podman login {host}` (or `skopeo login`, `buildah login`; CRI-O: the auth file).\n\n\
         ## k3s, RKE2\n\
         Copy `k3s/registries.yaml` to `/etc/rancher/k3s/registries.yaml` (RKE2: `/etc/rancher/rke2/`), put\n\
         the node's account in its `configs:` `auth:` section (a user and an access token), and merge\n\
         `k3s/config.yaml` into `/etc/rancher/k3s/config.yaml`; restart k3s. A `registries.yaml` mirror alone\n\
         does not enforce: containerd falls back to the registry itself (docker.io, …) when the gateway\n\
         refuses a pull, unless k3s runs with `disable-default-registry-endpoint: true` (the\n\
         `--disable-default-registry-endpoint` flag; k3s and RKE2 releases since January 2024).\n\n\
         ## Docker Engine (dockerd)\n\
         `docker/daemon.json` (merge into `/etc/docker/daemon.json`, restart dockerd) makes the gateway a\n\
         registry mirror — for Docker Hub only. dockerd sends no credentials to mirrors, so the gateway must\n\
         allow anonymous pulls through its cache (`proxy.allow_anonymous = true`), and dockerd falls back to\n\
         Docker Hub itself when the gateway refuses: a mirror caches, it does not enforce. To enforce, pull by\n\
         the gateway's names after `docker login {host}` (`docker pull {host}/library/alpine`), and block\n\
         direct egress to registries at the firewall.\n\n\
         ## Docker Desktop\n\
         Each file under `docker-desktop/` makes Docker Desktop require sign-in to these organizations; use\n\
         one per machine. Where two exist, Docker Desktop uses, in this order: the Windows registry key\n\
         (`windows/allowedOrgs.reg`: `reg import` it, or deploy the value by Group Policy), the macOS\n\
         configuration profile (`macos/portcullis-sign-in.mobileconfig`, through your MDM; the most tamper-proof\n\
         on a Mac), `macos/desktop.plist` (to `/Library/Application Support/com.docker.docker/desktop.plist`,\n\
         writable by administrators only), then `registry.json` (to\n\
         `/Library/Application Support/com.docker.docker/registry.json` on macOS,\n\
         `C:\\ProgramData\\DockerDesktop\\registry.json` on Windows,\n\
         `/usr/share/docker-desktop/registry/registry.json` on Linux). They bind only people on Docker Desktop;\n\
         the gateway is what enforces for Linux servers, CI runners and Kubernetes nodes.\n\n\
         Check a node with `portcullis doctor --gateway {gw}`: it reports every way a pull can go around the\n\
         gateway.\n"
    )
}
