//! Signature requirements, verified: finds the sigstore signatures of a manifest (the
//! `sha256-<hex>.sig` attachment and cosign signature referrers) through the same content
//! interface a pull uses — hosted or cached, so it works for both —, checks each signature
//! against a rule's keys and the payload against the manifest's digest, and remembers what
//! verified per (digest, keys) so that the next pull costs one lookup. Only successes are
//! remembered: a signature pushed a moment ago counts at the next pull. An index that verifies
//! vouches for its children (clients fetch them right after it). The gate decides with it
//! (`gate/signed.rs`); the settings check uses [`check_rules`].
//!
//! Work is bounded whatever a repository holds: one attachment and at most
//! [`MAX_REFERRERS`] referrers, [`MAX_LAYERS`] signature layers each, [`MAX_PAYLOADS`]
//! distinct payloads of at most 64 KiB read.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::StreamExt;
use oci::source::Source;
use oci::{Digest, ErrorCode, Manifest, Reference};
use policy::SignatureRule;
use sha2::{Digest as _, Sha256};

use crate::content::Content;
use crate::error::{Error, Result};

pub mod cosign;
pub mod keys;

use keys::PublicKey;

pub const MAX_REFERRERS: usize = 16;
pub const MAX_LAYERS: usize = 256;
pub const MAX_PAYLOADS: usize = 16;
/// Remembered verifications before the memory starts over.
const MAX_REMEMBERED: usize = 100_000;

/// The identity of a rule's requirement: its keys and identity (not its images or mode), so
/// that equal requirements of different rules or orgs share what verified.
pub type RuleKey = [u8; 32];

pub fn rule_key(rule: &SignatureRule) -> RuleKey {
    let mut h = Sha256::new();
    h.update(rule.identity.as_deref().unwrap_or("").as_bytes());
    for k in &rule.keys {
        h.update([0]);
        h.update(k.as_bytes());
    }
    h.finalize().into()
}

/// A signature found for a manifest: its payload, read and parsed, and the signature bytes.
pub struct Found {
    payload: bytes::Bytes,
    says: Result<cosign::Payload, String>,
    signature: Vec<u8>,
}

/// Everything found for one manifest digest.
#[derive(Default)]
pub struct Evidence {
    pub found: Vec<Found>,
    /// Why signatures could not be read, if something failed (an upstream, a store).
    pub trouble: Option<String>,
    /// Something under the signature tag or among the referrers was not a signature.
    pub not_signatures: bool,
    /// Signatures beyond the bounds, not checked.
    pub unchecked: usize,
}

impl Evidence {
    /// The key of `rule` that signed `digest`, or why none did.
    pub fn satisfies(&self, digest: &Digest, rule: &SignatureRule) -> std::result::Result<String, String> {
        let keys: Vec<PublicKey> = rule.keys.iter().filter_map(|k| PublicKey::parse(k).ok()).collect();
        let mut why = None;
        for f in &self.found {
            let Some(key) = keys.iter().find(|k| k.verifies(&f.payload, &f.signature)) else { continue };
            match &f.says {
                Err(e) => why = Some(e.clone()),
                Ok(p) if p.digest != digest.to_string() => {
                    why = Some(format!("a signature by {} is for another image ({})", key.id, p.digest))
                }
                Ok(p) if !rule.identity_matches(&p.reference) => {
                    why = Some(format!(
                        "a signature by {} names {}, not {}",
                        key.id,
                        p.reference,
                        rule.identity.as_deref().unwrap_or_default()
                    ))
                }
                Ok(_) => return Ok(key.id.clone()),
            }
        }
        let why = why.or_else(|| self.trouble.clone()).unwrap_or_else(|| {
            match (self.found.is_empty(), self.not_signatures) {
                (true, true) => "its signature tag holds something that is not a signature".into(),
                (true, false) => "it has no signature".into(),
                (false, _) => "no signature verifies with the required keys".into(),
            }
        });
        Err(match self.unchecked {
            0 => why,
            n => format!(
                "{why} ({} signatures checked, {n} more not: at most {MAX_LAYERS} per object and {MAX_PAYLOADS} payloads)",
                self.found.len()
            ),
        })
    }
}

/// What verified, remembered: digest → the key sets that signed it.
#[derive(Default)]
pub struct Verified {
    map: Mutex<HashMap<Digest, Vec<RuleKey>>>,
}

impl Verified {
    pub fn contains(&self, digest: &Digest, rule: &RuleKey) -> bool {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(digest).is_some_and(|keys| keys.contains(rule))
    }

    pub fn remember(&self, digests: impl IntoIterator<Item = Digest>, rule: &RuleKey) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for d in digests {
            if map.len() >= MAX_REMEMBERED {
                map.clear();
            }
            let keys = map.entry(d).or_default();
            if !keys.contains(rule) {
                keys.push(*rule);
            }
        }
    }
}

fn missing(e: &Error) -> bool {
    matches!(e, Error::Registry(ErrorCode::ManifestUnknown | ErrorCode::NameUnknown, _))
}

