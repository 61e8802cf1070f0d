//! `ClusterStore` of the in-memory adapter (as `store/src/sql/cluster.rs` is of the SQL ones).

use super::*;

#[async_trait]
impl ClusterStore for MemoryMeta {
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        self.with(|s| match s.leases.get(name) {
            Some((h, exp)) if *exp > now && h != holder => Ok(false),
            _ => {
                s.leases.insert(name.into(), (holder.into(), now + ttl));
                Ok(true)
            }
        })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.with(|s| {
            if s.leases.get(name).is_some_and(|(h, _)| h == holder) {
                s.leases.remove(name);
            }
            Ok(())
        })
    }

    async fn release_node_leases(&self, node: &str, holder: &str) -> Result<u64> {
        let prefix = format!("{node}/");
        self.with(|s| {
            let before = s.leases.len();
            s.leases.retain(|_, (h, _)| !h.starts_with(&prefix) || h == holder);
            Ok((before - s.leases.len()) as u64)
        })
    }

    fn unreachable(&self) -> Option<Outage> {
        None
    }

    async fn generation(&self) -> Result<i64> {
        self.with(|s| Ok(s.generation))
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        self.with(|s| {
            let mut v = s.keys.clone();
            v.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0)));
            Ok(v.into_iter().map(|(kid, pkcs8, _)| SigningKeyRow { kid, pkcs8 }).collect())
        })
    }

    async fn add_signing_key(&self, kid: &str, pkcs8: &[u8], now: i64) -> Result<()> {
        self.with(|s| {
            if !s.keys.iter().any(|(k, _, _)| k == kid) {
                s.keys.push((kid.into(), pkcs8.to_vec(), now));
                s.changed();
            }
            Ok(())
        })
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
