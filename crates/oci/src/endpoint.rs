//! Request parsing: `(method, path, query)` of a `/v2/...` request becomes one [`Endpoint`],
//! and every endpoint knows the access it needs ([`Endpoint::required_access`]). The HTTP
//! layer authorizes from this before any handler runs.
//!
//! Repository names may contain the words `manifests`, `blobs`, `tags` or `referrers` as
//! components, so routes are recognised from the right-hand end of the path.

use crate::digest::Digest;
use crate::error::{ErrorCode, WireError};
use crate::name::{Reference, RepoName, Tag};

/// The HTTP methods the distribution API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Patch,
    Delete,
    Other,
}

impl Method {
    pub fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// An action on a repository, as in token scopes `repository:<name>:<actions>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// A cross-repository mount request: `?mount=<digest>&from=<repo>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub digest: Digest,
    pub from: Option<RepoName>,
}

/// Pagination of tag lists and the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// One parsed distribution API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog { page: Page },
    Tags { name: RepoName, page: Page },
    Manifest { method: Method, name: RepoName, reference: Reference },
    Blob { method: Method, name: RepoName, digest: Digest },
    UploadStart { name: RepoName, digest: Option<Digest>, mount: Option<Mount> },
    Upload { method: Method, name: RepoName, id: String, digest: Option<Digest> },
    Referrers { name: RepoName, digest: Digest, artifact_type: Option<String> },
}

impl Endpoint {
    /// Every route name [`Endpoint::name`] gives, and [`Endpoint::INVALID`] last.
    pub const NAMES: [&'static str; 21] = [
        "base",
        "catalog",
        "tags_list",
        "referrers",
        "manifest_get",
        "manifest_head",
        "manifest_put",
        "manifest_delete",
        "manifest_other",
        "blob_get",
        "blob_head",
        "blob_put",
        "blob_delete",
        "blob_other",
        "upload_start",
        "upload_patch",
        "upload_status",
        "upload_put",
        "upload_delete",
        "upload_other",
        Endpoint::INVALID,
    ];
    /// The name of a request that does not parse into an endpoint.
    pub const INVALID: &'static str = "invalid";

    /// The route's name, for metrics and logs (`manifest_get`, `upload_patch`, …): the same
    /// vocabulary that routes labels what was routed.
    pub fn name(&self) -> &'static str {
        let by = |m: &Method, get, head, put, delete, other| match m {
            Method::Get => get,
            Method::Head => head,
            Method::Put => put,
            Method::Delete => delete,
            _ => other,
        };
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog { .. } => "catalog",
            Endpoint::Tags { .. } => "tags_list",
            Endpoint::Referrers { .. } => "referrers",
            Endpoint::Manifest { method, .. } => {
                by(method, "manifest_get", "manifest_head", "manifest_put", "manifest_delete", "manifest_other")
            }
            Endpoint::Blob { method, .. } => {
                by(method, "blob_get", "blob_head", "blob_put", "blob_delete", "blob_other")
            }
            Endpoint::UploadStart { .. } => "upload_start",
            Endpoint::Upload { method: Method::Patch, .. } => "upload_patch",
            Endpoint::Upload { method, .. } => {
                by(method, "upload_status", "upload_status", "upload_put", "upload_delete", "upload_other")
            }
        }
    }

    /// The repository accesses this request needs; all must be granted.
    pub fn required_access(&self) -> Vec<(&RepoName, Action)> {
        match self {
            Endpoint::Base | Endpoint::Catalog { .. } => vec![],
            Endpoint::Tags { name, .. } | Endpoint::Referrers { name, .. } => vec![(name, Action::Pull)],
            Endpoint::Manifest { method, name, .. } | Endpoint::Blob { method, name, .. } => {
                let action = match method {
                    Method::Put => Action::Push,
                    Method::Delete => Action::Delete,
                    _ => Action::Pull,
                };
                vec![(name, action)]
            }
            Endpoint::UploadStart { name, mount, .. } => {
                let mut v = vec![(name, Action::Push)];
                if let Some(Mount { from: Some(from), .. }) = mount {
                    v.push((from, Action::Pull));
                }
                v
            }
            Endpoint::Upload { name, .. } => vec![(name, Action::Push)],
        }
    }

    /// The actions a `WWW-Authenticate` challenge names, by repository: what a client should ask
    /// the token server for to go on. Like CNCF distribution (and Docker Hub), a push endpoint
    /// (a manifest `PUT`, every upload request) names `pull,push` on its repository, since a
    /// client that follows the challenge literally — `@sigstore/oci`, GitHub's attestation
    /// uploader — uses that one token for the whole push, reads included; a mount's source
    /// names `pull`. Only the challenge says more: the endpoint still requires only
    /// [`Endpoint::required_access`], and the token server grants only what the caller may have.
    pub fn challenge_access(&self) -> Vec<(&RepoName, Vec<Action>)> {
        let mut out: Vec<(&RepoName, Vec<Action>)> = Vec::new();
        for (name, action) in self.required_access() {
            let actions = match action {
                Action::Push => vec![Action::Pull, Action::Push],
                a => vec![a],
            };
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => {
                    for a in actions {
                        if !v.contains(&a) {
                            v.push(a);
                        }
                    }
                }
                None => out.push((name, actions)),
            }
        }
        out
    }

    /// The repository the request is about, if any.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog { .. } => None,
            Endpoint::Tags { name, .. }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::UploadStart { name, .. }
            | Endpoint::Upload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }
}

