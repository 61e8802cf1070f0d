//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), parsed into a small tree and
//! evaluated against a resource's JSON. Attribute names are matched case-insensitively and may
//! carry their schema's URN; string comparisons ignore case except on `id` and `externalId`
//! (the attributes the schemas mark `caseExact`). Filters are bounded in length and depth.

use serde_json::Value;

/// The longest filter accepted, in bytes, and how deep it may nest.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `path op value`
    Compare(Vec<String>, Op, Value),
    /// `path pr`
    Present(Vec<String>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches.
    Within(String, Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A PATCH target: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: String,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
}

/// An attribute name without its schema URN (`urn:…:User:userName` → `userName`).
pub fn bare_name(name: &str) -> &str {
    if name.len() > 4 && name[..4].eq_ignore_ascii_case("urn:") {
        name.rsplit_once(':').map_or(name, |(_, n)| n)
    } else {
        name
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => (out.push(Tok::Open), i += 1).1,
            b')' => (out.push(Tok::Close), i += 1).1,
            b'[' => (out.push(Tok::OpenBracket), i += 1).1,
            b']' => (out.push(Tok::CloseBracket), i += 1).1,
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    return Err("a string in the filter is not closed".into());
                }
                let v: String = serde_json::from_str(&s[i..=j]).map_err(|e| format!("a string in the filter: {e}"))?;
                out.push(Tok::Str(v));
                i = j + 1;
            }
            _ => {
                let j = s[i..].find([' ', '\t', '\n', '\r', '(', ')', '[', ']', '"']).map_or(s.len(), |n| i + n);
                out.push(Tok::Word(s[i..j].to_owned()));
                i = j;
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        if self.next() == Some(t) { Ok(()) } else { Err(format!("expected {what}")) }
    }

    fn or(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("the filter nests deeper than {MAX_DEPTH}"));
        }
        let mut f = self.and()?;
        while self.keyword("or") {
            f = Filter::Or(Box::new(f), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(f)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut f = self.unary()?;
        while self.keyword("and") {
            f = Filter::And(Box::new(f), Box::new(self.unary()?));
        }
        Ok(f)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            self.expect(Tok::Open, "'(' after not")?;
            let f = self.or()?;
            self.expect(Tok::Close, "')'")?;
            return Ok(Filter::Not(Box::new(f)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let f = self.or()?;
            self.expect(Tok::Close, "')'")?;
            return Ok(f);
        }
        let Some(Tok::Word(attr)) = self.next() else { return Err("expected an attribute name".into()) };
        let path = attr_path(&attr)?;
        if self.peek() == Some(&Tok::OpenBracket) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::CloseBracket, "']'")?;
            return Ok(Filter::Within(path.join("."), Box::new(inner)));
        }
        let Some(Tok::Word(op)) = self.next() else { return Err(format!("expected an operator after {attr}")) };
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return Err(format!("unknown operator {op}")),
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(Value::Number)
                    .map_err(|_| format!("{w} is no value: quote strings"))?,
            },
            _ => return Err(format!("expected a value after {attr}")),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

/// `name.sub` split into lowercase segments, without a schema URN.
fn attr_path(s: &str) -> Result<Vec<String>, String> {
    let bare = bare_name(s);
    let segs: Vec<String> = bare.split('.').map(str::to_ascii_lowercase).collect();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$';
    if segs.is_empty() || segs.len() > 2 || segs.iter().any(|p| p.is_empty() || !p.chars().all(ok)) {
        return Err(format!("{s} is no attribute path"));
    }
    Ok(segs)
}

/// Parses a filter.
pub fn parse(s: &str) -> Result<Filter, String> {
    if s.len() > MAX_LEN {
        return Err(format!("the filter is longer than {MAX_LEN} bytes"));
    }
    let mut p = Parser { toks: lex(s)?, pos: 0, depth: 0 };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return Err("unexpected text after the filter".into());
    }
    Ok(f)
}

/// Parses a PATCH path.
pub fn parse_path(s: &str) -> Result<PatchPath, String> {
    let s = s.trim();
    let (head, filter, tail) = match s.find('[') {
        Some(open) => {
            let close = s.rfind(']').filter(|c| *c > open).ok_or_else(|| format!("{s}: ']' is missing"))?;
            (&s[..open], Some(parse(&s[open + 1..close])?), &s[close + 1..])
        }
        None => (s, None, ""),
    };
    let mut segs = attr_path(head)?;
    let sub = match (segs.len(), tail) {
        (1, "") => None,
        (2, "") if filter.is_none() => segs.pop(),
        (1, t) if t.starts_with('.') => Some(attr_path(&t[1..])?.join(".")),
        _ => return Err(format!("{s} is no attribute path")),
    };
    Ok(PatchPath { attr: segs.remove(0), filter, sub })
}

