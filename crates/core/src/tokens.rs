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
        .map_err(|e| Error::Storage(format!("cannot generate signing key: {e}")))
}

/// Issues and verifies tokens with one key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    issuer: String,
    service: String,
    ttl_secs: i64,
    verified: Mutex<HashMap<String, Arc<Claims>>>,
}

impl TokenIssuer {
    /// `pkcs8` is an Ed25519 private key; `service` is the token audience and the challenge's
    /// `service`; tokens live `ttl_secs`.
    pub fn new(pkcs8: &[u8], issuer: &str, service: &str, ttl_secs: i64) -> Result<TokenIssuer> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| Error::Storage(format!("invalid signing key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = hex::encode(&Sha256::digest(&public)[..12]);
        Ok(TokenIssuer {
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(&public),
            kid,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            ttl_secs,
            verified: Mutex::default(),
        })
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
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Storage(format!("cannot sign token: {e}")))
    }

    /// Verifies signature, key id, algorithm, issuer, audience and time; caches good tokens.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>> {
        let bad = |why: &str| Error::Unauthenticated(format!("invalid token: {why}"));
        if let Some(c) = self.verified.lock().ok().and_then(|m| m.get(token).cloned()) {
            return if c.exp > now && c.nbf <= now + 60 { Ok(c) } else { Err(bad("expired")) };
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(bad("unknown key or algorithm"));
        }
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[&self.service]);
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| bad(&e.to_string()))?;
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

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&generate_signing_key().unwrap(), "portcullis", "registry", 300).unwrap()
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
        let now = crate::now();
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
        let now = crate::now();
        let foreign = other.issue("alice", acc("acme/app", &["push"]), now).unwrap();
        assert!(t.verify(&foreign, now).is_err(), "other key");
        // alg=none with our kid
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, t.kid));
        let body = b64.encode(r#"{"iss":"portcullis","sub":"admin","aud":"registry","exp":9999999999,"nbf":0,"iat":0,"jti":"x","access":[]}"#);
        assert!(t.verify(&format!("{header}.{body}."), now).is_err(), "alg none");
        // tampered payload keeps the signature
        let good = t.issue("bob", acc("acme/app", &["pull"]), now).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let evil = b64.encode(format!(r#"{{"iss":"portcullis","sub":"bob","aud":"registry","exp":{},"nbf":0,"iat":0,"jti":"x","access":[{{"type":"repository","name":"acme/app","actions":["push"]}}]}}"#, now + 100));
        assert!(t.verify(&format!("{}.{}.{}", parts[0], evil, parts[2]), now).is_err(), "tampered");
        assert!(t.verify("garbage", now).is_err());
        let wrong_aud = TokenIssuer::new(&generate_signing_key().unwrap(), "portcullis", "other", 300).unwrap();
        let _ = wrong_aud;
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
}
