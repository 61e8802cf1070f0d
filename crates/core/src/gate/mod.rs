//! The access gate: the one place where every rule that decides a registry request lives.
//! `Gate::decide(caller, request)` takes a parsed request and answers `Grant` or `Denial`
//! before anything is served or fetched, in this order and nowhere else:
//!
//! 1. sign-in: a request without credentials is challenged; with `auth.allowed_orgs` only
//!    members of those orgs (and the administrator) pass;
//! 2. hosted permissions: the directory's rules for repositories hosted here, less pushes to
//!    a member's personal namespace when one of their orgs sets namespace access control;
//! 3. the upstream rule: images of other registries may be pulled, never pushed, by signed-in
//!    users (anonymously only with `proxy.allow_anonymous`);
//!    and the token must grant every action the request needs;
//! 4. mount downgrade: a cross-repository mount needs pull on the source (permission and
//!    policy); a token that does not grant it is challenged for it, and a caller who may not
//!    pull it uploads instead;
//! 5. Registry Access Management and Image Access Management (`policy::decide`) for manifest,
//!    blob, tags-list and referrers reads, with digest-pinned exceptions: a tag is resolved to
//!    its digest first (a cached tag or a HEAD, nothing fetched or stored), a child manifest or
//!    blob is allowed as a part of an allowed pinned manifest already stored;
//! 6. signature requirements (`signed.rs`) for manifest reads the policy allowed: each org
//!    rule covering the image must be met by a verified sigstore signature of the digest
//!    served (a tag is resolved first and that digest is served);
//! 7. the audit entry the decision implies (denials at once, served manifests once read, by
//!    `Gate::manifest` in `serve.rs`, which also filters the catalog).
//!
//! `check` asks the same function on a user's behalf, with a trace of each step, so it can
//! never disagree with a pull. Any error while deciding denies.

use std::sync::Arc;

use oci::source::{Source, resolve};
use oci::{Action, Digest, Endpoint, Method, Reference, RepoName, WireError};
use policy::{Decision, Effect, Image, Membership, Rule};

use crate::audit::Audit;
use crate::authz::{Actions, Principal, Snapshot, Subject};
use crate::clock::Clock;
use crate::content::Contents;
use crate::error::Error;
use crate::iam::Iam;
use crate::identity::Identity;
use crate::model::{AuditDecision, AuditEntry};
use crate::orgs::Orgs;
use crate::tokens::{Claims, TokenIssuer};

mod check;
mod pins;
mod serve;
mod signed;
#[cfg(test)]
mod tests;

pub use check::{Check, Step};
pub(crate) use check::{denial_message, parse_image};

/// How the gate is configured.
#[derive(Debug, Clone, Default)]
pub struct GateConfig {
    /// Enforced sign-in: only members of these orgs may use `/v2` (empty: not enforced).
    pub allowed_orgs: Vec<String>,
    /// Whether anonymous callers may pull through the proxy.
    pub proxy_anonymous: bool,
}

/// Who is calling, as authenticated.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials: challenged.
    Nobody,
    /// A verified registry token: its subject and the access it grants.
    Token { subject: Subject, claims: Arc<Claims> },
    /// The gate asked on someone's behalf (`check`): every needed action counts as requested.
    OnBehalf(Subject),
}

/// A request to decide.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub endpoint: Endpoint,
    /// containerd's `?ns=` mirror query.
    pub ns: Option<&'a str>,
    /// The `Host` the client used.
    pub host: Option<&'a str>,
    /// The caller's address and user agent, for the audit log.
    pub client: &'a str,
    pub agent: &'a str,
}

/// What a granted request may do.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: Subject,
    /// The request as granted (a mount the caller may not make has been dropped).
    pub endpoint: Endpoint,
    /// Where its repository lives.
    pub source: Option<Source>,
    /// The digest a manifest tag was resolved to before deciding: serve exactly this.
    pub digest: Option<Digest>,
    /// The hosted manifest the gate read to decide (a signature rule): serve exactly this.
    pub manifest: Option<crate::content::ServedManifest>,
    /// Dry-run: served, but the org's settings would deny it (`Warning: 299`).
    pub would_deny: Option<String>,
    record: Option<PullRecord>,
}

/// The audit entry of a manifest pull, written once it is served (with the served digest).
#[derive(Debug, Clone)]
struct PullRecord {
    image: Image,
    decision: Decision,
    memberships: Vec<Membership>,
    client: String,
    agent: String,
}

