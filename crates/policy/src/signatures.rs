//! Signature requirements: an org's rules that images it covers carry a sigstore signature by
//! one of the given keys, and which of them apply to one pull. Pure like the rest of the
//! policy; finding and verifying the signatures is the gate's (`portcullis_core::signatures`).
//!
//! A rule covers images by category as the org sees them (`organization`, `official`,
//! `verified_publisher`, `sponsored_oss`, `community`, `other_registry`), by an anchored
//! pattern on the canonical name (`docker.io/library/*`, `ghcr.io/acme/app`), or all (`*`).
//! It binds the org's members as the category rules do: owners bypass their own org's rules,
//! whether or not Image Access Management is on.

use serde::{Deserialize, Serialize};

use crate::decide::categorize;
use crate::model::{Catalog, Image, Membership, Mode, Settings, Snapshot, pattern_matches};

/// Maximum rules per org and keys per rule.
pub const MAX_SIGNATURE_RULES: usize = 50;
pub const MAX_RULE_KEYS: usize = 10;

/// The `signatures` section of an org's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Signatures {
    pub rules: Vec<SignatureRule>,
}

/// One requirement: images it covers must be signed by one of `keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRule {
    /// A category key, a repository pattern, or `*`.
    pub images: String,
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, ECDSA P-256 or Ed25519): a signature by
    /// any one of them satisfies the rule.
    pub keys: Vec<String>,
    /// The `docker-reference` the signed payload must name (exact or `prefix/*`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default)]
    pub mode: Mode,
}

/// The category keys a rule may name.
pub const RULE_CATEGORIES: [&str; 6] =
    ["organization", "official", "verified_publisher", "sponsored_oss", "community", "other_registry"];

impl SignatureRule {
    /// Whether the rule covers `image` (canonical `name`) for `org`.
    pub fn covers(&self, org: &str, settings: &Settings, image: &Image, name: &str, catalog: &Catalog) -> bool {
        match self.images.as_str() {
            "*" => true,
            p if p.contains('/') => pattern_matches(p, name),
            key => categorize(org, settings, image, catalog).key() == key,
        }
    }

    /// Whether a signed payload's `docker-reference` satisfies the rule's identity.
    pub fn identity_matches(&self, docker_reference: &str) -> bool {
        self.identity.as_deref().is_none_or(|want| pattern_matches(want, docker_reference))
    }
}

/// A rule that applies to a pull: the org it belongs to and its position there (rule `index`
/// counts from 1, as the console and messages show it).
#[derive(Debug, Clone, Copy)]
pub struct Requirement<'a> {
    pub org: &'a str,
    pub index: usize,
    pub rule: &'a SignatureRule,
}

/// The signature rules that bind a subject with `memberships` pulling `image`, in org order.
pub fn required<'a>(memberships: &[Membership], image: &Image, snap: &'a Snapshot) -> Vec<Requirement<'a>> {
    let mut out = Vec::new();
    let mut name = None;
    for m in memberships.iter().filter(|m| !m.owner) {
        let Some((org, p)) = snap.orgs.get_key_value(&m.org) else { continue };
        for (i, rule) in p.settings.signatures.rules.iter().enumerate() {
            let name = name.get_or_insert_with(|| image.canonical());
            if rule.covers(org, &p.settings, image, name, &snap.catalog) {
                out.push(Requirement { org, index: i + 1, rule });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Badge, DOCKER_HUB, OrgPolicy};

    fn rule(images: &str) -> SignatureRule {
        SignatureRule { images: images.into(), keys: vec!["k".into()], identity: None, mode: Mode::Enforce }
    }

    fn snap(rules: Vec<SignatureRule>) -> Snapshot {
        let mut s = Snapshot::default();
        s.catalog.badges.insert("bitnami".into(), Badge::VerifiedPublisher);
        let settings = Settings { signatures: Signatures { rules }, ..Default::default() };
        s.orgs.insert("acme".into(), OrgPolicy::new(settings, vec![]));
        s
    }

    fn member(owner: bool) -> Vec<Membership> {
        vec![Membership { org: "acme".into(), owner, teams: vec![] }]
    }

    fn img(registry: Option<&str>, path: &str) -> Image {
        Image { registry: registry.map(str::to_owned), path: path.into(), digest: None }
    }

    fn indexes(m: &[Membership], i: &Image, s: &Snapshot) -> Vec<usize> {
        required(m, i, s).iter().map(|r| r.index).collect()
    }

    #[test]
    fn rules_cover_by_category_pattern_or_all() {
        let s = snap(vec![
            rule("organization"),
            rule("docker.io/library/*"),
            rule("verified_publisher"),
            rule("ghcr.io/acme/app"),
            rule("*"),
        ]);
        let m = member(false);
        assert_eq!(indexes(&m, &img(None, "acme/app"), &s), vec![1, 5]);
        assert_eq!(indexes(&m, &img(None, "acmeevil/app"), &s), vec![5], "anchored: another namespace");
        assert_eq!(indexes(&m, &img(Some(DOCKER_HUB), "library/alpine"), &s), vec![2, 5]);
        assert_eq!(indexes(&m, &img(Some(DOCKER_HUB), "bitnami/redis"), &s), vec![3, 5]);
        assert_eq!(indexes(&m, &img(Some("ghcr.io"), "acme/app"), &s), vec![4, 5]);
        assert_eq!(indexes(&m, &img(Some("ghcr.io"), "acme/app2"), &s), vec![5], "exact pattern is exact");
    }

    #[test]
    fn owners_and_outsiders_are_not_bound() {
        let s = snap(vec![rule("*")]);
        assert!(required(&member(true), &img(None, "acme/app"), &s).is_empty(), "owners bypass");
        assert!(required(&[], &img(None, "acme/app"), &s).is_empty(), "non-members are not bound");
        let other = vec![Membership { org: "beta".into(), owner: false, teams: vec![] }];
        assert!(required(&other, &img(None, "acme/app"), &s).is_empty());
    }

    #[test]
    fn identity_is_anchored() {
        let mut r = rule("*");
        assert!(r.identity_matches("anything/at/all"), "no identity: any reference");
        r.identity = Some("registry.acme.dev/acme/*".into());
        assert!(r.identity_matches("registry.acme.dev/acme/app"));
        assert!(!r.identity_matches("registry.acme.dev/acmeevil/app"));
        assert!(!r.identity_matches("evil.dev/registry.acme.dev/acme/app"));
    }
}