/// The member of `obj` named `key`, ignoring case.
pub fn member<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// Every value at `path` (multi-valued attributes are flattened).
fn values<'a>(doc: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let mut cur = vec![doc];
    for seg in path {
        let mut next = Vec::new();
        for v in cur {
            match v {
                Value::Array(a) => next.extend(a.iter().filter_map(|e| member(e, seg))),
                _ => next.extend(member(v, seg)),
            }
        }
        cur = next;
    }
    cur.into_iter().flat_map(|v| if let Value::Array(a) = v { a.iter().collect() } else { vec![v] }).collect()
}

fn case_exact(path: &[String]) -> bool {
    matches!(path.first().map(String::as_str), Some("id" | "externalid"))
}

fn compare(v: &Value, op: Op, want: &Value, exact: bool) -> bool {
    match (v, want) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if exact { (a.clone(), b.clone()) } else { (a.to_lowercase(), b.to_lowercase()) };
            match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                Op::Co => a.contains(&b),
                Op::Sw => a.starts_with(&b),
                Op::Ew => a.ends_with(&b),
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
                _ => false,
            }
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => op == Op::Ne,
    }
}

impl Filter {
    /// Whether `doc` matches.
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(doc) && b.matches(doc),
            Filter::Or(a, b) => a.matches(doc) || b.matches(doc),
            Filter::Not(f) => !f.matches(doc),
            Filter::Present(p) => values(doc, p).iter().any(|v| !v.is_null() && v.as_str() != Some("")),
            Filter::Compare(p, op, want) => {
                let found = values(doc, p);
                match (op, want) {
                    (Op::Eq, Value::Null) => found.is_empty(),
                    (Op::Ne, Value::Null) => !found.is_empty(),
                    (Op::Ne, _) => found.iter().all(|v| compare(v, Op::Ne, want, case_exact(p))),
                    _ => found.iter().any(|v| compare(v, *op, want, case_exact(p))),
                }
            }
            Filter::Within(attr, f) => match member(doc, attr) {
                Some(Value::Array(a)) => a.iter().any(|e| f.matches(e)),
                Some(v) => f.matches(v),
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "id": "42", "userName": "Alice", "externalId": "AbC", "active": true,
            "name": {"givenName": "Alice"},
            "emails": [{"value": "alice@example.com", "type": "work"}, {"value": "a@home.org", "type": "home"}]
        })
    }

    fn m(f: &str) -> bool {
        parse(f).unwrap_or_else(|e| panic!("{f}: {e}")).matches(&doc())
    }

    #[test]
    fn the_operators_match_as_the_rfc_says() {
        assert!(m(r#"userName eq "alice""#), "userName ignores case");
        assert!(!m(r#"externalId eq "abc""#) && m(r#"externalId eq "AbC""#), "externalId is case-exact");
        assert!(m(r#"userName co "lic""#) && m(r#"userName sw "AL""#) && m(r#"userName ew "CE""#));
        assert!(!m(r#"userName sw "lic""#) && m(r#"userName ne "bob""#) && !m(r#"userName ne "alice""#));
        assert!(m("active eq true") && !m("active eq false") && m("ACTIVE EQ TRUE"));
        assert!(m(r#"emails.value co "@home""#) && m(r#"emails[type eq "work" and value ew ".com"]"#));
        assert!(!m(r#"emails[type eq "work" and value ew ".org"]"#));
        assert!(m(r#"name.givenName eq "alice""#) && m("title eq null") && m("userName pr") && !m("title pr"));
        assert!(m(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "alice""#));
        assert!(m(r#"not (userName eq "bob") and (id eq "1" or id eq "42")"#));
        assert!(m(r#"userName eq "ali\"ce" or userName gt "a""#));
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        for f in [
            "",
            "userName",
            "userName eq",
            r#"userName eq "x"#,
            r#"userName zz "x""#,
            "userName eq alice",
            r#"(userName eq "x""#,
            r#"userName eq "x" extra"#,
            r#"a.b.c eq "x""#,
            r#"user%Name eq "x""#,
            r#"emails[type eq "work""#,
        ] {
            assert!(parse(f).is_err(), "{f:?} must be refused");
        }
        let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().contains("deeper"));
        assert!(parse(&"a".repeat(5000)).unwrap_err().contains("longer"));
    }

    #[test]
    fn patch_paths_name_an_attribute_an_element_and_a_sub_attribute() {
        let p = parse_path("members").unwrap();
        assert_eq!((p.attr.as_str(), p.filter.is_none(), p.sub), ("members", true, None));
        assert_eq!(parse_path("name.givenName").unwrap().sub.as_deref(), Some("givenname"));
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!((p.attr.as_str(), p.sub.as_deref()), ("emails", Some("value")));
        assert!(p.filter.unwrap().matches(&json!({"type": "work"})));
        let p = parse_path(r#"members[value eq "7"]"#).unwrap();
        assert!(p.filter.is_some() && p.sub.is_none());
        assert_eq!(parse_path("urn:ietf:params:scim:schemas:core:2.0:User:active").unwrap().attr, "active");
        for bad in ["", "a.b.c", r#"emails[type eq "w""#, r#"emails[type eq "w"]x"#, "a b"] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }
}