/// Why a request is refused; the HTTP layer maps each to the protocol's answer.
#[derive(Debug, Clone)]
pub enum Denial {
    /// 401 with a Bearer challenge for `scope`.
    SignIn { message: String, scope: Option<String>, error: Option<&'static str> },
    /// 403 `DENIED`.
    Forbidden(String),
    /// 403 `DENIED` by Registry or Image Access Management.
    Policy(Box<PolicyDenial>),
    /// 405 `UNSUPPORTED`: writes to a pull-through cache.
    Unsupported(String),
    /// A request that names nothing valid, answered with its wire error: a name that resolves
    /// to nothing (`NAME_INVALID`), a tag a signature rule needs resolved that does not exist
    /// (`MANIFEST_UNKNOWN`).
    Invalid(WireError),
    /// The gate could not decide (a store failed): nothing is served.
    Unavailable(String),
}

/// A denial by the policy: the decision and the image it was about.
#[derive(Debug, Clone)]
pub struct PolicyDenial {
    pub decision: Decision,
    pub image: Image,
}

impl From<Error> for Denial {
    fn from(e: Error) -> Denial {
        if e.is_internal() {
            tracing::error!(error = %e, "access could not be decided; denied");
            return Denial::Unavailable(
                "access could not be decided; the administrator can find why in the logs".into(),
            );
        }
        Denial::Unavailable(format!("access could not be decided: {e}"))
    }
}

/// The Bearer scope a challenge to `ep` names: `repository:<name>:<actions>` for each
/// repository ([`Endpoint::challenge_access`]).
pub fn scope_of(ep: &Endpoint) -> Option<String> {
    let scopes: Vec<String> = ep
        .challenge_access()
        .into_iter()
        .map(|(name, actions)| {
            let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            format!("repository:{name}:{}", actions.join(","))
        })
        .collect();
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// Step 1's first half: who the caller is (no credentials: challenged) and what their token
/// grants (`None`: asked on their behalf).
fn signed_in<'c>(caller: &'c Caller, ep: &Endpoint) -> Result<(Subject, Option<&'c Claims>), Denial> {
    match caller {
        Caller::Nobody => {
            Err(Denial::SignIn { message: "authentication required".into(), scope: scope_of(ep), error: None })
        }
        Caller::Token { subject, claims } => Ok((subject.clone(), Some(claims.as_ref()))),
        Caller::OnBehalf(subject) => Ok((subject.clone(), None)),
    }
}

/// The source repository of a cross-repository mount, if the request is one.
fn mount_source(ep: &Endpoint) -> Option<&RepoName> {
    match ep {
        Endpoint::UploadStart { mount: Some(m), .. } => m.from.as_ref(),
        _ => None,
    }
}

/// A token that does not grant what `ep` needs: challenged for the scope that does.
fn insufficient(ep: &Endpoint) -> Denial {
    Denial::SignIn {
        message: "the token does not grant this action; request a token with this scope".into(),
        scope: scope_of(ep),
        error: Some("insufficient_scope"),
    }
}

/// What a read of content is decided on, shared by the policy, pin and signature steps: who
/// (their memberships), the image, the request, where its repository lives, the policy
/// snapshot and the time.
pub(super) struct PullCheck<'a> {
    pub(super) memberships: Vec<Membership>,
    pub(super) image: Image,
    pub(super) ep: &'a Endpoint,
    pub(super) source: &'a Source,
    pub(super) policy: Arc<policy::Snapshot>,
    pub(super) now: i64,
}

/// The image a read (manifest, blob, tags list, referrers) is about, for the policy.
fn pull_image(ep: &Endpoint, source: Option<&Source>) -> Option<Image> {
    let digest = match ep {
        Endpoint::Manifest { method: Method::Get | Method::Head, reference, .. } => match reference {
            Reference::Digest(d) => Some(d.to_string()),
            Reference::Tag(_) => None,
        },
        Endpoint::Blob { method: Method::Get | Method::Head, .. }
        | Endpoint::Tags { .. }
        | Endpoint::Referrers { .. } => None,
        _ => return None,
    };
    Some(image_of_source(source?, digest))
}

/// The repository of a HEAD that only asks whether content exists (a blob, a manifest by digest).
fn existence_check(ep: &Endpoint) -> Option<&RepoName> {
    match ep {
        Endpoint::Blob { method: Method::Head, name, .. } => Some(name),
        Endpoint::Manifest { method: Method::Head, name, reference: Reference::Digest(_) } => Some(name),
        _ => None,
    }
}

