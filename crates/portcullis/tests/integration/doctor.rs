//! `portcullis doctor` against fixture trees of client configuration: the enforcing files
//! `client-config` writes pass; each way around the gateway is found with its kind and a fix;
//! `--probe` reports what answered. Exit status 0 only without a way around.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{Server, run};

const GW: &str = "https://gw.example.com";

/// `doctor --json` of the tree at `root` (its home in `root/home`): exit code, report, output.
fn doctor(root: &Path, gateway: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["doctor", "--json", "--gateway", gateway, "--root"])
        .arg(root)
        .arg("--home")
        .arg(root.join("home"))
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (out.status.code(), v, format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
}

fn kinds(v: &Value) -> Vec<String> {
    v["bypasses"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap().to_owned()).collect()
}

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

const CONTAINERD: &str =
    "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";

/// A node set up with the enforcing files of `client-config` (containerd, containers) and
/// docker credentials for the gateway only.
fn good_node(root: &Path) {
    let cfg = root.join("generated");
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_portcullis")).args([
        "client-config",
        "--gateway",
        GW,
        "--registry",
        "ghcr.io",
        "--out",
        cfg.to_str().unwrap(),
    ]));
    assert!(ok, "{out}");
    put(root, "/etc/containerd/config.toml", CONTAINERD);
    std::fs::create_dir_all(root.join("etc/containerd/certs.d")).unwrap();
    copy_tree(&cfg.join("containerd/certs.d"), &root.join("etc/containerd/certs.d"));
    put(root, "/etc/containers/registries.conf", "unqualified-search-registries = [\"docker.io\"]\n");
    put(
        root,
        "/etc/containers/registries.conf.d/50-portcullis.conf",
        &std::fs::read_to_string(cfg.join("podman/registries.conf")).unwrap(),
    );
    put(root, "/home/.docker/config.json", r#"{"auths": {"gw.example.com": {"auth": "eDp5"}}}"#);
    for f in ["registries.yaml", "config.yaml"] {
        put(root, &format!("/etc/rancher/k3s/{f}"), &std::fs::read_to_string(cfg.join("k3s").join(f)).unwrap());
    }
    let kubelet = std::fs::read_to_string(cfg.join("kubernetes/kubelet-config.yaml")).unwrap();
    put(root, "/var/lib/kubelet/config.yaml", &format!("{kubelet}cgroupDriver: systemd\n"));
}

