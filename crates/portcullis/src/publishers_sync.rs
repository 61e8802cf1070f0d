//! `portcullis publishers sync`: reads Docker Hub's search API (`/api/search/v4?badges=...`,
//! base URL configurable; the same client as the gateway's badge lookups, `upstream::hub`) page
//! by page and stores each namespace's badge through the admin API of a running server (as
//! overrides, applied to the next request).

use std::collections::BTreeMap;

use crate::cli_api::Api;

const PAGE: usize = 100;

/// Fetches every namespace with `badge` from the search API.
async fn fetch(hub: &upstream::hub::HubApi, badge: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut from = 0usize;
    loop {
        let (from_s, size) = (from.to_string(), PAGE.to_string());
        let (results, total) = hub.search(&[("badges", badge), ("from", &from_s), ("size", &size)]).await?;
        out.extend(results.iter().filter_map(upstream::hub::namespace_of));
        from += results.len();
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
    let hub = upstream::hub::HubApi::new(base, std::time::Duration::from_secs(30))?;
    let mut badges: BTreeMap<String, &str> = BTreeMap::new();
    for ns in fetch(&hub, "open_source").await? {
        badges.insert(ns, "open_source");
    }
    // Verified Publisher wins when a namespace has both.
    for ns in fetch(&hub, "verified_publisher").await? {
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
