//! Docker Hub badges of namespaces the catalog does not know. When a pull names such a Docker
//! Hub namespace and an org of the puller restricts images (so that its category matters), the
//! badge is looked up from Docker Hub (`ports::BadgeLookup`) once however many pulls ask at
//! the same time, kept in memory and in the database (`hub_badges`, positive and negative
//! answers with their own expiry) so that a restart or another replica does not ask again, and
//! learned into the policy's catalog. Administrator overrides always win. While Docker Hub
//! cannot be asked the namespace stays community (fail closed), the denial says the badge
//! could not be checked, a warning is logged once per namespace, and it is asked again after a
//! pause. No pull waits longer than `wait_ms` for an answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::Badge;
use tokio::sync::Notify;

use crate::iam::Iam;
use crate::metrics::Metrics;
use crate::ports::BadgeLookup;

/// How lookups behave.
#[derive(Debug, Clone)]
pub struct HubLookupConfig {
    /// How long a badge Docker Hub gave is kept.
    pub positive_ttl_secs: i64,
    /// How long "no badge" is kept.
    pub negative_ttl_secs: i64,
    /// How long after a failed lookup the namespace is asked again.
    pub retry_secs: i64,
    /// The longest a pull waits for an answer.
    pub wait_ms: u64,
}

impl Default for HubLookupConfig {
    fn default() -> Self {
        HubLookupConfig { positive_ttl_secs: 7 * 86_400, negative_ttl_secs: 86_400, retry_secs: 300, wait_ms: 2_000 }
    }
}

/// What the lookup of a namespace's badge came to, for the denial message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadgeCheck {
    /// The catalog (seed, override, or Docker Hub's answer) decides.
    Known,
    /// Docker Hub could not be asked (or did not answer in time): the namespace is community.
    Unchecked,
}

enum Entry {
    Known { until: i64 },
    Failed { retry_at: i64 },
    InFlight(Arc<Notify>),
}

/// Who is asked, how, and where it is counted.
type Lookup = (Arc<dyn BadgeLookup>, HubLookupConfig, Arc<Metrics>);

/// The lookups' state, kept by `Iam`.
#[derive(Default)]
pub struct HubBadges {
    /// `None`: badges are not looked up.
    lookup: Option<Lookup>,
    entries: Mutex<HashMap<String, Entry>>,
    warned: Mutex<HashSet<String>>,
}

fn badge_key(b: Option<Badge>) -> Option<&'static str> {
    b.map(|b| match b {
        Badge::VerifiedPublisher => "verified_publisher",
        Badge::OpenSource => "open_source",
    })
}

impl HubBadges {
    pub(crate) fn new(lookup: Option<Lookup>) -> HubBadges {
        HubBadges { lookup, ..HubBadges::default() }
    }

    /// Where the lookup of `ns` stands; `None` while it is in flight.
    fn state(&self, ns: &str) -> Option<BadgeCheck> {
        match self.entries.lock().ok()?.get(ns) {
            Some(Entry::Known { .. }) => Some(BadgeCheck::Known),
            Some(Entry::InFlight(_)) => None,
            Some(Entry::Failed { .. }) | None => Some(BadgeCheck::Unchecked),
        }
    }

    /// Remembers answers loaded from the database (until they expire).
    pub(crate) fn remember(&self, namespace: &str, until: i64) {
        if let Ok(mut e) = self.entries.lock()
            && !matches!(e.get(namespace), Some(Entry::InFlight(_)))
        {
            e.insert(namespace.to_owned(), Entry::Known { until });
        }
    }
}

impl Iam {
    /// Whether badges are looked up at all.
    pub fn badge_lookups_on(&self) -> bool {
        self.hub.lookup.is_some()
    }

