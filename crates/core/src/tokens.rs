//! Docker registry bearer tokens: JWTs signed with Ed25519 (`EdDSA`), carrying `iss`, `sub`,
//! `aud`, `exp`, `nbf`, `iat`, `jti`, `kid` and the granted `access`. A token proves who the
//! caller is and which actions they asked for and were granted at issue time; the registry
//! still checks the current permissions on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// One `access` entry: `{"type":"repository","name":"acme/app","actions":["pull"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceAccess>,
}

impl Claims {
    /// True when the token grants `action` on repository `name`.
    pub fn grants(&self, name: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|a| a.kind == "repository" && a.name == name && a.actions.iter().any(|x| x == action || x == "*"))
    }

    /// True when the token grants the catalog scope `registry:catalog:*`.
    pub fn grants_catalog(&self) -> bool {
        self.access.iter().any(|a| a.kind == "registry" && a.name == "catalog")
    }
}

/// A requested scope `type:name:actions`. The name may itself contain `:` (a host with a port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Parses one scope string; `None` when malformed.
pub fn parse_scope(s: &str) -> Option<ScopeRequest> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let actions = actions.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect();
    Some(ScopeRequest { kind: kind.to_owned(), name: name.to_owned(), actions })
}

/// Creates a new Ed25519 private key in PKCS#8 DER.
pub fn generate_signing_key() -> Result<Vec<u8>> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| Error::storage_from("cannot generate signing key", e))
}

/// The key id of an Ed25519 private key (PKCS#8): 12 bytes of its public key's SHA-256, hex.
pub fn key_id(pkcs8: &[u8]) -> Result<String> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| Error::storage_from("invalid signing key", e))?;
    Ok(hex::encode(&Sha256::digest(pair.public_key().as_ref())[..12]))
}

/// The signing key and every key tokens may be verified with, by key id.
struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
}

fn keys(pkcs8s: &[Vec<u8>]) -> Result<Keys> {
    let first = pkcs8s.first().ok_or_else(|| Error::storage("no token signing key"))?;
    let mut decoding = HashMap::new();
    for k in pkcs8s {
        let pair = Ed25519KeyPair::from_pkcs8(k).map_err(|e| Error::storage_from("invalid signing key", e))?;
        decoding.insert(key_id(k)?, DecodingKey::from_ed_der(pair.public_key().as_ref()));
    }
    Ok(Keys { kid: key_id(first)?, encoding: EncodingKey::from_ed_der(first), decoding })
}

/// Issues tokens with the newest key and verifies them with any known key, so that replicas
/// sharing keys accept each other's tokens and a rotated key's tokens stay valid.
pub struct TokenIssuer {
    keys: std::sync::RwLock<Arc<Keys>>,
    issuer: String,
    service: String,
    ttl_secs: i64,
    verified: Mutex<HashMap<String, Arc<Claims>>>,
}

impl TokenIssuer {
    /// `pkcs8s` are Ed25519 private keys, newest (the signing key) first; `service` is the token
    /// audience and the challenge's `service`; tokens live `ttl_secs`.
    pub fn new(pkcs8s: &[Vec<u8>], issuer: &str, service: &str, ttl_secs: i64) -> Result<TokenIssuer> {
        Ok(TokenIssuer {
            keys: std::sync::RwLock::new(Arc::new(keys(pkcs8s)?)),
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            ttl_secs,
            verified: Mutex::default(),
        })
    }

    /// Replaces the key set (after a rotation, possibly on another replica).
    pub fn set_keys(&self, pkcs8s: &[Vec<u8>]) -> Result<()> {
        let k = Arc::new(keys(pkcs8s)?);
        if let Ok(mut g) = self.keys.write() {
            *g = k;
        }
        Ok(())
    }

    fn current(&self) -> Result<Arc<Keys>> {
        self.keys.read().map(|g| g.clone()).map_err(|_| Error::storage("token keys poisoned"))
    }

    /// The id of the signing key.
    pub fn kid(&self) -> String {
        self.current().map(|k| k.kid.clone()).unwrap_or_default()
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Signs a token for `subject` (empty for anonymous) with the granted `access`.
    pub fn issue(&self, subject: &str, access: Vec<ResourceAccess>, now: i64) -> Result<String> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now + self.ttl_secs,
            nbf: now - 1,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let keys = self.current()?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        jsonwebtoken::encode(&header, &claims, &keys.encoding).map_err(|e| Error::storage_from("cannot sign token", e))
    }

