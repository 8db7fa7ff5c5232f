//! The one error type of the webhook family, and its single mapping to an
//! HTTP status, a stable `code` and a caller-safe JSON body.

use crate::signature::AuthError;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Unauthorized(AuthError),
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("{0}")]
    Malformed(String),
    /// A form body (`application/x-www-form-urlencoded`) that does not decode.
    #[error("{0}")]
    MalformedForm(String),
    #[error("{field} {reason}")]
    Validation { field: String, reason: String },
    /// A replay of an event already processed; carries what the first call answered.
    #[error("Duplicate event")]
    Duplicate { first: Value },
    #[error("Idempotency key was already used with a different payload")]
    KeyReused,
    #[error("A request with this idempotency key is still being processed")]
    InFlight,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// No connection from the pool (exhausted, or the database unreachable):
/// an outage, 503 + `Retry-After` (the same rule as `ApiError`'s).
impl From<deadpool_postgres::PoolError> for WebhookError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unexpected(anyhow::Error::from(e).context("database pool"))
    }
}

impl WebhookError {
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::Malformed(_) | Self::MalformedForm(_) => 400,
            Self::Validation { .. } | Self::KeyReused => 422,
            Self::Duplicate { .. } | Self::InFlight => 409,
            Self::Unexpected(e) if crate::db::is_outage(e) => 503,
            Self::Unexpected(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(AuthError::Missing) => "signature_missing",
            Self::Unauthorized(AuthError::Invalid) => "signature_invalid",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::Malformed(_) => "malformed_json",
            Self::MalformedForm(_) => "malformed_form",
            Self::Validation { .. } => "validation_failed",
            Self::Duplicate { .. } => "duplicate_event",
            Self::KeyReused => "idempotency_key_reused",
            Self::InFlight => "request_in_flight",
            Self::Unexpected(e) if crate::db::is_outage(e) => "temporarily_unavailable",
            Self::Unexpected(_) => "internal_error",
        }
    }

    /// Whether the caller caused it (recorded as a rejection) or we did (recorded as a failure, retryable).
    pub fn is_caller_fault(&self) -> bool {
        !matches!(self, Self::Unexpected(_))
    }

    /// The JSON body a caller sees. Internal errors say nothing about internals.
    pub fn body(&self) -> Value {
        match self {
            Self::Unexpected(e) if crate::db::is_outage(e) => {
                json!({"error": "Service temporarily unavailable", "code": self.code()})
            }
            Self::Unexpected(_) => json!({"error": "Internal error", "code": self.code()}),
            Self::Validation { field, reason } => {
                json!({"error": format!("{field} {reason}"), "code": self.code(), "field": field})
            }
            Self::Duplicate { first } => {
                let mut body = json!({"error": "Duplicate event", "code": self.code()});
                if let (Some(out), Some(first)) = (body.as_object_mut(), first.as_object()) {
                    for (k, v) in first.iter().filter(|(k, _)| k.as_str() != "status") {
                        out.insert(k.clone(), v.clone());
                    }
                }
                body
            }
            other => json!({"error": other.to_string(), "code": other.code()}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let e = WebhookError::from(anyhow::anyhow!(
            "password authentication failed for user crm"
        ));
        assert_eq!(e.status(), 500);
        assert_eq!(
            e.body(),
            json!({"error": "Internal error", "code": "internal_error"})
        );
    }

    #[test]
    fn an_outage_is_503_try_again_and_says_nothing_of_its_cause() {
        let pool = deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
        let e = WebhookError::from(anyhow::Error::from(pool).context("getting a connection"));
        assert_eq!(e.status(), 503);
        assert_eq!(
            e.body(),
            json!({"error": "Service temporarily unavailable", "code": "temporarily_unavailable"})
        );
        let late = crate::db::DeadlinePassed(std::time::Duration::from_secs(1));
        assert_eq!(WebhookError::from(anyhow::Error::from(late)).status(), 503);
        assert_eq!(WebhookError::from(anyhow::anyhow!("a bug")).status(), 500);
    }

    #[test]
    fn validation_errors_name_the_field() {
        let e = WebhookError::validation("lead_email", "is not a valid e-mail address");
        assert_eq!(e.status(), 422);
        assert_eq!(e.body()["field"], "lead_email");
        assert_eq!(
            e.body()["error"],
            "lead_email is not a valid e-mail address"
        );
    }

    #[test]
    fn duplicate_carries_the_first_ids_but_not_the_ok_status() {
        let e = WebhookError::Duplicate {
            first: json!({"status": "ok", "contact_id": "c1"}),
        };
        assert_eq!(e.status(), 409);
        assert_eq!(
            e.body(),
            json!({"error": "Duplicate event", "code": "duplicate_event", "contact_id": "c1"})
        );
    }
}
