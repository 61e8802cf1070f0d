//! Sign-ins remembered for a database outage. A sign-in that worked is remembered for
//! [`KEEP_SECS`] by a hash of the name and the secret; while the database cannot be reached (and
//! only then: `Identity::authenticate` asks this when the database's answer is `Unavailable`),
//! the same name with the same secret signs in as it did. Everything is forgotten whenever the
//! directory is reloaded — any change to users, teams or tokens — so an outage can keep a sign-in
//! working but never restore one that a change ended. The database's throttle cannot count
//! failures meanwhile, so an address that misses [`MISSES`] times is not asked about again until
//! the next reload (only that address: no outsider can lock a user out).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::authz::Principal;

/// How long a sign-in is remembered.
pub const KEEP_SECS: i64 = 900;
/// The most sign-ins remembered (expired ones go first when full), and addresses counted.
const MAX: usize = 10_000;
/// Misses from one address after which it is not answered.
pub const MISSES: u32 = 10;

#[derive(Default)]
pub struct Remembered {
    entries: Mutex<HashMap<String, (Principal, i64)>>,
    misses: Mutex<HashMap<String, u32>>,
}

/// The key of a name and secret: a hash, so that no secret is kept.
fn key(username: &str, secret: &str) -> String {
    crate::identity::token_hash(&format!("{username}\0{secret}"))
}

impl Remembered {
    pub fn remember(&self, username: &str, secret: &str, p: &Principal, now: i64) {
        let Ok(mut m) = self.entries.lock() else { return };
        if m.len() >= MAX {
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= MAX {
                return;
            }
        }
        m.insert(key(username, secret), (p.clone(), now + KEEP_SECS));
    }

    /// Who signed in with this name and secret less than [`KEEP_SECS`] ago, unless forgotten,
    /// asked from address `client`.
    pub fn recall(&self, username: &str, secret: &str, client: &str, now: i64) -> Option<Principal> {
        let mut misses = self.misses.lock().ok()?;
        if misses.get(client).is_some_and(|n| *n >= MISSES) {
            return None;
        }
        let found = self.entries.lock().ok()?.get(&key(username, secret)).filter(|(_, until)| *until > now).cloned();
        if found.is_none() && (misses.len() < MAX || misses.contains_key(client)) {
            *misses.entry(client.to_owned()).or_default() += 1;
        }
        found.map(|(p, _)| p)
    }

    pub fn forget_all(&self) {
        if let Ok(mut m) = self.entries.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.misses.lock() {
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal { id: 1, username: "alice".into(), is_admin: false, scope: None }
    }

    #[test]
    fn the_same_secret_only_for_a_while_and_until_forgotten() {
        let r = Remembered::default();
        r.remember("alice", "pw", &alice(), 100);
        assert_eq!(r.recall("alice", "pw", "a", 100 + KEEP_SECS - 1), Some(alice()));
        assert_eq!(r.recall("alice", "other", "a", 101), None, "another secret");
        assert_eq!(r.recall("bob", "pw", "a", 101), None, "another name");
        assert_eq!(r.recall("alice", "pw", "a", 100 + KEEP_SECS), None, "expired");
        r.forget_all();
        assert_eq!(r.recall("alice", "pw", "a", 101), None, "forgotten");
    }

    #[test]
    fn an_address_that_guesses_is_not_answered_and_no_other_is_locked_out() {
        let r = Remembered::default();
        r.remember("alice", "pw", &alice(), 100);
        for i in 0..MISSES {
            assert_eq!(r.recall("alice", &format!("guess{i}"), "attacker", 101), None);
        }
        assert_eq!(r.recall("alice", "pw", "attacker", 101), None, "not answered any more");
        assert_eq!(r.recall("alice", "pw", "alice's laptop", 101), Some(alice()));
    }
}
