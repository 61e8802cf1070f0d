//! The public keys of signature rules: PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of ECDSA P-256 or
//! Ed25519, parsed by aws-lc-rs, checked as cosign and containers/image sign a payload — ECDSA
//! (ASN.1 DER) over the payload's SHA-256, Ed25519 over the payload itself.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ED25519, ParsedPublicKey};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest as _, Sha256};

/// Longest PEM accepted for one key (a P-256 or Ed25519 key is under 200 bytes).
const MAX_PEM: usize = 4096;

/// A parsed key and the short id messages name it by.
pub struct PublicKey {
    key: ParsedPublicKey,
    /// `SHA256:` and the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo.
    pub id: String,
}

impl PublicKey {
    /// Parses one PEM public key, or says why it is not one this gateway verifies with.
    pub fn parse(pem: &str) -> Result<PublicKey, String> {
        if pem.len() > MAX_PEM {
            return Err(format!("a public key is at most {MAX_PEM} bytes of PEM"));
        }
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.trim().as_bytes())
            .map_err(|_| "not a PEM public key (-----BEGIN PUBLIC KEY----- ...)".to_owned())?;
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der.as_ref())
            .or_else(|_| ParsedPublicKey::new(&ED25519, der.as_ref()))
            .map_err(|_| "the public key is neither ECDSA P-256 nor Ed25519".to_owned())?;
        Ok(PublicKey { key, id: key_id(der.as_ref()) })
    }

    /// Whether `signature` is this key's signature of `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(payload, signature).is_ok()
    }
}

fn key_id(spki: &[u8]) -> String {
    format!("SHA256:{}", &hex::encode(Sha256::digest(spki))[..16])
}

/// The ids of `pems` for messages (a key that does not parse is named as such).
pub fn ids(pems: &[String]) -> String {
    let ids: Vec<String> =
        pems.iter().map(|p| PublicKey::parse(p).map(|k| k.id).unwrap_or("an invalid key".into())).collect();
    ids.join(" or ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;

    pub const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErpiveZYrL82qE4eLAwiZatqZU79V
cqDbEv/7Bi/zw4xcIVvkNc/fPyE5zK55mTRZKpcHqjWDsJQNznmggWG+Iw==
-----END PUBLIC KEY-----";
    pub const ED25519_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAvexOKhJpZFRd9iHU7dOXVjBGRU/zidYvsYKKyDVezzs=
-----END PUBLIC KEY-----";
    const P384: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEZ+rWqroSjX4q9gQKfnYCZ2Pru7/VLtkR
TgchPDUS/wCxTTUyHIkqcTEguTbcaOCNJNiPUWeiaqjiSgALkjYdONnRCD/EmQ/o
zmuCwClHjiqTRCv3qwv9GNG2X3ZnTIom
-----END PUBLIC KEY-----";
    const RSA: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC4e0u6EMBSUl3LfKFlMIqbklD3
VwWnHCS1PYh0NtdDL9yCucQ75PYlYQWJ2ZP2h/UOp7bVQShonE/l2rJv+CafJKwZ
Wrv6yWyRsXvKe5CdKVq4QKQ0pK8tm2YXAmJ57E1srw4QZInSSUqjBa/Xj7HQ4i9r
dN+QFiQ5jB/QI2k3TQIDAQAB
-----END PUBLIC KEY-----";
    /// `openssl dgst -sha256 -sign` and `openssl pkeyutl -sign -rawin` of `hello payload`.
    const P256_SIG: &str =
        "MEYCIQCgUaSHtUcjdAt44AIOS7mqpzA+ptszyqHHMDrknPEcjAIhAMwaOy6Yei84ePWH0EZDaazbYvY76FUNnd5DJ42M9i4o";
    const ED25519_SIG: &str =
        "Ps/Dr9LFsxceTVHUgJIvTNNQX2erYcwBNLQkNhS2VYivfLuSdVzWEAKPpftLUYLZXzPVJG692Wr/vvNa5TeWDQ==";

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn verifies_what_openssl_signed() {
        let p = PublicKey::parse(P256).unwrap();
        let e = PublicKey::parse(ED25519_KEY).unwrap();
        assert!(p.verifies(b"hello payload", &b64(P256_SIG)));
        assert!(e.verifies(b"hello payload", &b64(ED25519_SIG)));
        assert!(!p.verifies(b"hello payloaD", &b64(P256_SIG)));
        assert!(!e.verifies(b"hello payloaD", &b64(ED25519_SIG)));
        assert!(!p.verifies(b"hello payload", &b64(ED25519_SIG)), "another key's signature");
        assert!(!e.verifies(b"hello payload", &b64(P256_SIG)));
        assert!(!p.verifies(b"hello payload", b""), "empty signature");
        assert!(p.id.starts_with("SHA256:") && p.id.len() == 23 && p.id != e.id);
    }

    #[test]
    fn refuses_other_keys_and_garbage() {
        for (pem, why) in [
            (P384, "neither ECDSA P-256 nor Ed25519"),
            (RSA, "neither ECDSA P-256 nor Ed25519"),
            ("hello", "not a PEM public key"),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "neither"),
            (
                "-----BEGIN CERTIFICATE-----\nMCowBQYDK2VwAyEAvexOKhJpZFRd9iHU7dOXVjBGRU/zidYvsYKKyDVezzs=\n-----END CERTIFICATE-----",
                "not a PEM public key",
            ),
        ] {
            let e = PublicKey::parse(pem).err().unwrap_or_else(|| panic!("{pem} parsed"));
            assert!(e.contains(why), "{e}");
        }
        assert!(PublicKey::parse(&"A".repeat(5000)).err().unwrap().contains("at most"));
    }
}
