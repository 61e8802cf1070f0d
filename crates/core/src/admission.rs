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
use crate::clock::Clock;
use crate::content::Contents;
use crate::error::{Error, Result};
use crate::iam::Iam;
use crate::model::{AuditDecision, AuditEntry};

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
    contents: Arc<Contents>,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
    /// The workload issuer whose rules name this cluster's service accounts.
    issuer: Option<String>,
    /// The gateway's `host[:port]` as the cluster's nodes reach it (`public_url`), for rewrites.
    gateway: Option<String>,
}

impl Admission {
    pub fn new(
        iam: Arc<Iam>,
        contents: Arc<Contents>,
        audit: Arc<Audit>,
        clock: Arc<dyn Clock>,
        issuer: Option<String>,
        gateway: Option<String>,
    ) -> Admission {
        Admission { iam, contents, audit, clock, issuer, gateway }
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
        let actor = format!("{issuer}:{subject}");
        let claims: BTreeMap<String, String> = [
            ("sub", subject.clone()),
            ("namespace", r.namespace.clone()),
            ("serviceaccount", r.service_account.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let snap = self.iam.snapshot();
        let teams = match crate::workloads::rule_teams(&snap, issuer, &subject, &claims) {
            Ok(t) => t,
            Err(why) => return Ok(self.refuse(r, issuer, why).await),
        };
        let mut memberships: Vec<policy::Membership> = Vec::new();
        for (org, team) in teams {
            match memberships.iter_mut().find(|m| m.org == org) {
                Some(m) => m.teams.push(team),
                None => memberships.push(policy::Membership { org, owner: false, teams: vec![team] }),
            }
        }
        let mut v = Verdict { allowed: true, ..Verdict::default() };
        // One audit entry per review: the images and what was decided for each.
        let mut decided = Vec::with_capacity(r.images.len());
        let mut first: Option<(policy::Image, policy::Decision)> = None;
        let mut would_deny = false;
        for (pointer, name) in &r.images {
            let img = match self.iam.image_of(name) {
                Ok(i) => i,
                Err(e) => return Ok(self.refuse(r, issuer, format!("{pointer}: {e}")).await),
            };
            let d = policy::decide(&memberships, &img, &snap, self.clock.now());
            decided.push(serde_json::json!({ "image": name, "rule": d.rule, "effect": d.effect }));
            let denied = d.effect == policy::Effect::Deny;
            match d.effect {
                policy::Effect::Deny => {
                    v = Verdict { allowed: false, message: Some(d.message.clone()), ..Verdict::default() }
                }
                policy::Effect::WouldDeny => {
                    would_deny = true;
                    v.warnings.push(d.message.clone());
                }
                policy::Effect::Allow => {}
            }
            if first.is_none() || denied {
                first = Some((img.clone(), d));
            }
            if denied {
                break;
            }
            let pinned = if mutate { self.pinned(name, &img).await? } else { None };
            // Signature rules are checked at the pull, against the signature's bytes; here a
            // digest not verified at a pull yet is said, so the refusal does not come unannounced.
            let digest = pinned.as_deref().and_then(|p| p.split_once('@')).map(|(_, d)| d.to_owned());
            let signed = policy::Image { digest: digest.or(img.digest.clone()), ..img.clone() };
            for m in &memberships {
                if let Some(why) = self.iam.unverified(&memberships, &signed, &snap, &m.org) {
                    v.warnings.push(format!("{name}: {why}; the pull checks it"));
                }
            }
            if let Some(new) = pinned {
                v.rewrites.push((pointer.clone(), new));
            }
        }
        if let Some((img, d)) = first {
            let decision = match (v.allowed, would_deny) {
                (false, _) => AuditDecision::Denied,
                (true, true) => AuditDecision::WouldDeny,
                (true, false) => AuditDecision::Allowed,
            };
            let org = d.org.clone().or_else(|| memberships.first().map(|m| m.org.clone()));
            self.audit
                .record(AuditEntry {
                    org,
                    actor,
                    action: "admission".into(),
                    image: Some(img.canonical()),
                    digest: img.digest.clone(),
                    category: d.category.as_ref().map(|c| c.name()),
                    rule: Some(d.rule),
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

    /// `name` as the gateway serves it, pinned to the digest its tag names now; `None` when it
    /// is so already, or when no gateway name is configured.
    async fn pinned(&self, name: &str, img: &policy::Image) -> Result<Option<String>> {
        let Some(gw) = &self.gateway else { return Ok(None) };
        if name.starts_with(&format!("{gw}/")) && name.contains("@sha256:") {
            return Ok(None);
        }
        let path = match &img.registry {
            None => img.path.clone(),
            Some(r) if r == oci::source::DOCKER_HUB => img.path.clone(),
            Some(r) => format!("{r}/{}", img.path),
        };
        let digest = match &img.digest {
            Some(d) => d.clone(),
            None => {
                let tag = match name.rsplit_once(':') {
                    Some((_, t)) if !t.contains('/') => t,
                    _ => "latest",
                };
                let tag: oci::name::Tag =
                    tag.parse().map_err(|_| Error::Invalid(format!("invalid tag in {name:?}")))?;
                let repo: oci::RepoName =
                    path.parse().map_err(|_| Error::Invalid(format!("invalid image name {name:?}")))?;
                let source =
                    oci::source::resolve(&repo, None, None, |n| img.registry.is_none() && n == img.namespace())
                        .map_err(|e| Error::Invalid(e.message))?;
                match self.contents.of(&source).resolve_tag(&source, &tag).await? {
                    Some(d) => d.to_string(),
                    None => return Err(Error::NotFound(format!("{name}: no such tag"))),
                }
            }
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