#[test]
fn client_config_output_passes() {
    let root = tempfile::tempdir().unwrap();
    good_node(root.path());
    let (code, v, out) = doctor(root.path(), GW, &["--registry", "ghcr.io"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(kinds(&v), Vec::<String>::new(), "{out}");
    let checked = v["checked"].to_string();
    let read =
        ["config.toml", "docker.io/hosts.toml", "ghcr.io/hosts.toml", "50-portcullis.conf", ".docker/config.json"];
    for f in read.into_iter().chain(["k3s/registries.yaml", "k3s/config.yaml", "/var/lib/kubelet/config.yaml"]) {
        assert!(checked.contains(f), "{f} read: {checked}");
    }
    // the human report says so too
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["doctor", "--gateway", GW, "--registry", "ghcr.io", "--root"])
        .arg(root.path())
        .arg("--home")
        .arg(root.path().join("home"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no way around the gateway"));
}

#[test]
fn every_kind_of_bypass_is_found_with_a_fix() {
    // (what is changed on a good node, the kind it must report)
    let cases: &[(&str, &str, &str)] = &[
        ("/etc/containerd/config.toml", "version = 2\n", "containerd_no_config_path"),
        (
            "/etc/containerd/config.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://gw.example.com\"]\n",
            "containerd_legacy_mirror",
        ),
        (
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "server = \"https://registry-1.docker.io\"\n[host.\"https://gw.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            "containerd_server_not_gateway",
        ),
        (
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "[host.\"https://gw.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            "containerd_server_not_gateway",
        ),
        (
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "server = \"https://gw.example.com\"\n[host.\"https://mirror.gcr.io\"]\n  capabilities = [\"pull\"]\n",
            "containerd_host_not_gateway",
        ),
        ("/etc/containerd/certs.d/ghcr.io/hosts.toml", "", "containerd_server_not_gateway"),
        (
            "/etc/containers/registries.conf.d/60-later.conf",
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"registry-1.docker.io\"\n[[registry.mirror]]\nlocation = \"gw.example.com\"\n",
            "containers_mirror_fallback",
        ),
        (
            "/etc/containers/registries.conf.d/60-later.conf",
            "[[registry]]\nprefix = \"ghcr.io\"\nlocation = \"ghcr.io\"\n",
            "containers_location_not_gateway",
        ),
        (
            "/etc/containers/registries.conf.d/60-later.conf",
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"gw.example.com\"\n[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\n",
            "containers_mirror_not_gateway",
        ),
        ("/etc/docker/daemon.json", r#"{"registry-mirrors": ["https://gw.example.com"]}"#, "dockerd_mirror_fallback"),
        ("/etc/docker/daemon.json", r#"{"log-driver": "journald"}"#, "dockerd_direct"),
        (
            "/home/.docker/config.json",
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "eDp5"}}}"#,
            "registry_credentials",
        ),
        ("/home/.docker/config.json", r#"{"credHelpers": {"ghcr.io": "gh"}}"#, "registry_credentials"),
        ("/etc/rancher/k3s/config.yaml", "write-kubeconfig-mode: \"0644\"\n", "k3s_default_endpoint_fallback"),
        (
            "/etc/rancher/k3s/config.yaml.d/90-later.yaml",
            "disable-default-registry-endpoint: false\n",
            "k3s_default_endpoint_fallback",
        ),
        (
            "/etc/rancher/k3s/registries.yaml",
            "mirrors:\n  docker.io:\n    endpoint: [\"https://gw.example.com\"]\n",
            "k3s_no_gateway_mirror",
        ),
        (
            "/etc/rancher/k3s/registries.yaml",
            "mirrors:\n  \"*\":\n    endpoint:\n      - \"https://gw.example.com\"\n      - \"https://mirror.gcr.io\"\n",
            "k3s_mirror_not_gateway",
        ),
        ("/etc/rancher/rke2/registries.yaml", "mirrors: {}\n", "k3s_no_gateway_mirror"),
        (
            "/var/lib/kubelet/config.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
            "kubelet_reuses_pulled_images",
        ),
        (
            "/var/lib/kubelet/config.yaml",
            "kind: KubeletConfiguration\nimagePullCredentialsVerificationPolicy: NeverVerifyPreloadedImages\n",
            "kubelet_reuses_pulled_images",
        ),
        (
            "/var/lib/kubelet/config.json",
            r#"{"auths": {"gw.example.com": {"auth": "eDp5"}}}"#,
            "kubelet_node_credentials",
        ),
        ("/var/lib/kubelet/.dockercfg", r#"{"https://gw.example.com": {"auth": "eDp5"}}"#, "kubelet_node_credentials"),
        ("/etc/rancher/k3s/registries.yaml", "mirrors: [\n", "unreadable"),
        ("/etc/containerd/config.toml", "this is [not toml", "unreadable"),
        ("/etc/docker/daemon.json", "{", "unreadable"),
    ];
    for (file, text, kind) in cases {
        let root = tempfile::tempdir().unwrap();
        good_node(root.path());
        put(root.path(), file, text);
        let (code, v, out) = doctor(root.path(), GW, &["--registry", "ghcr.io"]);
        assert_eq!(code, Some(1), "{kind}: {out}");
        let mut found = kinds(&v);
        found.dedup(); // one per registry where both are affected
        assert_eq!(found, vec![kind.to_string()], "{file}: {out}");
        let b = &v["bypasses"][0];
        assert!(!b["fix"].as_str().unwrap().is_empty() && !b["detail"].as_str().unwrap().is_empty(), "{out}");
    }
    // a missing entry, per client
    let root = tempfile::tempdir().unwrap();
    good_node(root.path());
    std::fs::remove_dir_all(root.path().join("etc/containerd/certs.d/ghcr.io")).unwrap();
    put(root.path(), "/etc/containers/registries.conf.d/50-portcullis.conf", "");
    let (code, v, out) = doctor(root.path(), GW, &["--registry", "ghcr.io"]);
    assert_eq!(code, Some(1), "{out}");
    let mut k = kinds(&v);
    k.sort();
    assert_eq!(
        k,
        ["containerd_no_gateway_entry", "containers_no_gateway_entry", "containers_no_gateway_entry"],
        "{out}"
    );
    // without --registry only docker.io is required
    let (code, v, out) = doctor(root.path(), GW, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(kinds(&v), ["containers_no_gateway_entry"], "{out}");
}

#[tokio::test]
async fn the_probe_says_what_answered() {
    let gw = Server::start().await;
    let real = Server::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = tempfile::tempdir().unwrap();
    let gw_url = gw.url("");
    let good = |root: &Path| {
        // the fixture names the local gateway
        put(
            root,
            "/etc/containers/registries.conf",
            &format!("[[registry]]\nprefix = \"docker.io\"\nlocation = \"{}\"\n", gw.addr()),
        );
    };
    good(root.path());
    let blocked = format!("http://127.0.0.1:{closed}");
    let (code, v, out) = doctor(root.path(), &gw_url, &["--probe", "--direct", &blocked]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(v["probes"][0]["status"], 401, "{out}");
    assert!(v["probes"][1]["verdict"].as_str().unwrap().starts_with("blocked"), "{out}");

    // a real registry that answers is a way around
    let (code, v, out) = doctor(root.path(), &gw_url, &["--probe", "--direct", &real.url("")]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(kinds(&v), ["registry_reachable"], "{out}");
    // a gateway that does not answer is reported
    drop(gw);
    let (code, v, out) = doctor(root.path(), &gw_url, &["--probe", "--direct", &blocked]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(kinds(&v), ["gateway_unreachable"], "{out}");
}

/// Docker Desktop's four ways to require sign-in, as `client-config` writes them, read back by
/// independent parsers: Python's `plistlib` for the plist and the configuration profile, a
/// `.reg` reader here (UTF-16LE, `hex(7)` multi-string), `serde_json` for `registry.json`.
#[test]
fn desktop_sign_in_files_parse_with_the_orgs() {
    let out = tempfile::tempdir().unwrap();
    let generate = |orgs: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        c.args(["client-config", "--gateway", GW, "--out"]).arg(out.path());
        for o in orgs {
            c.args(["--org", o]);
        }
        run(&mut c)
    };
    let (ok, msg) = generate(&["Acme Corp"]);
    assert!(!ok && msg.contains("lowercase"), "{msg}");
    let (ok, msg) = generate(&["acme", "beta-team"]);
    assert!(ok, "{msg}");
    let d = out.path().join("docker-desktop");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("registry.json")).unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({"allowedOrgs": ["acme", "beta-team"]}));

    // the registry file: what regedit writes and imports
    let raw = std::fs::read(d.join("windows/allowedOrgs.reg")).unwrap();
    assert_eq!(&raw[..2], &[0xFF, 0xFE], "UTF-16LE with a byte order mark");
    let units: Vec<u16> = raw[2..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let text = String::from_utf16(&units).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "Windows Registry Editor Version 5.00");
    assert_eq!(lines[2], r"[HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Docker\Docker Desktop]");
    let hex = lines[3].strip_prefix("\"allowedOrgs\"=hex(7):").expect(lines[3]);
    let bytes: Vec<u8> = hex.split(',').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    let value: Vec<u16> = bytes.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let strings: Vec<String> = String::from_utf16(&value).unwrap().split('\0').map(str::to_owned).collect();
    assert_eq!(strings, ["acme", "beta-team", "", ""], "each name NUL-terminated, then one more NUL");

    // the plist and the configuration profile
    let script = r#"
import plistlib, sys, uuid
d = plistlib.load(open(sys.argv[1], 'rb'))
assert d == {'allowedOrgs': ['acme', 'beta-team']}, d
p = plistlib.load(open(sys.argv[2], 'rb'))
assert p['PayloadType'] == 'Configuration' and p['PayloadVersion'] == 1 and p['PayloadScope'] == 'System', p
uuid.UUID(p['PayloadUUID'])
[c] = p['PayloadContent']
assert c['PayloadType'] == 'com.docker.config' and c['allowedOrgs'] == 'acme;beta-team', c
uuid.UUID(c['PayloadUUID'])
assert c['PayloadUUID'] != p['PayloadUUID']
print('ok')
"#;
    let (ok, msg) = run(Command::new("python3")
        .args(["-c", script])
        .arg(d.join("macos/desktop.plist"))
        .arg(d.join("macos/portcullis-sign-in.mobileconfig")));
    assert!(ok && msg.trim() == "ok", "{msg}");
    let readme = std::fs::read_to_string(out.path().join("README.md")).unwrap();
    assert!(readme.contains("registry key") && readme.contains("then `registry.json`"), "{readme}");
}
