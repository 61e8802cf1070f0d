//! Signature requirements at the gate: after the policy allows a manifest read, the org rules
//! that cover the image (`policy::required`) must each be met by a signature of the manifest's
//! digest — a tag is resolved first (a hosted manifest is read, and served from the grant; a
//! cached one is resolved as for pins) and the grant then serves exactly that digest. A child
//! manifest without a signature of its own is covered by a signed index stored here that lists
//! it (clients pull the index just before). What verified is remembered
//! (`signatures::Verified`). Signature objects, attestations and SBOMs (attachments that run
//! nothing) are served, so that clients can verify the image. An unmet rule in `enforce` denies
//! (403 `DENIED`, naming the rule and the keys), one in `dry_run` serves with a warning;
//! anything that cannot be checked (a tag that cannot be resolved, an upstream that fails) is
//! unmet.

use oci::source::Source;
use oci::{Digest, Endpoint, ErrorCode, Manifest, Method, Reference, WireError};
use policy::{Decision, Effect, Mode, Requirement};

use super::{Denial, Gate, PullCheck, Run};
use crate::content::ServedManifest;
use crate::error::Error;
use crate::signatures::{self, Evidence, cosign, keys, rule_key};

/// How many stored tags are looked through for indexes listing a child, and how many such
/// indexes have their signatures read.
const MAX_PARENT_TAGS: usize = 100;
const MAX_PARENTS: usize = 4;

/// The rules a pull did not meet, enforced first.
struct Unmet {
    enforced: Option<Decision>,
    dry_run: Option<Decision>,
}

/// The outcome of the signature step: met (or no rule), or the decision of the first unmet
/// rule (`Deny` when enforced, else `WouldDeny`), decided and audited as the policy's are.
pub(super) type Verdict = Option<Decision>;

