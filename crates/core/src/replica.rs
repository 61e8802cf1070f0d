//! Replica catch-up: what services keep in memory (the directory, the policy snapshot, the
//! token keys) is reloaded when the database's generation — raised by every change to those
//! tables, through any replica — has moved since it was loaded. A background task asks four
//! times a second ([`Replica::follow`]); the admin API, the console and `/token` ask before
//! acting, so a replica reads its own and the others' writes. Registry requests never wait on
//! the database for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::error::Result;
use crate::iam::Iam;
use crate::identity::Identity;
use crate::ports::ClusterStore;
use crate::tokens::TokenIssuer;

pub struct Replica {
    store: Arc<dyn ClusterStore>,
    identity: Arc<Identity>,
    iam: Arc<Iam>,
    tokens: Arc<TokenIssuer>,
    /// The generation the in-memory state reflects.
    generation: AtomicI64,
}

impl Replica {
    /// `generation` is the one read before the in-memory state was first loaded.
    pub fn new(
        store: Arc<dyn ClusterStore>,
        identity: Arc<Identity>,
        iam: Arc<Iam>,
        tokens: Arc<TokenIssuer>,
        generation: i64,
    ) -> Replica {
        Replica { store, identity, iam, tokens, generation: AtomicI64::new(generation) }
    }

    /// Reloads the directory, the policy and the token keys when the database changed since
    /// they were loaded.
    pub async fn catch_up(&self) -> Result<()> {
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

    /// Catches up four times a second, for as long as the task runs.
    pub async fn follow(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "cannot reload after a change");
            }
        }
    }
}
