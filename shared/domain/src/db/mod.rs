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
        let io = std::error::Error::source(err).is_some_and(|e| e.is::<std::io::Error>());
        return if err.is_closed() || io || err.to_string().contains("connection") {
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
        | SqlState::TOO_MANY_CONNECTIONS
        // statement_timeout: the database is too slow right now.
        | SqlState::QUERY_CANCELED
        | SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        | SqlState::CONNECTION_EXCEPTION
        | SqlState::CONNECTION_FAILURE
        | SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION => DbFault::Retryable,
        _ => DbFault::Other,
    }
}

/// A request ran past its deadline (the database or a provider did not
/// answer in time): an outage, answered 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("deadline of {0:?} passed")]
pub struct DeadlinePassed(pub std::time::Duration);

/// Whether an error is an outage the caller should retry later (503 +
/// `Retry-After`), not a fault of ours (500): no connection from the pool
/// (exhausted, unreachable, timed out), a connection lost mid-request, a
/// statement timeout or server shutdown, or a passed deadline.
pub fn is_outage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<deadpool_postgres::PoolError>()
            || cause.is::<DeadlinePassed>()
            || cause
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|e| classify(e) == DbFault::Retryable)
    })
}

/// An error chain fit for logs. PostgreSQL errors are reduced to their
/// SQLSTATE and object names: their message and DETAIL can echo row values
/// (e-mails, phones) that must not reach logs.
pub fn loggable(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        let db = cause
            .downcast_ref::<tokio_postgres::Error>()
            .map(|e| (e.as_db_error(), e.is_closed()))
            .or_else(|| {
                cause
                    .downcast_ref::<tokio_postgres::error::DbError>()
                    .map(|d| (Some(d), false))
            });
        match db {
            Some((Some(d), _)) => {
                let on = [d.table(), d.column(), d.constraint()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(".");
                parts.push(format!(
                    "postgres error {}{}",
                    d.code().code(),
                    if on.is_empty() {
                        String::new()
                    } else {
                        format!(" on {on}")
                    }
                ));
                break;
            }
            Some((None, closed)) => {
                parts.push(if closed {
                    "postgres connection closed".into()
                } else {
                    "postgres client error".into()
                });
                break;
            }
            None => parts.push(cause.to_string()),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_keeps_context_and_drops_nothing_else() {
        let err = anyhow::anyhow!("socket reset").context("upserting contact");
        assert_eq!(loggable(&err), "upserting contact: socket reset");
    }
}
