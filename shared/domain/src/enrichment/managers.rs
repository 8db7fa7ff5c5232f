//! Managers of C2S sellers and their lead-closed notifications (migrations/V14):
//! matched by seller id or e-mail, created by the enrichment worker with a
//! `notify_manager` job, delivered at most once by the send worker.

use super::store::secs;
use crate::db::GenericClient;
use anyhow::Context;
use std::time::Duration;
use uuid::Uuid;

/// A manager to notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub id: Uuid,
    pub email: Option<String>,
    pub webhook_target_key: Option<String>,
}

/// Active managers of the lead's seller, matched by C2S seller id or seller e-mail.
pub async fn managers_for_seller(
    db: &impl GenericClient,
    seller_id: Option<&str>,
    seller_email: Option<&str>,
) -> anyhow::Result<Vec<Manager>> {
    let email = seller_email.map(|e| e.trim().to_lowercase());
    let stmt = db
        .prepare_cached(
            "select distinct m.id, m.email, m.webhook_target_key from managers m \
             join manager_sellers s on s.manager_id = m.id \
             where m.active and (s.seller_id = $1 or s.seller_email = $2) order by m.id",
        )
        .await
        .context("preparing the manager match")?;
    let rows = db
        .query(&stmt, &[&seller_id, &email])
        .await
        .context("matching managers")?;
    Ok(rows
        .iter()
        .map(|r| Manager {
            id: r.get(0),
            email: r.get(1),
            webhook_target_key: r.get(2),
        })
        .collect())
}

/// Creates a notification; `None` when this event already has it.
pub async fn create_notification(
    db: &impl GenericClient,
    manager: Uuid,
    lead_id: &str,
    event_id: Uuid,
    channel: &str,
    subject: &str,
    body: &str,
) -> anyhow::Result<Option<Uuid>> {
    let stmt = db
        .prepare_cached(
            "insert into manager_notifications (manager_id, lead_id, event_id, channel, subject, body) \
             values ($1, $2, $3, $4, $5, $6) on conflict (event_id, manager_id, channel) do nothing returning id",
        )
        .await
        .context("preparing the notification")?;
    let row = db
        .query_opt(
            &stmt,
            &[&manager, &lead_id, &event_id, &channel, &subject, &body],
        )
        .await
        .context("creating the notification")?;
    Ok(row.map(|r| r.get(0)))
}

/// A notification the send worker may deliver now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationToSend {
    pub id: Uuid,
    pub channel: String,
    pub subject: String,
    pub body: String,
    pub lead_id: String,
    pub email: Option<String>,
    pub webhook_target_key: Option<String>,
    /// Attempts including this one.
    pub attempt: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationClaim {
    Send(NotificationToSend),
    /// sent, failed or uncertain: nothing to do.
    Finished(String),
    /// Another holder's attempt is running.
    Busy,
    Missing,
}

/// Claims a notification for one attempt: `pending` → `sending` (committed
/// before the call). A `sending` row older than `lease` means a worker died
/// mid-call: it becomes `uncertain`, never sent again.
pub async fn claim_notification(
    db: &impl GenericClient,
    id: Uuid,
    lease: Duration,
) -> anyhow::Result<NotificationClaim> {
    let stmt = db
        .prepare_cached(
            "with cur as (select id, status, attempted_at <= now() - make_interval(secs => $2) as stale \
                          from manager_notifications where id = $1 for update) \
             update manager_notifications n set \
                 status = case when cur.status = 'pending' then 'sending' \
                               when cur.status = 'sending' and cur.stale then 'uncertain' else n.status end, \
                 attempts = n.attempts + (cur.status = 'pending')::int, \
                 attempted_at = case when cur.status = 'pending' then now() else n.attempted_at end, \
                 error = case when cur.status = 'sending' and cur.stale \
                         then 'uncertain: previous attempt outcome unknown; not sent again' else n.error end, \
                 updated_at = now() \
             from cur where n.id = cur.id \
             returning cur.status, n.status, n.channel, n.subject, n.body, n.lead_id, n.attempts, \
                 (select email from managers where id = n.manager_id), \
                 (select webhook_target_key from managers where id = n.manager_id)",
        )
        .await
        .context("preparing the notification claim")?;
    let Some(r) = db
        .query_opt(&stmt, &[&id, &secs(lease)])
        .await
        .context("claiming the notification")?
    else {
        return Ok(NotificationClaim::Missing);
    };
    let (before, now): (String, String) = (r.get(0), r.get(1));
    Ok(match (before.as_str(), now.as_str()) {
        ("pending", "sending") => NotificationClaim::Send(NotificationToSend {
            id,
            channel: r.get(2),
            subject: r.get(3),
            body: r.get(4),
            lead_id: r.get(5),
            attempt: r.get(6),
            email: r.get(7),
            webhook_target_key: r.get(8),
        }),
        ("sending", "sending") => NotificationClaim::Busy,
        (_, status) => NotificationClaim::Finished(status.to_string()),
    })
}

/// Records one attempt's result: `sent`, `failed`, or `pending` again (retryable).
pub async fn record_notification(
    db: &impl GenericClient,
    id: Uuid,
    status: &str,
    provider_id: Option<&str>,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update manager_notifications set status = $2, provider_id = coalesce($3, provider_id), \
                    error = left($4, 1000), sent_at = case when $2 = 'sent' then now() end, \
                    attempted_at = case when $2 = 'pending' then null else attempted_at end, updated_at = now() \
             where id = $1",
        )
        .await
        .context("preparing the notification result")?;
    db.execute(&stmt, &[&id, &status, &provider_id, &error])
        .await
        .context("recording the notification result")?;
    Ok(())
}
