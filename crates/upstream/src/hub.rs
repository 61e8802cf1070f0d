//! Docker Hub's public search API (`{base}/api/search/v4`, the API behind hub.docker.com's
//! search; `badges=` filters by badge, `query=` matches names), the one place that reads it:
//! the badge of one namespace for the gateway's lookups (`portcullis_core::ports::BadgeLookup`)
//! and every namespace with a badge for `portcullis publishers sync`. A result names its
//! namespace in `publisher.id`, `namespace`, or before the `/` of `id`/`name`/`slug`; its badge
//! in `badge` (`verified_publisher`, `open_source`; `official`, `none` or a value never seen
//! before count as none). Answers are bounded in size; anything else is `Unavailable`.

use std::time::Duration;

use async_trait::async_trait;
use policy::Badge;
use portcullis_core::Error;
use serde_json::Value;

/// The largest answer read.
const MAX_BODY: usize = 4 << 20;

/// Docker Hub's search API at `base` (`https://hub.docker.com`).
pub struct HubApi {
    base: String,
    http: reqwest::Client,
}

/// The namespace a search result belongs to, when it can be one on Docker Hub (never `library`).
pub fn namespace_of(r: &Value) -> Option<String> {
    let direct = r["publisher"]["id"].as_str().or_else(|| r["namespace"].as_str());
    let from_name =
        || ["id", "name", "slug"].iter().find_map(|k| r[*k].as_str().and_then(|n| n.split_once('/')).map(|(ns, _)| ns));
    let ns = direct.or_else(from_name)?.to_ascii_lowercase();
    (!ns.contains('.') && oci::name::is_valid_component(&ns) && ns != "library").then_some(ns)
}

/// The badge a result shows (`None`: none we distinguish, so community).
pub fn badge_of(r: &Value) -> Option<Badge> {
    match r["badge"].as_str()? {
        "verified_publisher" => Some(Badge::VerifiedPublisher),
        "open_source" => Some(Badge::OpenSource),
        _ => None,
    }
}

impl HubApi {
    pub fn new(base: &str, timeout: Duration) -> Result<HubApi, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Unavailable(format!("cannot build the Docker Hub client: {e}")))?;
        Ok(HubApi { base: base.trim_end_matches('/').to_owned(), http })
    }

    /// One page of search results and the total, for `query` and/or `badges`.
    pub async fn search(&self, params: &[(&str, &str)]) -> Result<(Vec<Value>, usize), Error> {
        let url = format!("{}/api/search/v4", self.base);
        let unavailable = |m: String| Error::Unavailable(format!("Docker Hub's search API ({url}): {m}"));
        let mut resp = self.http.get(&url).query(params).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("it answered {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(unavailable(format!("the answer is larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| unavailable(format!("the answer is not JSON: {e}")))?;
        let results = v["results"].as_array().ok_or_else(|| unavailable("the answer has no results list".into()))?;
        Ok((results.clone(), v["total"].as_u64().unwrap_or(0) as usize))
    }
}

#[async_trait]
impl portcullis_core::ports::BadgeLookup for HubApi {
    async fn badge(&self, namespace: &str) -> Result<Option<Badge>, Error> {
        let (results, _) = self.search(&[("query", namespace), ("from", "0"), ("size", "100")]).await?;
        // The namespace's best badge among its repositories (Verified Publisher wins).
        let badges: Vec<Option<Badge>> =
            results.iter().filter(|r| namespace_of(r).as_deref() == Some(namespace)).map(badge_of).collect();
        Ok(if badges.contains(&Some(Badge::VerifiedPublisher)) {
            Some(Badge::VerifiedPublisher)
        } else if badges.contains(&Some(Badge::OpenSource)) {
            Some(Badge::OpenSource)
        } else {
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_and_badges_from_search_results() {
        let r = |v: Value| namespace_of(&v);
        assert_eq!(r(json!({"publisher": {"id": "Bitnami"}, "name": "bitnami/redis"})), Some("bitnami".into()));
        assert_eq!(r(json!({"id": "grafana/grafana"})), Some("grafana".into()));
        assert_eq!(r(json!({"slug": "a.b/c"})), None, "no dotted namespaces");
        assert_eq!(r(json!({"name": "library/alpine"})), None, "never library");
        assert_eq!(r(json!({"name": "alpine"})), None);
        assert_eq!(badge_of(&json!({"badge": "verified_publisher"})), Some(Badge::VerifiedPublisher));
        assert_eq!(badge_of(&json!({"badge": "open_source"})), Some(Badge::OpenSource));
        for other in [json!({"badge": "official"}), json!({"badge": "gold_star"}), json!({"badge": 3}), json!({})] {
            assert_eq!(badge_of(&other), None, "{other}");
        }
    }
}
