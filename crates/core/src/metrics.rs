//! Process counters, rendered in the Prometheus text format at `/metrics`: the service's own
//! counters, registry API requests by endpoint (`RequestStats`), and storage backends'
//! operations (`BackendStats`).

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
    pub signin_failures: AtomicU64,
    pub signin_throttled: AtomicU64,
    pub badge_lookups: AtomicU64,
    pub badge_hits: AtomicU64,
    pub badge_failures: AtomicU64,
    pub outage_requests: AtomicU64,
    /// Registry API requests by endpoint and status class.
    pub requests: RequestStats,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &AtomicU64); 15] = [
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
            (
                "portcullis_signin_failures_total",
                "Sign-ins refused for a wrong password or token",
                &self.signin_failures,
            ),
            (
                "portcullis_signin_throttled_total",
                "Sign-ins refused because of earlier failures (growing delays, per-address limit)",
                &self.signin_throttled,
            ),
            (
                "portcullis_hub_badge_lookups_total",
                "Docker Hub badge lookups of namespaces the catalog did not know",
                &self.badge_lookups,
            ),
            ("portcullis_hub_badge_hits_total", "Badge checks answered from the lookup cache", &self.badge_hits),
            (
                "portcullis_hub_badge_failures_total",
                "Badge lookups that failed (the namespace stays community until asked again)",
                &self.badge_failures,
            ),
            (
                "portcullis_database_outage_requests_total",
                "Registry reads let through on the last snapshot while the database was unreachable",
                &self.outage_requests,
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

/// Upper bounds (seconds) of the latency histogram buckets.
const BOUNDS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct OpStat {
    /// Calls at or under each bound (not cumulative; summed when rendered).
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
    errors: u64,
}

impl OpStat {
    fn observe(&mut self, elapsed: std::time::Duration, failed: bool) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
        self.errors += u64::from(failed);
    }

    /// The histogram's lines for one label set of `family`.
    fn histogram(&self, out: &mut String, family: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BOUNDS.iter().zip(self.buckets) {
            cumulative += n;
            out.push_str(&format!("{family}_bucket{{{labels},le=\"{bound}\"}} {cumulative}\n"));
        }
        out.push_str(&format!(
            "{family}_bucket{{{labels},le=\"+Inf\"}} {}\n{family}_sum{{{labels}}} {}\n{family}_count{{{labels}}} {}\n",
            self.count, self.sum, self.count
        ));
    }
}

/// Registry API requests by endpoint (`Endpoint::name`, the route vocabulary) and status class
/// (`2xx` … `5xx`): counts and latency to the response head, in atomics (no lock per request).
#[derive(Debug)]
pub struct RequestStats {
    /// One cell per (endpoint name, status class), in `Endpoint::NAMES` × `CLASSES` order.
    cells: Vec<Cell>,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Default)]
struct Cell {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats { cells: (0..oci::Endpoint::NAMES.len() * CLASSES.len()).map(|_| Cell::default()).collect() }
    }
}

impl RequestStats {
    fn cell(&self, endpoint: &str, class: usize) -> Option<&Cell> {
        let names = &oci::Endpoint::NAMES;
        let e = names.iter().position(|n| *n == endpoint).unwrap_or(names.len() - 1);
        self.cells.get(e * CLASSES.len() + class)
    }

