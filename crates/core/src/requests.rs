//! Exception requests: a member whose pull was denied asks the org's owners for an exception
//! (with a reason); an owner approves — which creates the exception through the same
//! `add_exception` as the API, optionally pinned to the denied digest and with an expiry — or
//! declines. Owners see every request of the org, members their own.

use crate::authz::Principal;
use crate::error::{Error, Result};
use crate::iam::{Iam, NewException};
use crate::model::{AuditQuery, ExceptionRequest, REQUEST_APPROVED, REQUEST_DECLINED, REQUEST_PENDING};

/// The longest reason or note kept.
const MAX_TEXT: usize = 500;

/// How an owner approves a request.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    /// Pin the exception to the digest the member was denied.
    pub pin_digest: bool,
    /// Or pin to this digest (when the request records none).
    pub digest: Option<String>,
    pub expires_at: Option<i64>,
    pub team: Option<String>,
    pub note: Option<String>,
}

fn text(s: &str, what: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::Invalid(format!("give a {what}")));
    }
    Ok(s.chars().take(MAX_TEXT).collect())
}

impl Iam {
    fn is_owner(&self, who: &Principal, org: &str) -> bool {
        who.is_admin || self.identity.directory().snapshot().is_owner(org, who.id)
    }

    /// A member asks for an exception for `image` (as a client names it). Without a digest,
    /// the one of the member's latest denied pull of that image is recorded, for pinning.
    pub async fn request_exception(
        &self,
        who: &Principal,
        org: &str,
        image: &str,
        reason: &str,
    ) -> Result<ExceptionRequest> {
        let o = self.orgs.visible(who, org).await?;
        let img = self.image_of(image.trim())?;
        let reason = text(reason, "reason")?;
        let canonical = img.canonical();
        let mine = self.meta.exception_requests(o.id).await?;
        if mine.iter().any(|r| r.requester == who.username && r.image == canonical && r.status == REQUEST_PENDING) {
            return Err(Error::Conflict(format!("you already have a pending request for {canonical}")));
        }
        let digest = match img.digest {
            Some(d) => Some(d),
            None => {
                let q = AuditQuery {
                    actor: Some(who.username.clone()),
                    image: Some(canonical.clone()),
                    decision: Some(crate::model::AuditDecision::Denied.as_str().into()),
                    limit: Some(1),
                    ..Default::default()
                };
                self.meta.query_audit(Some(org), &q).await?.into_iter().next().and_then(|e| e.digest)
            }
        };
        // What the member is told on a pull of it now (the denial that sent them here).
        let memberships = self.identity.directory().snapshot().memberships(who.id);
        let pulled = policy::Image { digest: digest.clone(), ..img };
        let d = policy::decide(&memberships, &pulled, &self.snapshot(), self.clock.now());
        let denial = (d.effect != policy::Effect::Allow).then_some(d.message);
        let mut r = ExceptionRequest {
            org: org.to_owned(),
            requester: who.username.clone(),
            image: canonical,
            digest,
            reason,
            status: REQUEST_PENDING.into(),
            created_at: self.clock.now(),
            denial,
            ..Default::default()
        };
        r.id = self.meta.create_exception_request(o.id, &r).await?;
        self.record_change(who, org, "exception_request.create", serde_json::json!(r)).await;
        Ok(r)
    }

    /// The org's requests, newest first: all of them for owners, a member's own otherwise.
    pub async fn exception_requests(&self, who: &Principal, org: &str) -> Result<Vec<ExceptionRequest>> {
        let o = self.orgs.visible(who, org).await?;
        let all = self.meta.exception_requests(o.id).await?;
        if self.is_owner(who, org) {
            return Ok(all);
        }
        Ok(all.into_iter().filter(|r| r.requester == who.username).collect())
    }

    async fn pending(&self, who: &Principal, org: &str, id: i64) -> Result<(i64, ExceptionRequest)> {
        let o = self.orgs.owned(who, org).await?;
        let r = self
            .meta
            .exception_requests(o.id)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::NotFound(format!("no exception request {id} in {org}")))?;
        if r.status != REQUEST_PENDING {
            return Err(Error::Conflict(format!("request {id} was already {}", r.status)));
        }
        Ok((o.id, r))
    }

    /// An owner approves: the exception is created and the request records it.
    pub async fn approve_request(&self, who: &Principal, org: &str, id: i64, a: Approval) -> Result<ExceptionRequest> {
        let (org_id, r) = self.pending(who, org, id).await?;
        if a.pin_digest && r.digest.is_none() {
            return Err(Error::Invalid("this request has no digest to pin to; approve it without pinning".into()));
        }
        let e = self
            .add_exception(
                who,
                org,
                NewException {
                    pattern: r.image.clone(),
                    digest: if a.pin_digest { r.digest.clone() } else { a.digest },
                    team: a.team.filter(|t| !t.trim().is_empty()),
                    expires_at: a.expires_at,
                    reason: format!("requested by {}: {}", r.requester, r.reason),
                },
            )
            .await?;
        let decided = ExceptionRequest {
            status: REQUEST_APPROVED.into(),
            decided_by: Some(who.username.clone()),
            decided_at: Some(self.clock.now()),
            note: a.note.map(|n| n.trim().chars().take(MAX_TEXT).collect()).filter(|n: &String| !n.is_empty()),
            exception_id: Some(e.id),
            ..r
        };
        if !self.meta.decide_exception_request(org_id, id, &decided).await? {
            // Someone decided it meanwhile: take back the exception made for it.
            self.delete_exception(who, org, e.id).await?;
            return Err(Error::Conflict(format!("request {id} was decided meanwhile")));
        }
        self.record_change(who, org, "exception_request.approve", serde_json::json!({ "id": id, "exception": e.id }))
            .await;
        Ok(decided)
    }

    /// An owner declines, with a note for the member.
    pub async fn decline_request(&self, who: &Principal, org: &str, id: i64, note: &str) -> Result<ExceptionRequest> {
        let (org_id, r) = self.pending(who, org, id).await?;
        let decided = ExceptionRequest {
            status: REQUEST_DECLINED.into(),
            decided_by: Some(who.username.clone()),
            decided_at: Some(self.clock.now()),
            note: Some(text(note, "note for the member")?),
            ..r
        };
        if !self.meta.decide_exception_request(org_id, id, &decided).await? {
            return Err(Error::Conflict(format!("request {id} was decided meanwhile")));
        }
        self.record_change(who, org, "exception_request.decline", serde_json::json!({ "id": id })).await;
        Ok(decided)
    }
}
