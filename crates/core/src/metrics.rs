//! Process counters, rendered in the Prometheus text format at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub manifest_hits: AtomicU64,
    pub manifest_misses: AtomicU64,
    pub blob_hits: AtomicU64,
    pub blob_misses: AtomicU64,
    pub singleflight_waits: AtomicU64,
    pub upstream_bytes: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub stale_served: AtomicU64,
    pub evictions: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &AtomicU64); 9] = [
            (
                "portcullis_proxy_cache_hits_total{kind=\"manifest\"}",
                "Pull-through requests served from the cache",
                &self.manifest_hits,
            ),
            ("portcullis_proxy_cache_hits_total{kind=\"blob\"}", "", &self.blob_hits),
            (
                "portcullis_proxy_cache_misses_total{kind=\"manifest\"}",
                "Pull-through requests that went upstream",
                &self.manifest_misses,
            ),
            ("portcullis_proxy_cache_misses_total{kind=\"blob\"}", "", &self.blob_misses),
            (
                "portcullis_proxy_singleflight_waits_total",
                "Blob requests that joined a fill already in flight",
                &self.singleflight_waits,
            ),
            (
                "portcullis_proxy_upstream_bytes_total",
                "Blob bytes fetched from upstream registries",
                &self.upstream_bytes,
            ),
            ("portcullis_proxy_upstream_errors_total", "Failed upstream fetches", &self.upstream_errors),
            (
                "portcullis_proxy_stale_served_total",
                "Cached tags served while the upstream was failing",
                &self.stale_served,
            ),
            (
                "portcullis_proxy_evictions_total",
                "Cached blobs evicted to stay within the cache budget",
                &self.evictions,
            ),
        ];
        let mut out = String::new();
        for (name, help, v) in rows {
            let base = name.split('{').next().unwrap_or(name);
            if !help.is_empty() {
                out.push_str(&format!("# HELP {base} {help}\n# TYPE {base} counter\n"));
            }
            out.push_str(&format!("{name} {}\n", v.load(Ordering::Relaxed)));
        }
        out
    }
}
