//! PostgreSQL's change announcements, which keep replicas' memory current: a connection of its
//! own `LISTEN`s to `pcl_changed` (sent by triggers, delivered only when and as transactions
//! commit: migration 18), `pcl_settle` and `pcl_settled`, and hands the changes in commit order
//! to whatever follows [`Announcements::take`] (`portcullis_core::replica`).
//!
//! [`Announcements::settle`] is how a writer knows the others took in its commit before it
//! answers its client: it lists the listening replicas, sends `pcl_settle` (which PostgreSQL
//! delivers to each after the commit's own announcements, being committed later) and waits for
//! each one's `pcl_settled`, which a replica sends once it processed everything before. A
//! replica that does not answer within [`SETTLE_WAIT`] is logged and not waited for again until
//! it answers; a listener that reconnects takes a new name, so its dead predecessor — which
//! PostgreSQL may list for a long while after a partition — is never waited for.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use portcullis_core::error::Result;
use portcullis_core::ports::Change;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, mpsc, watch};

use crate::sql::db;

/// How long a writer waits for the other replicas to take in its change.
pub const SETTLE_WAIT: Duration = Duration::from_secs(1);
/// The `application_name` prefix of listening connections (how a writer finds them).
const LISTENER: &str = "portcullis-listener ";
/// Announcements not yet processed that are held before the listener waits for the follower.
const BACKLOG: usize = 4096;

/// A settle waiting for answers: who answered, and a wake-up for each answer.
struct Waiting {
    answered: HashSet<String>,
    wake: Arc<Notify>,
}

pub(crate) struct Announcements {
    /// This process's id among the listeners.
    id: String,
    /// The current listening connection's name (its `application_name`).
    name: RwLock<String>,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Listeners that did not answer in time (not waited for until they answer).
    laggards: Mutex<HashSet<String>>,
    changes: Mutex<Option<mpsc::Receiver<Change>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Announcements {
    /// Starts listening on connections made with `opts`; `down` says when the health check
    /// finds the server unreachable (the connection is then replaced: a partition leaves it
    /// waiting forever).
    pub fn start(opts: PgConnectOptions, down: watch::Receiver<bool>) -> Arc<Announcements> {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let me = Arc::new(Announcements {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: RwLock::default(),
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
            laggards: Mutex::default(),
            changes: Mutex::new(Some(rx)),
        });
        tokio::spawn(listen(opts, down, Arc::downgrade(&me), tx));
        me
    }

    /// The announcements, once.
    pub fn take(&self) -> Option<mpsc::Receiver<Change>> {
        lock(&self.changes).take()
    }

    /// Waits until every listening replica took in what this one committed before (bounded).
    pub async fn settle(&self, pool: &PgPool) -> Result<()> {
        let token = format!("{}:{}", self.id, self.next.fetch_add(1, Ordering::Relaxed));
        let wake = Arc::new(Notify::new());
        lock(&self.waiting).insert(token.clone(), Waiting { answered: HashSet::new(), wake: wake.clone() });
        let waited = self.wait(pool, &token, &wake).await;
        lock(&self.waiting).remove(&token);
        waited
    }

    async fn wait(&self, pool: &PgPool, token: &str, wake: &Notify) -> Result<()> {
        let listening: Vec<(String,)> = sqlx::query_as(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1",
        )
        .bind(format!("{LISTENER}%"))
        .fetch_all(pool)
        .await
        .map_err(db)?;
        sqlx::query("SELECT pg_notify('pcl_settle', $1)").bind(token).execute(pool).await.map_err(db)?;
        let expected: HashSet<String> = {
            let laggards = lock(&self.laggards);
            listening.into_iter().map(|(n,)| n).filter(|n| !laggards.contains(n)).collect()
        };
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let missing: Vec<String> = {
                let waiting = lock(&self.waiting);
                let answered = waiting.get(token).map(|w| &w.answered);
                expected.iter().filter(|n| answered.is_none_or(|a| !a.contains(*n))).cloned().collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, wake.notified()).await.is_err() {
                tracing::warn!(
                    replicas = ?missing,
                    "replicas did not take in a change within {} ms; not waited for until they answer",
                    SETTLE_WAIT.as_millis()
                );
                lock(&self.laggards).extend(missing);
                return Ok(());
            }
        }
    }

    /// Tells the replica that sent settle `token` that this one took in everything before it.
    pub async fn settled(&self, pool: &PgPool, token: &str) -> Result<()> {
        let name = self.name.read().unwrap_or_else(PoisonError::into_inner).clone();
        sqlx::query("SELECT pg_notify('pcl_settled', $1)")
            .bind(format!("{token} {name}"))
            .execute(pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// An answer to one of this process's settles.
    fn answered(&self, payload: &str) {
        let Some((token, name)) = payload.split_once(' ') else { return };
        lock(&self.laggards).remove(name);
        if let Some(w) = lock(&self.waiting).get_mut(token) {
            w.answered.insert(name.to_owned());
            w.wake.notify_one();
        }
    }
}

/// Listens for as long as the announcements are wanted, on a new connection (with a new name)
/// after each loss, and says when announcements may have been missed and when they resume.
async fn listen(
    opts: PgConnectOptions,
    mut down: watch::Receiver<bool>,
    me: std::sync::Weak<Announcements>,
    tx: mpsc::Sender<Change>,
) {
    for n in 1u64.. {
        let Some(name) = me.upgrade().map(|a| format!("{LISTENER}{} {n}", a.id)) else { return };
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(opts.clone().application_name(&name));
        let connected = tokio::time::timeout(Duration::from_secs(2), async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.eager_reconnect(false);
            l.listen_all(["pcl_changed", "pcl_settle", "pcl_settled"]).await?;
            Ok::<_, sqlx::Error>(l)
        })
        .await;
        let mut listener = match connected {
            Ok(Ok(l)) => l,
            _ => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        match me.upgrade() {
            Some(a) => *a.name.write().unwrap_or_else(PoisonError::into_inner) = name,
            None => return,
        }
        if tx.send(Change::Resumed).await.is_err() {
            return;
        }
        loop {
            let note = tokio::select! {
                r = listener.try_recv() => match r {
                    Ok(Some(note)) => note,
                    _ => break,
                },
                r = down.wait_for(|d| *d) => match r {
                    Ok(_) => break,
                    Err(_) => return,
                },
                // (the store is gone)
                _ = tx.closed() => return,
            };
            let change = match (note.channel(), note.payload()) {
                ("pcl_changed", "content") => Change::Content,
                ("pcl_changed", _) => Change::Directory,
                ("pcl_settle", token) => Change::Settle(token.to_owned()),
                ("pcl_settled", payload) => {
                    match me.upgrade() {
                        Some(a) => a.answered(payload),
                        None => return,
                    }
                    continue;
                }
                _ => continue,
            };
            if tx.send(change).await.is_err() {
                return;
            }
        }
        tracing::warn!("lost the database's change announcements; reconnecting");
        if tx.send(Change::Lost).await.is_err() {
            return;
        }
        drop(listener);
        // Wait for the health check to find the server again before reconnecting.
        if down.wait_for(|d| !*d).await.is_err() {
            return;
        }
    }
}
