//! Unsubscribe links: a signed, expiring token in every e-mail/SMS campaign
//! message. The token is `<payload>.<mac>`, both base64url without padding;
//! the payload is JSON `{"c": contact id, "ch": channel, "k": campaign id,
//! "e": expiry (unix seconds)}` and the mac is HMAC-SHA256 over
//! `"unsub.v1." + payload` with `UNSUBSCRIBE_SECRET`. It carries ids only, so
//! a link reveals no contact details; verification is constant time.

use crate::secret::Secret;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    #[serde(rename = "c")]
    pub contact_id: Uuid,
    /// `email` | `sms` | `whatsapp` | `webhook` (an `opt_outs.channel`).
    #[serde(rename = "ch")]
    pub channel: String,
    #[serde(rename = "k")]
    pub campaign_id: Option<Uuid>,
    /// Unix seconds after which the link no longer works.
    #[serde(rename = "e")]
    pub expires: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of ours, or altered.
    Invalid,
    /// Genuine but past its expiry.
    Expired,
}

const CONTEXT: &[u8] = b"unsub.v1.";

fn mac(secret: &Secret) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(CONTEXT);
    mac
}

pub fn sign(secret: &Secret, claims: &Unsubscribe) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{tag}")
}

pub fn verify(secret: &Secret, token: &str, now: DateTime<Utc>) -> Result<Unsubscribe, TokenError> {
    if token.len() > 1024 {
        return Err(TokenError::Invalid);
    }
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Invalid)?;
    let mut m = mac(secret);
    m.update(payload.as_bytes());
    m.verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Invalid)?;
    let claims: Unsubscribe = serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)?;
    if claims.expires < now.timestamp() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires: i64) -> Unsubscribe {
        Unsubscribe {
            contact_id: Uuid::parse_str("0192f0c8-7a00-7000-8000-000000000001").unwrap(),
            channel: "email".into(),
            campaign_id: Some(Uuid::parse_str("0192f0c8-7a00-7000-8000-000000000002").unwrap()),
            expires,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let secret = Secret::new("s3cret").unwrap();
        let exp = now().timestamp() + 60;
        let token = sign(&secret, &claims(exp));
        assert_eq!(verify(&secret, &token, now()), Ok(claims(exp)));
        let later = now() + chrono::Duration::seconds(61);
        assert_eq!(verify(&secret, &token, later), Err(TokenError::Expired));
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let secret = Secret::new("s3cret").unwrap();
        let token = sign(&secret, &claims(now().timestamp() + 60));
        let other = Secret::new("other").unwrap();
        assert_eq!(verify(&other, &token, now()), Err(TokenError::Invalid));
        // Another contact's payload under the original tag.
        let (_, tag) = token.split_once('.').unwrap();
        let mut forged = claims(now().timestamp() + 60);
        forged.contact_id = Uuid::nil();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verify(&secret, &format!("{payload}.{tag}"), now()),
            Err(TokenError::Invalid)
        );
        for junk in ["", ".", "abc", "a.b", &"x".repeat(2000)] {
            assert_eq!(
                verify(&secret, junk, now()),
                Err(TokenError::Invalid),
                "{junk:?}"
            );
        }
    }
}
