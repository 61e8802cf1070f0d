//! `portcullis publishers sync`: reads Docker Hub's search API (`/api/search/v4?badges=...`,
//! base URL configurable) page by page and stores each namespace's badge through the admin API
//! of a running server (as overrides, applied to the next request). The parser is tolerant: a
//! result's namespace is `publisher.id`, `namespace`, or the part of `id`/`name`/`slug` before `/`.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::Value;

use crate::cli_api::Api;

const PAGE: usize = 100;

fn namespace_of(r: &Value) -> Option<String> {
    let direct = r["publisher"]["id"].as_str().or_else(|| r["namespace"].as_str());
    let from_name =
        || ["id", "name", "slug"].iter().find_map(|k| r[*k].as_str().and_then(|n| n.split_once('/')).map(|(ns, _)| ns));
    let ns = direct.or_else(from_name)?.to_ascii_lowercase();
    (!ns.contains('.') && oci::name::is_valid_component(&ns) && ns != "library").then_some(ns)
}

/// Fetches every namespace with `badge` from the search API at `base`.
async fn fetch(http: &reqwest::Client, base: &str, badge: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut from = 0usize;
    loop {
        let url = format!("{}/api/search/v4?badges={badge}&from={from}&size={PAGE}", base.trim_end_matches('/'));
        let v: Value = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?
            .error_for_status()?
            .json()
            .await?;
        let results = v["results"].as_array().cloned().unwrap_or_default();
        out.extend(results.iter().filter_map(namespace_of));
        from += results.len();
        let total = v["total"].as_u64().unwrap_or(0) as usize;
        eprintln!("publishers sync: {badge}: {from}/{total}");
        if results.is_empty() || from >= total {
            break;
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub async fn sync(api: &Api, base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION"))).build()?;
    let mut badges: BTreeMap<String, &str> = BTreeMap::new();
    for ns in fetch(&http, base, "open_source").await? {
        badges.insert(ns, "open_source");
    }
    // Verified Publisher wins when a namespace has both.
    for ns in fetch(&http, base, "verified_publisher").await? {
        badges.insert(ns, "verified_publisher");
    }
    let total = badges.len();
    for (i, (ns, badge)) in badges.iter().enumerate() {
        api.quiet("PUT", &format!("/api/v1/publishers/{ns}"), Some(serde_json::json!({ "badge": badge }))).await?;
        if (i + 1) % 50 == 0 || i + 1 == total {
            eprintln!("publishers sync: stored {}/{total}", i + 1);
        }
    }
    println!("publishers sync: {total} namespaces from {base}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_from_search_results() {
        let r = |v: Value| namespace_of(&v);
        assert_eq!(
            r(serde_json::json!({"publisher": {"id": "Bitnami"}, "name": "bitnami/redis"})),
            Some("bitnami".into())
        );
        assert_eq!(r(serde_json::json!({"id": "grafana/grafana"})), Some("grafana".into()));
        assert_eq!(r(serde_json::json!({"slug": "a.b/c"})), None, "no dotted namespaces");
        assert_eq!(r(serde_json::json!({"name": "library/alpine"})), None, "never library");
        assert_eq!(r(serde_json::json!({"name": "alpine"})), None);
    }
}
