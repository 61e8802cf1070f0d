//! Replica catch-up: what services keep in memory (the directory, the policy snapshot, the
//! token keys, hosted manifests and blob links) follows what any replica commits.
//!
//! On PostgreSQL the database announces each commit ([`ClusterStore::changes`]):
//! [`Replica::follow`] drops the hosted content kept in memory or reloads the directory,
//! policy and keys (when the generation — raised by every change to those tables — moved),
//! in commit order, and answers a writer's settle once it has, so a writer answers its client
//! only after every replica took in its change (`ClusterStore::settle`). When announcements may
//! have been missed (a lost connection), everything is dropped and reloaded once they resume;
//! meanwhile the last snapshot is used (the database is unreachable then: see `http::ops`). A
//! process that is its database's only writer (SQLite) updates its memory as it writes; it
//! checks the generation four times a second besides. The admin API, the console and `/token`
//! also catch up before acting. Registry requests never wait on the database for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::error::Result;
use crate::iam::Iam;
use crate::identity::Identity;
use crate::ports::{Change, ClusterStore};
use crate::registry::HostedCache;
use crate::tokens::TokenIssuer;

pub struct Replica {
    store: Arc<dyn ClusterStore>,
    identity: Arc<Identity>,
    iam: Arc<Iam>,
    tokens: Arc<TokenIssuer>,
    hosted: Arc<HostedCache>,
    /// The generation the in-memory state reflects.
    generation: AtomicI64,
    /// Whether the database's announcements are followed without a gap now.
    in_step: AtomicBool,
}

impl Replica {
    /// `generation` is the one read before the in-memory state was first loaded.
    pub fn new(
        store: Arc<dyn ClusterStore>,
        identity: Arc<Identity>,
        iam: Arc<Iam>,
        tokens: Arc<TokenIssuer>,
        hosted: Arc<HostedCache>,
        generation: i64,
    ) -> Replica {
        Replica {
            store,
            identity,
            iam,
            tokens,
            hosted,
            generation: AtomicI64::new(generation),
            in_step: AtomicBool::new(false),
        }
    }

    /// Makes sure the directory, the policy and the token keys are current before acting:
    /// nothing to do while the database's announcements are followed (every writer waits for
    /// them to be taken in), a reload if the database changed since they were loaded otherwise.
    /// While the database cannot be reached there is nothing to load: the last snapshot is
    /// used (for as long as `http::ops` lets requests through).
    pub async fn catch_up(&self) -> Result<()> {
        if self.in_step.load(Ordering::Acquire) || self.store.unreachable().is_some() {
            return Ok(());
        }
        self.reload().await
    }

    /// Reloads the directory, the policy and the token keys when the database changed since
    /// they were loaded.
    async fn reload(&self) -> Result<()> {
        let now = self.store.generation().await?;
        if now == self.generation.load(Ordering::Acquire) {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = self.store.signing_keys().await?.into_iter().map(|k| k.pkcs8).collect();
        self.identity.refresh_directory().await?;
        self.iam.refresh().await?;
        self.tokens.set_keys(&keys)?;
        self.generation.fetch_max(now, Ordering::AcqRel);
        Ok(())
    }

    /// Follows the database's announcements, or — without them — catches up four times a
    /// second, for as long as the task runs.
    pub async fn follow(self: Arc<Self>) {
        let Some(mut changes) = self.store.changes() else {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let _ = self.try_catch_up().await;
            }
        };
        // Whether announcements are received; in step once what was missed is reloaded too.
        let mut listening = false;
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            let change = tokio::select! {
                c = changes.recv() => match c {
                    Some(c) => c,
                    None => return,
                },
                _ = retry.tick() => {
                    if listening && !self.in_step.load(Ordering::Acquire) && self.reload().await.is_ok() {
                        self.in_step.store(true, Ordering::Release);
                    }
                    continue;
                }
            };
            match change {
                Change::Content => self.hosted.invalidate(),
                Change::Directory => {
                    if !self.try_catch_up().await {
                        self.in_step.store(false, Ordering::Release);
                    }
                }
                // (Not in step — a reload failed — this replica lets the writer wait out its
                // bound rather than say it took in what it could not.)
                Change::Settle(token) if self.in_step.load(Ordering::Acquire) => {
                    if let Err(e) = self.store.settled(&token).await {
                        tracing::warn!(error = %e, "cannot tell a writer this replica took in its change");
                    }
                }
                Change::Settle(_) => {}
                Change::Lost => {
                    listening = false;
                    self.in_step.store(false, Ordering::Release);
                }
                Change::Resumed => {
                    listening = true;
                    self.hosted.invalidate();
                    // (Until the reload works, `catch_up` reloads before acting.)
                    if self.reload().await.is_ok() {
                        self.in_step.store(true, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Reloads if the database changed; whether that worked (a failure is logged unless the
    /// database is known to be unreachable).
    async fn try_catch_up(&self) -> bool {
        match self.reload().await {
            Ok(()) => true,
            Err(e) => {
                if self.store.unreachable().is_none() {
                    tracing::warn!(error = %e, "cannot reload after a change");
                }
                false
            }
        }
    }
}