pub(crate) fn image_of_source(source: &Source, digest: Option<String>) -> Image {
    match source {
        Source::Hosted(n) => Image { registry: None, path: n.to_string(), digest },
        Source::Upstream(u) => Image { registry: Some(u.registry.clone()), path: u.path.to_string(), digest },
    }
}

fn why_denied(name: &RepoName, action: Action) -> String {
    match action {
        Action::Pull => format!("the repository does not exist or is private to {}", name.namespace()),
        Action::Push => format!("no write permission in namespace {}", name.namespace()),
        Action::Delete => format!("no admin permission on {name}"),
    }
}

/// Whether the caller's token (if any) grants `action` on `name`.
fn token_grants(claims: Option<&Claims>, name: &RepoName, action: Action) -> bool {
    claims.is_none_or(|c| c.grants(name.as_str(), action.as_str()))
}

/// The gate, built once by `Services::start` on the services it asks.
#[derive(Clone)]
pub struct Gate {
    pub(crate) identity: Arc<Identity>,
    pub(crate) iam: Arc<Iam>,
    pub(crate) orgs: Arc<Orgs>,
    pub(crate) contents: Arc<Contents>,
    pub(crate) audit: Arc<Audit>,
    pub(crate) tokens: Arc<TokenIssuer>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: GateConfig,
}

/// What one run of the gate gathers besides its answer (the trace `check` shows).
#[derive(Default)]
struct Run {
    trace: Option<Vec<Step>>,
    /// The policy decision made, if the request reached the policy.
    decision: Option<Decision>,
    /// The digest decided on, when a tag was resolved.
    digest: Option<Digest>,
}

impl Run {
    fn step(&mut self, step: &'static str, outcome: &'static str, detail: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(Step { step, outcome, detail: detail() });
        }
    }
}

impl Gate {
    /// Who presents `bearer` (a registry token), for requests to `ep`. No token: `Nobody`.
    pub fn caller(&self, bearer: Option<&str>, ep: &Endpoint) -> Result<Caller, Denial> {
        let Some(token) = bearer else { return Ok(Caller::Nobody) };
        let invalid = |message: String| Denial::SignIn { message, scope: scope_of(ep), error: Some("invalid_token") };
        let claims = self.tokens.verify(token, self.clock.now()).map_err(|e| invalid(e.to_string()))?;
        if claims.sub.is_empty() {
            return Ok(Caller::Token { subject: Subject::Anonymous, claims });
        }
        let snap = self.identity.directory().snapshot();
        let (id, is_admin) =
            snap.user(&claims.sub).ok_or_else(|| invalid("the token's account no longer exists".into()))?;
        // Issued to a workload before the rules that made it a member were withdrawn: ends now.
        if snap.is_idle_workload(&claims.sub) {
            return Err(invalid(format!("{} matches no workload rule any more", claims.sub)));
        }
        // Issued before an org of a local account turned single sign-on enforcement on: ends now.
        if self.identity.sso_enforced_anywhere() {
            self.identity.sso_refusal(id, is_admin, snap.is_local(&claims.sub)).map_err(|e| invalid(e.to_string()))?;
        }
        let subject = Subject::User(Principal { id, username: claims.sub.clone(), is_admin, scope: None });
        Ok(Caller::Token { subject, claims })
    }

    /// Decides a request. A `Grant` says how to serve it; a manifest read is served by
    /// [`Gate::manifest`], which audits it.
    pub async fn decide(&self, caller: &Caller, ask: Ask<'_>) -> Result<Grant, Denial> {
        self.run(caller, ask, &mut Run::default()).await
    }

    /// Writes the audit entries of a served manifest pull (`digest`: what was served).
    pub(crate) async fn served(&self, grant: &Grant, digest: Option<String>) {
        let Some(r) = &grant.record else { return };
        let image = Image { digest: digest.or(r.image.digest.clone()), ..r.image.clone() };
        for e in self.pull_entries(&r.memberships, &grant.subject, &image, &r.decision, &r.client, &r.agent) {
            self.audit.record(e).await;
        }
    }

