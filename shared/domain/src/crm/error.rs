//! The one error type of the CRM API family (crm-actions, crm-read), and its
//! single mapping to an HTTP status, a stable `code` and a caller-safe body:
//! `{"error","code"}`, plus `"field"` when one field is at fault.

use crate::{
    auth::AuthError,
    db::{DbFault, classify},
};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Malformed(String),
    #[error("{field} {reason}")]
    Validation { field: String, reason: String },
    /// The addressed record does not exist, or the caller may not see or change it.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique rule would be broken (e-mail or phone taken, a second open deal).
    #[error("{field} {reason}")]
    Conflict { field: String, reason: String },
    /// The request is valid but the record's state refuses it, with a
    /// specific code (`window_closed`, `opted_out`): 409.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("A request with this idempotency key is still being processed")]
    InFlight,
    /// Sign-in refused: unknown e-mail, wrong password, no password set or
    /// a deactivated account all answer this one way.
    #[error("E-mail or password is incorrect")]
    InvalidCredentials,
    /// A refresh token that is unknown, used, revoked or expired, or whose user was deactivated.
    #[error("Session expired or revoked; sign in again")]
    SessionInvalid,
    /// Too many failed sign-ins for this account or address: 429 with `Retry-After`.
    #[error("Too many failed sign-ins; try again later")]
    TooManyAttempts { retry_after_seconds: i64 },
    #[error("Idempotency key was already used with a different request")]
    KeyReused,
    /// Worth retrying: lost connection, pool exhausted, deadlock, serialization failure.
    #[error("Service temporarily unavailable")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// No connection from the pool (exhausted, or the database unreachable): 503.
impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(anyhow::anyhow!("database pool: {e}"))
    }
}

impl ApiError {
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn conflict(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Conflict {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A database error: constraint faults become caller errors naming the
    /// field (by constraint name), transient ones 503, the rest 500 with context.
    pub fn from_db(err: tokio_postgres::Error, context: &'static str) -> Self {
        match classify(&err) {
            DbFault::UniqueViolation {
                constraint: Some(c),
            } => match c.as_str() {
                "contacts_email_unique" => {
                    Self::conflict("email", "is already used by another contact")
                }
                "contacts_phone_unique" => {
                    Self::conflict("phone", "is already used by another contact")
                }
                "deals_one_open_per_contact_pipeline" => {
                    Self::conflict("contact_id", "already has an open deal in this pipeline")
                }
                _ => Self::Unexpected(anyhow::Error::new(err).context(context)),
            },
            DbFault::ForeignKeyViolation {
                constraint: Some(c),
            } => match c.as_str() {
                "deals_contact_id_fkey" => Self::validation("contact_id", "does not exist"),
                "deals_pipeline_id_fkey" => Self::validation("pipeline_id", "does not exist"),
                "deals_stage_id_fkey" => Self::validation("stage_id", "does not exist"),
                _ => Self::Unexpected(anyhow::Error::new(err).context(context)),
            },
            DbFault::Retryable => Self::Unavailable(anyhow::Error::new(err).context(context)),
            _ => Self::Unexpected(anyhow::Error::new(err).context(context)),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::Unauthorized(_) | Self::InvalidCredentials | Self::SessionInvalid => 401,
            Self::TooManyAttempts { .. } => 429,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict { .. } | Self::Refused { .. } | Self::InFlight => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType => 415,
            Self::Validation { .. } | Self::KeyReused => 422,
            Self::Unavailable(_) => 503,
            Self::Unexpected(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(AuthError::Missing) => "token_missing",
            Self::Unauthorized(AuthError::Expired) => "token_expired",
            Self::Unauthorized(AuthError::Invalid) => "token_invalid",
            Self::Forbidden(_) => "forbidden",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Malformed(_) => "malformed_json",
            Self::Validation { .. } => "validation_failed",
            Self::NotFound(_) => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Refused { code, .. } => code,
            Self::InFlight => "request_in_flight",
            Self::InvalidCredentials => "invalid_credentials",
            Self::SessionInvalid => "session_invalid",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::KeyReused => "idempotency_key_reused",
            Self::Unavailable(_) => "temporarily_unavailable",
            Self::Unexpected(_) => "internal_error",
        }
    }

    /// What the log says about this error: the cause chain through
    /// `db::loggable`, which reduces PostgreSQL errors to SQLSTATE and object
    /// names (their message and DETAIL can quote e-mails and phones).
    pub fn diagnostic(&self) -> String {
        match self {
            Self::Unexpected(e) | Self::Unavailable(e) => crate::db::loggable(e),
            other => other.to_string(),
        }
    }

    /// Our fault (5xx): not stored under an idempotency key, so the client may retry.
    pub fn is_server_fault(&self) -> bool {
        self.status() >= 500
    }

    /// The JSON body a caller sees. Server faults say nothing about internals.
    pub fn body(&self) -> Value {
        match self {
            Self::Unexpected(_) => json!({"error": "Internal error", "code": self.code()}),
            Self::Validation { field, reason } | Self::Conflict { field, reason } => {
                json!({"error": format!("{field} {reason}"), "code": self.code(), "field": field})
            }
            other => json!({"error": other.to_string(), "code": other.code()}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::Malformed("x".into()), 400, "malformed_json"),
            (
                ApiError::Unauthorized(AuthError::Expired),
                401,
                "token_expired",
            ),
            (ApiError::Forbidden("no".into()), 403, "forbidden"),
            (ApiError::NotFound("deal"), 404, "not_found"),
            (ApiError::conflict("email", "taken"), 409, "conflict"),
            (ApiError::InFlight, 409, "request_in_flight"),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::validation("title", "is required"),
                422,
                "validation_failed",
            ),
            (ApiError::KeyReused, 422, "idempotency_key_reused"),
            (
                ApiError::Unavailable(anyhow::anyhow!("pool")),
                503,
                "temporarily_unavailable",
            ),
            (
                ApiError::Unexpected(anyhow::anyhow!("boom")),
                500,
                "internal_error",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status(), err.code()), (status, code), "{err:?}");
            assert_eq!(err.body()["code"], code);
        }
    }

    #[test]
    fn validation_and_conflict_name_the_field() {
        let e = ApiError::validation("phone", "is not a valid phone number");
        assert_eq!(
            e.body(),
            json!({"error": "phone is not a valid phone number", "code": "validation_failed", "field": "phone"})
        );
        assert_eq!(
            ApiError::conflict("email", "is taken").body()["field"],
            "email"
        );
    }

    #[test]
    fn server_faults_do_not_leak_their_cause() {
        let e = ApiError::from(anyhow::anyhow!("relation \"contacts\" does not exist"));
        assert_eq!(
            e.body(),
            json!({"error": "Internal error", "code": "internal_error"})
        );
        let e = ApiError::Unavailable(anyhow::anyhow!("connection refused to 10.0.0.1"));
        assert!(!e.body().to_string().contains("10.0.0.1"));
        assert!(e.is_server_fault());
    }
}
