//! Repository names, tags and references, per the distribution grammar.
//!
//! A repository name is one or more path components separated by `/`; each component is
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`; the whole name is at most 255 bytes. Anything else
//! (`..`, empty parts, upper case, leading separators) is rejected before any rule runs.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Longest repository name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name such as `acme/team/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// Why a string is not a repository name or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName;

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path component: the namespace (a user or an organization).
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The name inside the namespace (`app` for `acme/app`), if there is one.
    pub fn path_in_namespace(&self) -> Option<&str> {
        self.0.split_once('/').map(|(_, rest)| rest)
    }
}

/// True when `c` is a valid path component.
pub fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// True when `c` is a registry host: lower-case domain labels with an optional `:port`
/// (`docker.io`, `localhost:5000`, `127.0.0.1:5001`).
pub fn is_valid_host(c: &str) -> bool {
    let (host, port) = match c.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (c, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || *x == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    !host.is_empty() && host.len() <= 253 && host.split('.').all(label) && port_ok
}

impl FromStr for RepoName {
    type Err = InvalidName;

    /// The first component may be a registry host with a port (`localhost:5000/app`); every
    /// other component follows the path grammar.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(InvalidName);
        }
        let mut parts = s.split('/');
        let first = parts.next().unwrap_or_default();
        let first_ok = is_valid_component(first) || (s.contains('/') && is_valid_host(first));
        if !first_ok || !parts.all(is_valid_component) {
            return Err(InvalidName);
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b.first().is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        let rest_ok = b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err(InvalidName);
        }
        Ok(Tag(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn name_table() {
        let good = ["a", "alpine", "library/alpine", "acme/team/app", "a.b_c__d---e", "0/1/2", "docker.io"];
        for n in good {
            assert!(n.parse::<RepoName>().is_ok(), "{n} should be valid");
        }
        let long = "a".repeat(256);
        let bad = [
            "",
            "/a",
            "a/",
            "a//b",
            "A",
            "acme/App",
            "..",
            "a/../b",
            "a/./b",
            "-a",
            "a-",
            "a___b",
            "a..b",
            "a._b",
            "a b",
            "a:1",
            "localhost:5000",
            "host:/x",
            "host:99999999/x",
            "Host.io/x",
            "é",
            long.as_str(),
        ];
        for n in bad {
            assert!(n.parse::<RepoName>().is_err(), "{n:?} should be invalid");
        }
    }

    #[test]
    fn namespace_parts() {
        let n: RepoName = "acme/team/app".parse().unwrap();
        assert_eq!(n.namespace(), "acme");
        assert_eq!(n.path_in_namespace(), Some("team/app"));
        let n: RepoName = "solo".parse().unwrap();
        assert_eq!(n.namespace(), "solo");
        assert_eq!(n.path_in_namespace(), None);
    }

    #[test]
    fn tag_table() {
        for t in ["latest", "1.0", "_x", "A-b.c_d", &"a".repeat(128)] {
            assert!(t.parse::<Tag>().is_ok(), "{t}");
        }
        for t in ["", ".a", "-a", "a/b", "a:b", &"a".repeat(129), "a b"] {
            assert!(t.parse::<Tag>().is_err(), "{t:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(s in "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}(/[a-z0-9]{1,8}){0,3}") {
            let n: RepoName = s.parse().unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
        }

        #[test]
        fn parse_never_panics_and_never_accepts_dot_dot(s in "\\PC{0,300}") {
            if let Ok(n) = s.parse::<RepoName>() {
                prop_assert!(!n.as_str().split('/').any(|c| c == ".." || c.is_empty()));
                prop_assert!(n.as_str().len() <= MAX_NAME_LEN);
            }
        }
    }
}