    /// Records one request to `endpoint` answered with `status` after `elapsed`.
    pub fn observe(&self, endpoint: &str, status: u16, elapsed: std::time::Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        let Some(c) = self.cell(endpoint, class) else { return };
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            c.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        c.micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        c.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests to `endpoint` with a status of `class` (`2xx`, …) so far.
    pub fn count(&self, endpoint: &str, class: &str) -> u64 {
        let Some(k) = CLASSES.iter().position(|c| *c == class) else { return 0 };
        self.cell(endpoint, k).map_or(0, |c| c.count.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition: a counter and a latency histogram per endpoint and class
    /// seen so far.
    pub fn render(&self) -> String {
        let mut rows = Vec::new();
        for (e, name) in oci::Endpoint::NAMES.iter().enumerate() {
            for (k, class) in CLASSES.iter().enumerate() {
                let c = &self.cells[e * CLASSES.len() + k];
                let count = c.count.load(Ordering::Relaxed);
                if count > 0 {
                    let buckets = std::array::from_fn(|i| c.buckets[i].load(Ordering::Relaxed));
                    let sum = c.micros.load(Ordering::Relaxed) as f64 / 1e6;
                    rows.push((
                        format!("endpoint=\"{name}\",status=\"{class}\""),
                        OpStat { buckets, count, sum, errors: 0 },
                    ));
                }
            }
        }
        let mut out = String::from(
            "# HELP portcullis_http_requests_total Registry API requests by endpoint and status class\n\
             # TYPE portcullis_http_requests_total counter\n",
        );
        for (labels, s) in &rows {
            out.push_str(&format!("portcullis_http_requests_total{{{labels}}} {}\n", s.count));
        }
        out.push_str(
            "# HELP portcullis_http_request_duration_seconds Time to the response head of registry API requests\n\
             # TYPE portcullis_http_request_duration_seconds histogram\n",
        );
        for (labels, s) in &rows {
            s.histogram(&mut out, "portcullis_http_request_duration_seconds", labels);
        }
        out
    }
}

/// Latency and failures of one storage backend's operations (a `MetaStore` or `BlobStore`),
/// by operation. Failures are the backend's own (`Db`, `Storage`), not answers such as
/// "already exists". Blob reads are timed to their first byte (the stream is the caller's).
#[derive(Debug)]
pub struct BackendStats {
    /// `database` or `blob_store`.
    store: &'static str,
    /// `sqlite`, `postgres`, `filesystem`, `s3`.
    backend: &'static str,
    ops: std::sync::Mutex<std::collections::BTreeMap<&'static str, OpStat>>,
}

impl BackendStats {
    pub fn new(store: &'static str, backend: &'static str) -> BackendStats {
        BackendStats { store, backend, ops: Default::default() }
    }

    /// Records one call of `op` that took `elapsed`.
    pub fn observe(&self, op: &'static str, elapsed: std::time::Duration, failed: bool) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.entry(op).or_default().observe(elapsed, failed);
        }
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: &str) -> u64 {
        self.ops.lock().ok().and_then(|o| o.get(op).map(|s| s.count)).unwrap_or(0)
    }

    /// The Prometheus text exposition of several backends (each family's header once).
    pub fn render(all: &[&BackendStats]) -> String {
        let snapshot: Vec<(&BackendStats, Vec<(&'static str, OpStat)>)> = all
            .iter()
            .map(|b| (*b, b.ops.lock().map(|o| o.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default()))
            .collect();
        let mut out = String::from(
            "# HELP portcullis_backend_op_duration_seconds Time of each storage backend operation\n\
             # TYPE portcullis_backend_op_duration_seconds histogram\n",
        );
        for (b, ops) in &snapshot {
            for (op, s) in ops {
                let labels = format!("store=\"{}\",backend=\"{}\",op=\"{op}\"", b.store, b.backend);
                s.histogram(&mut out, "portcullis_backend_op_duration_seconds", &labels);
            }
        }
        out.push_str(
            "# HELP portcullis_backend_op_errors_total Storage backend operations that failed in the backend\n\
             # TYPE portcullis_backend_op_errors_total counter\n",
        );
        for (b, ops) in &snapshot {
            for (op, s) in ops {
                out.push_str(&format!(
                    "portcullis_backend_op_errors_total{{store=\"{}\",backend=\"{}\",op=\"{op}\"}} {}\n",
                    b.store, b.backend, s.errors
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BackendStats, RequestStats};

    #[test]
    fn requests_are_counted_by_endpoint_and_status_class() {
        let r = RequestStats::default();
        r.observe("manifest_get", 200, Duration::from_micros(80));
        r.observe("manifest_get", 200, Duration::from_millis(3));
        r.observe("manifest_get", 403, Duration::from_micros(90));
        r.observe("blob_get", 503, Duration::from_secs(7));
        assert_eq!(
            (r.count("manifest_get", "2xx"), r.count("manifest_get", "4xx"), r.count("blob_get", "5xx")),
            (2, 1, 1)
        );
        let text = r.render();
        assert!(
            text.contains("portcullis_http_requests_total{endpoint=\"manifest_get\",status=\"2xx\"} 2\n"),
            "{text}"
        );
        let l = "endpoint=\"manifest_get\",status=\"2xx\"";
        assert!(text.contains(&format!("portcullis_http_request_duration_seconds_bucket{{{l},le=\"0.0005\"}} 1\n")));
        assert!(text.contains(&format!("portcullis_http_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 2\n")));
        assert!(text.contains("duration_seconds_bucket{endpoint=\"blob_get\",status=\"5xx\",le=\"+Inf\"} 1\n"));
        assert_eq!(text.matches("# TYPE").count(), 2);
    }

    #[test]
    fn backend_stats_render_a_cumulative_histogram_and_errors() {
        let db = BackendStats::new("database", "sqlite");
        db.observe("manifest", Duration::from_micros(300), false);
        db.observe("manifest", Duration::from_millis(30), true);
        db.observe("manifest", Duration::from_secs(9), false);
        let s3 = BackendStats::new("blob_store", "s3");
        s3.observe("read", Duration::from_millis(2), false);
        let text = BackendStats::render(&[&db, &s3]);
        let l = "store=\"database\",backend=\"sqlite\",op=\"manifest\"";
        assert!(text.contains(&format!("_bucket{{{l},le=\"0.0005\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("_bucket{{{l},le=\"0.025\"}} 1\n")));
        assert!(text.contains(&format!("_bucket{{{l},le=\"0.05\"}} 2\n")));
        assert!(text.contains(&format!("_bucket{{{l},le=\"5\"}} 2\n")));
        assert!(text.contains(&format!("_bucket{{{l},le=\"+Inf\"}} 3\n")));
        assert!(text.contains(&format!("_count{{{l}}} 3\n")));
        assert!(text.contains(&format!("portcullis_backend_op_errors_total{{{l}}} 1\n")));
        assert!(text.contains("op_errors_total{store=\"blob_store\",backend=\"s3\",op=\"read\"} 0\n"));
        assert_eq!(text.matches("# TYPE").count(), 2, "each family's header once");
        assert_eq!((db.calls("manifest"), db.calls("other")), (3, 0));
    }
}