/// Finds and reads the signatures of `digest` in `source`.
pub async fn gather(content: &dyn Content, source: &Source, digest: &Digest) -> Evidence {
    let mut ev = Evidence::default();
    let mut objects = Vec::new();
    match content.manifest(source, &Reference::Tag(cosign::signature_tag(digest))).await {
        Ok(m) => objects.push(m),
        Err(e) if missing(&e) => {}
        Err(e) => ev.trouble = Some(format!("its signatures could not be read: {e}")),
    }
    // Referrers are a second place cosign may keep them; a registry without the API has none.
    if let Ok(r) = content.referrers(source, digest, Some(cosign::SIGNATURE_ARTIFACT)).await {
        for r in r.list.iter().take(MAX_REFERRERS) {
            let Ok(d) = r.digest.parse::<Digest>() else { continue };
            match content.manifest(source, &Reference::Digest(d)).await {
                Ok(m) => objects.push(m),
                Err(e) => ev.trouble = Some(format!("its signatures could not be read: {e}")),
            }
        }
    }
    let mut payloads: HashMap<Digest, Option<bytes::Bytes>> = HashMap::new();
    for object in objects {
        let m = match Manifest::parse(&object.content, Some(&object.media_type)) {
            Ok(m) if cosign::is_signature(&m) => m,
            _ => {
                ev.not_signatures = true;
                continue;
            }
        };
        let (layers, more) = cosign::layers(&m, MAX_LAYERS);
        ev.unchecked += more;
        for layer in layers {
            if !payloads.contains_key(&layer.payload) {
                if payloads.len() >= MAX_PAYLOADS {
                    ev.unchecked += 1;
                    continue;
                }
                let read = read_payload(content, source, &layer.payload, layer.size).await;
                if let Err(e) = &read {
                    ev.trouble = Some(format!("a signed payload could not be read: {e}"));
                }
                payloads.insert(layer.payload.clone(), read.ok());
            }
            let Some(Some(payload)) = payloads.get(&layer.payload) else { continue };
            let says = cosign::payload(payload);
            ev.found.push(Found { payload: payload.clone(), says, signature: layer.signature });
        }
    }
    ev
}

/// Reads a payload blob whole (it is small) and checks its digest.
async fn read_payload(content: &dyn Content, source: &Source, digest: &Digest, size: u64) -> Result<bytes::Bytes> {
    let blob = content.blob(source, digest).await?;
    if blob.size() != size || size == 0 || size > cosign::MAX_PAYLOAD {
        return Err(Error::Invalid(format!("payload {digest} is {} bytes, not {size}", blob.size())));
    }
    let mut stream = content.read(blob, digest, oci::range::ByteRange { start: 0, end: size - 1 }).await?;
    let mut out = Vec::with_capacity(size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::storage_from("", e))?;
        if (out.len() + chunk.len()) as u64 > size {
            return Err(Error::Invalid(format!("payload {digest} is longer than {size} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    if oci::digest::Hasher::digest(digest.algorithm(), &out) != *digest {
        return Err(Error::Invalid(format!("payload {digest} does not match its digest")));
    }
    Ok(out.into())
}

/// Checks and canonicalizes an org's signature rules (settings): categories or canonical
/// patterns, keys that parse (trimmed, sorted, unique), at most so many of each.
pub fn check_rules(rules: &mut [SignatureRule], canonical_pattern: impl Fn(&str) -> Result<String>) -> Result<()> {
    if rules.len() > policy::MAX_SIGNATURE_RULES {
        return Err(Error::Invalid(format!("at most {} signature rules", policy::MAX_SIGNATURE_RULES)));
    }
    for (i, r) in rules.iter_mut().enumerate() {
        let at = |m: String| Error::Invalid(format!("signature rule {}: {m}", i + 1));
        r.images = match r.images.trim() {
            "*" => "*".into(),
            "org" => "organization".into(),
            p if p.contains('/') => canonical_pattern(p).map_err(|e| at(e.to_string()))?,
            c if policy::RULE_CATEGORIES.contains(&c) => c.into(),
            other => {
                return Err(at(format!(
                    "images {other:?} is neither a category ({}), a repository pattern nor *",
                    policy::RULE_CATEGORIES.join(", ")
                )));
            }
        };
        if r.keys.is_empty() || r.keys.len() > policy::MAX_RULE_KEYS {
            return Err(at(format!("give between 1 and {} public keys", policy::MAX_RULE_KEYS)));
        }
        for (j, k) in r.keys.iter_mut().enumerate() {
            *k = k.trim().to_owned();
            PublicKey::parse(k).map_err(|e| at(format!("key {}: {e}", j + 1)))?;
        }
        r.keys.sort();
        r.keys.dedup();
        if let Some(id) = &mut r.identity {
            let body = id.trim().strip_suffix("/*").unwrap_or(id.trim());
            if body.is_empty() || body.contains('*') || body.len() > 512 {
                return Err(at(format!("identity {id:?} must be a repository reference, optionally ending in /*")));
            }
            *id = id.trim().to_owned();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
