//! Reading an upstream's listings — a tags page and a referrers index — into checked values:
//! tags that are valid tag names, referrers whose digest and size are well formed. Anything
//! else in the body is dropped, never passed on.

use oci::{Digest, Tag};
use portcullis_core::model::Referrer;
use serde_json::Value;

/// Longest listing body read from an upstream.
pub const MAX_LISTING_BYTES: usize = 8 << 20;

/// The tags of a `tags/list` body (`{"name": ..., "tags": [...] | null}`); `None` when the body
/// is not such an object.
pub fn tags(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let tags = match v.get("tags")? {
        Value::Null => return Some(vec![]),
        Value::Array(a) => a,
        _ => return None,
    };
    Some(tags.iter().filter_map(Value::as_str).filter(|t| t.parse::<Tag>().is_ok()).map(str::to_owned).collect())
}

/// The descriptors of a referrers index; `None` when the body is not an index.
pub fn referrers(body: &[u8]) -> Option<Vec<Referrer>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let manifests = v.get("manifests")?.as_array()?;
    Some(
        manifests
            .iter()
            .filter_map(|d| {
                let digest = d.get("digest")?.as_str()?.parse::<Digest>().ok()?;
                let size = d.get("size")?.as_i64().filter(|s| *s >= 0)?;
                Some(Referrer {
                    digest: digest.to_string(),
                    media_type: d.get("mediaType")?.as_str()?.to_owned(),
                    size,
                    artifact_type: d.get("artifactType").and_then(Value::as_str).map(str::to_owned),
                    annotations: d.get("annotations").filter(|a| a.is_object()).map(Value::to_string),
                })
            })
            .collect(),
    )
}

/// `n` and `last` of a tags request as a query string (`?n=10&last=v1`, or empty).
pub fn tags_query(n: Option<usize>, last: Option<&str>) -> String {
    let mut q: Vec<String> = n.map(|n| format!("n={n}")).into_iter().collect();
    if let Some(l) = last {
        q.push(format!("last={}", escape(l)));
    }
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

pub use oci::endpoint::percent_encode as escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_valid_names_only() {
        let body = br#"{"name":"library/alpine","tags":["3.20","latest","../x","", 7, "a b"]}"#;
        assert_eq!(tags(body), Some(vec!["3.20".to_owned(), "latest".to_owned()]));
        assert_eq!(tags(br#"{"name":"x","tags":null}"#), Some(vec![]));
        assert_eq!(tags(b"<html>"), None);
        assert_eq!(tags(br#"{"tags":"latest"}"#), None);
    }

    #[test]
    fn referrers_keep_well_formed_descriptors() {
        let d = format!("sha256:{}", "a".repeat(64));
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":10,
                "artifactType":"application/x.sig","annotations":{{"k":"v"}}}},
              {{"mediaType":"m","digest":"sha256:nothex","size":1}},
              {{"mediaType":"m","digest":"{d}","size":-1}}]}}"#
        );
        let r = referrers(body.as_bytes()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].digest.as_str(), r[0].size), (d.as_str(), 10));
        assert_eq!(r[0].artifact_type.as_deref(), Some("application/x.sig"));
        assert_eq!(r[0].annotations.as_deref(), Some(r#"{"k":"v"}"#));
        assert!(referrers(br#"{"manifests":{}}"#).is_none());
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(tags_query(None, None), "");
        assert_eq!(tags_query(Some(5), Some("v1&x=y")), "?n=5&last=v1%26x%3Dy");
        assert_eq!(escape("application/vnd.x+json"), "application/vnd.x%2Bjson");
    }
}
