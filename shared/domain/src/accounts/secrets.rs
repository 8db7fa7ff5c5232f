//! Opaque secrets handed to a person or a browser (refresh tokens,
//! set-password links): 32 random bytes from the OS, base64url without
//! padding (43 characters). Only their SHA-256 (hex) is stored; lookups go
//! by that hash, so no comparison of the secret itself ever runs.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use sha2::{Digest, Sha256};
use std::fmt;

const BYTES: usize = 32;
const ENCODED_LEN: usize = 43;

/// A freshly generated or presented opaque token. `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken(String);

impl OpaqueToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator is available");
        Self(B64.encode(bytes))
    }

    /// A presented token, if it has the shape of one (else it cannot match any).
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (raw.len() == ENCODED_LEN && B64.decode(raw).is_ok_and(|b| b.len() == BYTES))
            .then(|| Self(raw.to_string()))
    }

    /// The value to hand out (a cookie, a URL). Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks up: SHA-256, lower-case hex.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(***)")
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_43_base64url_characters_and_differ() {
        let a = OpaqueToken::generate();
        let b = OpaqueToken::generate();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert_eq!(OpaqueToken::parse(a.expose()), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "OpaqueToken(***)");
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), a.expose());
    }

    #[test]
    fn malformed_tokens_are_not_parsed() {
        for raw in ["", "short", &"a".repeat(44), &"!".repeat(43)] {
            assert_eq!(OpaqueToken::parse(raw), None, "{raw}");
        }
    }

    #[test]
    fn sha256_matches_the_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
