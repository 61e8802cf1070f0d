//! Kubernetes admission: the images of a pod (its containers, init and ephemeral containers, or
//! a workload's pod template) decided by the same policy as a pull by the pod's service account —
//! the workload identity `<issuer>:system:serviceaccount:<namespace>:<name>` of the cluster's
//! issuer (`[admission] issuer`), a member of the teams the orgs' workload rules give it — so a
//! pod that would be refused at pull is refused at creation, with the same message; dry-run
//! denials come back as warnings. Each allowed image is rewritten to the gateway's name pinned
//! to the digest its tag names now (asked of the hosted registry or the upstream, nothing
//! fetched or stored), so the runtime pulls through the gateway exactly what was admitted; an
//! image already named by the gateway with a digest is left as it is. A signature rule that
//! covers an image whose digest has not verified at a pull yet comes back as a warning (the pull
//! checks it, against the signature's bytes; admission fetches nothing). Every review is audited
//! once (`admission`: the refused image, or the first; every image's decision in the detail),
//! naming the namespace, the pod and the service account.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::audit::Audit;
use crate::authz::Subject;
use crate::content::Contents;
use crate::error::{Error, Result};
use crate::gate::{Ask, Caller, Denial, Grant};
use crate::iam::Iam;
use crate::model::{AuditDecision, AuditEntry};
use crate::ports::WorkloadIdentity;
use oci::source::Source;
use oci::{Endpoint, Method};

/// The most images one review decides (a pod of 1 000 containers is refused, not decided slowly).
pub const MAX_IMAGES: usize = 256;

/// What the API server asks about.
#[derive(Debug, Clone)]
pub struct Review {
    pub namespace: String,
    /// The pod's service account (`default` when the pod names none).
    pub service_account: String,
    /// The object's name (or `generateName`), for the audit.
    pub object: String,
    /// `Pod`, `Deployment`, …
    pub kind: String,
    /// Each image with where it is in the object (a JSON pointer).
    pub images: Vec<(String, String)>,
}

/// The answer: allowed or why not, warnings, and the images rewritten (pointer → new image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub rewrites: Vec<(String, String)>,
}

pub struct Admission {
    iam: Arc<Iam>,
    /// The gate that decides pulls: admission asks it on the pod's service account's behalf.
    gate: crate::gate::Gate,
    workloads: Arc<crate::workloads::Workloads>,
    contents: Arc<Contents>,
    audit: Arc<Audit>,
    /// The workload issuer whose rules name this cluster's service accounts.
    issuer: Option<String>,
    /// The gateway's `host[:port]` as the cluster's nodes reach it (`public_url`), for rewrites.
    gateway: Option<String>,
}

