//! Name resolution (DESIGN §3): which registry a request's repository lives in, and its one
//! canonical form. In order: a containerd mirror query `?ns=<host>` naming another registry;
//! a first component that looks like a host (`.`, `:` or `localhost`); a namespace hosted
//! here; otherwise Docker Hub, with `library/` added to one-part names. Docker Hub's aliases
//! (`index.docker.io`, `registry-1.docker.io`) all become `docker.io`.

use crate::error::{ErrorCode, WireError};
use crate::name::{RepoName, is_valid_host};

/// The canonical name of Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";

/// An image repository at another registry, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamRepo {
    /// Canonical registry host (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path at that registry (`library/alpine`).
    pub path: RepoName,
}

impl UpstreamRepo {
    /// `registry/path`, the name used in logs, cache keys and policy.
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }
}

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Hosted(RepoName),
    Upstream(UpstreamRepo),
}

/// Docker Hub aliases become `docker.io`; other hosts are kept (lower-case).
pub fn canonical_registry(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    match h.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        _ => h,
    }
}

/// True when a first path component names a registry rather than a namespace.
pub fn looks_like_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost"
}

fn invalid() -> WireError {
    WireError::new(ErrorCode::NameInvalid, "invalid repository name")
}

fn upstream(registry: &str, path: &str) -> Result<Source, WireError> {
    let registry = canonical_registry(registry);
    let path = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_owned() };
    Ok(Source::Upstream(UpstreamRepo { registry, path: path.parse().map_err(|_| invalid())? }))
}

/// Resolves a request name. `ns` is containerd's `?ns=` query; `self_host` is the `Host` the
/// client used (an `ns` naming us is ignored); `hosted` says whether a namespace is held here.
pub fn resolve(
    name: &RepoName,
    ns: Option<&str>,
    self_host: Option<&str>,
    hosted: impl Fn(&str) -> bool,
) -> Result<Source, WireError> {
    let s = name.as_str();
    if let Some(ns) = ns.filter(|n| !n.is_empty()) {
        let ns_l = ns.to_ascii_lowercase();
        let is_self = self_host.is_some_and(|h| h.eq_ignore_ascii_case(&ns_l));
        if !is_self {
            if !is_valid_host(&ns_l) {
                return Err(WireError::new(ErrorCode::NameInvalid, format!("invalid ns registry {ns:?}")));
            }
            return upstream(&ns_l, s);
        }
    }
    let (first, rest) = s.split_once('/').unwrap_or((s, ""));
    if looks_like_host(first) && !rest.is_empty() {
        return upstream(first, rest);
    }
    if rest.is_empty() {
        return upstream(DOCKER_HUB, s);
    }
    if hosted(first) {
        return Ok(Source::Hosted(name.clone()));
    }
    upstream(DOCKER_HUB, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, ns: Option<&str>) -> String {
        let n: RepoName = name.parse().unwrap();
        match resolve(&n, ns, Some("gateway:5000"), |ns| ns == "acme").unwrap() {
            Source::Hosted(n) => format!("hosted:{n}"),
            Source::Upstream(u) => u.canonical(),
        }
    }

    #[test]
    fn resolution_table() {
        assert_eq!(r("alpine", None), "docker.io/library/alpine");
        assert_eq!(r("library/alpine", None), "docker.io/library/alpine");
        assert_eq!(r("someone/app", None), "docker.io/someone/app");
        assert_eq!(r("docker.io/alpine", None), "docker.io/library/alpine");
        assert_eq!(r("index.docker.io/library/alpine", None), "docker.io/library/alpine");
        assert_eq!(r("registry-1.docker.io/someone/app", None), "docker.io/someone/app");
        assert_eq!(r("ghcr.io/owner/app", None), "ghcr.io/owner/app");
        assert_eq!(r("localhost:5000/app", None), "localhost:5000/app");
        assert_eq!(r("localhost/app", None), "localhost/app");
        assert_eq!(r("acme/app", None), "hosted:acme/app");
        assert_eq!(r("acme", None), "docker.io/library/acme", "one-part names are Docker Hub's");
        assert_eq!(r("acmeevil/app", None), "docker.io/acmeevil/app", "anchored on the whole namespace");
        // containerd mirror query names the registry; a local namespace must not capture it
        assert_eq!(r("acme/app", Some("ghcr.io")), "ghcr.io/acme/app");
        assert_eq!(r("alpine", Some("docker.io")), "docker.io/library/alpine");
        assert_eq!(r("library/alpine", Some("registry-1.docker.io")), "docker.io/library/alpine");
        assert_eq!(r("acme/app", Some("gateway:5000")), "hosted:acme/app", "ns naming us is ignored");
    }

    proptest::proptest! {
        /// Docker Hub's aliases and an explicit `library/` never change what a name resolves to,
        /// so they cannot change a decision; upper case is not a valid name at all.
        #[test]
        fn aliases_resolve_alike(ns in "[a-z][a-z0-9]{0,6}", repo in "[a-z][a-z0-9]{0,6}", one_part in proptest::bool::ANY) {
            let path = if one_part { repo.clone() } else { format!("{ns}/{repo}") };
            let canon = |name: String| {
                let n: RepoName = name.parse().unwrap();
                match resolve(&n, None, None, |_| false).unwrap() {
                    Source::Upstream(u) => u.canonical(),
                    Source::Hosted(h) => h.to_string(),
                }
            };
            let plain = canon(path.clone());
            for host in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
                proptest::prop_assert_eq!(&canon(format!("{host}/{path}")), &plain);
            }
            if one_part {
                proptest::prop_assert_eq!(&canon(format!("library/{repo}")), &plain);
            }
            proptest::prop_assert!(path.to_uppercase().parse::<RepoName>().is_err());
        }
    }

    #[test]
    fn invalid_ns_is_refused() {
        let n: RepoName = "a/b".parse().unwrap();
        assert!(resolve(&n, Some("bad host"), None, |_| false).is_err());
    }
}
