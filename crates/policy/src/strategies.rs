//! Property-test strategies for the policy's types, shared by this crate's tests and other
//! crates' (feature `proptest`), so that every property test draws settings the same way.

use proptest::prelude::*;

use crate::{Image, Mode, RegistryAccess, RestrictedImages, Settings};

/// Any switch of Image Access Management (on or off, each category, enforce or dry run) and of
/// Registry Access Management (Docker Hub allowed).
pub fn settings() -> impl Strategy<Value = Settings> {
    (any::<[bool; 6]>(), any::<bool>()).prop_map(|(b, dry)| Settings {
        restricted_images: RestrictedImages {
            enabled: b[0],
            allow_official_images: b[1],
            allow_verified_publishers: b[2],
            allow_sponsored_oss: b[3],
            allow_community: b[4],
            mode: if dry { Mode::DryRun } else { Mode::Enforce },
        },
        registry_access: RegistryAccess { enabled: b[5], allowed_registries: vec!["docker.io".into()] },
        ..Settings::default()
    })
}

/// An image of a few registries and namespaces, of every category the seed catalog knows.
pub fn image() -> impl Strategy<Value = Image> {
    (
        prop_oneof![Just(Some("docker.io".to_string())), Just(Some("ghcr.io".to_string())), Just(None)],
        prop_oneof!["library", "bitnami", "acme", "someone", "grafana"],
        "[a-z]{1,5}",
    )
        .prop_map(|(registry, ns, name)| Image { registry, path: format!("{ns}/{name}"), digest: None })
}
