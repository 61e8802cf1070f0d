//! The audit log: entries go through a bounded channel to one background writer that appends
//! them in batches (a pull never waits for the single SQLite writer, and a burst of pulls is one
//! transaction), and prunes entries past the retention once an hour. While the database cannot
//! be reached, the writer holds what it could not write (and what arrives meanwhile, up to
//! [`HELD`] entries) and tries again every second, so pulls served through an outage are
//! audited once it ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::authz::Principal;
use crate::clock::Clock;
use crate::error::Result;
use crate::model::{ActivityRow, AuditEntry, AuditQuery};
use crate::ports::AuditStore;

const BATCH: usize = 512;
/// Entries held in memory while the database cannot be reached; later ones are lost (logged).
pub const HELD: usize = 200_000;
/// Tries of a batch the database refuses for another reason than being unreachable.
const TRIES: u32 = 3;

pub struct Audit {
    tx: mpsc::Sender<AuditEntry>,
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
}

impl Audit {
    /// Starts the writer; entries older than `retention_days` are pruned.
    pub fn start(store: Arc<dyn AuditStore>, retention_days: i64, clock: Arc<dyn Clock>) -> Audit {
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(writer(store.clone(), rx, retention_days, clock.clone()));
        Audit { tx, store, clock }
    }

    /// A change by `who` to `org` (or to no org), with details.
    pub async fn change(&self, who: &Principal, org: Option<&str>, action: &str, detail: serde_json::Value) {
        self.record(AuditEntry {
            org: org.map(str::to_owned),
            actor: who.username.clone(),
            action: action.to_owned(),
            detail: Some(detail.to_string()),
            ..Default::default()
        })
        .await;
    }

    /// Records an entry (waits only when the writer is far behind).
    pub async fn record(&self, mut e: AuditEntry) {
        if e.at == 0 {
            e.at = self.clock.now();
        }
        if self.tx.send(e).await.is_err() {
            tracing::error!("audit writer stopped; entry lost");
        }
    }

    /// Every entry, including those tied to no org (instance administrator only).
    pub async fn query_all(&self, who: &Principal, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        if !who.is_admin {
            return Err(crate::Error::Denied("only the instance administrator may read the whole audit log".into()));
        }
        self.store.query_audit(None, q).await
    }

    /// An org's pull counts of the last `days` UTC days (today included), by day, category and
    /// decision; the caller has checked that the reader owns the org.
    pub async fn activity(&self, org: &str, days: i64) -> Result<Vec<ActivityRow>> {
        let since = (self.clock.now() / 86_400 - (days - 1)) * 86_400;
        self.store.audit_activity(org, since).await
    }

    /// An org's entries; the caller has checked that the reader owns the org.
    pub async fn query(&self, org: &str, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.store.query_audit(Some(org), q).await
    }
}

async fn writer(
    store: Arc<dyn AuditStore>,
    mut rx: mpsc::Receiver<AuditEntry>,
    retention_days: i64,
    clock: Arc<dyn Clock>,
) {
    let mut next_prune = 0i64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        // Gather what else is queued, briefly, into the same transaction.
        let deadline = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(deadline);
        while batch.len() < BATCH {
            tokio::select! {
                e = rx.recv() => match e { Some(e) => batch.push(e), None => break },
                _ = &mut deadline => break,
            }
        }
        write(store.as_ref(), &mut batch, &mut rx).await;
        let t = clock.now();
        if retention_days > 0 && t >= next_prune {
            next_prune = t + 3600;
            if let Err(e) = store.prune_audit(t - retention_days * 86_400).await {
                tracing::error!(error = %e, "cannot prune the audit log");
            }
        }
    }
}

/// Appends `batch` (emptied), holding it and what arrives meanwhile while the database cannot
/// be reached.
async fn write(store: &dyn AuditStore, batch: &mut Vec<AuditEntry>, rx: &mut mpsc::Receiver<AuditEntry>) {
    let (mut failures, mut lost) = (0u32, 0u64);
    loop {
        let e = match store.append_audit(batch).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::warn!(
                        written = batch.len(),
                        lost,
                        "audit entries held through a database failure were written"
                    );
                }
                break;
            }
            Err(e) => e,
        };
        let unreachable = matches!(e, crate::Error::Unavailable(_));
        failures += 1;
        if !unreachable && failures >= TRIES {
            tracing::error!(error = %e, lost = batch.len(), "cannot write audit entries");
            break;
        }
        if failures == 1 {
            tracing::error!(error = %e, held = batch.len(), "cannot write audit entries; holding them to try again");
        }
        let pause = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) if batch.len() < HELD => batch.push(e),
                    Some(_) => lost += 1,
                    None => break,
                },
                _ = &mut pause => break,
            }
        }
    }
    batch.clear();
}
