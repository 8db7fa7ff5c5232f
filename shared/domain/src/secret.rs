//! A configured secret: never printed, compared only in constant time.

use std::fmt;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Empty secrets are refused: an empty HMAC key or shared header would accept anything signed with "".
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        (!value.is_empty()).then_some(Self(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let s = Secret::new("hunter2").unwrap();
        assert_eq!(format!("{s:?}"), "***");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
    }

    #[test]
    fn empty_secret_is_refused() {
        assert!(Secret::new("").is_none());
    }
}
