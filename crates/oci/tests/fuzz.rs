//! Property-based fuzzing of every parser that reads what a client or an upstream sends: request
//! paths and queries, names, tags, digests, `Range` and `Content-Range`, manifests. Inputs are
//! arbitrary bytes and strings plus mutations of valid documents; each parser must return
//! (never panic), and what it accepts must satisfy the invariants the rest of the code relies on.
//! The case counts keep the whole file to a few seconds, so CI runs it on every change.

use portcullis_oci::endpoint::{Endpoint, Method, parse, percent_decode, query_pairs};
use portcullis_oci::manifest::Manifest;
use portcullis_oci::name::{RepoName, Tag};
use portcullis_oci::range::{RangeRequest, parse_content_range, parse_range};
use portcullis_oci::{Digest, source};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() }
}

/// Paths built from the pieces a request path is made of, so that the parser's deep branches
/// are reached, not only its first check.
fn v2_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("v2".to_owned()),
        Just("blobs".to_owned()),
        Just("uploads".to_owned()),
        Just("manifests".to_owned()),
        Just("tags".to_owned()),
        Just("list".to_owned()),
        Just("referrers".to_owned()),
        Just("_catalog".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2F".to_owned()),
        Just(String::new()),
        Just(format!("sha256:{}", "a".repeat(64))),
        "[a-z0-9._-]{1,12}",
        "\\PC{0,12}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|p| format!("/{}", p.join("/")))
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof!["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "\\PC{0,6}"].prop_map(|m| Method::parse(&m))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn endpoints(m in method(), path in v2_path(), q in "\\PC{0,40}") {
        if let Ok(e) = parse(m, &path, &q) {
            // whatever parses names a valid repository (or none) and never climbs out of it
            if let Some(r) = e.repository() {
                prop_assert!(r.as_str().parse::<RepoName>().is_ok());
                prop_assert!(!r.as_str().split('/').any(|c| c == ".." || c == "."));
            }
            let _ = e.required_access();
            prop_assert!(!matches!(e, Endpoint::Base) || path.trim_end_matches('/') == "/v2");
        }
    }

    #[test]
    fn endpoints_from_arbitrary_text(m in method(), path in "\\PC{0,200}", q in "\\PC{0,60}") {
        let _ = parse(m, &path, &q);
        let _ = percent_decode(&path);
        let _ = query_pairs(&q);
    }

    #[test]
    fn names_and_tags(s in "\\PC{0,300}") {
        if let Ok(n) = s.parse::<RepoName>() {
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert!(n.as_str().len() <= 255);
        }
        if let Ok(t) = s.parse::<Tag>() {
            prop_assert_eq!(t.as_str(), s.as_str());
            prop_assert!(t.as_str().len() <= 128);
        }
        let _ = source::looks_like_host(&s);
        let _ = source::canonical_registry(&s);
    }

    #[test]
    fn digests(
        s in prop_oneof!["sha256:[0-9a-fA-F]{63,65}", "sha512:[0-9a-f]{127,129}", "[a-z0-9+._-]{0,10}:[0-9a-fA-F:]{0,140}"],
        junk in "\\PC{0,80}",
    ) {
        for input in [s.as_str(), junk.as_str()] {
            if let Ok(d) = input.parse::<Digest>() {
                // accepted digests are canonical: they print back as given, lower-case hex
                prop_assert_eq!(d.to_string(), input);
                prop_assert_eq!(d.hex().len(), d.algorithm().hex_len());
                prop_assert!(d.hex().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            }
        }
    }

    #[test]
    fn ranges(h in "(bytes=)?[0-9 ,-]{0,40}|\\PC{0,40}", size in 0u64..u64::MAX) {
        if let RangeRequest::Part(r) = parse_range(Some(&h), size) {
            prop_assert!(r.start <= r.end && r.end < size, "{r:?} outside {size}");
        }
        if let Some(r) = parse_content_range(&h) {
            prop_assert!(r.start <= r.end);
        }
    }

    #[test]
    fn absurd_range_lists(n in 2usize..5000, size in 1u64..1 << 40) {
        let list: Vec<String> = (0..n).map(|i| format!("{i}-{i}")).collect();
        // several ranges are served whole (RFC 9110 lets a server ignore them): no 5000-part answer
        prop_assert_eq!(parse_range(Some(&format!("bytes={}", list.join(","))), size), RangeRequest::Full);
    }

    #[test]
    fn manifests_from_bytes(b in proptest::collection::vec(any::<u8>(), 0..2048), ct in "\\PC{0,60}") {
        let _ = Manifest::parse(&b, Some(&ct));
        let _ = Manifest::parse(&b, None);
    }

    #[test]
    fn manifests_mutated(doc in manifest_json(), ct in prop_oneof![
        Just(None),
        Just(Some("application/vnd.oci.image.manifest.v1+json")),
        Just(Some("application/vnd.oci.image.index.v1+json")),
        Just(Some("application/vnd.docker.distribution.manifest.v2+json")),
        Just(Some("text/plain")),
    ]) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Ok(m) = Manifest::parse(&bytes, ct) {
            // every referenced blob carries a well-formed digest
            for d in m.blob_references().chain(m.manifests.iter()) {
                prop_assert!(d.digest.to_string().parse::<Digest>().is_ok());
            }
        }
    }
}

/// Manifest-shaped JSON with every field possibly missing, mistyped or odd.
fn manifest_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let digest =
        prop_oneof![Just(format!("sha256:{}", "b".repeat(64))), Just("sha256:short".to_owned()), "\\PC{0,20}",];
    let descriptor = (digest, prop_oneof![Just(json!(12)), Just(json!(-1)), Just(json!("12")), Just(json!(1e300))])
        .prop_map(
            |(d, size)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}),
        );
    let list = proptest::collection::vec(descriptor.clone(), 0..4);
    (
        prop_oneof![Just(json!(2)), Just(json!(1)), Just(json!("2")), Just(Value::Null)],
        prop_oneof![
            Just(json!("application/vnd.oci.image.manifest.v1+json")),
            Just(json!("application/vnd.oci.image.index.v1+json")),
            Just(json!("application/x-unknown")),
            Just(Value::Null),
        ],
        proptest::option::of(descriptor),
        proptest::option::of(list.clone()),
        proptest::option::of(list),
    )
        .prop_map(|(v, mt, config, layers, manifests)| {
            let mut m = serde_json::Map::new();
            m.insert("schemaVersion".into(), v);
            if !mt.is_null() {
                m.insert("mediaType".into(), mt);
            }
            if let Some(c) = config {
                m.insert("config".into(), c);
            }
            if let Some(l) = layers {
                m.insert("layers".into(), Value::Array(l));
            }
            if let Some(x) = manifests {
                m.insert("manifests".into(), Value::Array(x));
            }
            Value::Object(m)
        })
}
