//! PostgreSQL repositories. Each function takes `&impl GenericClient` so it
//! runs on a pooled client or inside a transaction, and uses cached
//! prepared statements.

pub mod webhook_events;

pub use deadpool_postgres::GenericClient;

/// What a database error means to a caller, by SQLSTATE and constraint name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbFault {
    UniqueViolation {
        constraint: Option<String>,
    },
    ForeignKeyViolation {
        constraint: Option<String>,
    },
    CheckViolation {
        constraint: Option<String>,
    },
    /// Connection lost, server shutting down, serialization failure, deadlock: try again.
    Retryable,
    Other,
}

pub fn classify(err: &tokio_postgres::Error) -> DbFault {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        // No server error attached: the connection itself failed.
        return if err.is_closed() || err.to_string().contains("connection") {
            DbFault::Retryable
        } else {
            DbFault::Other
        };
    };
    let constraint = db.constraint().map(str::to_owned);
    match *db.code() {
        SqlState::UNIQUE_VIOLATION => DbFault::UniqueViolation { constraint },
        SqlState::FOREIGN_KEY_VIOLATION => DbFault::ForeignKeyViolation { constraint },
        SqlState::CHECK_VIOLATION => DbFault::CheckViolation { constraint },
        SqlState::T_R_SERIALIZATION_FAILURE
        | SqlState::T_R_DEADLOCK_DETECTED
        | SqlState::ADMIN_SHUTDOWN
        | SqlState::CRASH_SHUTDOWN
        | SqlState::CANNOT_CONNECT_NOW
        | SqlState::TOO_MANY_CONNECTIONS => DbFault::Retryable,
        _ => DbFault::Other,
    }
}