impl Gate {
    /// Checks the signature rules covering a manifest read of `image`. Sets `decided` to the
    /// digest decided on and, when it was read here, the hosted manifest itself.
    pub(super) async fn signed(
        &self,
        pc: &PullCheck<'_>,
        decided: (&mut Option<Digest>, &mut Option<ServedManifest>),
        run: &mut Run,
    ) -> Result<Verdict, Denial> {
        let PullCheck { memberships, image, ep, source, policy: snap, .. } = pc;
        let (ep, source) = (*ep, *source);
        let (digest, served) = decided;
        let Endpoint::Manifest { method: Method::Get | Method::Head, reference, .. } = ep else { return Ok(None) };
        let reqs = policy::required(memberships, image, snap);
        if reqs.is_empty() {
            // Said only in `check`'s trace: a pull does not look further.
            let ruled = run.trace.is_some()
                && memberships
                    .iter()
                    .any(|m| snap.orgs.get(&m.org).is_some_and(|p| !p.settings.signatures.rules.is_empty()));
            if ruled {
                run.step("signature", "pass", || {
                    format!("no signature rule binding this user covers {}", image.canonical())
                });
            }
            return Ok(None);
        }
        let content = self.contents.of(source);
        let unknown = |tag: &oci::Tag| {
            Denial::Invalid(WireError::new(
                ErrorCode::ManifestUnknown,
                format!("manifest {tag} is not in {}", image.canonical()),
            ))
        };
        let d = match (reference, digest.as_ref()) {
            (Reference::Digest(d), _) | (_, Some(d)) => d.clone(),
            // A hosted manifest is read once, here, and served from the grant.
            (Reference::Tag(tag), None) if matches!(source, Source::Hosted(_)) => {
                match content.manifest(source, reference).await {
                    Ok(m) => {
                        let d = m.digest.clone();
                        *served = Some(m);
                        d
                    }
                    Err(e) if e.is_internal() => return Err(e.into()),
                    Err(_) => return Err(unknown(tag)),
                }
            }
            (Reference::Tag(tag), None) => match content.resolve_tag(source, tag).await {
                Ok(Some(d)) => d,
                Ok(None) => return Err(unknown(tag)),
                Err(e) => {
                    let why = format!("which manifest {tag} names could not be asked: {e}");
                    return self.unmet_all(&reqs, pc, &why, run);
                }
            },
        };
        *digest = Some(d.clone());
        let verified = &self.iam.signatures;
        let keys: Vec<_> = reqs.iter().map(|r| rule_key(r.rule)).collect();
        if keys.iter().all(|k| verified.contains(&d, k)) {
            run.step("signature", "pass", || {
                format!("{d} is signed as {} rule(s) require (verified before)", reqs.len())
            });
            return Ok(None);
        }
        let manifest = match served.clone() {
            Some(m) => Ok(m),
            None => match content.stored_manifest(source, &d).await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => content.manifest(source, &Reference::Digest(d.clone())).await,
                Err(e) => Err(e),
            },
        };
        let manifest = match manifest.map(|m| Manifest::parse(&m.content, Some(&m.media_type))) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return self.unmet_all(&reqs, pc, &format!("{d} is not a valid manifest: {e}"), run),
            Err(e) if e.is_internal() => return Err(e.into()),
            Err(Error::Registry(ErrorCode::ManifestUnknown | ErrorCode::NameUnknown, m)) => {
                return Err(Denial::Invalid(WireError::new(ErrorCode::ManifestUnknown, m)));
            }
            // Not readable now (an upstream failing): nothing that could not be checked is served.
            Err(e) => return self.unmet_all(&reqs, pc, &format!("{d} could not be read: {e}"), run),
        };
        if cosign::is_attachment(&manifest) {
            run.step("signature", "pass", || {
                format!("{d} is a signature, attestation or SBOM: served so clients can verify the image")
            });
            for k in &keys {
                verified.remember([d.clone()], k);
            }
            return Ok(None);
        }
        let evidence = signatures::gather(content, source, &d).await;
        let mut unmet = Unmet { enforced: None, dry_run: None };
        // Stored indexes listing this manifest, with their signatures once read.
        let mut parents: Option<Vec<(Digest, Option<Evidence>)>> = None;
        for (req, key) in reqs.iter().zip(&keys) {
            if verified.contains(&d, key) {
                continue;
            }
            let why = match evidence.satisfies(&d, req.rule) {
                Ok(by) => {
                    run.step("signature", "pass", || {
                        format!("{d} is signed by {by} (rule {} of {})", req.index, req.org)
                    });
                    let children = manifest.manifests.iter().map(|c| c.digest.clone());
                    verified.remember(std::iter::once(d.clone()).chain(children), key);
                    continue;
                }
                Err(why) => why,
            };
            // A child pulled on its own: covered by a signed index stored here that lists it.
            if parents.is_none() {
                let found = content.stored_parents(source, &d, MAX_PARENT_TAGS).await.unwrap_or_default();
                parents = Some(found.into_iter().take(MAX_PARENTS).map(|p| (p, None)).collect());
            }
            let mut by_parent = None;
            for (p, ev) in parents.iter_mut().flatten() {
                if verified.contains(p, key) {
                    by_parent = Some((p.clone(), "a key it requires".to_owned()));
                    break;
                }
                if ev.is_none() {
                    *ev = Some(signatures::gather(content, source, p).await);
                }
                if let Some(Ok(by)) = ev.as_ref().map(|ev| ev.satisfies(p, req.rule)) {
                    by_parent = Some((p.clone(), by));
                    break;
                }
            }
            match by_parent {
                Some((p, by)) => {
                    run.step("signature", "pass", || {
                        format!("{d} is listed by the index {p}, signed by {by} (rule {} of {})", req.index, req.org)
                    });
                    verified.remember([p, d.clone()], key);
                }
                None => self.record_unmet(&mut unmet, req, pc, &d.to_string(), &why, run),
            }
        }
        finish(unmet)
    }

    /// Every rule unmet for the same reason (the digest could not be known).
    fn unmet_all(
        &self,
        reqs: &[Requirement<'_>],
        pc: &PullCheck<'_>,
        why: &str,
        run: &mut Run,
    ) -> Result<Verdict, Denial> {
        let mut unmet = Unmet { enforced: None, dry_run: None };
        for req in reqs {
            self.record_unmet(&mut unmet, req, pc, &pc.image.canonical(), why, run);
        }
        finish(unmet)
    }

    fn record_unmet(
        &self,
        unmet: &mut Unmet,
        req: &Requirement<'_>,
        pc: &PullCheck<'_>,
        what: &str,
        why: &str,
        run: &mut Run,
    ) {
        let (image, snap) = (&pc.image, &*pc.policy);
        let unset = policy::Settings::default();
        let settings = snap.orgs.get(req.org).map_or(&unset, |p| &p.settings);
        let message = format!(
            "Signature requirement: {} must be signed by {} for members of {} (signature rule {}: {}); {why}. \
             Ask an owner of {} to check the image's signatures or the rule.",
            image.canonical(),
            keys::ids(&req.rule.keys),
            req.org,
            req.index,
            req.rule.images,
            req.org
        );
        let dry = req.rule.mode == Mode::DryRun;
        run.step("signature", if dry { "would_deny" } else { "deny" }, || format!("{what}: {message}"));
        let decision = Decision {
            effect: if dry { Effect::WouldDeny } else { Effect::Deny },
            org: Some(req.org.to_owned()),
            rule: policy::Rule::Signature,
            category: Some(policy::categorize(req.org, settings, image, &snap.catalog)),
            message,
            exception: None,
        };
        let slot = if dry { &mut unmet.dry_run } else { &mut unmet.enforced };
        slot.get_or_insert(decision);
    }
}

/// An enforced unmet rule decides; else a dry-run one.
fn finish(unmet: Unmet) -> Result<Verdict, Denial> {
    Ok(unmet.enforced.or(unmet.dry_run))
}
