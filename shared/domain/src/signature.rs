//! Authenticity checks on raw request bytes, before any parsing.
//!
//! A check that passes yields `Verified<T>`; its field is private and the
//! only constructors are the verifiers here, so a flow that takes a
//! `Verified<..>` cannot be reached with an unchecked body.

use crate::secret::Secret;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Proof that `T` passed an authenticity check (or the development bypass).
#[derive(Debug)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
    pub fn get(&self) -> &T {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing signature")]
    Missing,
    #[error("invalid signature")]
    Invalid,
}

/// How an inbound webhook source is authenticated.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// Shared secret: HMAC key and/or static header value.
    Secret(Secret),
    /// Development only: accepts anything. `crm-platform` refuses it when `APP_ENV=production`.
    Bypass,
}

impl Verifier {
    /// Instantly cannot sign; it can only send static headers. Accept either
    /// an HMAC-SHA256 of the raw body in `X-Signature` (hex, optional
    /// `sha256=` prefix, as a signing relay such as n8n sends) or the shared
    /// secret itself in `X-Webhook-Secret`.
    pub fn verify_instantly<'b>(
        &self,
        body: &'b [u8],
        x_signature: Option<&str>,
        x_webhook_secret: Option<&str>,
    ) -> Result<Verified<&'b [u8]>, AuthError> {
        let secret = match self {
            Verifier::Bypass => return Ok(Verified(body)),
            Verifier::Secret(secret) => secret,
        };
        match (x_signature, x_webhook_secret) {
            (Some(sig), _) => {
                let hex_sig = sig.trim();
                let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
                hmac_sha256_hex_matches(secret, body, hex_sig)
                    .then_some(Verified(body))
                    .ok_or(AuthError::Invalid)
            }
            // Both sides hashed first: the comparison takes the same time
            // whatever the candidate's length (no length leak).
            (None, Some(shared)) => digests_equal(secret, shared.trim())
                .then_some(Verified(body))
                .ok_or(AuthError::Invalid),
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// Cal.com: `X-Cal-Signature-256`, lowercase hex HMAC-SHA256 of the raw body.
    /// A webhook configured without a secret sends `no-secret-provided`, which never verifies.
    pub fn verify_hex_hmac<'b>(
        &self,
        body: &'b [u8],
        signature: Option<&str>,
    ) -> Result<Verified<&'b [u8]>, AuthError> {
        let secret = match self {
            Verifier::Bypass => return Ok(Verified(body)),
            Verifier::Secret(secret) => secret,
        };
        let sig = signature.ok_or(AuthError::Missing)?;
        hmac_sha256_hex_matches(secret, body, sig.trim())
            .then_some(Verified(body))
            .ok_or(AuthError::Invalid)
    }

    /// Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 of the URL Twilio
    /// called followed by the POST parameters sorted by name. The URL is
    /// tried as given and with its default port added or removed, as
    /// Twilio's own validators do (`crate::twilio::signature`).
    pub fn verify_twilio<'b>(
        &self,
        url: &str,
        body: &'b [u8],
        signature: Option<&str>,
    ) -> Result<Verified<&'b [u8]>, AuthError> {
        let secret = match self {
            Verifier::Bypass => return Ok(Verified(body)),
            Verifier::Secret(secret) => secret,
        };
        let sig = signature.ok_or(AuthError::Missing)?;
        crate::twilio::signature::matches(secret, url, body, sig.trim())
            .then_some(Verified(body))
            .ok_or(AuthError::Invalid)
    }
}

impl Verifier {
    /// A static token (Contact2Sale: it can neither sign nor, through its
    /// subscribe API, attach headers). `X-Webhook-Token` wins when present
    /// (a wrong header is refused even if the URL's `token` is right), else
    /// the `token` query parameter of the subscribed URL. Both sides are
    /// hashed first, so the comparison takes the same time whatever the
    /// candidate's length.
    pub fn verify_token<'b>(
        &self,
        body: &'b [u8],
        header: Option<&str>,
        query: Option<&str>,
    ) -> Result<Verified<&'b [u8]>, AuthError> {
        let secret = match self {
            Verifier::Bypass => return Ok(Verified(body)),
            Verifier::Secret(secret) => secret,
        };
        let candidate = header.or(query).map(str::trim).ok_or(AuthError::Missing)?;
        digests_equal(secret, candidate)
            .then_some(Verified(body))
            .ok_or(AuthError::Invalid)
    }
}

