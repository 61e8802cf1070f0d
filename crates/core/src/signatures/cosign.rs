//! The sigstore signature format cosign and containers/image write, as this gateway reads it:
//! a manifest tagged `sha256-<hex>.sig` next to the image (or a referrer whose artifact type is
//! cosign's signature), whose `simplesigning` layers are each a payload naming the signed
//! manifest's digest, with the base64 signature in the layer's
//! `dev.cosignproject.cosign/signature` annotation.

use base64::Engine;
use oci::{Digest, Manifest, Tag};
use serde::Deserialize;

pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of cosign's signatures stored as OCI 1.1 referrers.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `critical.type` of a container image signature.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Largest payload read (one is a few hundred bytes) and signature accepted.
pub const MAX_PAYLOAD: u64 = 64 * 1024;
const MAX_SIGNATURE: usize = 1024;

/// The tag cosign stores the signatures of `digest` under.
pub fn signature_tag(digest: &Digest) -> Tag {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex()).parse().expect("a valid tag")
}

/// Whether `m` is a signature object (clients fetch these to verify; they run nothing).
pub fn is_signature(m: &Manifest) -> bool {
    m.manifests.is_empty()
        && !m.layers.is_empty()
        && (m.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT)
            || m.layers.iter().all(|l| l.media_type == SIMPLESIGNING))
}

/// Layer types of what supply-chain tools attach to an image: cosign signatures, in-toto
/// attestations in DSSE envelopes, sigstore bundles, SPDX and CycloneDX SBOMs.
const ATTACHMENT_LAYERS: [&str; 9] = [
    SIMPLESIGNING,
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.in-toto+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "text/spdx",
    "text/spdx+json",
    "application/spdx+json",
    "application/vnd.cyclonedx+json",
];

/// Whether `m` is an attachment — a signature, attestation or SBOM (cosign's `.sig`, `.att`,
/// `.sbom`, or such a referrer): every layer is one of those documents, so it runs nothing, and
/// clients fetch it to verify the image. A signature rule serves these as they are.
pub fn is_attachment(m: &Manifest) -> bool {
    is_signature(m)
        || (m.manifests.is_empty()
            && !m.layers.is_empty()
            && m.layers.iter().all(|l| ATTACHMENT_LAYERS.contains(&l.media_type.as_str())))
}

/// One signature layer: the payload blob it signs and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub payload: Digest,
    pub size: u64,
    pub signature: Vec<u8>,
}

/// The signature layers of a signature object, at most `limit`, and how many more there were;
/// layers that are not signatures (no or undecodable annotation, oversized payload) are skipped.
pub fn layers(m: &Manifest, limit: usize) -> (Vec<Layer>, usize) {
    let mut all = m.layers.iter().filter(|l| l.media_type == SIMPLESIGNING && l.size <= MAX_PAYLOAD).filter_map(|l| {
        let sig = l.annotations.as_ref()?.get(SIGNATURE_ANNOTATION)?.as_str()?;
        if sig.len() > MAX_SIGNATURE * 2 {
            return None;
        }
        let signature = base64::engine::general_purpose::STANDARD.decode(sig.trim()).ok()?;
        Some(Layer { payload: l.digest.clone(), size: l.size, signature })
    });
    let taken: Vec<Layer> = all.by_ref().take(limit).collect();
    (taken, all.count())
}

/// What a payload says it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub digest: String,
    pub reference: String,
}

#[derive(Deserialize)]
struct Wire {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageRef,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

#[derive(Deserialize)]
struct ImageRef {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Reads a simplesigning payload; `Err` says why it is not one.
pub fn payload(bytes: &[u8]) -> Result<Payload, String> {
    let w: Wire =
        serde_json::from_slice(bytes).map_err(|e| format!("the signed payload is not a cosign payload: {e}"))?;
    if w.critical.kind != PAYLOAD_TYPE {
        return Err(format!("the signed payload's type is {:?}, not {PAYLOAD_TYPE:?}", w.critical.kind));
    }
    Ok(Payload { digest: w.critical.image.digest, reference: w.critical.identity.reference })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sig_manifest(layers: &str) -> Manifest {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":2}},"layers":[{layers}]}}"#
        );
        Manifest::parse(body.as_bytes(), None).unwrap()
    }

    fn layer(media: &str, size: u64, sig: Option<&str>) -> String {
        let ann = sig.map(|s| format!(r#","annotations":{{"{SIGNATURE_ANNOTATION}":"{s}"}}"#)).unwrap_or_default();
        format!(r#"{{"mediaType":"{media}","digest":"{D}","size":{size}{ann}}}"#)
    }

    #[test]
    fn the_tag_is_cosigns() {
        assert_eq!(
            signature_tag(&D.parse().unwrap()).as_str(),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
    }

    #[test]
    fn signature_objects_and_their_layers() {
        let m = sig_manifest(&[layer(SIMPLESIGNING, 200, Some("AAEC")), layer(SIMPLESIGNING, 200, None)].join(","));
        assert!(is_signature(&m));
        assert_eq!(
            layers(&m, 10),
            (vec![Layer { payload: D.parse().unwrap(), size: 200, signature: vec![0, 1, 2] }], 0)
        );
        let image = sig_manifest(&layer("application/vnd.oci.image.layer.v1.tar+gzip", 200, Some("AAEC")));
        assert!(!is_signature(&image), "an image is not a signature");
        assert!(!is_signature(&sig_manifest("")), "no layers");
        let mixed = sig_manifest(&[layer(SIMPLESIGNING, 1, Some("AA==")), layer("x/y", 1, None)].join(","));
        assert!(!is_signature(&mixed), "a runnable layer beside a signature");
        assert!(!is_attachment(&mixed) && !is_attachment(&image));
        let attestation = sig_manifest(&layer("application/vnd.dsse.envelope.v1+json", 900, None));
        let sbom = sig_manifest(&layer("text/spdx+json", 900, None));
        assert!(is_attachment(&attestation) && is_attachment(&sbom) && is_attachment(&m));
        assert!(!is_signature(&attestation), "an attestation is not a signature");
        let odd = sig_manifest(
            &[layer(SIMPLESIGNING, MAX_PAYLOAD + 1, Some("AAEC")), layer(SIMPLESIGNING, 1, Some("not base64!"))]
                .join(","),
        );
        assert_eq!(layers(&odd, 10), (vec![], 0), "oversized payloads and bad signatures are skipped");
        let many = sig_manifest(&vec![layer(SIMPLESIGNING, 1, Some("AAEC")); 300].join(","));
        let (checked, more) = layers(&many, 256);
        assert_eq!((checked.len(), more), (256, 44), "bounded, and the rest counted");
    }

    #[test]
    fn payloads() {
        let ok = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r.example/acme/app"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(
            payload(ok.as_bytes()).unwrap(),
            Payload { digest: D.into(), reference: "r.example/acme/app".into() }
        );
        assert!(payload(ok.replace("cosign container", "other").as_bytes()).unwrap_err().contains("type"));
        assert!(payload(b"not json").unwrap_err().contains("not a cosign payload"));
        assert!(payload(b"[]").is_err());
        assert!(payload(br#"{"critical":{}}"#).is_err());
    }
}
