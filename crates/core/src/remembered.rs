//! Sign-ins remembered for a database outage. A sign-in that worked is remembered for
//! [`KEEP_SECS`] by a hash of the name and the secret; while the database cannot be reached (and
//! only then: `Identity::authenticate` asks this when the database's answer is `Unavailable`),
//! the same name with the same secret signs in as it did. Everything is forgotten whenever the
//! directory is reloaded — any change to users, teams or tokens — so an outage can keep a sign-in
//! working but never restore one that a change ended.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::authz::Principal;

/// How long a sign-in is remembered.
pub const KEEP_SECS: i64 = 900;
/// The most sign-ins remembered (expired ones go first when full).
const MAX: usize = 10_000;

#[derive(Default)]
pub struct Remembered {
    entries: Mutex<HashMap<String, (Principal, i64)>>,
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

    /// Who signed in with this name and secret less than [`KEEP_SECS`] ago, unless forgotten.
    pub fn recall(&self, username: &str, secret: &str, now: i64) -> Option<Principal> {
        let m = self.entries.lock().ok()?;
        m.get(&key(username, secret)).filter(|(_, until)| *until > now).map(|(p, _)| p.clone())
    }

    pub fn forget_all(&self) {
        if let Ok(mut m) = self.entries.lock() {
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
        assert_eq!(r.recall("alice", "pw", 100 + KEEP_SECS - 1), Some(alice()));
        assert_eq!(r.recall("alice", "other", 101), None, "another secret");
        assert_eq!(r.recall("bob", "pw", 101), None, "another name");
        assert_eq!(r.recall("alice", "pw", 100 + KEEP_SECS), None, "expired");
        r.forget_all();
        assert_eq!(r.recall("alice", "pw", 101), None, "forgotten");
    }
}
