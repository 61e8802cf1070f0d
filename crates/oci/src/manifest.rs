//! Manifest inspection: which kind a pushed manifest is, what it references and what the
//! referrers API needs to know about it. Manifests are stored and served byte-exact; this
//! module only reads them.

use serde::Deserialize;

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest accepted, as in distribution and the OCI spec's recommendation.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Image manifest (config + layers) or index (list of manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the registry needs to know about a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub media_type: String,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for image manifests without one the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// Strips parameters from a Content-Type (`a/b; charset=x` → `a/b`).
fn bare(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

impl Manifest {
    /// Parses a pushed manifest. `content_type` is the request's Content-Type, if any.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        if raw.schema_version != Some(2) {
            return Err("only schemaVersion 2 manifests are supported".into());
        }
        let header = content_type.map(bare).filter(|c| kind_of(c).is_some());
        let media_type = match (&raw.media_type, header) {
            (Some(m), Some(h)) if m != h => {
                return Err(format!("mediaType {m} does not match Content-Type {h}"));
            }
            (Some(m), _) => m.clone(),
            (None, Some(h)) => h.to_owned(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            (None, None) => return Err("cannot tell the manifest's media type".into()),
        };
        let kind = kind_of(&media_type).ok_or_else(|| format!("unsupported manifest media type {media_type}"))?;
        let (config, layers, manifests) = match kind {
            ManifestKind::Image => {
                let config = raw.config.ok_or("image manifest without config")?;
                (Some(config), raw.layers.unwrap_or_default(), vec![])
            }
            ManifestKind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err("index must not have config or layers".into());
                }
                (None, vec![], raw.manifests.ok_or("index without manifests")?)
            }
        };
        let artifact_type = raw.artifact_type.or_else(|| config.as_ref().map(|c| c.media_type.clone()));
        Ok(Manifest {
            kind,
            media_type,
            config,
            layers,
            manifests,
            subject: raw.subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Blobs that must exist in the repository (config and distributable layers).
    pub fn blob_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter().filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"x","digest":"{D2}","size":3}}]}}"#
        )
    }

    #[test]
    fn parses_image_and_index() {
        let m = Manifest::parse(image(OCI_MANIFEST).as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blob_references().count(), 2);
        assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.oci.image.config.v1+json"));
        let idx =
            format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5}}]}}"#);
        let m = Manifest::parse(idx.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        let m = Manifest::parse(image(DOCKER_MANIFEST).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(Manifest::parse(b"{", None).is_err());
        assert!(Manifest::parse(b"{}", None).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(Manifest::parse(image(OCI_MANIFEST).as_bytes(), Some(DOCKER_MANIFEST)).is_err());
        assert!(Manifest::parse(image("application/x").as_bytes(), None).is_err());
        let bad_digest = image(OCI_MANIFEST).replace(D2, "sha256:zz");
        assert!(Manifest::parse(bad_digest.as_bytes(), None).is_err());
        let neg = image(OCI_MANIFEST).replace("\"size\":3", "\"size\":-3");
        assert!(Manifest::parse(neg.as_bytes(), None).is_err());
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let s = image(OCI_MANIFEST).replace(r#""size":3}"#, r#""size":3,"urls":["https://x"]}"#);
        let m = Manifest::parse(s.as_bytes(), None).unwrap();
        assert_eq!(m.blob_references().count(), 1);
    }
}
