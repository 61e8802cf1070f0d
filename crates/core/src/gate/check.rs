//! `check`: "can USER pull IMAGE?" asked of the gate itself — the same function a pull goes
//! through, on the user's behalf, with a trace of each step — so the answer can never disagree
//! with a pull. Nothing is audited, fetched or stored (a tag is resolved as a pull resolves it),
//! except that a signature rule reads the image's signatures as a pull would (for a cached
//! image, from its upstream).

use oci::{Endpoint, Method, Reference, RepoName, Tag};
use policy::Image;
use serde::Serialize;

use super::{Ask, Caller, Denial, Gate, Run};
use crate::authz::{Principal, Subject};
use crate::error::{Error, Result};

/// One step of the gate, as `check` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `sign_in`, `repository`, `mount`, `pin`, `policy`, `signature`.
    pub step: &'static str,
    /// `pass`, `deny`, `would_deny` or `skip`.
    pub outcome: &'static str,
    pub detail: String,
}

/// The exception that allowed an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExceptionRef {
    pub org: String,
    pub id: i64,
    pub reason: String,
    pub expires_at: Option<i64>,
}

/// The answer to "can USER pull IMAGE?".
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub user: String,
    /// The canonical repository (`docker.io/library/alpine`, `acme/app`).
    pub image: String,
    /// The tag or digest asked about.
    pub reference: String,
    /// The digest decided on (asked, or the one the tag names now when a pin needed it).
    pub digest: Option<String>,
    /// `allow`, `deny` or `would_deny` (dry run: served with a warning).
    pub effect: &'static str,
    /// The step that decided.
    pub decided_by: &'static str,
    pub message: String,
    /// For policy decisions: the org that decided, its rule and the image's category there.
    pub org: Option<String>,
    pub rule: Option<policy::Rule>,
    pub category: Option<String>,
    pub exception: Option<ExceptionRef>,
    pub trace: Vec<Step>,
    /// Each org's part in the policy decision.
    pub orgs: Vec<policy::TraceStep>,
}

/// `name[:tag][@digest]` (tag `latest` when neither is given).
pub(crate) fn parse_image(s: &str) -> Result<(RepoName, Reference)> {
    let bad = || Error::Invalid(format!("invalid image {s:?}: use name[:tag] or name@digest"));
    let (rest, digest) = match s.trim().split_once('@') {
        Some((n, d)) => (n, Some(d.parse::<oci::Digest>().map_err(|_| bad())?)),
        None => (s.trim(), None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (rest, None),
    };
    let name: RepoName = name.parse().map_err(|_| bad())?;
    let reference = match (digest, tag) {
        (Some(d), _) => Reference::Digest(d),
        (None, Some(t)) => Reference::Tag(t.parse::<Tag>().map_err(|_| bad())?),
        (None, None) => Reference::Tag("latest".parse::<Tag>().map_err(|_| bad())?),
    };
    Ok((name, reference))
}

impl Gate {
    /// Can `user` pull `image` (as a client names it)? Members may check themselves; owners of
    /// `org` (and the administrator) may check the org's members.
    pub async fn check(&self, who: &Principal, org: &str, user: &str, image: &str) -> Result<Check> {
        self.orgs.visible(who, org).await?;
        let dir = self.identity.directory().snapshot();
        if user != who.username && !(who.is_admin || dir.is_owner(org, who.id)) {
            return Err(Error::Denied(format!("only owners of {org} may check other users")));
        }
        let (id, is_admin) = dir.user(user).ok_or_else(|| Error::NotFound(format!("no user {user}")))?;
        if !who.is_admin && !dir.is_member(org, id) {
            return Err(Error::NotFound(format!("{user} is not a member of {org}")));
        }
        let (name, reference) = parse_image(image)?;
        let subject = Subject::User(Principal { id, username: user.to_owned(), is_admin, scope: None });
        let ep = Endpoint::Manifest { method: Method::Get, name: name.clone(), reference: reference.clone() };
        let ask = Ask { endpoint: ep, ns: None, host: None, client: "check", agent: "check" };
        let mut run = Run { trace: Some(vec![]), ..Default::default() };
        let outcome = self.run(&Caller::OnBehalf(subject.clone()), ask, &mut run).await;
        let trace = run.trace.take().unwrap_or_default();
        let decided_by =
            trace.iter().rev().find(|s| s.outcome == "deny").or(trace.last()).map(|s| s.step).unwrap_or("sign_in");
        let snap = self.identity.directory().snapshot();
        let source = oci::source::resolve(&name, None, None, |n| snap.namespace(n).is_some()).ok();
        let digest = run.digest.map(|d| d.to_string()).or(match &reference {
            Reference::Digest(d) => Some(d.to_string()),
            Reference::Tag(_) => None,
        });
        let canonical = source.as_ref().map(|s| super::image_of_source(s, digest.clone())).unwrap_or(Image {
            registry: None,
            path: name.to_string(),
            digest: digest.clone(),
        });
        let memberships = snap.memberships(id);
        let policy = self.iam.snapshot();
        let (_, orgs) = policy::explain(&memberships, &canonical, &policy, self.clock.now());
        let (effect, message) = match &outcome {
            Ok(g) if g.would_deny.is_some() => ("would_deny", g.would_deny.clone().unwrap_or_default()),
            Ok(_) => ("allow", format!("{user} may pull {}", canonical.canonical())),
            Err(Denial::Policy(p)) => ("deny", p.decision.message.clone()),
            Err(d) => ("deny", denial_message(d)),
        };
        let decision = run.decision.filter(|d| d.org.is_some());
        let exception = orgs.iter().filter(|_| outcome.is_ok()).find_map(|s| {
            let id = s.exception?;
            let e = policy.orgs.get(&s.org)?.exceptions.iter().find(|e| e.id == id)?;
            Some(ExceptionRef { org: s.org.clone(), id, reason: e.reason.clone(), expires_at: e.expires_at })
        });
        Ok(Check {
            user: user.to_owned(),
            image: canonical.canonical(),
            reference: reference.to_string(),
            digest,
            effect,
            decided_by: if effect == "allow" { "allowed" } else { decided_by },
            message,
            org: decision.as_ref().and_then(|d| d.org.clone()),
            rule: decision.as_ref().map(|d| d.rule),
            category: decision
                .as_ref()
                .and_then(|d| d.category.as_ref())
                .or(orgs.first().map(|o| &o.category))
                .map(|c| c.key().to_owned()),
            exception,
            trace,
            orgs,
        })
    }
}

/// What a denial says, for `check`.
pub(crate) fn denial_message(d: &Denial) -> String {
    match d {
        Denial::SignIn { message, .. } | Denial::Forbidden(message) => message.clone(),
        Denial::Unsupported(m) | Denial::Unavailable(m) => m.clone(),
        Denial::Invalid(w) => w.message.clone(),
        Denial::Policy(p) => p.decision.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_as_clients_name_them() {
        let (n, r) = parse_image("alpine").unwrap();
        assert_eq!((n.as_str(), r.to_string().as_str()), ("alpine", "latest"));
        let (n, r) = parse_image("localhost:5000/a/b:1").unwrap();
        assert_eq!((n.as_str(), r.to_string().as_str()), ("localhost:5000/a/b", "1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let (_, r) = parse_image(&format!("docker.io/someone/app:1@{d}")).unwrap();
        assert_eq!(r.to_string(), d, "a digest wins over a tag");
        for bad in ["", "Alpine", "a@sha256:x", "a:b:c/d e"] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }
}