    /// Verifies signature, key id, algorithm, issuer, audience and time; caches good tokens.
    /// Seals `value` for `audience` (such as the console's sign-in state on its way through an
    /// identity provider): a JWT signed like registry tokens but with its own audience, so that
    /// it can never pass as one; valid `ttl_secs`. Signed, not encrypted.
    pub fn seal<T: Serialize>(&self, audience: &str, value: &T, now: i64, ttl_secs: i64) -> Result<String> {
        let keys = self.current()?;
        let claims = serde_json::json!({
            "iss": self.issuer, "aud": audience, "sub": "", "iat": now, "nbf": now, "exp": now + ttl_secs,
            "data": value,
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        jsonwebtoken::encode(&header, &claims, &keys.encoding).map_err(|e| Error::storage_from("", e))
    }

    /// The value [`TokenIssuer::seal`] sealed for `audience`, if the seal is intact and fresh.
    pub fn unseal<T: serde::de::DeserializeOwned>(&self, audience: &str, sealed: &str, now: i64) -> Result<T> {
        let bad = |why: &str| Error::Unauthenticated(format!("invalid or expired sign-in state: {why}"));
        let header = jsonwebtoken::decode_header(sealed).map_err(|_| bad("malformed"))?;
        let keys = self.current()?;
        let key = match header.kid.as_deref().and_then(|k| keys.decoding.get(k)) {
            Some(k) if header.alg == Algorithm::EdDSA => k,
            _ => return Err(bad("unknown key or algorithm")),
        };
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[audience]);
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        // expiry against the injected clock, below
        v.validate_exp = false;
        #[derive(Deserialize)]
        struct Sealed<T> {
            exp: i64,
            data: T,
        }
        let data = jsonwebtoken::decode::<Sealed<T>>(sealed, key, &v).map_err(|e| bad(&e.to_string()))?;
        if data.claims.exp <= now {
            return Err(bad("expired"));
        }
        Ok(data.claims.data)
    }

    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>> {
        let bad = |why: &str| Error::Unauthenticated(format!("invalid token: {why}"));
        if let Some(c) = self.verified.lock().ok().and_then(|m| m.get(token).cloned()) {
            return if c.exp > now && c.nbf <= now + 60 { Ok(c) } else { Err(bad("expired")) };
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        let keys = self.current()?;
        let key = match header.kid.as_deref().and_then(|k| keys.decoding.get(k)) {
            Some(k) if header.alg == Algorithm::EdDSA => k,
            _ => return Err(bad("unknown key or algorithm")),
        };
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[&self.service]);
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| bad(&e.to_string()))?;
        if data.claims.exp <= now {
            return Err(bad("expired"));
        }
        let claims = Arc::new(data.claims);
        if let Ok(mut m) = self.verified.lock() {
            if m.len() > 50_000 {
                m.retain(|_, c| c.exp > now);
            }
            m.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn sealed_values_open_only_for_their_audience_intact_and_fresh() {
        let t = issuer();
        let sealed = t.seal("oidc-state", &("state", 7), 1000, 600).unwrap();
        assert_eq!(t.unseal::<(String, i32)>("oidc-state", &sealed, 1500).unwrap(), ("state".into(), 7));
        assert!(t.unseal::<(String, i32)>("other", &sealed, 1500).is_err(), "another audience");
        assert!(t.unseal::<(String, i32)>("oidc-state", &sealed, 1600).is_err(), "expired");
        assert!(t.verify(&sealed, 1500).is_err(), "never a registry token");
        let mut forged = sealed.clone().into_bytes();
        let n = forged.len() - 5;
        forged[n] = if forged[n] == b'A' { b'B' } else { b'A' };
        assert!(t.unseal::<(String, i32)>("oidc-state", &String::from_utf8(forged).unwrap(), 1500).is_err());
    }

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&[generate_signing_key().unwrap()], "portcullis", "registry", 300).unwrap()
    }

    fn acc(name: &str, a: &[&str]) -> Vec<ResourceAccess> {
        vec![ResourceAccess {
            kind: "repository".into(),
            name: name.into(),
            actions: a.iter().map(|s| s.to_string()).collect(),
        }]
    }

