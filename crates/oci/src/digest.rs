//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`), strictly lower-case hex, and the
//! [`Hasher`] that computes them incrementally (its running state can be saved and restored).

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest. Display and the canonical string form are `algo:hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDigest;

impl Digest {
    /// Builds a digest from an algorithm and raw hash bytes.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push(HEX[(b >> 4) as usize] as char);
            hex.push(HEX[(b & 15) as usize] as char);
        }
        Digest { algorithm, hex }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lower-case hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algo, hex) = s.split_once(':').ok_or(InvalidDigest)?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(InvalidDigest),
        };
        let valid_hex =
            hex.len() == algorithm.hex_len() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_hex {
            return Err(InvalidDigest);
        }
        Ok(Digest { algorithm, hex: hex.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom("invalid digest"))
    }
}

/// A running digest computation.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Hasher {
        match a {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        }
    }

    /// The running state: one byte naming the algorithm, then the hasher's serialized state.
    pub fn save(&self) -> Vec<u8> {
        let (tag, state) = match self {
            Hasher::Sha256(h) => (1u8, h.serialize().to_vec()),
            Hasher::Sha512(h) => (2u8, h.serialize().to_vec()),
        };
        let mut out = Vec::with_capacity(1 + state.len());
        out.push(tag);
        out.extend_from_slice(&state);
        out
    }

    /// The hasher `save` wrote; `None` for anything else.
    pub fn restore(saved: &[u8]) -> Option<Hasher> {
        let (tag, state) = saved.split_first()?;
        match tag {
            1 => Sha256::deserialize(state.try_into().ok()?).ok().map(Hasher::Sha256),
            2 => Sha512::deserialize(state.try_into().ok()?).ok().map(Hasher::Sha512),
            _ => None,
        }
    }

    /// Digest of a byte slice.
    pub fn digest(a: Algorithm, b: &[u8]) -> Digest {
        let mut h = Hasher::new(a);
        h.update(b);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_valid_digests() {
        let d: Digest = format!("sha256:{H256}").parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), format!("sha256:{H256}"));
        let h512 = "a".repeat(128);
        let d: Digest = format!("sha512:{h512}").parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn rejects_invalid_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            &format!("sha256:{}", H256.to_uppercase()),
            &format!("sha256:{}", &H256[1..]),
            &format!("sha256:{H256}0"),
            &format!("md5:{H256}"),
            &format!("SHA256:{H256}"),
            &format!("sha512:{H256}"),
            &format!("sha256:{}g", &H256[1..]),
            &format!(" sha256:{H256}"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn from_bytes_matches_parse() {
        let d = Digest::from_bytes(Algorithm::Sha256, &[0xab; 32]);
        assert_eq!(d, d.to_string().parse().unwrap());
    }
    #[test]
    fn a_saved_hasher_continues_where_it_stopped() {
        for algo in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = Hasher::new(algo);
            h.update(&[7u8; 100]); // not a whole block: the buffer is part of the state
            let mut restored = Hasher::restore(&h.save()).expect("restores");
            restored.update(b"rest");
            let mut whole = vec![7u8; 100];
            whole.extend_from_slice(b"rest");
            assert_eq!(restored.finish(), Hasher::digest(algo, &whole));
        }
        assert!(Hasher::restore(&[]).is_none());
        assert!(Hasher::restore(&[1, 2, 3]).is_none(), "a truncated state is refused");
        assert!(Hasher::restore(&[9; 41]).is_none(), "an unknown algorithm is refused");
    }
}
