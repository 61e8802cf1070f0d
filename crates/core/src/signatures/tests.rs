use base64::Engine;

use super::keys::tests::{ED25519_KEY, P256};
use super::*;

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A cosign payload for `D` (`r.example/acme/app`), signed by openssl with each test key.
const PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"r.example/acme/app"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"cosign container image signature"},"optional":null}"#;
const BY_P256: &str =
    "MEYCIQC+F6B+RrOhtYVWnacRYPYalKK1eR4YHKHo9J3tIc+QpwIhAMir5iRu63bQx55Eu710hXTmcnc4kHeRFG8RaAu4vrY8";
const BY_ED25519: &str = "Z5ryrdnX0ietMsmUdnTBkWZA+ei69AWJctMTUryUuHml1rZAoMZ8DkzEkZtI8FKV3ik5EkW4O/EYyTLyIvH2AA==";

fn found(payload: &str, sig: &str) -> Found {
    Found {
        payload: bytes::Bytes::from(payload.to_owned()),
        says: cosign::payload(payload.as_bytes()),
        signature: base64::engine::general_purpose::STANDARD.decode(sig).unwrap(),
    }
}

fn rule(keys: &[&str]) -> SignatureRule {
    SignatureRule {
        images: "*".into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        identity: None,
        mode: policy::Mode::Enforce,
    }
}

fn digest() -> Digest {
    D.parse().unwrap()
}

#[test]
fn a_signature_by_a_required_key_for_this_digest_satisfies() {
    let ev = Evidence { found: vec![found(PAYLOAD, BY_P256)], ..Default::default() };
    let id = PublicKey::parse(P256).unwrap().id;
    assert_eq!(ev.satisfies(&digest(), &rule(&[P256])), Ok(id.clone()));
    assert_eq!(ev.satisfies(&digest(), &rule(&[ED25519_KEY, P256])), Ok(id), "any one key");
    assert_eq!(
        ev.satisfies(&digest(), &rule(&[ED25519_KEY])),
        Err("no signature verifies with the required keys".into())
    );
    let ed = Evidence { found: vec![found(PAYLOAD, BY_ED25519)], ..Default::default() };
    assert!(ed.satisfies(&digest(), &rule(&[ED25519_KEY])).is_ok());
}

#[test]
fn the_payload_must_name_this_digest_and_identity() {
    let ev = Evidence { found: vec![found(PAYLOAD, BY_P256)], ..Default::default() };
    let other: Digest = format!("sha256:{}", "f".repeat(64)).parse().unwrap();
    assert!(ev.satisfies(&other, &rule(&[P256])).unwrap_err().contains("is for another image (sha256:0123"));
    let mut r = rule(&[P256]);
    r.identity = Some("r.example/acme/*".into());
    assert!(ev.satisfies(&digest(), &r).is_ok());
    r.identity = Some("r.example/beta/*".into());
    assert!(ev.satisfies(&digest(), &r).unwrap_err().contains("names r.example/acme/app, not r.example/beta/*"));
}

#[test]
fn a_tampered_payload_or_nothing_found_is_explained() {
    let tampered = PAYLOAD.replace("acme", "acmf");
    let ev = Evidence { found: vec![found(&tampered, BY_P256)], ..Default::default() };
    assert_eq!(ev.satisfies(&digest(), &rule(&[P256])), Err("no signature verifies with the required keys".into()));
    assert_eq!(Evidence::default().satisfies(&digest(), &rule(&[P256])), Err("it has no signature".into()));
    let odd = Evidence { not_signatures: true, ..Default::default() };
    assert!(odd.satisfies(&digest(), &rule(&[P256])).unwrap_err().contains("not a signature"));
    let down =
        Evidence { trouble: Some("its signatures could not be read: upstream down".into()), ..Default::default() };
    assert!(down.satisfies(&digest(), &rule(&[P256])).unwrap_err().contains("upstream down"));
}

#[test]
fn remembered_per_digest_and_keys() {
    let v = Verified::default();
    let a = rule_key(&rule(&[P256]));
    let b = rule_key(&rule(&[ED25519_KEY]));
    assert_ne!(a, b);
    let mut with_identity = rule(&[P256]);
    with_identity.identity = Some("x/*".into());
    assert_ne!(a, rule_key(&with_identity), "the identity is part of the requirement");
    v.remember([digest()], &a);
    assert!(v.contains(&digest(), &a));
    assert!(!v.contains(&digest(), &b));
}

#[test]
fn rules_are_checked_and_canonical() {
    let canonical = |p: &str| Ok(p.replace("docker.io/alpine", "docker.io/library/alpine"));
    let mut rules = vec![rule(&[P256, ED25519_KEY, P256])];
    rules[0].images = "org".into();
    rules.push(SignatureRule { images: "docker.io/alpine".into(), ..rule(&[&format!("  {P256}\n")]) });
    check_rules(&mut rules, canonical).unwrap();
    assert_eq!(rules[0].images, "organization");
    assert_eq!(rules[0].keys.len(), 2, "deduplicated");
    assert_eq!(rules[1].images, "docker.io/library/alpine");
    assert_eq!(rules[1].keys, vec![P256.to_owned()], "trimmed");

    let bad = |r: SignatureRule| check_rules(&mut [r], canonical).unwrap_err().to_string();
    assert!(bad(SignatureRule { images: "everything".into(), ..rule(&[P256]) }).contains("neither a category"));
    assert!(bad(rule(&[])).contains("between 1 and"));
    assert!(bad(rule(&["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])).contains("key 1:"));
    assert!(bad(SignatureRule { identity: Some("a/*/b".into()), ..rule(&[P256]) }).contains("identity"));
    let refuse = |_: &str| Err(Error::Invalid("invalid repository pattern".into()));
    assert!(
        check_rules(&mut [SignatureRule { images: "docker.io/*/x".into(), ..rule(&[P256]) }], refuse)
            .unwrap_err()
            .to_string()
            .contains("signature rule 1: invalid repository pattern")
    );
    let mut many = vec![rule(&[P256]); policy::MAX_SIGNATURE_RULES + 1];
    assert!(check_rules(&mut many, canonical).is_err());
}

proptest::proptest! {
    /// No change to a signed payload or to its signature leaves it verifying: never an allow the
    /// rule forbids.
    #[test]
    fn any_flipped_byte_fails(in_payload: bool, at: usize, bit in 0u8..8) {
        let mut f = found(PAYLOAD, BY_P256);
        let mut payload = f.payload.to_vec();
        if in_payload {
            let i = at % payload.len();
            payload[i] ^= 1 << bit;
        } else {
            let i = at % f.signature.len();
            f.signature[i] ^= 1 << bit;
        }
        f.says = cosign::payload(&payload);
        f.payload = payload.into();
        let ev = Evidence { found: vec![f], ..Default::default() };
        proptest::prop_assert!(ev.satisfies(&digest(), &rule(&[P256, ED25519_KEY])).is_err());
    }
}
