//! Delivery records: `webhook_deliveries` (one per event × target URL) and
//! `webhook_delivery_attempts` (one per attempt), plus `poison_messages`.
//!
//! A delivery is claimed with a short lease before its HTTP attempt and
//! released when the attempt is recorded, so no connection or transaction
//! is held while a receiver answers, and two copies of one job (SQS is
//! at-least-once) never post to the same URL at the same time.

use super::AttemptOutcome;
use crate::{db::GenericClient, outbox::QueueName};
use anyhow::Context;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Refused by the receiver (a 4xx other than 408/429): not retried.
    Failed,
    /// Retryable failures until the attempts ran out.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed, Self::Dead]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Where a delivery goes, without the URL itself (it may carry a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef<'a> {
    /// SHA-256 hex of the URL.
    pub key: &'a str,
    /// `scheme://host[:port]`.
    pub origin: &'a str,
}

/// The result of trying to take a delivery for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours until recorded or `lease` passes; `attempts` made so far.
    Claimed { id: i64, attempts: i32 },
    /// Nothing to do: delivered, failed or dead already.
    Finished(DeliveryStatus),
    /// Another worker holds it right now.
    Busy,
}

/// Creates the delivery if it is new and claims it when it is pending and
/// not held by someone else.
pub async fn claim(
    db: &impl GenericClient,
    event_id: Uuid,
    event_type: &str,
    target: &TargetRef<'_>,
    lease: Duration,
) -> anyhow::Result<Claim> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    // ON CONFLICT DO UPDATE locks the existing row and re-checks the WHERE
    // against its latest version: of two concurrent claims one wins.
    let take = db
        .prepare_cached(
            "insert into webhook_deliveries as d (event_id, event_type, target_key, target_origin, locked_until) \
             values ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') \
             on conflict (event_id, target_key) do update \
               set locked_until = excluded.locked_until, updated_at = now() \
               where d.status = 'pending' and (d.locked_until is null or d.locked_until < now()) \
             returning d.id, d.attempts",
        )
        .await
        .context("preparing the delivery claim")?;
    if let Some(row) = db
        .query_opt(
            &take,
            &[
                &event_id,
                &event_type,
                &target.key,
                &target.origin,
                &(lease_ms as f64),
            ],
        )
        .await
        .context("claiming a webhook delivery")?
    {
        return Ok(Claim::Claimed {
            id: row.get(0),
            attempts: row.get(1),
        });
    }
    let look = db
        .prepare_cached(
            "select status from webhook_deliveries where event_id = $1 and target_key = $2",
        )
        .await
        .context("preparing the delivery lookup")?;
    let status: String = db
        .query_one(&look, &[&event_id, &target.key])
        .await
        .context("reading a webhook delivery")?
        .get(0);
    Ok(match DeliveryStatus::parse(&status) {
        Some(DeliveryStatus::Pending) | None => Claim::Busy,
        Some(done) => Claim::Finished(done),
    })
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub outcome: AttemptOutcome,
    pub duration: Duration,
    pub message_id: Option<&'a str>,
    /// The delivery's status after this attempt.
    pub status: DeliveryStatus,
    /// Why it is not delivered (no receiver content); `None` when delivered.
    pub error: Option<&'a str>,
}

/// Records the attempt and the delivery's new status, releasing the claim;
/// one statement. Returns the attempt number.
pub async fn record_attempt(
    db: &impl GenericClient,
    delivery_id: i64,
    attempt: &AttemptRecord<'_>,
) -> anyhow::Result<i32> {
    let stmt = db
        .prepare_cached(
            "with d as ( \
               update webhook_deliveries set attempts = attempts + 1, status = $2, \
                 last_http_status = $3, last_error = left($4, 500), locked_until = null, updated_at = now(), \
                 finished_at = case when $2 = 'pending' then null else now() end \
               where id = $1 returning id, attempts) \
             insert into webhook_delivery_attempts (delivery_id, attempt, message_id, http_status, error_class, duration_ms) \
             select id, attempts, $5::text, $3::integer, $6::text, $7::integer from d returning attempt",
        )
        .await
        .context("preparing the attempt record")?;
    let http_status = attempt.outcome.http_status().map(i32::from);
    let duration_ms = i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX);
    let row = db
        .query_one(
            &stmt,
            &[
                &delivery_id,
                &attempt.status.as_str(),
                &http_status,
                &attempt.error,
                &attempt.message_id,
                &attempt.outcome.error_class(),
                &duration_ms,
            ],
        )
        .await
        .context("recording a webhook delivery attempt")?;
    Ok(row.get(0))
}

/// Gives up on a delivery that is not finished: marks it `dead` with
/// `reason` and releases any claim on it, without recording an attempt
/// (none was made). A delivery not written yet (its claim never got
/// through) is created dead, so the reason is on record either way. For
/// a message whose receives are exhausted: SQS moves it to the dead-letter
/// queue next, and nothing would come back to finish the delivery. A holder
/// whose attempt is still in flight (another copy of the job) records its
/// attempt over this when it ends: its status, from a real answer, wins.
///
/// Returns whether this call finished it (false: it was already
/// delivered, failed or dead, and keeps that status and reason).
pub async fn give_up(
    db: &impl GenericClient,
    event_id: Uuid,
    event_type: &str,
    target: &TargetRef<'_>,
    reason: &str,
) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached(
            "insert into webhook_deliveries as d \
               (event_id, event_type, target_key, target_origin, status, last_error, finished_at) \
             values ($1, $2, $3, $4, 'dead', left($5, 500), now()) \
             on conflict (event_id, target_key) do update \
               set status = 'dead', last_error = excluded.last_error, locked_until = null, \
                   updated_at = now(), finished_at = now() \
               where d.status = 'pending' \
             returning d.id",
        )
        .await
        .context("preparing the delivery give-up")?;
    let row = db
        .query_opt(
            &stmt,
            &[&event_id, &event_type, &target.key, &target.origin, &reason],
        )
        .await
        .context("marking a webhook delivery dead")?;
    Ok(row.is_some())
}

/// Records (or counts again) a message a worker could not read. `reason`
/// must not quote the body.
pub async fn record_poison(
    db: &impl GenericClient,
    queue: QueueName,
    message_id: &str,
    reason: &str,
    receive_count: i32,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into poison_messages (queue, message_id, reason, receive_count) values ($1, $2, left($3, 500), $4) \
             on conflict (queue, message_id) do update \
               set reason = excluded.reason, receive_count = greatest(poison_messages.receive_count, excluded.receive_count), \
                   last_seen_at = now()",
        )
        .await
        .context("preparing the poison message record")?;
    db.execute(
        &stmt,
        &[&queue.as_str(), &message_id, &reason, &receive_count],
    )
    .await
    .context("recording a poison message")?;
    Ok(())
}