impl Admission {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        iam: Arc<Iam>,
        gate: crate::gate::Gate,
        workloads: Arc<crate::workloads::Workloads>,
        contents: Arc<Contents>,
        audit: Arc<Audit>,
        issuer: Option<String>,
        gateway: Option<String>,
    ) -> Admission {
        Admission { iam, gate, workloads, contents, audit, issuer, gateway }
    }

    /// Whether admission reviews are answered here (an issuer is configured).
    pub fn enabled(&self) -> bool {
        self.issuer.is_some()
    }

    pub async fn review(&self, r: &Review, mutate: bool) -> Result<Verdict> {
        let Some(issuer) = &self.issuer else {
            return Err(Error::NotFound("admission reviews are not answered here (no [admission] issuer)".into()));
        };
        if r.images.len() > MAX_IMAGES {
            return Ok(self
                .refuse(
                    r,
                    issuer,
                    format!("the {} has {} images; at most {MAX_IMAGES} are decided", r.kind, r.images.len()),
                )
                .await);
        }
        let subject = format!("system:serviceaccount:{}:{}", r.namespace, r.service_account);
        let claims: BTreeMap<String, String> = [
            ("sub", subject.clone()),
            ("namespace", r.namespace.clone()),
            ("serviceaccount", r.service_account.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // The pod's service account as a workload, as at its pulls: its account and the teams the
        // rules give it (the API server vouches for the namespace and the service account).
        let w = WorkloadIdentity { issuer: issuer.clone(), subject, claims, expires_at: 0 };
        let who = match self.workloads.admit(&w, "admission").await {
            Ok(p) => p,
            Err(Error::Unauthenticated(why)) => return Ok(self.refuse(r, issuer, why).await),
            Err(e) => return Err(e),
        };
        let caller = Caller::OnBehalf(Subject::User(who.clone()));
        let mut v = Verdict { allowed: true, ..Verdict::default() };
        let mut would_deny = false;
        // One audit entry per review: the images and what was decided for each.
        let mut decided = Vec::with_capacity(r.images.len());
        let mut first: Option<(policy::Image, Option<policy::Decision>)> = None;
        // An image named twice (an init container running the app's image) is decided once.
        let mut seen: Vec<(&str, &'static str, Option<String>)> = Vec::new();
        for (pointer, name) in &r.images {
            if let Some((_, effect, pinned)) = seen.iter().find(|(n, ..)| n == name) {
                decided.push(serde_json::json!({ "image": name, "effect": effect }));
                if let Some(new) = pinned {
                    v.rewrites.push((pointer.clone(), new.clone()));
                }
                continue;
            }
            let (repo, reference) = match crate::gate::parse_image(self.served_name(name)) {
                Ok(x) => x,
                Err(e) => return Ok(self.refuse(r, issuer, format!("{pointer}: {e}")).await),
            };
            let digest = match &reference {
                oci::Reference::Digest(d) => Some(d.to_string()),
                oci::Reference::Tag(_) => None,
            };
            let named = policy::Image { registry: None, path: repo.to_string(), digest: digest.clone() };
            // The same gate as a pull of this image by the pod's service account: Image Access
            // Management, Registry Access Management, exceptions and signature rules. What it
            // resolved (the repository's source, a tag's digest) is used, not worked out again.
            let endpoint = Endpoint::Manifest { method: Method::Get, name: repo, reference: reference.clone() };
            let ask = Ask { endpoint, ns: None, host: None, client: "admission", agent: "admission" };
            let (effect, decision, granted) = match self.gate.decide(&caller, ask).await {
                Ok(g) if g.would_deny.is_some() => {
                    would_deny = true;
                    v.warnings.push(g.would_deny.clone().unwrap_or_default());
                    ("would_deny", None, Some(g))
                }
                Ok(g) => ("allow", None, Some(g)),
                Err(Denial::Unavailable(m)) => return Err(Error::Unavailable(m)),
                Err(d) => {
                    let decision = match &d {
                        Denial::Policy(p) => Some((p.decision.clone(), p.image.clone())),
                        _ => None,
                    };
                    v = Verdict {
                        allowed: false,
                        message: Some(crate::gate::denial_message(&d)),
                        ..Verdict::default()
                    };
                    ("deny", decision, None)
                }
            };
            let (decision, img) = match (decision, &granted) {
                (Some((d, img)), _) => (Some(d), img),
                (None, Some(g)) => {
                    (None, g.source.as_ref().map(|s| crate::gate::image_of_source(s, digest)).unwrap_or(named))
                }
                (None, None) => (None, named),
            };
            decided.push(serde_json::json!({ "image": name, "effect": effect }));
            if first.is_none() || !v.allowed {
                first = Some((img.clone(), decision));
            }
            if !v.allowed {
                break;
            }
            let mut pinned = None;
            if mutate
                && let Some(g) = &granted
                && let Some(new) = self.pinned(name, g, &reference).await?
            {
                v.rewrites.push((pointer.clone(), new.clone()));
                pinned = Some(new);
            }
            seen.push((name, effect, pinned));
        }
        if let Some((img, d)) = first {
            let decision = match (v.allowed, would_deny) {
                (false, _) => AuditDecision::Denied,
                (true, true) => AuditDecision::WouldDeny,
                (true, false) => AuditDecision::Allowed,
            };
            let org = d.as_ref().and_then(|d| d.org.clone()).or_else(|| {
                let dir = self.iam.identity.directory().snapshot();
                dir.memberships(who.id).first().map(|m| m.org.clone())
            });
            self.audit
                .record(AuditEntry {
                    org,
                    actor: who.username.clone(),
                    action: "admission".into(),
                    image: Some(img.canonical()),
                    digest: img.digest.clone(),
                    category: d.as_ref().and_then(|d| d.category.as_ref().map(|c| c.name())),
                    rule: d.as_ref().map(|d| d.rule),
                    decision: Some(decision),
                    detail: Some(
                        serde_json::json!({ "namespace": r.namespace, "kind": r.kind, "object": r.object,
                                            "serviceaccount": r.service_account, "images": decided })
                        .to_string(),
                    ),
                    ..Default::default()
                })
                .await;
        }
        if !v.allowed {
            v.rewrites.clear();
            v.warnings.clear();
        }
        Ok(v)
    }

    /// `name` as a client of the gateway asks for it: without the gateway's own host.
    fn served_name<'a>(&self, name: &'a str) -> &'a str {
        match &self.gateway {
            Some(gw) => name.strip_prefix(gw.as_str()).and_then(|n| n.strip_prefix('/')).unwrap_or(name),
            None => name,
        }
    }

    /// `name` as the gateway serves it, pinned to the digest its tag names now; `None` when it
    /// is so already, or when no gateway name is configured.
    async fn pinned(&self, name: &str, g: &Grant, reference: &oci::Reference) -> Result<Option<String>> {
        let (Some(gw), Some(source)) = (&self.gateway, &g.source) else { return Ok(None) };
        if name.starts_with(&format!("{gw}/")) && name.contains("@sha256:") {
            return Ok(None);
        }
        let path = match source {
            Source::Hosted(n) => n.to_string(),
            Source::Upstream(u) if u.registry == oci::source::DOCKER_HUB => u.path.to_string(),
            Source::Upstream(u) => format!("{}/{}", u.registry, u.path),
        };
        let digest = match (reference, &g.digest) {
            (oci::Reference::Digest(d), _) | (_, Some(d)) => d.clone(),
            (oci::Reference::Tag(tag), None) => match self.contents.of(source).resolve_tag(source, tag).await? {
                Some(d) => d,
                None => return Err(Error::NotFound(format!("{name}: no such tag"))),
            },
        };
        Ok(Some(format!("{gw}/{path}@{digest}")))
    }

    async fn refuse(&self, r: &Review, issuer: &str, message: String) -> Verdict {
        let detail = serde_json::json!({ "namespace": r.namespace, "kind": r.kind, "object": r.object,
                                         "serviceaccount": r.service_account, "reason": message });
        self.audit
            .record(AuditEntry {
                actor: format!("{issuer}:system:serviceaccount:{}:{}", r.namespace, r.service_account),
                action: "admission".into(),
                decision: Some(AuditDecision::Denied),
                detail: Some(detail.to_string()),
                ..Default::default()
            })
            .await;
        Verdict { allowed: false, message: Some(message), ..Verdict::default() }
    }
}