    /// The actions `subject` may take on `name` now (hosted permissions or the upstream rule),
    /// for what `/token` grants. Policy is not decided here: it is, on every request.
    pub fn grantable(&self, subject: &Subject, name: &RepoName) -> Actions {
        let snap = self.identity.directory().snapshot();
        self.access(&snap, subject, name, None, None).map(|(_, a)| a).unwrap_or(Actions::NONE)
    }

    /// Where `name` lives and what `subject` may do there.
    fn access(
        &self,
        snap: &Snapshot,
        subject: &Subject,
        name: &RepoName,
        ns: Option<&str>,
        host: Option<&str>,
    ) -> Result<(Source, Actions), WireError> {
        let source = resolve(name, ns, host, |n| snap.namespace(n).is_some())?;
        let actions = match &source {
            Source::Hosted(n) if self.personal_push_blocked(snap, subject, n).is_some() => {
                Actions { push: false, ..snap.permitted(subject, n) }
            }
            Source::Hosted(n) => snap.permitted(subject, n),
            Source::Upstream(_) => match subject {
                Subject::User(_) => Actions::PULL,
                Subject::Anonymous if self.config.proxy_anonymous => Actions::PULL,
                Subject::Anonymous => Actions::NONE,
            },
        };
        Ok((source, actions))
    }

    /// Looks up the Docker Hub badge of the image's namespace when lookups are on, the catalog
    /// does not know it, and an org of the puller restricts images so that it would be community
    /// (bounded wait); `None` when no lookup was needed.
    async fn hub_badge(
        &self,
        memberships: &[Membership],
        image: &Image,
        policy: &policy::Snapshot,
    ) -> Option<crate::badges::BadgeCheck> {
        if image.registry.as_deref() != Some(oci::source::DOCKER_HUB) || !self.iam.badge_lookups_on() {
            return None;
        }
        let matters = memberships.iter().any(|m| {
            policy.orgs.get(&m.org).is_some_and(|p| {
                p.settings.restricted_images.enabled
                    && !m.owner
                    && policy::categorize(&m.org, &p.settings, image, &policy.catalog) == policy::Category::Community
            })
        });
        if !matters {
            return None;
        }
        Some(self.iam.ensure_badge(image.namespace()).await)
    }

    /// Namespace access control: the org that stops `subject` pushing to `name`, when `name` is
    /// in their personal namespace and an org they belong to sets `restrict_personal_namespaces`
    /// (the instance administrator is not bound).
    fn personal_push_blocked(&self, snap: &Snapshot, subject: &Subject, name: &RepoName) -> Option<String> {
        let Subject::User(p) = subject else { return None };
        if p.is_admin || name.namespace() != p.username {
            return None;
        }
        let policy = self.iam.snapshot();
        snap.memberships(p.id)
            .into_iter()
            .map(|m| m.org)
            .find(|org| policy.orgs.get(org).is_some_and(|o| o.settings.restrict_personal_namespaces))
    }

    /// Enforced sign-in (`auth.allowed_orgs`).
    fn sign_in(&self, snap: &Snapshot, subject: &Subject, ep: &Endpoint, run: &mut Run) -> Result<(), Denial> {
        let allowed = &self.config.allowed_orgs;
        if allowed.is_empty() {
            run.step("sign_in", "pass", || "sign-in is not enforced".into());
            return Ok(());
        }
        let orgs = allowed.join(", ");
        match subject {
            Subject::Anonymous => {
                let message = format!("sign-in required: sign in with an account that is a member of {orgs}");
                run.step("sign_in", "deny", || message.clone());
                Err(Denial::SignIn { message, scope: scope_of(ep), error: None })
            }
            Subject::User(p) if !p.is_admin && !allowed.iter().any(|o| snap.is_member(o, p.id)) => {
                let message =
                    format!("{} is not a member of {orgs}: only members of {orgs} may use this registry", p.username);
                run.step("sign_in", "deny", || message.clone());
                Err(Denial::Forbidden(message))
            }
            Subject::User(p) => {
                run.step("sign_in", "pass", || format!("{} may sign in here", p.username));
                Ok(())
            }
        }
    }

