//! Outbound webhooks (e.g. `deal.stage_changed` to n8n), per the Standard
//! Webhooks spec (<https://www.standardwebhooks.com>): the body posted, its
//! signature, and the delivery policy (what is success, what is retried,
//! how long to wait). Sending is the send worker's job; this module is pure
//! except for `store`, the delivery records.
//!
//! Invariants: the `webhook-id` is the job's `event_id` and stays the same on
//! every retry; each attempt carries a fresh `webhook-timestamp` and
//! signature over the same body bytes.

pub mod store;

use crate::jobs::DeliverWebhook;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use std::{fmt, time::Duration};

/// The `whsec_` prefix the spec gives secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// The spec recommends secrets of 24 to 64 random bytes; shorter keys are refused.
pub const MIN_KEY_BYTES: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must start with whsec_")]
    MissingPrefix,
    #[error("the part after whsec_ is not valid base64")]
    NotBase64,
    #[error("must decode to at least {MIN_KEY_BYTES} bytes")]
    TooShort,
}

/// The HMAC key of a `whsec_<base64>` secret. Never printed.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl SigningKey {
    pub fn parse(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyError::MissingPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| KeyError::NotBase64)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        Ok(Self(key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// What a receiver does: accepts when any space-separated `v1,` signature
    /// in `header` matches (constant-time). Timestamp tolerance is the
    /// receiver's policy and is not checked here.
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|candidate| {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                return false;
            };
            let Ok(tag) = STANDARD.decode(encoded) else {
                return false;
            };
            self.mac(msg_id, timestamp, body).verify_slice(&tag).is_ok()
        })
    }
}

/// The Standard Webhooks payload structure: `{"type", "timestamp", "data"}`.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: DateTime<Utc>,
    data: &'a Value,
}

/// The exact bytes posted (and signed) for a job; the same on every attempt.
pub fn body(job: &DeliverWebhook) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        event_type: &job.event_type,
        timestamp: job.occurred_at,
        data: &job.payload,
    })
    .expect("an envelope always serialises")
}

/// How one attempt ended, as far as the network and the receiver said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer within the configured timeout.
    Timeout,
    /// Could not connect (DNS, refused, TLS).
    Connect,
    /// Any other transport failure (reset mid-request, protocol error).
    Transport,
}

/// What to do about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again later (with backoff), until the attempts run out.
    Retry,
    /// The receiver refused it; retrying would not help.
    Reject,
}

impl AttemptOutcome {
    /// 2xx delivers. 5xx, 429, 408 (a timeout reported by the receiver) and
    /// transport failures are retried. Other 4xx, and 3xx (redirects are not
    /// followed: a moved endpoint is a configuration fault), fail at once.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::Status(s) if (200..300).contains(&s) => Verdict::Delivered,
            Self::Status(s) if s >= 500 || s == 429 || s == 408 => Verdict::Retry,
            Self::Status(_) => Verdict::Reject,
            Self::Timeout | Self::Connect | Self::Transport => Verdict::Retry,
        }
    }

    pub fn http_status(self) -> Option<u16> {
        match self {
            Self::Status(s) => Some(s),
            _ => None,
        }
    }

    /// The `webhook_delivery_attempts.error_class`; `None` on success.
    pub fn error_class(self) -> Option<&'static str> {
        match self {
            Self::Status(s) if (200..300).contains(&s) => None,
            Self::Status(_) => Some("http_status"),
            Self::Timeout => Some("timeout"),
            Self::Connect => Some("connect"),
            Self::Transport => Some("transport"),
        }
    }

    /// A short reason without any content from the receiver.
    pub fn describe(self) -> String {
        match self {
            Self::Status(s) => format!("HTTP {s}"),
            Self::Timeout => "timed out".into(),
            Self::Connect => "connection failed".into(),
            Self::Transport => "transport error".into(),
        }
    }
}

/// Exponential backoff by delivery count: `base · 2^(n-1)`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 30 s, 1 min, 2 min, 4 min, … capped at 15 min: a short outage of the
    /// receiver is ridden out within the default five attempts.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(15 * 60),
        }
    }
}

impl Backoff {
    /// The wait after the `receive_count`-th delivery failed (1-based).
    pub fn delay(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }
}

#[cfg(test)]
mod tests;