    #[test]
    fn issue_and_verify() {
        let t = issuer();
        let now = crate::clock::system_now();
        let jwt = t.issue("alice", acc("acme/app", &["pull"]), now).unwrap();
        let c = t.verify(&jwt, now).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.grants("acme/app", "pull"));
        assert!(!c.grants("acme/app", "push"));
        assert!(!c.grants("acme/other", "pull"));
        assert!(t.verify(&jwt, now + 301).is_err(), "expired, even from cache");
    }

    #[test]
    fn rejects_forgeries() {
        let t = issuer();
        let other = issuer();
        let now = crate::clock::system_now();
        let foreign = other.issue("alice", acc("acme/app", &["push"]), now).unwrap();
        assert!(t.verify(&foreign, now).is_err(), "other key");
        // alg=none with our kid
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, t.kid()));
        let body = b64.encode(r#"{"iss":"portcullis","sub":"admin","aud":"registry","exp":9999999999,"nbf":0,"iat":0,"jti":"x","access":[]}"#);
        assert!(t.verify(&format!("{header}.{body}."), now).is_err(), "alg none");
        // tampered payload keeps the signature
        let good = t.issue("bob", acc("acme/app", &["pull"]), now).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let evil = b64.encode(format!(r#"{{"iss":"portcullis","sub":"bob","aud":"registry","exp":{},"nbf":0,"iat":0,"jti":"x","access":[{{"type":"repository","name":"acme/app","actions":["push"]}}]}}"#, now + 100));
        assert!(t.verify(&format!("{}.{}.{}", parts[0], evil, parts[2]), now).is_err(), "tampered");
        assert!(t.verify("garbage", now).is_err());
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_replicas_agree() {
        let (old, new) = (generate_signing_key().unwrap(), generate_signing_key().unwrap());
        let a = TokenIssuer::new(std::slice::from_ref(&old), "portcullis", "registry", 300).unwrap();
        let now = crate::clock::system_now();
        let before = a.issue("alice", acc("acme/app", &["pull"]), now).unwrap();
        a.set_keys(&[new.clone(), old.clone()]).unwrap();
        let after = a.issue("alice", acc("acme/app", &["pull"]), now).unwrap();
        assert_eq!(a.kid(), key_id(&new).unwrap(), "the newest key signs");
        // another replica with the same keys accepts both; one without the new key refuses it
        let b = TokenIssuer::new(&[new, old.clone()], "portcullis", "registry", 300).unwrap();
        assert!(b.verify(&before, now).is_ok() && b.verify(&after, now).is_ok());
        let stale = TokenIssuer::new(&[old], "portcullis", "registry", 300).unwrap();
        assert!(stale.verify(&after, now).is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scope("repository:acme/app:pull,push"),
            Some(ScopeRequest {
                kind: "repository".into(),
                name: "acme/app".into(),
                actions: vec!["pull".into(), "push".into()]
            })
        );
        assert_eq!(parse_scope("repository:localhost:5000/x:pull").unwrap().name, "localhost:5000/x");
        assert_eq!(parse_scope("registry:catalog:*").unwrap().kind, "registry");
        assert_eq!(parse_scope("nonsense"), None);
        assert_eq!(parse_scope("repository::pull"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, failure_persistence: None, ..Default::default() })]

        /// Fuzzing the verifier: arbitrary text, JWT-shaped triples with any header (our kid,
        /// `none`, HMAC, RSA) and any payload, and a real token with one character changed are all
        /// refused without a panic; so is every scope the token endpoint may be asked for.
        #[test]
        fn verify_refuses_everything_it_did_not_sign(
            junk in "\\PC{0,300}",
            alg in "(none|None|HS256|RS256|EdDSA|ES256|)",
            payload in "\\PC{0,200}",
            sig in "[A-Za-z0-9_-]{0,90}",
            flip in 0usize..400,
        ) {
            let t = issuer();
            let now = crate::clock::system_now();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            proptest::prop_assert!(t.verify(&junk, now).is_err());
            let header = b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#, t.kid()));
            let forged = format!("{header}.{}.{sig}", b64.encode(&payload));
            proptest::prop_assert!(t.verify(&forged, now).is_err());
            let good = t.issue("bob", acc("acme/app", &["pull"]), now).unwrap();
            let i = flip % good.len();
            let mut bytes = good.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            // base64's last character of a part may carry spare bits: a change there can decode
            // to the same bytes, which is no forgery
            let spare_bits = i == good.len() - 1 || good[i + 1..].starts_with('.');
            proptest::prop_assert!(changed == good || spare_bits || t.verify(&changed, now).is_err(), "changed at {i}");
            let _ = parse_scope(&junk);
        }
    }
}