    /// Steps 1–7 of the module's list, in order; each returns its part of the grant.
    async fn run(&self, caller: &Caller, ask: Ask<'_>, run: &mut Run) -> Result<Grant, Denial> {
        let (subject, claims) = signed_in(caller, &ask.endpoint)?;
        let snap = self.identity.directory().snapshot();
        self.sign_in(&snap, &subject, &ask.endpoint, run)?;
        let source = self.permissions(&snap, &subject, claims, &ask, run)?;
        let Ask { endpoint: mut ep, host, client, agent, ns } = ask;
        self.mount(&snap, &subject, claims, &mut ep, host, run)?;
        let mut grant =
            Grant { subject, endpoint: ep, source, digest: None, manifest: None, would_deny: None, record: None };
        let Some(source) = &grant.source else { return Ok(grant) };
        let Some(image) = pull_image(&grant.endpoint, Some(source)) else { return Ok(grant) };
        // The upload protocol's existence checks (HEAD of a blob, or of a manifest by digest) in a
        // hosted repository the caller may push to serve no content: a push to the caller's own
        // namespace must not fail on them while the org's policy keeps pulling it denied.
        if let Some(name) = existence_check(&grant.endpoint)
            && matches!(source, Source::Hosted(_))
            && self.access(&snap, &grant.subject, name, ns, host).is_ok_and(|(_, a)| a.allows(Action::Push))
            && token_grants(claims, name, Action::Push)
        {
            run.step("image access", "pass", || {
                format!("an existence check in {name}, which {} may push to: no content served", grant.subject.name())
            });
            return Ok(grant);
        }
        let memberships = match &grant.subject {
            Subject::User(p) => snap.memberships(p.id),
            Subject::Anonymous => vec![],
        };
        let mut pc = PullCheck {
            memberships,
            image,
            ep: &grant.endpoint,
            source,
            policy: self.iam.snapshot(),
            now: self.clock.now(),
        };
        let (decision, digest) = self.policy(&mut pc, run).await;
        let mut manifest = None;
        let decision = self.signatures(&pc, decision, (&mut grant.digest, &mut manifest), digest, run).await?;
        let record = self.record(pc, &grant.subject, decision, &grant.digest, (client, agent), run).await?;
        grant.manifest = manifest;
        grant.would_deny =
            record.as_ref().filter(|r| r.decision.effect == Effect::WouldDeny).map(|r| r.decision.message.clone());
        grant.record = record.filter(|_| matches!(grant.endpoint, Endpoint::Manifest { .. }));
        Ok(grant)
    }

    /// Steps 2 and 3: hosted permissions and the upstream rule for every repository the request
    /// needs (a mount's source is step 4's), and what the token grants; where the request's
    /// repository lives.
    fn permissions(
        &self,
        snap: &Snapshot,
        subject: &Subject,
        claims: Option<&Claims>,
        ask: &Ask<'_>,
        run: &mut Run,
    ) -> Result<Option<Source>, Denial> {
        let ep = &ask.endpoint;
        let mount_from = mount_source(ep);
        let mut source = None;
        for (name, action) in ep.required_access() {
            if mount_from == Some(name) && ep.repository() != Some(name) {
                continue;
            }
            let (src, actions) = self.access(snap, subject, name, ask.ns, ask.host).map_err(Denial::Invalid)?;
            if !actions.allows(action) {
                run.step("repository", "deny", || format!("{} may not {} {name}", subject.name(), action.as_str()));
                return Err(self.refusal(snap, subject, ep, &src, name, action));
            }
            if !token_grants(claims, name, action) {
                return Err(insufficient(ep));
            }
            run.step("repository", "pass", || match &src {
                Source::Hosted(_) => format!("{} may {} {name}", subject.name(), action.as_str()),
                Source::Upstream(u) => format!("{} is pulled through the cache of {}", u.canonical(), u.registry),
            });
            if Some(name) == ep.repository() {
                source = Some(src);
            }
        }
        Ok(source)
    }

    /// Why `subject` may not take `action` on `name` (step 2 or 3 refused it).
    fn refusal(
        &self,
        snap: &Snapshot,
        subject: &Subject,
        ep: &Endpoint,
        src: &Source,
        name: &RepoName,
        action: Action,
    ) -> Denial {
        match (src, action, subject) {
            (Source::Upstream(u), Action::Push | Action::Delete, _) => Denial::Unsupported(format!(
                "{name} is a pull-through cache of {}: push and delete are not supported there",
                u.registry
            )),
            (_, _, Subject::Anonymous) => Denial::SignIn {
                message: format!("sign in to {} {name}", action.as_str()),
                scope: scope_of(ep),
                error: None,
            },
            (_, Action::Push, Subject::User(p)) if let Some(org) = self.personal_push_blocked(snap, subject, name) => {
                Denial::Forbidden(format!(
                    "{} may not push to the personal namespace {}: {org} turns off its members' pushes to \
                     personal namespaces (namespace access control); push to {org}/... instead",
                    p.username,
                    name.namespace()
                ))
            }
            (_, _, Subject::User(p)) => Denial::Forbidden(format!(
                "{} may not {} {name}: {}",
                p.username,
                action.as_str(),
                why_denied(name, action)
            )),
        }
    }