    /// Makes sure the badge of Docker Hub namespace `ns` is known (or being asked), waiting at
    /// most the configured time.
    pub async fn ensure_badge(self: &Arc<Self>, ns: &str) -> BadgeCheck {
        let Some((lookup, cfg, metrics)) = self.hub.lookup.clone() else {
            return BadgeCheck::Known;
        };
        let wait_ms = cfg.wait_ms;
        if self.snapshot().catalog.badges.contains_key(ns) {
            return BadgeCheck::Known;
        }
        let now = self.clock.now();
        let notify = {
            let Ok(mut entries) = self.hub.entries.lock() else { return BadgeCheck::Unchecked };
            match entries.get(ns) {
                Some(Entry::Known { until }) if *until > now => {
                    Metrics::inc(&metrics.badge_hits);
                    return BadgeCheck::Known;
                }
                Some(Entry::Failed { retry_at }) if *retry_at > now => return BadgeCheck::Unchecked,
                Some(Entry::InFlight(n)) => n.clone(),
                _ => {
                    let n = Arc::new(Notify::new());
                    entries.insert(ns.to_owned(), Entry::InFlight(n.clone()));
                    let (iam, ns, n2) = (self.clone(), ns.to_owned(), n.clone());
                    tokio::spawn(async move { iam.look_up(&ns, lookup, cfg, metrics, n2).await });
                    n
                }
            }
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The answer may have come between taking the notifier and enabling it.
        if let Some(c) = self.hub.state(ns) {
            return c;
        }
        let _ = tokio::time::timeout(Duration::from_millis(wait_ms), notified).await;
        self.hub.state(ns).unwrap_or(BadgeCheck::Unchecked)
    }

    /// Asks Docker Hub (or finds another replica's answer), then records and learns it.
    async fn look_up(
        &self,
        ns: &str,
        lookup: Arc<dyn BadgeLookup>,
        cfg: HubLookupConfig,
        metrics: Arc<Metrics>,
        n: Arc<Notify>,
    ) {
        let now = self.clock.now();
        let stored = self
            .meta
            .hub_badges()
            .await
            .ok()
            .and_then(|rows| rows.into_iter().find(|r| r.namespace == ns && r.expires_at > now));
        let outcome = match stored {
            Some(r) => Ok((r.badge, r.expires_at)),
            None => {
                Metrics::inc(&metrics.badge_lookups);
                match lookup.badge(ns).await {
                    Ok(b) => {
                        let ttl = if b.is_some() { cfg.positive_ttl_secs } else { cfg.negative_ttl_secs };
                        let key = badge_key(b).map(str::to_owned);
                        match self.meta.put_hub_badge(ns, key.as_deref(), now + ttl).await {
                            Ok(()) => Ok((key, now + ttl)),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let entry = match outcome {
            Ok((badge, until)) => {
                if badge.is_some()
                    && let Err(e) = self.refresh().await
                {
                    tracing::warn!(namespace = ns, error = %e, "could not reload the policy after a badge lookup");
                }
                Entry::Known { until }
            }
            Err(e) => {
                Metrics::inc(&metrics.badge_failures);
                let first = self.hub.warned.lock().map(|mut w| w.insert(ns.to_owned())).unwrap_or(false);
                if first {
                    tracing::warn!(namespace = ns, error = %e, "Docker Hub badge lookup failed; the namespace counts as community until it is asked again");
                }
                Entry::Failed { retry_at: now + cfg.retry_secs }
            }
        };
        if let Ok(mut entries) = self.hub.entries.lock() {
            entries.insert(ns.to_owned(), entry);
        }
        n.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::audit::Audit;
    use crate::authz::Directory;
    use crate::clock::{Clock, SystemClock};
    use crate::error::{Error, Result};
    use crate::iam::IamOptions;
    use crate::identity::Identity;
    use crate::memory::MemoryMeta;
    use crate::orgs::Orgs;

    /// Docker Hub as the tests need it: counted, slow, and failing for `broken`.
    struct FakeHub {
        calls: AtomicUsize,
        delay_ms: u64,
    }

    #[async_trait]
    impl BadgeLookup for FakeHub {
        async fn badge(&self, namespace: &str) -> Result<Option<Badge>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            match namespace {
                "acmesoft" => Ok(Some(Badge::VerifiedPublisher)),
                "fosslib" => Ok(Some(Badge::OpenSource)),
                "broken" => Err(Error::Unavailable("Docker Hub answered 500".into())),
                _ => Ok(None),
            }
        }
    }

    fn iam_on(meta: Arc<MemoryMeta>, hub: Arc<FakeHub>, wait_ms: u64) -> Arc<Iam> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let audit = Arc::new(Audit::start(meta.clone(), 0, clock.clone()));
        let metrics = Arc::new(Metrics::default());
        let identity =
            Arc::new(Identity::new(meta.clone(), Directory::default(), clock, audit.clone(), metrics.clone()));
        let orgs = Arc::new(Orgs::new(
            meta.clone(),
            identity.clone(),
            audit.clone(),
            false,
            Arc::new(crate::registry::HostedCache::new(0)),
        ));
        let cfg = HubLookupConfig { wait_ms, ..Default::default() };
        let options = IamOptions { badge_lookup: Some((hub, cfg, metrics)), ..IamOptions::default() };
        Arc::new(Iam::new(meta, identity, orgs, audit, options))
    }

    #[tokio::test]
    async fn one_lookup_however_many_ask_and_the_answer_is_learned_and_kept() {
        let meta = Arc::new(MemoryMeta::new());
        let hub = Arc::new(FakeHub { calls: AtomicUsize::new(0), delay_ms: 100 });
        let iam = iam_on(meta.clone(), hub.clone(), 2_000);
        let asks: Vec<_> = (0..10)
            .map(|_| {
                let iam = iam.clone();
                tokio::spawn(async move { iam.ensure_badge("acmesoft").await })
            })
            .collect();
        for a in asks {
            assert_eq!(a.await.unwrap(), BadgeCheck::Known);
        }
        assert_eq!(hub.calls.load(Ordering::SeqCst), 1, "single-flight");
        assert_eq!(iam.snapshot().catalog.badges.get("acmesoft"), Some(&Badge::VerifiedPublisher));
        // no badge: known, not in the catalog (community), not asked again
        assert_eq!(iam.ensure_badge("nobody").await, BadgeCheck::Known);
        assert_eq!(iam.ensure_badge("nobody").await, BadgeCheck::Known);
        assert!(!iam.snapshot().catalog.badges.contains_key("nobody"));
        assert_eq!(hub.calls.load(Ordering::SeqCst), 2);
        // a failure: community, told so, and not asked again before the pause is over
        assert_eq!(iam.ensure_badge("broken").await, BadgeCheck::Unchecked);
        assert_eq!(iam.ensure_badge("broken").await, BadgeCheck::Unchecked);
        assert_eq!(hub.calls.load(Ordering::SeqCst), 3);

        // a restart (another replica alike) knows both answers without asking
        let again = Arc::new(FakeHub { calls: AtomicUsize::new(0), delay_ms: 0 });
        let iam2 = iam_on(meta.clone(), again.clone(), 2_000);
        iam2.refresh().await.unwrap();
        assert_eq!(iam2.snapshot().catalog.badges.get("acmesoft"), Some(&Badge::VerifiedPublisher));
        assert_eq!(iam2.ensure_badge("nobody").await, BadgeCheck::Known);
        assert_eq!(again.calls.load(Ordering::SeqCst), 0);
        // an administrator's override wins over Docker Hub's answer
        let admin = crate::authz::Principal { id: 1, username: "admin".into(), is_admin: true, scope: None };
        iam2.set_publisher(&admin, "acmesoft", Some("none")).await.unwrap();
        assert!(!iam2.snapshot().catalog.badges.contains_key("acmesoft"));
    }

    #[tokio::test]
    async fn a_slow_docker_hub_never_holds_a_pull_longer_than_the_wait() {
        let meta = Arc::new(MemoryMeta::new());
        let hub = Arc::new(FakeHub { calls: AtomicUsize::new(0), delay_ms: 1_500 });
        let iam = iam_on(meta, hub.clone(), 50);
        let t = std::time::Instant::now();
        assert_eq!(iam.ensure_badge("fosslib").await, BadgeCheck::Unchecked, "not in time: community for now");
        assert!(t.elapsed() < Duration::from_millis(1_000), "bounded by the wait, not Docker Hub: {:?}", t.elapsed());
        // the lookup goes on; the next pull after it finished knows the badge
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        assert_eq!(iam.ensure_badge("fosslib").await, BadgeCheck::Known);
        assert_eq!(iam.snapshot().catalog.badges.get("fosslib"), Some(&Badge::OpenSource));
        assert_eq!(hub.calls.load(Ordering::SeqCst), 1);
    }
}