/// A static secret against a candidate, in constant time over fixed-size
/// SHA-256 digests, so neither the content nor the length leaks.
fn digests_equal(secret: &Secret, candidate: &str) -> bool {
    let digest = |b: &[u8]| <Sha256 as sha2::Digest>::digest(b);
    subtle::ConstantTimeEq::ct_eq(
        digest(secret.expose().as_bytes()).as_slice(),
        digest(candidate.as_bytes()).as_slice(),
    )
    .into()
}

/// Constant-time comparison of a hex HMAC-SHA256 (either case) against the body.
pub fn hmac_sha256_hex_matches(secret: &Secret, body: &[u8], hex_sig: &str) -> bool {
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Lowercase hex HMAC-SHA256, for signing (tests, relays, outbound).
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    const KEY: &str = "Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const MAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    fn verifier() -> Verifier {
        Verifier::Secret(Secret::new(KEY).unwrap())
    }

    #[test]
    fn hmac_matches_the_rfc_4231_known_answer() {
        assert_eq!(hmac_sha256_hex(KEY.as_bytes(), DATA), MAC);
    }

    #[test]
    fn instantly_accepts_hex_signature_with_or_without_prefix_and_any_case() {
        let v = verifier();
        assert!(v.verify_instantly(DATA, Some(MAC), None).is_ok());
        assert!(
            v.verify_instantly(DATA, Some(&format!("sha256={MAC}")), None)
                .is_ok()
        );
        assert!(
            v.verify_instantly(DATA, Some(&MAC.to_uppercase()), None)
                .is_ok()
        );
    }

    #[test]
    fn instantly_rejects_a_signature_over_other_bytes() {
        let v = verifier();
        assert_eq!(
            v.verify_instantly(b"what do ya want for nothing!", Some(MAC), None)
                .unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_instantly(DATA, Some("zz"), None).unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_instantly(DATA, Some(""), None).unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn instantly_accepts_the_shared_secret_header_only_when_equal() {
        let v = verifier();
        assert!(v.verify_instantly(DATA, None, Some("Jefe")).is_ok());
        assert_eq!(
            v.verify_instantly(DATA, None, Some("Jef")).unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            v.verify_instantly(DATA, None, None).unwrap_err(),
            AuthError::Missing
        );
    }

    #[test]
    fn a_present_but_wrong_signature_is_not_rescued_by_the_secret_header() {
        let v = verifier();
        assert!(v.verify_instantly(DATA, Some("00"), Some("Jefe")).is_err());
    }

    #[test]
    fn calcom_placeholder_signature_never_verifies() {
        let v = verifier();
        assert_eq!(
            v.verify_hex_hmac(DATA, Some("no-secret-provided"))
                .unwrap_err(),
            AuthError::Invalid
        );
        assert!(v.verify_hex_hmac(DATA, Some(MAC)).is_ok());
    }

    #[test]
    fn c2s_token_from_header_or_query_compared_whole() {
        let v = verifier();
        assert!(v.verify_token(DATA, Some("Jefe"), None).is_ok());
        assert!(v.verify_token(DATA, None, Some("Jefe")).is_ok());
        assert!(v.verify_token(DATA, Some(" Jefe "), None).is_ok());
        for wrong in ["Jef", "Jefe2", "jefe", ""] {
            assert_eq!(
                v.verify_token(DATA, Some(wrong), None).unwrap_err(),
                AuthError::Invalid
            );
            assert_eq!(
                v.verify_token(DATA, None, Some(wrong)).unwrap_err(),
                AuthError::Invalid
            );
        }
        assert_eq!(
            v.verify_token(DATA, None, None).unwrap_err(),
            AuthError::Missing
        );
    }

    #[test]
    fn c2s_wrong_header_token_is_not_rescued_by_the_query_token() {
        let v = verifier();
        assert_eq!(
            v.verify_token(DATA, Some("nope"), Some("Jefe"))
                .unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn bypass_accepts_anything() {
        assert!(Verifier::Bypass.verify_instantly(DATA, None, None).is_ok());
    }
}
