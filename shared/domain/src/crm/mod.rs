//! The authenticated CRM API (crm-actions, crm-read): input parsing, access
//! rules, idempotency, the writes and the reads a pipeline board needs.
//! The function crates only route, authenticate and translate HTTP.
//!
//! Every write runs in one transaction with its `system` activity (and, for
//! stage moves, stage history and the `deal.stage_changed` outbox job).

pub mod board;
pub mod contacts;
pub mod cursor;
pub mod deals;
pub mod error;
pub mod idempotency;
pub mod input;
pub mod ownership;
pub mod pipelines;
pub mod reads;
pub mod records;
pub mod routing;
pub mod run;
pub mod timeline;

pub use error::ApiError;

use crate::{auth::Principal, db::GenericClient};
use input::Patch;
use serde_json::Value;
use uuid::Uuid;

/// What a write answers, and the outbox rows it wrote (to publish right
/// after commit, and only those: `outbox::relay_ids`).
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub status: u16,
    pub body: Value,
    /// `message_id`s of the outbox rows this write enqueued.
    pub enqueued: Vec<Uuid>,
}

impl Done {
    pub fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            enqueued: Vec::new(),
        }
    }
}

/// The `owner_id` to store for a given `owner_id` field: the caller when
/// absent; members may only name themselves (403 otherwise); admins anyone,
/// or nobody (`null`). A named owner must also be an active user:
/// [`checked_owner`].
pub fn owner_field(who: &Principal, given: Patch<String>) -> Result<Option<String>, ApiError> {
    match given {
        Patch::Absent => Ok(Some(who.user_id().to_string())),
        Patch::Set(owner) if owner == who.user_id() => Ok(Some(owner)),
        Patch::Set(owner) if who.is_admin() => Ok(Some(owner)),
        Patch::Null if who.is_admin() => Ok(None),
        _ => Err(ApiError::Forbidden(
            "owner_id: members may only assign records to themselves".into(),
        )),
    }
}

/// [`owner_field`], then the check that a named owner is an active user
/// (422 `owner_id` otherwise). An absent `owner_id` (the caller) is not
/// looked up: the token already says who the caller is.
pub async fn checked_owner(
    db: &impl GenericClient,
    who: &Principal,
    given: Patch<String>,
) -> Result<Option<String>, ApiError> {
    let named = matches!(given, Patch::Set(_));
    let owner = owner_field(who, given)?;
    match owner {
        Some(o) if named => Ok(Some(ownership::active_owner(db, &o).await?.to_string())),
        other => Ok(other),
    }
}

/// A `system` timeline entry for a write made through the API.
pub async fn log_system(
    db: &impl GenericClient,
    contact_id: Uuid,
    deal_id: Option<Uuid>,
    body: &str,
    metadata: Value,
    actor: &str,
) -> Result<Uuid, ApiError> {
    let stmt = db
        .prepare_cached(
            "insert into activities (type, contact_id, deal_id, body, metadata, actor) \
             values ('system', $1, $2, $3, $4, $5) returning id",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the activity insert"))?;
    let row = db
        .query_one(&stmt, &[&contact_id, &deal_id, &body, &metadata, &actor])
        .await
        .map_err(|e| ApiError::from_db(e, "logging a system activity"))?;
    Ok(row.get(0))
}
