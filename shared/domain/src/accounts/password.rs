//! Passwords: the policy (12 to 128 characters, nothing else imposed, as
//! NIST SP 800-63B advises: length over composition rules) and Argon2id
//! hashing with OWASP's first recommended parameter set.
//!
//! Parameters: Argon2id, m = 19 MiB (19456 KiB), t = 2, p = 1. OWASP's
//! Password Storage Cheat Sheet lists this as the baseline. Why it suits a
//! 1 GB Lambda: a 1 GB function has about 0.6 of a vCPU, so p = 1 (more
//! lanes only add threads that share the same core); one hash holds 19 MiB,
//! far below the function's memory even with the dummy hash computed at cold
//! start; and the measured cost (`make bench-auth`) stays in the tens of
//! milliseconds, which keeps a sign-in well under the API's latency budget
//! while making offline guessing expensive. Stored hashes carry their own
//! parameters (PHC string), so raising them later keeps old hashes valid.
//!
//! These functions are CPU-bound: call them on a blocking thread
//! (`tokio::task::spawn_blocking`).

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use std::{fmt, sync::OnceLock};

pub const MIN_CHARS: usize = 12;
pub const MAX_CHARS: usize = 128;
/// OWASP: m = 19 MiB, t = 2, p = 1.
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// A new password that meets the policy. `Debug` prints `***`.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let chars = raw.chars().count();
        if chars < MIN_CHARS {
            return Err("must be at least 12 characters");
        }
        if chars > MAX_CHARS {
            return Err("must be at most 128 characters");
        }
        if raw.trim().is_empty() {
            return Err("must not be blank");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An Argon2id PHC string for `password`, with a fresh random salt.
pub fn hash(password: &NewPassword) -> anyhow::Result<String> {
    hasher()
        .hash_password(password.expose().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// Whether `password` matches `stored`. With no stored hash (unknown
/// e-mail, or no password set yet) it verifies against a dummy hash of the
/// same parameters and answers false, so both cost the same time.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    match stored {
        Some(hash) => hasher().verify_password(password.as_bytes(), hash).is_ok(),
        None => {
            let _ = hasher().verify_password(password.as_bytes(), dummy_hash());
            false
        }
    }
}

/// A hash of a random password, made once per process (call
/// [`warm_up`] at cold start so the first unknown e-mail does not pay twice).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = super::secrets::OpaqueToken::generate();
        hash(&NewPassword(random.expose().to_string())).expect("hashing the dummy password")
    })
}

/// Computes the dummy hash now (blocking; tens of milliseconds).
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_characters_not_bytes() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse(&"a".repeat(11)).is_err());
        assert!(NewPassword::parse(&"a".repeat(12)).is_ok());
        assert!(NewPassword::parse(&"ş".repeat(12)).is_ok());
        assert!(NewPassword::parse(&"a".repeat(128)).is_ok());
        assert!(NewPassword::parse(&"a".repeat(129)).is_err());
        assert!(NewPassword::parse(&" ".repeat(20)).is_err());
        assert_eq!(
            format!("{:?}", NewPassword::parse("correct horse battery").unwrap()),
            "***"
        );
    }

    #[test]
    fn hashes_are_argon2id_with_the_owasp_parameters_and_verify() {
        let pw = NewPassword::parse("correct horse battery staple").unwrap();
        let h = hash(&pw).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery staple", Some(&h)));
        assert!(!verify("correct horse battery stapler", Some(&h)));
        assert!(!verify("correct horse battery staple", None));
        assert!(!verify("anything", Some("not a hash")));
        assert_ne!(h, hash(&pw).unwrap(), "a fresh salt each time");
    }
}
