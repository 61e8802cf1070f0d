//! How the console writes times, sizes and digests, and reads dates from filter forms. Times
//! are UTC, written `2026-11-26 14:03 UTC`, so that pages read the same for everyone.

pub use portcullis_core::clock::{date, parse_date, time};

/// `sha256:0123456789ab` (the algorithm and 12 hex digits).
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => d.to_owned(),
    }
}

/// `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// `24 h`, `90 min`, `45 s`: the largest unit that divides the seconds.
pub fn duration(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

pub use oci::endpoint::percent_encode as query_escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "sha256:0123456789ab");
        assert_eq!(query_escape("docker.io/a b&c"), "docker.io/a%20b%26c");
        assert_eq!((duration(86_400), duration(5_400), duration(45)), ("24 h".into(), "90 min".into(), "45 s".into()));
    }
}
