//! Value types that raw input becomes at the edge. Each has a private field
//! and one fallible constructor, so a domain function holding one knows it
//! is valid.

use email_address::Options;
use sha2::{Digest, Sha256};
use std::{fmt, str::FromStr};

/// A mailbox address, trimmed and lower-cased (the CRM's identity for a person by e-mail).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is required");
        }
        if trimmed.len() > 254 {
            return Err("is longer than 254 characters");
        }
        let options = Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        email_address::EmailAddress::parse_with_options(trimmed, options)
            .map_err(|_| "is not a valid e-mail address")?;
        Ok(Self(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`, for a display name when nothing better is known.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key under which an inbound event is processed at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty");
        }
        if trimmed.len() > Self::MAX_LEN {
            return Err("is longer than 255 characters");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("contains control characters");
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IdempotencyKey {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// SHA-256 of a payload's canonical JSON (keys sorted, no whitespace), so a
/// re-serialised retry of the same event still counts as the same body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadHash(String);

impl PayloadHash {
    pub fn of_json(value: &serde_json::Value) -> Self {
        // serde_json's map is a BTreeMap here (no `preserve_order`), so this is canonical.
        let canonical = serde_json::to_vec(value).expect("a Value always serialises");
        Self::of_bytes(&canonical)
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let e = EmailAddress::parse("  John.Doe@Acme.COM ").unwrap();
        assert_eq!(e.as_str(), "john.doe@acme.com");
        assert_eq!(e.local_part(), "john.doe");
    }

    #[test]
    fn email_with_display_name_or_without_tld_is_rejected() {
        assert!(EmailAddress::parse("John <john@acme.com>").is_err());
        assert!(EmailAddress::parse("john@localhost").is_err());
        assert!(EmailAddress::parse("john@[127.0.0.1]").is_err());
        assert!(EmailAddress::parse("not-an-email").is_err());
        assert_eq!(EmailAddress::parse("   "), Err("is required"));
    }

    #[test]
    fn idempotency_key_rejects_empty_long_and_control_characters() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("a\nb").is_err());
        assert_eq!(IdempotencyKey::parse(" abc ").unwrap().as_str(), "abc");
    }

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1, "b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "b":[1,2],"a":1 }"#).unwrap();
        assert_eq!(PayloadHash::of_json(&a), PayloadHash::of_json(&b));
        assert_eq!(PayloadHash::of_json(&a).as_str().len(), 64);
    }

    proptest! {
        #[test]
        fn parsed_email_is_always_lowercase_and_trimmed(local in "[a-zA-Z0-9._%+-]{1,30}", domain in "[a-zA-Z0-9-]{1,20}", tld in "[a-zA-Z]{2,6}") {
            if let Ok(e) = EmailAddress::parse(&format!(" {local}@{domain}.{tld} ")) {
                prop_assert_eq!(e.as_str(), e.as_str().trim().to_lowercase());
            }
        }

        #[test]
        fn idempotency_key_never_panics_and_roundtrips(raw in "\\PC{0,300}") {
            if let Ok(k) = IdempotencyKey::parse(&raw) {
                prop_assert!(k.as_str().len() <= 255);
                prop_assert_eq!(IdempotencyKey::parse(k.as_str()).unwrap(), k.clone());
            }
        }
    }
}