    /// Step 4: a mount needs pull on its source; otherwise the client uploads the blob itself.
    fn mount(
        &self,
        snap: &Snapshot,
        subject: &Subject,
        claims: Option<&Claims>,
        ep: &mut Endpoint,
        host: Option<&str>,
        run: &mut Run,
    ) -> Result<(), Denial> {
        let Some(from) = mount_source(ep).cloned() else { return Ok(()) };
        let may = self.may_pull_hosted(snap, subject, &from, host);
        if may && !token_grants(claims, &from, Action::Pull) {
            return Err(insufficient(ep));
        }
        if !may && let Endpoint::UploadStart { mount, .. } = ep {
            run.step("mount", "skip", || format!("{from} may not be pulled: the blob is uploaded instead"));
            *mount = None;
        }
        Ok(())
    }

    /// Step 5: Registry and Image Access Management for a read of content (a Docker Hub badge
    /// asked first where it matters; a digest-pinned exception may allow what the policy
    /// denies): the decision, and the digest a tag was resolved to.
    async fn policy(&self, pc: &mut PullCheck<'_>, run: &mut Run) -> (Decision, Option<Digest>) {
        let badge = self.hub_badge(&pc.memberships, &pc.image, &pc.policy).await;
        if badge.is_some() {
            // A lookup may have taught the catalog the namespace's badge.
            pc.policy = self.iam.snapshot();
        }
        let mut decision = policy::decide(&pc.memberships, &pc.image, &pc.policy, pc.now);
        let mut digest = None;
        if decision.effect != Effect::Allow
            && badge == Some(crate::badges::BadgeCheck::Unchecked)
            && decision.category == Some(policy::Category::Community)
        {
            decision.message.push_str(&format!(
                " (Docker Hub's badge for {} is not known yet; asked again shortly)",
                pc.image.namespace()
            ));
        }
        if decision.effect == Effect::Deny
            && let Some((allowed, resolved)) = self.pinned(pc, run).await
        {
            decision = allowed;
            digest = resolved;
        }
        run.step("policy", effect_str(decision.effect), || decision.message.clone());
        (decision, digest)
    }

    /// Step 6: the signature rules of a manifest read the policy allowed; an unmet rule decides
    /// instead (a dry-run one only over an allow). Sets the digest and manifest decided on.
    async fn signatures(
        &self,
        pc: &PullCheck<'_>,
        decision: Decision,
        decided: (&mut Option<Digest>, &mut Option<crate::content::ServedManifest>),
        pinned: Option<Digest>,
        run: &mut Run,
    ) -> Result<Decision, Denial> {
        let (digest, manifest) = decided;
        *digest = pinned;
        if decision.effect == Effect::Deny {
            return Ok(decision);
        }
        match self.signed(pc, (digest, manifest), run).await? {
            Some(unmet) if unmet.effect == Effect::Deny || decision.effect == Effect::Allow => Ok(unmet),
            _ => Ok(decision),
        }
    }

    /// Step 7: what the decision implies — a denial is audited at once (manifest reads) and
    /// refused; a served read carries its audit entry until it is served.
    async fn record(
        &self,
        pc: PullCheck<'_>,
        subject: &Subject,
        decision: Decision,
        digest: &Option<Digest>,
        (client, agent): (&str, &str),
        run: &mut Run,
    ) -> Result<Option<PullRecord>, Denial> {
        if run.trace.is_some() {
            run.decision = Some(decision.clone());
            run.digest = digest.clone();
        }
        let PullCheck { memberships, image, ep, source, .. } = pc;
        let image = Image { digest: digest.as_ref().map(|d| d.to_string()).or(image.digest), ..image };
        if decision.effect == Effect::Deny {
            tracing::info!(user = subject.name(), image = %image.canonical(), org = ?decision.org, rule = %decision.rule, "pull denied");
            if matches!(ep, Endpoint::Manifest { .. }) && run.trace.is_none() {
                let known = self.known_digest(source, ep, &decision, &image).await;
                let audited = known.map(|d| Image { digest: Some(d.to_string()), ..image.clone() });
                for e in self.pull_entries(
                    &memberships,
                    subject,
                    audited.as_ref().unwrap_or(&image),
                    &decision,
                    client,
                    agent,
                ) {
                    self.audit.record(e).await;
                }
            }
            return Err(Denial::Policy(Box::new(PolicyDenial { decision, image })));
        }
        Ok(Some(PullRecord { image, decision, memberships, client: client.into(), agent: agent.into() }))
    }

