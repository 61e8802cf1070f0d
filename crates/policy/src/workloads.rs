//! Workload rules: which workload identities — a Kubernetes pod's service account, a CI job —
//! an organization maps to which of its teams. A rule names a trusted issuer (by the name the
//! administrator gave it) and claim patterns, every one of which must match the verified
//! token's claim of that name; the teams it names are never `owners`, so a workload never
//! bypasses the policy. Patterns are anchored globs: `*` stands for any run of characters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The claims a rule may test: `sub`, Kubernetes service-account tokens' `namespace`,
/// `serviceaccount`, `pod` and `node` (from the `kubernetes.io` claim), GitHub Actions'
/// and GitLab CI's identity token claims.
pub const CLAIMS: &[&str] = &[
    "sub",
    "namespace",
    "serviceaccount",
    "pod",
    "node",
    "repository",
    "repository_owner",
    "ref",
    "ref_type",
    "workflow_ref",
    "job_workflow_ref",
    "environment",
    "event_name",
    "project_path",
    "namespace_path",
    "pipeline_source",
];

/// The workload rules of an organization (`settings.workloads`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workloads {
    pub rules: Vec<WorkloadRule>,
}

/// Tokens of `issuer` whose claims all match `claims` make their workload a member of `teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    /// The trusted issuer's name (`[[auth.workload_issuers]]`).
    pub issuer: String,
    /// Claim name → anchored glob pattern.
    pub claims: BTreeMap<String, String>,
    pub teams: Vec<String>,
}

impl WorkloadRule {
    /// Why the rule cannot be saved, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() {
            return Err("names no issuer".into());
        }
        if self.claims.is_empty() {
            return Err("tests no claim: it would take in every workload of the issuer".into());
        }
        for (name, pattern) in &self.claims {
            if !CLAIMS.contains(&name.as_str()) {
                return Err(format!("tests the claim {name:?}, which is none of {}", CLAIMS.join(", ")));
            }
            if pattern.chars().all(|c| c == '*') {
                return Err(format!("claim {name}: the pattern {pattern:?} matches anything; name what it must be"));
            }
        }
        if self.teams.is_empty() {
            return Err("names no team".into());
        }
        if self.teams.iter().any(|t| t == "owners") {
            return Err("names the owners team: a workload is never an owner".into());
        }
        Ok(())
    }

    /// Whether a token of `issuer` with `claims` is this rule's.
    pub fn matches(&self, issuer: &str, claims: &BTreeMap<String, String>) -> bool {
        self.issuer == issuer && self.mismatch(claims).is_none()
    }

    /// The first claim that does not match: its name, the pattern, and the token's value.
    pub fn mismatch<'a>(&'a self, claims: &'a BTreeMap<String, String>) -> Option<(&'a str, &'a str, Option<&'a str>)> {
        self.claims.iter().find_map(|(name, pattern)| {
            let value = claims.get(name).map(String::as_str);
            (!value.is_some_and(|v| glob(pattern, v))).then_some((name.as_str(), pattern.as_str(), value))
        })
    }
}

/// Anchored glob: `*` matches any run of characters (`/` and `:` too), anything else itself.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    // The last `*` seen, and where in `s` it was tried last.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_anchored() {
        assert!(glob("ci-*", "ci-build"));
        assert!(glob("ci-*", "ci-"));
        assert!(!glob("ci-*", "xci-build"), "anchored at the start");
        assert!(!glob("acme/app", "acme/app2"), "anchored at the end");
        assert!(glob("refs/heads/*", "refs/heads/release/1"));
        assert!(glob("*/main", "refs/heads/main"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("acme", "acme") && !glob("acme", "acmeevil"));
    }

    fn rule(claims: &[(&str, &str)], teams: &[&str]) -> WorkloadRule {
        WorkloadRule {
            issuer: "k8s".into(),
            claims: claims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            teams: teams.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn rules_that_would_grant_too_much_are_refused() {
        assert!(rule(&[("namespace", "ci")], &["dev"]).check().is_ok());
        assert!(rule(&[], &["dev"]).check().unwrap_err().contains("every workload"));
        assert!(rule(&[("namespace", "*")], &["dev"]).check().unwrap_err().contains("matches anything"));
        assert!(rule(&[("namespace", "ci")], &["owners"]).check().unwrap_err().contains("never an owner"));
        assert!(rule(&[("groups", "x")], &["dev"]).check().unwrap_err().contains("none of"));
        assert!(rule(&[("namespace", "ci")], &[]).check().is_err());
    }

    #[test]
    fn every_claim_must_match() {
        let r = rule(&[("namespace", "ci-*"), ("serviceaccount", "builder")], &["dev"]);
        let claims = |ns: &str, sa: &str| -> BTreeMap<String, String> {
            [("namespace", ns), ("serviceaccount", sa)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(r.matches("k8s", &claims("ci-web", "builder")));
        assert!(!r.matches("other", &claims("ci-web", "builder")), "another issuer");
        assert_eq!(r.mismatch(&claims("default", "builder")), Some(("namespace", "ci-*", Some("default"))));
        assert_eq!(r.mismatch(&BTreeMap::new()).map(|m| m.2), Some(None), "a missing claim never matches");
    }
}
