//! What replicas share (`ClusterStore`): leases, the generation they follow (raised by
//! triggers), token signing keys, the reachability check, and the announcements of changes
//! (the adapter's own: PostgreSQL's `announce.rs`, none on SQLite).

macro_rules! cluster_sql {
    ($store:ident, $db:ty) => {
        measured_impl!(portcullis_core::ports::ClusterStore, $store, {
            async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3 + $4) ON CONFLICT (name) DO UPDATE \
                     SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.expires_at <= $3 OR leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(now)
                .bind(ttl)
                .execute(&self.write)
                .await
                .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn release_node_leases(&self, node: &str, holder: &str) -> Result<u64> {
                let prefix = format!("{node}/");
                let r = sqlx::query("DELETE FROM leases WHERE substr(holder, 1, $1) = $2 AND holder <> $3")
                    .bind(prefix.chars().count() as i32)
                    .bind(&prefix)
                    .bind(holder)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn generation(&self) -> Result<i64> {
                let (v,): (i64,) = sqlx::query_as("SELECT value FROM generation WHERE id = 1")
                    .fetch_one(&self.read)
                    .await
                    .map_err(db)?;
                Ok(v)
            }

            async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
                let r: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT kid, pkcs8 FROM signing_keys ORDER BY created_at DESC, kid DESC")
                    .fetch_all(&self.read)
                    .await
                    .map_err(db)?;
                Ok(r.into_iter().map(|(kid, pkcs8)| SigningKeyRow { kid, pkcs8 }).collect())
            }

            async fn add_signing_key(&self, kid: &str, pkcs8: &[u8], now: i64) -> Result<()> {
                sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING")
                    .bind(kid)
                    .bind(pkcs8)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn settle(&self) -> Result<()> {
                self.settle_writes().await
            }

            async fn settled(&self, token: &str) -> Result<()> {
                self.answer_settle(token).await
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.read).await.map_err(db)?;
                Ok(())
            }

            fn unreachable(&self) -> Option<portcullis_core::ports::Outage> {
                self.unreachable_now()
            }

            fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<portcullis_core::ports::Change>> {
                self.take_changes()
            }
        });
    };
}
