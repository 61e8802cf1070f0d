//! Digest-pinned exceptions: an exception that names a digest allows that manifest, and —
//! since a client pulls an image's parts after its manifest — the child manifests and blobs
//! that an allowed pinned manifest references. A tag is decided by the digest it names now,
//! asked before anything is served (a cached tag or a HEAD upstream; nothing fetched or
//! stored); a part is looked up only in manifests already stored here.

use oci::source::Source;
use oci::{Digest, Endpoint, Reference};
use policy::{Decision, Effect, Image, Membership};

use super::{Gate, PullCheck, Run};

/// How many levels of index a pinned manifest may nest its parts in.
const MAX_DEPTH: u8 = 2;

/// Digests pinned by the exceptions that would apply to a member of `memberships` pulling
/// `image` (any org, unexpired, for their teams).
fn pinned_digests(memberships: &[Membership], image: &Image, snap: &policy::Snapshot, now: i64) -> Vec<String> {
    let name = image.canonical();
    let mut out = Vec::new();
    for m in memberships {
        let Some(org) = snap.orgs.get(&m.org) else { continue };
        for e in &org.exceptions {
            if let Some(d) = &e.digest
                && e.matches_name(&name, Some(d), &m.teams, now)
                && !out.contains(d)
            {
                out.push(d.clone());
            }
        }
    }
    out
}

impl Gate {
    /// The decision a pin gives a denied read, and the digest a tag was resolved to; `None`
    /// when no pin allows it. Errors (an upstream that cannot say what a tag names) leave the
    /// denial standing.
    pub(super) async fn pinned(&self, pc: &PullCheck<'_>, run: &mut Run) -> Option<(Decision, Option<Digest>)> {
        let PullCheck { memberships, image, ep, source, policy: snap, now } = pc;
        let (ep, source, now) = (*ep, *source, *now);
        let pins = pinned_digests(memberships, image, snap, now);
        if pins.is_empty() {
            return None;
        }
        let content = self.contents.of(source);
        let wanted = match ep {
            Endpoint::Manifest { reference: Reference::Tag(tag), .. } => {
                let digest = match content.resolve_tag(source, tag).await {
                    Ok(Some(d)) => d,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(image = %image.canonical(), error = %e, "cannot resolve a tag for a pinned exception");
                        run.step("pin", "deny", || format!("{tag} could not be resolved: {e}"));
                        return None;
                    }
                };
                let d = policy::decide(
                    memberships,
                    &Image { digest: Some(digest.to_string()), ..image.clone() },
                    snap,
                    now,
                );
                run.step("pin", if d.effect == Effect::Deny { "deny" } else { "pass" }, || {
                    format!("tag {tag} names {digest}")
                });
                return (d.effect != Effect::Deny).then_some((d, Some(digest)));
            }
            Endpoint::Manifest { reference: Reference::Digest(d), .. } | Endpoint::Blob { digest: d, .. } => d.clone(),
            _ => return None,
        };
        for pin in pins {
            let d = policy::decide(memberships, &Image { digest: Some(pin.clone()), ..image.clone() }, snap, now);
            if d.effect == Effect::Deny {
                continue;
            }
            let Ok(root) = pin.parse::<Digest>() else { continue };
            if self.contains(source, &root, &wanted, MAX_DEPTH).await {
                run.step("pin", "pass", || format!("{wanted} is part of the pinned manifest {pin}"));
                return Some((d, None));
            }
        }
        None
    }

    /// True when the stored manifest `root` is `wanted` or references it, through at most
    /// `depth` levels of index.
    async fn contains(&self, source: &Source, root: &Digest, wanted: &Digest, depth: u8) -> bool {
        if root == wanted {
            return true;
        }
        let content = self.contents.of(source);
        let Ok(Some(m)) = content.stored_manifest(source, root).await else { return false };
        let Ok(m) = oci::Manifest::parse(&m.content, Some(&m.media_type)) else { return false };
        if m.blob_references().any(|d| &d.digest == wanted) {
            return true;
        }
        if depth == 0 {
            return false;
        }
        for child in &m.manifests {
            if Box::pin(self.contains(source, &child.digest, wanted, depth - 1)).await {
                return true;
            }
        }
        false
    }
}