fn unsupported(method: Method) -> WireError {
    WireError::new(ErrorCode::Unsupported, format!("method {method:?} is not supported on this route"))
}

fn no_route() -> WireError {
    WireError::new(ErrorCode::NameUnknown, "unknown distribution API route")
}

fn name(parts: &[&str]) -> Result<RepoName, WireError> {
    parts.join("/").parse().map_err(|_| WireError::new(ErrorCode::NameInvalid, "invalid repository name"))
}

fn digest(s: &str) -> Result<Digest, WireError> {
    s.parse().map_err(|_| WireError::new(ErrorCode::DigestInvalid, format!("invalid digest {s:?}")))
}

/// The one percent-encoder, for a query value (ours and the ones we send upstream): everything
/// but unreserved characters, `/` and `:` (which a query may hold as they are) is `%XX`.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn page(pairs: &[(String, String)]) -> Result<Page, WireError> {
    let n = match query_get(pairs, "n") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| WireError::new(ErrorCode::PaginationNumberInvalid, format!("invalid page size {v:?}")))?,
        ),
    };
    Ok(Page { n, last: query_get(pairs, "last").map(str::to_owned) })
}

/// Parses a request. `path` is the full path starting with `/v2`; `query` is the raw query.
pub fn parse(method: Method, path: &str, query: &str) -> Result<Endpoint, WireError> {
    let rest = path.strip_prefix("/v2").ok_or_else(no_route)?;
    let q = query_pairs(query);
    if rest.is_empty() || rest == "/" {
        return match method {
            Method::Get | Method::Head => Ok(Endpoint::Base),
            m => Err(unsupported(m)),
        };
    }
    let rest = rest.strip_prefix('/').ok_or_else(no_route)?;
    if rest == "_catalog" {
        return match method {
            Method::Get => Ok(Endpoint::Catalog { page: page(&q)? }),
            m => Err(unsupported(m)),
        };
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let n = parts.len();
    let tail = |i: usize| if n >= i { parts[n - i] } else { "" };

    if n >= 3 && tail(2) == "tags" && tail(1) == "list" {
        let name = name(&parts[..n - 2])?;
        return match method {
            Method::Get => Ok(Endpoint::Tags { name, page: page(&q)? }),
            m => Err(unsupported(m)),
        };
    }
    if n >= 3 && tail(2) == "manifests" {
        let name = name(&parts[..n - 2])?;
        let r = tail(1);
        let reference = if r.contains(':') {
            Reference::Digest(digest(r)?)
        } else {
            Reference::Tag(
                r.parse::<Tag>().map_err(|_| WireError::new(ErrorCode::TagInvalid, format!("invalid tag {r:?}")))?,
            )
        };
        return match method {
            Method::Get | Method::Head | Method::Put | Method::Delete => {
                Ok(Endpoint::Manifest { method, name, reference })
            }
            m => Err(unsupported(m)),
        };
    }
    if n >= 4 && tail(3) == "blobs" && tail(2) == "uploads" {
        let name = name(&parts[..n - 3])?;
        let id = tail(1);
        if id.is_empty() {
            return upload_start(method, name, &q);
        }
        let digest = query_get(&q, "digest").map(digest).transpose()?;
        return match method {
            Method::Get | Method::Patch | Method::Put | Method::Delete => {
                Ok(Endpoint::Upload { method, name, id: id.to_owned(), digest })
            }
            m => Err(unsupported(m)),
        };
    }
    if n >= 3 && tail(2) == "blobs" && tail(1) == "uploads" {
        return upload_start(method, name(&parts[..n - 2])?, &q);
    }
    if n >= 3 && tail(2) == "blobs" {
        let name = name(&parts[..n - 2])?;
        let digest = digest(tail(1))?;
        return match method {
            Method::Get | Method::Head | Method::Delete => Ok(Endpoint::Blob { method, name, digest }),
            m => Err(unsupported(m)),
        };
    }
    if n >= 3 && tail(2) == "referrers" {
        let name = name(&parts[..n - 2])?;
        let digest = digest(tail(1))?;
        let artifact_type = query_get(&q, "artifactType").map(str::to_owned);
        return match method {
            Method::Get => Ok(Endpoint::Referrers { name, digest, artifact_type }),
            m => Err(unsupported(m)),
        };
    }
    Err(no_route())
}

fn upload_start(method: Method, name: RepoName, q: &[(String, String)]) -> Result<Endpoint, WireError> {
    if method != Method::Post {
        return Err(unsupported(method));
    }
    let mount = match query_get(q, "mount") {
        Some(m) => {
            let from = match query_get(q, "from") {
                Some(f) => Some(
                    f.parse().map_err(|_| WireError::new(ErrorCode::NameInvalid, "invalid mount source repository"))?,
                ),
                None => None,
            };
            Some(Mount { digest: digest(m)?, from })
        }
        None => None,
    };
    let digest = query_get(q, "digest").map(digest).transpose()?;
    Ok(Endpoint::UploadStart { name, digest, mount })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(m: &str, path: &str, q: &str) -> Result<Endpoint, ErrorCode> {
        parse(Method::parse(m), path, q).map_err(|e| e.code)
    }

    /// The scope a challenge names, as `name:actions` per repository.
    fn challenge(m: &str, path: &str, q: &str) -> Vec<String> {
        let ep = p(m, path, q).unwrap();
        ep.challenge_access()
            .into_iter()
            .map(|(n, a)| format!("{n}:{}", a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")))
            .collect()
    }

    #[test]
    fn push_challenges_name_pull_and_push_as_distribution_does() {
        let up = "/v2/acme/app/blobs/uploads/";
        let session = "/v2/acme/app/blobs/uploads/abc-123";
        for (m, path, q) in [
            ("POST", up, ""),
            ("POST", up, &*format!("digest={D}")),
            ("PATCH", session, ""),
            ("PUT", session, &*format!("digest={D}")),
            ("GET", session, ""),
            ("DELETE", session, ""),
            ("PUT", "/v2/acme/app/manifests/1", ""),
            ("PUT", &*format!("/v2/acme/app/manifests/{D}"), ""),
        ] {
            assert_eq!(challenge(m, path, q), ["acme/app:pull,push"], "{m} {path}?{q}");
            // what the endpoint requires is still only push (a challenge is no requirement)
            let ep = p(m, path, q).unwrap();
            assert_eq!(ep.required_access().iter().map(|(_, a)| *a).collect::<Vec<_>>(), [Action::Push], "{m} {path}");
        }
        // a mount: pull,push on the target, pull on the source; a mount within one repository
        assert_eq!(challenge("POST", up, &format!("mount={D}&from=acme/lib")), ["acme/app:pull,push", "acme/lib:pull"]);
        assert_eq!(challenge("POST", up, &format!("mount={D}&from=acme/app")), ["acme/app:pull,push"]);
        // reads and deletes name what they need, nothing more
        assert_eq!(challenge("GET", "/v2/acme/app/manifests/1", ""), ["acme/app:pull"]);
        assert_eq!(challenge("HEAD", &format!("/v2/acme/app/blobs/{D}"), ""), ["acme/app:pull"]);
        assert_eq!(challenge("DELETE", "/v2/acme/app/manifests/1", ""), ["acme/app:delete"]);
        assert_eq!(challenge("GET", "/v2/acme/app/tags/list", ""), ["acme/app:pull"]);
        assert!(challenge("GET", "/v2/", "").is_empty());
    }

    #[test]
    fn every_route_has_a_name() {
        let cases = [
            ("GET", "/v2/".to_owned(), "", "base"),
            ("GET", "/v2/_catalog".to_owned(), "", "catalog"),
            ("GET", "/v2/a/b/tags/list".to_owned(), "", "tags_list"),
            ("GET", "/v2/a/manifests/1".to_owned(), "", "manifest_get"),
            ("HEAD", "/v2/a/manifests/1".to_owned(), "", "manifest_head"),
            ("PUT", "/v2/a/manifests/1".to_owned(), "", "manifest_put"),
            ("DELETE", "/v2/a/manifests/1".to_owned(), "", "manifest_delete"),
            ("GET", format!("/v2/a/blobs/{D}"), "", "blob_get"),
            ("HEAD", format!("/v2/a/blobs/{D}"), "", "blob_head"),
            ("DELETE", format!("/v2/a/blobs/{D}"), "", "blob_delete"),
            ("POST", "/v2/a/blobs/uploads/".to_owned(), "", "upload_start"),
            ("PATCH", "/v2/a/blobs/uploads/x".to_owned(), "", "upload_patch"),
            ("PUT", "/v2/a/blobs/uploads/x".to_owned(), "", "upload_put"),
            ("GET", "/v2/a/blobs/uploads/x".to_owned(), "", "upload_status"),
            ("DELETE", "/v2/a/blobs/uploads/x".to_owned(), "", "upload_delete"),
            ("GET", format!("/v2/a/referrers/{D}"), "", "referrers"),
        ];
        for (m, path, q, name) in cases {
            assert_eq!(p(m, &path, q).unwrap().name(), name, "{m} {path}");
            assert!(Endpoint::NAMES.contains(&name), "{name} is listed");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(p("GET", "/v2/", ""), Ok(Endpoint::Base));
        assert_eq!(p("GET", "/v2", ""), Ok(Endpoint::Base));
        assert!(
            matches!(p("GET", "/v2/_catalog", "n=10&last=a"), Ok(Endpoint::Catalog { page }) if page.n == Some(10))
        );
        assert!(
            matches!(p("GET", "/v2/acme/app/tags/list", ""), Ok(Endpoint::Tags { name, .. }) if name.as_str() == "acme/app")
        );
        assert!(matches!(p("GET", "/v2/a/manifests/b/manifests/latest", ""),
            Ok(Endpoint::Manifest { name, reference: Reference::Tag(t), .. }) if name.as_str() == "a/manifests/b" && t.as_str() == "latest"));
        assert!(matches!(
            p("HEAD", &format!("/v2/a/manifests/{D}"), ""),
            Ok(Endpoint::Manifest { reference: Reference::Digest(_), .. })
        ));
        assert!(matches!(p("GET", &format!("/v2/a/blobs/{D}"), ""), Ok(Endpoint::Blob { .. })));
        assert!(matches!(
            p("POST", "/v2/a/b/blobs/uploads/", ""),
            Ok(Endpoint::UploadStart { digest: None, mount: None, .. })
        ));
        assert!(matches!(
            p("POST", "/v2/a/blobs/uploads", &format!("digest={D}")),
            Ok(Endpoint::UploadStart { digest: Some(_), .. })
        ));
        assert!(matches!(p("POST", "/v2/a/blobs/uploads/", &format!("mount={D}&from=b/c")),
            Ok(Endpoint::UploadStart { mount: Some(Mount { from: Some(f), .. }), .. }) if f.as_str() == "b/c"));
        assert!(
            matches!(p("PATCH", "/v2/a/blobs/uploads/abc-123", ""), Ok(Endpoint::Upload { id, .. }) if id == "abc-123")
        );
        assert!(matches!(
            p("PUT", "/v2/a/blobs/uploads/x", &format!("digest={}", D.replace(':', "%3A"))),
            Ok(Endpoint::Upload { digest: Some(_), .. })
        ));
        assert!(matches!(p("GET", &format!("/v2/a/referrers/{D}"), "artifactType=application%2Fvnd.x"),
            Ok(Endpoint::Referrers { artifact_type: Some(t), .. }) if t == "application/vnd.x"));
    }

    #[test]
    fn errors() {
        assert_eq!(p("GET", "/v2/A/tags/list", ""), Err(ErrorCode::NameInvalid));
        assert_eq!(p("GET", "/v2/a/../b/tags/list", ""), Err(ErrorCode::NameInvalid));
        assert_eq!(p("GET", "/v2//tags/list", ""), Err(ErrorCode::NameInvalid));
        assert_eq!(p("GET", "/v2/a/blobs/sha256:xyz", ""), Err(ErrorCode::DigestInvalid));
        assert_eq!(p("GET", "/v2/a/manifests/sha256:1", ""), Err(ErrorCode::DigestInvalid));
        assert_eq!(p("GET", "/v2/a/manifests/-bad", ""), Err(ErrorCode::TagInvalid));
        assert_eq!(p("POST", "/v2/a/manifests/x", ""), Err(ErrorCode::Unsupported));
        assert_eq!(p("GET", "/v2/a/tags/list", "n=-1"), Err(ErrorCode::PaginationNumberInvalid));
        assert_eq!(p("GET", "/v2/a", ""), Err(ErrorCode::NameUnknown));
        assert_eq!(p("GET", "/v3/a", ""), Err(ErrorCode::NameUnknown));
        assert_eq!(p("POST", "/v2/a/blobs/uploads/", "mount=bad"), Err(ErrorCode::DigestInvalid));
    }

    #[test]
    fn access() {
        let e = parse(Method::Post, "/v2/a/blobs/uploads/", &format!("mount={D}&from=b")).unwrap();
        let acc: Vec<_> = e.required_access().into_iter().map(|(n, a)| (n.to_string(), a)).collect();
        assert_eq!(acc, vec![("a".into(), Action::Push), ("b".into(), Action::Pull)]);
        let e = parse(Method::Delete, &format!("/v2/a/manifests/{D}"), "").unwrap();
        assert_eq!(e.required_access()[0].1, Action::Delete);
        let e = parse(Method::Head, &format!("/v2/a/blobs/{D}"), "").unwrap();
        assert_eq!(e.required_access()[0].1, Action::Pull);
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }

    proptest! {
        #[test]
        fn parse_never_panics(m in "(GET|PUT|POST|HEAD|PATCH|DELETE|X)", path in "/v2[/a-z0-9:._%-]{0,80}", q in "[a-z=&%0-9:]{0,40}") {
            let _ = parse(Method::parse(&m), &path, &q);
        }
    }
}
