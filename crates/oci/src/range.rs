//! HTTP byte ranges: the `Range` request header of blob GETs (single range only) and the
//! `Content-Range` header of chunked upload PATCHes.

/// An inclusive byte range `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What to do with a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve the whole entity (no header, or one we may ignore such as several ranges).
    Full,
    /// Serve this part with 206.
    Part(ByteRange),
    /// Answer 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Interprets a `Range` header against an entity of `size` bytes (RFC 9110 §14.1.2).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(h) = header else { return RangeRequest::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Unsatisfiable };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse().ok() }
    };
    let range = if a.is_empty() {
        // Suffix range: the last `b` bytes.
        match num(b) {
            Some(0) | None => return RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => return RangeRequest::Unsatisfiable,
            Some(n) => ByteRange { start: size.saturating_sub(n), end: size - 1 },
        }
    } else {
        let Some(start) = num(a) else { return RangeRequest::Unsatisfiable };
        if start >= size {
            return RangeRequest::Unsatisfiable;
        }
        let end = if b.is_empty() {
            size - 1
        } else {
            match num(b) {
                Some(e) if e >= start => e.min(size - 1),
                _ => return RangeRequest::Unsatisfiable,
            }
        };
        ByteRange { start, end }
    };
    RangeRequest::Part(range)
}

/// Parses an upload `Content-Range`: `<start>-<end>`, also accepting `bytes <start>-<end>/<any>`.
pub fn parse_content_range(header: &str) -> Option<ByteRange> {
    let h = header.trim();
    let h = h.strip_prefix("bytes ").or_else(|| h.strip_prefix("bytes=")).unwrap_or(h);
    let h = h.split('/').next()?;
    let (a, b) = h.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    (end >= start).then_some(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(s: u64, e: u64) -> RangeRequest {
        RangeRequest::Part(ByteRange { start: s, end: e })
    }

    #[test]
    fn range_table() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-4"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=+1-2"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn content_range_table() {
        assert_eq!(parse_content_range("0-99"), Some(ByteRange { start: 0, end: 99 }));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some(ByteRange { start: 100, end: 199 }));
        assert_eq!(parse_content_range("5-4"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range(""), None);
    }

    proptest! {
        #[test]
        fn ranges_stay_inside(h in "bytes=[0-9]{0,4}-[0-9]{0,4}", size in 0u64..5000) {
            if let RangeRequest::Part(r) = parse_range(Some(&h), size) {
                prop_assert!(r.start <= r.end && r.end < size);
            }
        }
    }
}
