//! `Idempotency-Key` for CRM API POSTs, the way Stripe does it:
//!
//! 1. [`claim`] inserts an `in_flight` row in its own short transaction
//!    (`api_idempotency_claim` in migrations/V4), scoped to the caller;
//! 2. the work transaction first [`lock`]s that row (so a concurrent claim
//!    sees it in flight without waiting) and ends with [`complete`], so the
//!    writes and the stored answer commit together — a crash in between
//!    leaves neither;
//! 3. a caller fault found while working (404, 409, 422…) is rolled back
//!    and stored with [`complete`] outside the transaction, then replayed;
//!    a server fault [`release`]s the key so the client can retry.
//!
//! The request hash covers method, path and canonical JSON body, so the same
//! key on another endpoint or with other fields is refused (422).
//!
//! Keys live 24 hours (a claim after that starts the key over); the
//! scheduled outbox relay deletes expired ones in bounded batches
//! ([`purge_expired`]).

use super::error::ApiError;
use crate::{
    db::GenericClient,
    types::{IdempotencyKey, PayloadHash},
};
use anyhow::Context;
use serde_json::Value;
use uuid::Uuid;

/// The fingerprint a key is bound to.
pub fn request_hash(method: &str, path: &str, body: &Value) -> PayloadHash {
    // serde_json's map is a BTreeMap here (no `preserve_order`), so this is canonical.
    let canonical = serde_json::to_string(body).expect("a Value always serialises");
    PayloadHash::of_bytes(format!("{method} {path}\n{canonical}").as_bytes())
}

/// A key this request holds; only its token may complete or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub user_id: String,
    pub key: IdempotencyKey,
    token: Uuid,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Do the work, then `complete` (or `release` on a server fault).
    New(Held),
    /// Answer this again, with `Idempotent-Replayed: true`.
    Replay { status: u16, body: Value },
}

/// Claims `key` for `user_id`: a new claim, a stored answer, or a refusal
/// (`KeyReused` 422, `InFlight` 409). Runs as its own statement (autocommit).
pub async fn claim(
    db: &impl GenericClient,
    user_id: &str,
    key: &IdempotencyKey,
    hash: &PayloadHash,
) -> Result<Claim, ApiError> {
    let token = Uuid::new_v4();
    let stmt = db
        .prepare_cached(
            "select outcome, response_status, response_body from api_idempotency_claim($1, $2, $3, $4)",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the idempotency claim"))?;
    let row = db
        .query_one(&stmt, &[&user_id, &key.as_str(), &hash.as_str(), &token])
        .await
        .map_err(|e| ApiError::from_db(e, "claiming the idempotency key"))?;
    let outcome: String = row.get(0);
    match outcome.as_str() {
        "new" => Ok(Claim::New(Held {
            user_id: user_id.to_string(),
            key: key.clone(),
            token,
        })),
        "replay" => {
            let status: i32 = row.get(1);
            let status = u16::try_from(status).context("stored status out of range")?;
            Ok(Claim::Replay {
                status,
                body: row.get(2),
            })
        }
        "mismatch" => Err(ApiError::KeyReused),
        "in_flight" => Err(ApiError::InFlight),
        other => Err(anyhow::anyhow!("unknown idempotency outcome {other}").into()),
    }
}

/// First statement of the work transaction: holds the row until commit.
/// Fails with `InFlight` if another request took the key over meanwhile.
pub async fn lock(db: &impl GenericClient, held: &Held) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "select 1 from api_idempotency_keys where user_id = $1 and idempotency_key = $2 \
             and lock_token = $3 and status = 'in_flight' for update",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the idempotency lock"))?;
    let row = db
        .query_opt(&stmt, &[&held.user_id, &held.key.as_str(), &held.token])
        .await
        .map_err(|e| ApiError::from_db(e, "locking the idempotency key"))?;
    row.map(|_| ()).ok_or(ApiError::InFlight)
}

/// Stores the answer replays get. Inside the work transaction for a success,
/// on its own after a rolled-back caller fault.
pub async fn complete(
    db: &impl GenericClient,
    held: &Held,
    status: u16,
    body: &Value,
) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "update api_idempotency_keys set status = 'completed', response_status = $4, \
             response_body = $5, completed_at = now() \
             where user_id = $1 and idempotency_key = $2 and lock_token = $3 and status = 'in_flight'",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the idempotency completion"))?;
    let n = db
        .execute(
            &stmt,
            &[
                &held.user_id,
                &held.key.as_str(),
                &held.token,
                &i32::from(status),
                body,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "storing the idempotent response"))?;
    if n == 1 {
        Ok(())
    } else {
        Err(ApiError::InFlight)
    }
}

/// Frees the key after a server fault, so a retry runs again. Best effort:
/// a key left behind is taken over once its lock goes stale.
pub async fn release(db: &impl GenericClient, held: &Held) {
    let outcome = db
        .execute(
            "delete from api_idempotency_keys where user_id = $1 and idempotency_key = $2 \
             and lock_token = $3 and status = 'in_flight'",
            &[&held.user_id, &held.key.as_str(), &held.token],
        )
        .await;
    if let Err(e) = outcome {
        let e = ApiError::from_db(e, "releasing an idempotency key");
        tracing::warn!(error = %e.diagnostic(), "could not release an idempotency key");
    }
}

/// How long a key is kept (and replayed); the same 24 hours as
/// `api_idempotency_claim` in migrations/V4.
pub const KEY_LIFETIME_HOURS: i32 = 24;

/// Deletes up to `limit` keys older than their 24-hour life, oldest first,
/// and returns how many. Bounded, so one run never holds many row locks or
/// writes a huge transaction; rows some request holds right now are
/// skipped (SKIP LOCKED), never waited for. A key past its life is never
/// replayed (the claim starts it over), so deleting it changes no answer.
pub async fn purge_expired(db: &impl GenericClient, limit: i64) -> anyhow::Result<u64> {
    let stmt = db
        .prepare_cached(
            "delete from api_idempotency_keys k using ( \
               select user_id, idempotency_key from api_idempotency_keys \
               where created_at < now() - make_interval(hours => $2) \
               order by created_at limit $1 for update skip locked) old \
             where k.user_id = old.user_id and k.idempotency_key = old.idempotency_key",
        )
        .await
        .context("preparing the idempotency key purge")?;
    db.execute(&stmt, &[&limit, &KEY_LIFETIME_HOURS])
        .await
        .context("purging expired idempotency keys")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_binds_method_path_and_canonical_body() {
        let a = request_hash("POST", "/crm/actions/contacts", &json!({"a": 1, "b": 2}));
        let b = request_hash("POST", "/crm/actions/contacts", &json!({"b": 2, "a": 1}));
        assert_eq!(a, b);
        assert_ne!(
            a,
            request_hash("POST", "/crm/actions/deals", &json!({"a": 1, "b": 2}))
        );
        assert_ne!(
            a,
            request_hash("POST", "/crm/actions/contacts", &json!({"a": 1}))
        );
    }
}