    /// A caller may pull the hosted repository `name` (a mount's source): permitted, and not
    /// refused by the policy.
    fn may_pull_hosted(&self, snap: &Snapshot, subject: &Subject, name: &RepoName, host: Option<&str>) -> bool {
        let Ok((src @ Source::Hosted(_), actions)) = self.access(snap, subject, name, None, host) else { return false };
        if !actions.pull {
            return false;
        }
        let memberships = match subject {
            Subject::User(p) => snap.memberships(p.id),
            Subject::Anonymous => vec![],
        };
        let image = image_of_source(&src, None);
        policy::decide(&memberships, &image, &self.iam.snapshot(), self.clock.now()).effect != Effect::Deny
    }

    /// For a denied tag pull, the digest the tag named when last seen here (a hosted tag or a
    /// cached one: a denial never asks an upstream), so that an owner approving the member's
    /// request may pin the exception to exactly what was refused. Only for denials an exception
    /// can waive, and only when the image has no digest yet.
    async fn known_digest(&self, source: &Source, ep: &Endpoint, decision: &Decision, image: &Image) -> Option<Digest> {
        let Endpoint::Manifest { reference: Reference::Tag(tag), .. } = ep else { return None };
        if image.digest.is_some() || !decision.exceptable() {
            return None;
        }
        self.contents.of(source).known_tag(source, tag).await.ok().flatten()
    }

    /// Audit entries for a manifest pull: the deciding org for denials, else one per org the
    /// subject belongs to (so each org's owners see their members' pulls), else one without org.
    fn pull_entries(
        &self,
        memberships: &[Membership],
        subject: &Subject,
        image: &Image,
        d: &Decision,
        client: &str,
        agent: &str,
    ) -> Vec<AuditEntry> {
        let base = AuditEntry {
            actor: subject.name().to_owned(),
            action: "pull".into(),
            image: Some(image.canonical()),
            digest: image.digest.clone(),
            decision: Some(audit_decision(d.effect)),
            client: Some(client.to_owned()),
            user_agent: Some(agent.chars().take(200).collect()),
            ..Default::default()
        };
        if let Some(org) = &d.org
            && d.exception.is_none()
        {
            return vec![AuditEntry {
                org: Some(org.clone()),
                category: d.category.as_ref().map(|c| c.name()),
                rule: Some(d.rule),
                ..base
            }];
        }
        if memberships.is_empty() {
            return vec![AuditEntry { rule: Some(d.rule), ..base }];
        }
        let policy = self.iam.snapshot();
        memberships
            .iter()
            .map(|m| {
                if let (Some(id), Some(org)) = (d.exception, &d.org)
                    && org == &m.org
                {
                    // allowed by this org's exception: the entry names it
                    return AuditEntry {
                        org: Some(org.clone()),
                        category: d.category.as_ref().map(|c| c.name()),
                        rule: Some(Rule::Exception),
                        detail: Some(serde_json::json!({ "exception": id }).to_string()),
                        ..base.clone()
                    };
                }
                let settings = policy.orgs.get(&m.org).map(|p| p.settings.clone()).unwrap_or_default();
                let category = policy::categorize(&m.org, &settings, image, &policy.catalog);
                let rule = if m.owner && settings.restricted_images.enabled { Rule::Owner } else { Rule::Allowed };
                AuditEntry {
                    org: Some(m.org.clone()),
                    category: Some(category.name()),
                    rule: Some(rule),
                    ..base.clone()
                }
            })
            .collect()
    }
}

fn effect_str(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "pass",
        Effect::Deny => "deny",
        Effect::WouldDeny => "would_deny",
    }
}

/// The decision as the audit log names it.
pub fn audit_decision(e: Effect) -> AuditDecision {
    match e {
        Effect::Allow => AuditDecision::Allowed,
        Effect::Deny => AuditDecision::Denied,
        Effect::WouldDeny => AuditDecision::WouldDeny,
    }
}
