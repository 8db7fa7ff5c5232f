//! Recording what the provider (or Twilio's callbacks) said about a
//! delivery: forward only, never out of a final status.

use super::fail;
use crate::db::GenericClient;
use anyhow::Context;
use uuid::Uuid;

/// The provider took an e-mail: `sent` with its message id.
pub async fn record_sent(
    db: &impl GenericClient,
    delivery_id: Uuid,
    provider_id: &str,
) -> anyhow::Result<()> {
    db.execute(
        "update campaign_deliveries set status = 'sent', provider_id = $2, sent_at = now(), \
           error_code = null, error = null, updated_at = now() \
         where id = $1 and status = 'sending'",
        &[&delivery_id, &provider_id],
    )
    .await
    .context("recording the sent delivery")?;
    Ok(())
}

/// The webhook receiver answered 2xx: `delivered` (there is no later callback).
pub async fn record_delivered(
    db: &impl GenericClient,
    delivery_id: Uuid,
    provider_id: &str,
) -> anyhow::Result<()> {
    db.execute(
        "update campaign_deliveries set status = 'delivered', provider_id = $2, sent_at = now(), \
           delivered_at = now(), error_code = null, error = null, updated_at = now() \
         where id = $1 and status = 'sending'",
        &[&delivery_id, &provider_id],
    )
    .await
    .context("recording the delivered delivery")?;
    Ok(())
}

/// For good: `failed` with a code and a reason free of content.
pub async fn record_failed(
    db: &impl GenericClient,
    delivery_id: Uuid,
    code: &str,
    reason: &str,
) -> anyhow::Result<()> {
    fail(db, delivery_id, code, reason).await
}

/// Another attempt's outcome cannot be known from here (it held the row
/// when the receives ran out): `failed` / `uncertain`, but only while the
/// row is still `sending` — if that attempt recorded `sent` or `delivered`
/// meanwhile, its answer stands. Returns whether the row was failed.
pub async fn record_uncertain(
    db: &impl GenericClient,
    delivery_id: Uuid,
    reason: &str,
) -> anyhow::Result<bool> {
    let reason: String = reason.chars().take(1000).collect();
    let n = db
        .execute(
            "update campaign_deliveries set status = 'failed', error_code = $2, error = $3, \
               failed_at = now(), updated_at = now() \
             where id = $1 and status = 'sending'",
            &[&delivery_id, &super::UNCERTAIN, &reason],
        )
        .await
        .context("failing the delivery as uncertain")?;
    Ok(n == 1)
}

/// The provider provably did not take it (throttled, 5xx, no connection):
/// the claim is cleared so a later receive may try again.
pub async fn release(
    db: &impl GenericClient,
    delivery_id: Uuid,
    reason: &str,
) -> anyhow::Result<()> {
    let reason: String = reason.chars().take(1000).collect();
    db.execute(
        "update campaign_deliveries set attempted_at = null, error_code = 'retryable', error = $2, \
           updated_at = now() where id = $1 and status = 'sending'",
        &[&delivery_id, &reason],
    )
    .await
    .context("releasing the provider call")?;
    Ok(())
}

/// Moves the ledger row linked to a message after the message's own status:
/// handed to Twilio (a SID) → `sent`; delivered/read → `delivered`;
/// failed/undelivered/canceled → `failed` with Twilio's error code. There is
/// one state machine, the message's (`MessageStatus::may_become`): once the
/// row follows a message (`sending`, `sent`, `delivered`) it mirrors that
/// message's status, so a `failed` after `delivered` (which the message
/// accepts: failed is terminal from any non-terminal status) fails the row
/// too, whatever order the callbacks came in. Runs inside the transaction
/// that changed the message (the send worker's record, a status callback).
/// Returns the row's status after it, or `None` when the message belongs to
/// no delivery.
pub async fn sync_from_message(
    db: &impl GenericClient,
    message_id: Uuid,
) -> anyhow::Result<Option<String>> {
    if let Some(moved) = follow_message(db, message_id).await? {
        return Ok(Some(moved));
    }
    let row = db
        .query_opt(
            "select status from campaign_deliveries where message_id = $1",
            &[&message_id],
        )
        .await
        .context("reading the message's ledger row")?;
    Ok(row.map(|r| r.get(0)))
}

/// The update half of [`sync_from_message`], one round trip: the ledger
/// row's new status when it moved, `None` when nothing moved (no linked
/// row, or already there). For callers that do not need the current status
/// (Twilio's status callbacks, most of which are not campaign messages).
pub async fn follow_message(
    db: &impl GenericClient,
    message_id: Uuid,
) -> anyhow::Result<Option<String>> {
    let stmt = db
        .prepare_cached(
            "with m as ( \
               select id, provider_sid, error_code, error_message, \
                      case when status in ('delivered', 'read') then 'delivered' \
                           when status in ('failed', 'undelivered', 'canceled') then 'failed' \
                           when provider_sid is not null then 'sent' end as next \
               from messages where id = $1) \
             update campaign_deliveries d set \
               status = m.next, \
               provider_id = coalesce(d.provider_id, m.provider_sid), \
               sent_at = case when m.provider_sid is not null then coalesce(d.sent_at, now()) else d.sent_at end, \
               delivered_at = case when m.next = 'delivered' then now() else d.delivered_at end, \
               failed_at = case when m.next = 'failed' then now() else d.failed_at end, \
               error_code = case when m.next = 'failed' then coalesce(m.error_code::text, \
                                   case when m.error_message like 'uncertain%' then 'uncertain' \
                                        when m.error_message like 'opted_out%' then 'opted_out' \
                                        else 'failed' end) \
                                 when m.next = 'sent' then null else d.error_code end, \
               error = case when m.next = 'failed' then left(coalesce(m.error_message, 'the message failed'), 1000) \
                            when m.next = 'sent' then null else d.error end, \
               updated_at = now() \
             from m \
             where d.message_id = m.id and m.next is not null and d.status <> m.next \
               and d.status in ('sending', 'sent', 'delivered') \
             returning d.status",
        )
        .await
        .context("preparing the ledger update from the message")?;
    let row = db
        .query_opt(&stmt, &[&message_id])
        .await
        .context("moving the ledger row after its message")?;
    Ok(row.map(|r| r.get(0)))
}

/// The row's current status (tests and the worker's final answer).
pub async fn status(db: &impl GenericClient, delivery_id: Uuid) -> anyhow::Result<Option<String>> {
    let row = db
        .query_opt(
            "select status from campaign_deliveries where id = $1",
            &[&delivery_id],
        )
        .await
        .context("reading the delivery status")?;
    Ok(row.map(|r| r.get(0)))
}
